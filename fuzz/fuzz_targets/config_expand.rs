#![no_main]
//! Postfix $name expansion and Dovecot %-templates: no panic, no hang, on any input.
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use pigeonpost::config::expand::{expand_postfix, expand_user_template, UserVars};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut raw = HashMap::new();
    let mut parts = text.splitn(3, '\u{0}');
    let value = parts.next().unwrap_or("");
    raw.insert("a".to_string(), parts.next().unwrap_or("$b").to_string());
    raw.insert("b".to_string(), parts.next().unwrap_or("x").to_string());
    let _ = expand_postfix(value, &raw);
    let _ = expand_user_template(value, &UserVars { user: "u@d", home: Some("/h") });
});
