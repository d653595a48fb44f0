//! Transcript tests: client lines in, exact server lines out.

use super::*;

fn cfg() -> SessionConfig {
    SessionConfig {
        login: LoginPolicy {
            tls_available: true,
            tls_active: false,
            local_client: false,
            disable_plaintext_auth: true,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            auth_requires_tls: false,
        },
        max_errors: 10,
    }
}

fn entries() -> Vec<MessageEntry> {
    vec![
        MessageEntry {
            uid: 7,
            size: 120,
            uidl: "0000000700000001".into(),
        },
        MessageEntry {
            uid: 9,
            size: 200,
            uidl: "0000000900000001".into(),
        },
    ]
}

/// Drives a session the way the I/O layer would, with canned answers:
/// password "secret" is right, every message body is "Subject: s\n\nbody\n".
struct Driver {
    s: Session,
    out: String,
    /// (delete, seen) of the UPDATE, if there was one.
    update: Option<(Vec<u32>, Vec<u32>)>,
    closed: bool,
    in_use: bool,
}

impl Driver {
    fn new(cfg: SessionConfig) -> Self {
        let mut d = Driver {
            s: Session::new(cfg),
            out: String::new(),
            update: None,
            closed: false,
            in_use: false,
        };
        d.run();
        d
    }

    fn login(cfg: SessionConfig) -> Self {
        let mut d = Driver::new(cfg);
        d.send("USER u\r\nPASS secret\r\n");
        d.out.clear();
        d
    }

    fn run(&mut self) {
        loop {
            match self.s.next_action() {
                Action::NeedInput => break,
                Action::StartTls => self.s.tls_started(),
                Action::CheckPassword { user, password } => {
                    let ok = password == b"secret";
                    self.s.auth_done(if ok {
                        AuthOutcome::Ok(user)
                    } else {
                        AuthOutcome::Fail
                    });
                }
                Action::CheckSasl(creds) => {
                    let ok = creds.verify("{PLAIN}secret", crate::auth::scheme::Scheme::Plain);
                    self.s.auth_done(if ok {
                        AuthOutcome::Ok(creds.username().to_string())
                    } else {
                        AuthOutcome::Fail
                    });
                }
                Action::OpenMaildrop(user) => {
                    let r = if self.in_use {
                        Err(MaildropError::InUse)
                    } else {
                        Ok(entries())
                    };
                    self.s.maildrop_opened(&user, r);
                }
                Action::Send {
                    number,
                    uid,
                    mut encoder,
                } => {
                    if uid == 9 && self.in_use {
                        self.s.send_failed(false);
                        continue;
                    }
                    let _ = number;
                    let mut body = Vec::new();
                    encoder.encode(b"Subject: s\n\nbody\n.dot\n", &mut body);
                    encoder.finish(&mut body);
                    self.s.send_begin();
                    self.out
                        .push_str(&String::from_utf8(self.s.take_output()).unwrap());
                    self.out.push_str(&String::from_utf8(body).unwrap());
                }
                Action::Update { delete, seen } => {
                    self.update = Some((delete, seen));
                    self.s.update_done(true);
                }
                Action::Close => {
                    self.closed = true;
                    break;
                }
            }
        }
        self.out
            .push_str(&String::from_utf8(self.s.take_output()).unwrap());
    }

    fn send(&mut self, text: &str) -> String {
        let before = self.out.len();
        self.s.feed(text.as_bytes());
        self.run();
        self.out[before..].to_string()
    }
}

fn local() -> SessionConfig {
    let mut c = cfg();
    c.login.local_client = true;
    c
}

#[test]
fn greeting_and_capa_before_tls_hide_plaintext() {
    let mut d = Driver::new(cfg());
    assert_eq!(d.out, "+OK pigeonpost ready.\r\n");
    assert_eq!(
        d.send("CAPA\r\n"),
        "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
         AUTH-RESP-CODE\r\nSASL CRAM-MD5\r\nSTLS\r\n.\r\n"
    );
    assert_eq!(
        d.send("USER u\r\n"),
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"
    );
    assert_eq!(
        d.send("AUTH PLAIN AHUAc2VjcmV0\r\n"),
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"
    );
    // After STLS the plaintext mechanisms appear and STLS is gone.
    assert_eq!(d.send("STLS\r\n"), "+OK Begin TLS negotiation now.\r\n");
    let capa = d.send("CAPA\r\n");
    assert!(
        capa.contains("USER\r\nSASL PLAIN LOGIN CRAM-MD5\r\n"),
        "{capa}"
    );
    assert!(!capa.contains("STLS"), "{capa}");
    assert_eq!(d.send("STLS\r\n"), "-ERR TLS is already active.\r\n");
}

