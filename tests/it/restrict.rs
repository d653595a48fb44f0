//! smtpd restrictions end to end: a main.cf-style restriction block with
//! cidr:, regexp: and hash: access tables, a DNS list served by the test
//! DNS server, and postgrey as a real policy service; replies compared
//! with Postfix's texts.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::dns::{Answer, FakeDns};
use crate::smtp::mail_setup;
use crate::util::{require_tool, LineClient};

/// One SMTP transaction from `from`; returns the reply to each command.
fn transaction(from: &str, smtp: SocketAddr, helo: &str, sender: &str, rcpt: &str) -> Vec<String> {
    let mut c = LineClient::connect(from, smtp);
    let mut replies = vec![c.until("220 ")];
    replies.push(c.cmd(&format!("EHLO {helo}\r\n"), "250 "));
    replies.push(c.cmd(&format!("MAIL FROM:<{sender}>\r\n"), ""));
    replies.push(c.cmd(&format!("RCPT TO:<{rcpt}>\r\n"), ""));
    if replies[3].starts_with("250") {
        replies.push(c.cmd("DATA\r\n", ""));
        replies.push(c.cmd("Subject: restrictions\r\n\r\nhello\r\n.\r\n", ""));
    }
    c.cmd("QUIT\r\n", "221");
    replies
}

