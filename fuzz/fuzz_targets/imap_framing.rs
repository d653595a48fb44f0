#![no_main]
//! IMAP literal framing: imap-codec's `Fragmentizer` as `imap::proto` sets
//! it up, and the session's handling of literal announcements around it
//! (`+ OK` for synchronising literals, `NO [TOOBIG]` / `BAD [TOOBIG]` past
//! the size limit, LITERAL+, SASL lines and IDLE's DONE).
//!
//! - Fragments tile the input: every line and literal is the next piece of
//!   the bytes, a literal is exactly as long as announced, a message is at
//!   most the limit (and then a prefix of what was sent), and no more bytes
//!   are used than were given.
//! - The same bytes read at once and read in pieces give the same
//!   fragments, and the session the same responses and actions (as long as
//!   the client waits for `+` after announcing a synchronising literal, as
//!   RFC 3501 §7.5 has it), up to STARTTLS, after which nothing pipelined
//!   survives.
//!
//! Input: flags, splitter seed, stream (see common/mod.rs; `\0\xFF n c`
//! makes long literals).
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer};
use imap_codec::imap_types::command::CommandBody;
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::login::LoginPolicy;
use pigeonpost::auth::sasl::Mechanism;
use pigeonpost::imap::proto::{Action, AuthOutcome, Session, SessionConfig, State};

mod common;
use common::Event;

fn max_message(flags: u8) -> u32 {
    [64, 300, 4096, 70_000][(flags >> 4) as usize & 3]
}

/// The fragments of `reads`: (range, literal announced, complete message or
/// None, limit exceeded) for each, checking that they tile `input`.
type Fragment = (std::ops::Range<usize>, Option<u32>, Option<Vec<u8>>, bool);

fn fragments(max: u32, input: &[u8], reads: &[&[u8]]) -> Vec<Fragment> {
    let mut f = Fragmentizer::new(max);
    let mut out = Vec::new();
    let mut reads = reads.iter();
    let mut fed = 0;
    // Where the current message and the next fragment start in `input`.
    let mut message_start = 0;
    let mut pos = 0;
    let mut literal: Option<u32> = None;
    loop {
        let Some(info) = f.progress() else {
            let Some(r) = reads.next() else { break };
            f.enqueue_bytes(r);
            fed += r.len();
            continue;
        };
        let range = info.range();
        assert_eq!(message_start + range.start, pos, "fragments are contiguous");
        pos = message_start + range.end;
        assert!(pos <= fed, "used {pos} bytes of {fed}");
        let (is_line, announced) = match info {
            FragmentInfo::Line { announcement, .. } => {
                assert!(literal.is_none(), "a line where a literal was announced");
                let line = &input[message_start + range.start..pos];
                assert!(line.ends_with(b"\n"));
                (true, announcement.map(|a| a.length))
            }
            FragmentInfo::Literal { .. } => {
                let want = literal.take().expect("a literal nobody announced");
                assert_eq!(range.len(), want as usize, "literal length");
                (false, None)
            }
        };
        literal = announced;
        let bytes = f.message_bytes();
        assert!(bytes.len() <= max as usize);
        let exceeded = f.is_max_message_size_exceeded();
        let sent = &input[message_start..pos];
        if exceeded {
            assert_eq!(bytes, &sent[..max as usize], "a cut message keeps its start");
        } else {
            assert_eq!(bytes, sent, "the message is what was sent");
        }
        let _ = f.decode_tag();
        let complete = f.is_message_complete();
        assert_eq!(complete, is_line && announced.is_none(), "a message ends with a line");
        out.push((range, announced, complete.then(|| bytes.to_vec()), exceeded));
        if complete {
            message_start = pos;
        }
    }
    assert!(pos <= input.len());
    out
}

fn config(flags: u8) -> SessionConfig {
    SessionConfig {
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
        max_errors: 20 + u32::from(flags >> 6) * 10,
        max_message: max_message(flags),
        quota: flags & 16 == 16,
    }
}

