#![no_main]
//! Any bytes: PasswdFile::parse returns Ok or a ParseError, never panics;
//! every entry is found again under its own name.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pigeonpost::tables::passwd_file::PasswdFile;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((file, _warnings)) = PasswdFile::parse(&text, Path::new("fuzz")) {
        for entry in file.iter() {
            assert!(!entry.user.is_empty());
            assert!(file.get(&entry.user).is_some());
        }
    }
});
