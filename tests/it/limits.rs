//! Limits and abuse, over real sockets from several loopback addresses:
//! the login throttle and bans (shared by IMAP, POP3 and SMTP AUTH),
//! Postfix's anvil rate limits, `mail_max_userip_connections`, the
//! pre-login, TLS and data-rate deadlines, and IMAP's command size limits.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::proxy::metric;
use crate::util::{LineClient as Client, MailFixture, Server};

fn setup(extra: &str) -> MailFixture {
    MailFixture::new(
        &[
            ("imap", "127.0.0.1:0"),
            ("pop3", "127.0.0.1:0"),
            ("imaps", "127.0.0.1:0"),
        ],
        &format!("disable_plaintext_auth = \"no\"\n{extra}"),
    )
}

fn imap_login(from: &str, server: &Server, user: &str, pass: &str) -> (Client, String) {
    let mut c = Client::connect(from, server.addr("imap"));
    c.line();
    let reply = c.cmd(&format!("a LOGIN {user} {pass}\r\n"), "a ");
    (c, reply)
}

#[test]
fn a_guesser_is_slowed_then_banned_everywhere_while_the_real_user_logs_in() {
    let setup = setup(
        "auth_failure_delay = \"100 msecs\"\nauth_failure_ban_threshold = 5\nauth_failure_ban_time = \"4s\"",
    );
    let server = setup.start();
    let guesser = "127.0.0.2";
    let (mut g, first) = imap_login(guesser, &server, "john@example.com", "wrong0");
    assert!(first.contains("a NO [AUTHENTICATIONFAILED]"), "{first}");
    // Each further failure waits the doubled penalty before the check:
    // 100, 200, 400, 800 ms, plus the 100 ms failure delay.
    let mut took = Vec::new();
    for i in 1..5 {
        let t = Instant::now();
        let r = g.cmd(&format!("b LOGIN john@example.com wrong{i}\r\n"), "b ");
        took.push(t.elapsed());
        assert!(
            r.contains("b NO [AUTHENTICATIONFAILED]"),
            "attempt {i}: {r}"
        );
    }
    assert!(
        took[3] >= Duration::from_millis(850),
        "penalty grows: {took:?}"
    );
    assert!(took[3] > took[0] * 3, "penalty grows: {took:?}");

    // The real user, from elsewhere, still logs in (slowed by the
    // penalty on the user name, never refused).
    let t = Instant::now();
    let (_real, ok) = imap_login("127.0.0.3", &server, "john@example.com", "john123");
    assert!(ok.contains("a OK"), "{ok}");
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "the user name's penalty applied: {:?}",
        t.elapsed()
    );

    // Five failures: banned. The open connection's next login fails
    // unchecked, even with the right password ...
    let r = g.cmd("c LOGIN john@example.com john123\r\n", "c ");
    assert!(
        r.contains("c NO [UNAVAILABLE] Too many failed logins"),
        "{r}"
    );
    // ... and every listener refuses it at connect.
    let mut c = Client::connect(guesser, server.addr("imap"));
    let bye = c.line();
    assert_eq!(
        bye,
        "* BYE [UNAVAILABLE] too many failed logins from 127.0.0.2; try again later\r\n"
    );
    let mut c = Client::connect(guesser, server.addr("smtp"));
    let l = c.line();
    assert_eq!(l, "421 4.7.0 mail.example.com Error: too many failed logins from 127.0.0.2; try again later\r\n");
    let mut c = Client::connect(guesser, server.addr("pop3"));
    assert!(c
        .line()
        .starts_with("-ERR [SYS/TEMP] too many failed logins"));
    // Implicit TLS: closed before the handshake.
    let mut c = Client::connect(guesser, server.addr("imaps"));
    let (_, rest) = c.closed_after();
    assert_eq!(rest, "");
    // Others are not affected.
    let (_, ok) = imap_login("127.0.0.4", &server, "jane@example.com", "jane123");
    assert!(ok.contains("a OK"), "{ok}");

    let line = server
        .wait_log(
            "client banned after too many failed logins",
            Duration::from_secs(5),
        )
        .expect("the ban is logged");
    assert!(line.contains("127.0.0.2"), "{line}");
    let http = server.addr("http");
    assert_eq!(metric(http, "pigeonpost_auth_bans_total"), 1);
    assert!(metric(http, "pigeonpost_limited_total{limit=\"banned\"}") >= 4);

    // The ban ends; the penalty is gone with it after a success.
    std::thread::sleep(Duration::from_millis(4200));
    let (_, ok) = imap_login(guesser, &server, "john@example.com", "john123");
    assert!(ok.contains("a OK"), "banned no more: {ok}");
}

