//! The command line: layered configuration, `$name`/`%u` expansion, and a
//! one-line error with exit code 2 for every kind of bad input.

use crate::util::{run, stderr, stdout, Tree};

/// The value line of `key` in `pigeonpost config` output.
fn line_of<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{out}"))
}

/// Runs `config` expecting failure: exit 2 and exactly one line on stderr.
fn config_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {} stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got:\n{err}"
    );
    err
}

#[test]
fn layers_apply_in_order_and_report_their_source() {
    let t = Tree::new();
    let main = t.write(
        "pigeonpost.toml",
        r#"
myhostname = "mail.example.com"
mydomain = "from-main.example"
myorigin = "$mydomain"
message_size_limit = 1000
"#,
    );
    t.write("conf.d/20-second.toml", "mydomain = \"example.com\"\n");
    t.write(
        "conf.d/10-first.toml",
        "mydomain = \"from-first.example\"\nrecipient_delimiter = \"+\"\n",
    );
    t.write("conf.d/ignored.txt", "this is not toml = = =\n");
    let main = main.to_str().unwrap();
    let out = run(
        &["--config", main, "config"],
        &[
            ("PIGEONPOST_MESSAGE_SIZE_LIMIT", "2048"),
            ("PIGEONPOST_LISTEN__SMTP", "127.0.0.1:2525"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(
        line_of(&o, "myhostname").contains("\"mail.example.com\"  # ")
            && line_of(&o, "myhostname").ends_with(main)
    );
    // conf.d files in name order: 20-second wins over 10-first and the main file.
    assert!(line_of(&o, "mydomain").starts_with("mydomain = \"example.com\"  # "));
    assert!(line_of(&o, "mydomain").contains("20-second.toml"));
    assert!(line_of(&o, "recipient_delimiter").contains("10-first.toml"));
    // $name expansion uses the final value of the referenced key.
    assert!(
        line_of(&o, "myorigin").starts_with("myorigin = \"example.com\""),
        "{o}"
    );
    assert!(line_of(&o, "myorigin").contains("written as \"$mydomain\""));
    // Postfix's default mydestination, expanded.
    assert!(line_of(&o, "mydestination").starts_with(
        "mydestination = \"mail.example.com, localhost.example.com, localhost\"  # default"
    ));
    // The environment overrides everything, nested keys with "__".
    assert_eq!(
        line_of(&o, "message_size_limit"),
        "message_size_limit = \"2048\"  # environment variable PIGEONPOST_MESSAGE_SIZE_LIMIT"
    );
    assert_eq!(
        line_of(&o, "smtp"),
        "smtp = \"127.0.0.1:2525\"  # environment variable PIGEONPOST_LISTEN__SMTP"
    );
    // Listener defaults follow inet_interfaces.
    assert!(line_of(&o, "imap").starts_with("imap = \"0.0.0.0:143, [::]:143\""));
}

#[test]
fn pigeonpost_config_env_names_the_file_and_lists_take_both_forms() {
    let t = Tree::new();
    let p = t.write(
        "elsewhere.toml",
        r#"
mydestination = ["example.com", "$myhostname"]
myhostname = "mx.example.com"
mynetworks = "127.0.0.0/8, [::1]/128 10.1.0.0/16"
inet_interfaces = "loopback-only"
"#,
    );
    let out = run(
        &["config", "mydestination", "mynetworks", "listen.smtp"],
        &[("PIGEONPOST_CONFIG", p.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(
        o.contains("mydestination = \"example.com, mx.example.com\""),
        "{o}"
    );
    assert!(
        o.contains("mynetworks = \"127.0.0.0/8, [::1]/128 10.1.0.0/16\""),
        "{o}"
    );
    assert!(o.contains("smtp = \"127.0.0.1:25, [::1]:25\""), "{o}");
    assert!(
        !o.contains("myorigin"),
        "only the asked keys are printed: {o}"
    );
}

#[test]
fn kubernetes_service_links_are_not_settings() {
    let t = Tree::new();
    let p = t.write("p.toml", "");
    let out = run(
        &["--config", p.to_str().unwrap(), "config", "myorigin"],
        &[
            ("PIGEONPOST_PORT", "tcp://10.0.0.1:25"),
            ("PIGEONPOST_PORT_25_TCP_ADDR", "10.0.0.1"),
            ("PIGEONPOST_SERVICE_HOST", "10.0.0.1"),
            ("PIGEONPOST_SERVICE_PORT_SMTP", "25"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn unknown_keys_get_a_did_you_mean() {
    let t = Tree::new();
    let p = t.write("p.toml", "mydestinations = \"example.com\"\n");
    let p = p.to_str().unwrap();
    let err = config_error(&["--config", p, "config"], &[]);
    assert!(
        err.contains("mydestinations")
            && err.contains(p)
            && err.contains("did you mean 'mydestination'"),
        "{err}"
    );

    let t2 = Tree::new();
    let q = t2.write("p.toml", "");
    let err = config_error(
        &["--config", q.to_str().unwrap(), "config"],
        &[("PIGEONPOST_VIRTUAL_MAILBOX_MAP", "x")],
    );
    assert!(
        err.contains("environment variable PIGEONPOST_VIRTUAL_MAILBOX_MAP"),
        "{err}"
    );
    assert!(err.contains("did you mean 'virtual_mailbox_maps'"), "{err}");

    let t3 = Tree::new();
    let r = t3.write("p.toml", "[listen]\nsmpt = \"127.0.0.1:25\"\n");
    let err = config_error(&["--config", r.to_str().unwrap(), "config"], &[]);
    assert!(
        err.contains("listen.smpt") && err.contains("did you mean 'listen.smtp'"),
        "{err}"
    );
}

#[test]
fn every_kind_of_bad_value_exits_2_naming_key_source_and_reason() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "message_size_limit = \"big\"\n",
            "message_size_limit",
            &["'big' is not a whole number"],
        ),
        (
            "message_size_limit = [1, 2]\n",
            "message_size_limit",
            &["found a list"],
        ),
        (
            "mynetworks = \"10.0.0.0/33\"\n",
            "mynetworks",
            &["10.0.0.0/33", "CIDR"],
        ),
        (
            "mynetworks = \"10.0.0.1/8\"\n",
            "mynetworks",
            &["host bits"],
        ),
        ("mynetworks = { a = 1 }\n", "mynetworks", &["found a table"]),
        (
            "myorigin = \"$nosuchparam\"\n",
            "myorigin",
            &["unknown parameter $nosuchparam"],
        ),
        (
            "myorigin = \"$myorigin\"\n",
            "myorigin",
            &["refers back to itself"],
        ),
        (
            "maximal_queue_lifetime = \"5y\"\n",
            "maximal_queue_lifetime",
            &["unknown time unit"],
        ),
        (
            "disable_plaintext_auth = \"maybe\"\n",
            "disable_plaintext_auth",
            &["not yes or no"],
        ),
        (
            "passdb = \"passwd-file:/nonexistent/users\"\n",
            "passdb",
            &["/nonexistent/users", "No such file"],
        ),
        (
            "passdb = \"ldap:/etc/ldap.conf\"\n",
            "passdb",
            &["unsupported passdb driver 'ldap'"],
        ),
        (
            "userdb = \"static:uid=5000 home=/x\"\n",
            "userdb",
            &["needs both uid= and gid="],
        ),
        (
            "mail_location = \"maildir:/var/vmail/%x\"\n",
            "mail_location",
            &["unknown variable %x"],
        ),
        (
            "mail_location = \"mbox:~/mail\"\n",
            "mail_location",
            &["maildir:PATH"],
        ),
        (
            "ssl_cert = \"</nonexistent/cert.pem\"\nssl_key = \"</nonexistent/key.pem\"\n",
            "ssl_cert",
            &["/nonexistent/cert.pem"],
        ),
        (
            "ssl_cert = \"/etc/hostname\"\n",
            "ssl_cert",
            &["ssl_key is not", "set together"],
        ),
        (
            "log_format = \"xml\"\n",
            "log_format",
            &["not text or json"],
        ),
        (
            "auth_mechanisms = \"plain gssapi\"\n",
            "auth_mechanisms",
            &["unknown value 'gssapi'"],
        ),
        (
            "[listen]\nsmtp = \"localhost:25\"\n",
            "listen.smtp",
            &["not an address with a port"],
        ),
    ];
    for (toml, key, needles) in cases {
        let t = Tree::new();
        let p = t.write("p.toml", toml);
        let p = p.to_str().unwrap();
        let err = config_error(&["--config", p, "config"], &[]);
        assert!(
            err.contains(&format!("config error: {key} (from {p})")),
            "{toml:?}: {err}"
        );
        for n in *needles {
            assert!(err.contains(n), "{toml:?}: missing {n:?} in {err}");
        }
    }
}

#[test]
fn bad_values_from_the_environment_name_the_variable() {
    let t = Tree::new();
    let p = t.write("p.toml", "");
    let err = config_error(
        &["--config", p.to_str().unwrap(), "config"],
        &[("PIGEONPOST_MYNETWORKS", "[::1]/129")],
    );
    assert!(
        err.contains("mynetworks (from environment variable PIGEONPOST_MYNETWORKS)"),
        "{err}"
    );
}

#[test]
fn missing_and_broken_files_exit_2() {
    let err = config_error(&["--config", "/nonexistent/pigeonpost.toml", "config"], &[]);
    assert!(
        err.contains("/nonexistent/pigeonpost.toml") && err.contains("cannot read"),
        "{err}"
    );
    let err = config_error(&["config"], &[("PIGEONPOST_CONFIG", "/nonexistent/p.toml")]);
    assert!(err.contains("/nonexistent/p.toml"), "{err}");

    let t = Tree::new();
    let p = t.write("p.toml", "myhostname = \"a\"\nmydomain = = broken\n");
    let err = config_error(&["--config", p.to_str().unwrap(), "config"], &[]);
    assert!(
        err.contains(p.to_str().unwrap()) && err.contains("invalid TOML"),
        "{err}"
    );

    let t = Tree::new();
    let p = t.write("p.toml", "");
    t.write("conf.d/50-bad.toml", "[unclosed\n");
    let err = config_error(&["--config", p.to_str().unwrap(), "config"], &[]);
    assert!(
        err.contains("50-bad.toml") && err.contains("invalid TOML"),
        "{err}"
    );
}

#[test]
fn usage_help_and_version() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    for sub in ["serve", "config", "pw"] {
        assert!(stdout(&out).contains(sub), "--help lists {sub}");
    }
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("pigeonpost "));
    let out = run(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2), "bad usage exits 2");
    let out = run(&["config", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["config", "nosuchkey"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// main.cf lines as they are in `conf.d/*.cf`: Postfix syntax, Postfix's
/// TLS key names, `inet_protocols`, `smtpd_banner`, and keys pigeonpost does
/// not need noted rather than refused; then a server started from them.
#[test]
fn main_cf_lines_in_conf_d_work_as_they_are() {
    let t = Tree::new();
    t.write_cert(&["mail.example.com"]);
    let d = t.dir.path().display().to_string();
    let cfg = t.write("pigeonpost.toml", "myhostname = \"mail.example.com\"\n");
    t.write(
        "conf.d/10-main.cf",
        &format!(
            "# copied from /etc/postfix/main.cf\n\
             smtpd_banner = $myhostname ESMTP ready\n\
             inet_protocols = ipv4\n\
             smtpd_tls_cert_file = {d}/tls/cert.pem\n\
             smtpd_tls_key_file = {d}/tls/key.pem\n\
             smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = private/auth\n\
             virtual_transport = lmtp:unix:private/dovecot-lmtp\n\
             smtpd_recipient_restrictions =\n    permit_mynetworks,\n    reject_unauth_destination\n\
             mynetworks = 127.0.0.0/8\n"
        ),
    );
    let out = run(&["--config", cfg.to_str().unwrap(), "config"], &[]);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{e}");
    assert!(e.contains("note: smtpd_sasl_type (from "), "{e}");
    assert!(
        e.contains("10-main.cf) is not needed by pigeonpost: SASL is built in"),
        "{e}"
    );
    assert!(e.contains("note: virtual_transport"), "{e}");
    assert!(
        line_of(&o, "smtpd_recipient_restrictions")
            .contains("\"permit_mynetworks, reject_unauth_destination\""),
        "{o}"
    );
    assert!(
        line_of(&o, "smtpd_recipient_restrictions").contains("10-main.cf"),
        "{o}"
    );
    // inet_protocols = ipv4: the default listeners leave out [::].
    assert_eq!(
        line_of(&o, "smtp").split("  #").next().unwrap(),
        "smtp = \"0.0.0.0:25\""
    );

    // A bad main.cf line names the file and the line.
    t.write(
        "conf.d/20-bad.cf",
        "mydomain = example.com\nthis line has no equals sign\n",
    );
    let err = config_error(&["--config", cfg.to_str().unwrap(), "config"], &[]);
    assert!(err.contains("20-bad.cf") && err.contains("line 2"), "{err}");
    std::fs::remove_file(t.path("conf.d/20-bad.cf")).unwrap();

    // The server takes the banner and the certificate from the Postfix names.
    t.write(
        "pigeonpost.toml",
        &format!(
            "myhostname = \"mail.example.com\"\nqueue_directory = \"{d}/queue\"\n{}",
            crate::util::test_listen(&[])
        ),
    );
    let server = crate::util::Server::start(&cfg, &[]);
    let mut c = crate::util::LineClient::connect("127.0.0.1", server.addr("smtp"));
    assert_eq!(c.line(), "220 mail.example.com ESMTP ready\r\n");
    assert!(c
        .cmd("EHLO client.example\r\n", "250 ")
        .contains("250-STARTTLS"));
}

/// The TLS and login keys of Postfix and Dovecot: bad values name the key
/// and the file; TLS versions rustls does not have are a notice, not a
/// silent change.
#[test]
fn tls_and_login_keys_are_checked() {
    let t = Tree::new();
    let cfg = t.write("pigeonpost.toml", "myhostname = \"mail.example.com\"\n");
    let c = cfg.to_str().unwrap();
    for (line, needle) in [
        (
            "smtpd_tls_security_level = verify",
            "use none, may or encrypt",
        ),
        (
            "smtpd_tls_security_level = encrypt",
            "encrypt needs a certificate",
        ),
        (
            "smtpd_tls_protocols = <=TLSv1.1",
            "neither TLSv1.2 nor TLSv1.3",
        ),
        (
            "smtpd_tls_protocols = !TLSv1.4",
            "'!TLSv1.4' is not a protocol",
        ),
        ("ssl = sometimes", "use yes, no or required"),
        ("ssl_min_protocol = TLSv2", "is not a protocol"),
        ("auth_username_format = %x", "unknown variable %x"),
        ("first_valid_uid = -1", "is not a whole number"),
    ] {
        t.write("conf.d/10-main.cf", &format!("{line}\n"));
        let err = config_error(&["--config", c, "config"], &[]);
        let key = line.split(' ').next().unwrap();
        assert!(
            err.contains(&format!("config error: {key} (from ")) && err.contains("10-main.cf"),
            "{err}"
        );
        assert!(err.contains(needle), "{line}: {err}");
    }
    t.write(
        "conf.d/10-main.cf",
        "smtpd_tls_protocols = !SSLv2, !SSLv3\nssl_min_protocol = TLSv1.3\n",
    );
    let out = run(&["--config", c, "config", "ssl_min_protocol"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("smtpd_tls_protocols (from ")
            && e.contains("asks for TLSv1, TLSv1.1: not available in pigeonpost"),
        "{e}"
    );
    assert!(!e.contains("ssl_min_protocol (from"), "{e}");
}
