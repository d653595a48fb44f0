#![no_main]
//! Any byte stream from a client, in any split, with any answers from the
//! I/O layer: the POP3 session never panics, keeps its input buffer
//! bounded, always makes progress, and only asks to delete listed messages.
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::login::LoginPolicy;
use pigeonpost::auth::sasl::Mechanism;
use pigeonpost::pop3::proto::{
    Action, AuthOutcome, MaildropError, MessageEntry, Session, SessionConfig, MAX_LINE,
};

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let cfg = SessionConfig {
        login: LoginPolicy {
            tls_available: flags & 1 == 1,
            tls_active: flags & 2 == 2,
            local_client: flags & 4 == 4,
            disable_plaintext_auth: flags & 8 == 8,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            // Dovecot's `ssl = required`: a combination, every bit is taken.
            auth_requires_tls: flags & 9 == 9,
        },
        max_errors: 20,
    };
    let listed: Vec<u32> = (1..=5).map(|i| i * 3).collect();
    let mut s = Session::new(cfg);
    let mut rest = data;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 100_000, "session does not make progress");
        match s.next_action() {
            Action::NeedInput => {
                let _ = s.take_output();
                if rest.is_empty() {
                    break;
                }
                let n = (rest[0] as usize % 64 + 1).min(rest.len());
                s.feed(&rest[..n]);
                rest = &rest[n..];
                assert!(s.buffered() <= MAX_LINE + 64 * 2, "buffer bounded");
            }
            Action::StartTls => s.tls_started(),
            Action::CheckPassword { user, .. } => s.auth_done(if user.len() % 3 == 0 {
                AuthOutcome::Ok(user)
            } else if user.len() % 3 == 1 {
                AuthOutcome::Fail
            } else {
                AuthOutcome::TempFail
            }),
            Action::CheckSasl(c) => s.auth_done(AuthOutcome::Ok(c.username().to_string())),
            Action::OpenMaildrop(user) => {
                let r = if user.len() % 4 == 3 {
                    Err(MaildropError::InUse)
                } else {
                    Ok(listed
                        .iter()
                        .map(|&uid| MessageEntry {
                            uid,
                            size: u64::from(uid) * 100,
                            uidl: format!("{uid:08x}"),
                        })
                        .collect())
                };
                s.maildrop_opened(&user, r);
            }
            Action::Send { uid, mut encoder, .. } => {
                assert!(listed.contains(&uid));
                if uid == 9 {
                    s.send_failed(false);
                } else {
                    s.send_begin();
                    let mut out = Vec::new();
                    encoder.encode(rest, &mut out);
                    encoder.finish(&mut out);
                    assert!(out.ends_with(b"\r\n.\r\n") || out == b".\r\n");
                }
            }
            Action::Update { delete, seen } => {
                assert!(delete.iter().chain(&seen).all(|u| listed.contains(u)));
                assert!(delete.iter().all(|u| !seen.contains(u)));
                s.update_done(true);
            }
            Action::Close => break,
        }
    }
});
