//! Turning expanded text values into typed settings, with one clear error
//! per bad value.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::expand::{check_user_template, split_list};
use super::keys::{self, Kind};
use super::restrictions::{self as rx, AccessPolicy, Codes, PolicyDefaults, Restrictions};
use super::{
    AcmeChallenge, AcmeSettings, Config, ConfigError, Entry, IdMap, Listen, LogFormat,
    MilterDefault, MilterEndpoint, MilterSettings, MilterSpec,
};

/// `passdb`: where passwords are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassdbSpec {
    /// Dovecot passwd-file; `default_scheme` applies to hashes without `{SCHEME}`.
    PasswdFile {
        path: PathBuf,
        default_scheme: String,
    },
    /// /etc/shadow (crypt(3) hashes).
    Shadow,
}

/// `userdb`: where uid, gid and home come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserdbSpec {
    /// The system user database (getpwnam).
    Passwd,
    PasswdFile {
        path: PathBuf,
    },
    /// `static:uid=N gid=N home=TEMPLATE` — the same for every user.
    Static {
        uid: u32,
        gid: u32,
        home: Option<String>,
    },
}

/// `smtp_tls_security_level` (postconf(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsLevel {
    None,
    May,
    Encrypt,
    Verify,
}

struct Values<'a> {
    entries: &'a [Entry],
}

impl<'a> Values<'a> {
    fn entry(&self, key: &str) -> &'a Entry {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("key {key} missing from keys::KEYS"))
    }
    fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        let e = self.entry(key);
        ConfigError {
            key: Some(key.to_string()),
            source: e.source.clone(),
            reason: reason.into(),
        }
    }
    fn text(&self, key: &str) -> String {
        self.entry(key).value.trim().to_string()
    }
    fn list(&self, key: &str) -> Vec<String> {
        split_list(&self.entry(key).value)
    }
    fn count<T: TryFrom<u64>>(&self, key: &str) -> Result<T, ConfigError> {
        let v = self.text(key);
        let n: u64 = v.parse().map_err(|_| {
            self.err(
                key,
                format!("'{v}' is not {}", super::layers::kind_name(Kind::Count)),
            )
        })?;
        T::try_from(n).map_err(|_| self.err(key, format!("{n} is too large")))
    }
    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self.text(key).to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => Ok(true),
            "no" | "false" | "off" | "0" => Ok(false),
            other => Err(self.err(key, format!("'{other}' is not yes or no"))),
        }
    }
    fn time(&self, key: &str) -> Result<Duration, ConfigError> {
        let Kind::Time(unit) = keys::find(key).map(|d| d.kind).unwrap_or(Kind::Time('s')) else {
            unreachable!("{key} is not a time")
        };
        parse_time(&self.text(key), unit).map_err(|r| self.err(key, r))
    }
    fn path(&self, key: &str) -> Option<PathBuf> {
        let v = self.text(key);
        (!v.is_empty()).then(|| PathBuf::from(v))
    }
    fn networks(&self, key: &str) -> Result<Vec<IpNet>, ConfigError> {
        self.list(key)
            .iter()
            .map(|n| parse_network(n).map_err(|r| self.err(key, r)))
            .collect()
    }
    fn listen(&self, key: &str) -> Result<Vec<SocketAddr>, ConfigError> {
        self.list(key)
            .iter()
            .map(|a| parse_listen(a).map_err(|r| self.err(key, r)))
            .collect()
    }
}

/// A time value: Postfix's digits with an optional one-letter unit
/// (postconf(5) "time units": s, m, h, d, w), or Dovecot's number and unit
/// word (`2 secs`, `30 mins`, `500 msecs`, `1 hour`, `5 days`, `1 week`).
pub fn parse_time(text: &str, default_unit: char) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a time (write e.g. 300s, 30m, 4h, 5d, 1w)"))?;
    let unknown = || format!("'{text}' has an unknown time unit (use s, m, h, d or w)");
    let unit = unit.trim().to_ascii_lowercase();
    let millis: u64 = match unit.as_str() {
        "" => unit_millis(default_unit).ok_or_else(unknown)?,
        u if u.chars().count() == 1 => {
            unit_millis(u.chars().next().unwrap_or(default_unit)).ok_or_else(unknown)?
        }
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1,
        "sec" | "secs" | "second" | "seconds" => 1_000,
        "min" | "mins" | "minute" | "minutes" => 60_000,
        "hour" | "hours" => 3_600_000,
        "day" | "days" => 86_400_000,
        "week" | "weeks" => 7 * 86_400_000,
        _ => return Err(unknown()),
    };
    n.checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{text}' is too long"))
}

fn unit_millis(unit: char) -> Option<u64> {
    Some(match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    })
}

/// A time that must not be zero (a window or a deadline).
fn nonzero_time(v: &Values, key: &str) -> Result<Duration, ConfigError> {
    let t = v.time(key)?;
    if t.is_zero() {
        return Err(v.err(key, "must be longer than 0"));
    }
    Ok(t)
}

/// A network in Postfix mynetworks syntax: `10.0.0.0/8`, `[2001:db8::]/32`,
/// `2001:db8::/32`, or a single address.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    if text.starts_with('!') || text.contains(":/") || text.starts_with('/') {
        return Err(format!(
            "'{text}' is not supported: list networks as CIDR (e.g. 192.168.0.0/16, [::1]/128)"
        ));
    }
    let cleaned: String = text.chars().filter(|&c| c != '[' && c != ']').collect();
    if let Ok(net) = cleaned.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "'{text}' has host bits set (did you mean {}?)",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    if let Ok(ip) = cleaned.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "'{text}' is not a network in CIDR form (e.g. 192.168.0.0/16 or [2001:db8::]/32)"
    ))
}

