//! User management (`pigeonpost user …`, `pigeonpost alias …`) against a
//! running server, sendmail as the programs that call it do (cron, PHP,
//! Git, an unprivileged user), and the operational checks (one server per
//! queue, open-relay and log-level warnings, `queue delete`, key/cert).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, require_tool, LineClient, MailFixture, Server};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The HOWTO fixture with IMAP and POP3 on, and a virtual alias table.
fn fixture() -> MailFixture {
    let fx = MailFixture::new(&[("imap", "127.0.0.1:0"), ("pop3", "127.0.0.1:0")], "");
    let valias = fx.tree.write("valias", "# virtual aliases\n");
    let text = std::fs::read_to_string(&fx.config).unwrap();
    std::fs::write(
        &fx.config,
        format!("virtual_alias_maps = \"hash:{}\"\n{text}", valias.display()),
    )
    .unwrap();
    fx
}

/// Runs the CLI on the fixture's config (and its server's queue) with `input` on stdin.
fn cli(fx: &MailFixture, args: &[&str], input: &str) -> Output {
    cli_as(fx, None, args, input)
}

/// Like [`cli`], as `user` (through runuser) when given.
fn cli_as(fx: &MailFixture, user: Option<&str>, args: &[&str], input: &str) -> Output {
    let queue = fx.config.parent().unwrap().join("queue");
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", util::BIN]);
            c.current_dir("/");
            // As util::pigeonpost() does: no PIGEONPOST_* from the test's
            // environment (CI sets PIGEONPOST_REQUIRE_PEERS) may reach it.
            for (k, _) in std::env::vars() {
                if k.starts_with("PIGEONPOST_") {
                    c.env_remove(k);
                }
            }
            c
        }
        None => util::pigeonpost(),
    };
    cmd.env_remove("RUST_LOG")
        .env("PIGEONPOST_QUEUE_DIRECTORY", &queue)
        .args(["--config", fx.config.to_str().unwrap()])
        .args(args);
    util::output_with_stdin(&mut cmd, input.as_bytes())
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        util::stdout(o),
        util::stderr(o)
    );
    util::stdout(o)
}

/// The exit code and stderr of a run that must fail.
fn fails(o: &Output) -> (i32, String) {
    assert!(
        !o.status.success(),
        "unexpected success: {}",
        util::stdout(o)
    );
    (o.status.code().unwrap_or(-1), util::stderr(o))
}

/// The reply line to RCPT TO from a trusted client.
fn rcpt(smtp: SocketAddr, to: &str) -> String {
    let mut c = LineClient::connect("127.0.0.1", smtp);
    c.until("220 ");
    c.cmd("EHLO test\r\n", "250 ");
    c.cmd("MAIL FROM:<someone@outside.example>\r\n", "");
    let r = c.cmd(&format!("RCPT TO:<{to}>\r\n"), "");
    c.cmd("QUIT\r\n", "");
    r
}

