//! Milters (`smtpd_milters`) with real peers: a pymilter test milter that
//! takes every action the protocol has, rspamd 3.4 in milter mode (its
//! proxy worker with self_scan), and broken milters (garbage, a close in
//! the middle of a message, silence).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_port, peers_required, require_tool, run, stdout, LineClient, MailFixture};

/// A peer process, killed when the test ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        // SIGTERM first: rspamd's main process then stops its workers
        // (SIGKILL would leave them listening).
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, within: Duration, child: &mut Child) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the peer exited before listening: {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on port {port} after {within:?}");
}

/// pymilter is Debian's python3-milter, for /usr/bin/python3 only.
fn have_pymilter() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import Milter"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if peers_required() {
            panic!("python3-milter is required but not installed (tests/setup.sh installs it)");
        }
        eprintln!("SKIPPED: python3-milter not installed");
    }
    ok
}

fn start_test_milter() -> (Peer, u16) {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/test_milter.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the test milter");
    wait_port(port, Duration::from_secs(20), &mut child);
    (Peer(child), port)
}

/// One SMTP client conversation, a command at a time.
struct Smtp(LineClient);

impl Smtp {
    fn connect(addr: SocketAddr) -> (Smtp, String) {
        let mut c = Smtp(LineClient::connect("127.0.0.1", addr));
        let greeting = c.reply();
        (c, greeting)
    }

    /// A whole reply, every line of it.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let l = self.0.line();
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.0.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// MAIL, RCPTs, DATA: the first refusal, or the reply to the message.
    fn mail(&mut self, from: &str, to: &[&str], message: &str) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if !r.starts_with("250") {
            return r;
        }
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            if !r.starts_with("250") {
                self.cmd("RSET");
                return r;
            }
        }
        let r = self.cmd("DATA");
        if !r.starts_with("354") {
            return r;
        }
        self.0.send(&format!("{message}.\r\n"));
        self.reply()
    }
}

fn message(subject: &str, extra: &str) -> String {
    format!(
        "From: sender@example.org\r\nTo: john@example.com\r\nSubject: {subject}\r\n{extra}\r\nHello from the milter test.\r\n"
    )
}

