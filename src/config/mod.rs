//! Layered configuration (ARCHITECTURE.md, "compatibility contract"): built-in defaults < config file <
//! `conf.d/*.toml` < `PIGEONPOST_*` environment, Postfix `$name` expansion,
//! validation into a typed [`Config`], and the provenance of every value.

pub mod compat;
pub mod expand;
pub mod keys;
pub mod layers;
mod parse;
pub mod print;
pub mod quota;
pub mod restrictions;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use compat::{ServerTls, SslMode, TlsVersions};
pub use parse::{parse_milters, PassdbSpec, TlsLevel, UserdbSpec};

/// A configuration problem, reported as one line naming key, source and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: Option<String>,
    pub source: String,
    pub reason: String,
}

impl ConfigError {
    fn file(path: &Path, reason: &str) -> Self {
        ConfigError {
            key: None,
            source: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(
                f,
                "config error: {k} (from {}): {}",
                self.source, self.reason
            ),
            None => write!(f, "config error: {}: {}", self.source, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where to read configuration from. `env` is normally `std::env::vars()`;
/// tests pass their own.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    pub config_path: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl LoadOptions {
    pub fn from_process(config_path: Option<PathBuf>) -> Self {
        LoadOptions {
            config_path,
            env: std::env::vars().collect(),
        }
    }
}

/// One resolved setting, for `pigeonpost config`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: &'static str,
    /// As written (before `$name` expansion).
    pub raw: String,
    /// After expansion.
    pub value: String,
    pub source: String,
}

/// The listeners, each a list of addresses; an empty list disables it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listen {
    pub smtp: Vec<SocketAddr>,
    pub submission: Vec<SocketAddr>,
    pub submissions: Vec<SocketAddr>,
    pub imap: Vec<SocketAddr>,
    pub imaps: Vec<SocketAddr>,
    pub pop3: Vec<SocketAddr>,
    pub pop3s: Vec<SocketAddr>,
    pub lmtp: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
}

/// Every listener name, in the order they are started and printed.
pub const LISTENERS: [&str; 9] = [
    "smtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "lmtp",
    "http",
];

/// A listener, named as in `listen.<name>`: the one place that knows which
/// protocol each name speaks and whether it starts with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    Smtp,
    Submission,
    Submissions,
    Imap,
    Imaps,
    Pop3,
    Pop3s,
    Lmtp,
    Http,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
    Lmtp,
    Http,
}

impl Protocol {
    /// The name Dovecot's `protocols` uses (`imap`, `pop3`, `lmtp`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Lmtp => "lmtp",
            Protocol::Http => "http",
        }
    }
}

impl Listener {
    /// Every listener, in the order of [`LISTENERS`].
    pub const ALL: [Listener; 9] = [
        Listener::Smtp,
        Listener::Submission,
        Listener::Submissions,
        Listener::Imap,
        Listener::Imaps,
        Listener::Pop3,
        Listener::Pop3s,
        Listener::Lmtp,
        Listener::Http,
    ];

    pub fn name(self) -> &'static str {
        LISTENERS[self as usize]
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Listener::Smtp | Listener::Submission | Listener::Submissions => Protocol::Smtp,
            Listener::Imap | Listener::Imaps => Protocol::Imap,
            Listener::Pop3 | Listener::Pop3s => Protocol::Pop3,
            Listener::Lmtp => Protocol::Lmtp,
            Listener::Http => Protocol::Http,
        }
    }

    /// TLS from the first byte (RFC 8314), not STARTTLS.
    pub fn implicit_tls(self) -> bool {
        matches!(
            self,
            Listener::Submissions | Listener::Imaps | Listener::Pop3s
        )
    }

    /// Mail submission (587, 465; RFC 6409): TLS and AUTH before MAIL.
    pub fn is_submission(self) -> bool {
        matches!(self, Listener::Submission | Listener::Submissions)
    }
}