/// A listen address: `ip:port` or `[ipv6]:port`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!("'{text}' is not an address with a port (e.g. 0.0.0.0:25 or [::1]:143)")
    })
}

fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = text
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| format!("'{text}' is not an IP address or ip:port"))?;
    Ok(SocketAddr::new(ip, 53))
}

fn parse_id_maps(v: &Values, key: &str) -> Result<Vec<IdMap>, ConfigError> {
    v.list(key)
        .into_iter()
        .map(|item| match item.strip_prefix("static:") {
            Some(n) => n
                .parse()
                .map(IdMap::Static)
                .map_err(|_| v.err(key, format!("'{item}': static: needs a numeric id"))),
            None => Ok(IdMap::Table(item)),
        })
        .collect()
}

/// `log_level`: RUST_LOG syntax, where a bare word is a *target*, so
/// `verbose` would silently log nothing at all. A bare word must be a level
/// (or a module path such as `pigeonpost::smtp`).
pub(super) fn check_log_level(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for d in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let lower = d.to_ascii_lowercase();
        let is_level = LEVELS.contains(&lower.as_str())
            || (lower.len() == 1 && ('0'..='5').contains(&lower.chars().next().unwrap_or(' ')));
        if is_level || d.contains(['=', '[']) || d.contains("::") || d == "pigeonpost" {
            continue;
        }
        return Err(format!(
            "'{d}' is not a log level (use off, error, warn, info, debug or trace, \
             or RUST_LOG directives such as info,pigeonpost::smtp=debug)"
        ));
    }
    Ok(())
}

/// `passwd-file:[scheme=X] /path` or `shadow` (the flat form of Dovecot's
/// `passdb { driver = … args = … }`).
fn parse_passdb(v: &Values) -> Result<PassdbSpec, ConfigError> {
    let text = v.text("passdb");
    let (driver, args) = text.split_once(':').unwrap_or((text.as_str(), ""));
    match driver.trim() {
        "shadow" | "pam" => Ok(PassdbSpec::Shadow),
        "passwd-file" => {
            let mut path = None;
            let mut default_scheme = "CRYPT".to_string();
            for arg in args.split_whitespace() {
                if let Some(s) = arg.strip_prefix("scheme=") {
                    default_scheme = s.to_ascii_uppercase();
                } else if arg.contains('=') {
                    // Dovecot options such as username_format=%u are accepted and ignored.
                } else {
                    path = Some(PathBuf::from(arg));
                }
            }
            let path = path.ok_or_else(|| {
                v.err(
                    "passdb",
                    "passwd-file: needs a file path, e.g. passwd-file:/etc/dovecot/users",
                )
            })?;
            Ok(PassdbSpec::PasswdFile {
                path,
                default_scheme,
            })
        }
        other => Err(v.err(
            "passdb",
            format!("unsupported passdb driver '{other}' (use passwd-file:/path or shadow)"),
        )),
    }
}

fn parse_userdb(v: &Values) -> Result<UserdbSpec, ConfigError> {
    let text = v.text("userdb");
    let (driver, args) = text.split_once(':').unwrap_or((text.as_str(), ""));
    match driver.trim() {
        "passwd" => Ok(UserdbSpec::Passwd),
        "passwd-file" => {
            let path = args
                .split_whitespace()
                .find(|a| !a.contains('='))
                .ok_or_else(|| v.err("userdb", "passwd-file: needs a file path"))?;
            Ok(UserdbSpec::PasswdFile { path: PathBuf::from(path) })
        }
        "static" => {
            let (mut uid, mut gid, mut home) = (None, None, None);
            for arg in args.split_whitespace() {
                let (k, val) = arg.split_once('=').ok_or_else(|| v.err("userdb", format!("static: expects key=value, found '{arg}'")))?;
                match k {
                    "uid" => uid = Some(resolve_id(val, true).map_err(|r| v.err("userdb", r))?),
                    "gid" => gid = Some(resolve_id(val, false).map_err(|r| v.err("userdb", r))?),
                    "home" => {
                        check_user_template(val).map_err(|r| v.err("userdb", r))?;
                        home = Some(val.to_string());
                    }
                    "allow_all_users" => {}
                    other => return Err(v.err("userdb", format!("static: unknown field '{other}' (known: uid gid home)"))),
                }
            }
            match (uid, gid) {
                (Some(uid), Some(gid)) => Ok(UserdbSpec::Static { uid, gid, home }),
                _ => Err(v.err("userdb", "static: needs both uid= and gid=")),
            }
        }
        other => Err(v.err("userdb", format!("unsupported userdb driver '{other}' (use passwd, passwd-file:/path or static:uid=N gid=N home=PATH)"))),
    }
}

/// A uid/gid given as a number or as a system user/group name.
fn resolve_id(text: &str, is_user: bool) -> Result<u32, String> {
    if let Ok(n) = text.parse() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(text).map_err(|_| format!("bad name '{text}'"))?;
    // SAFETY: getpwnam/getgrnam take a NUL-terminated string and return a
    // pointer into static storage or NULL; we read one field immediately.
    let id = unsafe {
        if is_user {
            let pw = libc::getpwnam(name.as_ptr());
            (!pw.is_null()).then(|| (*pw).pw_uid)
        } else {
            let gr = libc::getgrnam(name.as_ptr());
            (!gr.is_null()).then(|| (*gr).gr_gid)
        }
    };
    id.ok_or_else(|| {
        format!(
            "no such {} '{text}'",
            if is_user { "user" } else { "group" }
        )
    })
}

