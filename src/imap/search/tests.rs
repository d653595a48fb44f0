//! Tests of `search`.

use std::cell::Cell;
use std::num::NonZeroU32;

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::CommandCodec;

use super::*;

struct Msg {
    seq: u32,
    uid: u32,
    flags: Flags,
    keywords: Vec<String>,
    recent: bool,
    size: u64,
    date: i64,
    raw: Vec<u8>,
    /// Serve `header()` separately (else only `message()`).
    split_header: bool,
    header_calls: Cell<u32>,
    message_calls: Cell<u32>,
}

impl Candidate for Msg {
    fn seq(&self) -> u32 {
        self.seq
    }
    fn uid(&self) -> u32 {
        self.uid
    }
    fn flags(&self) -> Flags {
        self.flags
    }
    fn keywords(&self) -> &[String] {
        &self.keywords
    }
    fn is_recent(&self) -> bool {
        self.recent
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn internal_date(&self) -> i64 {
        self.date
    }
    fn header(&self) -> Option<&[u8]> {
        self.header_calls.set(self.header_calls.get() + 1);
        if self.split_header {
            let n = self.raw.len() - body_of(&self.raw).len();
            Some(&self.raw[..n])
        } else {
            None
        }
    }
    fn message(&self) -> Option<&[u8]> {
        self.message_calls.set(self.message_calls.get() + 1);
        Some(&self.raw)
    }
}

#[allow(clippy::too_many_arguments)]
fn msg(
    seq: u32,
    uid: u32,
    flags: Flags,
    keywords: &[&str],
    recent: bool,
    size: u64,
    date: i64,
    raw: &str,
) -> Msg {
    Msg {
        seq,
        uid,
        flags,
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        recent,
        size,
        date,
        raw: raw.replace('\n', "\r\n").into_bytes(),
        split_header: false,
        header_calls: Cell::new(0),
        message_calls: Cell::new(0),
    }
}

fn fixtures() -> Vec<Msg> {
    vec![
        msg(
            1,
            10,
            Flags::SEEN,
            &[],
            false,
            1000,
            1_706_788_800, // 2024-02-01 12:00 UTC
            "From: Alice <alice@example.com>\n\
             To: bob@example.org\n\
             Subject: hello world\n\
             Date: Thu, 1 Feb 2024 10:00:00 +0000\n\
             \n\
             Plain body text about Rust.\n",
        ),
        msg(
            2,
            11,
            Flags::empty(),
            &[],
            true,
            2000,
            1_706_743_800, // 2024-01-31 23:30 UTC
            "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\n\
             To: bob@example.org\n\
             Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\n\
             Date: Sat, 3 Feb 2024 23:30:00 -0800\n\
             MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: base64\n\
             \n\
             RGFzIGlzdCBlaW4gR2VoZWltbmlzIGF1cyBkZXIgSGF1cHRzdHJhw59lLg0K\n",
        ),
        msg(
            3,
            15,
            Flags::FLAGGED | Flags::DELETED,
            &["$Important"],
            true,
            3000,
            1_707_552_000, // 2024-02-10 08:00 UTC
            "From: carol@example.net\n\
             Cc: Alice <alice@example.com>\n\
             X-Flag:\n\
             Subject: Re: hello\n \
             world\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/alternative; boundary=\"b1\"\n\
             \n\
             --b1\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             Meet at the caf=C3=A9 at noon.\n\
             --b1\n\
             Content-Type: text/html; charset=utf-8\n\
             \n\
             <html><body><p>Only in <b>HTML</b> version</p></body></html>\n\
             --b1--\n",
        ),
        msg(
            4,
            20,
            Flags::ANSWERED | Flags::DRAFT | Flags::SEEN,
            &["work"],
            false,
            50_000,
            1_707_957_000, // 2024-02-15 00:30 UTC
            "From: dave@example.com\n\
             To: team@example.com\n\
             Bcc: secret@example.com\n\
             Subject: Weekly report\n\
             Date: Wed, 14 Feb 2024 16:00:00 -0900\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"outer\"\n\
             \n\
             --outer\n\
             Content-Type: text/plain\n\
             \n\
             See attached.\n\
             --outer\n\
             Content-Type: message/rfc822\n\
             \n\
             From: eve@example.com\n\
             Subject: Inner subject\n\
             \n\
             nested needle here\n\
             --outer--\n",
        ),
    ]
}

fn ctx() -> Context {
    Context {
        max_seq: 4,
        max_uid: 20,
        utc_offset: 0,
    }
}

/// Parses `T <cmd>` with imap-codec and compiles its criteria.
fn parse(cmd: &[u8]) -> (Query, bool) {
    let mut line = b"T ".to_vec();
    line.extend_from_slice(cmd);
    line.extend_from_slice(b"\r\n");
    let (rest, command) = CommandCodec::default()
        .decode(&line)
        .unwrap_or_else(|e| panic!("parse {:?}: {e:?}", String::from_utf8_lossy(cmd)));
    assert!(rest.is_empty());
    match command.body {
        CommandBody::Search {
            charset,
            criteria,
            uid,
        } => (
            Query::from_criteria(criteria.as_ref(), charset.as_ref()).expect("charset"),
            uid,
        ),
        other => panic!("not a SEARCH: {other:?}"),
    }
}

fn hits_ctx(criteria: &str, ctx: &Context) -> Vec<u32> {
    let (q, _) = parse(format!("SEARCH {criteria}").as_bytes());
    fixtures()
        .iter()
        .filter(|m| q.matches(*m, ctx))
        .map(|m| m.seq)
        .collect()
}

fn hits(criteria: &str) -> Vec<u32> {
    hits_ctx(criteria, &ctx())
}

fn set(s: &str) -> SequenceSet {
    s.parse().expect("sequence set")
}

#[test]
fn sequence_sets() {
    let s = set("1,3:5,9");
    let inside: Vec<u32> = (1..=10).filter(|n| sequence_contains(&s, *n, 10)).collect();
    assert_eq!(inside, [1, 3, 4, 5, 9]);
    // Reversed range.
    let s = set("5:2");
    assert!((2..=5).all(|n| sequence_contains(&s, n, 10)));
    assert!(!sequence_contains(&s, 1, 10) && !sequence_contains(&s, 6, 10));
    // `*` is the largest number in use.
    let s = set("*");
    assert!(sequence_contains(&s, 7, 7));
    assert!(!sequence_contains(&s, 6, 7));
    let s = set("3:*");
    assert!(sequence_contains(&s, 3, 7) && sequence_contains(&s, 7, 7));
    assert!(!sequence_contains(&s, 2, 7) && !sequence_contains(&s, 8, 7));
    // `5:*` with max 3 is `3:5`.
    let s = set("5:*");
    assert!(sequence_contains(&s, 3, 3));
    assert!(!sequence_contains(&s, 2, 3));
    let s = set("*:5");
    assert!(sequence_contains(&s, 3, 3) && !sequence_contains(&s, 2, 3));
    // Empty mailbox: `*` is 0 and matches nothing that exists.
    assert!(!sequence_contains(&set("*"), 1, 0));
    // u32::MAX as a number.
    let s = SequenceSet::from(Sequence::Single(SeqOrUid::Value(
        NonZeroU32::new(u32::MAX).expect("nonzero"),
    )));
    assert!(sequence_contains(&s, u32::MAX, 3));
}

#[test]
fn sequence_keys() {
    assert_eq!(hits("ALL"), [1, 2, 3, 4]);
    assert_eq!(hits("2:3"), [2, 3]);
    assert_eq!(hits("*"), [4]);
    assert_eq!(hits("3:*"), [3, 4]);
    assert_eq!(hits("4:1"), [1, 2, 3, 4]);
    assert_eq!(hits("UID 11,20"), [2, 4]);
    assert_eq!(hits("UID *"), [4]);
    assert_eq!(hits("UID 12:16"), [3]);
    // UID 30:* with max UID 20 is 20:30.
    assert_eq!(hits("UID 30:*"), [4]);
    assert_eq!(hits("1 UID 15"), Vec::<u32>::new());
    assert_eq!(hits("1:3 UID 15"), [3]);
}

#[test]
fn flag_keys() {
    assert_eq!(hits("ANSWERED"), [4]);
    assert_eq!(hits("UNANSWERED"), [1, 2, 3]);
    assert_eq!(hits("DELETED"), [3]);
    assert_eq!(hits("UNDELETED"), [1, 2, 4]);
    assert_eq!(hits("DRAFT"), [4]);
    assert_eq!(hits("UNDRAFT"), [1, 2, 3]);
    assert_eq!(hits("FLAGGED"), [3]);
    assert_eq!(hits("UNFLAGGED"), [1, 2, 4]);
    assert_eq!(hits("SEEN"), [1, 4]);
    assert_eq!(hits("UNSEEN"), [2, 3]);
    assert_eq!(hits("RECENT"), [2, 3]);
    assert_eq!(hits("OLD"), [1, 4]);
    assert_eq!(hits("NEW"), [2, 3]);
    assert_eq!(hits("KEYWORD $Important"), [3]);
    assert_eq!(hits("KEYWORD $important"), [3]);
    assert_eq!(hits("KEYWORD Work"), [4]);
    assert_eq!(hits("UNKEYWORD work"), [1, 2, 3]);
    assert_eq!(hits("KEYWORD nope"), Vec::<u32>::new());
}

#[test]
fn size_keys() {
    assert_eq!(hits("LARGER 2000"), [3, 4]);
    assert_eq!(hits("SMALLER 2000"), [1]);
    assert_eq!(hits("LARGER 0"), [1, 2, 3, 4]);
    assert_eq!(hits("SMALLER 0"), Vec::<u32>::new());
}

#[test]
fn internal_date_keys() {
    assert_eq!(hits("BEFORE 1-Feb-2024"), [2]);
    assert_eq!(hits("ON 1-Feb-2024"), [1]);
    assert_eq!(hits("ON 31-Jan-2024"), [2]);
    assert_eq!(hits("SINCE 1-Feb-2024"), [1, 3, 4]);
    assert_eq!(hits("SINCE 15-Feb-2024"), [4]);
    assert_eq!(hits("BEFORE 1-Jan-2000"), Vec::<u32>::new());
    // In UTC+1, message 2 (2024-01-31 23:30 UTC) is on 1 Feb.
    let cet = Context {
        utc_offset: 3600,
        ..ctx()
    };
    assert_eq!(hits_ctx("ON 1-Feb-2024", &cet), [1, 2]);
    assert_eq!(hits_ctx("BEFORE 1-Feb-2024", &cet), Vec::<u32>::new());
    // In UTC-1, message 4 (2024-02-15 00:30 UTC) is on 14 Feb.
    let west = Context {
        utc_offset: -3600,
        ..ctx()
    };
    assert_eq!(hits_ctx("ON 14-Feb-2024", &west), [4]);
}

#[test]
fn sent_date_keys_use_the_header_timezone() {
    // Message 2: "Sat, 3 Feb 2024 23:30:00 -0800" is 4 Feb in UTC but
    // 3 Feb as written. Message 4: "14 Feb 16:00 -0900" (15 Feb UTC).
    assert_eq!(hits("SENTON 3-Feb-2024"), [2]);
    assert_eq!(hits("SENTON 4-Feb-2024"), Vec::<u32>::new());
    assert_eq!(hits("SENTBEFORE 4-Feb-2024"), [1, 2]);
    assert_eq!(hits("SENTBEFORE 3-Feb-2024"), [1]);
    assert_eq!(hits("SENTON 14-Feb-2024"), [4]);
    // Message 3 has no Date: its internal date (10 Feb) stands in.
    assert_eq!(hits("SENTON 10-Feb-2024"), [3]);
    assert_eq!(hits("SENTSINCE 10-Feb-2024"), [3, 4]);
    assert_eq!(hits("SENTSINCE 1-Feb-2024"), [1, 2, 3, 4]);
}

#[test]
fn header_string_keys() {
    assert_eq!(hits("FROM alice"), [1]);
    assert_eq!(hits("FROM ALICE@EXAMPLE.COM"), [1]);
    assert_eq!(hits("FROM example.com"), [1, 4]);
    // Encoded-word display name.
    assert_eq!(hits("FROM \"m\u{fc}ller\""), [2]);
    assert_eq!(hits("FROM \"J\u{dc}RGEN M\u{dc}LLER\""), [2]);
    assert_eq!(hits("TO bob"), [1, 2]);
    assert_eq!(hits("CC alice"), [3]);
    assert_eq!(hits("BCC secret"), [4]);
    assert_eq!(hits("SUBJECT hello"), [1, 3]);
    // Folded subject unfolds to "Re: hello world".
    assert_eq!(hits("SUBJECT \"hello world\""), [1, 3]);
    assert_eq!(hits("SUBJECT \"HELLO WORLD\""), [1, 3]);
    // Encoded-word subject (base64 UTF-8), case-insensitively.
    assert_eq!(hits("SUBJECT \"K\u{d6}LN\""), [2]);
    assert_eq!(hits("SUBJECT \"gr\u{fc}\u{df}e\""), [2]);
    // The raw encoded form is not what's searched.
    assert_eq!(hits("SUBJECT R3LDvMOfZSBh"), Vec::<u32>::new());
    assert_eq!(hits("HEADER Date 2024"), [1, 2, 4]);
    assert_eq!(hits("HEADER content-type alternative"), [3]);
    // Only the top-level header counts.
    assert_eq!(hits("SUBJECT inner"), Vec::<u32>::new());
}

#[test]
fn header_empty_string_means_field_exists() {
    assert_eq!(hits("HEADER X-Flag \"\""), [3]);
    assert_eq!(hits("HEADER x-flag \"\""), [3]);
    assert_eq!(hits("HEADER Cc \"\""), [3]);
    assert_eq!(hits("HEADER Date \"\""), [1, 2, 4]);
    assert_eq!(hits("NOT HEADER Date \"\""), [3]);
    assert_eq!(hits("HEADER X-Missing \"\""), Vec::<u32>::new());
    assert_eq!(hits("BCC \"\""), [4]);
}

#[test]
fn body_and_text_keys() {
    // Base64 body, charset decoded.
    assert_eq!(hits("BODY geheimnis"), [2]);
    assert_eq!(hits("BODY \"HAUPTSTRA\u{df}E\""), [2]);
    assert_eq!(hits("BODY RGFzIGlzdCBl"), Vec::<u32>::new());
    // Quoted-printable body.
    assert_eq!(hits("BODY \"caf\u{e9} at noon\""), [3]);
    // HTML part, text only.
    assert_eq!(hits("BODY \"html version\""), [3]);
    // Plain body; case-insensitive.
    assert_eq!(hits("BODY \"about RUST\""), [1]);
    // BODY does not search the header; TEXT does.
    assert_eq!(hits("BODY hello"), Vec::<u32>::new());
    assert_eq!(hits("TEXT hello"), [1, 3]);
    assert_eq!(hits("TEXT rust"), [1]);
    assert_eq!(hits("TEXT \"subject: weekly\""), [4]);
    // An attached message's header and body are part of the body.
    assert_eq!(hits("BODY \"nested needle\""), [4]);
    assert_eq!(hits("BODY \"inner subject\""), [4]);
    assert_eq!(hits("BODY \"\""), [1, 2, 3, 4]);
    assert_eq!(hits("TEXT \"\""), [1, 2, 3, 4]);
}

#[test]
fn boolean_structure() {
    assert_eq!(hits("NOT SEEN"), [2, 3]);
    assert_eq!(hits("NOT NOT SEEN"), [1, 4]);
    assert_eq!(hits("OR SEEN FLAGGED"), [1, 3, 4]);
    assert_eq!(hits("OR DRAFT OR DELETED ANSWERED"), [3, 4]);
    assert_eq!(hits("SEEN LARGER 1000"), [4]);
    assert_eq!(hits("(SEEN LARGER 1000)"), [4]);
    assert_eq!(hits("NOT (SEEN LARGER 1000)"), [1, 2, 3]);
    assert_eq!(
        hits("OR (SEEN FROM alice) (UNSEEN BODY \"caf\u{e9}\")"),
        [1, 3]
    );
    assert_eq!(hits("NOT OR SUBJECT hello BODY geheimnis"), [4]);
    assert_eq!(
        hits("(OR NOT (RECENT) (NOT FROM example.com)) NOT UID 10"),
        [2, 3, 4]
    );
    assert_eq!(hits("ALL NOT ALL"), Vec::<u32>::new());
}

#[test]
fn client_commands_round_trip() {
    let (q, uid) =
        parse(b"SEARCH CHARSET UTF-8 OR FROM alice SUBJECT \"hello world\" NOT SEEN 1:*");
    assert!(!uid);
    let got: Vec<u32> = fixtures()
        .iter()
        .filter(|m| q.matches(*m, &ctx()))
        .map(|m| m.seq)
        .collect();
    assert_eq!(got, [3]);

    let (q, uid) = parse(b"UID SEARCH UNDELETED SINCE 1-Feb-2024");
    assert!(uid);
    let got: Vec<u32> = fixtures()
        .iter()
        .filter(|m| q.matches(*m, &ctx()))
        .map(|m| m.uid)
        .collect();
    assert_eq!(got, [10, 20]);

    // A literal in another charset.
    let (q, _) = parse(b"SEARCH CHARSET ISO-8859-1 SUBJECT {4}\r\nK\xf6ln");
    let got: Vec<u32> = fixtures()
        .iter()
        .filter(|m| q.matches(*m, &ctx()))
        .map(|m| m.seq)
        .collect();
    assert_eq!(got, [2]);
}

#[test]
fn unknown_charset_is_rejected() {
    let line = b"T SEARCH CHARSET X-NOPE SUBJECT x\r\n";
    let (_, command) = CommandCodec::default().decode(line).expect("parses");
    let CommandBody::Search {
        charset, criteria, ..
    } = command.body
    else {
        panic!("not a SEARCH")
    };
    let err = Query::from_criteria(criteria.as_ref(), charset.as_ref()).unwrap_err();
    assert_eq!(err, BadCharset("X-NOPE".into()));
}

#[test]
fn single_key_api() {
    let (q, _) = parse(b"SEARCH SUBJECT hello");
    assert_eq!(
        q.needs(),
        Needs {
            header: true,
            ..Needs::default()
        }
    );
    let line = b"T SEARCH OR SEEN BODY x\r\n";
    let (_, command) = CommandCodec::default().decode(line).expect("parses");
    let CommandBody::Search { criteria, .. } = command.body else {
        panic!("not a SEARCH")
    };
    let key = &criteria.as_ref()[0];
    assert_eq!(
        needs(key),
        Needs {
            body: true,
            ..Needs::default()
        }
    );
    let f = fixtures();
    assert!(matches(key, &f[0], &ctx()));
    assert!(!matches(key, &f[1], &ctx()));
}

#[test]
fn needs_and_lazy_loading() {
    let (q, _) = parse(b"SEARCH UNSEEN LARGER 10 UID 1:* OR NEW DRAFT");
    assert_eq!(q.needs(), Needs::default());
    // (a sent date falls back to the arrival message by message)
    let (q, _) = parse(b"SEARCH SENTON 1-Feb-2024");
    assert_eq!(
        q.needs(),
        Needs {
            header: true,
            body: false,
            arrival: false
        }
    );
    let (q, _) = parse(b"SEARCH SEEN OR BEFORE 1-Feb-2024 SMALLER 5");
    assert_eq!(
        q.needs(),
        Needs {
            arrival: true,
            ..Needs::default()
        }
    );
    let (q, _) = parse(b"SEARCH NOT TEXT x");
    assert_eq!(
        q.needs(),
        Needs {
            header: true,
            body: true,
            arrival: false
        }
    );

    // Flag-only: no message data read.
    let f = fixtures();
    let (q, _) = parse(b"SEARCH SEEN NOT DELETED");
    for m in &f {
        q.matches(m, &ctx());
        assert_eq!((m.header_calls.get(), m.message_calls.get()), (0, 0));
    }
    // A header key with `header()` available doesn't load the message;
    // several header keys load it once.
    let mut m = fixtures().remove(0);
    m.split_header = true;
    let (q, _) = parse(b"SEARCH FROM alice SUBJECT hello TO bob SENTON 1-Feb-2024");
    assert!(q.matches(&m, &ctx()));
    assert_eq!(m.message_calls.get(), 0);
    assert_eq!(m.header_calls.get(), 1);
    // Without `header()`, header and body keys share one `message()`.
    let m = fixtures().remove(0);
    let (q, _) = parse(b"SEARCH TEXT rust SUBJECT hello SENTON 1-Feb-2024");
    assert!(q.matches(&m, &ctx()));
    assert_eq!((m.header_calls.get(), m.message_calls.get()), (1, 1));
    // Cheap keys first: a failing flag key short-circuits the body.
    let m = fixtures().remove(1);
    let (q, _) = parse(b"SEARCH BODY geheimnis SEEN");
    assert!(!q.matches(&m, &ctx()));
    assert_eq!(m.message_calls.get(), 0);
}

#[test]
fn split_fields_handles_odd_input() {
    let raw = b"From alice Mon Jan 1 12:00:00 2024\nSubject : hi\r\n there\nX-A: 1\nbad line\n\tcont\nX-B: 2";
    let f: Vec<(String, String)> = split_fields(raw)
        .into_iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                decode_unstructured(v),
            )
        })
        .collect();
    assert_eq!(
        f,
        [
            ("Subject".into(), "hi there".into()),
            ("X-A".into(), "1".into()),
            ("X-B".into(), "2".into()),
        ]
    );
    assert!(split_fields(b"").is_empty());
    assert!(split_fields(b"\r\nSubject: x\r\n").is_empty());
}

