//! Transcript tests: a client script in, the server's replies out.

use base64::Engine;

use super::*;

fn cfg() -> SessionConfig {
    SessionConfig {
        hostname: "mx.example.com".into(),
        max_message_size: 1000,
        max_recipients: 3,
        login: LoginPolicy {
            tls_available: true,
            tls_active: false,
            local_client: false,
            disable_plaintext_auth: true,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login],
            auth_requires_tls: false,
        },
        submission: false,
        require_tls: false,
        check_sender: false,
        check_helo: false,
        max_errors: 20,
        check_data: false,
    }
}

/// The driver: runs `script` (fed in `chunks` pieces) through a session
/// with a toy policy, returning the output and the delivered messages.
struct Run {
    out: String,
    delivered: Vec<(Envelope<String>, Vec<u8>)>,
    tls_started: usize,
    closed: bool,
}

fn run_with(cfg: SessionConfig, chunks: &[&[u8]]) -> Run {
    let mut s: Session<String> = Session::new(cfg);
    let mut run = Run {
        out: String::new(),
        delivered: Vec::new(),
        tls_started: 0,
        closed: false,
    };
    let mut chunks = chunks.iter();
    loop {
        match s.next_action() {
            Action::NeedInput => {
                run.out.push_str(&String::from_utf8_lossy(&s.take_output()));
                match chunks.next() {
                    Some(c) => s.feed(c),
                    None => break,
                }
            }
            Action::StartTls => {
                run.out.push_str(&String::from_utf8_lossy(&s.take_output()));
                run.tls_started += 1;
                s.tls_started();
            }
            Action::CheckAuth(creds) => {
                let ok = matches!(&creds, Credentials::Plain { authcid, password, .. } if authcid == "user" && password == b"pass");
                s.auth_done(if ok {
                    AuthOutcome::Ok("user".into())
                } else {
                    AuthOutcome::Fail
                });
            }
            Action::CheckHelo(name) => {
                // A toy milter: HELO "bad" is refused; "deny" refuses the connection.
                if name == "deny" {
                    s.deny(Reply::new(
                        451,
                        "4.7.1",
                        "Service unavailable - try again later",
                    ));
                }
                if name == "bad" {
                    s.helo_done(Err(Reply::new(550, "5.7.1", "Command rejected")));
                } else {
                    s.helo_done(Ok(()));
                }
            }
            Action::CheckSender(addr) => {
                // A toy SPF: senders at spf-fail.example are refused.
                if addr.ends_with("@spf-fail.example") {
                    s.sender_done(Err(Reply::new(550, "5.7.23", "SPF validation failed")));
                } else {
                    s.sender_done(Ok(()));
                }
            }
            Action::CheckRecipient(addr) => {
                if addr.ends_with("@example.com") {
                    s.rcpt_done(Ok(format!("route:{addr}")));
                } else {
                    s.rcpt_done(Err(Reply::new(
                        554,
                        "5.7.1",
                        format!("<{addr}>: Relay access denied"),
                    )));
                }
            }
            Action::CheckData => {
                // A toy smtpd_data_restrictions: mail from nodata.example is refused.
                if s.sender().is_some_and(|a| a.ends_with("@nodata.example")) {
                    s.data_checked(Err(Reply::new(
                        554,
                        "5.7.1",
                        "<DATA>: Data command rejected: no",
                    )));
                } else {
                    s.data_checked(Ok(()));
                }
            }
            Action::Deliver(env, msg) => {
                run.delivered.push((env, msg));
                s.data_done(Reply::new(250, "2.0.0", "Ok: queued"));
            }
            Action::Close => {
                run.out.push_str(&String::from_utf8_lossy(&s.take_output()));
                run.closed = true;
                break;
            }
        }
    }
    run
}

fn run(script: &str) -> Run {
    run_with(cfg(), &[script.as_bytes()])
}

fn codes(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| l[..3].to_string())
        .collect()
}

