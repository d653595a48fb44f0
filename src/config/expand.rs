//! Variable expansion: Postfix's `$name` in main.cf-style values and
//! Dovecot's `%u %n %d %h` in per-user templates.

use std::collections::{HashMap, HashSet};

/// Why a `$name` expansion failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpandError {
    Unknown(String),
    Loop(String),
    Syntax(String),
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::Unknown(n) => write!(f, "unknown parameter ${n}"),
            ExpandError::Loop(n) => write!(f, "${n} refers back to itself"),
            ExpandError::Syntax(s) => write!(f, "{s}"),
        }
    }
}

/// The keys naming certificate files, where systemd's credentials
/// directory may be named (a unit with `LoadCredential=tls.key:/path`).
pub const CREDENTIAL_KEYS: [&str; 5] = [
    "ssl_cert",
    "ssl_key",
    "smtpd_tls_cert_file",
    "smtpd_tls_key_file",
    "smtpd_tls_chain_files",
];

/// Replaces `${CREDENTIALS_DIRECTORY}` and `$CREDENTIALS_DIRECTORY` with
/// `dir`, the directory systemd passes for `LoadCredential=` (systemd.exec(5),
/// "Credentials").
pub fn expand_credentials(value: &str, dir: Option<&str>) -> Result<String, ExpandError> {
    const BRACED: &str = "${CREDENTIALS_DIRECTORY}";
    const BARE: &str = "$CREDENTIALS_DIRECTORY";
    if !value.contains(BARE) && !value.contains(BRACED) {
        return Ok(value.to_string());
    }
    let dir = dir.filter(|d| !d.is_empty()).ok_or_else(|| {
        ExpandError::Syntax(
            "$CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit with LoadCredential=)"
                .into(),
        )
    })?;
    let dir = dir.trim_end_matches('/');
    Ok(value.replace(BRACED, dir).replace(BARE, dir))
}

/// Expands Postfix parameter references (postconf(5) "$name", "${name}",
/// "$(name)", "${name?text}", "${name:text}", and "$$" for a literal "$")
/// against `raw`, recursively.
pub fn expand_postfix(value: &str, raw: &HashMap<String, String>) -> Result<String, ExpandError> {
    let mut active = HashSet::new();
    expand_inner(value, raw, &mut active)
}

fn expand_inner(
    value: &str,
    raw: &HashMap<String, String>,
    active: &mut HashSet<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        let Some(first) = rest.chars().next() else {
            return Err(ExpandError::Syntax("'$' at end of value".into()));
        };
        let (name, cond, after) = match first {
            '$' => {
                out.push('$');
                rest = &rest[1..];
                continue;
            }
            '{' | '(' => {
                let close = if first == '{' { '}' } else { ')' };
                let end = rest
                    .find(close)
                    .ok_or_else(|| ExpandError::Syntax(format!("unclosed '${first}'")))?;
                let inner = &rest[1..end];
                let split = inner.find(['?', ':']);
                let (name, cond) = match split {
                    Some(i) => (&inner[..i], Some((inner.as_bytes()[i], &inner[i + 1..]))),
                    None => (inner, None),
                };
                (name, cond, &rest[end + 1..])
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], None, &rest[end..])
            }
            c => {
                return Err(ExpandError::Syntax(format!(
                    "'${c}' is not a parameter reference (write $$ for a literal $)"
                )))
            }
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ExpandError::Syntax(format!("bad parameter name '{name}'")));
        }
        let Some(target) = raw.get(name) else {
            return Err(ExpandError::Unknown(name.to_string()));
        };
        if !active.insert(name.to_string()) {
            return Err(ExpandError::Loop(name.to_string()));
        }
        let expanded = expand_inner(target, raw, active)?;
        active.remove(name);
        match cond {
            None => out.push_str(&expanded),
            // ${name?text}: text if name is non-empty; ${name:text}: text if empty.
            Some((b'?', text)) if !expanded.is_empty() => {
                out.push_str(&expand_inner(text, raw, active)?)
            }
            Some((b':', text)) if expanded.is_empty() => {
                out.push_str(&expand_inner(text, raw, active)?)
            }
            Some(_) => {}
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a Postfix list value: elements separated by commas and/or whitespace.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The values Dovecot-style `%` variables stand for in one user's templates.
#[derive(Debug, Clone, Default)]
pub struct UserVars<'a> {
    /// Full user name as logged in (`%u`, `%{user}`).
    pub user: &'a str,
    /// Home directory (`%h`, `%{home}`), if known.
    pub home: Option<&'a str>,
}

/// Checks that a template only uses variables pigeonpost knows, so mistakes
/// are caught at start-up rather than at a user's first login.
pub fn check_user_template(template: &str) -> Result<(), String> {
    expand_user_template(
        template,
        &UserVars {
            user: "u@d",
            home: Some("/h"),
        },
    )
    .map(|_| ())
}