impl Listen {
    /// (listener, addresses) for every listener, in a fixed order.
    pub fn all(&self) -> [(Listener, &[SocketAddr]); 9] {
        let addrs: [&[SocketAddr]; 9] = [
            &self.smtp,
            &self.submission,
            &self.submissions,
            &self.imap,
            &self.imaps,
            &self.pop3,
            &self.pop3s,
            &self.lmtp,
            &self.http,
        ];
        std::array::from_fn(|i| (Listener::ALL[i], addrs[i]))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A Postfix uid/gid source: `static:N` or lookup tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMap {
    Static(u32),
    Table(String),
}

/// What to do when a milter fails (Postfix `milter_default_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MilterDefault {
    Tempfail,
    Accept,
    Reject,
    Quarantine,
}

/// One milter of `smtpd_milters`: where it listens and its own settings
/// (Postfix 3.0's `{ inet:host:port, default_action=accept, ... }` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterSpec {
    /// As written: `inet:host:port` or `unix:/path`.
    pub name: String,
    pub endpoint: MilterEndpoint,
    pub default_action: Option<MilterDefault>,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    pub content_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterEndpoint {
    Inet(String, u16),
    Unix(PathBuf),
}

/// The `milter_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterSettings {
    pub protocol: u32,
    pub default_action: MilterDefault,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub content_timeout: Duration,
    pub connect_macros: Vec<String>,
    pub helo_macros: Vec<String>,
    pub mail_macros: Vec<String>,
    pub rcpt_macros: Vec<String>,
    pub data_macros: Vec<String>,
    pub eoh_macros: Vec<String>,
    pub eod_macros: Vec<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub myhostname: String,
    pub mydomain: String,
    pub myorigin: String,
    pub inet_interfaces: Vec<String>,
    pub mydestination: Vec<String>,
    pub mynetworks: Vec<IpNet>,
    pub relay_domains: Vec<String>,
    pub home_mailbox: String,
    pub mail_spool_directory: PathBuf,
    pub virtual_mailbox_domains: Vec<String>,
    pub virtual_alias_domains: Vec<String>,
    pub virtual_mailbox_base: Option<PathBuf>,
    pub virtual_mailbox_maps: Vec<String>,
    pub virtual_alias_maps: Vec<String>,
    pub virtual_uid_maps: Vec<IdMap>,
    pub virtual_gid_maps: Vec<IdMap>,
    pub virtual_minimum_uid: u32,
    /// `virtual_mailbox_passdb_users`: passdb logins are virtual mailboxes
    /// too (smtp/router.rs).
    pub virtual_mailbox_passdb_users: bool,
    pub alias_maps: Vec<String>,
    pub recipient_delimiter: String,
    pub message_size_limit: u64,
    pub smtpd_recipient_limit: usize,
    pub smtpd_timeout: Duration,
    pub smtpd_client_connection_count_limit: usize,
    pub smtpd_client_event_limit_exceptions: Vec<IpNet>,
    pub anvil_rate_time_unit: Duration,
    pub smtpd_client_connection_rate_limit: u32,
    pub smtpd_client_message_rate_limit: u32,
    pub smtpd_client_recipient_rate_limit: u32,
    pub smtpd_client_new_tls_session_rate_limit: u32,
    pub smtpd_client_auth_rate_limit: u32,
    pub smtpd_min_data_rate: u64,
    /// `smtpd_*_restrictions`, classes and their settings.
    pub smtpd_access: restrictions::AccessPolicy,
    /// One line per key that was set but is not needed by pigeonpost.
    pub notices: Vec<String>,
    /// The SMTP greeting text (`smtpd_banner`).
    pub smtpd_banner: String,
    pub relayhost: String,
    pub transport_maps: Vec<String>,
    pub queue_directory: PathBuf,
    pub minimal_backoff_time: Duration,
    pub maximal_backoff_time: Duration,
    pub maximal_queue_lifetime: Duration,
    pub delay_warning_time: Duration,
    pub smtp_tls_security_level: TlsLevel,
    pub smtp_sasl_password_maps: Vec<String>,
    pub default_destination_concurrency_limit: usize,
    /// `smtpd_milters`, in order.
    pub smtpd_milters: Vec<MilterSpec>,
    pub non_smtpd_milters: Vec<MilterSpec>,
    /// `milter_protocol`, `milter_default_action`, timeouts and macros.
    pub milter: MilterSettings,
    pub protocols: Vec<String>,
    pub mail_location: String,
    pub pop3_uidl_format: String,
    pub auth_mechanisms: Vec<String>,
    pub passdb: PassdbSpec,
    pub userdb: UserdbSpec,
    pub disable_plaintext_auth: bool,
    pub auth_failure_delay: Duration,
    pub mail_max_userip_connections: usize,
    /// `quota`, `quota_rule`, `quota_grace`, `quota_full_tempfail`; `None`
    /// when `quota` is empty (no accounting, as without Dovecot's plugin).
    pub quota: Option<quota::QuotaSettings>,
    pub auth_failure_ban_threshold: u32,
    pub auth_failure_ban_window: Duration,
    pub auth_failure_ban_time: Duration,
    pub auth_failure_ban_exceptions: Vec<IpNet>,
    pub login_timeout: Duration,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    /// `smtpd_tls_security_level` of the `smtp` listener.
    pub smtpd_tls_security_level: ServerTls,
    /// `smtpd_tls_auth_only`: no SMTP AUTH before TLS, not even locally.
    pub smtpd_tls_auth_only: bool,
    /// `smtpd_tls_protocols`: TLS versions of the SMTP listeners.
    pub smtpd_tls_versions: TlsVersions,
    /// Dovecot `ssl`: TLS for IMAP and POP3.
    pub ssl: SslMode,
    /// `ssl_min_protocol`: TLS versions of the IMAP and POP3 listeners.
    pub ssl_versions: TlsVersions,
    /// IMAP/POP3 refuse users with a lower uid / gid.
    pub first_valid_uid: u32,
    pub first_valid_gid: u32,
    /// `auth_username_format`: applied to a login name before the passdb lookup.
    pub auth_username_format: String,
    pub listen: Listen,
    /// `acme_*`: certificates from an ACME server; `ssl_cert`/`ssl_key` then point into its state directory.
    pub acme: Option<AcmeSettings>,
    pub dns_servers: Vec<SocketAddr>,
    /// `report`, `enforce` or `off` (checked by `mailauth::policy`).
    pub dmarc_policy: String,
    /// `report`, `reject_fail` or `off`.
    pub spf_policy: String,
    /// The host name clients are told to connect to (server/autoconfig.rs).
    pub autoconfig_hostname: String,
    /// `authenticated_sender_policy = owned`: an authenticated client may
    /// only send as addresses its login owns.
    pub authenticated_senders_owned: bool,
    pub mail_auth_mynetworks: bool,
    /// OpenDKIM data sets (`refile:/path`, `file:/path` or `/path`).
    pub dkim_key_table: Option<String>,
    pub dkim_signing_table: Option<String>,
    pub proxy_trusted_networks: Vec<IpNet>,
    /// Listener names that expect a PROXY protocol header.
    pub proxy_protocol: Vec<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    /// The files this configuration was read from (for reload and display).
    pub files: Vec<PathBuf>,
    /// Where each key's value came from ("default", a file, an environment variable).
    pub sources: HashMap<&'static str, String>,
}

