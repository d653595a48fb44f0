#![no_main]
//! Any bytes as `pigeonpost.index.keys` / `.dates` and as a message header (what
//! header searches compare): no panic, keys read back as written (see
//! `imap::keys::fuzz_check`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeonpost::imap::keys::fuzz_check(data);
});