fn one_of(v: &Values, key: &str, allowed: &[&str]) -> Result<Vec<String>, ConfigError> {
    let items: Vec<String> = v
        .list(key)
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    for item in &items {
        if !allowed.contains(&item.as_str()) {
            return Err(v.err(
                key,
                format!("unknown value '{item}' (known: {})", allowed.join(" ")),
            ));
        }
    }
    Ok(items)
}

/// Postfix's names for the certificate (`smtpd_tls_cert_file`,
/// `smtpd_tls_key_file`, or `smtpd_tls_chain_files`: one PEM file with key
/// and chain, or the key file then the chain file) stand for Dovecot's
/// `ssl_cert`/`ssl_key`; setting both spellings to different files is an
/// error rather than a guess.
fn postfix_tls_files(
    v: &Values,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<(Option<PathBuf>, Option<PathBuf>), ConfigError> {
    let chain = v.list("smtpd_tls_chain_files");
    let (pf_cert, pf_key, from) = match chain.as_slice() {
        [] => (
            v.path("smtpd_tls_cert_file"),
            v.path("smtpd_tls_key_file"),
            "smtpd_tls_cert_file",
        ),
        [both] => (
            Some(PathBuf::from(both)),
            Some(PathBuf::from(both)),
            "smtpd_tls_chain_files",
        ),
        [k, c] => (
            Some(PathBuf::from(c)),
            Some(PathBuf::from(k)),
            "smtpd_tls_chain_files",
        ),
        _ => {
            return Err(v.err(
                "smtpd_tls_chain_files",
                "name one PEM file with the key and the certificate chain, or the key file \
                 then the chain file",
            ))
        }
    };
    if !chain.is_empty()
        && (v.path("smtpd_tls_cert_file").is_some() || v.path("smtpd_tls_key_file").is_some())
    {
        return Err(v.err(
            "smtpd_tls_chain_files",
            "set either smtpd_tls_chain_files or smtpd_tls_cert_file/smtpd_tls_key_file, not both",
        ));
    }
    let pick = |ours: Option<PathBuf>, theirs: Option<PathBuf>, key: &str, pf: &str| match (
        ours, theirs,
    ) {
        (Some(a), Some(b)) if a != b => Err(v.err(
            key,
            format!(
                "{} differs from {pf} ({}): set one of them",
                a.display(),
                b.display()
            ),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    };
    let pf_key_name = if from == "smtpd_tls_chain_files" {
        from
    } else {
        "smtpd_tls_key_file"
    };
    Ok((
        pick(cert, pf_cert, "ssl_cert", from)?,
        pick(key, pf_key, "ssl_key", pf_key_name)?,
    ))
}

fn strip_dovecot_file(v: &Values, key: &str) -> Option<PathBuf> {
    // Dovecot writes `ssl_cert = </path`: "<" means "the contents of".
    v.path(key)
        .map(|p| PathBuf::from(p.to_string_lossy().trim_start_matches('<').trim()))
}

pub(super) fn build(
    entries: &[Entry],
    classes: &BTreeMap<String, (String, String)>,
    files: Vec<PathBuf>,
) -> Result<Config, ConfigError> {
    let v = Values { entries };
    let smtpd_access = access_policy(&v, classes)?;
    let mail_location = v.text("mail_location");
    match mail_location.split_once(':') {
        Some(("maildir", rest)) => {
            check_user_template(rest).map_err(|r| v.err("mail_location", r))?
        }
        _ => {
            return Err(v.err(
                "mail_location",
                format!(
                    "'{mail_location}' is not supported: use maildir:PATH (e.g. maildir:~/Maildir)"
                ),
            ))
        }
    }
    let banner = v.text("smtpd_banner");
    let myhostname = v.text("myhostname");
    if !banner
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(&myhostname))
    {
        return Err(v.err(
            "smtpd_banner",
            format!("'{banner}' must start with the host name ($myhostname = {myhostname}), as RFC 5321 §4.3.1 asks"),
        ));
    }
    if banner.contains(['\r', '\n']) {
        return Err(v.err("smtpd_banner", "must be one line"));
    }
    let protocols = v.list("inet_protocols");
    if protocols.is_empty()
        || protocols
            .iter()
            .any(|p| !matches!(p.as_str(), "all" | "ipv4" | "ipv6"))
    {
        return Err(v.err(
            "inet_protocols",
            format!(
                "'{}': use all, ipv4, ipv6 or \"ipv4, ipv6\"",
                protocols.join(", ")
            ),
        ));
    }
    let pop3_uidl_format = v.text("pop3_uidl_format");
    if pop3_uidl_format.is_empty() {
        return Err(v.err("pop3_uidl_format", "must not be empty"));
    }
    let (ssl_cert, ssl_key) = postfix_tls_files(
        &v,
        strip_dovecot_file(&v, "ssl_cert"),
        strip_dovecot_file(&v, "ssl_key"),
    )?;
    if ssl_cert.is_some() != ssl_key.is_some() {
        let (set, missing) = if ssl_cert.is_some() {
            ("ssl_cert", "ssl_key")
        } else {
            ("ssl_key", "ssl_cert")
        };
        return Err(v.err(
            set,
            format!("is set but {missing} is not (ssl_cert and ssl_key must be set together)"),
        ));
    }
    for (key, path) in [("ssl_cert", &ssl_cert), ("ssl_key", &ssl_key)] {
        if let Some(p) = path {
            if let Err(e) = std::fs::metadata(p) {
                return Err(v.err(key, format!("{}: {e}", p.display())));
            }
        }
    }
    let mut notices = Vec::new();
    let versions = |key: &str,
                    parse: fn(&str) -> Result<super::compat::Versions, String>,
                    notices: &mut Vec<String>| {
        let r = parse(&v.text(key)).map_err(|r| v.err(key, r))?;
        if !r.unavailable.is_empty() && v.entry(key).source != "default" {
            notices.push(format!(
                "{key} (from {}) asks for {}: not available in pigeonpost (rustls speaks TLSv1.2 and TLSv1.3 only); clients that need them cannot connect",
                v.entry(key).source,
                r.unavailable.join(", ")
            ));
        }
        Ok::<_, ConfigError>(r.versions)
    };
    let smtpd_tls_versions = versions(
        "smtpd_tls_protocols",
        super::compat::postfix_protocols,
        &mut notices,
    )?;
    let ssl_versions = versions(
        "ssl_min_protocol",
        super::compat::dovecot_min_protocol,
        &mut notices,
    )?;
    let smtpd_tls_security_level =
        super::compat::server_tls_level(&v.text("smtpd_tls_security_level"))
            .map_err(|r| v.err("smtpd_tls_security_level", r))?;
    let ssl = super::compat::ssl_mode(&v.text("ssl")).map_err(|r| v.err("ssl", r))?;
    if smtpd_tls_security_level == super::compat::ServerTls::Encrypt && ssl_cert.is_none() {
        return Err(v.err(
            "smtpd_tls_security_level",
            "encrypt needs a certificate: set ssl_cert/ssl_key (or smtpd_tls_cert_file/smtpd_tls_key_file)",
        ));
    }
    let auth_username_format = v.text("auth_username_format");
    check_user_template(&auth_username_format).map_err(|r| v.err("auth_username_format", r))?;
    if auth_username_format.contains("%h") || auth_username_format.contains("%{home}") {
        return Err(v.err(
            "auth_username_format",
            "%h is not known before the passdb lookup",
        ));
    }
    let passdb = parse_passdb(&v)?;
    if let PassdbSpec::PasswdFile { path, .. } = &passdb {
        if let Err(e) = std::fs::metadata(path) {
            return Err(v.err("passdb", format!("{}: {e}", path.display())));
        }
    }
    let userdb = parse_userdb(&v)?;
    if let UserdbSpec::PasswdFile { path } = &userdb {
        if let Err(e) = std::fs::metadata(path) {
            return Err(v.err("userdb", format!("{}: {e}", path.display())));
        }
    }
    let smtp_tls_security_level = match v.text("smtp_tls_security_level").as_str() {
        "" | "none" => TlsLevel::None,
        "may" => TlsLevel::May,
        "encrypt" => TlsLevel::Encrypt,
        "verify" | "secure" => TlsLevel::Verify,
        other => {
            return Err(v.err(
                "smtp_tls_security_level",
                format!("unsupported level '{other}' (use none, may, encrypt or verify)"),
            ))
        }
    };
    let log_format = match v.text("log_format").as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => return Err(v.err("log_format", format!("'{other}' is not text or json"))),
    };
    let log_level = v.text("log_level");
    check_log_level(&log_level).map_err(|r| v.err("log_level", r))?;
    tracing_subscriber::EnvFilter::try_new(&log_level)
        .map_err(|e| v.err("log_level", e.to_string()))?;
    let dns_servers = v
        .list("dns_servers")
        .iter()
        .map(|s| parse_dns_server(s).map_err(|r| v.err("dns_servers", r)))
        .collect::<Result<_, _>>()?;
    let listen = Listen {
        smtp: v.listen("listen.smtp")?,
        submission: v.listen("listen.submission")?,
        submissions: v.listen("listen.submissions")?,
        imap: v.listen("listen.imap")?,
        imaps: v.listen("listen.imaps")?,
        pop3: v.listen("listen.pop3")?,
        pop3s: v.listen("listen.pop3s")?,
        lmtp: v.listen("listen.lmtp")?,
        http: v.listen("listen.http")?,
    };
    let acme = acme_settings(&v, &listen)?;
    let (ssl_cert, ssl_key) = match &acme {
        None => (ssl_cert, ssl_key),
        Some(_) if ssl_cert.is_some() => {
            return Err(v.err(
                "acme_domains",
                "is set, and so is ssl_cert (or smtpd_tls_cert_file): with ACME pigeonpost \
                 keeps the certificate in acme_state_directory itself; unset one of them",
            ))
        }
        Some(a) => (
            Some(a.state_directory.join(ACME_CERT)),
            Some(a.state_directory.join(ACME_KEY)),
        ),
    };
    for (key, allowed) in [
        ("dmarc_policy", &["report", "enforce", "off"][..]),
        ("spf_policy", &["report", "reject_fail", "off"][..]),
        ("authenticated_sender_policy", &["owned", "any"][..]),
    ] {
        let value = v.text(key);
        if !allowed.contains(&value.as_str()) {
            return Err(v.err(key, format!("'{value}': use {}", allowed.join(", "))));
        }
    }
    let optional = |key: &str| Some(v.text(key)).filter(|t| !t.is_empty());
    let dkim_key_table = optional("dkim_key_table");
    let dkim_signing_table = optional("dkim_signing_table");
    if dkim_key_table.is_some() != dkim_signing_table.is_some() {
        let missing = if dkim_key_table.is_some() {
            "dkim_signing_table"
        } else {
            "dkim_key_table"
        };
        return Err(v.err(
            missing,
            "dkim_key_table and dkim_signing_table go together: set both or neither",
        ));
    }
    let milters = |key: &str| parse_milters(&v.entry(key).value).map_err(|r| v.err(key, r));
    let smtpd_milters = milters("smtpd_milters")?;
    let non_smtpd_milters = milters("non_smtpd_milters")?;
    let milter_protocol: u32 = v.count("milter_protocol")?;
    if !(2..=6).contains(&milter_protocol) {
        return Err(v.err("milter_protocol", format!("{milter_protocol}: use 2 to 6")));
    }
    let milter = MilterSettings {
        protocol: milter_protocol,
        default_action: parse_milter_default(&v.text("milter_default_action"))
            .map_err(|r| v.err("milter_default_action", r))?,
        connect_timeout: nonzero_time(&v, "milter_connect_timeout")?,
        command_timeout: nonzero_time(&v, "milter_command_timeout")?,
        content_timeout: nonzero_time(&v, "milter_content_timeout")?,
        connect_macros: v.list("milter_connect_macros"),
        helo_macros: v.list("milter_helo_macros"),
        mail_macros: v.list("milter_mail_macros"),
        rcpt_macros: v.list("milter_rcpt_macros"),
        data_macros: v.list("milter_data_macros"),
        eoh_macros: v.list("milter_end_of_header_macros"),
        eod_macros: v.list("milter_end_of_data_macros"),
    };
    let myhostname = v.text("myhostname");
    if myhostname.is_empty() || myhostname.contains(char::is_whitespace) {
        return Err(v.err("myhostname", format!("'{myhostname}' is not a host name")));
    }
    Ok(Config {
        myhostname,
        mydomain: v.text("mydomain"),
        myorigin: v.text("myorigin"),
        inet_interfaces: v.list("inet_interfaces"),
        mydestination: v.list("mydestination"),
        mynetworks: v.networks("mynetworks")?,
        relay_domains: v.list("relay_domains"),
        home_mailbox: v.text("home_mailbox"),
        mail_spool_directory: PathBuf::from(v.text("mail_spool_directory")),
        virtual_mailbox_domains: v.list("virtual_mailbox_domains"),
        virtual_alias_domains: v.list("virtual_alias_domains"),
        virtual_mailbox_base: v.path("virtual_mailbox_base"),
        virtual_mailbox_maps: v.list("virtual_mailbox_maps"),
        virtual_alias_maps: v.list("virtual_alias_maps"),
        virtual_uid_maps: parse_id_maps(&v, "virtual_uid_maps")?,
        virtual_gid_maps: parse_id_maps(&v, "virtual_gid_maps")?,
        virtual_minimum_uid: v.count("virtual_minimum_uid")?,
        virtual_mailbox_passdb_users: v.bool("virtual_mailbox_passdb_users")?,
        alias_maps: v.list("alias_maps"),
        recipient_delimiter: v.text("recipient_delimiter"),
        message_size_limit: v.count("message_size_limit")?,
        smtpd_recipient_limit: v.count("smtpd_recipient_limit")?,
        smtpd_timeout: v.time("smtpd_timeout")?,
        smtpd_client_connection_count_limit: v.count("smtpd_client_connection_count_limit")?,
        smtpd_client_event_limit_exceptions: v.networks("smtpd_client_event_limit_exceptions")?,
        anvil_rate_time_unit: nonzero_time(&v, "anvil_rate_time_unit")?,
        smtpd_client_connection_rate_limit: v.count("smtpd_client_connection_rate_limit")?,
        smtpd_client_message_rate_limit: v.count("smtpd_client_message_rate_limit")?,
        smtpd_client_recipient_rate_limit: v.count("smtpd_client_recipient_rate_limit")?,
        smtpd_client_new_tls_session_rate_limit: v
            .count("smtpd_client_new_tls_session_rate_limit")?,
        smtpd_client_auth_rate_limit: v.count("smtpd_client_auth_rate_limit")?,
        smtpd_min_data_rate: v.count("smtpd_min_data_rate")?,
        smtpd_access,
        notices,
        smtpd_banner: banner,
        relayhost: v.text("relayhost"),
        transport_maps: v.list("transport_maps"),
        queue_directory: PathBuf::from(v.text("queue_directory")),
        minimal_backoff_time: v.time("minimal_backoff_time")?,
        maximal_backoff_time: v.time("maximal_backoff_time")?,
        maximal_queue_lifetime: v.time("maximal_queue_lifetime")?,
        delay_warning_time: v.time("delay_warning_time")?,
        smtp_tls_security_level,
        smtp_sasl_password_maps: v.list("smtp_sasl_password_maps"),
        default_destination_concurrency_limit: v.count("default_destination_concurrency_limit")?,
        smtpd_milters,
        non_smtpd_milters,
        milter,
        protocols: one_of(&v, "protocols", &["imap", "pop3", "lmtp", "none"])?,
        mail_location,
        pop3_uidl_format,
        auth_mechanisms: one_of(&v, "auth_mechanisms", &["plain", "login", "cram-md5"])?,
        passdb,
        userdb,
        disable_plaintext_auth: v.bool("disable_plaintext_auth")?,
        auth_failure_delay: v.time("auth_failure_delay")?,
        mail_max_userip_connections: v.count("mail_max_userip_connections")?,
        quota: quota_settings(&v)?,
        auth_failure_ban_threshold: v.count("auth_failure_ban_threshold")?,
        auth_failure_ban_window: nonzero_time(&v, "auth_failure_ban_window")?,
        auth_failure_ban_time: v.time("auth_failure_ban_time")?,
        auth_failure_ban_exceptions: v.networks("auth_failure_ban_exceptions")?,
        login_timeout: nonzero_time(&v, "login_timeout")?,
        ssl_cert,
        ssl_key,
        smtpd_tls_security_level,
        smtpd_tls_auth_only: v.bool("smtpd_tls_auth_only")?,
        smtpd_tls_versions,
        ssl,
        ssl_versions,
        first_valid_uid: v.count("first_valid_uid")?,
        first_valid_gid: v.count("first_valid_gid")?,
        auth_username_format,
        listen,
        acme,
        dns_servers,
        dmarc_policy: v.text("dmarc_policy"),
        spf_policy: v.text("spf_policy"),
        autoconfig_hostname: v.text("autoconfig_hostname"),
        authenticated_senders_owned: v.text("authenticated_sender_policy") == "owned",
        mail_auth_mynetworks: v.bool("mail_auth_mynetworks")?,
        dkim_key_table,
        dkim_signing_table,
        proxy_trusted_networks: v.networks("proxy_trusted_networks")?,
        proxy_protocol: one_of(&v, "proxy_protocol", &super::LISTENERS)?,
        log_format,
        log_level,
        max_connections: v.count("max_connections")?,
        shutdown_timeout: v.time("shutdown_timeout")?,
        files,
        sources: entries.iter().map(|e| (e.key, e.source.clone())).collect(),
    })
}

/// The certificate chain and its key in `acme_state_directory`.
pub const ACME_CERT: &str = "cert.pem";
pub const ACME_KEY: &str = "key.pem";

/// `acme_*`, when `acme_domains` is set.
fn acme_settings(v: &Values, listen: &Listen) -> Result<Option<AcmeSettings>, ConfigError> {
    let domains: Vec<String> = v
        .list("acme_domains")
        .iter()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    if domains.is_empty() {
        return Ok(None);
    }
    for d in &domains {
        let ok = d.contains('.')
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(v.err(
                "acme_domains",
                format!(
                    "'{d}' is not a fully qualified host name (wildcards need dns-01, which \
                     pigeonpost does not do)"
                ),
            ));
        }
    }
    let directory = v.text("acme_directory");
    if !directory.starts_with("https://") {
        return Err(v.err(
            "acme_directory",
            format!("'{directory}' is not an https:// URL (RFC 8555 §6.1)"),
        ));
    }
    let challenge = match v.text("acme_challenge").as_str() {
        "http-01" => AcmeChallenge::Http01,
        "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
        other => {
            return Err(v.err(
                "acme_challenge",
                format!("'{other}' is not http-01 or tls-alpn-01"),
            ))
        }
    };
    if challenge == AcmeChallenge::Http01 && listen.http.is_empty() {
        return Err(v.err(
            "acme_challenge",
            "http-01 is answered on listen.http, which is off; set listen.http (port 80) or use \
             tls-alpn-01",
        ));
    }
    if challenge == AcmeChallenge::TlsAlpn01
        && listen.submissions.is_empty()
        && listen.imaps.is_empty()
        && listen.pop3s.is_empty()
    {
        return Err(v.err(
            "acme_challenge",
            "tls-alpn-01 is answered on the implicit-TLS listeners (submissions, imaps, pop3s), \
             and all are off",
        ));
    }
    let state_directory = v
        .path("acme_state_directory")
        .unwrap_or_else(|| PathBuf::from(v.text("queue_directory")).join("acme"));
    let ca_file = v.path("acme_ca_file");
    if let Some(p) = &ca_file {
        if let Err(e) = std::fs::metadata(p) {
            return Err(v.err("acme_ca_file", format!("{}: {e}", p.display())));
        }
    }
    let email = Some(v.text("acme_email")).filter(|e| !e.is_empty());
    if let Some(e) = &email {
        if !e.contains('@') || e.contains(char::is_whitespace) {
            return Err(v.err("acme_email", format!("'{e}' is not a mail address")));
        }
    }
    Ok(Some(AcmeSettings {
        domains,
        email,
        directory,
        challenge,
        state_directory,
        ca_file,
        renew_before: v.time("acme_renew_before")?,
        retry_time: nonzero_time(v, "acme_retry_time")?,
    }))
}

