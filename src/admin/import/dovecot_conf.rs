//! dovecot.conf as Dovecot reads it (doveconf -n prints the same syntax):
//! `key = value`, nested `section [name] { … }`, `!include` and
//! `!include_try` with globs relative to the including file, and
//! `key = <file` meaning "the file's contents" (kept as `<file` for
//! `ssl_cert`/`ssl_key`, which pigeonpost reads as paths).

use std::path::{Path, PathBuf};

/// One setting with the sections it is in, outermost first
/// (`["service imap-login", "inet_listener imaps"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub sections: Vec<String>,
    pub key: String,
    pub value: String,
    /// `file:line`.
    pub origin: String,
}

/// How `!include` finds files: given the including file's directory and
/// the pattern, the matching files in name order with their text. The
/// real one reads the file system; the fuzz target gives none.
pub type Includer<'a> = &'a mut dyn FnMut(&Path, &str) -> Result<Vec<(PathBuf, String)>, String>;

/// Nesting limits, so a loop of includes or a deep file ends with an error.
const MAX_INCLUDE_DEPTH: usize = 16;
const MAX_SECTION_DEPTH: usize = 32;
/// Files read through `!include` in all, so that includes that fan out
/// (several `!include` lines in each included file) end too.
const MAX_INCLUDED_FILES: usize = 1000;

/// Reads `path` and everything it includes.
pub fn read(path: &Path) -> Result<Vec<Setting>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut fs = read_includes;
    let mut budget = MAX_INCLUDED_FILES;
    parse_into(
        &text,
        path,
        &mut Vec::new(),
        (0, &mut budget),
        &mut fs,
        &mut out,
    )?;
    Ok(out)
}

/// Longest value `$key` expansion may build (Dovecot's own settings are
/// lines, not megabytes).
const MAX_VALUE: usize = 64 * 1024;

/// Parses one file's text (and, through `include`, what it includes).
pub fn parse(text: &str, path: &Path, include: Includer) -> Result<Vec<Setting>, String> {
    let mut out = Vec::new();
    let mut budget = MAX_INCLUDED_FILES;
    parse_into(
        text,
        path,
        &mut Vec::new(),
        (0, &mut budget),
        include,
        &mut out,
    )?;
    Ok(out)
}

fn read_includes(dir: &Path, pattern: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        dir.join(pattern)
    };
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = full.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut files: Vec<PathBuf> = if name.contains(['*', '?']) {
        match std::fs::read_dir(&parent) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| wildcard(&name, &n.to_string_lossy()))
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    } else {
        vec![full]
    };
    files.sort();
    files
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(&p)
                .map(|t| (p.clone(), t))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// Shell-style `*` and `?` matching of one file name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1].replace("\\\"", "\"")
    } else {
        v.to_string()
    }
}

