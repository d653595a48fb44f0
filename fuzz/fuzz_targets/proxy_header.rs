#![no_main]
//! Any bytes at the start of a connection: the PROXY parser never panics,
//! and a parsed header never claims more bytes than it was given.
use libfuzzer_sys::fuzz_target;
use pigeonpost::net::proxy;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = proxy::parse(data) {
        assert!(h.len <= data.len());
    }
});
