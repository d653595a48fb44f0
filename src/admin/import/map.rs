//! Deciding, setting by setting, what a Postfix or Dovecot setting becomes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::dovecot_conf::Setting;
use super::master_cf::Service;
use super::{AdminError, Imported, Line, Verdict};
use crate::config::{self, keys};

/// Settings pigeonpost does not need only when they come from an existing
/// installation (the server itself rejects them as unknown keys).
const NOT_NEEDED_HERE: &[(&str, &str)] = &[
    ("queue_directory", "pigeonpost keeps its own queue (/var/spool/pigeonpost); run `postqueue -f` until Postfix's queue is empty before switching"),
    ("smtpd_tls_CAfile", "no client certificates are asked for"),
    ("smtpd_tls_CApath", "no client certificates are asked for"),
    ("smtp_tls_CAfile", "outbound certificate checks use the built-in web PKI roots"),
    ("smtp_tls_CApath", "outbound certificate checks use the built-in web PKI roots"),
    ("smtpd_tls_mandatory_protocols", "smtpd_tls_protocols applies to every TLS session"),
    ("smtp_tls_protocols", "outbound TLS is TLSv1.2 or TLSv1.3 (rustls)"),
    ("smtp_tls_mandatory_protocols", "outbound TLS is TLSv1.2 or TLSv1.3 (rustls)"),
    ("smtpd_tls_ciphers", "TLS parameters are rustls' safe defaults"),
    ("smtpd_tls_mandatory_ciphers", "TLS parameters are rustls' safe defaults"),
    ("smtpd_tls_exclude_ciphers", "TLS parameters are rustls' safe defaults"),
    ("smtpd_tls_mandatory_exclude_ciphers", "TLS parameters are rustls' safe defaults"),
    ("smtpd_tls_dh1024_param_file", "TLS parameters are rustls' safe defaults"),
    ("smtpd_tls_eecdh_grade", "TLS parameters are rustls' safe defaults"),
    ("smtp_tls_ciphers", "TLS parameters are rustls' safe defaults"),
    ("smtp_tls_mandatory_ciphers", "TLS parameters are rustls' safe defaults"),
    ("tls_preempt_cipherlist", "TLS parameters are rustls' safe defaults"),
    ("tls_ssl_options", "TLS parameters are rustls' safe defaults"),
    ("tls_high_cipherlist", "TLS parameters are rustls' safe defaults"),
    ("ssl_curve_list", "TLS parameters are rustls' safe defaults"),
    ("ssl_options", "TLS parameters are rustls' safe defaults"),
    ("smtpd_tls_session_cache_timeout", "TLS sessions are resumed with tickets"),
    ("smtp_tls_note_starttls_offer", "TLS is logged at log_level"),
    ("smtpd_tls_received_header", "the Received: header is pigeonpost's own"),
    ("disable_vrfy_command", "VRFY is always answered 252 without looking the address up"),
    ("dovecot_destination_recipient_limit", "delivery into Maildir is built in"),
    ("listen", "addresses come from inet_interfaces and listen.* keys"),
    ("auth_verbose", "logging is set with log_level"),
    ("auth_verbose_passwords", "logging is set with log_level (passwords are never logged)"),
    ("auth_debug", "logging is set with log_level"),
    ("auth_debug_passwords", "logging is set with log_level (passwords are never logged)"),
    ("mail_debug", "logging is set with log_level"),
    ("verbose_ssl", "logging is set with log_level"),
    ("log_timestamp", "logs go to stderr with their own timestamps"),
    ("login_log_format_elements", "log lines are pigeonpost's own"),
    ("ssl_ca", "no client certificates are asked for"),
    ("ssl_verify_client_cert", "no client certificates are asked for"),
    ("ssl_client_ca_dir", "no client certificates are asked for"),
    ("imap_client_workarounds", "no client workarounds are needed"),
    ("pop3_client_workarounds", "no client workarounds are needed"),
    ("postmaster_address", "delivery is built in (no LDA/LMTP)"),
    ("lda_mailbox_autocreate", "delivery is built in (no LDA/LMTP)"),
    ("lda_mailbox_autosubscribe", "delivery is built in (no LDA/LMTP)"),
    ("mail_fsync", "every delivery and change is fsynced"),
    ("maildir_very_dirty_syncs", "Maildir is read the safe way"),
];

