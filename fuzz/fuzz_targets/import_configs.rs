#![no_main]
//! `pigeonpost import`'s own parsers: master.cf services and dovecot.conf
//! sections (an include answers with the text after the first NUL, so
//! nested includes are reached too). No panic, no hang, on any input.
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use pigeonpost::admin::import::{dovecot_conf, master_cf};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (main, included) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let _ = master_cf::parse(main);
    let mut include = |dir: &Path, pattern: &str| -> Result<Vec<(PathBuf, String)>, String> {
        Ok(vec![(dir.join(pattern), included.to_string())])
    };
    let _ = dovecot_conf::parse(main, Path::new("/etc/dovecot/dovecot.conf"), &mut include);
});
