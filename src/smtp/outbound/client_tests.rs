//! Transcript tests: the peer's replies in, our commands out.

use super::*;

fn cfg() -> ClientConfig {
    ClientConfig {
        helo: "mail.example.com".into(),
        tls: TlsPolicy::May,
        try_tls: true,
        credentials: None,
    }
}

fn txn(rcpts: &[&str]) -> Transaction {
    Transaction {
        sender: "alice@example.com".into(),
        rcpts: rcpts
            .iter()
            .map(|a| Rcpt {
                address: a.to_string(),
                notify: 0,
                orcpt: None,
            })
            .collect(),
        size: 1234,
        eight_bit: false,
        smtputf8: false,
        ret_full: None,
        envid: None,
    }
}

/// Feeds `reply` and returns what the client wrote in response.
fn step(c: &mut Client, reply: &str) -> String {
    c.feed(reply.as_bytes());
    String::from_utf8(c.take_output()).unwrap()
}

const EHLO_FULL: &str = "250-mx.remote.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n";

#[test]
fn pipelined_delivery_with_one_recipient_refused() {
    let mut c = Client::new(cfg(), txn(&["bob@remote.example", "nobody@remote.example"]));
    assert_eq!(
        step(&mut c, "220 mx.remote.example ESMTP\r\n"),
        "EHLO mail.example.com\r\n"
    );
    // No STARTTLS offered, policy may: go on in plaintext, the whole
    // envelope in one write.
    assert_eq!(
        step(&mut c, EHLO_FULL),
        "MAIL FROM:<alice@example.com> SIZE=1234\r\nRCPT TO:<bob@remote.example>\r\nRCPT TO:<nobody@remote.example>\r\nDATA\r\n"
    );
    assert_eq!(step(&mut c, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <nobody@remote.example>: Recipient address rejected\r\n354 go ahead\r\n"), "");
    assert_eq!(c.next_step(), Step::SendMessage);
    c.message_sent();
    assert_eq!(step(&mut c, "250 2.0.0 Ok: queued as 1234\r\n"), "QUIT\r\n");
    step(&mut c, "221 2.0.0 Bye\r\n");
    assert_eq!(c.next_step(), Step::Done);
    let out = c.outcome().unwrap();
    assert_eq!(
        out[0],
        RcptStatus::Delivered(
            "250 2.0.0 Ok: queued as 1234 (in reply to end of DATA command)".into()
        )
    );
    assert_eq!(
        out[1],
        RcptStatus::Failed(
            "550 5.1.1 <nobody@remote.example>: Recipient address rejected (in reply to RCPT TO command)".into()
        )
    );
}

#[test]
fn without_pipelining_commands_go_one_at_a_time() {
    let mut c = Client::new(cfg(), txn(&["a@r.example", "b@r.example"]));
    step(&mut c, "220 r.example\r\n");
    assert_eq!(
        step(&mut c, "250-r.example\r\n250 8BITMIME\r\n"),
        "MAIL FROM:<alice@example.com>\r\n"
    );
    assert_eq!(step(&mut c, "250 ok\r\n"), "RCPT TO:<a@r.example>\r\n");
    assert_eq!(
        step(&mut c, "451 4.3.0 try later\r\n"),
        "RCPT TO:<b@r.example>\r\n"
    );
    assert_eq!(step(&mut c, "250 ok\r\n"), "DATA\r\n");
    step(&mut c, "354 go\r\n");
    assert_eq!(c.next_step(), Step::SendMessage);
    c.message_sent();
    step(&mut c, "250 ok\r\n");
    let out = c.outcome().unwrap();
    assert!(matches!(&out[0], RcptStatus::Deferred(t) if t.starts_with("451 4.3.0 try later")));
    assert!(matches!(&out[1], RcptStatus::Delivered(_)));
}

#[test]
fn no_data_when_every_recipient_is_refused() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    step(&mut c, "220 r.example\r\n");
    step(&mut c, "250 r.example\r\n");
    assert_eq!(step(&mut c, "250 ok\r\n"), "RCPT TO:<a@r.example>\r\n");
    assert_eq!(step(&mut c, "550 no such user\r\n"), "QUIT\r\n");
    let out = c.outcome().unwrap();
    assert!(matches!(&out[0], RcptStatus::Failed(t) if t.starts_with("550 no such user")));
}

#[test]
fn pipelined_dat_accepted_without_recipients_gets_an_empty_message() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    step(&mut c, "220 r.example\r\n");
    step(&mut c, "250-r.example\r\n250 PIPELINING\r\n");
    assert_eq!(step(&mut c, "250 ok\r\n550 no\r\n354 go\r\n"), ".\r\n");
    assert_eq!(step(&mut c, "554 no valid recipients\r\n"), "QUIT\r\n");
    assert!(matches!(&c.outcome().unwrap()[0], RcptStatus::Failed(_)));
}