/// A loaded configuration plus the provenance of every key.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub entries: Vec<Entry>,
}

/// Reads, expands and validates the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let (path, explicit) = layers::config_path(opts.config_path.as_deref(), &opts.env);
    let files = layers::config_files(&path, explicit)?;
    let given = layers::read_layers(&files, &opts.env)?;
    let entries = resolve(&given)?;
    let (classes, notices) = restriction_classes(&given, &entries)?;
    let mut config = parse::build(&entries, &classes, files)?;
    config.notices.extend(notices);
    Ok(Loaded { config, entries })
}

/// Classes by name: (expanded list, where it was set).
type Classes = BTreeMap<String, (String, String)>;

/// The restriction classes (RESTRICTION_CLASS_README): keys of their own,
/// named in `smtpd_restriction_classes`, each holding a restriction list;
/// and a note for each key pigeonpost does not need
/// ([`keys::NOT_NEEDED`]). Any other key pigeonpost does not know is an error.
fn restriction_classes(
    given: &BTreeMap<String, layers::RawValue>,
    entries: &[Entry],
) -> Result<(Classes, Vec<String>), ConfigError> {
    let entry = |k: &str| entries.iter().find(|e| e.key == k).expect("known key");
    let names = expand::split_list(&entry("smtpd_restriction_classes").value);
    let raw: HashMap<String, String> = entries
        .iter()
        .map(|e| (e.key.to_string(), e.raw.clone()))
        .collect();
    let mut out = BTreeMap::new();
    let mut notices = Vec::new();
    for (key, value) in given.iter().filter(|(_, v)| !v.known) {
        if let Some((_, why)) = keys::NOT_NEEDED.iter().find(|(k, _)| k == key) {
            notices.push(format!(
                "{key} (from {}) is not needed by pigeonpost: {why}; ignored",
                value.source
            ));
            continue;
        }
        if !names.contains(key) {
            return Err(layers::unknown_key(key, value));
        }
        let text = expand::expand_postfix(&value.text, &raw).map_err(|e| ConfigError {
            key: Some(key.clone()),
            source: value.source.clone(),
            reason: e.to_string(),
        })?;
        out.insert(key.clone(), (text, value.source.clone()));
    }
    for name in &names {
        if keys::find(name).is_some() {
            return Err(ConfigError {
                key: Some("smtpd_restriction_classes".into()),
                source: entry("smtpd_restriction_classes").source.clone(),
                reason: format!("'{name}' is a configuration key; a class needs a name of its own"),
            });
        }
        if !out.contains_key(name) {
            return Err(ConfigError {
                key: Some("smtpd_restriction_classes".into()),
                source: entry("smtpd_restriction_classes").source.clone(),
                reason: format!("names the class '{name}', but no '{name} = …' setting defines it"),
            });
        }
    }
    Ok((out, notices))
}

