//! `pigeonpost import` on realistic configurations (tests/fixtures/import:
//! a HOWTO-style Postfix + Dovecot virtual-user setup, Debian's main.cf
//! after dpkg-reconfigure, a docker-mailserver-style main.cf/master.cf):
//! the report says what became of each setting, the result loads, and a
//! server started from it accepts and serves the same mail. Postfix's
//! `postconf -n` and Dovecot's `doveconf -n` are the oracles for the
//! parsers.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{require_tool, run, stderr, LineClient, Server, Tree};

/// Copies fixture `name` into a temporary tree, `@DIR@` replaced by the
/// tree's path; adds a certificate, an aliases file and /etc/mailname.
fn fixture(name: &str) -> Tree {
    let t = Tree::new();
    let root = Path::new("tests/fixtures/import").join(name);
    copy(&root, t.dir.path(), &t.dir.path().display().to_string());
    t.write_cert(&["localhost"]);
    t.write("aliases", "root: postmaster\n");
    t.write("mailname", "example.com\n");
    std::fs::create_dir_all(t.path("vmail")).unwrap();
    std::fs::create_dir_all(t.path("dovecot")).unwrap();
    t
}

fn copy(from: &Path, to: &Path, dir: &str) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy(&p, &dest, dir);
        } else {
            let text = std::fs::read_to_string(&p).unwrap().replace("@DIR@", dir);
            std::fs::write(dest, text).unwrap();
        }
    }
}

