//! Quota settings in Dovecot's syntax (quota plugin, `quota = maildir:NAME`,
//! `quota_rule = *:storage=1G`, `quota_grace = 10%`): the limits only; the
//! accounting in the Maildir++ `maildirsize` file is
//! `store/maildir/quota.rs`.

/// Storage and message-count limits; 0 means unlimited (Maildir++).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub bytes: u64,
    pub count: u64,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.bytes == 0 && self.count == 0
    }
}

/// A `quota_rule` for all mailboxes: `*` forces its limits (the
/// `maildirsize` header is rewritten to match); `?` applies only when the
/// Maildir has no `maildirsize` of its own (Dovecot's quota rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limits: Limits,
    pub force: bool,
}

/// How much the last delivered message may bring a user over the limit
/// (Dovecot `quota_grace`, LDA/LMTP only, default 10%).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    Percent(u64),
    Bytes(u64),
}

impl Grace {
    /// The grace in bytes for a limit of `limit` bytes.
    pub fn bytes(self, limit: u64) -> u64 {
        match self {
            Grace::Percent(p) => limit / 100 * p + limit % 100 * p / 100,
            Grace::Bytes(b) => b,
        }
    }
}

/// The quota plugin's settings; `None` in the config when `quota` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSettings {
    /// The quota root's name (`quota = maildir:User quota`), what
    /// GETQUOTAROOT answers.
    pub root_name: String,
    /// `quota_rule`; `None`: the limits in each `maildirsize` header.
    pub rule: Option<Rule>,
    pub grace: Grace,
    /// `quota_full_tempfail`: a full mailbox is a 4xx, not a 552.
    pub full_tempfail: bool,
}

impl QuotaSettings {
    /// The rule for a user whose userdb gave `quota_rule` (`userdb_quota_rule`
    /// in a passwd-file), which replaces the global one.
    pub fn rule_for(&self, user_rule: Option<&str>) -> Result<Option<Rule>, String> {
        match user_rule {
            Some(r) => parse_rule(r).map(Some),
            None => Ok(self.rule),
        }
    }
}

/// `quota = maildir[:NAME]`: the root's name ("User quota" when not given,
/// as Dovecot's default root name is the backend's; we use the name every
/// Dovecot example has).
pub fn parse_backend(s: &str) -> Result<String, String> {
    let (backend, name) = s.split_once(':').unwrap_or((s, ""));
    if backend != "maildir" {
        return Err(format!(
            "'{s}': only the Maildir++ backend is supported (quota = maildir:User quota)"
        ));
    }
    Ok(if name.is_empty() {
        "User quota".into()
    } else {
        name.to_string()
    })
}

/// Dovecot's `quota_rule`: `*:storage=1G`, `?:bytes=100M:messages=10k`,
/// `*:backend=1000000S,100C`, `*:storage=0` (unlimited), `*:noquota`. Only
/// the all-mailboxes names `*` and `?` (no per-folder rules).
pub fn parse_rule(s: &str) -> Result<Rule, String> {
    let s = s.trim();
    let (mailbox, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': expected MAILBOX:LIMITS, e.g. *:storage=1G"))?;
    let force = match mailbox {
        "*" => true,
        "?" => false,
        _ => {
            return Err(format!(
                "'{s}': only rules for all mailboxes (* or ?) are supported"
            ))
        }
    };
    let mut limits = Limits::default();
    for part in rest.split(':').filter(|p| !p.is_empty()) {
        if part.eq_ignore_ascii_case("noquota") {
            limits = Limits::default();
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("'{s}': '{part}' is not NAME=VALUE"))?;
        if value.starts_with(['+', '-']) || value.ends_with('%') {
            return Err(format!(
                "'{s}': relative limits (+, -, %) only make sense for per-folder rules"
            ));
        }
        match key.to_ascii_lowercase().as_str() {
            // Dovecot: storage without a unit is in kilobytes.
            "storage" => limits.bytes = size(value, 1024).ok_or_else(|| bad(s, value))?,
            "bytes" => limits.bytes = size(value, 1).ok_or_else(|| bad(s, value))?,
            "messages" => limits.count = size(value, 1).ok_or_else(|| bad(s, value))?,
            "backend" => {
                limits = parse_maildir_limits(value).ok_or_else(|| bad(s, value))?;
            }
            other => return Err(format!("'{s}': unknown limit '{other}'")),
        }
    }
    Ok(Rule { limits, force })
}

/// `quota_grace`: `10%` or a size (`50M`, `50 M`).
pub fn parse_grace(s: &str) -> Result<Grace, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        return p
            .trim()
            .parse()
            .map(Grace::Percent)
            .map_err(|_| format!("'{s}': expected a percentage (10%) or a size (50M)"));
    }
    size(&t.replace(' ', ""), 1)
        .map(Grace::Bytes)
        .ok_or_else(|| format!("'{s}': expected a percentage (10%) or a size (50M)"))
}