#[test]
fn input_pipelined_before_stls_is_discarded() {
    let mut d = Driver::new(cfg());
    // RFC 2595 §4 / CVE-2011-0411-style injection.
    let out = d.send("STLS\r\nUSER u\r\nPASS secret\r\n");
    assert_eq!(out, "+OK Begin TLS negotiation now.\r\n");
    assert!(d.s.user().is_none());
}

#[test]
fn user_pass_stat_list_uidl_top_retr_dele_quit() {
    let mut d = Driver::new(local());
    assert_eq!(d.send("USER u\r\n"), "+OK\r\n");
    assert_eq!(d.send("PASS secret\r\n"), "+OK Logged in.\r\n");
    assert_eq!(d.s.user(), Some("u"));
    assert_eq!(d.send("STAT\r\n"), "+OK 2 320\r\n");
    assert_eq!(
        d.send("LIST\r\n"),
        "+OK 2 messages (320 octets):\r\n1 120\r\n2 200\r\n.\r\n"
    );
    assert_eq!(d.send("LIST 2\r\n"), "+OK 2 200\r\n");
    assert_eq!(
        d.send("UIDL\r\n"),
        "+OK\r\n1 0000000700000001\r\n2 0000000900000001\r\n.\r\n"
    );
    assert_eq!(d.send("UIDL 1\r\n"), "+OK 1 0000000700000001\r\n");
    assert_eq!(d.send("TOP 1 0\r\n"), "+OK\r\nSubject: s\r\n\r\n.\r\n");
    assert_eq!(
        d.send("RETR 2\r\n"),
        "+OK 200 octets\r\nSubject: s\r\n\r\nbody\r\n..dot\r\n.\r\n"
    );
    assert_eq!(d.send("DELE 1\r\n"), "+OK Marked to be deleted.\r\n");
    assert_eq!(d.send("STAT\r\n"), "+OK 1 200\r\n");
    assert_eq!(
        d.send("LIST\r\n"),
        "+OK 1 messages (200 octets):\r\n2 200\r\n.\r\n"
    );
    assert_eq!(d.send("RETR 1\r\n"), "-ERR Message is deleted.\r\n");
    assert_eq!(d.send("NOOP\r\n"), "+OK\r\n");
    assert!(d.update.is_none());
    assert_eq!(d.send("QUIT\r\n"), "+OK Logging out.\r\n");
    // RETR'd and kept → seen; DELE'd → deleted; TOP alone marks nothing.
    assert_eq!(d.update, Some((vec![7], vec![9])));
    assert!(d.closed);
}

#[test]
fn rset_undoes_dele_and_quit_before_login_deletes_nothing() {
    let mut d = Driver::login(local());
    d.send("DELE 1\r\nDELE 2\r\n");
    assert_eq!(d.send("STAT\r\n"), "+OK 0 0\r\n");
    assert_eq!(d.send("RSET\r\n"), "+OK 2 messages (320 octets).\r\n");
    assert_eq!(d.send("STAT\r\n"), "+OK 2 320\r\n");
    d.send("QUIT\r\n");
    assert_eq!(d.update, Some((vec![], vec![])));

    let mut d = Driver::new(local());
    assert_eq!(d.send("QUIT\r\n"), "+OK Logging out.\r\n");
    assert!(d.update.is_none() && d.closed);
}

#[test]
fn pipelined_commands_answer_in_order() {
    let mut d = Driver::new(local());
    let out = d.send("USER u\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nUIDL 2\r\nQUIT\r\n");
    assert_eq!(
        out,
        "+OK\r\n+OK Logged in.\r\n+OK 2 320\r\n+OK 1 120\r\n+OK 2 0000000900000001\r\n+OK Logging out.\r\n"
    );
}

#[test]
fn bad_arguments_get_err_and_the_session_goes_on() {
    let mut d = Driver::login(local());
    assert_eq!(d.send("RETR\r\n"), "-ERR Message number required.\r\n");
    assert_eq!(d.send("RETR 0\r\n"), "-ERR There's no message 0.\r\n");
    assert_eq!(d.send("RETR 3\r\n"), "-ERR There's no message 3.\r\n");
    assert_eq!(d.send("DELE -1\r\n"), "-ERR Invalid message number: -1\r\n");
    assert_eq!(
        d.send("LIST 99999999999999999999999\r\n"),
        "-ERR Invalid message number: 99999999999999999999999\r\n"
    );
    assert_eq!(d.send("TOP 1\r\n"), "-ERR Number of lines required.\r\n");
    assert_eq!(d.send("STAT\r\n"), "+OK 2 320\r\n");
}