/// Runs the session over `reads`: the transcript up to the first STARTTLS
/// or COMPRESS.
fn run(flags: u8, reads: &[&[u8]]) -> Vec<Event> {
    let mut s = Session::new(config(flags));
    let mut log = Vec::new();
    let mut reads = reads.iter();
    let mut compared = true;
    for _ in 0..1_000_000 {
        let action = s.next_action();
        let output = s.take_output();
        if compared {
            common::out(&mut log, output);
            if !matches!(action, Action::NeedInput | Action::Idling) {
                log.push(Event::Action(format!("{action:?}")));
            }
        }
        match action {
            Action::NeedInput | Action::Idling => {
                let Some(r) = reads.next() else { return log };
                s.feed(r);
            }
            Action::StartTls => {
                compared = false;
                s.tls_started();
                assert!(
                    matches!(s.next_action(), Action::NeedInput),
                    "a command pipelined after STARTTLS survives the handshake"
                );
            }
            Action::CheckAuth(c) => s.auth_done(match c.username().len() % 3 {
                0 => AuthOutcome::Ok(c.username().to_string()),
                1 => AuthOutcome::Fail,
                _ => AuthOutcome::TempFail,
            }),
            Action::Run { tag, command, .. } => {
                let state = s.state();
                assert!(matches!(state, State::Authenticated | State::Selected { .. }));
                let next = match *command {
                    CommandBody::Select { .. } => State::Selected { read_only: false },
                    CommandBody::Examine { .. } => State::Selected { read_only: true },
                    CommandBody::Close | CommandBody::Unselect => State::Authenticated,
                    _ => state,
                };
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(next);
                if matches!(*command, CommandBody::Idle) {
                    s.idle_started(tag);
                }
            }
            Action::Compress => {
                // What follows would be compressed: no longer comparable.
                compared = false;
                s.compress_started();
            }
            Action::MultiAppend { tag, .. } => {
                let state = s.state();
                assert!(matches!(state, State::Authenticated | State::Selected { .. }));
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(state);
            }
            Action::List { tag, .. } => {
                let state = s.state();
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(state);
            }
            Action::CancelUpdate { tag, .. } => {
                let state = s.state();
                assert!(matches!(state, State::Selected { .. }));
                s.respond(format!("{tag} OK done\r\n").as_bytes());
                s.command_done(state);
            }
            Action::Close => return log,
        }
    }
    panic!("the session does not make progress");
}

/// Where a conforming client stops to wait for `+` or a refusal (RFC 3501
/// §7.5): after every line ending in a synchronising literal's `{N}`,
/// whether the server takes the literal or not (found by their look alone,
/// so also inside literal data: an extra read boundary costs nothing).
fn sync_points(stream: &[u8]) -> Vec<usize> {
    let mut points = Vec::new();
    for (i, _) in stream.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        let line = &stream[..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(line) = line.strip_suffix(b"}") else { continue };
        let digits = line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && line[..line.len() - digits].ends_with(b"{") {
            points.push(i + 1);
        }
    }
    points
}

/// `reads` cut again at `points` (offsets in the whole stream).
fn cut<'a>(reads: &[&'a [u8]], points: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &r in reads {
        let mut from = 0;
        for &p in points.iter().filter(|&&p| p > at && p < at + r.len()) {
            out.push(&r[from..p - at]);
            from = p - at;
        }
        out.push(&r[from..]);
        at += r.len();
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (flags, seed, stream) = common::parse(data);
    let pieces = common::chunks(&stream, seed);

    let max = max_message(flags);
    assert_eq!(
        fragments(max, &stream, &[&stream]),
        fragments(max, &stream, &pieces),
        "fragments depend on how the input was split"
    );

    // The session as a conforming client drives it: whatever the reads,
    // nothing after a synchronising literal's announcement arrives before
    // the `+` (or the NO) that answers it.
    let points = sync_points(&stream);
    let whole = run(flags, &cut(&[&stream], &points));
    let split = run(flags, &cut(&pieces, &points));
    common::assert_same(&whole, &split);
});