/// The text of `user`'s messages delivered since there were `before`
/// files (Maildir names do not sort by arrival, so the newest by mtime).
fn new_messages(f: &MailFixture, user: &str, before: usize) -> Vec<String> {
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = f
        .files(user)
        .into_iter()
        .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
        .collect();
    files.sort();
    files
        .iter()
        .skip(before)
        // Maildir copies have LF line endings.
        .map(|(_, p)| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn queue_id(reply: &str) -> String {
    reply
        .trim()
        .rsplit(' ')
        .next()
        .expect("a queue id")
        .to_string()
}

fn fixture(milters: &str, extra: &str) -> MailFixture {
    let f = MailFixture::new(&[], "");
    let d = f.tree.dir.path().display().to_string();
    let text = std::fs::read_to_string(&f.config).unwrap().replacen(
        "\n[listen]",
        &format!(
            "smtpd_milters = \"{milters}\"\nrecipient_delimiter = \"+\"\nqueue_directory = \"{d}/queue\"\n{extra}\n\n[listen]"
        ),
        1,
    );
    std::fs::write(&f.config, text).unwrap();
    f
}

/// What a delivered copy must look like.
type Check = dyn Fn(&str) -> bool;

#[test]
fn a_pymilter_milter_takes_every_action() {
    if !have_pymilter() {
        return;
    }
    let (_milter, port) = start_test_milter();
    let f = fixture(
        &format!("inet:127.0.0.1:{port}"),
        "milter_command_timeout = \"10s\"\nmilter_content_timeout = \"10s\"",
    );
    let server = f.start();
    let addr = server.addr("smtp");
    let (mut c, greeting) = Smtp::connect(addr);
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(c.cmd("EHLO client.example").starts_with("250"));

    // Each header and body action, one message each, delivered to john.
    let cases: &[(&str, &str, &Check)] = &[
        ("addheader", "", &|m| m.contains("\nX-Added: yes\n")),
        ("insheader", "", &|m| {
            m.find("X-Inserted: first\n").unwrap() < m.find("From: sender@example.org").unwrap()
        }),
        ("chgheader", "", &|m| {
            m.contains("\nSubject: changed by the milter\n") && !m.contains("action=chgheader")
        }),
        ("delheader", "X-Remove-Me: please\r\nX-Keep: me\r\n", &|m| {
            !m.contains("X-Remove-Me") && m.contains("X-Keep: me")
        }),
        ("chgfrom", "", &|m| {
            m.starts_with("Return-Path: <changed@example.org>")
        }),
        ("replbody", "", &|m| {
            m.ends_with("\n\nreplaced by the milter\n") && !m.contains("Hello from")
        }),
        ("macros", "", &|m| {
            m.contains("j=mail.example.com")
                // Not in Postfix's default milter_connect_macros.
                && m.contains("{client_addr}=None")
                && m.contains("{daemon_addr}=127.0.0.1")
                && m.contains("{mail_addr}=sender@example.org")
                && m.contains("v=pigeonpost ")
                && m.contains("_=unknown [127.0.0.1]")
                && m.contains("X-Body-Bytes: 29\n")
                && m.contains("X-Header-Count: 3\n")
        }),
    ];
    for (action, extra, check) in cases {
        let before = f.files("john").len();
        let r = c.mail(
            "sender@example.org",
            &["john@example.com"],
            &message(&format!("action={action}"), extra),
        );
        assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{action}: {r}");
        let got = new_messages(&f, "john", before);
        assert_eq!(got.len(), 1, "{action}: one copy");
        assert!(check(&got[0]), "{action}:\n{}", got[0]);
        if *action == "macros" {
            // `i` is the queue id the client was told.
            assert!(
                got[0].contains(&format!("i={} ", queue_id(&r))),
                "{}",
                got[0]
            );
        }
    }

    // Recipients: added (routed like RCPT: jane gets a copy), deleted.
    let (john, jane) = (f.files("john").len(), f.files("jane").len());
    let r = c.mail(
        "sender@example.org",
        &["john@example.com"],
        &message("action=addrcpt", ""),
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(new_messages(&f, "john", john).len(), 1);
    assert_eq!(new_messages(&f, "jane", jane).len(), 1);
    let (john, jane) = (f.files("john").len(), f.files("jane").len());
    let r = c.mail(
        "sender@example.org",
        &["john@example.com", "jane@example.com"],
        &message("action=delrcpt", ""),
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(new_messages(&f, "john", john).len(), 1);
    assert_eq!(new_messages(&f, "jane", jane).len(), 0, "jane was deleted");

    // Refusals at the end of the message, with Postfix's texts.
    let john = f.files("john").len();
    let r = c.mail(
        "sender@example.org",
        &["john@example.com"],
        &message("action=reject", ""),
    );
    assert_eq!(r, "550 5.7.1 Command rejected\r\n");
    let r = c.mail(
        "sender@example.org",
        &["john@example.com"],
        &message("action=tempfail", ""),
    );
    assert_eq!(r, "451 4.7.1 Service unavailable - try again later\r\n");
    let r = c.mail(
        "sender@example.org",
        &["john@example.com"],
        &message("action=replycode", ""),
    );
    assert_eq!(r, "550-5.7.0 first line\r\n550 5.7.0 second line\r\n");
    assert!(server
        .wait_log(
            "milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 550 5.7.1 Command rejected",
            Duration::from_secs(5)
        )
        .is_some());
    // Discard: 250, and nothing delivered.
    let r = c.mail(
        "sender@example.org",
        &["john@example.com"],
        &message("action=discard", ""),
    );
    assert!(r.starts_with("250"), "{r}");
    assert!(server
        .wait_log("milter-discard", Duration::from_secs(5))
        .is_some());
    assert_eq!(f.files("john").len(), john, "nothing delivered");

    // At RCPT: only that recipient is refused, with the milter's reply.
    let r = c.mail("sender@example.org", &["john+reject-rcpt@example.com"], "");
    assert_eq!(r, "550 5.7.1 Command rejected\r\n");
    let r = c.mail(
        "sender@example.org",
        &["john+tempfail-rcpt@example.com"],
        "",
    );
    assert_eq!(r, "451 4.7.1 Service unavailable - try again later\r\n");
    let r = c.mail(
        "sender@example.org",
        &["john+replycode-rcpt@example.com"],
        "",
    );
    assert_eq!(r, "553 5.7.2 recipient says no\r\n");
    assert!(server
        .wait_log(
            "milter-reject: RCPT from unknown[127.0.0.1]: 553 5.7.2 recipient says no",
            Duration::from_secs(5)
        )
        .is_some());

    // At DATA, before the 354.
    let r = c.mail(
        "sender@example.org",
        &["john+reject-data@example.com"],
        &message("never sent", ""),
    );
    assert_eq!(r, "550 5.7.1 no data today\r\n");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok\r\n");

    // Quarantine: 250, held (listed with its reason), delivered on release.
    let r = c.mail(
        "sender@example.org",
        &["john@example.com"],
        &message("action=quarantine", ""),
    );
    assert!(r.starts_with("250"), "{r}");
    let id = queue_id(&r);
    assert_eq!(f.files("john").len(), john, "held, not delivered");
    let cfg = f.config.to_str().unwrap();
    let list = stdout(&run(&["--config", cfg, "queue", "list"], &[]));
    assert!(list.contains(&format!("{id}!")), "{list}");
    assert!(list.contains("(hold: held by the test milter)"), "{list}");
    assert!(list.contains("john@example.com"), "{list}");
    let out = run(&["--config", cfg, "queue", "release", &id], &[]);
    assert!(
        stdout(&out).contains("ok 1 messages released"),
        "{}",
        stdout(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.files("john").len() == john && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = new_messages(&f, "john", john);
    assert_eq!(got.len(), 1, "released exactly once");
    assert!(got[0].contains("Subject: action=quarantine"));
    assert!(
        got[0].contains(&format!("with ESMTP id {id}")),
        "{}",
        got[0]
    );
    let list = stdout(&run(&["--config", cfg, "queue", "list"], &[]));
    assert!(!list.contains(&id), "{list}");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
}

/// How a broken milter misbehaves.
#[derive(Clone, Copy)]
enum Bad {
    /// Answers the negotiation with bytes that are not a milter reply.
    Garbage,
    /// Negotiates, continues, and closes the connection at the first body chunk.
    CloseMidMessage,
    /// Accepts the connection and never answers.
    Silent,
}

/// A broken milter on a free port, one thread per connection.
fn bad_milter(how: Bad) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut hold = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut data).is_err() {
                        return;
                    }
                    let reply: Vec<u8> = match (how, data[0]) {
                        (Bad::Silent, _) => {
                            hold.push(data);
                            continue;
                        }
                        (Bad::Garbage, _) => b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
                        (Bad::CloseMidMessage, b'O') => {
                            let mut r = vec![0, 0, 0, 13, b'O'];
                            for n in [6u32, 0x1ff, 0] {
                                r.extend_from_slice(&n.to_be_bytes());
                            }
                            r
                        }
                        (Bad::CloseMidMessage, b'B') => return,
                        // Macros get no reply; everything else continues.
                        (Bad::CloseMidMessage, b'D') => continue,
                        (Bad::CloseMidMessage, _) => vec![0, 0, 0, 1, b'c'],
                    };
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn broken_milters_follow_the_default_action() {
    for (how, name) in [
        (Bad::Garbage, "garbage"),
        (Bad::CloseMidMessage, "close"),
        (Bad::Silent, "silent"),
    ] {
        for default in ["tempfail", "accept"] {
            let port = bad_milter(how);
            let f = fixture(
                &format!("inet:127.0.0.1:{port}"),
                &format!(
                    "milter_default_action = \"{default}\"\nmilter_connect_timeout = \"1s\"\nmilter_command_timeout = \"1s\"\nmilter_content_timeout = \"1s\""
                ),
            );
            let server = f.start();
            let addr = server.addr("smtp");
            for round in 0..2 {
                let before = f.files("john").len();
                let (mut c, greeting) = Smtp::connect(addr);
                assert!(greeting.starts_with("220"), "{name}/{default}: {greeting}");
                let r = c.cmd("EHLO client.example");
                let r = if r.starts_with("250") {
                    c.mail(
                        "sender@example.org",
                        &["john@example.com"],
                        &message("hi", ""),
                    )
                } else {
                    r
                };
                let after = f.files("john").len();
                if default == "accept" {
                    assert!(r.starts_with("250 2.0.0"), "{name}/{default}/{round}: {r}");
                    assert_eq!(after, before + 1, "{name}/{default}: delivered once");
                } else {
                    assert_eq!(
                        r, "451 4.7.1 Service unavailable - try again later\r\n",
                        "{name}/{default}/{round}"
                    );
                    assert_eq!(after, before, "{name}/{default}: nothing delivered");
                }
                // The session goes on.
                assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok\r\n");
                assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
            }
            drop(server);
        }
    }
}

/// rspamd 3.4's proxy worker in milter mode, scanning itself (no normal
/// worker, no redis), on a free loopback port with its own directories.
fn start_rspamd(dir: &Path) -> (Peer, u16) {
    let port = free_port();
    for sub in ["db", "run", "log", "local.d"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // Headers for every client, loopback included (milter_headers skips
    // local and authenticated clients by default).
    std::fs::write(
        dir.join("local.d/milter_headers.conf"),
        "skip_local = false;\nskip_authenticated = false;\nuse = [\"x-spamd-result\", \"x-rspamd-server\", \"x-rspamd-queue-id\", \"x-spam-status\", \"authentication-results\"];\n",
    )
    .unwrap();
    let conf = dir.join("rspamd.conf");
    std::fs::write(
        &conf,
        format!(
            r#".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    dns {{ nameserver = ["127.0.0.1:1"]; timeout = 1s; retransmits = 1; }}
}}
logging {{ type = "console"; level = "error"; }}
worker "rspamd_proxy" {{
    bind_socket = "127.0.0.1:{port}";
    milter = yes;
    timeout = 120s;
    upstream "local" {{ default = yes; self_scan = yes; }}
    count = 1;
    spam_header = "X-Spam";
    reject_message = "Spam message rejected";
}}
"#
        ),
    )
    .unwrap();
    let d = dir.display();
    let mut child = Command::new("rspamd")
        .args(["-f", "-i", "-c"])
        .arg(&conf)
        .args([
            format!("--var=DBDIR={d}/db"),
            format!("--var=RUNDIR={d}/run"),
            format!("--var=LOGDIR={d}/log"),
            format!("--var=LOCAL_CONFDIR={d}"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting rspamd");
    wait_port(port, Duration::from_secs(90), &mut child);
    (Peer(child), port)
}

#[test]
fn rspamd_as_a_milter() {
    if !require_tool("rspamd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (rspamd, port) = start_rspamd(dir.path());
    let f = fixture(
        &format!("inet:127.0.0.1:{port}"),
        "milter_connect_timeout = \"5s\"\nmilter_command_timeout = \"60s\"",
    );
    let server = f.start();
    let addr = server.addr("smtp");
    let (mut c, _) = Smtp::connect(addr);
    assert!(c.cmd("EHLO client.example").starts_with("250"));

    // GTUBE: refused with rspamd's own text.
    let gtube = "From: sender@example.org\r\nTo: john@example.com\r\nSubject: gtube\r\nMessage-ID: <gtube@example.org>\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
    let before = f.files("john").len();
    let r = c.mail("sender@example.org", &["john@example.com"], gtube);
    assert!(
        r.starts_with("554 5.7.1 ") && r.contains("Gtube pattern"),
        "{r}"
    );
    assert_eq!(f.files("john").len(), before);

    // A clean message: delivered with rspamd's headers.
    let clean = "From: sender@example.org\r\nTo: john@example.com\r\nSubject: lunch\r\nMessage-ID: <lunch@example.org>\r\nDate: Sat, 05 Dec 2026 12:00:00 +0000\r\n\r\nShall we have lunch on Friday?\r\n";
    let r = c.mail("sender@example.org", &["john@example.com"], clean);
    assert!(r.starts_with("250"), "{r}");
    let got = new_messages(&f, "john", before);
    assert_eq!(got.len(), 1);
    eprintln!("delivered with rspamd:\n{}", got[0]);
    assert!(
        got[0].contains("\nX-Spamd-Result: default: False"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("\nX-Rspamd-Queue-Id: "), "{}", got[0]);
    assert!(got[0].contains("\nX-Spam-Status: No"), "{}", got[0]);
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    drop(server);

    // rspamd stopped: 451 4.7.1 under tempfail, accepted under accept.
    drop(rspamd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "rspamd still listens after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = f.start();
    let (mut c, _) = Smtp::connect(server.addr("smtp"));
    c.cmd("EHLO client.example");
    let r = c.mail("sender@example.org", &["john@example.com"], clean);
    assert_eq!(r, "451 4.7.1 Service unavailable - try again later\r\n");
    drop(server);
    let text = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(
        &f.config,
        text.replacen(
            "\n[listen]",
            "\nmilter_default_action = \"accept\"\n\n[listen]",
            1,
        ),
    )
    .unwrap();
    let server = f.start();
    let (mut c, _) = Smtp::connect(server.addr("smtp"));
    c.cmd("EHLO client.example");
    let before = f.files("john").len();
    let r = c.mail("sender@example.org", &["john@example.com"], clean);
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(f.files("john").len(), before + 1);
}

/// access(5) HOLD (a restriction, no milter) uses the same hold queue.
#[test]
fn an_access_table_hold_is_kept_until_released() {
    let f = MailFixture::new(&[], "");
    let d = f.tree.dir.path().display().to_string();
    f.tree
        .write("sender_access", "hold@corp.example HOLD look at it\n");
    let text = std::fs::read_to_string(&f.config).unwrap().replacen(
        "\n[listen]",
        &format!(
            "smtpd_sender_restrictions = \"check_sender_access hash:{d}/sender_access\"\nqueue_directory = \"{d}/queue\"\n\n[listen]"
        ),
        1,
    );
    std::fs::write(&f.config, text).unwrap();
    let server = f.start();
    let (mut c, _) = Smtp::connect(server.addr("smtp"));
    c.cmd("EHLO client.example");
    let john = f.files("john").len();
    let r = c.mail(
        "hold@corp.example",
        &["john@example.com"],
        &message("held", ""),
    );
    assert!(r.starts_with("250"), "{r}");
    let id = queue_id(&r);
    assert_eq!(f.files("john").len(), john, "held, not delivered");
    let cfg = f.config.to_str().unwrap();
    let list = stdout(&run(&["--config", cfg, "queue", "list"], &[]));
    assert!(list.contains(&format!("{id}!")), "{list}");
    assert!(list.contains("Sender address look at it)"), "{list}");
    // Another sender is not held.
    let r = c.mail(
        "other@corp.example",
        &["john@example.com"],
        &message("not held", ""),
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(f.files("john").len(), john + 1);
    let out = run(&["--config", cfg, "queue", "release", "ALL"], &[]);
    assert!(
        stdout(&out).contains("ok 1 messages released"),
        "{}",
        stdout(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.files("john").len() == john + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = new_messages(&f, "john", john + 1);
    assert_eq!(got.len(), 1, "released exactly once");
    assert!(got[0].contains("Subject: held"), "{}", got[0]);
}

/// `non_smtpd_milters`: mail from `pigeonpost sendmail` is filtered at
/// pickup: changed, bounced when refused, held when quarantined.
#[test]
fn non_smtpd_milters_filter_sendmail() {
    if !have_pymilter() {
        return;
    }
    let (_milter, port) = start_test_milter();
    let f = fixture(
        "",
        &format!("non_smtpd_milters = \"inet:127.0.0.1:{port}\""),
    );
    let server = f.start();
    let sendmail = |subject: &str| {
        let out = crate::util::output_with_stdin(
            crate::util::pigeonpost()
                .args(["--config", f.config.to_str().unwrap(), "sendmail"])
                .args(["-f", "jane@example.com", "john@example.com"]),
            format!("Subject: {subject}\n\nhi\n").as_bytes(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let wait_files = |user: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while f.files(user).len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (john, jane) = (f.files("john").len(), f.files("jane").len());
    sendmail("action=addheader");
    wait_files("john", john + 1);
    let got = new_messages(&f, "john", john);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("\nX-Added: yes\n"), "{}", got[0]);

    // Refused: bounced to the sender, not delivered.
    sendmail("action=reject");
    wait_files("jane", jane + 1);
    let bounce = new_messages(&f, "jane", jane);
    assert_eq!(bounce.len(), 1);
    assert!(
        bounce[0].contains("550 5.7.1 Command rejected"),
        "{}",
        bounce[0]
    );
    assert_eq!(f.files("john").len(), john + 1);

    // Quarantined: held.
    sendmail("action=quarantine");
    assert!(server
        .wait_log("milter-hold", Duration::from_secs(15))
        .is_some());
    let list = stdout(&run(
        &["--config", f.config.to_str().unwrap(), "queue", "list"],
        &[],
    ));
    assert!(list.contains("(hold: held by the test milter)"), "{list}");
    assert_eq!(f.files("john").len(), john + 1);
}

/// OpenDKIM as a signing milter: mail our users send leaves with its
/// DKIM-Signature, and python3-dkim (dkimpy) verifies it with the key
/// opendkim-genkey made.
#[test]
fn opendkim_signs_as_a_milter() {
    if !require_tool("opendkim") || !require_tool("opendkim-genkey") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let k = keys.path();
    let gen = Command::new("opendkim-genkey")
        .args(["-d", "example.com", "-s", "test", "-D"])
        .arg(k)
        .status()
        .unwrap();
    assert!(gen.success());
    let port = free_port();
    let conf = k.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "Syslog no\nSocket inet:{port}@127.0.0.1\nMode s\nDomain example.com\nSelector test\n\
             KeyFile {}/test.private\nCanonicalization relaxed/simple\nInternalHosts 127.0.0.1\n\
             Background no\nPidFile {}/pid\nRequireSafeKeys false\n",
            k.display(),
            k.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("opendkim")
        .arg("-x")
        .arg(&conf)
        .arg("-f")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("opendkim");
    wait_port(port, Duration::from_secs(20), &mut child);
    let _peer = Peer(child);

    let f = fixture(&format!("inet:127.0.0.1:{port}"), "");
    let server = f.start();
    let before = f.files("john").len();
    let (mut c, _) = Smtp::connect(server.addr("smtp"));
    c.cmd("EHLO client.example.com");
    let msg = "From: Sender <sender@example.com>\r\nTo: john@example.com\r\nSubject: signed by opendkim\r\n\r\nHello, signed.\r\n";
    let r = c.mail("sender@example.com", &["john@example.com"], msg);
    assert!(r.starts_with("250 "), "{r}");
    c.cmd("QUIT");
    let stored = new_messages(&f, "john", before)
        .pop()
        .expect("a delivered copy");
    assert!(
        stored.contains("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.com;"),
        "{stored}"
    );

    // The public key as DNS would publish it, from opendkim-genkey's .txt.
    let txt = std::fs::read_to_string(k.join("test.txt")).unwrap();
    let record: String = txt.split('"').skip(1).step_by(2).collect();
    let out = Command::new("python3")
        .args([
            "-c",
            "import dkim, os, sys\n\
             msg = open(sys.argv[1], 'rb').read().replace(b'\\r\\n', b'\\n').replace(b'\\n', b'\\r\\n')\n\
             rec = os.environ['DKIM_RECORD'].encode()\n\
             ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: rec if name == b'test._domainkey.example.com.' else None)\n\
             print('verified' if ok else 'FAILED')\n",
        ])
        .arg(new_message_path(&f, "john"))
        .env("DKIM_RECORD", record)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said.trim(),
        "verified",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The newest file in `user`'s Maildir.
fn new_message_path(f: &MailFixture, user: &str) -> std::path::PathBuf {
    f.files(user)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .expect("a message")
}