/// Applies defaults and `$name` expansion to every known key.
fn resolve(given: &BTreeMap<String, layers::RawValue>) -> Result<Vec<Entry>, ConfigError> {
    // Raw text of every Postfix parameter, for `$name` lookups.
    let mut raw: HashMap<String, String> = HashMap::new();
    // Certificate paths may name systemd's credentials directory.
    let credentials_dir = std::env::var("CREDENTIALS_DIRECTORY").ok();
    let credentials = |def: &keys::KeyDef, text: String| {
        if !expand::CREDENTIAL_KEYS.contains(&def.name) {
            return Ok(text);
        }
        expand::expand_credentials(&text, credentials_dir.as_deref()).map_err(|e| ConfigError {
            key: Some(def.name.to_string()),
            source: given
                .get(def.name)
                .map(|v| v.source.clone())
                .unwrap_or_else(|| "default".to_string()),
            reason: e.to_string(),
        })
    };
    for def in keys::KEYS
        .iter()
        .filter(|d| d.family == keys::Family::Postfix)
    {
        let text = given
            .get(def.name)
            .map(|v| v.text.clone())
            .unwrap_or_else(|| def.default.to_string());
        raw.insert(def.name.to_string(), credentials(def, text)?);
    }
    let expand = |key: &str, text: &str, raw: &HashMap<String, String>, source: &str| {
        expand::expand_postfix(text, raw).map_err(|e| ConfigError {
            key: Some(key.to_string()),
            source: source.to_string(),
            reason: e.to_string(),
        })
    };
    let source_of = |key: &str| {
        given
            .get(key)
            .map(|v| v.source.clone())
            .unwrap_or_else(|| "default".to_string())
    };

    // Computed defaults (postconf(5)): myhostname from the system,
    // mydomain from myhostname.
    if !given.contains_key("myhostname") {
        raw.insert("myhostname".into(), system_hostname());
    }
    if !given.contains_key("mydomain") {
        let host = expand(
            "myhostname",
            &raw["myhostname"].clone(),
            &raw,
            &source_of("myhostname"),
        )?;
        let domain = match host.split_once('.') {
            Some((_, rest)) if !rest.is_empty() => rest.to_string(),
            _ => "localdomain".to_string(),
        };
        raw.insert("mydomain".into(), domain);
    }

    let mut entries = Vec::with_capacity(keys::KEYS.len());
    for def in keys::KEYS {
        let source = source_of(def.name);
        let text = match def.family {
            keys::Family::Postfix => raw[def.name].clone(),
            _ => credentials(
                def,
                given
                    .get(def.name)
                    .map(|v| v.text.clone())
                    .unwrap_or_else(|| def.default.to_string()),
            )?,
        };
        let value = match (def.family, def.kind) {
            (_, keys::Kind::Template) => text.clone(),
            (keys::Family::Postfix, _) => expand(def.name, &text, &raw, &source)?,
            // Our own lists may name Postfix parameters (`$mynetworks`).
            (keys::Family::Own, keys::Kind::List) => expand(def.name, &text, &raw, &source)?,
            (_, keys::Kind::Listen) if !given.contains_key(def.name) => {
                let ifaces = expand(
                    "inet_interfaces",
                    &raw["inet_interfaces"],
                    &raw,
                    &source_of("inet_interfaces"),
                )?;
                let protocols = expand(
                    "inet_protocols",
                    &raw["inet_protocols"],
                    &raw,
                    &source_of("inet_protocols"),
                )?;
                default_listen(def.default, &ifaces, &protocols)
            }
            _ => text.clone(),
        };
        entries.push(Entry {
            key: def.name,
            raw: text,
            value,
            source,
        });
    }
    Ok(entries)
}