#[test]
fn days() {
    assert_eq!(days_from_civil(1970, 1, 1), Some(0));
    assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
    assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
    assert_eq!(days_from_civil(2024, 13, 1), None);
}

#[test]
fn no_panics_on_garbage() {
    let keys = "OR OR BODY a TEXT \"\u{e9}\" SUBJECT b OR HEADER x \"\" SENTON 1-Jan-2024 \
                SENTBEFORE 1-Jan-2000";
    let (q, _) = parse(format!("SEARCH {keys}").as_bytes());
    let (nq, _) = parse(format!("SEARCH NOT ({keys})").as_bytes());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet: &[u8] = b"\r\n\t :;=?_\"<>@-BQbq=3DContent-Type: multipart/mixed; boundary=x\n--x\nbase64\xff\xc3\x28Date";
    for len in 0..300 {
        let raw: Vec<u8> = (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                alphabet[(state >> 33) as usize % alphabet.len()]
            })
            .collect();
        let mut m = msg(1, 1, Flags::empty(), &[], false, 0, i64::MIN / 2, "");
        m.raw = raw;
        // Exactly one of a query and its negation matches.
        assert_ne!(q.matches(&m, &ctx()), nq.matches(&m, &ctx()));
    }
}

/// SEARCH FROM/TO/CC match the address as a client shows it: comments,
/// folding inside the address, quoting and groups don't hide it.
#[test]
fn address_keys_see_through_comments_folding_and_groups() {
    let m = |seq: u32, header: &str| {
        msg(
            seq,
            seq,
            Flags::empty(),
            &[],
            false,
            100,
            0,
            &format!("{header}\nSubject: x\n\nbody\n"),
        )
    };
    let msgs = [
        m(1, "From: user-from@(a comment)domain.org"),
        m(2, "From: \"Some One\" <user-from@\n domain.org>"),
        m(3, "From: user-from @ domain.org (Some One)"),
        m(4, "To: friends: user-from@domain.org, b@c.example;"),
        m(5, "From: =?utf-8?q?J=C3=BCrgen?= <jurgen@domain.org>"),
        m(6, "From: other@domain.org"),
    ];
    let hits = |criteria: &str| -> Vec<u32> {
        let (q, _) = parse(format!("SEARCH {criteria}").as_bytes());
        msgs.iter()
            .filter(|x| q.matches(*x, &ctx()))
            .map(|x| x.seq)
            .collect()
    };
    assert_eq!(hits("FROM user-from@domain.org"), [1, 2, 3]);
    assert_eq!(hits("TO user-from@domain.org"), [4]);
    assert_eq!(hits("TO friends"), [4]);
    assert_eq!(hits("FROM \"some one <user-from@domain.org>\""), [2, 3]);
    assert_eq!(hits("FROM \"j\u{fc}rgen <jurgen@\""), [5]);
}