/// Settings with no equivalent, and what to do instead.
const UNSUPPORTED_HERE: &[(&str, &str)] = &[
    (
        "header_checks",
        "content checks: run a milter (e.g. rspamd) in smtpd_milters",
    ),
    (
        "body_checks",
        "content checks: run a milter (e.g. rspamd) in smtpd_milters",
    ),
    (
        "mime_header_checks",
        "content checks: run a milter (e.g. rspamd) in smtpd_milters",
    ),
    (
        "nested_header_checks",
        "content checks: run a milter (e.g. rspamd) in smtpd_milters",
    ),
    (
        "content_filter",
        "run the filter as a milter in smtpd_milters",
    ),
    (
        "mailbox_size_limit",
        "there is no mailbox size limit; use file-system quotas",
    ),
    (
        "virtual_mailbox_limit",
        "there is no mailbox size limit; use file-system quotas",
    ),
    (
        "mail_uid",
        "give uid= and gid= in the userdb (userdb = static:uid=N gid=N home=…)",
    ),
    (
        "mail_gid",
        "give uid= and gid= in the userdb (userdb = static:uid=N gid=N home=…)",
    ),
    (
        "mail_home",
        "give the home in the userdb (static home= or the passwd-file home field)",
    ),
    (
        "mail_plugins",
        "plugins (quota, sieve, …) are not available",
    ),
    ("login_greeting", "the IMAP and POP3 greetings are fixed"),
];

const GENERIC: &str = "pigeonpost has no such setting (README, \"Moving from Postfix + Dovecot\"); leave it out, or open an issue if you rely on it";

/// Postfix daemons whose work pigeonpost does inside its one process.
const BUILT_IN_SERVICES: &[&str] = &[
    "pickup",
    "cleanup",
    "qmgr",
    "oqmgr",
    "tlsmgr",
    "rewrite",
    "trivial-rewrite",
    "bounce",
    "defer",
    "trace",
    "verify",
    "flush",
    "proxymap",
    "proxywrite",
    "smtp",
    "relay",
    "showq",
    "error",
    "retry",
    "discard",
    "local",
    "virtual",
    "lmtp",
    "anvil",
    "scache",
    "postlog",
    "dnsblog",
    "tlsproxy",
    "postlogd",
];

#[derive(Default)]
pub struct Mapper {
    /// Keys to write, in order: (key, value, index of its report line).
    out: Vec<(String, String, usize)>,
    report: Vec<Line>,
    /// main.cf settings pigeonpost does not know, decided at the end: a
    /// master.cf override may use them (`$mua_client_restrictions`).
    pending: Vec<(String, usize)>,
    /// main.cf's own values, for `$name` in master.cf overrides.
    main_values: BTreeMap<String, String>,
    referenced: HashSet<String>,
    /// Listeners master.cf or Dovecot's services decided.
    listeners: BTreeMap<&'static str, String>,
    master_read: bool,
    sources: Vec<String>,
}

fn file_name(p: &Path) -> String {
    p.display().to_string()
}

impl Mapper {
    fn line(&mut self, origin: String, setting: String, verdict: Verdict) -> usize {
        self.report.push(Line {
            origin,
            setting,
            verdict,
        });
        self.report.len() - 1
    }

    fn map(&mut self, origin: String, setting: &str, key: &str, value: String) {
        let i = self.line(
            origin,
            setting.to_string(),
            Verdict::Mapped(key.to_string()),
        );
        self.out.retain(|(k, _, _)| k != key);
        self.out.push((key.to_string(), value, i));
    }

