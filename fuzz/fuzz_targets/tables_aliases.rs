#![no_main]
//! Any bytes: Aliases::parse returns Ok or a ParseError, never panics;
//! every alias has at least one target.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pigeonpost::tables::aliases::Aliases;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((aliases, _warnings)) = Aliases::parse(&text, Path::new("fuzz")) {
        for (name, targets) in aliases.iter() {
            assert!(!targets.is_empty());
            assert_eq!(aliases.get(name), Some(targets));
        }
    }
});