/// The quota plugin's keys (Dovecot's names and syntax).
fn quota_settings(v: &Values) -> Result<Option<super::quota::QuotaSettings>, ConfigError> {
    use super::quota;
    let backend = v.text("quota");
    let rule = v.text("quota_rule");
    if backend.trim().is_empty() {
        if !rule.trim().is_empty() {
            return Err(v.err(
                "quota_rule",
                "needs quota = \"maildir:User quota\" (the quota backend) to take effect",
            ));
        }
        return Ok(None);
    }
    let root_name = quota::parse_backend(backend.trim()).map_err(|e| v.err("quota", e))?;
    let rule = if rule.trim().is_empty() {
        None
    } else {
        Some(quota::parse_rule(&rule).map_err(|e| v.err("quota_rule", e))?)
    };
    Ok(Some(quota::QuotaSettings {
        root_name,
        rule,
        grace: quota::parse_grace(&v.text("quota_grace")).map_err(|e| v.err("quota_grace", e))?,
        full_tempfail: v.bool("quota_full_tempfail")?,
    }))
}

/// A reply code key: 4xx or 5xx.
fn reply_code(v: &Values, key: &str) -> Result<u16, ConfigError> {
    let n: u16 = v.count(key)?;
    if !(400..600).contains(&n) {
        return Err(v.err(key, format!("{n} is not a 4xx or 5xx reply code")));
    }
    Ok(n)
}