    pub fn missing(&mut self, path: &Path, e: &std::io::Error) {
        self.line(
            file_name(path),
            "(file)".into(),
            Verdict::NotNeeded(format!(
                "not read ({e}); its settings keep pigeonpost's defaults"
            )),
        );
    }

    /// main.cf (or `postconf -n` output).
    pub fn main_cf(&mut self, text: &str, entries: &[(String, String)]) {
        self.sources.push("main.cf".into());
        let classes: Vec<String> = entries
            .iter()
            .find(|(k, _)| k == "smtpd_restriction_classes")
            .map(|(_, v)| config::expand::split_list(v))
            .unwrap_or_default();
        for (k, v) in entries {
            self.main_values.insert(k.clone(), v.clone());
            let origin = format!("main.cf:{}", line_of(text, k));
            if let Some((_, why)) = NOT_NEEDED_HERE.iter().find(|(n, _)| n == k) {
                self.line(origin, k.clone(), Verdict::NotNeeded(why.to_string()));
            } else if let Some((_, why)) = keys::NOT_NEEDED.iter().find(|(n, _)| n == k) {
                self.line(origin, k.clone(), Verdict::NotNeeded(why.to_string()));
            } else if k == "myorigin" && v.starts_with('/') {
                // Debian: `myorigin = /etc/mailname`, a file holding the domain.
                match std::fs::read_to_string(v) {
                    Ok(t) if !t.trim().is_empty() => {
                        self.map(
                            origin,
                            k,
                            k,
                            t.lines().next().unwrap_or("").trim().to_string(),
                        );
                    }
                    _ => {
                        self.line(
                            origin,
                            k.clone(),
                            Verdict::Unsupported(format!(
                                "{v} cannot be read here: write the domain itself (myorigin = example.com)"
                            )),
                        );
                    }
                }
            } else if keys::find(k).is_some() {
                self.map(origin, k, k, v.clone());
            } else if classes.contains(k) {
                let i = self.line(
                    origin,
                    k.clone(),
                    Verdict::Mapped(format!("{k} (a restriction class)")),
                );
                self.out.push((k.clone(), v.clone(), i));
            } else {
                let i = self.line(origin, k.clone(), Verdict::Unsupported(String::new()));
                self.pending.push((k.clone(), i));
            }
        }
    }

    /// master.cf (or `postconf -M` output).
    pub fn master_cf(&mut self, services: &[Service]) {
        self.master_read = true;
        self.sources.push("master.cf".into());
        for s in services {
            let origin = format!("master.cf:{}", s.line);
            let label = format!("{} {} {}", s.name, s.kind, s.command);
            if s.kind == "inet" && matches!(s.command.as_str(), "smtpd" | "postscreen") {
                let wrapper = s
                    .overrides
                    .iter()
                    .any(|(k, v)| k == "smtpd_tls_wrapper_mode" && v == "yes");
                let (host, port) = match s.name.rsplit_once(':') {
                    Some((h, p)) => (Some(h.trim_matches(['[', ']'])), p),
                    None => (None, s.name.as_str()),
                };
                let role = match port {
                    "smtps" | "submissions" | "465" => Some(("submissions", 465)),
                    _ if wrapper => Some(("submissions", 465)),
                    "smtp" | "25" => Some(("smtp", 25)),
                    "submission" | "587" => Some(("submission", 587)),
                    _ => None,
                };
                let Some((role, number)) = role else {
                    self.line(origin, label, Verdict::Unsupported("pigeonpost has one SMTP listener per role (smtp, submission, submissions); a content filter's re-injection port is not needed when the filter runs as a milter".into()));
                    continue;
                };
                let default = number;
                let number: u16 = port.parse().unwrap_or(number);
                let key = match role {
                    "smtp" => "listen.smtp",
                    "submission" => "listen.submission",
                    _ => "listen.submissions",
                };
                self.listeners.insert(role_static(role), String::new());
                match listen_value(host, number, default) {
                    Some(addr) => self.map(origin.clone(), &label, key, addr),
                    None => self.default_listener(origin.clone(), &label, key),
                }
                if s.command == "postscreen" {
                    self.map(origin.clone(), &label, "postscreen", "yes".into());
                }
                for (k, v) in &s.overrides {
                    let verdict = self.override_verdict(role, k, v);
                    self.line(origin.clone(), format!("{} -o {k}={v}", s.name), verdict);
                }
            } else if s.kind == "pass" && s.command == "smtpd" {
                self.line(
                    origin,
                    label,
                    Verdict::NotNeeded(
                        "postscreen hands clients to the SMTP server inside pigeonpost".into(),
                    ),
                );
            } else if BUILT_IN_SERVICES.contains(&s.command.as_str()) {
                self.line(
                    origin,
                    label,
                    Verdict::NotNeeded("built into pigeonpost's one process".into()),
                );
            } else if s.command == "pipe" {
                self.line(origin, label, Verdict::Unsupported("pigeonpost delivers into Maildir itself and runs no pipe(8) commands; a filter can run as a milter (smtpd_milters)".into()));
            } else {
                self.line(origin, label, Verdict::Unsupported(GENERIC.into()));
            }
        }
    }

