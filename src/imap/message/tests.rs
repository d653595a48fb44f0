//! The message library's tests: Dovecot's own test vectors for
//! BODYSTRUCTURE, ENVELOPE and sections, edge cases, and a small fuzzer.

use super::*;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::ResponseCodec;

/// The untagged FETCH response imap-codec encodes for one item.
fn fetch_bytes(item: MessageDataItem<'static>) -> Vec<u8> {
    let response = Response::Data(Data::Fetch {
        seq: NonZeroU32::new(1).unwrap(),
        items: Vec1::from(item),
    });
    ResponseCodec::default().encode(&response).dump()
}

fn fetch(item: MessageDataItem<'static>) -> String {
    String::from_utf8_lossy(&fetch_bytes(item)).into_owned()
}

fn bodystructure(msg: &str) -> String {
    let crlf = to_crlf(msg.as_bytes());
    fetch(MessageDataItem::BodyStructure(body_structure(
        &parse(&crlf),
        true,
    )))
}

fn body(msg: &str) -> String {
    let crlf = to_crlf(msg.as_bytes());
    fetch(MessageDataItem::Body(body_structure(&parse(&crlf), false)))
}

fn env(msg: &str) -> String {
    let crlf = to_crlf(msg.as_bytes());
    fetch(MessageDataItem::Envelope(envelope(&parse(&crlf))))
}

fn line(item: &str, value: &str) -> String {
    format!("* 1 FETCH ({item} {value})\r\n")
}

fn nums(n: &[u32]) -> Vec<NonZeroU32> {
    n.iter().map(|&n| NonZeroU32::new(n).unwrap()).collect()
}

fn part(n: &[u32]) -> Part {
    Part(Vec1::try_from(nums(n)).unwrap())
}

