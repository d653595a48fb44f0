#![no_main]
//! Any bytes as `pigeonpost.index.modseq` (RFC 7162 mod-sequences, our own
//! file): read without panicking, and what is read keeps the invariants
//! (see `store::maildir::fuzz_modseq_file`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeonpost::store::maildir::fuzz_modseq_file(&String::from_utf8_lossy(data));
});
