#![no_main]
//! Any bytes as `pigeonpost.index.list` (our snapshot of a folder's message
//! list): read without panicking, and an accepted list reads back the same
//! once written again (see `store::maildir::fuzz_list_file`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeonpost::store::maildir::fuzz_list_file(&String::from_utf8_lossy(data));
});