    fn override_verdict(&mut self, role: &str, k: &str, v: &str) -> Verdict {
        let submission = role != "smtp";
        if let Some((_, why)) = keys::NOT_NEEDED.iter().find(|(n, _)| *n == k) {
            return Verdict::NotNeeded(why.to_string());
        }
        let nn = |s: &str| Verdict::NotNeeded(s.to_string());
        match k {
            "syslog_name" => return nn("log lines name their listener"),
            "milter_macro_daemon_name" => return nn("authenticated mail is told from outside mail by {auth_authen}; sign with dkim_key_table"),
            "smtpd_tls_wrapper_mode" if v == "yes" => {
                return Verdict::Mapped("listen.submissions (implicit TLS)".into())
            }
            _ => {}
        }
        if submission {
            match k {
                "smtpd_tls_security_level" if v == "encrypt" => {
                    return nn("submission always requires TLS")
                }
                "smtpd_tls_auth_only" => return nn("submission never offers AUTH before TLS"),
                "smtpd_sasl_auth_enable" if v == "yes" => {
                    return nn("submission always offers AUTH (auth_mechanisms)")
                }
                "smtpd_reject_unlisted_recipient" | "smtpd_helo_restrictions" => {}
                _ if k.ends_with("_restrictions") => {
                    let words = self.resolve_words(v);
                    let sasl = words.iter().position(|w| w == "permit_sasl_authenticated");
                    if sasl.is_some_and(|i| {
                        words.get(i + 1).is_some_and(|w| w == "reject") || words.len() == i + 1
                    }) {
                        return nn("submission requires AUTH before MAIL: only authenticated clients get this far");
                    }
                }
                _ => {}
            }
        }
        Verdict::Unsupported(format!(
            "per-listener settings are not available: as a main.cf setting it would apply to every listener{}",
            if keys::find(k).is_some() { "; set it there if that is meant" } else { "" }
        ))
    }

    /// The words of a restriction list with main.cf `$name`s put in (and
    /// those names remembered: main.cf keeps them only for master.cf).
    fn resolve_words(&mut self, v: &str) -> Vec<String> {
        let mut words = Vec::new();
        for w in config::expand::split_list(v) {
            let name = w.trim_start_matches('$').trim_matches(['{', '}', '(', ')']);
            if w.starts_with('$') {
                self.referenced.insert(name.to_string());
                if let Some(val) = self.main_values.get(name).cloned() {
                    words.extend(config::expand::split_list(&val));
                }
                continue;
            }
            words.push(w);
        }
        words
    }