#[test]
fn mail_from_refusal_applies_to_every_recipient() {
    let mut c = Client::new(cfg(), txn(&["a@r.example", "b@r.example"]));
    step(&mut c, "220 r.example\r\n");
    step(&mut c, "250-r.example\r\n250 PIPELINING\r\n");
    assert_eq!(
        step(
            &mut c,
            "452 4.3.1 Insufficient system storage\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
        ),
        "QUIT\r\n"
    );
    let out = c.outcome().unwrap();
    for s in out {
        assert!(
            matches!(&s, RcptStatus::Deferred(t) if t.contains("452 4.3.1 Insufficient system storage (in reply to MAIL FROM command)")),
            "{s:?}"
        );
    }
}

#[test]
fn end_of_data_failures_are_per_transaction() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    step(&mut c, "220 r.example\r\n");
    step(&mut c, EHLO_FULL);
    step(&mut c, "250 ok\r\n250 ok\r\n354 go\r\n");
    c.message_sent();
    step(&mut c, "554 5.7.1 spam\r\n");
    assert!(
        matches!(&c.outcome().unwrap()[0], RcptStatus::Failed(t) if t == "554 5.7.1 spam (in reply to end of DATA command)")
    );
}

#[test]
fn greeting_or_ehlo_with_our_own_name_is_a_loop() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    assert_eq!(
        step(&mut c, "220 mail.example.com ESMTP pigeonpost\r\n"),
        "QUIT\r\n"
    );
    let e = c.outcome().unwrap_err();
    assert!(e.permanent);
    assert_eq!(e.text, "mail for mail.example.com loops back to myself");

    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    step(&mut c, "220 proxy.example ESMTP\r\n");
    assert_eq!(
        step(&mut c, "250-MAIL.EXAMPLE.COM\r\n250 PIPELINING\r\n"),
        "QUIT\r\n"
    );
    assert!(c.outcome().unwrap_err().permanent);
}

#[test]
fn starttls_when_offered_then_ehlo_again() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    step(&mut c, "220 r.example\r\n");
    assert_eq!(
        step(
            &mut c,
            "250-r.example\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
        ),
        "STARTTLS\r\n"
    );
    step(&mut c, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(c.next_step(), Step::StartTls);
    c.tls_started();
    assert!(c.tls_active());
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "EHLO mail.example.com\r\n"
    );
    // After TLS, STARTTLS is not offered again; the envelope follows.
    assert!(step(&mut c, "250-r.example\r\n250 PIPELINING\r\n").starts_with("MAIL FROM:"));
}

#[test]
fn required_tls_not_offered_defers() {
    let mut c = Client::new(
        ClientConfig {
            tls: TlsPolicy::Encrypt,
            ..cfg()
        },
        txn(&["a@r.example"]),
    );
    step(&mut c, "220 r.example\r\n");
    assert_eq!(step(&mut c, "250 r.example\r\n"), "QUIT\r\n");
    let e = c.outcome().unwrap_err();
    assert!(!e.permanent);
    assert_eq!(e.text, "TLS is required, but was not offered by host");
}

#[test]
fn opportunistic_tls_retry_in_plaintext_skips_starttls() {
    let mut c = Client::new(
        ClientConfig {
            try_tls: false,
            ..cfg()
        },
        txn(&["a@r.example"]),
    );
    step(&mut c, "220 r.example\r\n");
    assert!(step(&mut c, "250-r.example\r\n250 STARTTLS\r\n").starts_with("MAIL FROM:"));
}

