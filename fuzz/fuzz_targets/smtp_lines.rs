#![no_main]
//! The SMTP line readers: command and AUTH lines (`take_line`, with the
//! 1000 / 12288 octet limits), the DATA reader (dot-unstuffing, only
//! CRLF.CRLF ends the data) and BDAT chunks.
//!
//! - The same client bytes read at once and read in pieces give the same
//!   replies and actions, up to STARTTLS, after which nothing pipelined
//!   survives.
//! - `DataReader` never uses more bytes than it was given, gives the same
//!   result however the bytes arrive, and reads back exactly what the
//!   `DotStuffer` (the SMTP client's and POP3's encoder) wrote: the message
//!   with CRLF line endings, and `too_big` exactly when that is over the
//!   limit.
//!
//! Input: flags, splitter seed, stream (see common/mod.rs; `\0\xFF n c`
//! makes long lines).
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::login::LoginPolicy;
use pigeonpost::auth::sasl::Mechanism;
use pigeonpost::smtp::proto::data::{DataEnd, DataReader};
use pigeonpost::smtp::proto::{Action, AuthOutcome, Reply, Session, SessionConfig};
use pigeonpost::wire::{to_crlf, DotStuffer};

mod common;
use common::Event;

fn config(flags: u8) -> SessionConfig {
    SessionConfig {
        hostname: "mx.example.com".into(),
        max_message_size: [0, 64, 4096, 20_000][(flags >> 6) as usize],
        max_recipients: 5,
        login: LoginPolicy {
            tls_available: flags & 16 == 0,
            tls_active: flags & 1 == 1,
            local_client: flags & 2 == 2,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
            disable_plaintext_auth: flags & 32 == 0,
            // smtpd_tls_auth_only: a combination, every bit is taken.
            auth_requires_tls: flags & 33 == 33,
        },
        submission: flags & 4 == 4,
        // Submission, or smtpd_tls_security_level = encrypt.
        require_tls: flags & 4 == 4 || flags & 130 == 130,
        check_sender: flags & 8 == 8,
        check_helo: flags & 64 == 64,
        max_errors: 20,
        check_data: flags & 8 == 8,
    }
}

/// Runs the session over `reads`: the transcript up to the first STARTTLS.
fn run(flags: u8, reads: &[&[u8]]) -> Vec<Event> {
    let mut s: Session<()> = Session::new(config(flags));
    let mut log = Vec::new();
    let mut reads = reads.iter();
    let mut compared = true;
    for _ in 0..1_000_000 {
        let action = s.next_action();
        let output = s.take_output();
        if compared {
            common::out(&mut log, output);
            if !matches!(action, Action::NeedInput) {
                log.push(Event::Action(format!("{action:?}")));
            }
        }
        match action {
            Action::NeedInput => {
                let Some(r) = reads.next() else { return log };
                s.feed(r);
            }
            Action::StartTls => {
                compared = false;
                s.tls_started();
                assert_eq!(s.buffered(), 0, "bytes pipelined after STARTTLS survive the handshake");
            }
            Action::CheckAuth(c) => s.auth_done(match c.username().len() % 3 {
                0 => AuthOutcome::Ok(c.username().to_string()),
                1 => AuthOutcome::Fail,
                _ => AuthOutcome::TempFail,
            }),
            Action::CheckHelo(h) => s.helo_done(if h.len() % 2 == 0 {
                Ok(())
            } else {
                Err(Reply::new(550, "5.7.1", "no"))
            }),
            Action::CheckSender(a) => s.sender_done(if a.len() % 3 == 0 {
                Err(Reply::new(550, "5.7.23", "no"))
            } else {
                Ok(())
            }),
            Action::CheckData => s.data_checked(Ok(())),
            Action::CheckRecipient(a) => s.rcpt_done(if a.len() % 2 == 0 {
                Ok(())
            } else {
                Err(Reply::new(550, "5.1.1", "no"))
            }),
            Action::Deliver(env, msg) => {
                assert!(!env.recipients.is_empty());
                let limit = config(flags).max_message_size;
                assert!(limit == 0 || msg.len() as u64 <= limit, "message over the limit delivered");
                s.data_done(if msg.len() % 2 == 0 {
                    Reply::new(250, "2.0.0", "ok")
                } else {
                    Reply::new(451, "4.3.0", "try again")
                });
            }
            Action::Close => return log,
        }
    }
    panic!("the session does not make progress");
}

/// Reads DATA from `reads` (the unread rest carried over, as the session
/// does): (bytes used, end seen, message, too big).
fn read_data(reads: &[&[u8]], limit: u64) -> (usize, bool, Vec<u8>, bool) {
    let mut r = DataReader::new();
    let mut buf = Vec::new();
    let mut used = 0;
    for chunk in reads {
        buf.extend_from_slice(chunk);
        let (n, end) = r.read(&buf, limit);
        assert!(n <= buf.len(), "DataReader used {n} of {} bytes", buf.len());
        buf.drain(..n);
        used += n;
        if end == DataEnd::Done {
            let too_big = r.too_big();
            return (used, true, r.into_message(), too_big);
        }
    }
    let too_big = r.too_big();
    (used, false, r.into_message(), too_big)
}

fuzz_target!(|data: &[u8]| {
    let (flags, seed, stream) = common::parse(data);

    let whole = run(flags, &[&stream]);
    let pieces = run(flags, &common::chunks(&stream, seed));
    common::assert_same(&whole, &pieces);

    // DataReader on the raw stream: split-invariant.
    let limit = [0, 64, 4096, 20_000][(flags >> 6) as usize];
    let a = read_data(&[&stream], limit);
    let b = read_data(&common::chunks(&stream, seed), limit);
    assert_eq!(a, b, "DataReader depends on how the input was split");

    // DotStuffer → DataReader round trip.
    let mut wire = Vec::new();
    let mut enc = DotStuffer::full();
    for c in common::chunks(&stream, seed.wrapping_add(1)) {
        enc.encode(c, &mut wire);
    }
    enc.finish(&mut wire);
    let mut lines = stream.clone();
    if lines.last().is_some_and(|&b| b != b'\n') {
        lines.push(b'\n');
    }
    let expected = to_crlf(&lines).into_owned();
    let (used, done, message, too_big) = read_data(&common::chunks(&wire, seed), limit);
    assert!(done, "the end mark of a stuffed message is found");
    assert_eq!(used, wire.len(), "the end mark is found at the end, not before");
    assert_eq!(too_big, limit > 0 && expected.len() as u64 > limit);
    if !too_big {
        assert_eq!(message, expected, "unstuffing undoes stuffing");
    }
});