fn bad(rule: &str, value: &str) -> String {
    format!("'{rule}': '{value}' is not a size (a number with an optional b/k/M/G/T unit)")
}

/// A number with an optional b/k/M/G/T suffix (powers of 1024, optionally
/// followed by B: `1GB`); `unit` multiplies a bare number.
fn size(v: &str, unit: u64) -> Option<u64> {
    let v = v.trim();
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = v[..digits].parse().ok()?;
    let suffix = v[digits..].trim();
    let suffix = match suffix.len() {
        2 if suffix.as_bytes()[1].eq_ignore_ascii_case(&b'b') => &suffix[..1],
        _ => suffix,
    };
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" => unit,
        "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A Maildir++ limit string, `10000000S,1000C` (either part may be
/// missing; 0 is unlimited), as in a `maildirsize` header. `None` when a
/// part is malformed (Dovecot's `maildir_parse_limit`).
pub fn parse_maildir_limits(s: &str) -> Option<Limits> {
    let mut limits = Limits::default();
    let mut ok = true;
    for part in s.split(',') {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        let n = part[..digits].parse::<u64>();
        match (n, &part[digits..]) {
            (Ok(n), "S") => limits.bytes = n,
            (Ok(n), "C") => limits.count = n,
            _ => ok = false,
        }
    }
    ok.then_some(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_rules() {
        let r = parse_rule("*:storage=1G").unwrap();
        assert_eq!(r.limits.bytes, 1 << 30);
        assert!(r.force);
        assert_eq!(parse_rule("*:storage=1GB").unwrap().limits.bytes, 1 << 30);
        // storage without a unit is in kilobytes, bytes in bytes.
        assert_eq!(parse_rule("*:storage=1024").unwrap().limits.bytes, 1 << 20);
        assert_eq!(parse_rule("*:bytes=1500").unwrap().limits.bytes, 1500);
        let r = parse_rule("?:storage=100M:messages=1k").unwrap();
        assert_eq!(
            r.limits,
            Limits {
                bytes: 100 << 20,
                count: 1024
            }
        );
        assert!(!r.force);
        assert_eq!(
            parse_rule("*:backend=1000S,5C").unwrap().limits,
            Limits {
                bytes: 1000,
                count: 5
            }
        );
        assert!(parse_rule("*:storage=0").unwrap().limits.is_unlimited());
        assert!(parse_rule("*:noquota").unwrap().limits.is_unlimited());
        for bad in [
            "storage=1G",
            "Trash:storage=+100M",
            "*:storage=+10%",
            "*:storage=1X",
            "*:size=1",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grace_and_backend() {
        assert_eq!(parse_grace("10%").unwrap().bytes(1000), 100);
        assert_eq!(parse_grace("50 M").unwrap(), Grace::Bytes(50 << 20));
        assert!(parse_grace("lots").is_err());
        assert_eq!(parse_backend("maildir:User quota").unwrap(), "User quota");
        assert_eq!(parse_backend("maildir").unwrap(), "User quota");
        assert!(parse_backend("dict:x").is_err());
        assert_eq!(parse_maildir_limits("0S"), Some(Limits::default()));
        assert_eq!(parse_maildir_limits("5S,x"), None);
    }
}
