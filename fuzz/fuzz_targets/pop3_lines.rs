#![no_main]
//! The POP3 line reader (`pop3::proto`'s `next_line`: CRLF or bare LF,
//! lines over `MAX_LINE` refused whole): the same client bytes read at once
//! and read in pieces give the same answers and actions, the buffer stays
//! bounded, and nothing pipelined after STLS survives the handshake.
//! Input: flags, splitter seed, stream (see common/mod.rs; `\0\xFF n c`
//! makes long lines).
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::login::LoginPolicy;
use pigeonpost::auth::sasl::Mechanism;
use pigeonpost::pop3::proto::{
    Action, AuthOutcome, MaildropError, MessageEntry, Session, SessionConfig, MAX_LINE,
};

mod common;
use common::Event;

const MESSAGE: &[u8] = b"Subject: x\n\n.dot\nbody\r\n..two\n";

fn config(flags: u8) -> SessionConfig {
    SessionConfig {
        login: LoginPolicy {
            tls_available: flags & 1 == 1,
            tls_active: flags & 2 == 2,
            local_client: flags & 4 == 4,
            disable_plaintext_auth: flags & 8 == 8,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            // Dovecot's `ssl = required`: a combination, every bit is taken.
            auth_requires_tls: flags & 9 == 9,
        },
        max_errors: 20 + u32::from(flags >> 4) * 4,
    }
}

/// Runs the session over `reads`: the transcript up to the first STLS.
fn run(flags: u8, reads: &[&[u8]]) -> Vec<Event> {
    let mut s = Session::new(config(flags));
    let mut log = Vec::new();
    let mut reads = reads.iter();
    let mut compared = true;
    for _ in 0..1_000_000 {
        let action = s.next_action();
        if compared {
            common::out(&mut log, s.take_output());
        } else {
            let _ = s.take_output();
        }
        let name = match &action {
            Action::NeedInput => None,
            a => Some(format!("{a:?}")),
        };
        if let (true, Some(n)) = (compared, name) {
            log.push(Event::Action(n));
        }
        match action {
            Action::NeedInput => {
                // Every complete line was answered: what is left is at most
                // one partial line, cut at MAX_LINE (+1 for a CR still
                // waiting for its LF).
                assert!(s.buffered() <= MAX_LINE + 1, "buffer {}", s.buffered());
                let Some(r) = reads.next() else { return log };
                s.feed(r);
            }
            Action::StartTls => {
                compared = false;
                s.tls_started();
                assert_eq!(s.buffered(), 0, "bytes pipelined after STLS survive the handshake");
                assert!(matches!(s.next_action(), Action::NeedInput), "STLS injection");
            }
            Action::CheckPassword { user, .. } => s.auth_done(match user.len() % 3 {
                0 => AuthOutcome::Ok(user),
                1 => AuthOutcome::Fail,
                _ => AuthOutcome::TempFail,
            }),
            Action::CheckSasl(c) => s.auth_done(AuthOutcome::Ok(c.username().to_string())),
            Action::OpenMaildrop(user) => {
                let r = if user.len() % 4 == 3 {
                    Err(MaildropError::InUse)
                } else {
                    Ok((1..=4)
                        .map(|uid| MessageEntry { uid, size: 31, uidl: format!("u{uid}") })
                        .collect())
                };
                s.maildrop_opened(&user, r);
            }
            Action::Send { uid, mut encoder, .. } => {
                if uid == 3 {
                    s.send_failed(uid % 2 == 0);
                } else {
                    s.send_begin();
                    let mut body = Vec::new();
                    encoder.encode(MESSAGE, &mut body);
                    encoder.finish(&mut body);
                    if compared {
                        common::out(&mut log, body);
                    }
                }
            }
            Action::Update { .. } => s.update_done(true),
            Action::Close => return log,
        }
    }
    panic!("the session does not make progress");
}

fuzz_target!(|data: &[u8]| {
    let (flags, seed, stream) = common::parse(data);
    let whole = run(flags, &[&stream]);
    let pieces = run(flags, &common::chunks(&stream, seed));
    common::assert_same(&whole, &pieces);
});
