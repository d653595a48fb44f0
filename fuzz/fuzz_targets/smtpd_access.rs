#![no_main]
//! Any bytes through every parser of the SMTP access policy: restriction
//! lists, cidr:/regexp:/pcre: tables (and lookups in them), access(5)
//! actions and the DNS list reply template. Nothing may panic, and a
//! table that parsed answers lookups.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pigeonpost::config::restrictions::parse_list;
use pigeonpost::smtp::restrict::action::{self, MapCodes};
use pigeonpost::tables::cidr::CidrTable;
use pigeonpost::tables::regexp::{Dialect, RegexpTable};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let first = text.lines().next().unwrap_or("");
    let _ = parse_list(first, &["cls".to_string()]);
    let codes = MapCodes {
        reject: 554,
        defer: 450,
    };
    for line in text.lines().take(64) {
        let _ = action::parse(line, codes);
        let _ = action::dsn_split(line);
        let _ = action::mail_keys(line, "+-");
        let _ = action::domain_keys(line);
    }
    let _ = action::expand_template(&text, &|n: &str| (n.len() % 2 == 0).then(|| n.to_string()));
    let keys = ["192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1", "user@example.com", first];
    if let Ok((t, _)) = CidrTable::parse(&text, Path::new("fuzz")) {
        for k in keys {
            let _ = t.find(k);
        }
    }
    for d in [Dialect::Regexp, Dialect::Pcre] {
        if let Ok((t, _)) = RegexpTable::parse(&text, Path::new("fuzz"), d) {
            for k in keys {
                let _ = t.find(k);
            }
        }
    }
});