    /// dovecot.conf and its includes (or `doveconf -n` output).
    pub fn dovecot(&mut self, settings: &[Setting]) {
        self.sources.push("dovecot.conf".into());
        let mut blocks: Vec<(String, Vec<&Setting>)> = Vec::new();
        let mut listeners: BTreeMap<String, (Option<String>, Option<String>, usize)> =
            BTreeMap::new();
        for s in settings {
            let first = s.sections.first().map(String::as_str).unwrap_or("");
            let label = if s.sections.is_empty() {
                s.key.clone()
            } else {
                format!("{} / {}", s.sections.join(" / "), s.key)
            };
            if first.starts_with("passdb") || first.starts_with("userdb") {
                let new_block = match blocks.last() {
                    Some((h, b)) => {
                        *h != first || b.iter().any(|x| x.key == s.key && x.sections == s.sections)
                    }
                    None => true,
                };
                if new_block {
                    blocks.push((first.to_string(), Vec::new()));
                }
                if let Some((_, b)) = blocks.last_mut() {
                    b.push(s);
                }
                continue;
            }
            if first.starts_with("service ") {
                let second = s.sections.get(1).map(String::as_str).unwrap_or("");
                if let Some(name) = second.strip_prefix("inet_listener ") {
                    let name = name.trim().to_string();
                    if matches!(name.as_str(), "imap" | "imaps" | "pop3" | "pop3s")
                        && matches!(s.key.as_str(), "port" | "address")
                    {
                        let i = self.line(
                            s.origin.clone(),
                            label,
                            Verdict::Mapped(format!("listen.{name}")),
                        );
                        let e = listeners.entry(name).or_insert((None, None, i));
                        if s.key == "port" {
                            e.0 = Some(s.value.clone());
                        } else {
                            e.1 = Some(s.value.clone());
                        }
                        continue;
                    }
                }
                let why = match first {
                    _ if s.key == "ssl" && second.starts_with("inet_listener") => "imaps and pop3s always speak TLS, imap and pop3 offer STARTTLS/STLS",
                    "service auth" | "service auth-worker" => "SASL is built in: no auth socket for Postfix (smtpd_sasl_path)",
                    "service lmtp" => "delivery into Maildir is built in (no LMTP socket for Postfix)",
                    _ => "pigeonpost's one process does this service's work (connection limits: max_connections, smtpd_client_connection_count_limit)",
                };
                self.line(s.origin.clone(), label, Verdict::NotNeeded(why.into()));
                continue;
            }
            if first.starts_with("namespace") {
                let v = if s.sections.len() == 1
                    && matches!(s.key.as_str(), "inbox" | "separator" | "prefix" | "type" | "location" if s.key != "location" || s.value.is_empty())
                {
                    Verdict::NotNeeded(
                        "one INBOX namespace with Maildir++ folders is built in".into(),
                    )
                } else {
                    Verdict::Unsupported("folders are not created or subscribed automatically, and namespaces are fixed; create the folders once with an IMAP client".into())
                };
                self.line(s.origin.clone(), label, v);
                continue;
            }
            if first.starts_with("plugin") {
                self.line(
                    s.origin.clone(),
                    label,
                    Verdict::Unsupported("plugins (quota, sieve, …) are not available".into()),
                );
                continue;
            }
            if !s.sections.is_empty() && !first.starts_with("protocol ") {
                self.line(
                    s.origin.clone(),
                    label,
                    Verdict::Unsupported(GENERIC.into()),
                );
                continue;
            }
            self.dovecot_setting(s, label);
        }
        for (name, (port, addr, i)) in listeners {
            let default = default_port(&name);
            let value = match port.as_deref() {
                Some("0") => Some(String::new()),
                p => {
                    let port: u16 = p.and_then(|p| p.trim().parse().ok()).unwrap_or(default);
                    let host = addr
                        .as_deref()
                        .map(str::trim)
                        .filter(|a| !matches!(*a, "*" | "*, ::" | ""));
                    listen_value(host, port, default)
                }
            };
            let key = format!("listen.{name}");
            self.out.retain(|(k, _, _)| *k != key);
            match value {
                Some(v) => self.out.push((key, v, i)),
                None => {
                    self.report[i].verdict = Verdict::Mapped(format!("{key} (its default address)"))
                }
            }
        }
        for (head, block) in blocks {
            self.db_block(&head, &block);
        }
    }