#[test]
fn smtp_auth_and_pop3_share_the_ban() {
    let setup = setup("auth_failure_delay = \"0\"\nauth_failure_ban_threshold = 3");
    let server = setup.start();
    let from = "127.0.0.12";
    // One SMTP AUTH failure, one POP3 failure, one IMAP failure: banned.
    let mut s = Client::connect(from, server.addr("smtp"));
    s.line();
    s.cmd("EHLO guesser\r\n", "250 ");
    // AUTH PLAIN \0john@example.com\0nope
    let r = s.cmd("AUTH PLAIN AGpvaG5AZXhhbXBsZS5jb20Abm9wZQ==\r\n", "5");
    assert!(r.starts_with("535 5.7.8"), "{r}");
    let mut p = Client::connect(from, server.addr("pop3"));
    p.line();
    p.cmd("USER john@example.com\r\n", "+OK");
    let r = p.cmd("PASS nope\r\n", "-ERR");
    assert!(r.contains("[AUTH]"), "{r}");
    let (_, r) = imap_login(from, &server, "john@example.com", "nope");
    assert!(r.contains("AUTHENTICATIONFAILED"), "{r}");
    let r = s.cmd("AUTH PLAIN AGpvaG5AZXhhbXBsZS5jb20Aam9objEyMw==\r\n", "4");
    assert!(
        r.starts_with("454 4.7.0 Too many failed logins"),
        "right password, banned: {r}"
    );
    p.cmd("USER john@example.com\r\n", "+OK");
    let r = p.cmd("PASS john123\r\n", "");
    assert!(
        r.starts_with("-ERR [SYS/TEMP] Too many failed logins"),
        "{r}"
    );
}

#[test]
fn postfix_anvil_rate_limits_with_postfix_replies() {
    let setup = setup(
        "auth_failure_delay = \"0\"
smtpd_client_connection_rate_limit = 3
smtpd_client_message_rate_limit = 2
smtpd_client_recipient_rate_limit = 3
smtpd_client_auth_rate_limit = 2
smtpd_client_new_tls_session_rate_limit = 1",
    );
    let server = setup.start();
    let smtp = server.addr("smtp");
    // Connections: three per minute, the fourth refused.
    for _ in 0..3 {
        let mut c = Client::connect("127.0.0.5", smtp);
        assert!(c.line().starts_with("220 "));
    }
    let mut c = Client::connect("127.0.0.5", smtp);
    assert_eq!(
        c.line(),
        "421 4.7.0 mail.example.com Error: too many connections from 127.0.0.5\r\n"
    );

    // Messages: MAIL FROM counts.
    let mut c = Client::connect("127.0.0.6", smtp);
    c.line();
    c.cmd("EHLO a.example\r\n", "250 ");
    for _ in 0..2 {
        assert!(c.cmd("MAIL FROM:<a@a.example>\r\n", "").starts_with("250"));
        c.cmd("RSET\r\n", "250");
    }
    let r = c.cmd("MAIL FROM:<a@a.example>\r\n", "");
    assert_eq!(r, "450 4.7.1 Error: too much mail from 127.0.0.6\r\n");

    // Recipients.
    let mut c = Client::connect("127.0.0.7", smtp);
    c.line();
    c.cmd("EHLO a.example\r\n", "250 ");
    c.cmd("MAIL FROM:<a@a.example>\r\n", "250");
    for _ in 0..3 {
        let r = c.cmd("RCPT TO:<john@example.com>\r\n", "");
        assert!(r.starts_with("250"), "{r}");
    }
    let r = c.cmd("RCPT TO:<john@example.com>\r\n", "");
    assert_eq!(r, "450 4.7.1 Error: too many recipients from 127.0.0.7\r\n");

    // AUTH commands, right or wrong.
    let mut c = Client::connect("127.0.0.8", smtp);
    c.line();
    c.cmd("EHLO a.example\r\n", "250 ");
    for _ in 0..2 {
        let r = c.cmd("AUTH PLAIN AGpvaG5AZXhhbXBsZS5jb20Abm9wZQ==\r\n", "");
        assert!(r.starts_with("535"), "{r}");
    }
    let r = c.cmd("AUTH PLAIN AGpvaG5AZXhhbXBsZS5jb20Aam9objEyMw==\r\n", "");
    assert_eq!(
        r,
        "450 4.7.1 Error: too many AUTH commands from 127.0.0.8\r\n"
    );

    // New TLS sessions: STARTTLS counts; the second is refused and the connection closed.
    let mut c = Client::connect("127.0.0.9", smtp);
    c.line();
    c.cmd("EHLO a.example\r\n", "250 ");
    assert!(c.cmd("STARTTLS\r\n", "").starts_with("220"));
    drop(c);
    let mut c = Client::connect("127.0.0.9", smtp);
    c.line();
    c.cmd("EHLO a.example\r\n", "250 ");
    let r = c.cmd("STARTTLS\r\n", "");
    assert_eq!(
        r,
        "421 4.7.0 mail.example.com Error: too many new TLS sessions from 127.0.0.9\r\n"
    );
    assert_eq!(c.line(), "", "closed after the 421");

    // mynetworks (smtpd_client_event_limit_exceptions' default) is exempt.
    let mut c = Client::connect("127.0.0.1", smtp);
    c.line();
    c.cmd("EHLO a.example\r\n", "250 ");
    for _ in 0..4 {
        assert!(c.cmd("MAIL FROM:<a@a.example>\r\n", "").starts_with("250"));
        c.cmd("RSET\r\n", "250");
    }
    let http = server.addr("http");
    assert_eq!(
        metric(http, "pigeonpost_limited_total{limit=\"message_rate\"}"),
        1
    );
    assert_eq!(
        metric(http, "pigeonpost_limited_total{limit=\"connection_rate\"}"),
        1
    );
}

