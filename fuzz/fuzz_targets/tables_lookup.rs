#![no_main]
//! Address splitting and candidate keys never panic, on any input.
use libfuzzer_sys::fuzz_target;
use pigeonpost::tables::lookup::{candidate_keys, lookup, split_extension, split_values, Style};
use pigeonpost::tables::map::Map;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (delims, addr) = text.split_once('\n').unwrap_or(("+", &text));
    let (user, ext) = split_extension(addr, delims);
    assert!(!user.is_empty() || addr.is_empty());
    if let Some(ext) = ext {
        assert_eq!(format!("{user}{ext}"), addr);
    }
    for style in [Style::VirtualAlias, Style::VirtualMailbox] {
        for local in [false, true] {
            let keys = candidate_keys(addr, delims, style, local);
            let map = Map::from_entries(keys.iter().map(|k| (k.as_str(), "x")));
            if let Some(first) = keys.first() {
                let hit = lookup(&map, addr, delims, style, local).expect("own keys");
                assert_eq!(&hit.key, first);
                let _ = hit.addresses(true);
            }
        }
    }
    let _ = split_values(&text);
});