#[test]
fn a_plain_transaction() {
    let r = run("EHLO client\r\nMAIL FROM:<a@b.org> SIZE=20\r\nRCPT TO:<john@example.com>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    assert_eq!(
        codes(&r.out),
        ["220", "250", "250", "250", "354", "250", "221"],
        "{}",
        r.out
    );
    assert!(
        r.out.contains("250-PIPELINING\r\n")
            && r.out.contains("250-SIZE 1000\r\n")
            && r.out.contains("250 CHUNKING\r\n")
    );
    assert!(r.out.contains("250-STARTTLS\r\n"));
    assert!(
        !r.out.contains("AUTH"),
        "no AUTH offered before TLS to a remote client"
    );
    assert!(r
        .out
        .contains("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data"));
    assert_eq!(r.delivered.len(), 1);
    let (env, msg) = &r.delivered[0];
    assert_eq!(env.mail_from, "a@b.org");
    assert_eq!(env.recipients[0].address, "john@example.com");
    assert_eq!(env.recipients[0].route, "route:john@example.com");
    assert_eq!(msg, b"Subject: hi\r\n\r\nbody\r\n");
    assert!(r.closed);
}

#[test]
fn pipelined_in_one_write_and_byte_by_byte_give_the_same_transcript() {
    let script = "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@elsewhere.org>\r\nRCPT TO:<c@example.com>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<z@z.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n";
    let whole = run(script);
    let bytes: Vec<&[u8]> = script.as_bytes().chunks(1).collect();
    let split = run_with(cfg(), &bytes);
    assert_eq!(whole.out, split.out);
    assert_eq!(
        codes(&whole.out),
        [
            "220", "250", "250", "250", "554", "250", "354", "250", "250", "250", "354", "250",
            "221"
        ]
    );
    assert_eq!(whole.delivered.len(), 2);
    assert_eq!(whole.delivered[0].0.recipients.len(), 2);
    assert_eq!(whole.delivered[0].0.mail_from, "", "null sender kept");
}

#[test]
fn sequence_errors() {
    let r = run("MAIL FROM:<a@b>\r\nEHLO c\r\nRCPT TO:<a@example.com>\r\nDATA\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\nBDAT 3 LAST\r\nabcRSET\r\nNOOP\r\nVRFY x\r\nEXPN x\r\nHELP\r\nFOO\r\nQUIT\r\n");
    assert_eq!(
        codes(&r.out),
        [
            "220", "503", "250", "503", "503", "250", "503", "554", "554", "250", "250", "252",
            "502", "214", "502", "221"
        ],
        "{}",
        r.out
    );
    assert!(r.out.contains("503 5.5.1 Error: send HELO/EHLO first"));
    assert!(r.out.contains("554 5.5.1 Error: no valid recipients"));
    assert!(r.delivered.is_empty());
}

#[test]
fn every_reply_has_an_enhanced_code_except_greeting_and_ehlo() {
    let r = run("EHLO c\r\nHELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@nowhere>\r\nRSET\r\nNOOP\r\nBAD\r\nQUIT\r\n");
    for line in r.out.lines().filter(|l| {
        !l.starts_with("220 mx")
            && !l.starts_with("250-")
            && !l.starts_with("250 mx")
            && !l.starts_with("250 CHUNKING")
    }) {
        let enhanced = line.get(4..9).unwrap_or("");
        assert!(
            enhanced.chars().nth(1) == Some('.') && "245".contains(&enhanced[..1]),
            "{line}"
        );
    }
}