/// The restriction lists, classes and their settings (SMTPD_ACCESS_README).
fn access_policy(
    v: &Values,
    classes: &BTreeMap<String, (String, String)>,
) -> Result<AccessPolicy, ConfigError> {
    let names: Vec<String> = classes.keys().cloned().collect();
    let list = |key: &str| rx::parse_list(&v.entry(key).value, &names).map_err(|r| v.err(key, r));
    let mut parsed_classes = BTreeMap::new();
    for (name, (text, source)) in classes {
        let l = rx::parse_list(text, &names).map_err(|reason| ConfigError {
            key: Some(name.clone()),
            source: source.clone(),
            reason,
        })?;
        parsed_classes.insert(name.clone(), l);
    }
    let lists = Restrictions {
        client: list("smtpd_client_restrictions")?,
        helo: list("smtpd_helo_restrictions")?,
        sender: list("smtpd_sender_restrictions")?,
        relay: list("smtpd_relay_restrictions")?,
        recipient: list("smtpd_recipient_restrictions")?,
        data: list("smtpd_data_restrictions")?,
        end_of_data: list("smtpd_end_of_data_restrictions")?,
        classes: parsed_classes,
    };
    rx::check_relay_guard(&lists).map_err(|(key, reason)| v.err(key, reason))?;
    if !v.bool("smtpd_reject_unlisted_recipient")? {
        return Err(v.err(
            "smtpd_reject_unlisted_recipient",
            "'no' is not supported: pigeonpost always refuses unknown users of its own \
             domains at RCPT (mail it cannot deliver is never accepted)",
        ));
    }
    let codes = Codes {
        maps_rbl_reject: reply_code(v, "maps_rbl_reject_code")?,
        access_map_reject: reply_code(v, "access_map_reject_code")?,
        access_map_defer: reply_code(v, "access_map_defer_code")?,
        reject: reply_code(v, "reject_code")?,
        defer: reply_code(v, "defer_code")?,
        relay_domains_reject: reply_code(v, "relay_domains_reject_code")?,
        unknown_address_reject: reply_code(v, "unknown_address_reject_code")?,
        unknown_client_reject: reply_code(v, "unknown_client_reject_code")?,
        unknown_hostname_reject: reply_code(v, "unknown_hostname_reject_code")?,
        invalid_hostname_reject: reply_code(v, "invalid_hostname_reject_code")?,
        non_fqdn_reject: reply_code(v, "non_fqdn_reject_code")?,
        plaintext_reject: reply_code(v, "plaintext_reject_code")?,
    };
    let policy = PolicyDefaults {
        timeout: v.time("smtpd_policy_service_timeout")?,
        default_action: v.text("smtpd_policy_service_default_action"),
        max_idle: v.time("smtpd_policy_service_max_idle")?,
        max_ttl: v.time("smtpd_policy_service_max_ttl")?,
        request_limit: v.count("smtpd_policy_service_request_limit")?,
        try_limit: v.count::<u32>("smtpd_policy_service_try_limit")?.max(1),
        retry_delay: v.time("smtpd_policy_service_retry_delay")?,
        policy_context: v.text("smtpd_policy_service_policy_context"),
    };
    let screen = rx::Screen {
        enabled: v.bool("postscreen")?,
        sites: v
            .list("postscreen_dnsbl_sites")
            .iter()
            .map(|s| rx::Site::parse(s).map_err(|r| v.err("postscreen_dnsbl_sites", r)))
            .collect::<Result<_, _>>()?,
        threshold: v
            .text("postscreen_dnsbl_threshold")
            .parse()
            .map_err(|_| v.err("postscreen_dnsbl_threshold", "not a number"))?,
        dnsbl_action: rx::ScreenAction::parse(&v.text("postscreen_dnsbl_action"))
            .map_err(|r| v.err("postscreen_dnsbl_action", r))?,
        greet_action: rx::ScreenAction::parse(&v.text("postscreen_greet_action"))
            .map_err(|r| v.err("postscreen_greet_action", r))?,
        greet_wait: v.time("postscreen_greet_wait")?,
        dnsbl_ttl: v.time("postscreen_dnsbl_ttl")?,
        greet_ttl: v.time("postscreen_greet_ttl")?,
    };
    Ok(AccessPolicy {
        screen,
        lists,
        codes,
        delay_reject: v.bool("smtpd_delay_reject")?,
        helo_required: v.bool("smtpd_helo_required")?,
        sender_login_maps: v.list("smtpd_sender_login_maps"),
        reject_unlisted_sender: v.bool("smtpd_reject_unlisted_sender")?,
        rbl_reply_maps: v.list("rbl_reply_maps"),
        default_rbl_reply: v.entry("default_rbl_reply").value.clone(),
        policy,
    })
}

