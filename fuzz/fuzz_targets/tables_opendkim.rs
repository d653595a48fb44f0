#![no_main]
//! Any bytes as an OpenDKIM KeyTable or SigningTable: parsing returns Ok or
//! a ParseError naming a line, never panics, and lookups (glob patterns
//! included) return only key names the table has.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pigeonpost::tables::opendkim::{KeyTable, SigningTable};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match KeyTable::parse(Path::new("/fuzz/KeyTable"), &text) {
        Ok((t, _)) => {
            for (name, e) in &t.entries {
                assert_eq!(t.get(name).map(|x| &x.domain), Some(&e.domain));
            }
        }
        Err(e) => assert!(e.line <= lines),
    }
    for regex in [false, true] {
        if let Ok((t, _)) = SigningTable::parse(Path::new("/fuzz/SigningTable"), &text, regex) {
            let names: Vec<&str> = t.key_names().collect();
            let head: String = text.chars().take(64).collect();
            for probe in ["a@example.com", "", "@", head.as_str()] {
                for k in t.lookup(probe) {
                    assert!(names.contains(&k));
                }
            }
        }
    }
});
