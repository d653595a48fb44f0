//! Postfix master.cf (master(5)): one service per logical line (a line
//! that starts with white space continues the previous one), eight fields
//! `service type private unpriv chroot wakeup maxproc command`, then the
//! command's arguments with `-o name=value` overrides (Postfix 3.0's
//! `-o { name = value with spaces }` too). `postconf -M` prints the same
//! syntax, one service per line.

/// One service line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `smtp`, `submission`, `127.0.0.1:10025`, `pickup`…
    pub name: String,
    /// `inet`, `unix`, `unix-dgram`, `fifo`, `pass`.
    pub kind: String,
    /// `smtpd`, `postscreen`, `pipe`, `qmgr`…
    pub command: String,
    /// `-o` overrides in order.
    pub overrides: Vec<(String, String)>,
    /// Other arguments (`-v`, `flags=…`, `argv=…`).
    pub args: Vec<String>,
    /// 1-based line number of the service's first line.
    pub line: usize,
}

/// Parses master.cf text; an error carries the 1-based line number.
pub fn parse(text: &str) -> Result<Vec<Service>, (usize, String)> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let rest = raw.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            match logical.last_mut() {
                Some((_, l)) => {
                    l.push(' ');
                    l.push_str(rest.trim_end());
                }
                None => return Err((
                    i + 1,
                    "a continuation line (starting with white space) without a service before it"
                        .into(),
                )),
            }
            continue;
        }
        logical.push((i + 1, raw.trim_end().to_string()));
    }
    logical.into_iter().map(|(n, l)| service(n, &l)).collect()
}

fn service(line: usize, text: &str) -> Result<Service, (usize, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 8 {
        return Err((
            line,
            format!(
                "expected 'service type private unpriv chroot wakeup maxproc command', got '{}'",
                text
            ),
        ));
    }
    let mut s = Service {
        name: words[0].to_string(),
        kind: words[1].to_string(),
        command: words[7].to_string(),
        overrides: Vec::new(),
        args: Vec::new(),
        line,
    };
    let mut rest = words[8..].iter().copied();
    while let Some(w) = rest.next() {
        let setting = match w {
            "-o" => {
                let Some(next) = rest.next() else {
                    return Err((line, "-o without name=value after it".into()));
                };
                if next.starts_with('{') {
                    let mut parts = vec![next.trim_start_matches('{').to_string()];
                    if !next.ends_with('}') {
                        loop {
                            match rest.next() {
                                Some(p) => {
                                    parts.push(p.to_string());
                                    if p.ends_with('}') {
                                        break;
                                    }
                                }
                                None => return Err((line, "-o { without its closing }".into())),
                            }
                        }
                    }
                    let joined = parts.join(" ");
                    joined.trim_end_matches('}').trim().to_string()
                } else {
                    next.to_string()
                }
            }
            w if w.starts_with("-o") && w.len() > 2 => w[2..].to_string(),
            other => {
                s.args.push(other.to_string());
                continue;
            }
        };
        let Some((k, v)) = setting.split_once('=') else {
            return Err((line, format!("-o {setting}: expected name=value")));
        };
        s.overrides
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_with_overrides_and_continuations() {
        let text = "# comment\nsmtp      inet  n       -       y       -       -       smtpd\n\
submission inet n       -       y       -       -       smtpd\n  -o syslog_name=postfix/submission\n  -o smtpd_tls_security_level=encrypt\n#  -o commented=out\n  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }\n\
dovecot   unix  -       n       n       -       -       pipe\n  flags=DRhu user=vmail:vmail argv=/usr/lib/dovecot/deliver -f ${sender}\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "smtp");
        assert_eq!(s[0].command, "smtpd");
        assert_eq!(s[1].line, 3);
        assert_eq!(
            s[1].overrides,
            vec![
                ("syslog_name".into(), "postfix/submission".into()),
                ("smtpd_tls_security_level".into(), "encrypt".into()),
                (
                    "smtpd_client_restrictions".into(),
                    "permit_sasl_authenticated, reject".into()
                ),
            ]
        );
        assert_eq!(s[2].command, "pipe");
        assert_eq!(s[2].args[0], "flags=DRhu");
        assert_eq!(parse("smtp inet n - y\n").unwrap_err().0, 1);
        assert_eq!(parse("  -o a=b\n").unwrap_err().0, 1);
        assert!(parse("x inet n - - - - smtpd -o nokey\n").is_err());
        assert!(parse("x inet n - - - - smtpd -o { a = b\n").is_err());
    }
}
