//! The outbound queue end to end, against real receiving servers on
//! loopback (aiosmtpd, tests/peers/smtp_peer.py) and a DNS server run by
//! the test: relayhost with STARTTLS and AUTH, 451-then-250 retries, 550
//! bounces into the sender's Maildir, no bounce for `<>`, a dead peer shown
//! by `queue list`, kill -9 with mail queued, MX lookups and null MX, mail
//! loops, `sendmail -t`, `queue delete`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dns::{Answer, FakeDns};
use crate::proxy::metric;
use crate::smtp::{mail_setup, python, MailSetup};
use crate::util::{self, free_port, require_tool, reserved_port, Server};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp_peer.py");

/// A receiving SMTP server (aiosmtpd), killed on drop.
pub struct Peer {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

impl Peer {
    pub fn start(out: &Path, args: &[&str]) -> Peer {
        let has_aiosmtpd = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            has_aiosmtpd,
            "Python's aiosmtpd is needed for the outbound tests: run tests/setup.sh (or pip install aiosmtpd)"
        );
        let mut child = Command::new("python3")
            .arg(PEER)
            .arg("--out")
            .arg(out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the SMTP peer");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("peer did not start: {line:?}"));
        // Keep reading what it prints, or a busy peer blocks on a full pipe
        // and stops accepting (the crash matrix sends it over 1,000 messages).
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("peer: {line}");
            }
        });
        Peer {
            child,
            port,
            out: out.to_path_buf(),
        }
    }

    /// The messages received so far: (envelope JSON, message bytes).
    pub fn received(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let mut n = 1;
        let mut out = Vec::new();
        while self.out.join(format!("{n}.done")).exists() {
            let json = std::fs::read_to_string(self.out.join(format!("{n}.json"))).unwrap();
            let eml = std::fs::read(self.out.join(format!("{n}.eml"))).unwrap();
            out.push((serde_json::from_str(&json).unwrap(), eml));
            n += 1;
        }
        out
    }

    pub fn wait(&self, n: usize, timeout: Duration) -> Vec<(serde_json::Value, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one message from 127.0.0.1 (inside mynetworks) on port 25.
fn send(server: &Server, from: &str, to: &[&str], subject: &str) {
    let code = r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]))
to = os.environ["TO"].split(",")
msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nHello from the queue test.\r\n.leading dot\r\n" % (os.environ["FROM"] or "MAILER-DAEMON", ", ".join(to), os.environ["SUBJECT"])
s.sendmail(os.environ["FROM"], to, msg)
s.quit()
print("sent")
"#;
    let (ok, out, err) = python(
        code,
        &[
            ("PORT", server.addr("smtp").port().to_string()),
            ("FROM", from.to_string()),
            ("TO", to.join(",")),
            ("SUBJECT", subject.to_string()),
        ],
    );
    assert!(ok && out.contains("sent"), "{out}{err}");
}

fn queue_cmd(setup: &MailSetup, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--config", setup.config.to_str().unwrap(), "queue"];
    all.extend_from_slice(args);
    let o = util::run(&all, &[]);
    (
        o.status.success(),
        format!("{}{}", util::stdout(&o), util::stderr(&o)),
    )
}

/// Adds `lines` to the setup's configuration (before `recipient_delimiter`,
/// so outside the `[listen]` table).
pub fn add_config(setup: &MailSetup, lines: &str) {
    let text = std::fs::read_to_string(&setup.config).unwrap().replacen(
        "recipient_delimiter",
        &format!("{lines}\nrecipient_delimiter"),
        1,
    );
    std::fs::write(&setup.config, text).unwrap();
}

pub fn setup_with(extra: &str) -> MailSetup {
    let base = mail_setup("");
    let d = base.tree.dir.path().display().to_string();
    // The queue and fast retries (the tree is kept).
    add_config(
        &base,
        &format!("queue_directory = \"{d}/queue\"\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"2s\"\n{extra}"),
    );
    base
}

pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The single DSN in `maildir`, as text.
fn wait_dsn(setup: &MailSetup, maildir: &str) -> String {
    let files = setup.wait_mail(maildir, 1);
    let files = if files.is_empty() {
        wait_for(Duration::from_secs(10), || {
            let f = setup.new_mail(maildir);
            (!f.is_empty()).then_some(f)
        })
        .expect("no DSN arrived")
    } else {
        files
    };
    // Maildir files hold LF line endings.
    String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap()).replace("\r\n", "\n")
}