    fn dovecot_setting(&mut self, s: &Setting, label: String) {
        let k = s.key.as_str();
        if let Some((_, why)) = NOT_NEEDED_HERE.iter().find(|(n, _)| *n == k) {
            self.line(s.origin.clone(), label, Verdict::NotNeeded(why.to_string()));
        } else if let Some((_, why)) = UNSUPPORTED_HERE.iter().find(|(n, _)| *n == k) {
            self.line(
                s.origin.clone(),
                label,
                Verdict::Unsupported(why.to_string()),
            );
        } else if let Some((_, why)) = keys::NOT_NEEDED.iter().find(|(n, _)| *n == k) {
            self.line(s.origin.clone(), label, Verdict::NotNeeded(why.to_string()));
        } else if k == "protocols" {
            let (ours, others): (Vec<String>, Vec<String>) = config::expand::split_list(&s.value)
                .into_iter()
                .partition(|p| matches!(p.as_str(), "imap" | "pop3" | "lmtp" | "none"));
            let what = if others.is_empty() {
                "protocols".to_string()
            } else {
                format!("protocols (without {}: not available)", others.join(", "))
            };
            let i = self.line(s.origin.clone(), label, Verdict::Mapped(what));
            self.out.retain(|(k, _, _)| k != "protocols");
            self.out.push(("protocols".into(), ours.join(" "), i));
        } else if keys::find(k).is_some_and(|d| d.family == keys::Family::Dovecot) {
            self.map(s.origin.clone(), &label, k, s.value.clone());
        } else {
            self.line(
                s.origin.clone(),
                label,
                Verdict::Unsupported(GENERIC.into()),
            );
        }
    }

    /// One `passdb { }` or `userdb { }` block.
    fn db_block(&mut self, head: &str, block: &[&Setting]) {
        let is_pass = head.starts_with("passdb");
        let key = if is_pass { "passdb" } else { "userdb" };
        let get = |k: &str| {
            block
                .iter()
                .find(|s| s.key == k)
                .map(|s| s.value.trim().to_string())
        };
        let driver = get("driver").unwrap_or_default();
        let args = get("args").unwrap_or_default();
        let origin = block
            .iter()
            .find(|s| s.key == "driver")
            .or(block.first())
            .map(|s| s.origin.clone())
            .unwrap_or_default();
        let value = match (is_pass, driver.as_str()) {
            (true, "passwd-file") => Ok(format!("passwd-file:{args}")),
            (true, "pam" | "shadow") => Ok("shadow".to_string()),
            (false, "passwd") => Ok("passwd".to_string()),
            (false, "passwd-file") => Ok(format!("passwd-file:{args}")),
            (false, "static") => Ok(format!("static:{args}")),
            (false, "prefetch") => Err(Verdict::NotNeeded("the passwd-file's userdb_* fields are read directly".into())),
            (_, d) => Err(Verdict::Unsupported(format!(
                "the {d} driver is not available: export the users into a passwd-file (`pigeonpost user add`) and use {key} = passwd-file:/path"
            ))),
        };
        let setting = format!("{head} / driver = {driver}");
        match value {
            Ok(_) if self.out.iter().any(|(k, _, _)| k == key) => {
                self.line(
                    origin,
                    setting,
                    Verdict::Unsupported(format!(
                        "pigeonpost reads one {key}; the first one is used"
                    )),
                );
            }
            Ok(v) => self.map(origin, &setting, key, v),
            Err(verdict) => {
                self.line(origin, setting, verdict);
            }
        }
        for s in block
            .iter()
            .filter(|s| s.key != "driver" && s.key != "args")
        {
            let v = Verdict::Unsupported(format!(
                "{key} options other than driver and args are not available"
            ));
            self.line(s.origin.clone(), format!("{head} / {}", s.key), v);
        }
    }

