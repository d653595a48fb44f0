//! The module rules of ARCHITECTURE.md, checked on the source: every
//! `crate::…` reference points down the layers, so the module graph has no
//! cycle; the protocols (smtp, imap, pop3) never import each other or the
//! server; only `server` knows every protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each top-level module of src/: a module may use only modules
/// of a lower layer. Protocols share a layer, so they can't use each other.
const LAYERS: &[(&str, u8)] = &[
    ("config", 0),
    ("wire", 0),
    ("tls", 0),
    ("observe", 1),
    ("tables", 2),
    ("net", 2),
    ("acme", 2),
    ("auth", 3),
    ("store", 4),
    ("mailauth", 4),
    ("smtp", 5),
    ("imap", 5),
    ("pop3", 5),
    ("server", 6),
    ("dev", 6),
    ("admin", 6),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules each file's code refers to with `crate::`.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c};`
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn module_dependencies_point_down_the_layers() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix("src").unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let Some(&own) = layer.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module {module} has no layer here",
                f.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for used in references(&text) {
            if used == module {
                continue;
            }
            match layer.get(used.as_str()) {
                Some(&l) if l < own => {}
                Some(_) => wrong.push(format!("{}: {module} uses {used}", f.display())),
                None => wrong.push(format!("{}: uses unknown crate::{used}", f.display())),
            }
            edges.entry(module.clone()).or_default().insert(used);
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers:\n{}",
        wrong.join("\n")
    );
    // The server is the one place that knows every protocol.
    for proto in ["smtp", "imap", "pop3"] {
        let users: Vec<&String> = edges
            .iter()
            .filter(|(_, to)| to.contains(proto))
            .map(|(from, _)| from)
            .collect();
        assert!(
            users.iter().all(|m| *m == "server"),
            "{proto} is used by {users:?}"
        );
    }
    assert!(edges["server"].is_superset(&BTreeSet::from([
        "smtp".to_string(),
        "imap".to_string(),
        "pop3".to_string()
    ])));
}

#[test]
fn references_are_read_from_paths_and_use_groups() {
    let r =
        references("use crate::{imap, pop3::x};\nlet a = crate::store::y();\n// crate::server\n");
    assert_eq!(
        r,
        BTreeSet::from(["imap".into(), "pop3".into(), "store".into()])
    );
}