/// A message seen only through its [`HeaderKeys`]: no header, no body.
struct Keyed<'a> {
    msg: &'a Msg,
    keys: HeaderKeys,
}

impl Candidate for Keyed<'_> {
    fn seq(&self) -> u32 {
        self.msg.seq
    }
    fn uid(&self) -> u32 {
        self.msg.uid
    }
    fn flags(&self) -> Flags {
        self.msg.flags
    }
    fn keywords(&self) -> &[String] {
        &self.msg.keywords
    }
    fn is_recent(&self) -> bool {
        self.msg.recent
    }
    fn size(&self) -> u64 {
        self.msg.size
    }
    fn internal_date(&self) -> i64 {
        self.msg.date
    }
    fn message(&self) -> Option<&[u8]> {
        None
    }
    fn keys(&self) -> Option<&HeaderKeys> {
        Some(&self.keys)
    }
}

/// Header keys answer every search they cover exactly as the message's
/// header does (and without it), so a server may keep them instead of
/// re-reading files; searches they don't cover say so.
#[test]
fn header_keys_answer_as_the_header_does() {
    let mut msgs = fixtures();
    for (i, header) in [
        "From: user-from@(a comment)domain.org\nTo: a@b.example\nTo: second@b.example",
        "To: friends: user-from@domain.org, b@c.example;\nCc:\nSubject:",
        "From: =?utf-8?q?J=C3=BCrgen?= <jurgen@domain.org>\nDate: Mon, 1 Jan 2024 23:00:00 -0500\nDate: Tue, 9 Jan 2024 01:00:00 +0000",
        "Subject: =?iso-8859-1?q?caf=E9?= and\n  more\nBCC: hidden@x.example",
    ]
    .iter()
    .enumerate()
    {
        let n = msgs.len() as u32 + 1;
        let raw = format!("{header}\n\nbody {i}\n");
        msgs.push(msg(n, 100 + n, Flags::empty(), &[], false, 10, 1_700_000_000, &raw));
    }
    let ctx = Context {
        max_seq: msgs.len() as u32,
        max_uid: 200,
        utc_offset: 0,
    };
    let keyed: Vec<Keyed> = msgs
        .iter()
        .map(|m| Keyed {
            msg: m,
            keys: HeaderKeys::of(&m.raw),
        })
        .collect();
    for criteria in [
        "SUBJECT hello",
        "SUBJECT \"hello world\"",
        "SUBJECT \"\"",
        "SUBJECT \"caf\u{e9}\"",
        "SUBJECT \"and more\"",
        "FROM alice",
        "FROM \"j\u{fc}rgen <jurgen@\"",
        "FROM user-from@domain.org",
        "TO second@b",
        "TO friends",
        "TO \"\"",
        "CC \"\"",
        "CC alice",
        "BCC secret",
        "BCC hidden",
        "NOT FROM alice",
        "OR SUBJECT report FROM carol",
        "SEEN SUBJECT hello",
        "SENTON 1-Jan-2024",
        "SENTON 9-Jan-2024",
        "SENTSINCE 3-Feb-2024",
        "SENTBEFORE 2-Feb-2024",
        "HEADER subject hello",
    ] {
        let (q, _) = parse(format!("SEARCH {criteria}").as_bytes());
        assert!(q.keyed(), "{criteria} is covered");
        let by_header: Vec<u32> = msgs
            .iter()
            .filter(|m| q.matches(*m, &ctx))
            .map(|m| m.seq)
            .collect();
        let by_keys: Vec<u32> = keyed
            .iter()
            .filter(|m| q.matches(*m, &ctx))
            .map(|m| m.msg.seq)
            .collect();
        assert_eq!(by_keys, by_header, "{criteria}");
    }
    // The fixtures are meant to hit: each of these finds something.
    for (criteria, want) in [
        ("SUBJECT \"caf\u{e9}\"", vec![8]),
        ("TO \"\"", vec![1, 2, 4, 5, 6]),
        ("SENTON 1-Jan-2024", vec![7]),
        ("BCC hidden", vec![8]),
    ] {
        let (q, _) = parse(format!("SEARCH {criteria}").as_bytes());
        let found: Vec<u32> = keyed
            .iter()
            .filter(|m| q.matches(*m, &ctx))
            .map(|m| m.msg.seq)
            .collect();
        assert_eq!(found, want, "{criteria}");
    }
    for criteria in [
        "BODY rust",
        "TEXT hello",
        "HEADER x-flag \"\"",
        "OR SUBJECT a BODY b",
    ] {
        let (q, _) = parse(format!("SEARCH {criteria}").as_bytes());
        assert!(!q.keyed(), "{criteria} needs more than the keys");
    }
    // SENT* take the first Date:, SORT the envelope's (the last), in UTC.
    let k = &keyed[6].keys;
    assert_eq!(k.sent_day, days_from_civil(2024, 1, 1));
    assert_eq!(k.sort_date(), Some(1_704_762_000));
    assert_eq!(keyed[2].keys.sort_date(), None, "no Date: at all");
}