#[test]
fn size_limits() {
    let r = run("EHLO c\r\nMAIL FROM:<a@b> SIZE=5000\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
    assert!(r.out.contains("552 5.3.4 Message size exceeds fixed limit"));
    let big = "x".repeat(600);
    let r = run(&format!("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n{big}\r\n{big}\r\n.\r\nNOOP\r\n"));
    assert!(
        r.out.contains("552 5.3.4 Error: message file too big"),
        "{}",
        r.out
    );
    assert!(
        r.out.ends_with("250 2.0.0 Ok\r\n"),
        "session goes on: {}",
        r.out
    );
    assert!(r.delivered.is_empty());
}

#[test]
fn recipient_limit_is_a_452() {
    let r = run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@example.com>\r\nRCPT TO:<2@example.com>\r\nRCPT TO:<3@example.com>\r\nRCPT TO:<4@example.com>\r\nDATA\r\nx\r\n.\r\n");
    assert!(r.out.contains("452 4.5.3 Error: too many recipients"));
    assert_eq!(r.delivered[0].0.recipients.len(), 3);
}

#[test]
fn bdat_chunks() {
    let r = run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@example.com>\r\nBDAT 5\r\nab\r\ncBDAT 0 LAST\r\nNOOP\r\n");
    assert!(r.out.contains("250 2.0.0 5 octets received"), "{}", r.out);
    assert_eq!(r.delivered[0].1, b"ab\r\nc");
    // A chunk over the size limit fails the whole message but keeps the stream in sync.
    let big = "y".repeat(1200);
    let r = run(&format!("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@example.com>\r\nBDAT 1200\r\n{big}BDAT 2 LAST\r\nzzNOOP\r\n"));
    assert_eq!(
        codes(&r.out),
        ["220", "250", "250", "250", "552", "552", "250"],
        "{}",
        r.out
    );
    assert!(r.delivered.is_empty());
}

#[test]
fn smuggled_end_of_data_does_not_split_a_message() {
    let r = run("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@example.com>\r\nDATA\r\nhello\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n");
    assert_eq!(r.delivered.len(), 1, "{}", r.out);
    let body = String::from_utf8_lossy(&r.delivered[0].1);
    assert!(body.contains("MAIL FROM:<evil@x>") && body.contains("smuggled"));
}

#[test]
fn long_lines_and_garbage() {
    let long = "A".repeat(1500);
    let r = run(&format!("EHLO c\r\n{long}\r\n\x00\x01\x02\r\nNOOP\r\n"));
    assert_eq!(
        codes(&r.out),
        ["220", "250", "500", "502", "250"],
        "{}",
        r.out
    );
    let endless = "B".repeat(20_000);
    let r = run_with(cfg(), &[endless.as_bytes(), b"\r\nNOOP\r\n"]);
    assert_eq!(codes(&r.out), ["220", "500", "250"], "{}", r.out);
}

#[test]
fn too_many_errors_closes_the_session() {
    let r = run(&"BAD\r\n".repeat(25));
    assert_eq!(r.out.matches("502 5.5.2").count(), 20);
    assert!(r
        .out
        .ends_with("421 4.7.0 mx.example.com Error: too many errors\r\n"));
    assert!(r.closed);
}

#[test]
fn starttls_discards_pipelined_commands_and_resets() {
    let r = run_with(
        cfg(),
        &[
            b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\n",
            b"MAIL FROM:<a@b>\r\nEHLO c\r\nSTARTTLS\r\nQUIT\r\n",
        ],
    );
    assert_eq!(r.tls_started, 1);
    assert!(r.out.contains("220 2.0.0 Ready to start TLS"));
    assert!(
        !r.out.contains("250 2.1.0"),
        "injected MAIL ignored, MAIL after TLS needs a new EHLO: {}",
        r.out
    );
    assert!(r.out.contains("503 5.5.1 Error: send HELO/EHLO first"));
    assert!(r.out.contains("554 5.5.1 Error: TLS already active"));
    let after_tls = r.out.split("Ready to start TLS").nth(1).unwrap();
    assert!(
        !after_tls.contains("STARTTLS\r\n") && after_tls.contains("AUTH PLAIN LOGIN"),
        "{after_tls}"
    );
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn auth_needs_tls_or_a_local_client() {
    let plain = b64(b"\0user\0pass");
    let r = run(&format!("EHLO c\r\nAUTH PLAIN {plain}\r\n"));
    assert!(
        r.out.contains("538 5.7.11 Encryption required"),
        "{}",
        r.out
    );
    let mut local = cfg();
    local.login.local_client = true;
    let r = run_with(
        local,
        &[format!("EHLO c\r\nAUTH PLAIN {plain}\r\nAUTH PLAIN {plain}\r\n").as_bytes()],
    );
    assert!(r.out.contains("250-AUTH PLAIN LOGIN"));
    assert!(r.out.contains("235 2.7.0 Authentication successful"));
    assert!(r.out.contains("503 5.5.1 Error: already authenticated"));
}

#[test]
fn auth_exchanges_after_tls() {
    let mut c = cfg();
    c.login.tls_active = true;
    let r = run_with(
        c.clone(),
        &[format!("EHLO c\r\nAUTH PLAIN\r\n{}\r\n", b64(b"\0user\0wrong")).as_bytes()],
    );
    assert!(
        r.out.contains("334 \r\n") && r.out.contains("535 5.7.8 Error: authentication failed"),
        "{}",
        r.out
    );
    let r = run_with(
        c.clone(),
        &[format!(
            "EHLO c\r\nAUTH LOGIN\r\n{}\r\n{}\r\n",
            b64(b"user"),
            b64(b"pass")
        )
        .as_bytes()],
    );
    assert!(
        r.out
            .contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0"),
        "{}",
        r.out
    );
    let r = run_with(
        c.clone(),
        &[b"EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\n"],
    );
    assert!(r.out.contains("501 5.7.0 Authentication cancelled"));
    assert!(
        r.out.contains("504 5.5.4 Unrecognized authentication type"),
        "CRAM-MD5 not in auth_mechanisms"
    );
    assert!(
        r.out.contains("501 5.5.2 Error: invalid base64 data"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("STARTTLS"), "no STARTTLS offered over TLS");
}

#[test]
fn submission_requires_tls_then_auth() {
    let mut c = cfg();
    c.submission = true;
    c.require_tls = true;
    c.login.local_client = true;
    let r = run_with(
        c.clone(),
        &[
            format!(
                "EHLO c\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN {}\r\nSTARTTLS\r\n",
                b64(b"\0user\0pass")
            )
            .as_bytes(),
            b"EHLO c\r\nMAIL FROM:<a@b>\r\n",
        ],
    );
    assert!(
        !r.out
            .split("Ready to start TLS")
            .next()
            .unwrap()
            .contains("AUTH"),
        "no AUTH before TLS on submission, even locally"
    );
    assert_eq!(
        r.out
            .matches("530 5.7.0 Must issue a STARTTLS command first")
            .count(),
        2,
        "{}",
        r.out
    );
    assert!(
        r.out.contains("530 5.7.0 Authentication required"),
        "{}",
        r.out
    );
    c.login.tls_active = true;
    let r = run_with(
        c,
        &[format!(
            "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@example.com>\r\n",
            b64(b"\0user\0pass")
        )
        .as_bytes()],
    );
    assert!(
        r.out
            .ends_with("235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
        "{}",
        r.out
    );
}

#[test]
fn smtputf8_and_dsn_parameters() {
    let r = run("EHLO c\r\nMAIL FROM:<jörg@b.de>\r\nMAIL FROM:<jörg@b.de> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=abc\r\nRCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.com\r\nDATA\r\nx\r\n.\r\n");
    assert!(r.out.contains("553 5.6.7"));
    let env = &r.delivered[0].0;
    assert!(env.smtputf8);
    assert_eq!(env.body, BodyType::EightBitMime);
    assert_eq!(env.ret, Some(DsnRet::Headers));
    assert_eq!(env.envid.as_deref(), Some("abc"));
    assert_eq!(
        env.recipients[0].notify,
        smtp_proto::RCPT_NOTIFY_SUCCESS | smtp_proto::RCPT_NOTIFY_FAILURE
    );
    assert!(env.recipients[0]
        .orcpt
        .as_deref()
        .unwrap()
        .contains("a@example.com"));
}

#[test]
fn senders_are_checked_only_when_asked_and_a_refusal_ends_the_transaction() {
    let script = "EHLO c\r\nMAIL FROM:<x@spf-fail.example>\r\nRCPT TO:<john@example.com>\r\nMAIL FROM:<x@good.example>\r\nRCPT TO:<john@example.com>\r\nQUIT\r\n";
    let mut c = cfg();
    c.check_sender = true;
    let r = run_with(c, &[script.as_bytes()]);
    assert_eq!(
        codes(&r.out),
        ["220", "250", "550", "503", "250", "250", "221"],
        "{}",
        r.out
    );
    assert!(
        r.out.contains("550 5.7.23 SPF validation failed"),
        "{}",
        r.out
    );
    // Without check_sender the same sender is accepted at once.
    let r = run(script);
    assert_eq!(codes(&r.out)[2], "250", "{}", r.out);
    // An authenticated client is asked about too (the I/O layer applies
    // the message rate limit to it, and skips SPF).
    let mut c = cfg();
    c.check_sender = true;
    c.login.tls_active = true;
    let auth = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<x@spf-fail.example>\r\nQUIT\r\n",
        base64::engine::general_purpose::STANDARD.encode("\0user\0pass")
    );
    let r = run_with(c, &[auth.as_bytes()]);
    assert_eq!(
        codes(&r.out),
        ["220", "250", "235", "550", "221"],
        "{}",
        r.out
    );
}

#[test]
fn data_restrictions_answer_before_354() {
    let cfg = SessionConfig {
        check_data: true,
        ..cfg()
    };
    let r = run_with(
        cfg.clone(),
        &[b"EHLO c\r\nMAIL FROM:<a@nodata.example>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nRSET\r\n"],
    );
    assert!(
        r.out
            .contains("554 5.7.1 <DATA>: Data command rejected: no\r\n"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("354"), "{}", r.out);
    assert!(r.out.ends_with("250 2.0.0 Ok\r\n"), "{}", r.out);
    let r = run_with(
        cfg,
        &[b"EHLO c\r\nMAIL FROM:<a@ok.example>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\n"],
    );
    assert!(r.out.contains("354 End data"), "{}", r.out);
    assert_eq!(r.delivered.len(), 1);
}

#[test]
fn pipelining_without_ehlo_is_noticed() {
    // HELO then commands sent without waiting: not allowed (RFC 2920 §3.1).
    let mut s: Session<String> = Session::new(cfg());
    s.feed(b"HELO c\r\nMAIL FROM:<a@b.example>\r\n");
    while !matches!(s.next_action(), Action::NeedInput) {
        s.sender_done(Ok(()));
    }
    assert!(s.improper_pipelining());
    // EHLO offers PIPELINING: the same burst is fine.
    let mut s: Session<String> = Session::new(cfg());
    s.feed(b"EHLO c\r\n");
    assert!(matches!(s.next_action(), Action::NeedInput));
    s.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\n");
    loop {
        match s.next_action() {
            Action::NeedInput => break,
            Action::CheckSender(_) => s.sender_done(Ok(())),
            Action::CheckRecipient(_) => s.rcpt_done(Ok(String::new())),
            other => panic!("{other:?}"),
        }
    }
    assert!(!s.improper_pipelining());
}

#[test]
fn helo_checked_before_its_reply_and_a_denied_connection() {
    let mut c = cfg();
    c.check_helo = true;
    let r = run_with(
        c.clone(),
        &[b"HELO bad\r\nHELO good\r\nMAIL FROM:<a@b>\r\nQUIT\r\n"],
    );
    assert_eq!(codes(&r.out), ["220", "550", "250", "250", "221"]);
    assert!(r.out.contains("550 5.7.1 Command rejected"));
    // A refused connection (milter at connect): everything but QUIT,
    // NOOP and RSET gets the refusal.
    let r = run_with(
        c,
        &[b"HELO deny\r\nNOOP\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@example.com>\r\nQUIT\r\n"],
    );
    assert_eq!(codes(&r.out), ["220", "250", "250", "451", "451", "221"]);
}

/// Postfix `smtpd_tls_security_level = encrypt` on port 25: no mail before
/// STARTTLS, but no AUTH needed after it (unlike submission).
#[test]
fn tls_security_level_encrypt_needs_starttls_before_mail() {
    let mut c = cfg();
    c.require_tls = true;
    let r = run_with(
        c.clone(),
        &[
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@example.com>\r\nSTARTTLS\r\n",
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@example.com>\r\n",
        ],
    );
    let (before, after) = r.out.split_once("Ready to start TLS").unwrap();
    assert_eq!(
        before
            .matches("530 5.7.0 Must issue a STARTTLS command first")
            .count(),
        2,
        "{}",
        r.out
    );
    assert!(
        after.ends_with("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
        "{}",
        r.out
    );
}

/// Postfix `smtpd_tls_auth_only = yes`: no AUTH before TLS, not even for a
/// client on this host with `disable_plaintext_auth = no`.
#[test]
fn tls_auth_only_hides_auth_until_tls() {
    let mut c = cfg();
    c.login.local_client = true;
    c.login.disable_plaintext_auth = false;
    c.login.auth_requires_tls = true;
    let r = run_with(
        c,
        &[
            format!(
                "EHLO c\r\nAUTH PLAIN {}\r\nSTARTTLS\r\n",
                b64(b"\0user\0pass")
            )
            .as_bytes(),
            format!("EHLO c\r\nAUTH PLAIN {}\r\n", b64(b"\0user\0pass")).as_bytes(),
        ],
    );
    let (before, after) = r.out.split_once("Ready to start TLS").unwrap();
    assert!(!before.contains("250-AUTH"), "{}", r.out);
    assert!(
        before.contains("538 5.7.11 Encryption required"),
        "{}",
        r.out
    );
    assert!(after.contains("250-AUTH PLAIN LOGIN"), "{}", r.out);
    assert!(
        after.contains("235 2.7.0 Authentication successful"),
        "{}",
        r.out
    );
}
