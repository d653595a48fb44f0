#![no_main]
//! Any bytes as a Maildir file name (after two bytes for its sizes): the
//! compact form every open mailbox keeps per message gives it back byte for
//! byte (see `store::maildir::fuzz_file_name`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pigeonpost::store::maildir::fuzz_file_name(data);
});
