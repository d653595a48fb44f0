//! The table of every configuration key pigeonpost knows: its default (as
//! Postfix or Dovecot would write it), its kind, and a one-line description.
//! Defaults follow Postfix's postconf(5) and Dovecot's built-in settings
//! unless `note` says otherwise.

/// How a key's value is parsed after `$name` expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A Postfix-style list: TOML array, or words separated by commas and/or whitespace.
    List,
    /// yes/no, true/false.
    Bool,
    /// A non-negative integer.
    Count,
    /// A Postfix time: a number with an optional unit (s, m, h, d, w); the
    /// `char` is the unit assumed when none is given (postconf(5) "Time units").
    Time(char),
    /// One or more listen addresses (`host:port`), or empty to disable.
    Listen,
    /// Text whose `$name`s are filled in when it is used, not when the
    /// configuration is read (Postfix `default_rbl_reply`).
    Template,
}

/// Which program the key comes from; decides whether `$name` expansion applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Postfix,
    Dovecot,
    Own,
}

#[derive(Debug)]
pub struct KeyDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    pub family: Family,
    pub doc: &'static str,
}

const fn k(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    family: Family,
    doc: &'static str,
) -> KeyDef {
    KeyDef {
        name,
        default,
        kind,
        family,
        doc,
    }
}

use Family::{Dovecot, Own, Postfix};
use Kind::{Bool, Count, List, Listen, Template, Text, Time};

