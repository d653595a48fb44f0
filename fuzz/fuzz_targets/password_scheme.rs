#![no_main]
//! Any stored hash string: verify() returns Ok/Err, never panics (a broken
//! passwd-file line must not take the server down).
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::scheme::{self, Scheme};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Skip expensive cost parameters: the fuzzer is after parsing bugs.
    if text.contains("argon2") || text.contains("$2") || text.contains("rounds=") {
        return;
    }
    // PBKDF2's rounds are a bare number field: a stored `$1$salt$10240300$`
    // is honest work of ten million HMACs, not a parsing bug.
    if text.to_ascii_uppercase().contains("PBKDF2")
        && text
            .split('$')
            .any(|f| f.len() > 5 && f.bytes().all(|b| b.is_ascii_digit()))
    {
        return;
    }
    let _ = scheme::verify(&text, Scheme::Crypt, b"password");
    let _ = scheme::verify(&text, Scheme::Plain, b"password");
    let _ = scheme::cram_md5_context(&text, Scheme::Plain);
});