#[test]
fn too_many_errors_close_the_session() {
    let mut d = Driver::new(SessionConfig {
        max_errors: 5,
        ..local()
    });
    for _ in 0..4 {
        assert!(d
            .send("XYZZY\r\n")
            .starts_with("-ERR Unknown command: XYZZY"));
    }
    assert!(!d.closed);
    assert_eq!(
        d.send("\x01\x02garbage\r\n"),
        "-ERR Unknown command: GARBAGE\r\n-ERR Too many bad commands.\r\n"
    );
    assert!(d.closed);
}

#[test]
fn long_lines_are_refused_whole() {
    let mut d = Driver::new(local());
    let long = "X".repeat(MAX_LINE * 3);
    assert_eq!(d.send(&long), "");
    assert_eq!(
        d.send("tail\r\nCAPA\r\n").lines().next(),
        Some("-ERR Line too long.")
    );
    assert!(d.out.contains("+OK Capability list follows"));
}

#[test]
fn wrong_password_and_commands_before_login() {
    let mut d = Driver::new(local());
    assert_eq!(d.send("PASS x\r\n"), "-ERR No username given.\r\n");
    assert_eq!(d.send("STAT\r\n"), "-ERR Not logged in.\r\n");
    d.send("USER u\r\n");
    assert_eq!(
        d.send("PASS wrong\r\n"),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    // USER must be given again after a failure.
    assert_eq!(d.send("PASS secret\r\n"), "-ERR No username given.\r\n");
    assert_eq!(
        d.send("APOP u 0123\r\n"),
        "-ERR APOP is not supported; use USER/PASS or AUTH.\r\n"
    );
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let mut d = Driver::new(local());
    // "\0u\0secret"
    assert_eq!(d.send("AUTH PLAIN AHUAc2VjcmV0\r\n"), "+OK Logged in.\r\n");

    let mut d = Driver::new(local());
    assert_eq!(d.send("AUTH PLAIN\r\n"), "+ \r\n");
    assert_eq!(
        d.send("AHUAd3Jvbmc=\r\n"),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    assert_eq!(d.send("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(d.send("dQ==\r\n"), "+ UGFzc3dvcmQ6\r\n");
    assert_eq!(d.send("c2VjcmV0\r\n"), "+OK Logged in.\r\n");
}

#[test]
fn auth_cancel_unknown_mechanism_and_listing() {
    let mut d = Driver::new(local());
    assert_eq!(
        d.send("AUTH\r\n"),
        "+OK\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\n.\r\n"
    );
    assert_eq!(
        d.send("AUTH GSSAPI\r\n"),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
    d.send("AUTH PLAIN\r\n");
    assert_eq!(
        d.send("*\r\n"),
        "-ERR Authentication aborted by client.\r\n"
    );
    assert_eq!(
        d.send("AUTH PLAIN !!!\r\n"),
        "-ERR Invalid authentication data: invalid base64 data.\r\n"
    );
}

#[test]
fn in_use_maildrop_and_vanished_message() {
    let mut d = Driver::new(local());
    d.in_use = true;
    assert_eq!(
        d.send("USER u\r\nPASS secret\r\n"),
        "+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    );
    assert!(d.s.user().is_none());
    d.in_use = false;
    d.send("USER u\r\nPASS secret\r\n");
    d.in_use = true; // now makes uid 9 vanish
    assert_eq!(
        d.send("RETR 2\r\n"),
        "-ERR Message no longer exists (deleted by another session).\r\n"
    );
    assert_eq!(d.send("NOOP\r\n"), "+OK\r\n");
}

#[test]
fn shutdown_deletes_nothing() {
    let mut d = Driver::login(local());
    d.send("DELE 1\r\n");
    d.s.shutdown("Disconnected for inactivity.");
    d.run();
    assert!(d.out.ends_with("-ERR Disconnected for inactivity.\r\n"));
    assert!(d.closed && d.update.is_none());
}

#[test]
fn commands_are_case_insensitive_and_stls_after_login_refused() {
    let mut d = Driver::new(local());
    assert_eq!(
        d.send("user u\r\npass secret\r\n"),
        "+OK\r\n+OK Logged in.\r\n"
    );
    assert_eq!(d.send("stat\r\n"), "+OK 2 320\r\n");
    assert_eq!(
        d.send("STLS\r\n"),
        "-ERR STLS is only allowed before logging in.\r\n"
    );
    assert_eq!(d.send("USER x\r\n"), "-ERR Already logged in.\r\n");
}