/// Every key, in the order `pigeonpost config` prints them.
/// `myhostname`'s empty default means "this machine's host name".
pub static KEYS: &[KeyDef] = &[
    // Postfix main.cf
    k("myhostname", "", Text, Postfix, "fully-qualified host name of this mail server (default: the system host name)"),
    k("mydomain", "", Text, Postfix, "the internet domain (default: $myhostname minus its first label)"),
    k("myorigin", "$myhostname", Text, Postfix, "domain appended to unqualified sender addresses"),
    k("inet_interfaces", "all", List, Postfix, "addresses the default listeners bind to: all, loopback-only, or IP addresses"),
    k("inet_protocols", "all", List, Postfix, "address families the default listeners use: all, ipv4, ipv6"),
    k("mydestination", "$myhostname, localhost.$mydomain, localhost", List, Postfix, "domains delivered to local (system or alias) users"),
    k("mynetworks", "127.0.0.0/8 [::1]/128", List, Postfix, "trusted client networks (CIDR, IPv4 or IPv6) allowed to relay; 0.0.0.0/0, ::/0 or a public network larger than an IPv4 /8 (IPv6 /16) gets an open-relay warning at start and from `config`"),
    k("relay_domains", "", List, Postfix, "remote domains this server accepts mail for and relays"),
    k("home_mailbox", "", Text, Postfix, "local delivery path under the home directory; trailing / = Maildir (e.g. Maildir/), empty = /var/mail/$user mbox"),
    k("mail_spool_directory", "/var/mail", Text, Postfix, "mbox spool used when home_mailbox is empty"),
    k("virtual_mailbox_domains", "$virtual_mailbox_maps", List, Postfix, "domains whose users have virtual mailboxes"),
    k("virtual_alias_domains", "$virtual_alias_maps", List, Postfix, "domains where every address is an alias"),
    k("virtual_mailbox_base", "", Text, Postfix, "directory prefixed to virtual_mailbox_maps results"),
    k("virtual_mailbox_maps", "", List, Postfix, "tables: address -> mailbox path (trailing / = Maildir)"),
    k("virtual_alias_maps", "", List, Postfix, "tables: address -> one or more addresses"),
    k("virtual_uid_maps", "", List, Postfix, "static:UID or tables: address -> uid for virtual mailboxes"),
    k("virtual_gid_maps", "", List, Postfix, "static:GID or tables: address -> gid for virtual mailboxes"),
    k("virtual_minimum_uid", "100", Count, Postfix, "lowest uid virtual mailboxes may be written with"),
    k("alias_maps", "hash:/etc/aliases", List, Postfix, "aliases(5) tables for local recipients"),
    k("recipient_delimiter", "", Text, Postfix, "characters separating user and extension (user+tag)"),
    k("message_size_limit", "10240000", Count, Postfix, "largest message accepted, in bytes"),
    k("mail_name", "pigeonpost", Text, Postfix, "the mail system's name, in $smtpd_banner"),
    k("smtpd_banner", "$myhostname ESMTP $mail_name", Text, Postfix, "the text of the SMTP greeting; must start with $myhostname (RFC 5321)"),
    k("smtpd_recipient_limit", "1000", Count, Postfix, "most recipients accepted per message"),
    k("smtpd_timeout", "300s", Time('s'), Postfix, "SMTP server read/write timeout"),
    k("smtpd_client_connection_count_limit", "50", Count, Postfix, "simultaneous connections per client IP, per listener"),
    k("smtpd_client_event_limit_exceptions", "$mynetworks", List, Postfix, "clients exempt from the per-IP connection limit and the rate limits (CIDR)"),
    k("anvil_rate_time_unit", "60s", Time('s'), Postfix, "the time unit of the smtpd_client_*_rate_limit counts"),
    k("smtpd_client_connection_rate_limit", "0", Count, Postfix, "connections per client IP per anvil_rate_time_unit, per SMTP listener (0 = no limit)"),
    k("smtpd_client_message_rate_limit", "0", Count, Postfix, "MAIL FROM commands per client IP per anvil_rate_time_unit (0 = no limit)"),
    k("smtpd_client_recipient_rate_limit", "0", Count, Postfix, "RCPT TO commands per client IP per anvil_rate_time_unit (0 = no limit)"),
    k("smtpd_client_new_tls_session_rate_limit", "0", Count, Postfix, "new TLS sessions (STARTTLS or port 465) per client IP per anvil_rate_time_unit (0 = no limit)"),
    k("smtpd_client_auth_rate_limit", "0", Count, Postfix, "AUTH commands per client IP per anvil_rate_time_unit (0 = no limit)"),
    k("smtpd_min_data_rate", "500", Count, Postfix, "bytes per second a client must keep up while sending DATA/BDAT or an IMAP literal (after a 30 s grace), else the connection is closed (0 = no minimum)"),
    // Restrictions (SMTPD_ACCESS_README), evaluated at RCPT with smtpd_delay_reject = yes.
    k("smtpd_client_restrictions", "", List, Postfix, "restrictions on the client's address and host name"),
    k("smtpd_helo_restrictions", "", List, Postfix, "restrictions on the HELO/EHLO name"),
    k("smtpd_sender_restrictions", "", List, Postfix, "restrictions on the MAIL FROM address"),
    k("smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination", List, Postfix, "relay control, evaluated before smtpd_recipient_restrictions (pigeonpost rejects with 554 where Postfix 3 defers)"),
    k("smtpd_recipient_restrictions", "", List, Postfix, "restrictions on each RCPT TO address"),
    k("smtpd_data_restrictions", "", List, Postfix, "restrictions applied to the DATA command"),
    k("smtpd_end_of_data_restrictions", "", List, Postfix, "restrictions applied after the message content, before it is accepted"),
    k("smtpd_restriction_classes", "", List, Postfix, "names of restriction classes; each is a key of its own holding a restriction list"),
    k("smtpd_delay_reject", "yes", Bool, Postfix, "apply client, HELO and sender restrictions at RCPT TO (yes) or at connect/HELO/MAIL FROM (no)"),
    k("smtpd_helo_required", "no", Bool, Postfix, "require HELO or EHLO before MAIL FROM"),
    k("smtpd_sender_login_maps", "", List, Postfix, "tables: sender address (or @domain) -> the logins that may use it"),
    k("smtpd_reject_unlisted_recipient", "yes", Bool, Postfix, "refuse unknown users in our own domains (always on in pigeonpost; no is refused)"),
    k("smtpd_reject_unlisted_sender", "no", Bool, Postfix, "refuse a MAIL FROM address in our own domains that no user has"),
    k("rbl_reply_maps", "", List, Postfix, "tables: DNS list domain -> reply template (default: default_rbl_reply)"),
    k("default_rbl_reply", "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}", Template, Postfix, "reply template for DNS list rejections"),
    k("maps_rbl_reject_code", "554", Count, Postfix, "reply code of DNS list rejections"),
    k("access_map_reject_code", "554", Count, Postfix, "reply code of an access table REJECT"),
    k("access_map_defer_code", "450", Count, Postfix, "reply code of an access table DEFER"),
    k("reject_code", "554", Count, Postfix, "reply code of the reject restriction"),
    k("defer_code", "450", Count, Postfix, "reply code of the defer restriction"),
    k("relay_domains_reject_code", "554", Count, Postfix, "reply code of reject_unauth_destination"),
    k("unknown_address_reject_code", "450", Count, Postfix, "reply code when a sender/recipient domain is not found in DNS"),
    k("unknown_client_reject_code", "450", Count, Postfix, "reply code of reject_unknown_(reverse_)client_hostname"),
    k("unknown_hostname_reject_code", "450", Count, Postfix, "reply code of reject_unknown_helo_hostname"),
    k("invalid_hostname_reject_code", "501", Count, Postfix, "reply code of reject_invalid_helo_hostname"),
    k("non_fqdn_reject_code", "504", Count, Postfix, "reply code of the reject_non_fqdn_* restrictions"),
    k("plaintext_reject_code", "450", Count, Postfix, "reply code of reject_plaintext_session"),
    k("smtpd_policy_service_timeout", "100s", Time('s'), Postfix, "time limit for a policy service's answer"),
    k("smtpd_policy_service_default_action", "451 4.3.5 Server configuration problem", Text, Postfix, "what a request gets when the policy service fails (an access(5) action)"),
    k("smtpd_policy_service_max_idle", "300s", Time('s'), Postfix, "close an idle policy service connection after this long"),
    k("smtpd_policy_service_max_ttl", "1000s", Time('s'), Postfix, "close a policy service connection this long after it opened"),
    k("smtpd_policy_service_request_limit", "0", Count, Postfix, "requests per policy service connection (0 = no limit)"),
    k("smtpd_policy_service_try_limit", "2", Count, Postfix, "attempts per policy request"),
    k("smtpd_policy_service_retry_delay", "1s", Time('s'), Postfix, "pause between policy request attempts"),
    k("smtpd_policy_service_policy_context", "", Text, Postfix, "policy_context attribute sent with each request"),
    k("postscreen_dnsbl_sites", "", List, Postfix, "DNS lists scored before the greeting (zone[=filter][*weight]), with postscreen = yes"),
    k("postscreen_dnsbl_threshold", "1", Count, Postfix, "DNS list score at which postscreen_dnsbl_action applies"),
    k("postscreen_dnsbl_action", "ignore", Text, Postfix, "a client over the threshold: ignore (log), enforce (refuse its recipients) or drop (521, hang up)"),
    k("postscreen_greet_action", "ignore", Text, Postfix, "a client that talks before the greeting ends: ignore, enforce or drop"),
    k("postscreen_greet_wait", "6s", Time('s'), Postfix, "how long the greeting is held back to catch clients that talk first"),
    k("postscreen_dnsbl_ttl", "1h", Time('h'), Postfix, "how long a client that passed the DNS lists is not asked again"),
    k("postscreen_greet_ttl", "1d", Time('d'), Postfix, "how long a client that waited for the greeting skips the wait"),
    k("relayhost", "", Text, Postfix, "smarthost for all remote mail: [host]:port skips MX lookup"),
    k("transport_maps", "", List, Postfix, "tables: domain -> smtp:[host]:port"),
    k("queue_directory", "/var/spool/pigeonpost", Text, Postfix, "spool directory of the outbound queue (pigeonpost's own default); one server per queue (master.lock); public/submit is local submission for every user"),
    k("minimal_backoff_time", "300s", Time('s'), Postfix, "shortest retry interval for deferred mail"),
    k("maximal_backoff_time", "4000s", Time('s'), Postfix, "longest retry interval for deferred mail"),
    k("maximal_queue_lifetime", "5d", Time('d'), Postfix, "how long deferred mail is retried before it bounces"),
    k("delay_warning_time", "0h", Time('h'), Postfix, "send a delay warning after this long (0 = never)"),
    k("smtp_tls_security_level", "may", Text, Postfix, "outbound TLS: none, may, encrypt, verify (default may, as Debian's main.cf sets it)"),
    k("smtp_sasl_password_maps", "", List, Postfix, "tables: relayhost -> user:password"),
    k("default_destination_concurrency_limit", "20", Count, Postfix, "simultaneous deliveries to one next hop"),
    k("smtpd_milters", "", List, Postfix, "milters for mail received over SMTP: inet:host:port, unix:/path, or { inet:host:port, default_action=accept, command_timeout=10s } per milter"),
    k("non_smtpd_milters", "", List, Postfix, "milters for mail from pigeonpost sendmail (picked up from the maildrop); same syntax as smtpd_milters"),
    k("milter_protocol", "6", Count, Postfix, "milter protocol version offered (2 to 6)"),
    k("milter_default_action", "tempfail", Text, Postfix, "when a milter fails (refused, timeout, garbage): tempfail, accept, reject or quarantine"),
    k("milter_connect_timeout", "30s", Time('s'), Postfix, "time to connect to a milter and negotiate"),
    k("milter_command_timeout", "30s", Time('s'), Postfix, "time for a milter to answer an SMTP command event"),
    k("milter_content_timeout", "300s", Time('s'), Postfix, "time for a milter to answer a header, body or end-of-message event"),
    k("milter_connect_macros", "j {daemon_name} {daemon_addr} v _", List, Postfix, "macros sent with the connect event"),
    k("milter_helo_macros", "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}", List, Postfix, "macros sent with HELO/EHLO"),
    k("milter_mail_macros", "i {auth_type} {auth_authen} {auth_ssf} {auth_author} {mail_mailer} {mail_host} {mail_addr}", List, Postfix, "macros sent with MAIL FROM"),
    k("milter_rcpt_macros", "i {rcpt_mailer} {rcpt_host} {rcpt_addr}", List, Postfix, "macros sent with RCPT TO"),
    k("milter_data_macros", "i", List, Postfix, "macros sent with DATA"),
    k("milter_end_of_header_macros", "i", List, Postfix, "macros sent at the end of the headers"),
    k("milter_end_of_data_macros", "i", List, Postfix, "macros sent at the end of the message"),
    // Dovecot dovecot.conf
    k("protocols", "imap pop3 lmtp", List, Dovecot, "protocols served: imap pop3 lmtp (SMTP is always on)"),
    k("mail_location", "maildir:~/Maildir", Text, Dovecot, "where users' mail lives: maildir:PATH with %u %n %d %h"),
    k("pop3_uidl_format", "%08Xu%08Xv", Text, Dovecot, "POP3 UIDL format (%u uid, %v uidvalidity, %m md5, %f filename, %g guid)"),
    k("auth_mechanisms", "plain", List, Dovecot, "SASL mechanisms offered: plain login cram-md5"),
    k("passdb", "shadow", Text, Dovecot, "password database: passwd-file:/path or shadow"),
    k("userdb", "passwd", Text, Dovecot, "user database: passwd, passwd-file:/path, or static:uid=N gid=N home=PATH"),
    k("disable_plaintext_auth", "yes", Bool, Dovecot, "refuse passwords without TLS unless the client is this host"),
    k("auth_failure_delay", "2 secs", Time('s'), Dovecot, "delay before a failed login is answered; also the first step of the per-IP/per-user penalty, which doubles per failure up to 15 s"),
    k("quota", "", Text, Dovecot, "quota plugin backend: maildir:NAME (Maildir++ maildirsize, NAME is the IMAP quota root, e.g. maildir:User quota); empty = no quota accounting"),
    k("quota_rule", "", Text, Dovecot, "default limits for every mailbox, e.g. *:storage=1G or ?:messages=10000 (a passwd-file's userdb_quota_rule= overrides it per user); empty = the limits in each maildirsize"),
    k("quota_grace", "10%", Text, Dovecot, "how far over the limit the last delivered message (SMTP, not APPEND) may bring a user who was under it: a percentage or a size"),
    k("quota_full_tempfail", "no", Bool, Dovecot, "a delivery to a full mailbox is refused with 452 4.2.2 (retry later) instead of 552 5.2.2"),
    k("mail_max_userip_connections", "10", Count, Dovecot, "logged-in IMAP (and, separately, POP3) sessions per user and client IP (0 = no limit)"),
    k("smtpd_tls_cert_file", "", Text, Postfix, "Postfix's name for ssl_cert (a PEM certificate chain)"),
    k("smtpd_tls_key_file", "$smtpd_tls_cert_file", Text, Postfix, "Postfix's name for ssl_key"),
    k("smtpd_tls_chain_files", "", List, Postfix, "one PEM file with key and chain, or the key file then the chain file (instead of smtpd_tls_cert_file/_key_file)"),
    k("ssl_cert", "", Text, Dovecot, "PEM certificate chain for every TLS listener (\"</path\" accepted)"),
    k("ssl_key", "", Text, Dovecot, "PEM private key for ssl_cert"),
    k("smtpd_tls_security_level", "may", Text, Postfix, "TLS on the smtp listener (port 25): none (no STARTTLS), may (offered), encrypt (nothing but EHLO, STARTTLS, NOOP, RSET, QUIT before TLS); submission always requires TLS"),
    k("smtpd_tls_auth_only", "no", Bool, Postfix, "yes: SMTP AUTH only after TLS, even from this host (no: disable_plaintext_auth decides)"),
    k("smtpd_tls_protocols", ">=TLSv1.2", Text, Postfix, "TLS versions of the SMTP listeners, Postfix syntax (!SSLv3, !TLSv1 or >=TLSv1.2); only TLSv1.2 and TLSv1.3 exist in pigeonpost (Postfix's default >=TLSv1)"),
    k("ssl", "yes", Text, Dovecot, "TLS for IMAP and POP3: yes, no (no STARTTLS/STLS, no imaps/pop3s), required (no AUTH/LOGIN/USER of any mechanism before TLS, not even from this host)"),
    k("ssl_min_protocol", "TLSv1.2", Text, Dovecot, "oldest TLS version IMAP and POP3 accept: TLSv1.2 or TLSv1.3 (older ones are not available)"),
    k("first_valid_uid", "0", Count, Dovecot, "IMAP/POP3 refuse users whose userdb uid is below this (Dovecot's default is 500; 0 keeps existing setups working)"),
    k("first_valid_gid", "0", Count, Dovecot, "IMAP/POP3 refuse users whose userdb gid is below this (Dovecot's default is 1)"),
    k("auth_username_format", "%u", Text, Dovecot, "the login name as the passdb is asked for it: %u, %n (user part), %d (domain), %L/%U modifiers, e.g. %Lu (Dovecot's default %Lu; %u keeps names as typed)"),
    // pigeonpost's own
    k("listen.smtp", "$inet_interfaces:25", Listen, Own, "SMTP listener (STARTTLS offered)"),
    k("listen.submission", "$inet_interfaces:587", Listen, Own, "submission listener (STARTTLS and AUTH required)"),
    k("listen.submissions", "$inet_interfaces:465", Listen, Own, "submission over implicit TLS"),
    k("listen.imap", "$inet_interfaces:143", Listen, Own, "IMAP listener (STARTTLS)"),
    k("listen.imaps", "$inet_interfaces:993", Listen, Own, "IMAP over implicit TLS"),
    k("listen.pop3", "$inet_interfaces:110", Listen, Own, "POP3 listener (STLS)"),
    k("listen.pop3s", "$inet_interfaces:995", Listen, Own, "POP3 over implicit TLS"),
    k("listen.lmtp", "", Listen, Own, "LMTP listener (off by default)"),
    k("listen.http", "$inet_interfaces:8080", Listen, Own, "/healthz, /readyz, /metrics and mail client autoconfiguration"),
    k("autoconfig_hostname", "$myhostname", Text, Own, "host name mail clients are told to connect to by the autoconfiguration endpoints of listen.http (Thunderbird, Outlook, Apple)"),
    k("dns_servers", "", List, Own, "DNS servers (ip or ip:port) for MX lookups; empty = /etc/resolv.conf"),
    k("dmarc_policy", "report", Text, Own, "DMARC on mail from outside: report (Authentication-Results only), enforce (p=reject refused, p=quarantine to Junk), off"),
    k("authenticated_sender_policy", "owned", Text, Own, "MAIL FROM of authenticated clients: owned (the login's own address, its +extensions, aliases that deliver to it, smtpd_sender_login_maps; else 553 5.7.1) or any"),
    k("virtual_mailbox_passdb_users", "no", Bool, Own, "a virtual_mailbox_domains address with no virtual_mailbox_maps entry is delivered when the passdb has that login, to the Maildir mail_location gives it (Dovecot LDA style); no = Postfix's virtual(8): the maps alone"),
    k("postscreen", "no", Bool, Own, "screen port 25 clients before the greeting (postscreen_* keys): DNS list score and pregreet detection"),
    k("spf_policy", "report", Text, Own, "SPF on mail from outside: report, reject_fail (550 5.7.23 at MAIL FROM for an SPF fail), off"),
    k("mail_auth_mynetworks", "no", Bool, Own, "check SPF/DKIM/DMARC on mail from mynetworks too (never for authenticated clients)"),
    k("dkim_key_table", "", Text, Own, "OpenDKIM KeyTable (name domain:selector:/path/to/key) of keys to sign outgoing mail with"),
    k("dkim_signing_table", "", Text, Own, "OpenDKIM SigningTable (refile:/path for *@domain patterns) choosing the key by From address"),
    k("proxy_protocol", "", List, Own, "listeners that expect a PROXY protocol v1/v2 header from proxy_trusted_networks, e.g. smtp submission"),
    k("proxy_trusted_networks", "", List, Own, "networks allowed to send a PROXY protocol header"),
    k("auth_failure_ban_threshold", "20", Count, Own, "failed logins from one client IP (IPv6: its /64) within auth_failure_ban_window that ban it (0 = never ban)"),
    k("auth_failure_ban_window", "10m", Time('m'), Own, "the window auth_failure_ban_threshold counts failures in"),
    k("auth_failure_ban_time", "30m", Time('m'), Own, "how long a banned client IP is refused at connect"),
    k("auth_failure_ban_exceptions", "", List, Own, "client networks never banned nor penalised for failed logins (e.g. $mynetworks)"),
    k("login_timeout", "60s", Time('s'), Own, "IMAP/POP3: time from connect to a successful login before the connection is closed"),
    k("acme_domains", "", List, Own, "host names to get one certificate for with ACME (RFC 8555); when set, pigeonpost keeps the certificate and key in acme_state_directory itself and ssl_cert/ssl_key must be unset"),
    k("acme_email", "", Text, Own, "contact address of the ACME account (optional)"),
    k("acme_directory", "https://acme-v02.api.letsencrypt.org/directory", Text, Own, "ACME directory URL (Let's Encrypt by default; its staging directory for trials)"),
    k("acme_challenge", "http-01", Text, Own, "how the ACME server checks the names: http-01 (answered on listen.http, which must then include port 80) or tls-alpn-01 (answered on every implicit-TLS listener; port 443 must reach one)"),
    k("acme_state_directory", "", Text, Own, "where the ACME account key, the certificate (cert.pem) and its key (key.pem) are kept, mode 0700; empty = queue_directory/acme"),
    k("acme_ca_file", "", Text, Own, "PEM root certificate to trust for the ACME server's HTTPS (a private ACME server); empty = the system's roots"),
    k("acme_renew_before", "30d", Time('d'), Own, "renew this long before the certificate expires (plus up to a tenth of it, at most a day, of random jitter)"),
    k("acme_retry_time", "10m", Time('m'), Own, "pause after a failed ACME attempt, doubling up to a day; also the least time between two orders"),
    k("log_format", "text", Text, Own, "log line format: text or json"),
    k("log_level", "info", Text, Own, "log filter, RUST_LOG syntax (e.g. info,pigeonpost::smtp=debug); a bare word that is not a level (verbose) is an error; RUST_LOG overrides"),
    k("max_connections", "1000", Count, Own, "simultaneous connections per listener"),
    k("shutdown_timeout", "30s", Time('s'), Own, "how long sessions may finish after SIGTERM"),
];