#[test]
fn mail_max_userip_connections_for_imap_and_pop3_apart() {
    let setup = setup("mail_max_userip_connections = 1");
    let server = setup.start();
    let (first, ok) = imap_login("127.0.0.1", &server, "john@example.com", "john123");
    assert!(ok.contains("a OK"), "{ok}");
    let (_, r) = imap_login("127.0.0.1", &server, "john@example.com", "john123");
    assert!(
        r.contains("a NO [UNAVAILABLE] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=1)"),
        "{r}"
    );
    // Another user, or the same user from another address, is not limited.
    let (_, ok) = imap_login("127.0.0.1", &server, "jane@example.com", "jane123");
    assert!(ok.contains("a OK"), "{ok}");
    let (_, ok) = imap_login("127.0.0.20", &server, "john@example.com", "john123");
    assert!(ok.contains("a OK"), "{ok}");
    // POP3 counts apart from IMAP.
    let mut p = Client::connect("127.0.0.1", server.addr("pop3"));
    p.line();
    p.cmd("USER john@example.com\r\n", "+OK");
    assert!(p.cmd("PASS john123\r\n", "").starts_with("+OK"));
    let mut p2 = Client::connect("127.0.0.1", server.addr("pop3"));
    p2.line();
    p2.cmd("USER john@example.com\r\n", "+OK");
    let r = p2.cmd("PASS john123\r\n", "");
    assert!(r.starts_with("-ERR [IN-USE] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=1)"), "{r}");
    // A session that ends gives its place back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, r) = imap_login("127.0.0.1", &server, "john@example.com", "john123");
        if r.contains("a OK") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot came back: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn imap_command_sizes_are_bounded_before_and_after_login() {
    let setup = setup("");
    let server = setup.start();
    let imap = server.addr("imap");
    // Before login: a synchronizing literal over 4,096 bytes is refused ...
    let mut c = Client::connect("127.0.0.1", imap);
    c.line();
    let r = c.cmd("a LOGIN {5000}\r\n", "a ");
    assert_eq!(r, "a NO [TOOBIG] Literal too large.\r\n");
    // ... a non-synchronizing one ends the connection (RFC 7888 LITERAL-) ...
    c.send(&format!("b LOGIN {{5000+}}\r\n{}", "x".repeat(5000)));
    let (_, rest) = c.closed_after();
    assert!(
        rest.starts_with("b BAD [TOOBIG] Literal too large.\r\n* BYE [TOOBIG]"),
        "{rest}"
    );
    // ... and so does a command line that never ends.
    let mut c = Client::connect("127.0.0.1", imap);
    c.line();
    c.send(&"c".repeat(20 * 1024));
    let (_, rest) = c.closed_after();
    assert_eq!(rest, "* BYE [TOOBIG] Command too long.\r\n");
    // A literal within the limit is fine.
    let mut c = Client::connect("127.0.0.1", imap);
    c.line();
    let r = c.cmd("d LOGIN {16}\r\n", "+");
    assert!(r.starts_with("+"), "{r}");
    let r = c.cmd("john@example.com john123\r\n", "d ");
    assert!(r.contains("d OK"), "{r}");
    // After login: a search literal over 64 KiB is refused, an APPEND of 200 KB is not.
    let r = c.cmd("e SEARCH TEXT {70000}\r\n", "e ");
    assert_eq!(r, "e NO [TOOBIG] Literal too large.\r\n");
    let body = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(200_000));
    let r = c.cmd(&format!("f APPEND INBOX {{{}}}\r\n", body.len()), "+");
    assert!(r.starts_with("+"), "{r}");
    let r = c.cmd(&format!("{body}\r\n"), "f ");
    assert!(r.contains("f OK"), "{r}");
    // Deeply nested search keys are refused, not recursed into.
    c.cmd("g SELECT INBOX\r\n", "g ");
    for deep in [
        format!("h SEARCH {}ALL\r\n", "NOT ".repeat(100_000)),
        format!(
            "i SEARCH {}ALL{}\r\n",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ),
        format!("j SEARCH {}ALL\r\n", "OR ALL ".repeat(50_000)),
    ] {
        let tag = &deep[..1];
        let r = c.cmd(&deep, &format!("{tag} "));
        assert!(
            r.starts_with(&format!("{tag} BAD")),
            "{}",
            &r[..r.len().min(200)]
        );
    }
    let r = c.cmd("k NOOP\r\n", "k ");
    assert!(r.contains("k OK"), "still serving: {r}");
}