fn names(list: &[&'static str]) -> Vec1<AString<'static>> {
    Vec1::try_from(
        list.iter()
            .map(|&n| AString::try_from(n).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

/// BODY[section] as a string; `None` for a missing part.
fn sec(msg: &str, section: Option<Section<'static>>) -> Option<String> {
    let crlf = to_crlf(msg.as_bytes());
    let parsed = parse(&crlf);
    self::section(&parsed, section.as_ref()).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn crlf(s: &str) -> String {
    String::from_utf8(to_crlf(s.as_bytes()).into_owned()).unwrap()
}

// Dovecot's test-imap-bodystructure.c vectors (the messages use LF; the
// sizes are of the CRLF form). imap-codec writes "TEXT" and
// "MESSAGE" "RFC822" where Dovecot keeps "text" / "message" "rfc822".
const DOVECOT_SIMPLE: &str = "From: user@domain.org\n\
    Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
    Mime-Version: 1.0\n\
    Content-Type: text/plain; charset=us-ascii\n\
    \n\
    body\n";

const DOVECOT_RFC822: &str = "From: user@domain.org\n\
    Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
    Mime-Version: 1.0\n\
    Content-Type: multipart/mixed; boundary=\"foo bar\"\n\
    \n\
    --foo bar\n\
    Content-Type: text/plain; charset=us-ascii\n\
    \n\
    See attached...\n\
    \n\
    --foo bar\n\
    Content-Type: message/rfc822\n\
    \n\
    From: user@domain.org\n\
    Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
    Mime-Version: 1.0\n\
    Content-Type: text/plain; charset=us-ascii\n\
    \n\
    body\n\
    \n\
    --foo bar--\n\
    \n";

const INNER_ENVELOPE: &str = "(\"Sat, 24 Mar 2017 23:00:00 +0200\" NIL \
    ((NIL NIL \"user\" \"domain.org\")) ((NIL NIL \"user\" \"domain.org\")) \
    ((NIL NIL \"user\" \"domain.org\")) NIL NIL NIL NIL NIL)";

#[test]
fn dovecot_simple_text() {
    assert_eq!(
        bodystructure(DOVECOT_SIMPLE),
        line(
            "BODYSTRUCTURE",
            "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL)"
        )
    );
    assert_eq!(
        body(DOVECOT_SIMPLE),
        line(
            "BODY",
            "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1)"
        )
    );
    assert_eq!(env(DOVECOT_SIMPLE), line("ENVELOPE", INNER_ENVELOPE));

    let msg = "From: user@domain.org\n\
        Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: text/plain; charset=utf-8\n\
        Content-Transfer-Encoding: 8bit\n\
        \n\
        body\n\
        \n";
    assert_eq!(
        bodystructure(msg),
        line(
            "BODYSTRUCTURE",
            "(\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 8 2 NIL NIL NIL NIL)"
        )
    );
}

#[test]
fn dovecot_simple_text_sections() {
    let m = DOVECOT_SIMPLE;
    let header = "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\
        Mime-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
    assert_eq!(sec(m, None).unwrap(), crlf(m));
    assert_eq!(sec(m, Some(Section::Header(None))).unwrap(), header);
    assert_eq!(sec(m, Some(Section::Text(None))).unwrap(), "body\r\n");
    // A non-multipart message has one part: its body.
    assert_eq!(sec(m, Some(Section::Part(part(&[1])))).unwrap(), "body\r\n");
    assert_eq!(sec(m, Some(Section::Mime(part(&[1])))).unwrap(), header);
    assert_eq!(sec(m, Some(Section::Part(part(&[2])))), None);
    assert_eq!(sec(m, Some(Section::Part(part(&[1, 1])))), None);
    assert_eq!(sec(m, Some(Section::Header(Some(part(&[1]))))), None);
    assert_eq!(
        sec(
            m,
            Some(Section::HeaderFields(
                None,
                names(&["DATE", "from", "X-None"])
            ))
        )
        .unwrap(),
        "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\r\n"
    );
    assert_eq!(
        sec(
            m,
            Some(Section::HeaderFieldsNot(
                None,
                names(&["mime-version", "Content-Type"])
            ))
        )
        .unwrap(),
        "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\r\n"
    );
    assert_eq!(
        sec(m, Some(Section::HeaderFields(None, names(&["x-none"])))).unwrap(),
        "\r\n"
    );
}

#[test]
fn dovecot_folded_boundary_and_empty_multipart() {
    let msg = "From: user@domain.org\n\
        Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\
        \n\
        --foo bar\n\
        Content-Type: text/x-myown; charset=us-ascii\n\
        \n\
        hello\n\
        \n\
        --foo bar--\n\
        \n";
    assert_eq!(
        bodystructure(msg),
        line(
            "BODYSTRUCTURE",
            "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL) \
             \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
        )
    );
    assert_eq!(
        body(msg),
        line(
            "BODY",
            "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1) \"mixed\")"
        )
    );

    // A multipart without parts is written with one empty text/plain.
    let msg = "Content-Type: multipart/mixed; boundary=\"foo\"\n\n";
    assert_eq!(
        bodystructure(msg),
        line(
            "BODYSTRUCTURE",
            "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \
             \"mixed\" (\"boundary\" \"foo\") NIL NIL NIL)"
        )
    );
    assert_eq!(
        body(msg),
        line(
            "BODY",
            "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")"
        )
    );
}

#[test]
fn dovecot_message_rfc822() {
    assert_eq!(
        bodystructure(DOVECOT_RFC822),
        line(
            "BODYSTRUCTURE",
            &format!(
                "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 17 1 NIL NIL NIL NIL)\
                 (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 133 {INNER_ENVELOPE} \
                 (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL) 6 \
                 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
            )
        )
    );
    assert_eq!(
        body(DOVECOT_RFC822),
        line(
            "BODY",
            &format!(
                "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 17 1)\
                 (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 133 {INNER_ENVELOPE} \
                 (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1) 6) \"mixed\")"
            )
        )
    );

    let msg = "From: user@domain.org\n\
        Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"foo bar\"\n\
        \n\
        --foo bar\n\
        Content-Type: text/plain; charset=us-ascii\n\
        Content-ID: <A.frop.example.com>\n\
        Content-Description: Container message\n\
        \n\
        See attached...\n\
        \n\
        --foo bar\n\
        Content-Type: message/rfc822\n\
        Content-ID: <B.frop.example.com>\n\
        Content-Description: Forwarded\n\
        \n\
        From: user@domain.org\n\
        Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: text/plain; charset=us-ascii\n\
        \n\
        body\n\
        \n\
        --foo bar--\n";
    assert_eq!(
        bodystructure(msg),
        line(
            "BODYSTRUCTURE",
            &format!(
                "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") \"<A.frop.example.com>\" \"Container message\" \
                 \"7bit\" 17 1 NIL NIL NIL NIL)\
                 (\"MESSAGE\" \"RFC822\" NIL \"<B.frop.example.com>\" \"Forwarded\" \"7bit\" 133 {INNER_ENVELOPE} \
                 (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL) 6 \
                 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
            )
        )
    );
}

#[test]
fn message_rfc822_sections() {
    let m = DOVECOT_RFC822;
    let inner_header = "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\
        Mime-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
    assert_eq!(
        sec(m, Some(Section::Part(part(&[1])))).unwrap(),
        "See attached...\r\n"
    );
    assert_eq!(
        sec(m, Some(Section::Part(part(&[2])))).unwrap(),
        format!("{inner_header}body\r\n")
    );
    assert_eq!(sec(m, Some(Section::Part(part(&[2])))).unwrap().len(), 133);
    assert_eq!(
        sec(m, Some(Section::Mime(part(&[2])))).unwrap(),
        "Content-Type: message/rfc822\r\n\r\n"
    );
    assert_eq!(
        sec(m, Some(Section::Header(Some(part(&[2]))))).unwrap(),
        inner_header
    );
    assert_eq!(
        sec(m, Some(Section::Text(Some(part(&[2]))))).unwrap(),
        "body\r\n"
    );
    assert_eq!(
        sec(m, Some(Section::Part(part(&[2, 1])))).unwrap(),
        "body\r\n"
    );
    assert_eq!(sec(m, Some(Section::Part(part(&[2, 2])))), None);
    assert_eq!(
        sec(
            m,
            Some(Section::HeaderFields(Some(part(&[2])), names(&["date"])))
        )
        .unwrap(),
        "Date: Sat, 24 Mar 2017 23:00:00 +0200\r\n\r\n"
    );
    assert_eq!(sec(m, Some(Section::Header(Some(part(&[1]))))), None);
    assert_eq!(sec(m, Some(Section::Text(Some(part(&[3]))))), None);
}

#[test]
fn dovecot_everything() {
    let msg = "From: user@domain.org\n\
        Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\
        \n\
        Root MIME prologue\n\
        \n\
        --foo bar\n\
        Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n\
        Content-ID: <foo@example.com>\n\
        Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\
        Content-Disposition: inline; foo=bar\n\
        Content-Description: hellodescription\n\
        Content-Language: en, fi, se\n\
        Content-Location: http://example.com/test.txt\n\
        \n\
        hello\n\
        \n\
        --foo bar\n\
        Content-Type: message/rfc822\n\
        \n\
        From: sub@domain.org\n\
        To: sub-to1@domain.org, sub-to2@domain.org\n\
        Date: Sun, 12 Aug 2012 12:34:56 +0300\n\
        Subject: submsg\n\
        Content-Type: multipart/alternative; boundary=\"sub1\"\n\
        \n\
        Sub MIME prologue\n\
        --sub1\n\
        Content-Type: text/html\n\
        Content-Transfer-Encoding: 8bit\n\
        \n\
        <p>Hello world</p>\n\
        \n\
        --sub1\n\
        Content-Type: text/plain\n\
        Content-Transfer-Encoding: ?invalid\n\
        \n\
        Hello another world\n\
        \n\
        --sub1--\n\
        Sub MIME epilogue\n\
        \n\
        --foo bar--\n\
        Root MIME epilogue\n";
    let inner_env = "(\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) \
        ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) \
        ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL)";
    assert_eq!(
        bodystructure(msg),
        line(
            "BODYSTRUCTURE",
            &format!(
                "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
                 \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" \
                 (\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")\
                 (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 {inner_env} \
                 ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)\
                 (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1 NIL NIL NIL NIL) \
                 \"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) \
                 \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
            )
        )
    );
    assert_eq!(
        body(msg),
        line(
            "BODY",
            &format!(
                "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
                 \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1)\
                 (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 {inner_env} \
                 ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1)\
                 (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1) \"alternative\") 21) \
                 \"mixed\")"
            )
        )
    );
    assert_eq!(
        sec(msg, Some(Section::Part(part(&[2, 1])))).unwrap(),
        "<p>Hello world</p>\r\n"
    );
    assert_eq!(
        sec(msg, Some(Section::Part(part(&[2, 2])))).unwrap(),
        "Hello another world\r\n"
    );
    assert_eq!(
        sec(msg, Some(Section::Mime(part(&[2, 2])))).unwrap(),
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: ?invalid\r\n\r\n"
    );
}

const MIXED: &str = "From: Alice <alice@example.org>\n\
    To: Bob <bob@example.com>\n\
    Subject: Report\n\
    Date: Mon, 1 Jan 2024 10:00:00 +0000\n\
    Message-ID: <m1@example.org>\n\
    MIME-Version: 1.0\n\
    Content-Type: multipart/mixed; boundary=\"XYZ\"\n\
    \n\
    This is a multi-part message.\n\
    --XYZ\n\
    Content-Type: text/plain; charset=utf-8\n\
    \n\
    Hello Bob.\n\
    --XYZ\n\
    Content-Type: text/html; charset=utf-8\n\
    Content-Transfer-Encoding: quoted-printable\n\
    \n\
    <p>Hello =3D Bob.</p>\n\
    --XYZ\n\
    Content-Type: application/pdf; name=\"r.pdf\"\n\
    Content-Transfer-Encoding: base64\n\
    Content-Disposition: attachment; filename=\"r.pdf\"\n\
    \n\
    JVBERi0xLjQK\n\
    JSVFT0YK\n\
    --XYZ--\n";

#[test]
fn mixed_text_html_attachment() {
    // The line end before a boundary line belongs to the boundary
    // (RFC 2046 §5.1.1), so "Hello Bob." has no line end and 0 lines.
    assert_eq!(
        bodystructure(MIXED),
        line(
            "BODYSTRUCTURE",
            "((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL)\
             (\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 21 0 NIL NIL NIL NIL)\
             (\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 22 NIL \
             (\"attachment\" (\"filename\" \"r.pdf\")) NIL NIL) \
             \"mixed\" (\"boundary\" \"XYZ\") NIL NIL NIL)"
        )
    );
    assert_eq!(
        body(MIXED),
        line(
            "BODY",
            "((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 0)\
             (\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 21 0)\
             (\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 22) \"mixed\")"
        )
    );
    assert_eq!(
        env(MIXED),
        line(
            "ENVELOPE",
            "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Report\" ((\"Alice\" NIL \"alice\" \"example.org\")) \
             ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) \
             ((\"Bob\" NIL \"bob\" \"example.com\")) NIL NIL NIL \"<m1@example.org>\")"
        )
    );
}

#[test]
fn mixed_sections() {
    let m = MIXED;
    assert_eq!(
        sec(m, Some(Section::Part(part(&[1])))).unwrap(),
        "Hello Bob."
    );
    assert_eq!(
        sec(m, Some(Section::Part(part(&[2])))).unwrap(),
        "<p>Hello =3D Bob.</p>"
    );
    assert_eq!(
        sec(m, Some(Section::Part(part(&[3])))).unwrap(),
        "JVBERi0xLjQK\r\nJSVFT0YK"
    );
    assert_eq!(sec(m, Some(Section::Part(part(&[4])))), None);
    // Dovecot: a leaf is its own part 1.
    assert_eq!(
        sec(m, Some(Section::Part(part(&[1, 1])))).unwrap(),
        "Hello Bob."
    );
    assert_eq!(sec(m, Some(Section::Part(part(&[1, 2])))), None);
    assert_eq!(
        sec(m, Some(Section::Mime(part(&[1])))).unwrap(),
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    assert_eq!(sec(m, Some(Section::Header(Some(part(&[2]))))), None);
    let text = sec(m, Some(Section::Text(None))).unwrap();
    assert!(text.starts_with("This is a multi-part message.\r\n--XYZ\r\nContent-Type: text/plain"));
    assert!(text.ends_with("JSVFT0YK\r\n--XYZ--\r\n"));
    let header = sec(m, Some(Section::Header(None))).unwrap();
    assert_eq!(format!("{header}{text}"), crlf(m));
    assert_eq!(
        sec(
            m,
            Some(Section::HeaderFields(None, names(&["SUBJECT", "to"])))
        )
        .unwrap(),
        "To: Bob <bob@example.com>\r\nSubject: Report\r\n\r\n"
    );
    assert_eq!(
        sec(
            m,
            Some(Section::HeaderFieldsNot(
                None,
                names(&["from", "to", "subject", "date", "message-id"])
            ))
        )
        .unwrap(),
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
    );
}

#[test]
fn binary_decodes_leaf_parts() {
    let crlf = to_crlf(MIXED.as_bytes());
    let p = parse(&crlf);
    let bin = |n: &[u32]| binary_section(&p, &nums(n)).map(|b| b.into_owned());
    assert_eq!(bin(&[1]).unwrap(), b"Hello Bob.");
    assert_eq!(bin(&[2]).unwrap(), b"<p>Hello = Bob.</p>");
    assert_eq!(bin(&[3]).unwrap(), b"%PDF-1.4\n%%EOF\n");
    assert_eq!(bin(&[]).unwrap(), crlf.as_ref());
    assert_eq!(bin(&[4]), Err(BinaryError::NoSuchPart));

    let msg =
        to_crlf(b"Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n");
    assert_eq!(
        binary_section(&parse(&msg), &nums(&[1])),
        Err(BinaryError::UnknownCte)
    );
    // Without MIME-Version or Content-Type, Content-* fields don't count.
    let msg = to_crlf(b"Content-Transfer-Encoding: base64\n\naGVsbG8=\n");
    assert_eq!(
        binary_section(&parse(&msg), &nums(&[1])).unwrap().as_ref(),
        b"aGVsbG8=\r\n"
    );
}

#[test]
fn cte_decoders() {
    assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
    assert_eq!(decode_base64(b"aGVsbA"), b"hell");
    assert_eq!(decode_base64(b"a*G!V\x00sbG8"), b"hello");
    assert_eq!(decode_qp(b"a=3Db =\r\nc  \r\nd=zz=4"), b"a=b c\r\nd=zz=4");
    assert_eq!(decode_qp(b"caf=C3=a9\r\n"), "café\r\n".as_bytes());
}

const NESTED: &str = "From: a@b.c\n\
    Content-Type: multipart/mixed; boundary=outer\n\
    \n\
    --outer\n\
    Content-Type: multipart/alternative; boundary=inner\n\
    \n\
    --inner\n\
    Content-Type: text/plain\n\
    \n\
    plain\n\
    --inner\n\
    Content-Type: text/html\n\
    \n\
    <b>html</b>\n\
    --inner--\n\
    --outer\n\
    Content-Type: image/png\n\
    Content-Transfer-Encoding: base64\n\
    \n\
    iVBORw0KGgo=\n\
    --outer--\n";

#[test]
fn alternative_inside_mixed() {
    assert_eq!(
        bodystructure(NESTED),
        line(
            "BODYSTRUCTURE",
            "(((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)\
             (\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL) \
             \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)\
             (\"image\" \"png\" NIL NIL NIL \"base64\" 12 NIL NIL NIL NIL) \
             \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)"
        )
    );
    assert_eq!(
        body(NESTED),
        line(
            "BODY",
            "(((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0)\
             (\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0) \"alternative\")\
             (\"image\" \"png\" NIL NIL NIL \"base64\" 12) \"mixed\")"
        )
    );
    let m = NESTED;
    assert_eq!(sec(m, Some(Section::Part(part(&[1, 1])))).unwrap(), "plain");
    assert_eq!(
        sec(m, Some(Section::Part(part(&[1, 2])))).unwrap(),
        "<b>html</b>"
    );
    assert_eq!(
        sec(m, Some(Section::Mime(part(&[1, 2])))).unwrap(),
        "Content-Type: text/html\r\n\r\n"
    );
    assert_eq!(sec(m, Some(Section::Part(part(&[1, 3])))), None);
    assert_eq!(
        sec(m, Some(Section::Part(part(&[2])))).unwrap(),
        "iVBORw0KGgo="
    );
    // As in Dovecot, the line end after the inner close delimiter stays
    // in the inner multipart.
    assert_eq!(
        sec(m, Some(Section::Part(part(&[1])))).unwrap(),
        "--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n--inner\r\nContent-Type: text/html\r\n\r\n\
         <b>html</b>\r\n--inner--\r\n"
    );
}

// Dovecot's test-imap-envelope.c vectors (from imaptest).
#[test]
fn dovecot_envelopes() {
    let msg = "Message-ID: <msg@id>\n\
        In-Reply-To: <reply@to.id>\n\
        Date: Thu, 15 Feb 2007 01:02:03 +0200\n\
        Subject: subject header\n\
        From: From Real <fromuser@fromdomain.org>\n\
        To: To Real <touser@todomain.org>\n\
        Cc: Cc Real <ccuser@ccdomain.org>\n\
        Bcc: Bcc Real <bccuser@bccdomain.org>\n\
        Sender: Sender Real <senderuser@senderdomain.org>\n\
        Reply-To: ReplyTo Real <replytouser@replytodomain.org>\n\
        \n\
        body\n";
    assert_eq!(
        env(msg),
        line(
            "ENVELOPE",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"subject header\" \
             ((\"From Real\" NIL \"fromuser\" \"fromdomain.org\")) \
             ((\"Sender Real\" NIL \"senderuser\" \"senderdomain.org\")) \
             ((\"ReplyTo Real\" NIL \"replytouser\" \"replytodomain.org\")) \
             ((\"To Real\" NIL \"touser\" \"todomain.org\")) \
             ((\"Cc Real\" NIL \"ccuser\" \"ccdomain.org\")) \
             ((\"Bcc Real\" NIL \"bccuser\" \"bccdomain.org\")) \
             \"<reply@to.id>\" \"<msg@id>\")"
        )
    );

    let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain\n\nbody\n";
    assert_eq!(
        env(msg),
        line(
            "ENVELOPE",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((NIL NIL \"user\" \"domain\")) \
             ((NIL NIL \"user\" \"domain\")) ((NIL NIL \"user\" \"domain\")) NIL NIL NIL NIL NIL)"
        )
    );

    let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\n\
        From: user@domain (Real Name)\n\
        To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\n\
        Cc: group:;, group2: (foo) ;\n\
        \n\
        body\n";
    assert_eq!(
        env(msg),
        line(
            "ENVELOPE",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((\"Real Name\" NIL \"user\" \"domain\")) \
             ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
             ((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")(NIL NIL NIL NIL)\
             (NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL)) \
             ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) \
             NIL NIL NIL)"
        )
    );

    // Empty Sender and Reply-To default to From.
    let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\n\
        From: user@domain (Real Name)\n\
        Sender: \n\
        Reply-To: \n\
        \n\
        body\n";
    assert_eq!(
        env(msg),
        line(
            "ENVELOPE",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((\"Real Name\" NIL \"user\" \"domain\")) \
             ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
             NIL NIL NIL NIL NIL)"
        )
    );

    let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: <@route:user@domain>\n\nbody\n";
    assert_eq!(
        env(msg),
        line(
            "ENVELOPE",
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((NIL \"@route\" \"user\" \"domain\")) \
             ((NIL \"@route\" \"user\" \"domain\")) ((NIL \"@route\" \"user\" \"domain\")) \
             NIL NIL NIL NIL NIL)"
        )
    );
}

#[test]
fn envelope_raw_values() {
    // Encoded words stay raw; folded values are unfolded; a subject or
    // name that had to change (or has quotes, 8-bit) is a literal.
    let msg = "Date: Mon, 1 Jan 2024\n 10:00:00 +0000\n\
        Subject: =?utf-8?q?caf=C3=A9?=\n and more\n\
        From: =?utf-8?q?J=C3=B6rg?= <jorg@example.de>\n\
        To: \"Doe, John\" <jd@example.org>, undisclosed\n\
        Cc: \"Q \\\"the\\\" man\" <q@example.org>\n\
        Message-ID:\n <folded@example.org>\n\
        \n\
        body\n";
    let jorg = "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"jorg\" \"example.de\"))";
    assert_eq!(
        env(msg),
        line(
            "ENVELOPE",
            &format!(
                "(\"Mon, 1 Jan 2024 10:00:00 +0000\" {{30}}\r\n=?utf-8?q?caf=C3=A9?= and more \
                 {jorg} {jorg} {jorg} \
                 ((\"Doe, John\" NIL \"jd\" \"example.org\")(NIL NIL \"undisclosed\" \"MISSING_DOMAIN\")) \
                 (({{11}}\r\nQ \"the\" man NIL \"q\" \"example.org\")) NIL NIL \" <folded@example.org>\")"
            )
        )
    );

    assert_eq!(
        env("Subject: caf\u{e9}\n\n"),
        line(
            "ENVELOPE",
            "(NIL {5}\r\ncaf\u{e9} NIL NIL NIL NIL NIL NIL NIL NIL)"
        )
    );
    assert_eq!(
        env("Subject: \t two  spaces \n\n"),
        line(
            "ENVELOPE",
            "(NIL {10}\r\ntwo spaces NIL NIL NIL NIL NIL NIL NIL NIL)"
        )
    );
    // The last of repeated fields counts (as in Dovecot).
    assert_eq!(
        env("Subject: one\nSubject: two\n\n"),
        line("ENVELOPE", "(NIL \"two\" NIL NIL NIL NIL NIL NIL NIL NIL)")
    );
}

#[test]
fn missing_headers() {
    assert_eq!(
        env("Subject: hi\n\nbody\n"),
        line("ENVELOPE", "(NIL \"hi\" NIL NIL NIL NIL NIL NIL NIL NIL)")
    );
    assert_eq!(
        env("Subject:\n\n"),
        line("ENVELOPE", "(NIL \"\" NIL NIL NIL NIL NIL NIL NIL NIL)")
    );
    assert_eq!(
        env(""),
        line("ENVELOPE", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)")
    );
    assert_eq!(
        bodystructure(""),
        line(
            "BODYSTRUCTURE",
            "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
        )
    );
    assert_eq!(sec("", None).unwrap(), "");
    assert_eq!(sec("", Some(Section::Header(None))).unwrap(), "");
    assert_eq!(sec("", Some(Section::Text(None))).unwrap(), "");
    // A header without a body or blank line.
    assert_eq!(
        sec("Subject: x\n", Some(Section::Header(None))).unwrap(),
        "Subject: x\r\n"
    );
    assert_eq!(sec("Subject: x\n", Some(Section::Text(None))).unwrap(), "");
    assert_eq!(
        sec(
            "Subject: x\n",
            Some(Section::HeaderFields(None, names(&["subject"])))
        )
        .unwrap(),
        "Subject: x\r\n"
    );
}

#[test]
fn content_type_details() {
    // No MIME-Version and no Content-Type: Content-* fields don't count.
    assert_eq!(
        body("Content-Transfer-Encoding: 8bit\n\nx\n"),
        line(
            "BODY",
            "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)"
        )
    );
    // An invalid Content-Type is text/plain (RFC 2045 §5.2).
    assert_eq!(
        body("MIME-Version: 1.0\nContent-Type: garbage\n\nx"),
        line(
            "BODY",
            "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)"
        )
    );
    // Case is kept; RFC 2231 continuations are joined, still encoded.
    assert_eq!(
        body(
            "MIME-Version: 1.0\nContent-Type: Application/X-Thing; NAME*0=\"a b\"; NAME*1=c; \
             title*0*=us-ascii'en'x%20y; title*1=\"%z\"\n\nxx\n"
        ),
        line(
            "BODY",
            "(\"Application\" \"X-Thing\" (\"NAME\" \"a bc\" \"title*\" \"us-ascii'en'x%20y%25z\") \
             NIL NIL \"7bit\" 4)"
        )
    );
    // multipart/digest parts default to message/rfc822.
    let digest = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: in\n\nhi\n--d--\n";
    assert_eq!(
        body(digest),
        line(
            "BODY",
            "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 17 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 2 0) 2) \"digest\")"
        )
    );
}

#[test]
fn boundary_edge_cases() {
    // A part whose header runs into the next boundary: no body, and the
    // line end before the boundary isn't part of the header.
    let msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b\n\nx\n--b--\n";
    assert_eq!(
        body(msg),
        line(
            "BODY",
            "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)\
             (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) \"mixed\")"
        )
    );
    assert_eq!(
        sec(msg, Some(Section::Mime(part(&[1])))).unwrap(),
        "Content-Type: text/plain"
    );
    assert_eq!(sec(msg, Some(Section::Mime(part(&[2])))).unwrap(), "\r\n");
    // Missing close delimiter: the last part runs to the end.
    let msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nabc\n";
    assert_eq!(
        sec(msg, Some(Section::Part(part(&[1])))).unwrap(),
        "abc\r\n"
    );
    // The longest matching boundary wins; trailing blanks after a
    // boundary are allowed.
    let msg = "Content-Type: multipart/mixed; boundary=a\n\n--a\n\
        Content-Type: multipart/mixed; boundary=ab\n\n--ab  \n\nin\n--ab--\n--a--\n";
    assert_eq!(sec(msg, Some(Section::Part(part(&[1, 1])))).unwrap(), "in");
    // An outer boundary ends an inner multipart that wasn't closed.
    let msg = "Content-Type: multipart/mixed; boundary=a\n\n--a\n\
        Content-Type: multipart/mixed; boundary=b\n\n--b\n\ninner\n--a\n\nsecond\n--a--\n";
    assert_eq!(
        sec(msg, Some(Section::Part(part(&[1, 1])))).unwrap(),
        "inner"
    );
    assert_eq!(sec(msg, Some(Section::Part(part(&[2])))).unwrap(), "second");
}

#[test]
fn lf_and_crlf_input_agree() {
    assert_eq!(to_crlf(b"a\nb\r\nc\n").as_ref(), b"a\r\nb\r\nc\r\n");
    assert_eq!(to_crlf(b"\n\n").as_ref(), b"\r\n\r\n");
    assert!(matches!(to_crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
    assert!(matches!(to_crlf(b"no line end"), Cow::Borrowed(_)));
    for msg in [DOVECOT_SIMPLE, DOVECOT_RFC822, MIXED, NESTED] {
        let lf = to_crlf(msg.as_bytes());
        let crlf_text = msg.replace('\n', "\r\n");
        let native = to_crlf(crlf_text.as_bytes());
        assert!(matches!(native, Cow::Borrowed(_)));
        assert_eq!(lf, native);
        let (a, b) = (parse(&lf), parse(&native));
        assert_eq!(envelope(&a), envelope(&b));
        assert_eq!(body_structure(&a, true), body_structure(&b, true));
    }
}

#[test]
fn garbage_is_headerless_text() {
    let msg = "just some text\nno headers here\n\nmore\n";
    assert_eq!(sec(msg, Some(Section::Header(None))).unwrap(), "");
    assert_eq!(sec(msg, Some(Section::Text(None))).unwrap(), crlf(msg));
    assert_eq!(
        body(msg),
        line(
            "BODY",
            "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 41 4)"
        )
    );
    assert_eq!(
        env(msg),
        line("ENVELOPE", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)")
    );
    // An mbox "From " line before real fields doesn't make it header-less.
    let msg = "From someone Mon Jan  1 00:00:00 2024\nSubject: s\n\nb\n";
    assert_eq!(sec(msg, Some(Section::Text(None))).unwrap(), "b\r\n");
    // NULs and 8-bit garbage still give valid IMAP strings.
    let crlf = to_crlf(b"Subject: a\0b\xff\n\n");
    assert_eq!(
        fetch_bytes(MessageDataItem::Envelope(envelope(&parse(&crlf)))),
        b"* 1 FETCH (ENVELOPE (NIL {4}\r\na\x80b\xff NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
    );
}

#[test]
fn partial_ranges() {
    assert_eq!(partial(b"hello", 0, 5), b"hello");
    assert_eq!(partial(b"hello", 1, 3), b"ell");
    assert_eq!(partial(b"hello", 3, 100), b"lo");
    assert_eq!(partial(b"hello", 5, 1), b"");
    assert_eq!(partial(b"hello", 9, 1), b"");
    assert_eq!(partial(b"hello", u32::MAX, u32::MAX), b"");
    assert_eq!(partial(b"hello", 2, u32::MAX), b"llo");
}

#[test]
fn deep_nesting_is_bounded() {
    let deep = "Content-Type: message/rfc822\n\n".repeat(5000);
    let p = parse(deep.as_bytes());
    let _ = body_structure(&p, true);
    let _ = envelope(&p);
    let mut multi = String::new();
    for i in 0..3000 {
        multi.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
        ));
    }
    let p = parse(multi.as_bytes());
    let _ = body_structure(&p, false);
    let deep_part: Vec<u32> = vec![1; 300];
    let _ = section(&p, Some(&Section::Part(part(&deep_part))));
    // Too many parts: the first 10000 or so are parts, the rest is text.
    let many = format!(
        "Content-Type: multipart/mixed; boundary=b\n\n{}",
        "--b\n".repeat(50_000)
    );
    let p = parse(many.as_bytes());
    assert!(section(&p, Some(&Section::Part(part(&[9_000])))).is_some());
    assert!(section(&p, Some(&Section::Part(part(&[10_001])))).is_none());
    assert_eq!(
        section(&p, Some(&Section::Text(None))).unwrap().len(),
        4 * 50_000
    );
}

/// Random messages built from MIME-ish pieces and random bytes: nothing
/// panics, and HEADER + TEXT is always the whole message.
#[test]
fn fuzz_never_panics() {
    const PIECES: &[&[u8]] = &[
        b"From: a@b\n",
        b"Subject: x\n",
        b"To: g: a@b, <@r,@s:x@y>;, \"q\\\" \" <z@[1.2.3.4]> (c\\) (d)\n",
        b"Content-Type: multipart/mixed; boundary=b\n",
        b"Content-Type: multipart/digest; boundary=\"c\"\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Type: text/plain; charset*0*=x'y'%; charset*2=z; q=\"\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Transfer-Encoding: quoted-printable\n",
        b"Content-Disposition: attachment; filename==?x?q?a?=\n",
        b"Content-Language: en, (x) fi,\n",
        b"MIME-Version: 1.0\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"--b\n",
        b"--b--\n",
        b"--c\n",
        b"--c--",
        b" folded (\n",
        b"text =3D=\n",
        b"\"",
        b"(",
        b")",
        b"<",
        b">",
        b"@",
        b",",
        b";",
        b":",
        b"\\",
        b"\0",
        b"\xff\xfe",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let sections = [
        None,
        Some(Section::Header(None)),
        Some(Section::Text(None)),
        Some(Section::Part(part(&[1]))),
        Some(Section::Part(part(&[2, 1]))),
        Some(Section::Part(part(&[1, 1, 1]))),
        Some(Section::Mime(part(&[1]))),
        Some(Section::Header(Some(part(&[1])))),
        Some(Section::Text(Some(part(&[2])))),
        Some(Section::HeaderFields(None, names(&["subject", "from"]))),
        Some(Section::HeaderFieldsNot(Some(part(&[1])), names(&["to"]))),
    ];
    for _ in 0..600 {
        let mut raw = Vec::new();
        for _ in 0..next() % 40 {
            if next() % 4 == 0 {
                raw.extend((0..next() % 8).map(|_| next() as u8));
            } else {
                raw.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
        }
        let crlf = to_crlf(&raw);
        let p = parse(&crlf);
        let _ = fetch(MessageDataItem::Envelope(envelope(&p)));
        let _ = fetch(MessageDataItem::BodyStructure(body_structure(&p, true)));
        let _ = fetch(MessageDataItem::Body(body_structure(&p, false)));
        for s in &sections {
            let _ = section(&p, s.as_ref());
        }
        for n in [&[][..], &[1], &[1, 1], &[2], &[2, 1]] {
            let _ = binary_section(&p, &nums(n));
        }
        let header = section(&p, Some(&Section::Header(None))).unwrap();
        let text = section(&p, Some(&Section::Text(None))).unwrap();
        assert_eq!([header.as_ref(), text.as_ref()].concat(), crlf.as_ref());
    }
}