#[test]
fn auth_plain_and_login_with_smarthost_credentials() {
    let creds = ClientConfig {
        credentials: Some(("user".into(), "secret".into())),
        tls: TlsPolicy::None,
        ..cfg()
    };
    let mut c = Client::new(creds.clone(), txn(&["a@r.example"]));
    step(&mut c, "220 relay.example\r\n");
    assert_eq!(
        step(&mut c, "250-relay.example\r\n250 AUTH LOGIN PLAIN\r\n"),
        "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"
    );
    assert!(step(&mut c, "235 2.7.0 ok\r\n").starts_with("MAIL FROM:"));

    let mut c = Client::new(creds.clone(), txn(&["a@r.example"]));
    step(&mut c, "220 relay.example\r\n");
    assert_eq!(
        step(&mut c, "250-relay.example\r\n250 AUTH LOGIN\r\n"),
        "AUTH LOGIN\r\n"
    );
    assert_eq!(step(&mut c, "334 VXNlcm5hbWU6\r\n"), "dXNlcg==\r\n");
    assert_eq!(step(&mut c, "334 UGFzc3dvcmQ6\r\n"), "c2VjcmV0\r\n");
    assert!(step(&mut c, "235 ok\r\n").starts_with("MAIL FROM:"));

    let mut c = Client::new(creds, txn(&["a@r.example"]));
    step(&mut c, "220 relay.example\r\n");
    step(&mut c, "250-relay.example\r\n250 AUTH PLAIN\r\n");
    assert_eq!(
        step(&mut c, "535 5.7.8 Error: authentication failed\r\n"),
        "QUIT\r\n"
    );
    let e = c.outcome().unwrap_err();
    assert!(e.text.starts_with("SASL authentication failed; 535 5.7.8"));
    assert!(!e.permanent);
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    step(&mut c, "220 old.example\r\n");
    assert_eq!(
        step(&mut c, "502 command not implemented\r\n"),
        "HELO mail.example.com\r\n"
    );
    assert_eq!(
        step(&mut c, "250 old.example\r\n"),
        "MAIL FROM:<alice@example.com>\r\n"
    );
}

#[test]
fn too_big_for_the_peer_fails_without_sending() {
    let mut t = txn(&["a@r.example"]);
    t.size = 20_000_000;
    let mut c = Client::new(cfg(), t);
    step(&mut c, "220 r.example\r\n");
    assert_eq!(step(&mut c, EHLO_FULL), "QUIT\r\n");
    assert!(
        matches!(&c.outcome().unwrap()[0], RcptStatus::Failed(t) if t.starts_with("552 5.3.4 message size 20000000 exceeds size limit 10240000"))
    );
}

#[test]
fn dsn_and_8bit_parameters_only_when_offered() {
    let mut t = txn(&["a@r.example"]);
    t.eight_bit = true;
    t.ret_full = Some(false);
    t.envid = Some("id 1".into());
    t.rcpts[0].notify = RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY;
    t.rcpts[0].orcpt = Some("rfc822;a@r.example".into());
    let mut c = Client::new(cfg(), t.clone());
    step(&mut c, "220 r.example\r\n");
    assert_eq!(
        step(&mut c, EHLO_FULL),
        "MAIL FROM:<alice@example.com> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=id+201\r\nRCPT TO:<a@r.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;a@r.example\r\nDATA\r\n"
    );
    let mut c = Client::new(cfg(), t);
    step(&mut c, "220 r.example\r\n");
    assert_eq!(
        step(&mut c, "250 r.example\r\n"),
        "MAIL FROM:<alice@example.com>\r\n"
    );
}

#[test]
fn lost_connection_defers_undecided_recipients() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    c.abort("lost connection with r.example while receiving the initial server greeting");
    let e = c.outcome().unwrap_err();
    assert!(!e.permanent);

    let mut c = Client::new(cfg(), txn(&["a@r.example", "b@r.example"]));
    step(&mut c, "220 r.example\r\n");
    step(&mut c, EHLO_FULL);
    step(&mut c, "250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n");
    c.message_sent();
    assert_eq!(
        c.context(),
        "sending end of data -- message may be sent more than once"
    );
    c.abort("lost connection");
    let out = c.outcome().unwrap();
    assert_eq!(out[0], RcptStatus::Deferred("lost connection".into()));
    assert!(matches!(out[1], RcptStatus::Failed(_)));
}

#[test]
fn replies_split_across_reads_and_malformed_replies() {
    let mut c = Client::new(cfg(), txn(&["a@r.example"]));
    assert_eq!(step(&mut c, "22"), "");
    assert_eq!(step(&mut c, "0 r.example\r"), "");
    assert_eq!(step(&mut c, "\n"), "EHLO mail.example.com\r\n");
    assert_eq!(step(&mut c, "garbage\r\n"), "QUIT\r\n");
    assert!(c.outcome().unwrap_err().text.starts_with("malformed reply"));
}
