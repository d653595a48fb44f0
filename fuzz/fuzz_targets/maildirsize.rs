#![no_main]
//! Any bytes as a Maildir++ `maildirsize` (Dovecot's quota file): parsed
//! without panicking, and a usage read from it survives being written back
//! (see `store::maildir::quota::fuzz_check`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeonpost::store::maildir::quota::fuzz_check(data);
});