/// Waits (the server reloads the changed files) until RCPT TO `to` gets `code`.
fn wait_rcpt(smtp: SocketAddr, to: &str, code: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = rcpt(smtp, to);
        if r.starts_with(code) {
            return;
        }
        assert!(Instant::now() < deadline, "RCPT TO:<{to}> still gets {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(smtp: SocketAddr, to: &str, subject: &str) {
    let mut c = LineClient::connect("127.0.0.1", smtp);
    c.until("220 ");
    c.cmd("EHLO test\r\n", "250 ");
    assert!(c
        .cmd("MAIL FROM:<someone@outside.example>\r\n", "")
        .starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{to}>\r\n"), "");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA\r\n", "").starts_with("354"));
    let r = c.cmd(&format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n"), "");
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT\r\n", "");
}

/// IMAP LOGIN (plaintext is fine from this host) and the INBOX's EXISTS count.
fn imap_inbox(addr: SocketAddr, user: &str, pass: &str) -> Result<usize, String> {
    let mut c = LineClient::connect("127.0.0.1", addr);
    c.until("* OK");
    let r = c.cmd(&format!("a LOGIN {user} {pass}\r\n"), "a ");
    if !r.contains("a OK") {
        return Err(r);
    }
    let r = c.cmd("b SELECT INBOX\r\n", "b ");
    c.cmd("c LOGOUT\r\n", "c ");
    let n = r
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .ok_or(r.clone())?;
    Ok(n)
}

/// POP3 USER/PASS and the STAT line.
fn pop3_stat(addr: SocketAddr, user: &str, pass: &str) -> Result<String, String> {
    let mut c = LineClient::connect("127.0.0.1", addr);
    c.until("+OK");
    c.cmd(&format!("USER {user}\r\n"), "");
    let r = c.cmd(&format!("PASS {pass}\r\n"), "");
    if !r.starts_with("+OK") {
        return Err(r);
    }
    let stat = c.cmd("STAT\r\n", "");
    c.cmd("QUIT\r\n", "");
    Ok(stat.trim_end().to_string())
}

fn wait_files(dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = ["new", "cur"]
            .iter()
            .filter_map(|s| std::fs::read_dir(dir.join(s)).ok())
            .map(|rd| rd.count())
            .sum::<usize>();
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {count} messages, want {n}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_user_added_while_the_server_runs_gets_mail_and_logs_in() {
    let fx = fixture();
    // Dovecot extra fields on an existing line must survive every edit.
    let john = "john@example.com:{PLAIN}john123:5000:5000::/srv/john::userdb_quota_rule=*:storage=1G allow_nets=127.0.0.0/8";
    fx.tree.write(
        "users",
        &format!("# managed by hand\n{john}\njane@example.com:{{PLAIN}}jane123::::::\n"),
    );
    let server = fx.start();
    let smtp = server.addr("smtp");
    assert!(rcpt(smtp, "bob@example.com").starts_with("550"));

    let out = ok(&cli(
        &fx,
        &["user", "add", "bob@example.com"],
        "b0b-secret\n",
    ));
    assert!(out.contains("added bob@example.com"), "{out}");
    let users = std::fs::read_to_string(fx.tree.path("users")).unwrap();
    assert!(
        users.starts_with(&format!("# managed by hand\n{john}\njane@")),
        "{users}"
    );
    let bob = users
        .lines()
        .find(|l| l.starts_with("bob@example.com:"))
        .unwrap();
    let hash = bob.split(':').nth(1).unwrap();
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{bob}");
    let vmailbox = std::fs::read_to_string(fx.tree.path("vmailbox")).unwrap();
    assert!(
        vmailbox.contains("\nbob@example.com  example.com/bob/\n"),
        "{vmailbox}"
    );
    // The Maildir exists, owned by the virtual uid/gid.
    let maildir = fx.maildir("bob");
    for sub in ["cur", "new", "tmp"] {
        let m = std::fs::metadata(maildir.join(sub)).unwrap();
        assert!(m.is_dir());
        if is_root() {
            assert_eq!((m.uid(), m.gid()), (5000, 5000));
        }
    }
    // Dovecot itself accepts the hash.
    if require_tool("doveadm") {
        let o = Command::new("doveadm")
            .args(["pw", "-t", hash, "-p", "b0b-secret"])
            .output()
            .unwrap();
        assert!(
            o.status.success() && util::stdout(&o).contains("(verified)"),
            "doveadm pw -t: {}{}",
            util::stdout(&o),
            util::stderr(&o)
        );
    }

    // Hot reload: mail to bob is accepted and delivered, bob logs in.
    wait_rcpt(smtp, "bob@example.com", "250");
    send(smtp, "bob@example.com", "welcome");
    wait_files(&maildir, 1);
    assert_eq!(
        imap_inbox(server.addr("imap"), "bob@example.com", "b0b-secret"),
        Ok(1)
    );
    let stat = pop3_stat(server.addr("pop3"), "bob@example.com", "b0b-secret").unwrap();
    assert!(stat.starts_with("+OK 1 "), "{stat}");

    // Refusals: duplicate, empty password, foreign domain, bad address.
    let (code, err) = fails(&cli(&fx, &["user", "add", "bob@example.com"], "x\n"));
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    let (code, err) = fails(&cli(&fx, &["user", "add", "amy@example.com"], "\n"));
    assert_eq!(code, 2);
    assert!(err.contains("empty password"), "{err}");
    let (code, err) = fails(&cli(&fx, &["user", "add", "amy@elsewhere.example"], "pw\n"));
    assert_eq!(code, 2);
    assert!(err.contains("not in virtual_mailbox_domains"), "{err}");
    let (code, _) = fails(&cli(&fx, &["user", "add", "not-an-address"], "pw\n"));
    assert_eq!(code, 2);
    assert!(!std::fs::read_to_string(fx.tree.path("users"))
        .unwrap()
        .contains("amy@"));

    // A new password: the old one stops working, the line keeps its fields.
    ok(&cli(
        &fx,
        &["user", "passwd", "john@example.com"],
        "n3w-john\n",
    ));
    let users = std::fs::read_to_string(fx.tree.path("users")).unwrap();
    let line = users.lines().find(|l| l.starts_with("john@")).unwrap();
    assert!(
        line.ends_with(
            ":5000:5000::/srv/john::userdb_quota_rule=*:storage=1G allow_nets=127.0.0.0/8"
        ),
        "{line}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while imap_inbox(server.addr("imap"), "john@example.com", "n3w-john").is_err() {
        assert!(Instant::now() < deadline, "new password not picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(imap_inbox(server.addr("imap"), "john@example.com", "john123").is_err());
    let (code, err) = fails(&cli(&fx, &["user", "passwd", "ghost@example.com"], "pw\n"));
    assert_eq!(code, 2);
    assert!(err.contains("unknown user"), "{err}");

    // Aliases: mail to the alias reaches bob; loops are refused.
    let out = ok(&cli(
        &fx,
        &["alias", "add", "info@example.com", "bob@example.com"],
        "",
    ));
    assert!(out.contains("info@example.com -> bob@example.com"), "{out}");
    wait_rcpt(smtp, "info@example.com", "250");
    send(smtp, "info@example.com", "via alias");
    wait_files(&maildir, 2);
    let (code, err) = fails(&cli(
        &fx,
        &["alias", "add", "info@example.com", "info@example.com"],
        "",
    ));
    assert_eq!(code, 2);
    assert!(err.contains("itself"), "{err}");
    let (code, err) = fails(&cli(
        &fx,
        &["alias", "add", "bob@example.com", "info@example.com"],
        "",
    ));
    assert_eq!(code, 2);
    assert!(err.contains("loop"), "{err}");
    let list = ok(&cli(&fx, &["alias", "list"], ""));
    assert_eq!(list, "info@example.com -> bob@example.com\n");
    let users = ok(&cli(&fx, &["user", "list"], ""));
    assert!(
        users.contains("bob@example.com  example.com/bob/\n"),
        "{users}"
    );
    let show = ok(&cli(&fx, &["user", "show", "bob@example.com"], ""));
    assert!(
        show.contains("SHA512-CRYPT") && show.contains("alias:    info@example.com"),
        "{show}"
    );
    assert!(!show.contains("$6$"), "no hash in show: {show}");

    // Deleting: login and mailbox entry go, the mail stays.
    ok(&cli(&fx, &["alias", "del", "info@example.com"], ""));
    let out = ok(&cli(&fx, &["user", "del", "bob@example.com"], ""));
    assert!(out.contains("mail kept in"), "{out}");
    wait_rcpt(smtp, "bob@example.com", "550");
    assert!(maildir.join("new").is_dir());
    let (code, err) = fails(&cli(&fx, &["user", "del", "bob@example.com"], ""));
    assert_eq!(code, 2);
    assert!(err.contains("unknown user"), "{err}");
    let users = std::fs::read_to_string(fx.tree.path("users")).unwrap();
    assert!(
        users.starts_with(&format!(
            "# managed by hand\n{john_prefix}",
            john_prefix = "john@example.com:{SHA512-CRYPT}"
        )),
        "{users}"
    );
    drop(server);
}

#[test]
fn concurrent_user_adds_lose_no_edit() {
    let fx = fixture();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let queue = fx.config.parent().unwrap().join("queue");
            let mut c = util::pigeonpost()
                .env("PIGEONPOST_QUEUE_DIRECTORY", &queue)
                .args(["--config", fx.config.to_str().unwrap(), "user", "add"])
                .arg(format!("user{i}@example.com"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(b"pw-pw-pw\n").unwrap();
            c
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    let users = std::fs::read_to_string(fx.tree.path("users")).unwrap();
    let vmailbox = std::fs::read_to_string(fx.tree.path("vmailbox")).unwrap();
    for i in 0..8 {
        assert!(
            users.contains(&format!("\nuser{i}@example.com:")),
            "{users}"
        );
        assert!(
            vmailbox.contains(&format!("\nuser{i}@example.com  ")),
            "{vmailbox}"
        );
    }
    assert!(users.starts_with("john@example.com:{PLAIN}john123::::::\njane@"));
}

/// Runs `sendmail ARGS` with `input`, as `user` if given.
fn sendmail(fx: &MailFixture, user: Option<&str>, args: &[&str], input: &str) -> Output {
    let mut all = vec!["sendmail"];
    all.extend_from_slice(args);
    cli_as(fx, user, &all, input)
}

fn newest_message(dir: &Path, n: usize) -> String {
    wait_files(dir, n);
    let mut files: Vec<_> = ["new", "cur"]
        .iter()
        .filter_map(|s| std::fs::read_dir(dir.join(s)).ok())
        .flat_map(|rd| rd.map(|e| e.unwrap().path()))
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    std::fs::read_to_string(files.last().unwrap()).unwrap()
}

#[test]
fn sendmail_as_cron_php_git_and_an_unprivileged_user() {
    let fx = fixture();
    let server = fx.start();
    let john = fx.maildir("john");

    // --help helps, with exit 0.
    let help = ok(&sendmail(&fx, None, &["--help"], ""));
    assert!(
        help.contains("-t ") && help.contains("-bs") && help.contains("-oi"),
        "{help}"
    );

    // cron (Debian's cron: -FCronDaemon -i -B8BITMIME -oem root-ish address).
    ok(&sendmail(
        &fx,
        None,
        &[
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "john@example.com",
        ],
        "Subject: Cron <root@host> run-parts\n\n.\na lone dot above\n",
    ));
    let m = newest_message(&john, 1);
    assert!(m.contains("From: CronDaemon <root@"), "{m}");
    assert!(
        m.contains("\n.\na lone dot above"),
        "-i keeps the dot line: {m}"
    );

    // PHP's mail(): sendmail -t -i, recipients from the header, Bcc dropped.
    ok(&sendmail(
        &fx,
        None,
        &["-t", "-i"],
        "To: John <john@example.com>\nBcc: jane@example.com\nSubject: from php\n\nbody\n",
    ));
    let m = newest_message(&john, 2);
    assert!(
        m.contains("Subject: from php") && !m.contains("Bcc:"),
        "{m}"
    );
    newest_message(&fx.maildir("jane"), 1);

    // Git (send-email): sendmail -i -- addresses, -f from the config.
    ok(&sendmail(
        &fx,
        None,
        &[
            "-oi",
            "-f",
            "dev@example.com",
            "-i",
            "--",
            "john@example.com",
        ],
        "From: dev@example.com\nSubject: [PATCH] fix\n\ndiff\n",
    ));
    let m = newest_message(&john, 3);
    assert!(
        m.contains("Return-Path: <dev@example.com>") && m.contains("[PATCH] fix"),
        "{m}"
    );

    // -v says what was ignored, in one line.
    let o = sendmail(
        &fx,
        None,
        &["-v", "-odq", "-N", "never", "-i", "john@example.com"],
        "Subject: v\n\nx\n",
    );
    ok(&o);
    let err = util::stderr(&o);
    assert!(
        err.contains("ignored (no effect here): -odq -N never"),
        "{err}"
    );
    newest_message(&john, 4);

    // -bv routes without sending.
    let o = sendmail(
        &fx,
        None,
        &["-bv", "john@example.com", "ghost@example.com"],
        "",
    );
    assert_eq!(o.status.code(), Some(67));
    let out = util::stdout(&o);
    assert!(
        out.contains("john@example.com: deliverable: mailbox of john@example.com"),
        "{out}"
    );
    assert!(
        out.contains("ghost@example.com: undeliverable: 550 5.1.1"),
        "{out}"
    );

    // -bs: SMTP on stdin/stdout through the same session code.
    let out = ok(&sendmail(
        &fx,
        None,
        &["-bs"],
        "EHLO localhost\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<ghost@example.com>\r\nRCPT TO:<john@example.com>\r\nDATA\r\nSubject: over -bs\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    ));
    assert!(out.starts_with("220 mail.example.com ESMTP"), "{out}");
    assert!(out.contains("550 5.1.1 <ghost@example.com>"), "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as "), "{out}");
    assert!(out.contains("221 "), "{out}");
    let m = newest_message(&john, 5);
    assert!(m.contains("Subject: over -bs"), "{m}");

    // An unprivileged user: the maildrop is not theirs, the submit socket is.
    if is_root() && require_tool("runuser") {
        for p in [
            fx.tree.dir.path(),
            &fx.config.parent().unwrap().join("queue"),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let maildrop = fx.config.parent().unwrap().join("queue/maildrop");
        assert_eq!(std::fs::metadata(&maildrop).unwrap().uid(), 0);
        let o = sendmail(
            &fx,
            Some("nobody"),
            &["-t", "-i"],
            "To: john@example.com\nSubject: from nobody\n\nhi\n",
        );
        ok(&o);
        let m = newest_message(&john, 6);
        assert!(m.contains("Subject: from nobody"), "{m}");
        assert!(
            m.contains("From: nobody@"),
            "the sender is the caller's login: {m}"
        );
        // Without a server nobody cannot queue, and is told why.
        drop(server);
        let o = sendmail(
            &fx,
            Some("nobody"),
            &["john@example.com"],
            "Subject: x\n\ny\n",
        );
        assert_eq!(o.status.code(), Some(75), "{}", util::stderr(&o));
        assert!(
            util::stderr(&o).contains("pigeonpost serve is not running"),
            "{}",
            util::stderr(&o)
        );
    }
}

/// Starts `serve` and returns every log line up to "pigeonpost ready" (or
/// the exit), with the child.
fn serve_log(config: &Path, env: &[(&str, &str)]) -> (std::process::Child, Vec<String>) {
    let mut cmd = util::pigeonpost();
    cmd.args(["--config", config.to_str().unwrap(), "serve"])
        .envs(env.iter().copied())
        .env("PIGEONPOST_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("pigeonpost ready");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

#[test]
fn a_second_server_on_the_same_queue_is_refused() {
    let fx = fixture();
    let queue = fx.config.parent().unwrap().join("queue");
    let first = fx.start();
    let o = util::run(
        &["--config", fx.config.to_str().unwrap(), "serve"],
        &[("PIGEONPOST_QUEUE_DIRECTORY", queue.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = util::stderr(&o);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");
    assert!(err.contains("master.lock"), "{err}");
    // Once the first is gone, the lock is free again.
    drop(first);
    let _again = Server::start(&fx.config, &[]);
}

#[test]
fn open_relay_networks_and_unknown_log_levels_are_not_silent() {
    let fx = fixture();
    let queue = fx.config.parent().unwrap().join("queue");
    let q = queue.to_str().unwrap();
    let (mut child, lines) = serve_log(
        &fx.config,
        &[
            ("PIGEONPOST_MYNETWORKS", "127.0.0.1/32 0.0.0.0/0"),
            ("PIGEONPOST_QUEUE_DIRECTORY", q),
        ],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("0.0.0.0/0") && l.contains("open relay")),
        "{lines:#?}"
    );
    let o = util::run(
        &[
            "--config",
            fx.config.to_str().unwrap(),
            "config",
            "mynetworks",
        ],
        &[("PIGEONPOST_MYNETWORKS", "[::]/0")],
    );
    assert!(o.status.success());
    assert!(
        util::stderr(&o).contains("warning: mynetworks"),
        "{}",
        util::stderr(&o)
    );

    for cmd in ["config", "serve"] {
        let o = util::run(
            &["--config", fx.config.to_str().unwrap(), cmd],
            &[
                ("PIGEONPOST_LOG_LEVEL", "verbose"),
                ("PIGEONPOST_QUEUE_DIRECTORY", q),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let err = util::stderr(&o);
        assert!(
            err.contains("log_level") && err.contains("'verbose' is not a log level"),
            "{err}"
        );
    }
}

#[test]
fn queue_delete_of_an_unknown_id_fails_and_config_checks_the_key() {
    let fx = fixture();
    let queue = fx.config.parent().unwrap().join("queue");
    let q = queue.to_str().unwrap();
    let o = util::run(
        &[
            "--config",
            fx.config.to_str().unwrap(),
            "queue",
            "delete",
            "NOPE",
        ],
        &[("PIGEONPOST_QUEUE_DIRECTORY", q)],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        util::stderr(&o).contains("no message NOPE in the queue"),
        "{}",
        util::stderr(&o)
    );
    // Through the running server too.
    let server = fx.start();
    let o = util::run(
        &[
            "--config",
            fx.config.to_str().unwrap(),
            "queue",
            "delete",
            "NOPE",
        ],
        &[("PIGEONPOST_QUEUE_DIRECTORY", q)],
    );
    assert_eq!(o.status.code(), Some(1));
    drop(server);

    // A key that is not the certificate's.
    let (_, other_key) = pigeonpost::tls::self_signed(&["localhost"]);
    let key = fx.tree.write("tls/other-key.pem", &other_key);
    let o = util::run(
        &["--config", fx.config.to_str().unwrap(), "config"],
        &[("PIGEONPOST_SSL_KEY", key.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = util::stderr(&o);
    assert!(
        err.contains("ssl_key (from environment variable PIGEONPOST_SSL_KEY)"),
        "{err}"
    );
    assert!(err.contains("does not match the certificate"), "{err}");
    let o = util::run(&["--config", fx.config.to_str().unwrap(), "config"], &[]);
    assert!(o.status.success(), "{}", util::stderr(&o));
}

/// Runs the binary through a symlink called `name` (as Postfix installs
/// /usr/sbin/sendmail, /usr/bin/mailq, /usr/bin/newaliases): no subcommand,
/// no --config; the configuration comes from $PIGEONPOST_CONFIG.
fn as_link(fx: &MailFixture, name: &str, args: &[&str], input: &str) -> Output {
    let link = fx.tree.path(&format!("bin/{name}"));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(util::BIN, &link).unwrap();
    let mut cmd = Command::new(&link);
    for (k, _) in std::env::vars() {
        if k.starts_with("PIGEONPOST_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("PIGEONPOST_CONFIG", &fx.config)
        .env(
            "PIGEONPOST_QUEUE_DIRECTORY",
            fx.config.parent().unwrap().join("queue"),
        )
        .args(args);
    util::output_with_stdin(&mut cmd, input.as_bytes())
}

#[test]
fn the_binary_called_sendmail_mailq_or_newaliases_is_that_command() {
    let fx = fixture();
    let _server = fx.start();
    // /usr/sbin/sendmail -oi -t, as PHP and most scripts call it.
    ok(&as_link(
        &fx,
        "sendmail",
        &["-oi", "-t"],
        "To: john@example.com\nSubject: via the sendmail link\n\nhello\n",
    ));
    let m = newest_message(&fx.maildir("john"), 1);
    assert!(m.contains("Subject: via the sendmail link"), "{m}");
    // mailq lists the (empty) queue, like `pigeonpost queue list`.
    let listed = ok(&as_link(&fx, "mailq", &[], ""));
    let direct = ok(&cli_as(&fx, None, &["queue", "list"], ""));
    assert_eq!(listed, direct);
    // newaliases checks the alias tables and says there is nothing to build;
    // a broken table is an error, as Postfix's newaliases reports one.
    let aliases = fx.tree.write("aliases", "postmaster: john@example.com\n");
    let text = std::fs::read_to_string(&fx.config).unwrap();
    let with_aliases = text.replace(
        "alias_maps = \"\"",
        &format!("alias_maps = \"hash:{}\"", aliases.display()),
    );
    std::fs::write(&fx.config, &with_aliases).unwrap();
    let out = as_link(&fx, "newaliases", &[], "");
    assert!(out.status.success(), "{out:?}");
    assert!(util::stderr(&out).contains("nothing to rebuild"), "{out:?}");
    fx.tree.write("aliases", "postmaster john@example.com\n");
    let out = as_link(&fx, "newaliases", &[], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(util::stderr(&out).contains("aliases"), "{out:?}");
}

#[test]
fn passdb_users_are_mailboxes_only_with_virtual_mailbox_passdb_users() {
    // Postfix's default: a passwd-file line alone lets alice log in, but
    // mail to her is refused (virtual_mailbox_maps does not list her).
    let fx = fixture();
    let users = std::fs::read_to_string(fx.tree.path("users")).unwrap();
    fx.tree.write(
        "users",
        &format!("{users}alice@example.com:{{PLAIN}}alice123::::::\n"),
    );
    let server = fx.start();
    assert!(rcpt(server.addr("smtp"), "alice@example.com").starts_with("550"));
    drop(server);

    // Dovecot-LDA style: the passdb decides, mail_location places the mail,
    // and the user reads it over IMAP; +extensions reach her too; an address
    // the passdb does not have is still unknown.
    let text = std::fs::read_to_string(&fx.config).unwrap();
    std::fs::write(
        &fx.config,
        format!("virtual_mailbox_passdb_users = \"yes\"\nrecipient_delimiter = \"+\"\n{text}"),
    )
    .unwrap();
    let server = fx.start();
    let smtp = server.addr("smtp");
    send(smtp, "alice@example.com", "lda style");
    send(smtp, "Alice+lists@example.com", "with an extension");
    wait_files(&fx.maildir("alice"), 2);
    assert_eq!(
        imap_inbox(server.addr("imap"), "alice@example.com", "alice123"),
        Ok(2)
    );
    assert!(rcpt(smtp, "nobody@example.com").starts_with("550"));
    // Users the maps list still go where the maps say.
    send(smtp, "john@example.com", "maps first");
    wait_files(&fx.maildir("john"), 1);
    // A user added later (passwd-file only) is a mailbox after the reload.
    let users = std::fs::read_to_string(fx.tree.path("users")).unwrap();
    util::replace(
        &fx.tree.path("users"),
        &format!("{users}bob@example.com:{{PLAIN}}bob123::::::\n"),
    );
    wait_rcpt(smtp, "bob@example.com", "250");
}
