#![no_main]
//! Any bytes as `pigeonpost-metadata` (IMAP METADATA entries, our own
//! file): read without panicking, only valid entries kept, and what is
//! read survives a write and a second read (see
//! `store::maildir::fuzz_metadata_file`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeonpost::store::maildir::fuzz_metadata_file(&String::from_utf8_lossy(data));
});