#[test]
fn submission_via_relayhost_with_starttls_auth_and_a_retry_after_451() {
    let setup = setup_with("");
    let d = setup.tree.dir.path().display().to_string();
    let peer = Peer::start(
        &setup.tree.path("peer"),
        &[
            "--fail-data",
            "1",
            "--tls",
            &format!("{d}/tls/cert.pem"),
            &format!("{d}/tls/key.pem"),
            "--auth",
            "relayuser:relay pass",
        ],
    );
    setup.tree.write(
        "postfix/sasl_passwd",
        &format!("[127.0.0.1]:{} relayuser:relay pass\n", peer.port),
    );
    add_config(&setup, &format!("relayhost = \"[127.0.0.1]:{}\"\nsmtp_sasl_password_maps = \"hash:{d}/postfix/sasl_passwd\"", peer.port));
    let server = setup.start();

    // Submission on 587: STARTTLS, AUTH, then a remote recipient.
    let code = r#"
import os, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]))
s.starttls(context=ctx)
s.login("john@example.com", "john123")
r = s.sendmail("john@example.com", ["friend@remote.example"], "From: john@example.com\r\nTo: friend@remote.example\r\nSubject: outbound one\r\n\r\nbody line\r\n.dot line\r\n")
print("refused", r)
s.quit()
"#;
    let (ok, out, err) = python(
        code,
        &[("PORT", server.addr("submission").port().to_string())],
    );
    assert!(ok && out.contains("refused {}"), "{out}{err}");

    assert!(
        server
            .wait_log("status=deferred", Duration::from_secs(10))
            .is_some_and(|l| l.contains("451 4.3.0 Try again later")),
        "the first attempt is deferred by the peer's 451"
    );
    let got = peer.wait(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "delivered on retry");
    let (env, eml) = &got[0];
    assert_eq!(env["mail_from"], "john@example.com");
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["friend@remote.example"])
    );
    assert_eq!(env["tls"], true, "opportunistic STARTTLS to the relayhost");
    assert_eq!(
        env["auth"], "relayuser",
        "smtp_sasl_password_maps credentials"
    );
    let eml = String::from_utf8_lossy(eml);
    assert!(
        eml.contains("by mail.example.com (pigeonpost) with ESMTPSA id"),
        "{eml}"
    );
    assert!(
        eml.contains("Subject: outbound one\r\n\r\nbody line\r\n.dot line\r\n"),
        "{eml}"
    );
    assert!(server
        .wait_log("status=sent", Duration::from_secs(5))
        .is_some());
    let empty = wait_for(Duration::from_secs(5), || {
        let (_, out) = queue_cmd(&setup, &["list"]);
        out.contains("Mail queue is empty").then_some(())
    });
    assert!(empty.is_some(), "{}", queue_cmd(&setup, &["list"]).1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(peer.received().len(), 1, "delivered exactly once");
}

#[test]
fn a_550_bounces_to_the_local_sender_and_the_rest_is_delivered() {
    let setup = setup_with("");
    let peer = Peer::start(
        &setup.tree.path("peer"),
        &["--reject-rcpt", "nobody@remote.example"],
    );
    add_config(
        &setup,
        &format!("relayhost = \"[127.0.0.1]:{}\"", peer.port),
    );
    let server = setup.start();
    send(
        &server,
        "john@example.com",
        &["friend@remote.example", "nobody@remote.example"],
        "half of it bounces",
    );
    let got = peer.wait(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0["rcpt_tos"],
        serde_json::json!(["friend@remote.example"])
    );

    let dsn = wait_dsn(&setup, "vmail/example.com/john");
    assert!(dsn.starts_with("Return-Path: <>\n"), "{dsn}");
    assert!(
        dsn.contains("Subject: Undelivered Mail Returned to Sender"),
        "{dsn}"
    );
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@remote.example"),
        "{dsn}"
    );
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(
        dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.example>"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Subject: half of it bounces"),
        "original attached: {dsn}"
    );
    assert!(!dsn.contains("Final-Recipient: rfc822; friend@"), "{dsn}");
    assert!(server
        .wait_log("status=bounced", Duration::from_secs(5))
        .is_some());
    let http = server.addr("http");
    assert_eq!(metric(http, "pigeonpost_messages_bounced_total"), 1);
    let remote = "pigeonpost_messages_delivered_total{destination=\"remote\"}";
    assert_eq!(metric(http, remote), 1);
}