/// Runs `import` for the tree; (TOML path, report).
fn import(t: &Tree) -> (PathBuf, String) {
    let out = t.path("pigeonpost.toml");
    let o = run(
        &[
            "import",
            "--postfix-dir",
            t.path("postfix").to_str().unwrap(),
            "--dovecot-dir",
            t.path("dovecot").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let report = stderr(&o);
    assert!(o.status.success(), "{report}");
    // What `pigeonpost config` (the configuration check) says of it.
    let check = run(&["--config", out.to_str().unwrap(), "config"], &[]);
    assert!(check.status.success(), "{}", stderr(&check));
    (out, report)
}

fn has(report: &str, line: &str) {
    assert!(
        report
            .lines()
            .any(|l| l.ends_with(line) || l.contains(line)),
        "no report line with '{line}' in:\n{report}"
    );
}

/// Every listener on a loopback port of its own (lmtp off).
fn loopback_listeners() -> Vec<(&'static str, &'static str)> {
    [
        "SMTP",
        "SUBMISSION",
        "SUBMISSIONS",
        "IMAP",
        "IMAPS",
        "POP3",
        "POP3S",
        "HTTP",
    ]
    .iter()
    .map(|n| {
        let k: &'static str = Box::leak(format!("PIGEONPOST_LISTEN__{n}").into_boxed_str());
        (k, "127.0.0.1:0")
    })
    .chain([("PIGEONPOST_LISTEN__LMTP", "")])
    .collect()
}

#[test]
fn howto_virtual_users_import_and_serve_the_same_mail() {
    let t = fixture("howto");
    let (toml, report) = import(&t);
    has(
        &report,
        "main.cf:20: virtual_transport: not needed: delivery into Maildir is built in",
    );
    has(
        &report,
        "main.cf:23: smtpd_sasl_type: not needed: SASL is built in",
    );
    has(
        &report,
        "main.cf:33: smtpd_tls_auth_only: mapped: to smtpd_tls_auth_only",
    );
    has(
        &report,
        "main.cf:45: queue_directory: not needed: pigeonpost keeps its own queue",
    );
    has(
        &report,
        "main.cf:47: header_checks: unsupported: content checks: run a milter",
    );
    has(&report, "master.cf:7: submission -o smtpd_tls_security_level=encrypt: not needed: submission always requires TLS");
    has(
        &report,
        "master.cf:13: smtps -o smtpd_tls_wrapper_mode=yes: mapped: to listen.submissions",
    );
    has(&report, "master.cf:41: dovecot unix pipe: unsupported:");
    has(&report, "10-ssl.conf:1: ssl: mapped: to ssl");
    has(&report, "10-master.conf:21: service lmtp / unix_listener /var/spool/postfix/private/dovecot-lmtp / mode: not needed");
    has(
        &report,
        "auth-passwdfile.conf.ext:3: passdb / driver = passwd-file: mapped: to passdb",
    );
    has(
        &report,
        "20-imap.conf:2: protocol imap / mail_plugins: unsupported: plugins",
    );
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("\nssl = \"required\"\n"), "{text}");
    assert!(
        text.contains(&format!(
            "\npassdb = \"passwd-file:scheme=CRYPT username_format=%u {}/dovecot/users\"\n",
            t.dir.path().display()
        )),
        "{text}"
    );

    let server = Server::start(&toml, &loopback_listeners());
    // Port 25: mail for a user of the imported virtual_mailbox_maps.
    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    assert!(c.line().starts_with("220 mail.example.com ESMTP"));
    c.cmd("EHLO client.example\r\n", "250 ");
    assert!(c
        .cmd("MAIL FROM:<a@example.org>\r\n", "")
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<nobody@example.com>\r\n", "")
        .starts_with("550"));
    assert!(c
        .cmd("RCPT TO:<john@example.com>\r\n", "")
        .starts_with("250"));
    c.cmd("DATA\r\n", "354");
    assert!(c
        .cmd("Subject: one\r\n\r\nfrom outside\r\n.\r\n", "")
        .starts_with("250"));
    c.cmd("QUIT\r\n", "221");

    // Submission (master.cf's submission, STARTTLS + AUTH against the
    // imported passdb), then IMAP and POP3 over TLS (ssl = required;
    // auth_username_format = %Lu).
    let cafile = t.path("tls/cert.pem").display().to_string();
    let (ok, out, err) = crate::smtp::python(
        r#"
import imaplib, os, poplib, smtplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", int(os.environ["SUB"]), timeout=20)
s.starttls(context=ctx)
s.login("jane@example.com", "jane123")
s.sendmail("jane@example.com", ["john@example.com"], b"Subject: two\r\n\r\nfrom jane\r\n")
s.quit()
m = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS"]), ssl_context=ctx)
m.login("John@Example.com", "john123")
print(m.select("INBOX")[1][0].decode())
m.logout()
p = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S"]), context=ctx)
p.user("john@example.com")
p.pass_("john123")
print(p.stat()[0])
p.quit()
"#,
        &[
            ("CAFILE", cafile),
            ("SUB", server.addr("submission").port().to_string()),
            ("IMAPS", server.addr("imaps").port().to_string()),
            ("POP3S", server.addr("pop3s").port().to_string()),
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out, "2\n2\n");

    // ssl = required: no LOGIN on 143 before STARTTLS, even from this host.
    let mut c = LineClient::connect("127.0.0.1", server.addr("imap"));
    c.line();
    assert!(c.cmd("a CAPABILITY\r\n", "a ").contains("LOGINDISABLED"));
}

#[test]
fn debian_main_cf_imports_and_starts() {
    let t = fixture("debian");
    let (toml, report) = import(&t);
    has(&report, "smtpd_banner: mapped: to smtpd_banner");
    has(&report, "biff: not needed: there is no comsat notification");
    has(&report, "myorigin: mapped: to myorigin");
    has(&report, "mailbox_size_limit: unsupported:");
    has(&report, "smtp_tls_CApath: not needed:");
    has(&report, "maildrop unix pipe: unsupported:");
    has(
        &report,
        "master.cf: (no submission service): mapped: to listen.submission = \"\"",
    );
    has(&report, "dovecot.conf: (file): not needed: not read");
    let text = std::fs::read_to_string(&toml).unwrap();
    // myorigin = /etc/mailname: the domain the file holds.
    assert!(text.contains("\nmyorigin = \"example.com\"\n"), "{text}");
    let server = Server::start(&toml, &loopback_listeners());
    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    assert_eq!(
        c.line(),
        "220 mail.example.com ESMTP pigeonpost (Debian/GNU)\r\n"
    );
    assert!(c
        .cmd("EHLO client.example\r\n", "250 ")
        .contains("250-STARTTLS"));
    // mydestination includes example.com: unknown local users are refused,
    // and 127.0.0.1 (mynetworks) may relay.
    c.cmd("MAIL FROM:<a@example.org>\r\n", "250");
    let r = c.cmd("RCPT TO:<nosuchuser@example.com>\r\n", "");
    assert!(r.starts_with("550"), "{r}");
    let r = c.cmd("RCPT TO:<x@elsewhere.example>\r\n", "");
    assert!(r.starts_with("250"), "{r}");
    // master.cf has no submission service (Debian comments it out).
    assert!(text.contains("\nlisten.submission = \"\"\n"), "{text}");
}

#[test]
fn docker_mailserver_style_import() {
    let t = fixture("dms");
    let (toml, report) = import(&t);
    has(
        &report,
        "master.cf:1: smtp inet postscreen: mapped: to postscreen",
    );
    has(
        &report,
        "postscreen_dnsbl_sites: mapped: to postscreen_dnsbl_sites",
    );
    has(
        &report,
        "postscreen_access_list: unsupported: pigeonpost's postscreen",
    );
    has(&report, "smtpd_milters: mapped: to smtpd_milters");
    has(
        &report,
        "mua_client_restrictions: not needed: only master.cf overrides use it",
    );
    has(&report, "dms_smtpd_sender_restrictions: not needed: its value is written into smtpd_sender_restrictions");
    has(
        &report,
        "submission -o smtpd_client_restrictions=$mua_client_restrictions: not needed",
    );
    has(
        &report,
        "submission -o smtpd_reject_unlisted_recipient=no: unsupported: per-listener settings",
    );
    // A value pigeonpost refuses is reported with the loader's reason, not written.
    has(&report, "smtpd_recipient_restrictions: unsupported: pigeonpost refuses it as smtpd_recipient_restrictions: check_policy_service unix:private/policyd-spf");
    has(
        &report,
        "protocols: mapped: to protocols (without sieve: not available)",
    );
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("\nsmtpd_sender_restrictions = \"permit_sasl_authenticated, permit_mynetworks, reject_unknown_sender_domain\"\n"), "{text}");
    assert!(!text.contains("smtpd_recipient_restrictions"), "{text}");
    let server = Server::start(&toml, &loopback_listeners());
    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    assert!(c.line().starts_with("220 mail.example.com ESMTP"));
}

/// Postfix's own parser as the oracle: every `name = value` that
/// `postconf -n` reads from the fixtures' main.cf is what ours reads.
#[test]
fn main_cf_reader_agrees_with_postconf() {
    // /usr/sbin is not on every user's PATH.
    let postconf = if Path::new("/usr/sbin/postconf").exists() {
        "/usr/sbin/postconf"
    } else if require_tool("postconf") {
        "postconf"
    } else {
        return;
    };
    for name in ["howto", "debian", "dms"] {
        let t = fixture(name);
        let dir = t.path("postfix");
        let text = std::fs::read_to_string(dir.join("main.cf")).unwrap();
        let ours = pigeonpost::config::layers::parse_main_cf(&text).unwrap();
        let out = Command::new(postconf)
            .args(["-c", dir.to_str().unwrap(), "-n"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let theirs: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_once(" = ")
                    .or_else(|| l.strip_suffix(" =").map(|k| (k, "")))
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            // What -c itself sets.
            .filter(|(k, _)| k != "config_directory")
            .collect();
        assert!(theirs.len() > 10, "{name}: {theirs:?}");
        let mut ours_sorted = ours.clone();
        ours_sorted.sort();
        let mut theirs_sorted = theirs.clone();
        theirs_sorted.sort();
        assert_eq!(ours_sorted, theirs_sorted, "{name}");
    }
}

/// Dovecot's own parser as the oracle: `doveconf -n` flattens the
/// includes into one file; importing that gives the same settings.
#[test]
fn dovecot_reader_agrees_with_doveconf() {
    if !require_tool("doveconf") {
        return;
    }
    let t = fixture("howto");
    let out = Command::new("doveconf")
        .args([
            "-c",
            t.path("dovecot/dovecot.conf").to_str().unwrap(),
            "-n",
            "-P",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flat = t.write("flat/dovecot.conf", &String::from_utf8_lossy(&out.stdout));
    let settings = |p: &Path| {
        let mut v: Vec<(Vec<String>, String, String)> =
            pigeonpost::admin::import::dovecot_conf::read(p)
                .unwrap()
                .into_iter()
                .map(|s| (s.sections, s.key, s.value.trim().to_string()))
                .collect();
        v.sort();
        v
    };
    let ours = settings(&t.path("dovecot/dovecot.conf"));
    let theirs = settings(&flat);
    // doveconf -n leaves out values equal to Dovecot's defaults and adds
    // a namespace's empty defaults, and quotes `" imap_quota"` for an
    // empty `$mail_plugins`; everything else must be the same.
    for s in &theirs {
        let default_filled = s.1 == "location" || s.1 == "prefix";
        assert!(
            default_filled || ours.contains(s),
            "doveconf has {s:?}; we read {ours:?}"
        );
    }
    assert!(theirs.len() >= 20, "{theirs:?}");
}

/// Nothing to read, or a broken line: exit 2 naming the file and line.
#[test]
fn import_errors_name_the_file_and_line() {
    let o = run(
        &[
            "import",
            "--postfix-dir",
            "/nonexistent/postfix",
            "--dovecot-dir",
            "/nonexistent/dovecot",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing to import"), "{}", stderr(&o));
    let t = fixture("howto");
    t.write(
        "postfix/master.cf",
        "smtp inet n - n - - smtpd\nsubmission inet n -\n",
    );
    // The import of `t` exits 2 with `want` in its error.
    let fails_with = |t: &Tree, want: &str| {
        let o = run(
            &[
                "import",
                "--postfix-dir",
                t.path("postfix").to_str().unwrap(),
                "--dovecot-dir",
                t.path("dovecot").to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    };
    fails_with(&t, "master.cf:2: expected 'service type");
    t.write("postfix/master.cf", "smtp inet n - n - - smtpd\n");
    t.write(
        "dovecot/conf.d/30-broken.conf",
        "protocol imap {\n  mail_plugins = quota\n",
    );
    fails_with(&t, "30-broken.conf: section 'protocol imap' is not closed");
}

/// `postconf -n` and `postconf -M` output saved as main.cf and master.cf
/// import to the same pigeonpost.toml as the files themselves.
#[test]
fn postconf_output_imports_the_same() {
    let postconf = if Path::new("/usr/sbin/postconf").exists() {
        "/usr/sbin/postconf"
    } else if require_tool("postconf") {
        "postconf"
    } else {
        return;
    };
    let t = fixture("dms");
    let (toml, _) = import(&t);
    let first = std::fs::read_to_string(&toml).unwrap();
    let dir = t.path("postfix");
    let saved = |flag: &str| {
        let out = Command::new(postconf)
            .args(["-c", dir.to_str().unwrap(), flag])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("config_directory ="))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let (main, master) = (saved("-n"), saved("-M"));
    t.write("postfix/main.cf", &main);
    t.write("postfix/master.cf", &master);
    let (again, _) = import(&t);
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let again = std::fs::read_to_string(&again).unwrap();
    assert!(first.contains("\npostscreen = \"yes\"\n"), "{first}");
    assert_eq!(settings(&first), settings(&again));
}