/// Listener defaults follow `inet_interfaces`: "all" binds 0.0.0.0 and [::],
/// "loopback-only" 127.0.0.1 and [::1], otherwise each listed address;
/// `inet_protocols` (all, ipv4, ipv6) keeps only those families.
fn default_listen(default: &str, inet_interfaces: &str, inet_protocols: &str) -> String {
    let Some(port) = default.strip_prefix("$inet_interfaces:") else {
        return default.to_string();
    };
    let protocols = expand::split_list(inet_protocols);
    let all = protocols.iter().any(|p| p == "all");
    let v4 = all || protocols.iter().any(|p| p == "ipv4");
    let v6 = all || protocols.iter().any(|p| p == "ipv6");
    let mut out: Vec<String> = Vec::new();
    for iface in expand::split_list(inet_interfaces) {
        match iface.as_str() {
            "all" => out.extend([format!("0.0.0.0:{port}"), format!("[::]:{port}")]),
            "loopback-only" => out.extend([format!("127.0.0.1:{port}"), format!("[::1]:{port}")]),
            a if a.contains(':') => out.push(format!(
                "[{}]:{port}",
                a.trim_matches(|c| c == '[' || c == ']')
            )),
            a => out.push(format!("{a}:{port}")),
        }
    }
    out.retain(|a| if a.starts_with('[') { v6 } else { v4 });
    out.join(", ")
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Is `net` a public network broader than an IPv4 /8 (IPv6 /16), or
/// everything? Such a `mynetworks` entry makes an open relay.
fn open_relay_network(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() < 8,
        IpNet::V6(n) => {
            let private: [IpNet; 2] = [
                "fc00::/7".parse().expect("literal"),
                "fe80::/10".parse().expect("literal"),
            ];
            n.prefix_len() < 16 && !private.iter().any(|p| p.contains(net))
        }
    }
}

impl Config {
    /// Settings that are valid but probably a mistake, for a warning at
    /// start (and from `pigeonpost config`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for net in &self.mynetworks {
            if net.prefix_len() == 0 {
                out.push(format!(
                    "mynetworks (from {}) contains {net}: every client on the internet may relay mail through this server (an open relay)",
                    self.source_of("mynetworks")
                ));
            } else if open_relay_network(net) {
                out.push(format!(
                    "mynetworks (from {}) contains {net}, a public network larger than a /8 ({}): its clients may relay mail through this server (an open relay?)",
                    self.source_of("mynetworks"),
                    if net.addr().is_ipv4() { "IPv4" } else { "IPv6 /16" }
                ));
            }
        }
        out
    }

    /// Where `key`'s value came from, for error messages.
    pub fn source_of(&self, key: &str) -> &str {
        self.sources
            .get(key)
            .map(String::as_str)
            .unwrap_or("default")
    }

    pub fn is_default(&self, key: &str) -> bool {
        self.source_of(key) == "default"
    }
}

#[cfg(test)]
mod tests {
    use super::open_relay_network;

    #[test]
    fn open_relay_networks() {
        let n = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
        assert!(open_relay_network(&n("0.0.0.0/0")));
        assert!(open_relay_network(&n("0.0.0.0/1")));
        assert!(open_relay_network(&n("::/0")));
        assert!(open_relay_network(&n("2000::/3")));
        assert!(!open_relay_network(&n("10.0.0.0/8")));
        assert!(!open_relay_network(&n("192.168.0.0/16")));
        assert!(!open_relay_network(&n("fc00::/7")));
        assert!(!open_relay_network(&n("2001:db8::/32")));
    }
}

/// `acme_*`: the certificate comes from an ACME server (RFC 8555).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    pub challenge: AcmeChallenge,
    pub state_directory: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub renew_before: Duration,
    pub retry_time: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}