    /// Resolves what is left, writes the TOML and checks that pigeonpost loads it.
    pub fn finish(mut self) -> Result<Imported, AdminError> {
        // Postfix lets main.cf define parameters of its own for `$name`
        // use (`smtpd_sender_restrictions = $dms_sender_restrictions`);
        // pigeonpost gets their values written in.
        let mut inlined: BTreeMap<String, String> = BTreeMap::new();
        for (name, _) in &self.pending {
            let value = self.main_values.get(name).cloned().unwrap_or_default();
            for (key, v, _) in self.out.iter_mut() {
                let before = v.clone();
                *v = v
                    .replace(&format!("${{{name}}}"), &value)
                    .replace(&format!("$({name})"), &value);
                *v = replace_word(v, &format!("${name}"), &value);
                if *v != before {
                    inlined.insert(name.clone(), key.clone());
                }
            }
        }
        for (k, i) in std::mem::take(&mut self.pending) {
            self.report[i].verdict = if let Some(key) = inlined.get(&k) {
                Verdict::NotNeeded(format!("its value is written into {key}"))
            } else if self.referenced.contains(&k) {
                Verdict::NotNeeded("only master.cf overrides use it, and pigeonpost's submission has that rule built in".into())
            } else if let Some((_, what)) = UNSUPPORTED_HERE.iter().find(|(n, _)| *n == k) {
                Verdict::Unsupported(what.to_string())
            } else if k.starts_with("postscreen_") {
                Verdict::Unsupported("pigeonpost's postscreen (postscreen = yes) has postscreen_dnsbl_sites, _threshold, _action, _ttl and postscreen_greet_action, _wait, _ttl only".into())
            } else {
                Verdict::Unsupported(GENERIC.into())
            };
        }
        if self.master_read {
            for (role, key) in [
                ("smtp", "listen.smtp"),
                ("submission", "listen.submission"),
                ("submissions", "listen.submissions"),
            ] {
                if !self.listeners.contains_key(role) {
                    let i = self.line(
                        "master.cf".into(),
                        format!("(no {role} service)"),
                        Verdict::Mapped(format!("{key} = \"\" (off, as in master.cf)")),
                    );
                    self.out.push((key.to_string(), String::new(), i));
                }
            }
        }
        let dir = scratch_dir()?;
        let path = dir.join("pigeonpost.toml");
        let mut rounds = 0;
        let toml = loop {
            let text = self.render();
            std::fs::write(&path, &text)
                .map_err(|e| AdminError::runtime(format!("{}: {e}", path.display())))?;
            let Some(err) = check(&path) else {
                break text;
            };
            rounds += 1;
            let pos = err
                .key
                .as_ref()
                .and_then(|k| self.out.iter().position(|(o, _, _)| o == k));
            match pos {
                Some(p) if rounds <= 200 => {
                    let (k, _, i) = self.out.remove(p);
                    self.report[i].verdict = Verdict::Unsupported(format!(
                        "pigeonpost refuses it as {k}: {}; fix it and add it to the result",
                        err.reason
                    ));
                }
                _ => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(AdminError::usage(format!(
                        "the imported configuration does not load: {err}"
                    )));
                }
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Imported {
            toml,
            report: self.report,
        })
    }

    fn render(&self) -> String {
        let mut t = format!(
            "# pigeonpost.toml made by `pigeonpost import` from {}.\n# Each key is reported on stderr with where it came from.\n\n",
            self.sources.join(", ")
        );
        for (k, v, i) in &self.out {
            t.push_str(&format!(
                "# {}\n{k} = {}\n",
                self.report[*i].origin,
                toml::Value::String(v.clone())
            ));
        }
        t
    }
}