/// At SIGTERM every session waiting for its client's next command is told
/// why before the server goes, also after reads that ended normally (the
/// read waits are kept from read to read): IMAP `BYE`, POP3 `-ERR
/// [SYS/TEMP]`, SMTP `421`.
#[test]
fn waiting_sessions_are_told_when_the_server_stops() {
    let setup = setup("");
    let server = setup.start();
    let mut imap = Client::connect("127.0.0.40", server.addr("imap"));
    imap.line();
    let r = imap.cmd("a LOGIN john@example.com john123\r\n", "a ");
    assert!(r.contains("a OK"), "{r}");
    for tag in ["b", "c"] {
        let r = imap.cmd(&format!("{tag} NOOP\r\n"), &format!("{tag} "));
        assert!(r.contains(&format!("{tag} OK")), "{r}");
    }
    let mut pop3 = Client::connect("127.0.0.41", server.addr("pop3"));
    pop3.line();
    for _ in 0..2 {
        pop3.cmd("CAPA\r\n", ".");
    }
    let mut smtp = Client::connect("127.0.0.42", server.addr("smtp"));
    smtp.line();
    smtp.cmd("EHLO stop.example\r\n", "250 ");
    smtp.cmd("NOOP\r\n", "250");
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    assert_eq!(imap.line(), "* BYE [UNAVAILABLE] Server shutting down.\r\n");
    let bye = pop3.line();
    assert!(
        bye.starts_with("-ERR [SYS/TEMP] Server shutting down"),
        "{bye}"
    );
    let bye = smtp.line();
    assert!(
        bye.starts_with("421 ") && bye.contains("shutting down"),
        "{bye}"
    );
}