fn parse_into(
    text: &str,
    path: &Path,
    stack: &mut Vec<String>,
    (depth, budget): (usize, &mut usize),
    include: Includer,
    out: &mut Vec<Setting>,
) -> Result<(), String> {
    let name = path.display();
    let opened = stack.len();
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("!include_try")
            .map(|r| (r, true))
            .or_else(|| line.strip_prefix("!include").map(|r| (r, false)))
        {
            let (pattern, optional) = (unquote(rest.0), rest.1);
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(format!("{at}: includes nested too deeply (a loop?)"));
            }
            let files = match include(&dir, &pattern) {
                Ok(f) => f,
                Err(_) if optional => Vec::new(),
                Err(e) => return Err(format!("{at}: !include {pattern}: {e}")),
            };
            if files.is_empty() && !optional && !pattern.contains(['*', '?']) {
                return Err(format!("{at}: !include {pattern}: no such file"));
            }
            for (p, t) in files {
                if *budget == 0 {
                    return Err(format!(
                        "{at}: more than {MAX_INCLUDED_FILES} included files (a loop?)"
                    ));
                }
                *budget -= 1;
                parse_into(&t, &p, stack, (depth + 1, &mut *budget), include, out)?;
            }
            continue;
        }
        if line == "}" {
            if stack.len() <= opened {
                return Err(format!("{at}: '}}' without a section to close"));
            }
            stack.pop();
            continue;
        }
        if let Some(head) = line.strip_suffix('{') {
            let head = head.split_whitespace().collect::<Vec<_>>().join(" ");
            if head.is_empty() || head.contains('=') {
                return Err(format!("{at}: expected 'section [name] {{', got '{line}'"));
            }
            if stack.len() >= MAX_SECTION_DEPTH {
                return Err(format!("{at}: sections nested too deeply"));
            }
            stack.push(head);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{at}: expected 'key = value', got '{line}'"));
        };
        let key = key.trim().to_string();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{at}: '{key}' is not a setting name"));
        }
        // A comment after the value (`key = value # note`) is Dovecot syntax too.
        let value = match value.find(" #") {
            Some(p) if !value.trim_start().starts_with('"') => &value[..p],
            _ => value,
        };
        let mut value = unquote(value);
        if let Some(file) = value.strip_prefix('<') {
            if !matches!(key.as_str(), "ssl_cert" | "ssl_key" | "ssl_ca" | "ssl_dh") {
                let f = file.trim();
                let p = if Path::new(f).is_absolute() {
                    PathBuf::from(f)
                } else {
                    dir.join(f)
                };
                value = match include(&dir, &p.display().to_string()) {
                    Ok(files) if files.len() == 1 => files[0].1.trim().to_string(),
                    _ => return Err(format!("{at}: {key} = <{f}: cannot read the file")),
                };
            }
        }
        // `mail_plugins = $mail_plugins quota`: the value so far.
        let own = format!("${key}");
        if value.contains(&own) {
            let before = out
                .iter()
                .rev()
                .find(|s| s.key == key && s.sections == *stack)
                .map(|s| s.value.clone())
                .unwrap_or_default();
            // Each `$key` use can double the value: refuse runaway growth.
            if before.len().saturating_mul(value.matches(&own).count()) > MAX_VALUE {
                return Err(format!(
                    "{at}: {key} grows past {MAX_VALUE} bytes through ${key}"
                ));
            }
            value = value.replace(&own, &before).trim().to_string();
        }
        out.push(Setting {
            sections: stack.clone(),
            key,
            value,
            origin: at,
        });
    }
    if stack.len() > opened {
        return Err(format!(
            "{name}: section '{}' is not closed",
            stack.last().cloned().unwrap_or_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_key_expansion_is_an_error_not_a_gigabyte() {
        let text = "md = x\n".to_string() + &"md = $md$md\n".repeat(40);
        let mut none = |_: &Path, _: &str| -> Result<Vec<(PathBuf, String)>, String> {
            Err("no includes".into())
        };
        let e = parse(&text, Path::new("/etc/dovecot/dovecot.conf"), &mut none).unwrap_err();
        assert!(e.contains(":18: md grows past 65536 bytes"), "{e}");
    }

    #[test]
    fn sections_includes_and_files() {
        let main = "protocols = imap pop3 # lmtp later\n!include conf.d/*.conf\n!include_try missing.conf\nservice imap-login {\n  inet_listener imaps {\n    port = 993\n    ssl = yes\n  }\n}\n";
        let mut inc = |dir: &Path, pat: &str| -> Result<Vec<(PathBuf, String)>, String> {
            match pat {
                "conf.d/*.conf" => Ok(vec![
                    (dir.join("conf.d/10-auth.conf"), "passdb {\n  driver = passwd-file\n  args = scheme=CRYPT /etc/dovecot/users\n}\nauth_mechanisms = plain\nauth_mechanisms = $auth_mechanisms login\n".into()),
                    (dir.join("conf.d/10-ssl.conf"), "ssl_cert = </etc/ssl/c.pem\nlogin_greeting = <greeting.txt\n".into()),
                ]),
                p if p.ends_with("greeting.txt") => Ok(vec![(PathBuf::from(p), "Hello\n".into())]),
                _ => Err("no such file".into()),
            }
        };
        let s = parse(main, Path::new("/etc/dovecot/dovecot.conf"), &mut inc).unwrap();
        let get = |k: &str| s.iter().find(|x| x.key == k).unwrap();
        assert_eq!(get("protocols").value, "imap pop3");
        assert_eq!(get("driver").sections, vec!["passdb".to_string()]);
        assert_eq!(get("args").value, "scheme=CRYPT /etc/dovecot/users");
        assert_eq!(get("args").origin, "/etc/dovecot/conf.d/10-auth.conf:3");
        assert_eq!(
            s.iter()
                .rev()
                .find(|x| x.key == "auth_mechanisms")
                .unwrap()
                .value,
            "plain login"
        );
        assert_eq!(get("ssl_cert").value, "</etc/ssl/c.pem");
        assert_eq!(get("login_greeting").value, "Hello");
        assert_eq!(
            get("port").sections,
            vec![
                "service imap-login".to_string(),
                "inet_listener imaps".to_string()
            ]
        );
        let mut none =
            |_: &Path, _: &str| -> Result<Vec<(PathBuf, String)>, String> { Err("x".into()) };
        let p = Path::new("d.conf");
        assert!(parse("a {\n", p, &mut none)
            .unwrap_err()
            .contains("not closed"));
        assert!(parse("}\n", p, &mut none).unwrap_err().contains("d.conf:1"));
        assert!(parse("!include x.conf\n", p, &mut none).is_err());
        // Includes that fan out end at the file budget.
        let mut fan = |_: &Path, _: &str| -> Result<Vec<(PathBuf, String)>, String> {
            Ok(vec![(PathBuf::from("x.conf"), "a = 1\n".into()); 600])
        };
        let e = parse("!include a\n!include b\n", p, &mut fan).unwrap_err();
        assert!(e.contains("more than 1000 included files"), "{e}");
        assert!(parse("just words\n", p, &mut none)
            .unwrap_err()
            .contains("d.conf:1"));
        assert!(wildcard("*.conf", "10-auth.conf"));
        assert!(!wildcard("*.conf", "10-auth.conf.ext"));
        assert!(wildcard("auth-*.conf.ext", "auth-passwdfile.conf.ext"));
    }
}