fn parse_milter_default(s: &str) -> Result<MilterDefault, String> {
    match s {
        "tempfail" => Ok(MilterDefault::Tempfail),
        "accept" => Ok(MilterDefault::Accept),
        "reject" => Ok(MilterDefault::Reject),
        "quarantine" => Ok(MilterDefault::Quarantine),
        other => Err(format!(
            "'{other}': use tempfail, accept, reject or quarantine"
        )),
    }
}

/// A milter address in Postfix syntax (MILTER_README "Configuring
/// Postfix"): `inet:host:port`, `inet:[ipv6]:port`, `unix:/path`,
/// `local:/path`, or a bare `/path`.
fn parse_milter_endpoint(s: &str) -> Result<MilterEndpoint, String> {
    if let Some(path) = s
        .strip_prefix("unix:")
        .or_else(|| s.strip_prefix("local:"))
        .or_else(|| s.starts_with('/').then_some(s))
    {
        if path.is_empty() {
            return Err(format!("'{s}': no socket path"));
        }
        return Ok(MilterEndpoint::Unix(PathBuf::from(path)));
    }
    let Some(rest) = s.strip_prefix("inet:") else {
        return Err(format!("'{s}': use inet:host:port or unix:/path"));
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}': no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{s}': '{port}' is not a port"))?;
    if host.is_empty() {
        return Err(format!("'{s}': no host"));
    }
    Ok(MilterEndpoint::Inet(host.to_string(), port))
}

