#![no_main]
//! Any bytes: Map::parse returns Ok or a ParseError, never panics, and
//! every stored key is folded and found again by get().
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pigeonpost::tables::map::{Map, TableRef};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((map, _warnings)) = Map::parse(&text, Path::new("fuzz")) {
        for (key, value) in map.iter() {
            assert_eq!(key.to_lowercase(), key);
            assert_eq!(map.get(key), Some(value));
            assert!(!value.is_empty());
        }
    }
    let _ = TableRef::parse(&text);
});
