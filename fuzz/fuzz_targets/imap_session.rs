#![no_main]
//! Any byte stream from a client, in any split, with any answers from the
//! I/O layer: the IMAP session never panics, keeps its buffer bounded,
//! always makes progress, and hands over only commands its state allows.
use imap_codec::imap_types::command::CommandBody;
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::login::LoginPolicy;
use pigeonpost::auth::sasl::Mechanism;
use pigeonpost::imap::proto::{Action, AuthOutcome, Session, SessionConfig, State};

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let cfg = SessionConfig {
        hostname: "mail.example.com".into(),
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
        max_message: 4096,
        quota: true,
    };
    let mut s = Session::new(cfg);
    let mut rest = data.get(1..).unwrap_or_default();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 100_000, "session does not make progress");
        let _ = s.take_output();
        match s.next_action() {
            Action::NeedInput | Action::Idling => {
                if rest.is_empty() {
                    break;
                }
                let take = 1 + rest[0] as usize % 97;
                let (chunk, tail) = rest.split_at(take.min(rest.len()));
                s.feed(chunk);
                rest = tail;
            }
            Action::StartTls => s.tls_started(),
            Action::Compress => s.compress_started(),
            Action::MultiAppend { tag, .. } => {
                let state = s.state();
                assert!(
                    matches!(state, State::Authenticated | State::Selected { .. }),
                    "MULTIAPPEND before login"
                );
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(state);
            }
            Action::CheckAuth(_) => {
                let outcome = match rounds % 3 {
                    0 => AuthOutcome::Ok("john".into()),
                    1 => AuthOutcome::Fail,
                    _ => AuthOutcome::TempFail,
                };
                s.auth_done(outcome);
            }
            Action::Run { tag, command, .. } => {
                let state = s.state();
                assert!(
                    matches!(state, State::Authenticated | State::Selected { .. }),
                    "mailbox command before login: {command:?}"
                );
                let idle = matches!(*command, CommandBody::Idle);
                let next = match *command {
                    CommandBody::Select { .. } => State::Selected { read_only: false },
                    CommandBody::Examine { .. } => State::Selected { read_only: true },
                    CommandBody::Close | CommandBody::Unselect => State::Authenticated,
                    _ => state,
                };
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(next);
                if idle {
                    s.idle_started(tag);
                }
            }
            Action::List { tag, .. } => {
                let state = s.state();
                assert!(
                    matches!(state, State::Authenticated | State::Selected { .. }),
                    "LIST before login"
                );
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(state);
            }
            Action::CancelUpdate { tag, tags } => {
                let state = s.state();
                assert!(
                    matches!(state, State::Selected { .. }),
                    "CANCELUPDATE without a selected mailbox"
                );
                assert!(!tags.is_empty(), "CANCELUPDATE without tags");
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(state);
            }
            Action::Close => break,
        }
    }
});
