use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};

use super::*;

fn base(s: &str) -> String {
    base_subject(s.as_bytes()).0
}

#[test]
fn base_subject_rfc5256_section_2_1() {
    // (1) encoded words decoded, blanks collapsed.
    assert_eq!(
        base("=?utf-8?q?Gr=C3=BC=C3=9Fe?=  aus\tBern"),
        "Grüße aus Bern"
    );
    assert_eq!(base("  hello   world  "), "hello world");
    // (2) trailers, repeatedly.
    assert_eq!(base("report (fwd) (FWD)  "), "report");
    // (3) leaders: re, fw, fwd, with blobs before and inside, repeatedly.
    assert_eq!(base("Re: lunch"), "lunch");
    assert_eq!(base("RE: Re: re: lunch"), "lunch");
    assert_eq!(base("Fwd: Fw: FWD : lunch"), "lunch");
    assert_eq!(base("Re[2]: lunch"), "lunch");
    assert_eq!(base("Re [2]: lunch"), "lunch");
    assert_eq!(base("[list] Re: lunch"), "lunch");
    assert_eq!(base("[a][b] [c] Re: lunch"), "lunch");
    // (4) a blob alone, if something is left.
    assert_eq!(base("[list] lunch"), "lunch");
    assert_eq!(base("[list] [other] Re: [x] lunch"), "lunch");
    assert_eq!(base("[list]"), "[list]");
    assert_eq!(base("[list]   "), "[list]");
    // (6) the [fwd: …] wrapper, and everything again inside it.
    assert_eq!(base("[Fwd: Re: lunch (fwd)]"), "lunch");
    assert_eq!(base("Re: [fwd: [list] Re: lunch]"), "lunch");
    // Not leaders: no colon, a word that only starts alike.
    assert_eq!(base("Review: the plan"), "Review: the plan");
    assert_eq!(base("Re lunch"), "Re lunch");
    assert_eq!(base("Fwd lunch"), "Fwd lunch");
    assert_eq!(base(""), "");
    assert_eq!(base("Re:"), "");
    // Replies and forwards are told apart (§4 step 6).
    assert!(!base_subject(b"lunch").1);
    assert!(!base_subject(b"[list] lunch").1);
    assert!(base_subject(b"Re: lunch").1);
    assert!(base_subject(b"lunch (fwd)").1);
    assert!(base_subject(b"[fwd: lunch]").1);
}

#[test]
fn message_ids_and_sent_dates() {
    assert_eq!(
        msg_ids(b"<a@x> (comment <no@x>)\r\n <b@x>\t<c @ x>"),
        vec!["<a@x>", "<b@x>", "<c@x>"]
    );
    assert_eq!(msg_ids(b"none here <>"), Vec::<String>::new());
    assert_eq!(
        sent_date(Some(b"Mon, 1 Jan 2024 12:00:00 +0100")),
        Some(1_704_106_800)
    );
    assert_eq!(sent_date(Some(b"yesterday")), None);
    assert_eq!(sent_date(None), None);
}

fn msg(seq: u32, subject: &str, sent: i64, id: &str, refs: &[&str]) -> Msg {
    let (subject, reply) = base_subject(subject.as_bytes());
    Msg {
        seq,
        id: seq,
        sent,
        arrival: sent,
        text: Some(Box::new(MsgText {
            subject: subject.to_ascii_uppercase(),
            reply,
            message_id: (!id.is_empty()).then(|| id.to_string()),
            references: refs.iter().map(|s| s.to_string()).collect(),
            ..MsgText::default()
        })),
        ..Msg::default()
    }
}

fn crit(key: SortKey, reverse: bool) -> SortCriterion {
    SortCriterion { reverse, key }
}

#[test]
fn sort_keys_reverse_and_ties_by_sequence_number() {
    let mut m = vec![
        msg(1, "Re: b", 30, "", &[]),
        msg(2, "a", 10, "", &[]),
        msg(3, "[x] B", 20, "", &[]),
        msg(4, "c", 10, "", &[]),
    ];
    m[0].size = 5;
    m[1].size = 9;
    m[2].size = 5;
    m[3].size = 1;
    let ids = |v: Vec<&Msg>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        ids(sort(&m, &[crit(SortKey::Subject, false)])),
        [2, 1, 3, 4]
    );
    assert_eq!(ids(sort(&m, &[crit(SortKey::Date, false)])), [2, 4, 3, 1]);
    // REVERSE turns one key around; the sequence-number tie-break stays.
    assert_eq!(ids(sort(&m, &[crit(SortKey::Date, true)])), [1, 3, 2, 4]);
    assert_eq!(
        ids(sort(
            &m,
            &[crit(SortKey::Size, true), crit(SortKey::Subject, false)]
        )),
        [2, 1, 3, 4]
    );
}

#[test]
fn ordered_subject_threads() {
    // RFC 5256 §4 ORDEREDSUBJECT: by base subject, each thread its first
    // message with the others as children; threads by first sent date.
    let m = vec![
        msg(1, "b", 50, "", &[]),
        msg(2, "a", 10, "", &[]),
        msg(3, "Re: a", 20, "", &[]),
        msg(4, "Re: b", 60, "", &[]),
        msg(5, "c", 5, "", &[]),
        msg(6, "a", 15, "", &[]),
    ];
    let t = ordered_subject(&m);
    assert_eq!(thread_response(&t, &m), "* THREAD (5)(2 (6)(3))(1 4)\r\n");
    assert_eq!(thread_response(&ordered_subject(&[]), &[]), "* THREAD\r\n");
}

#[test]
fn references_threads() {
    let m = vec![
        // 1 starts a thread; 2 and 3 reply to it; 4 replies to 2.
        msg(1, "plan", 10, "<1@x>", &[]),
        msg(2, "Re: plan", 20, "<2@x>", &["<1@x>"]),
        msg(3, "Re: plan", 15, "<3@x>", &["<1@x>"]),
        msg(4, "Re: plan", 30, "<4@x>", &["<1@x>", "<2@x>"]),
        // 5 and 6 reply to a message we don't have (a dummy with two
        // children stays at the top).
        msg(5, "lost", 40, "<5@x>", &["<gone@x>"]),
        msg(6, "lost", 41, "<6@x>", &["<gone@x>"]),
        // 7 answers a missing message only: the dummy goes, 7 is a root.
        msg(7, "alone", 5, "<7@x>", &["<missing@x>"]),
        // 8 has the same base subject as 1 and no references: merged
        // under 1 (8 is a reply, 1 isn't).
        msg(8, "Re: plan", 50, "<8@x>", &[]),
        // 9 and 10: same subject, neither a reply: a dummy holds both.
        msg(9, "news", 60, "<9@x>", &[]),
        msg(10, "news", 55, "<10@x>", &[]),
        // 11 references itself and loops: no loop is made.
        msg(11, "loop", 70, "<11@x>", &["<12@x>", "<11@x>"]),
        msg(12, "loop2", 71, "<12@x>", &["<11@x>"]),
    ];
    let t = references(&m);
    assert_eq!(
        thread_response(&t, &m),
        "* THREAD (7)(1 (3)(2 4)(8))((5)(6))((10)(9))(11 12)\r\n"
    );
}

#[test]
fn references_duplicate_ids_and_no_ids() {
    let m = vec![
        msg(1, "x", 10, "<a@x>", &[]),
        msg(2, "y", 20, "<a@x>", &[]),
        msg(3, "z", 30, "", &["<a@x>"]),
    ];
    let t = references(&m);
    assert_eq!(thread_response(&t, &m), "* THREAD (1 3)(2)\r\n");
}