#[test]
fn the_null_sender_is_never_bounced() {
    let setup = setup_with("");
    let peer = Peer::start(
        &setup.tree.path("peer"),
        &["--reject-rcpt", "nobody@remote.example"],
    );
    add_config(
        &setup,
        &format!("relayhost = \"[127.0.0.1]:{}\"", peer.port),
    );
    let server = setup.start();
    send(
        &server,
        "",
        &["nobody@remote.example"],
        "a bounce that bounces",
    );
    assert!(server
        .wait_log("status=bounced", Duration::from_secs(10))
        .is_some());
    assert!(server
        .wait_log(": removed", Duration::from_secs(5))
        .is_some());
    std::thread::sleep(Duration::from_secs(1));
    let delivered: Vec<_> = walk(&setup.tree.path("vmail"))
        .into_iter()
        .chain(walk(&setup.tree.path("home")))
        .filter(|p| p.to_string_lossy().contains("/new/"))
        .collect();
    assert!(delivered.is_empty(), "no DSN for <>: {delivered:?}");
    assert!(queue_cmd(&setup, &["list"])
        .1
        .contains("Mail queue is empty"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_dead_peer_keeps_mail_queued_through_kill_9_until_it_is_back() {
    let port = reserved_port();
    let setup = setup_with(&format!("relayhost = \"[127.0.0.1]:{port}\""));
    let mut server = setup.start();
    for i in 0..3 {
        send(
            &server,
            "john@example.com",
            &[&format!("friend{i}@remote.example")],
            &format!("queued {i}"),
        );
    }
    assert!(server
        .wait_log("Connection refused", Duration::from_secs(10))
        .is_some());
    let listed = wait_for(Duration::from_secs(10), || {
        let (ok, out) = queue_cmd(&setup, &["list"]);
        (ok && out.matches("Connection refused").count() == 3).then_some(out)
    })
    .unwrap_or_else(|| queue_cmd(&setup, &["list"]).1);
    assert!(listed.contains("in 3 Requests."), "{listed}");
    for i in 0..3 {
        assert!(
            listed.contains(&format!("friend{i}@remote.example")),
            "{listed}"
        );
    }
    assert!(listed.contains("john@example.com"), "{listed}");
    let http = server.addr("http");
    assert_eq!(metric(http, "pigeonpost_queue_messages"), 3);
    assert!(metric(http, "pigeonpost_outbound_deferred_total") >= 3);

    // kill -9 with everything queued; the peer comes back; so does the server.
    server.signal(libc::SIGKILL);
    let _ = server.child.wait();
    drop(server);
    let peer = Peer::start(&setup.tree.path("peer"), &["--port", &port.to_string()]);
    let server = setup.start();
    let (ok, out) = queue_cmd(&setup, &["flush"]);
    assert!(ok && out.starts_with("ok "), "{out}");
    let got = peer.wait(3, Duration::from_secs(15));
    let mut rcpts: Vec<String> = got
        .iter()
        .map(|(e, _)| e["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![
            "friend0@remote.example",
            "friend1@remote.example",
            "friend2@remote.example"
        ]
    );
    let empty = wait_for(Duration::from_secs(5), || {
        queue_cmd(&setup, &["list"])
            .1
            .contains("Mail queue is empty")
            .then_some(())
    });
    assert!(empty.is_some());
    let http = server.addr("http");
    assert_eq!(metric(http, "pigeonpost_queue_messages"), 0);
    let remote = "pigeonpost_messages_delivered_total{destination=\"remote\"}";
    assert_eq!(metric(http, remote), 3);
    let latency = "pigeonpost_delivery_seconds_count{destination=\"remote\"}";
    assert_eq!(metric(http, latency), 3);
    drop(server);
}

#[test]
fn queue_delete_removes_one_message_or_all() {
    let port = reserved_port();
    let setup = setup_with(&format!("relayhost = \"[127.0.0.1]:{port}\""));
    let server = setup.start();
    for i in 0..3 {
        send(
            &server,
            "john@example.com",
            &[&format!("f{i}@remote.example")],
            "x",
        );
    }
    let listed = wait_for(Duration::from_secs(10), || {
        let out = queue_cmd(&setup, &["list"]).1;
        out.contains("in 3 Requests.").then_some(out)
    })
    .expect("three queued");
    let id = listed
        .lines()
        .find(|l| l.contains("john@example.com"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, out) = queue_cmd(&setup, &["delete", &id]);
    assert!(ok && out.starts_with("ok 1"), "{out}");
    assert!(queue_cmd(&setup, &["list"]).1.contains("in 2 Requests."));
    let (ok, out) = queue_cmd(&setup, &["delete", "../../etc/passwd"]);
    assert!(!ok && out.contains("not a queue id"), "{out}");
    let (ok, out) = queue_cmd(&setup, &["delete", "ALL"]);
    assert!(ok && out.starts_with("ok 2"), "{out}");
    assert!(queue_cmd(&setup, &["list"])
        .1
        .contains("Mail queue is empty"));
    drop(server);
    // Without a running server, flush says so.
    let (ok, out) = queue_cmd(&setup, &["flush"]);
    assert!(!ok && out.contains("is pigeonpost serve running?"), "{out}");
}

#[test]
fn mx_lookup_through_a_test_dns_server_and_null_mx_bounces() {
    let dns = FakeDns::start(vec![
        (
            "remote.test".into(),
            "MX",
            vec![Answer::Mx(10, "mx.remote.test")],
        ),
        (
            "mx.remote.test".into(),
            "A",
            vec![Answer::A([127, 0, 0, 1])],
        ),
        ("mx.remote.test".into(), "AAAA", vec![Answer::Empty]),
        ("nullmx.test".into(), "MX", vec![Answer::Mx(0, "")]),
    ]);
    let setup = setup_with("");
    let d = setup.tree.dir.path().display().to_string();
    let peer = Peer::start(&setup.tree.path("peer"), &[]);
    // `smtp:domain:port` (no brackets) keeps the MX lookup, on the peer's port.
    setup.tree.write(
        "postfix/transport",
        &format!(
            "remote.test smtp:remote.test:{p}\nnullmx.test smtp:nullmx.test:{p}\n",
            p = peer.port
        ),
    );
    add_config(
        &setup,
        &format!(
            "dns_servers = \"{}\"\ntransport_maps = \"hash:{d}/postfix/transport\"",
            dns.addr
        ),
    );
    let server = setup.start();
    send(
        &server,
        "john@example.com",
        &["someone@remote.test"],
        "via MX",
    );
    let got = peer.wait(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "delivered to the MX host");
    assert_eq!(
        got[0].0["rcpt_tos"],
        serde_json::json!(["someone@remote.test"])
    );
    let q = dns.queries.lock().unwrap().clone();
    assert!(q.contains(&"remote.test MX".to_string()), "{q:?}");
    assert!(q.contains(&"mx.remote.test A".to_string()), "{q:?}");
    assert!(server
        .wait_log("relay=mx.remote.test[127.0.0.1]", Duration::from_secs(5))
        .is_some());

    send(
        &server,
        "john@example.com",
        &["x@nullmx.test"],
        "to a null MX",
    );
    let dsn = wait_dsn(&setup, "vmail/example.com/john");
    assert!(dsn.contains("does not accept mail (nullMX)"), "{dsn}");
    assert_eq!(peer.received().len(), 1);
}

#[test]
fn mail_relayed_back_to_this_server_is_a_loop_and_bounces() {
    let smtp_port = free_port();
    let setup = setup_with(&format!("relayhost = \"[127.0.0.1]:{smtp_port}\""));
    let server = Server::start(
        &setup.config,
        &[("PIGEONPOST_LISTEN__SMTP", &format!("127.0.0.1:{smtp_port}"))],
    );
    send(&server, "john@example.com", &["x@remote.example"], "loop");
    let dsn = wait_dsn(&setup, "vmail/example.com/john");
    assert!(
        dsn.contains("mail for mail.example.com loops back to myself"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.4.6"), "{dsn}");
}

#[test]
fn sendmail_t_delivers_locally_and_remotely() {
    let setup = setup_with("");
    let peer = Peer::start(&setup.tree.path("peer"), &[]);
    add_config(
        &setup,
        &format!("relayhost = \"[127.0.0.1]:{}\"", peer.port),
    );
    let server = setup.start();
    let sendmail = |args: &[&str], input: &str| {
        let mut cmd = util::pigeonpost();
        cmd.args(["--config", setup.config.to_str().unwrap(), "sendmail"])
            .args(args);
        util::output_with_stdin(&mut cmd, input.as_bytes())
    };
    let o = sendmail(
        &["-t", "-f", "cron@example.com"],
        "To: john@example.com, friend@remote.example\nBcc: hidden@remote.example\nSubject: cron report\n\nall good\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let local = setup.wait_mail("vmail/example.com/john", 1);
    let local = if local.is_empty() {
        wait_for(Duration::from_secs(10), || {
            let f = setup.new_mail("vmail/example.com/john");
            (!f.is_empty()).then_some(f)
        })
        .expect("local copy")
    } else {
        local
    };
    let text = String::from_utf8_lossy(&std::fs::read(&local[0]).unwrap()).replace("\r\n", "\n");
    assert!(text.contains("Return-Path: <cron@example.com>"), "{text}");
    assert!(text.contains("Subject: cron report\n"), "{text}");
    assert!(
        text.contains("Date: ") && text.contains("Message-ID: <"),
        "{text}"
    );
    assert!(!text.contains("hidden@"), "Bcc removed: {text}");
    let got = peer.wait(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let mut rcpts: Vec<String> = got[0].0["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec!["friend@remote.example", "hidden@remote.example"]
    );
    assert_eq!(got[0].0["mail_from"], "cron@example.com");

    // No recipients at all: a usage error, nothing queued.
    let o = sendmail(&[], "Subject: nobody\n\nx\n");
    assert_eq!(o.status.code(), Some(64));
    drop(server);
}

#[test]
fn sendmail_without_a_running_server_waits_in_the_maildrop() {
    assert!(require_tool("python3"));
    let setup = setup_with("");
    let mut cmd = util::pigeonpost();
    cmd.args([
        "--config",
        setup.config.to_str().unwrap(),
        "sendmail",
        "john@example.com",
    ])
    .stdin(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: later\n\nbody\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("goes out when pigeonpost serve runs"));
    assert!(setup.new_mail("vmail/example.com/john").is_empty());
    let _server = setup.start();
    let files = wait_for(Duration::from_secs(10), || {
        let f = setup.new_mail("vmail/example.com/john");
        (!f.is_empty()).then_some(f)
    })
    .expect("picked up at start");
    let text = String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap()).into_owned();
    assert!(text.contains("Subject: later"), "{text}");
}

#[test]
fn eight_bit_mail_is_converted_for_a_peer_without_8bitmime() {
    let setup = setup_with("");
    let peer = Peer::start(&setup.tree.path("peer"), &["--no-8bitmime"]);
    add_config(
        &setup,
        &format!("relayhost = \"[127.0.0.1]:{}\"", peer.port),
    );
    let server = setup.start();
    let code = r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]))
body = "From: john@example.com\r\nTo: x@remote.example\r\nSubject: umlauts\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n".encode()
s.sendmail("john@example.com", ["x@remote.example"], body, mail_options=["BODY=8BITMIME"])
s.quit()
print("sent")
"#;
    let (ok, out, err) = python(code, &[("PORT", server.addr("smtp").port().to_string())]);
    assert!(ok && out.contains("sent"), "{out}{err}");
    let got = peer.wait(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let (env, eml) = &got[0];
    assert!(eml.is_ascii(), "{}", String::from_utf8_lossy(eml));
    let eml = String::from_utf8_lossy(eml);
    assert!(
        eml.contains(
            "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n"
        ),
        "{eml}"
    );
    assert!(!eml.contains("Content-Transfer-Encoding: 8bit"), "{eml}");
    let opts = env["mail_options"].to_string();
    assert!(!opts.contains("8BITMIME"), "{opts}");
}