/// Expands Dovecot variables (`%u` user, `%n` user part, `%d` domain, `%h`
/// home, `%%`, long forms `%{user}` `%{username}` `%{domain}` `%{home}`, and
/// the `L`/`U` lower/upper-case modifiers, e.g. `%Ld`).
pub fn expand_user_template(template: &str, vars: &UserVars) -> Result<String, String> {
    let (username, domain) = match vars.user.rsplit_once('@') {
        Some((n, d)) => (n, d),
        None => (vars.user, ""),
    };
    let mut out = String::with_capacity(template.len() + 16);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut modifier = None;
        if let Some(&m @ ('L' | 'U')) = chars.peek() {
            modifier = Some(m);
            chars.next();
        }
        let var: String = match chars.next() {
            Some('{') => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                name
            }
            Some(v) => v.to_string(),
            None => return Err(format!("'%' at end of \"{template}\"")),
        };
        let value = match var.as_str() {
            "%" => "%",
            "u" | "user" => vars.user,
            "n" | "username" => username,
            "d" | "domain" => domain,
            "h" | "home" => vars
                .home
                .ok_or_else(|| format!("%h used in \"{template}\" but the user has no home"))?,
            other => {
                return Err(format!(
                    "unknown variable %{other} in \"{template}\" (known: %u %n %d %h)"
                ))
            }
        };
        match modifier {
            Some('L') => out.push_str(&value.to_lowercase()),
            Some(_) => out.push_str(&value.to_uppercase()),
            None => out.push_str(value),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn postfix_forms() {
        let r = raw(&[
            ("myhostname", "mail.example.com"),
            ("mydomain", "example.com"),
            ("empty", ""),
        ]);
        assert_eq!(
            expand_postfix("$myhostname, localhost.$mydomain", &r).unwrap(),
            "mail.example.com, localhost.example.com"
        );
        assert_eq!(
            expand_postfix("${mydomain}x $(mydomain)", &r).unwrap(),
            "example.comx example.com"
        );
        assert_eq!(
            expand_postfix("${mydomain?yes}${empty?no}", &r).unwrap(),
            "yes"
        );
        assert_eq!(
            expand_postfix("${empty:fallback}${mydomain:no}", &r).unwrap(),
            "fallback"
        );
        assert_eq!(expand_postfix("cost $$5", &r).unwrap(), "cost $5");
    }

    #[test]
    fn recursive_and_errors() {
        let r = raw(&[
            ("a", "$b!"),
            ("b", "$c"),
            ("c", "x"),
            ("l1", "$l2"),
            ("l2", "$l1"),
        ]);
        assert_eq!(expand_postfix("$a", &r).unwrap(), "x!");
        assert_eq!(
            expand_postfix("$nope", &r),
            Err(ExpandError::Unknown("nope".into()))
        );
        assert!(matches!(
            expand_postfix("$l1", &r),
            Err(ExpandError::Loop(_))
        ));
        assert!(matches!(
            expand_postfix("${a", &r),
            Err(ExpandError::Syntax(_))
        ));
        assert!(matches!(
            expand_postfix("a$", &r),
            Err(ExpandError::Syntax(_))
        ));
        // A value may be used twice without being a loop.
        assert_eq!(expand_postfix("$c$c", &r).unwrap(), "xx");
        assert_eq!(
            expand_credentials(
                "${CREDENTIALS_DIRECTORY}/tls.key",
                Some("/run/credentials/x/")
            )
            .unwrap(),
            "/run/credentials/x/tls.key"
        );
        assert_eq!(
            expand_credentials("<$CREDENTIALS_DIRECTORY/tls.crt", Some("/run/c")).unwrap(),
            "</run/c/tls.crt"
        );
        assert_eq!(
            expand_credentials("/etc/ssl/a.pem", None).unwrap(),
            "/etc/ssl/a.pem"
        );
        assert!(expand_credentials("$CREDENTIALS_DIRECTORY/k", None).is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(split_list(" a, b  c,,d\n e"), ["a", "b", "c", "d", "e"]);
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn dovecot_vars() {
        let v = UserVars {
            user: "John@Example.COM",
            home: Some("/home/john"),
        };
        assert_eq!(
            expand_user_template("/var/vmail/%d/%n", &v).unwrap(),
            "/var/vmail/Example.COM/John"
        );
        assert_eq!(
            expand_user_template("/var/vmail/%Ld/%Ln/%%", &v).unwrap(),
            "/var/vmail/example.com/john/%"
        );
        assert_eq!(
            expand_user_template("%h/Maildir %{user}", &v).unwrap(),
            "/home/john/Maildir John@Example.COM"
        );
        assert!(expand_user_template("%x", &v).unwrap_err().contains("%x"));
        let no_home = UserVars {
            user: "bob",
            home: None,
        };
        assert!(expand_user_template("%h", &no_home).is_err());
        assert_eq!(expand_user_template("%d|%n", &no_home).unwrap(), "|bob");
        assert!(check_user_template("maildir:~/Maildir:INBOX=%h/x").is_ok());
    }
}