/// Postfix and Dovecot keys a copied configuration often has that
/// pigeonpost does not need: accepted with a one-line note saying why,
/// instead of "unknown key".
pub static NOT_NEEDED: &[(&str, &str)] = &[
    (
        "smtpd_sasl_type",
        "SASL is built in: the passdb is read directly, no Dovecot auth socket",
    ),
    (
        "smtpd_sasl_path",
        "SASL is built in: the passdb is read directly, no Dovecot auth socket",
    ),
    (
        "smtpd_sasl_auth_enable",
        "AUTH is offered as auth_mechanisms and disable_plaintext_auth say",
    ),
    (
        "smtpd_sasl_security_options",
        "AUTH rules follow auth_mechanisms and disable_plaintext_auth",
    ),
    (
        "smtpd_sasl_tls_security_options",
        "AUTH rules follow auth_mechanisms and disable_plaintext_auth",
    ),
    (
        "smtpd_sasl_local_domain",
        "user names are used as they are logged in",
    ),
    (
        "broken_sasl_auth_clients",
        "AUTH is always announced the RFC 4954 way",
    ),
    (
        "virtual_transport",
        "delivery into Maildir is built in (no virtual(8), LMTP or Dovecot LDA)",
    ),
    (
        "mailbox_transport",
        "delivery into Maildir is built in (no virtual(8), LMTP or Dovecot LDA)",
    ),
    ("local_transport", "local delivery is built in"),
    (
        "smtpd_use_tls",
        "STARTTLS is offered whenever ssl_cert/ssl_key (or smtpd_tls_cert_file) are set",
    ),
    (
        "smtpd_tls_session_cache_database",
        "TLS sessions are resumed with tickets, no cache file",
    ),
    (
        "smtp_tls_session_cache_database",
        "TLS sessions are resumed in memory, no cache file",
    ),
    (
        "smtpd_tls_loglevel",
        "TLS handshakes are logged at log_level",
    ),
    (
        "smtp_tls_loglevel",
        "TLS handshakes are logged at log_level",
    ),
    (
        "tls_random_source",
        "randomness comes from the operating system",
    ),
    ("biff", "there is no comsat notification"),
    (
        "append_dot_mydomain",
        "addresses are never rewritten with $mydomain (Postfix 3's default)",
    ),
    (
        "compatibility_level",
        "pigeonpost has Postfix 3.6+ defaults",
    ),
    ("readme_directory", "not used"),
    ("html_directory", "not used"),
    ("manpage_directory", "not used"),
    ("sample_directory", "not used"),
    ("command_directory", "one binary"),
    ("daemon_directory", "one binary"),
    ("shlib_directory", "one binary"),
    ("meta_directory", "one binary"),
    ("data_directory", "state lives in queue_directory"),
    (
        "mail_owner",
        "the server drops to each mailbox's owner itself",
    ),
    (
        "setgid_group",
        "local submission goes over the server's socket, no setgid postdrop",
    ),
    ("sendmail_path", "`pigeonpost sendmail` is the sendmail"),
    (
        "newaliases_path",
        "alias files are read as text and reloaded, no newaliases",
    ),
    ("mailq_path", "`pigeonpost queue list` is the mailq"),
    (
        "alias_database",
        "alias files are read as text and reloaded, no newaliases",
    ),
    ("maillog_file", "logs go to stderr (journald, kubectl logs)"),
    (
        "mail_privileged_group",
        "mbox files are written as their owner",
    ),
    ("ssl_dh", "TLS parameters are rustls' safe defaults"),
    (
        "ssl_prefer_server_ciphers",
        "TLS parameters are rustls' safe defaults",
    ),
    (
        "ssl_cipher_list",
        "TLS parameters are rustls' safe defaults",
    ),
    ("log_path", "logs go to stderr (journald, kubectl logs)"),
    (
        "info_log_path",
        "logs go to stderr (journald, kubectl logs)",
    ),
    (
        "debug_log_path",
        "logs go to stderr (journald, kubectl logs)",
    ),
    (
        "syslog_facility",
        "logs go to stderr (journald, kubectl logs)",
    ),
    (
        "mail_plugins",
        "the quota plugin is built in: setting quota = maildir:NAME turns it on",
    ),
];

pub fn find(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// The closest known key to `name`, for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (levenshtein(name, k.name), k.name))
        .filter(|(d, known)| *d <= 3.max(known.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        for k in KEYS {
            assert!(
                readme.contains(&format!("| `{}` |", k.name)),
                "README.md's key table lacks {}",
                k.name
            );
        }
    }

    #[test]
    fn not_needed_keys_are_not_real_keys() {
        for (k, _) in NOT_NEEDED {
            assert!(find(k).is_none(), "{k} is both a key and 'not needed'");
        }
        let readme = include_str!("../../README.md");
        for (k, _) in NOT_NEEDED {
            assert!(
                readme.contains(&format!("`{k}`")),
                "README.md does not name {k}"
            );
        }
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(suggest("mydestinations"), Some("mydestination"));
        assert_eq!(suggest("virtual_mailbox_map"), Some("virtual_mailbox_maps"));
        assert_eq!(suggest("listen.smpt"), Some("listen.smtp"));
        assert_eq!(suggest("completely_unrelated_thing"), None);
    }
}
