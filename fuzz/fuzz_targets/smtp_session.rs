#![no_main]
//! Any byte stream from a client, in any split: the SMTP session never
//! panics, never grows its buffer past the line limits, and always answers.
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::login::LoginPolicy;
use pigeonpost::auth::sasl::Mechanism;
use pigeonpost::smtp::proto::{Action, AuthOutcome, Reply, Session, SessionConfig, MAX_AUTH_LINE};

fuzz_target!(|data: &[u8]| {
    let cfg = SessionConfig {
        hostname: "mx.example.com".into(),
        max_message_size: 4096,
        max_recipients: 5,
        login: LoginPolicy {
            tls_available: true,
            tls_active: data.first().is_some_and(|b| b & 1 == 1),
            local_client: data.first().is_some_and(|b| b & 2 == 2),
            mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            disable_plaintext_auth: true,
            auth_requires_tls: data.first().is_some_and(|b| b & 32 == 32),
        },
        submission: data.first().is_some_and(|b| b & 4 == 4),
        // Submission, or smtpd_tls_security_level = encrypt.
        require_tls: data.first().is_some_and(|b| b & 4 == 4 || b & 16 == 16),
        check_sender: data.first().is_some_and(|b| b & 8 == 8),
        check_helo: data.first().is_some_and(|b| b & 16 == 16),
        max_errors: 20,
        check_data: data.first().is_some_and(|b| b & 16 == 16),
    };
    let mut s: Session<()> = Session::new(cfg);
    // Feed in chunks whose sizes come from the data itself.
    let mut rest = data;
    let mut rounds = 0;
    loop {
        rounds += 1;
        if rounds > 100_000 {
            panic!("session does not make progress");
        }
        match s.next_action() {
            Action::NeedInput => {
                let _ = s.take_output();
                if rest.is_empty() {
                    break;
                }
                let n = (rest[0] as usize % 64 + 1).min(rest.len());
                s.feed(&rest[..n]);
                rest = &rest[n..];
                assert!(s.buffered() <= MAX_AUTH_LINE + 64 + 4096 * 2, "buffer bounded");
            }
            Action::StartTls => s.tls_started(),
            Action::CheckAuth(_) => s.auth_done(AuthOutcome::Fail),
            Action::CheckHelo(h) => {
                if h.len() % 2 == 0 {
                    s.helo_done(Ok(()));
                } else {
                    s.deny(Reply::new(550, "5.7.1", "Command rejected"));
                    s.helo_done(Err(Reply::new(550, "5.7.1", "no")));
                }
            }
            Action::CheckSender(a) => {
                if a.len() % 3 == 0 {
                    s.sender_done(Err(Reply::new(550, "5.7.23", "no")));
                } else {
                    s.sender_done(Ok(()));
                }
            }
            Action::CheckData => s.data_checked(if rest.len() % 2 == 0 {
                Ok(())
            } else {
                Err(Reply::new(554, "5.7.1", "no"))
            }),
            Action::CheckRecipient(a) => {
                if a.len() % 2 == 0 {
                    s.rcpt_done(Ok(()));
                } else {
                    s.rcpt_done(Err(Reply::new(550, "5.1.1", "no")));
                }
            }
            Action::Deliver(env, _msg) => {
                assert!(!env.recipients.is_empty());
                s.data_done(Reply::new(250, "2.0.0", "ok"));
            }
            Action::Close => break,
        }
    }
});