/// `smtpd_milters`: milters separated by commas or whitespace, each a
/// bare address or `{ address, name=value, ... }` (Postfix 3.0 per-milter
/// settings: default_action, connect_timeout, command_timeout,
/// content_timeout).
pub fn parse_milters(value: &str) -> Result<Vec<MilterSpec>, String> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            break;
        }
        if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').ok_or("'{' without '}'")?;
            out.push(parse_milter_braces(&inner[..end])?);
            rest = &inner[end + 1..];
        } else {
            let end = rest
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(rest.len());
            let word = &rest[..end];
            out.push(MilterSpec {
                name: word.to_string(),
                endpoint: parse_milter_endpoint(word)?,
                default_action: None,
                connect_timeout: None,
                command_timeout: None,
                content_timeout: None,
            });
            rest = &rest[end..];
        }
    }
    Ok(out)
}

fn parse_milter_braces(inner: &str) -> Result<MilterSpec, String> {
    let mut spec: Option<MilterSpec> = None;
    let mut settings = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            // `name = inet:...` names the address too.
            Some((k, v)) if k.trim() != "name" => {
                settings.push((k.trim().to_string(), v.trim().to_string()))
            }
            other => {
                let addr = other.map_or(part, |(_, v)| v.trim());
                if spec.is_some() {
                    return Err(format!("'{{{inner}}}': more than one milter address"));
                }
                spec = Some(MilterSpec {
                    name: addr.to_string(),
                    endpoint: parse_milter_endpoint(addr)?,
                    default_action: None,
                    connect_timeout: None,
                    command_timeout: None,
                    content_timeout: None,
                });
            }
        }
    }
    let mut spec = spec.ok_or_else(|| format!("'{{{inner}}}': no milter address"))?;
    for (k, v) in settings {
        match k.as_str() {
            "default_action" => spec.default_action = Some(parse_milter_default(&v)?),
            "connect_timeout" => spec.connect_timeout = Some(parse_time(&v, 's')?),
            "command_timeout" => spec.command_timeout = Some(parse_time(&v, 's')?),
            "content_timeout" => spec.content_timeout = Some(parse_time(&v, 's')?),
            "protocol" => {}
            other => return Err(format!("unknown milter setting '{other}'")),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_levels_that_would_log_nothing_are_refused() {
        for ok in [
            "info",
            "WARN",
            "debug,pigeonpost::smtp=trace",
            "pigeonpost=debug",
            "off",
            "3",
        ] {
            assert!(super::check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["verbose", "warning", "info,loud"] {
            let e = super::check_log_level(bad).unwrap_err();
            assert!(e.contains("is not a log level"), "{e}");
        }
    }

    use super::*;

    #[test]
    fn milter_lists() {
        let m = parse_milters(
            "inet:127.0.0.1:11332, unix:/run/x.sock { inet:[::1]:8891, default_action = accept, command_timeout=5s }",
        )
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0].endpoint,
            MilterEndpoint::Inet("127.0.0.1".into(), 11332)
        );
        assert_eq!(m[1].endpoint, MilterEndpoint::Unix("/run/x.sock".into()));
        assert_eq!(m[2].endpoint, MilterEndpoint::Inet("::1".into(), 8891));
        assert_eq!(m[2].default_action, Some(MilterDefault::Accept));
        assert_eq!(m[2].command_timeout, Some(Duration::from_secs(5)));
        let named = parse_milters("{ name = inet:h:1, default_action = reject }").unwrap();
        assert_eq!(named[0].endpoint, MilterEndpoint::Inet("h".into(), 1));
        assert!(parse_milters("").unwrap().is_empty());
        for bad in [
            "inet:host",
            "tcp:1.2.3.4:5",
            "{ inet:h:1, colour=red }",
            "{ inet:h:1",
            "{ default_action=accept }",
        ] {
            assert!(parse_milters(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("300s", 's').unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_time("5d", 's').unwrap(),
            Duration::from_secs(5 * 86400)
        );
        assert_eq!(
            parse_time("5", 'd').unwrap(),
            Duration::from_secs(5 * 86400)
        );
        assert_eq!(
            parse_time("2w", 's').unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert!(parse_time("5x", 's').is_err());
        assert!(parse_time("s", 's').is_err());
        assert!(parse_time("99999999999999999999w", 's').is_err());
    }

    #[test]
    fn dovecot_times() {
        assert_eq!(parse_time("2 secs", 's').unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_time("30 mins", 's').unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            parse_time("1 hour", 's').unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse_time("250 msecs", 's').unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_time("0", 's').unwrap(), Duration::ZERO);
        assert!(parse_time("2 fortnights", 's').is_err());
    }

    #[test]
    fn networks() {
        assert_eq!(
            parse_network("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_network("[::1]/128").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_network("[2001:db8::]/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            parse_network("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("10.0.0.1/8")
            .unwrap_err()
            .contains("host bits"));
        assert!(parse_network("!10.0.0.0/8").is_err());
        assert!(parse_network("hash:/etc/postfix/net").is_err());
        assert!(parse_network("example.com").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:25").unwrap().port(), 25);
        assert!(parse_listen("[::1]:143").unwrap().is_ipv6());
        assert!(parse_listen("localhost:25").is_err());
        assert!(parse_listen("127.0.0.1").is_err());
    }
}