/// A listen.* value for `host` and `port`; `None` when the key's default
/// (`$inet_interfaces:<default port>`) says the same.
fn listen_value(host: Option<&str>, port: u16, default: u16) -> Option<String> {
    match host {
        Some(h) if h.contains(':') => Some(format!("[{h}]:{port}")),
        Some(h) => Some(format!("{h}:{port}")),
        None if port == default => None,
        None => Some(format!("0.0.0.0:{port}")),
    }
}

impl Mapper {
    fn default_listener(&mut self, origin: String, label: &str, key: &str) {
        self.out.retain(|(k, _, _)| k != key);
        self.line(
            origin,
            label.to_string(),
            Verdict::Mapped(format!("{key} (its default address)")),
        );
    }
}

fn role_static(role: &str) -> &'static str {
    match role {
        "smtp" => "smtp",
        "submission" => "submission",
        _ => "submissions",
    }
}

fn default_port(name: &str) -> u16 {
    match name {
        "imap" => 143,
        "imaps" => 993,
        "pop3" => 110,
        _ => 995,
    }
}

/// Replaces `$name` where it is not the start of a longer name.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(p) = rest.find(word) {
        let after = &rest[p + word.len()..];
        out.push_str(&rest[..p]);
        if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The 1-based line where main.cf last sets `key` (a later line wins).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or(0)
}

fn scratch_dir() -> Result<PathBuf, AdminError> {
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let d = base.join(format!("pigeonpost-import-{}-{n}", std::process::id()));
        if std::fs::create_dir(&d).is_ok() {
            return Ok(d);
        }
    }
    Err(AdminError::runtime(format!(
        "cannot make a directory in {}",
        base.display()
    )))
}

/// Loads the result as `pigeonpost config` does (no environment layer);
/// the first problem, if any.
fn check(path: &Path) -> Option<config::ConfigError> {
    let opts = config::LoadOptions {
        config_path: Some(path.to_path_buf()),
        env: Vec::new(),
    };
    let loaded = match config::load(&opts) {
        Ok(l) => l,
        Err(e) => return Some(e),
    };
    crate::tables::Tables::open(&loaded.config)
        .and_then(|_| crate::auth::Auth::open(&loaded.config))
        .err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(replace_word("$a, $ab, ${a}", "$a", "X"), "X, $ab, ${a}");
        assert_eq!(listen_value(None, 25, 25), None);
        assert_eq!(
            listen_value(None, 2525, 25).as_deref(),
            Some("0.0.0.0:2525")
        );
        assert_eq!(
            listen_value(Some("::1"), 587, 587).as_deref(),
            Some("[::1]:587")
        );
        assert_eq!(
            listen_value(Some("127.0.0.1"), 10025, 25).as_deref(),
            Some("127.0.0.1:10025")
        );
        assert_eq!(line_of("a = 1\n  b = 2\nb=3\nbb = 4\n", "b"), 3);
    }

    #[test]
    fn submission_overrides() {
        let mut m = Mapper::default();
        m.main_values
            .insert("mua".into(), "permit_sasl_authenticated, reject".into());
        let nn = |v: &Verdict| matches!(v, Verdict::NotNeeded(_));
        assert!(nn(&m.override_verdict(
            "submission",
            "smtpd_tls_security_level",
            "encrypt"
        )));
        assert!(nn(&m.override_verdict(
            "submission",
            "smtpd_client_restrictions",
            "$mua"
        )));
        assert!(m.referenced.contains("mua"));
        assert!(nn(&m.override_verdict(
            "submissions",
            "smtpd_relay_restrictions",
            "permit_sasl_authenticated,reject"
        )));
        // On port 25 the same override would change who may send: not ours to drop.
        assert!(matches!(
            m.override_verdict(
                "smtp",
                "smtpd_client_restrictions",
                "permit_sasl_authenticated,reject"
            ),
            Verdict::Unsupported(_)
        ));
        assert!(matches!(
            m.override_verdict(
                "submission",
                "smtpd_recipient_restrictions",
                "reject_unknown_recipient_domain"
            ),
            Verdict::Unsupported(_)
        ));
    }
}