/// The deadlines, run side by side (each waits for a timer).
#[test]
fn slow_clients_are_cut_off() {
    let setup = setup("login_timeout = \"2s\"");
    let server = setup.start();
    let (imap_addr, pop3_addr, imaps_addr, smtp_addr) = (
        server.addr("imap"),
        server.addr("pop3"),
        server.addr("imaps"),
        server.addr("smtp"),
    );
    std::thread::scope(|s| {
        // IMAP and POP3: no login within login_timeout.
        let imap = s.spawn(move || {
            let mut c = Client::connect("127.0.0.30", imap_addr);
            c.line();
            c.closed_after()
        });
        let pop3 = s.spawn(move || {
            let mut c = Client::connect("127.0.0.31", pop3_addr);
            c.line();
            c.closed_after()
        });
        // TLS: a client that never finishes its handshake (10 s).
        let tls = s.spawn(move || {
            let mut c = Client::connect("127.0.0.32", imaps_addr);
            c.send("\x16\x03\x01");
            c.closed_after()
        });
        // SMTP DATA at one byte a second: cut when the 30 s grace is spent.
        let data = s.spawn(move || {
            let mut c = Client::connect("127.0.0.33", smtp_addr);
            c.line();
            c.cmd("EHLO slow.example\r\n", "250 ");
            c.cmd("MAIL FROM:<s@slow.example>\r\n", "250");
            c.cmd("RCPT TO:<john@example.com>\r\n", "250");
            c.cmd("DATA\r\n", "354");
            let start = Instant::now();
            c.r.get_ref()
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let stream = c.r.get_ref().try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                let mut stream = stream;
                for _ in 0..60 {
                    if stream.write_all(b"x").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            let reply = c.line();
            let took = start.elapsed();
            drop(c);
            let _ = writer.join();
            (took, reply)
        });
        let (t, rest) = imap.join().unwrap();
        assert!(
            t >= Duration::from_millis(1500) && t < Duration::from_secs(6),
            "{t:?}"
        );
        assert_eq!(rest, "* BYE Disconnected: no login in time.\r\n");
        let (t, rest) = pop3.join().unwrap();
        assert!(t < Duration::from_secs(6), "{t:?}");
        assert!(
            rest.starts_with("-ERR Disconnected: no login in time."),
            "{rest}"
        );
        let (t, _) = tls.join().unwrap();
        assert!(
            t >= Duration::from_secs(9) && t < Duration::from_secs(15),
            "TLS handshake deadline: {t:?}"
        );
        let (t, reply) = data.join().unwrap();
        assert_eq!(
            reply,
            "421 4.4.2 mail.example.com Error: timeout exceeded\r\n"
        );
        assert!(
            t >= Duration::from_secs(29) && t < Duration::from_secs(45),
            "DATA cut after the grace: {t:?}"
        );
    });
    assert!(
        metric(
            server.addr("http"),
            "pigeonpost_limited_total{limit=\"slow_client\"}"
        ) >= 3
    );
}

/// At most 10 TLS handshakes in progress per client address: the 11th
/// stalled one is closed at once, others' handshakes still go through.
#[test]
fn stalled_tls_handshakes_are_bounded_per_client() {
    let setup = setup("");
    let server = setup.start();
    let imaps = server.addr("imaps");
    let mut stalled: Vec<Client> = (0..10)
        .map(|_| {
            let mut c = Client::connect("127.0.0.40", imaps);
            c.send("\x16\x03\x01");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = Client::connect("127.0.0.40", imaps);
    extra
        .r
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let (t, _) = extra.closed_after();
    assert!(
        t < Duration::from_secs(2),
        "the 11th is refused at once: {t:?}"
    );
    // The first ten are still waiting for their handshake.
    stalled[0]
        .r
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 1];
    let r = std::io::Read::read(stalled[0].r.get_mut(), &mut b);
    assert!(r.is_err(), "still open, nothing sent: {r:?}");
    // Another address completes a real handshake meanwhile.
    let (ok, out, err) = crate::smtp::python(
        &format!(
            r#"
import socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection(("127.0.0.1", {}), source_address=("127.0.0.41", 0))
t = ctx.wrap_socket(s)
print(t.recv(100).decode().strip()[:4])
"#,
            imaps.port()
        ),
        &[],
    );
    assert!(ok && out.contains("* OK"), "{out}{err}");
}

/// Many logins at once from one address without a failure (a webmail, a
/// client opening all its folders) are never taken for guessing.
#[test]
fn concurrent_logins_without_failures_are_never_refused() {
    let setup = setup("mail_max_userip_connections = 0\nauth_failure_ban_threshold = 5");
    // A real (slow) hash, so that the logins overlap while being checked.
    let hash = std::process::Command::new("openssl")
        .args(["passwd", "-6", "john123"])
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap();
    setup.tree.write(
        "users",
        &format!("john@example.com:{{SHA512-CRYPT}}{}::::::\n", hash.trim()),
    );
    let server = setup.start();
    let imap = server.addr("imap");
    let replies: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..40)
            .map(|_| {
                s.spawn(move || {
                    let mut c = Client::connect("127.0.0.50", imap);
                    c.line();
                    c.cmd("a LOGIN john@example.com john123\r\n", "a ")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &replies {
        assert!(r.contains("a OK"), "{r}");
    }
}