#[test]
fn a_main_cf_restriction_block() {
    let dns = FakeDns::start(vec![
        (
            "2.0.0.127.zen.test".into(),
            "A",
            vec![Answer::A([127, 0, 0, 2])],
        ),
        (
            "2.0.0.127.zen.test".into(),
            "TXT",
            vec![Answer::Txt("Listed for testing".into())],
        ),
        (
            "5.0.0.127.zen.test".into(),
            "A",
            vec![Answer::A([127, 0, 0, 255])],
        ),
        (
            "b.example".into(),
            "MX",
            vec![Answer::Mx(10, "mx.b.example")],
        ),
    ]);
    let setup = mail_setup(&format!(
        r#"
dns_servers = "{dns}"
smtpd_client_restrictions = "permit_mynetworks, check_client_access cidr:$DIR/postfix/access.cidr, reject_rbl_client zen.test=127.0.0.[2..11]"
smtpd_helo_restrictions = "reject_invalid_helo_hostname"
smtpd_sender_restrictions = "check_sender_access regexp:$DIR/postfix/sender.re, reject_non_fqdn_sender"
smtpd_recipient_restrictions = "permit_mynetworks, reject_unauth_destination, check_recipient_access hash:$DIR/postfix/rcpt_access"
smtpd_data_restrictions = "reject_unauth_pipelining"
"#,
        dns = dns.addr
    ).replace("$DIR", "{d}"));
    let d = setup.tree.dir.path().display().to_string();
    // mail_setup's format! left "{d}" literal in our extra block: fill it in.
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("{d}", &d);
    std::fs::write(&setup.config, text).unwrap();
    setup.tree.write(
        "postfix/access.cidr",
        "127.0.0.3 REJECT go away\n127.0.0.0/8 DUNNO\n",
    );
    setup.tree.write(
        "postfix/sender.re",
        "/^spammer@/ REJECT no spammers\n/^discard@/ DISCARD\n/^tag@/ PREPEND X-Tag: tagged by sender.re\n",
    );
    setup.tree.write(
        "postfix/rcpt_access",
        "jane@example.com 550 5.7.1 Jane takes no mail\n",
    );
    let server = setup.start();
    let smtp = server.addr("smtp");

    // DNS list: Postfix's default_rbl_reply with the TXT reason.
    let r = transaction(
        "127.0.0.2",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert_eq!(
        r[3],
        "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.test; Listed for testing\r\n"
    );
    // An answer outside the =127.0.0.[2..11] filter is not a listing.
    let r = transaction(
        "127.0.0.5",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert!(r[3].starts_with("250 "), "{r:?}");
    // cidr: table; the client has no PTR, so it is "unknown".
    let r = transaction(
        "127.0.0.3",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert_eq!(
        r[3],
        "554 5.7.1 <unknown[127.0.0.3]>: Client host rejected: go away\r\n"
    );
    // regexp: sender table and reject_non_fqdn_sender.
    let r = transaction(
        "127.0.0.4",
        smtp,
        "client.example",
        "spammer@b.example",
        "john@example.com",
    );
    assert_eq!(
        r[3],
        "554 5.7.1 <spammer@b.example>: Sender address rejected: no spammers\r\n"
    );
    let r = transaction(
        "127.0.0.4",
        smtp,
        "client.example",
        "user@localhost",
        "john@example.com",
    );
    assert_eq!(
        r[3],
        "504 5.5.2 <user@localhost>: Sender address rejected: need fully-qualified address\r\n"
    );
    // HELO check (with smtpd_delay_reject, at RCPT).
    let r = transaction(
        "127.0.0.4",
        smtp,
        "bad_name!",
        "a@b.example",
        "john@example.com",
    );
    assert_eq!(
        r[3],
        "501 5.5.2 <bad_name!>: Helo command rejected: Invalid name\r\n"
    );
    // hash: recipient table with its own code and text.
    let r = transaction(
        "127.0.0.4",
        smtp,
        "client.example",
        "a@b.example",
        "jane@example.com",
    );
    assert_eq!(
        r[3],
        "550 5.7.1 <jane@example.com>: Recipient address rejected: Jane takes no mail\r\n"
    );
    // Relay control is still there.
    let r = transaction(
        "127.0.0.4",
        smtp,
        "client.example",
        "a@b.example",
        "x@remote.example",
    );
    assert_eq!(
        r[3],
        "554 5.7.1 <x@remote.example>: Relay access denied\r\n"
    );

    // A clean message is delivered; PREPEND adds its header; DISCARD says
    // 250 and keeps nothing.
    let earlier = setup.new_mail("vmail/example.com/john");
    let before = earlier.len();
    let r = transaction(
        "127.0.0.4",
        smtp,
        "client.example",
        "tag@b.example",
        "john@example.com",
    );
    assert!(r[5].starts_with("250 2.0.0 Ok: queued as"), "{r:?}");
    let files = setup.wait_mail("vmail/example.com/john", before + 1);
    // Maildir names do not sort by arrival: the new file is the one not seen before.
    let new = files
        .iter()
        .find(|f| !earlier.contains(f))
        .expect("the new message");
    let text = std::fs::read_to_string(new).unwrap();
    assert!(text.contains("\nX-Tag: tagged by sender.re\n"), "{text}");
    let r = transaction(
        "127.0.0.4",
        smtp,
        "client.example",
        "discard@b.example",
        "john@example.com",
    );
    assert!(r[5].starts_with("250 2.0.0 Ok: queued as"), "{r:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(setup.new_mail("vmail/example.com/john").len(), before + 1);

    // reject_unauth_pipelining: HELO (no PIPELINING offered), then the
    // whole transaction in one write.
    let mut c = LineClient::connect("127.0.0.4", smtp);
    c.until("220 ");
    c.cmd("HELO client.example\r\n", "250 ");
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<john@example.com>\r\nDATA\r\n");
    let out = c.until("503 ");
    assert!(
        out.ends_with(
            "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining\r\n"
        ),
        "{out}"
    );
}

/// postgrey, killed when the test ends; its database directory goes with it.
struct Postgrey {
    child: Child,
    _db: tempfile::TempDir,
}

impl Drop for Postgrey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_postgrey(delay_secs: u32) -> Option<(Postgrey, u16)> {
    if !require_tool("postgrey") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // postgrey drops root privileges to its own user: give it the database directory.
    let _ = Command::new("chown")
        .arg("postgrey")
        .arg(dir.path())
        .status();
    let child = Command::new("postgrey")
        .arg(format!("--inet=127.0.0.1:{port}"))
        .arg(format!("--dbdir={}", dir.path().display()))
        .arg(format!("--delay={delay_secs}"))
        .arg(format!("--pidfile={}/pid", dir.path().display()))
        .args(["--user=postgrey", "--group=postgrey"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("postgrey");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "postgrey did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((Postgrey { child, _db: dir }, port))
}

#[test]
fn postgrey_as_a_policy_service() {
    let Some((_pg, port)) = start_postgrey(2) else {
        return;
    };
    let setup = mail_setup(&format!(
        "smtpd_recipient_restrictions = \"reject_unauth_destination, check_policy_service inet:127.0.0.1:{port}\"\n"
    ));
    let server = setup.start();
    let smtp = server.addr("smtp");
    // First attempt: greylisted (postgrey's DEFER_IF_PERMIT).
    let r = transaction(
        "127.0.0.6",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert!(
        r[3].starts_with(
            "450 4.2.0 <john@example.com>: Recipient address rejected: Greylisted, see "
        ),
        "{r:?}"
    );
    // The retry after the delay passes, with postgrey's header prepended.
    std::thread::sleep(Duration::from_secs(3));
    let r = transaction(
        "127.0.0.6",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert!(r[5].starts_with("250 2.0.0"), "{r:?}");
    let files = setup.wait_mail("vmail/example.com/john", 1);
    let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
    assert!(text.contains("X-Greylist: delayed"), "{text}");
}

#[test]
fn a_dead_policy_service_gets_the_default_action() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let setup = mail_setup(&format!(
        "smtpd_recipient_restrictions = \"reject_unauth_destination, check_policy_service {{ inet:127.0.0.1:{port}, timeout=2s, try_limit=1 }}\"\n"
    ));
    let server = setup.start();
    let r = transaction(
        "127.0.0.6",
        server.addr("smtp"),
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    // Postfix's text for smtpd_policy_service_default_action.
    assert_eq!(
        r[3],
        "451 4.3.5 <john@example.com>: Recipient address rejected: Server configuration problem\r\n"
    );
    // The server keeps serving: a DUNNO default lets mail through.
    drop(server);
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("try_limit=1", "try_limit=1, default_action=DUNNO");
    std::fs::write(&setup.config, text).unwrap();
    let server = setup.start();
    let r = transaction(
        "127.0.0.6",
        server.addr("smtp"),
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert!(r[5].starts_with("250 2.0.0"), "{r:?}");
}

#[test]
fn restriction_mistakes_are_config_errors() {
    for (extra, want) in [
        ("smtpd_recipient_restrictions = \"permit_mynetworks, reject_unauth_destinaton\"", "unknown restriction 'reject_unauth_destinaton' (did you mean 'reject_unauth_destination'?)"),
        ("smtpd_relay_restrictions = \"permit_mynetworks\"", "specify at least one working instance of"),
        ("smtpd_client_restrictions = \"check_client_access cidr:/nonexistent/x.cidr\"", "/nonexistent/x.cidr"),
        ("spammers = \"reject\"", "unknown key"),
        ("smtpd_restriction_classes = \"spammers\"", "no 'spammers = …' setting defines it"),
    ] {
        let setup = mail_setup(extra);
        let out = crate::util::run(&["--config", setup.config.to_str().unwrap(), "config"], &[]);
        let err = crate::util::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(want), "{extra}: {err}");
    }
}

/// MAIL FROM replies for `senders`, logged in as john@example.com on port
/// 25 from this host (where AUTH needs no TLS).
fn mail_from_as_john(extra: &str, senders: &[&str]) -> Vec<String> {
    use base64::Engine;
    let setup = mail_setup(extra);
    let server = setup.start();
    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    c.until("220 ");
    c.cmd("EHLO client.example\r\n", "250 ");
    let creds = base64::engine::general_purpose::STANDARD.encode("\0john@example.com\0john123");
    let auth = c.cmd(&format!("AUTH PLAIN {creds}\r\n"), "");
    assert!(auth.starts_with("235 "), "{auth}");
    senders
        .iter()
        .map(|s| {
            let r = c.cmd(&format!("MAIL FROM:<{s}>\r\n"), "");
            c.cmd("RSET\r\n", "250 ");
            r
        })
        .collect()
}

#[test]
fn authenticated_users_send_only_as_themselves() {
    let senders = [
        "john@example.com",
        "John+lists@Example.com",
        "info@example.com",
        "ceo@bank.example",
        "jane@example.com",
        "",
    ];
    let r = mail_from_as_john("", &senders);
    assert_eq!(r[0], "250 2.1.0 Ok\r\n");
    assert_eq!(r[1], "250 2.1.0 Ok\r\n", "+extension");
    // info@ is an alias that delivers to john (and jane).
    assert_eq!(r[2], "250 2.1.0 Ok\r\n", "alias");
    assert_eq!(
        r[3],
        "553 5.7.1 <ceo@bank.example>: Sender address rejected: not owned by user john@example.com\r\n"
    );
    assert!(r[4].starts_with("553 5.7.1 <jane@example.com>"), "{}", r[4]);
    assert_eq!(r[5], "250 2.1.0 Ok\r\n", "null sender");
    // The old behaviour is one key away.
    let r = mail_from_as_john("authenticated_sender_policy = \"any\"", &senders);
    assert!(r.iter().all(|l| l == "250 2.1.0 Ok\r\n"), "{r:?}");
}

/// A child process killed when the test ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn policyd_spf_as_a_unix_policy_service() {
    if !require_tool("policyd-spf") {
        return;
    }
    let dns = FakeDns::start(vec![
        (
            "spf-fail.example".into(),
            "TXT",
            vec![Answer::Txt("v=spf1 -all".into())],
        ),
        (
            "spf-pass.example".into(),
            "TXT",
            vec![Answer::Txt("v=spf1 ip4:127.0.0.0/8 -all".into())],
        ),
    ]);
    let setup = mail_setup("");
    let sock = setup.tree.path("policyd-spf.sock");
    let conf = setup.tree.write(
        "policyd-spf.conf",
        "debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\n\
         PermError_reject = False\nTempError_Defer = False\nskip_addresses = 192.0.2.0/24\n",
    );
    let _peer = Peer(
        Command::new("/usr/bin/python3")
            .arg("tests/peers/policyd_spf_server.py")
            .arg(&sock)
            .arg(&conf)
            .arg(dns.addr.port().to_string())
            .spawn()
            .expect("policyd_spf_server.py"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "policyd-spf server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!(
            "smtpd_recipient_restrictions = \"reject_unauth_destination, check_policy_service unix:{}\"\n{text}",
            sock.display()
        ),
    )
    .unwrap();
    let server = setup.start();
    let smtp = server.addr("smtp");
    let r = transaction(
        "127.0.0.7",
        smtp,
        "client.example",
        "x@spf-fail.example",
        "john@example.com",
    );
    assert!(
        r[3].starts_with("550 5.7.23 <john@example.com>: Recipient address rejected: Message rejected due to: SPF fail"),
        "{r:?}"
    );
    let r = transaction(
        "127.0.0.7",
        smtp,
        "client.example",
        "x@spf-pass.example",
        "john@example.com",
    );
    assert!(r[5].starts_with("250 2.0.0"), "{r:?}");
    let files = setup.wait_mail("vmail/example.com/john", 1);
    let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
    assert!(
        text.contains("Received-SPF: Pass (mailfrom) identity=mailfrom"),
        "{text}"
    );
}

#[test]
fn postscreen_lite_before_the_greeting() {
    let dns = FakeDns::start(vec![
        (
            "2.0.0.127.zen.test".into(),
            "A",
            vec![Answer::A([127, 0, 0, 2])],
        ),
        (
            "2.0.0.127.other.test".into(),
            "A",
            vec![Answer::A([127, 0, 0, 2])],
        ),
        (
            "5.0.0.127.other.test".into(),
            "A",
            vec![Answer::A([127, 0, 0, 2])],
        ),
    ]);
    let setup = mail_setup(&format!(
        "dns_servers = \"{}\"\npostscreen = \"yes\"\npostscreen_dnsbl_sites = \"zen.test*2, other.test\"\n\
         postscreen_dnsbl_threshold = \"2\"\npostscreen_dnsbl_action = \"drop\"\n\
         postscreen_greet_action = \"drop\"\npostscreen_greet_wait = \"1s\"\n",
        dns.addr
    ));
    let server = setup.start();
    let smtp = server.addr("smtp");

    // Listed with weight 2 + 1: dropped with Postfix's text.
    let mut c = LineClient::connect("127.0.0.2", smtp);
    assert_eq!(c.line(), "220-mail.example.com ESMTP\r\n");
    assert_eq!(
        c.line(),
        "521 5.7.1 Service unavailable; client [127.0.0.2] blocked using zen.test\r\n"
    );
    assert_eq!(c.line(), "", "the connection is closed");

    // Talks before the greeting ends: a bot.
    let mut c = LineClient::connect("127.0.0.3", smtp);
    c.send("EHLO bot.example\r\n");
    assert_eq!(c.line(), "220-mail.example.com ESMTP\r\n");
    assert_eq!(c.line(), "521 5.5.1 Protocol error\r\n");

    // Listed once (weight 1, under the threshold) and patient: passes,
    // and the rest of the greeting follows.
    let start = Instant::now();
    let mut c = LineClient::connect("127.0.0.5", smtp);
    assert_eq!(c.line(), "220-mail.example.com ESMTP\r\n");
    assert_eq!(c.line(), "220 mail.example.com ESMTP pigeonpost\r\n");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert!(c
        .cmd("EHLO client.example\r\n", "250 ")
        .contains("250 CHUNKING"));
    c.cmd("QUIT\r\n", "221");
    // Remembered: no wait the second time.
    let start = Instant::now();
    let mut c = LineClient::connect("127.0.0.5", smtp);
    assert_eq!(c.line(), "220 mail.example.com ESMTP pigeonpost\r\n");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(server
        .wait_log("PASS OLD [127.0.0.5]", Duration::from_secs(5))
        .is_some());
}

/// A policy server that answers `answer` to every request (then the blank line).
fn fake_policy(answer: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                use std::io::{BufRead, Write};
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\n" && w.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn tables_reload_and_other_actions() {
    let dns = FakeDns::start(vec![
        ("6.0.0.127.slow.test".into(), "A", vec![Answer::Silent]),
        (
            "7.0.0.127.zen.test".into(),
            "A",
            vec![Answer::A([127, 0, 0, 3])],
        ),
    ]);
    let nonsense = fake_policy("this is not a policy answer\n\n");
    let setup = mail_setup(&format!(
        r#"
dns_servers = "{dns}"
rbl_reply_maps = "hash:{{d}}/postfix/rbl_reply"
smtpd_client_restrictions = "check_client_access cidr:{{d}}/postfix/clients.cidr, reject_rbl_client slow.test, reject_rbl_client zen.test"
smtpd_sender_restrictions = "check_sender_access hash:{{d}}/postfix/senders"
smtpd_recipient_restrictions = "reject_unauth_destination, check_recipient_access hash:{{d}}/postfix/policy_rcpt"
smtpd_restriction_classes = "ask_nonsense"
ask_nonsense = "check_policy_service {{ inet:127.0.0.1:{nonsense}, try_limit=1 }}"
"#,
        dns = dns.addr
    ));
    let d = setup.tree.dir.path().display().to_string();
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("{d}", &d);
    std::fs::write(&setup.config, text).unwrap();
    setup
        .tree
        .write("postfix/clients.cidr", "127.0.0.9 REJECT not you\n");
    setup.tree.write(
        "postfix/senders",
        "boss@b.example REDIRECT jane@example.com\n",
    );
    setup
        .tree
        .write("postfix/policy_rcpt", "jane@example.com ask_nonsense\n");
    setup.tree.write(
        "postfix/rbl_reply",
        "zen.test $rbl_code 5.7.9 Go away [$rbl_what] (listed in $rbl_domain)\n",
    );
    let server = setup.start();
    let smtp = server.addr("smtp");

    // rbl_reply_maps gives the DNS list its own text.
    let r = transaction(
        "127.0.0.7",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert_eq!(
        r[3],
        "554 5.7.9 Go away [127.0.0.7] (listed in zen.test)\r\n"
    );

    // A DNS list that never answers does not reject (after the resolver's timeouts).
    let r = transaction(
        "127.0.0.6",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert!(r[5].starts_with("250 2.0.0"), "{r:?}");

    // A policy service answering nonsense: smtpd_policy_service_default_action.
    let r = transaction(
        "127.0.0.8",
        smtp,
        "client.example",
        "a@b.example",
        "jane@example.com",
    );
    assert_eq!(
        r[3],
        "451 4.3.5 <jane@example.com>: Recipient address rejected: Server configuration problem\r\n"
    );

    // REDIRECT: the message goes to jane instead of john.
    let before = setup.new_mail("vmail/example.com/jane").len();
    let john_before = setup.new_mail("vmail/example.com/john").len();
    let r = transaction(
        "127.0.0.8",
        smtp,
        "client.example",
        "boss@b.example",
        "john@example.com",
    );
    assert!(r[5].starts_with("250 2.0.0"), "{r:?}");
    assert_eq!(
        setup.wait_mail("vmail/example.com/jane", before + 1).len(),
        before + 1
    );
    assert_eq!(setup.new_mail("vmail/example.com/john").len(), john_before);

    // The cidr table is reloaded when it changes, like every table.
    let r = transaction(
        "127.0.0.9",
        smtp,
        "client.example",
        "a@b.example",
        "john@example.com",
    );
    assert_eq!(
        r[3],
        "554 5.7.1 <unknown[127.0.0.9]>: Client host rejected: not you\r\n"
    );
    crate::util::replace(&setup.tree.path("postfix/clients.cidr"), "127.0.0.9 OK\n");
    assert!(
        server
            .wait_log("clients.cidr", Duration::from_secs(10))
            .is_some(),
        "no reload logged"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = transaction(
            "127.0.0.9",
            smtp,
            "client.example",
            "a@b.example",
            "john@example.com",
        );
        if r[3].starts_with("250") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new table is not used: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
