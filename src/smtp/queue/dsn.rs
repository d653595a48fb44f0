//! Delivery status notifications (RFC 3464 `multipart/report`, RFC 6522)
//! for bounces and delay warnings, built with mail-builder. They go from the
//! null sender `<>`, so a DSN is never bounced (no loops), and never to it.

use std::time::SystemTime;

use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;

use super::spool::{from_unix, Envelope};
use crate::smtp::received::rfc5322_date;

/// Postfix's bounce_size_limit: larger originals come back as headers only.
pub const BOUNCE_SIZE_LIMIT: u64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Action: failed.
    Failure,
    /// Action: delayed (a warning; delivery goes on).
    Delay,
}

/// One recipient in the report.
#[derive(Debug, Clone)]
pub struct Entry {
    pub address: String,
    pub orcpt: Option<String>,
    /// The diagnostic, e.g. `host mx[1.2.3.4] said: 550 5.1.1 ...`.
    pub text: String,
    pub remote_mta: Option<String>,
}

/// The enhanced status code (RFC 3463) in a diagnostic, or a default for
/// the kind of failure.
pub fn status_code(text: &str, kind: Kind) -> String {
    for word in text.split_whitespace() {
        let parts: Vec<&str> = word.split('.').collect();
        if parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            let mut code = word.to_string();
            if kind == Kind::Failure && parts[0] == "4" {
                // Expired after temporary failures: a permanent failure now.
                code.replace_range(0..1, "5");
            }
            return code;
        }
    }
    match kind {
        Kind::Failure if text.contains("loops back to myself") => "5.4.6".into(),
        Kind::Failure => "5.0.0".into(),
        Kind::Delay => "4.0.0".into(),
    }
}

/// The `smtp; 550 ...` diagnostic: the remote reply when there was one.
fn diagnostic(text: &str) -> String {
    match text.split_once(" said: ") {
        Some((_, reply)) => format!("smtp; {}", reply.replace(['\r', '\n'], " ")),
        None => format!("X-Pigeonpost; {}", text.replace(['\r', '\n'], " ")),
    }
}

/// The original message's header section (up to the first empty line).
fn header_section(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    &message[..end]
}

/// Builds the DSN to `env.sender` about `entries`.
pub fn build(
    env: &Envelope,
    kind: Kind,
    entries: &[Entry],
    myhostname: &str,
    original: &[u8],
    now: SystemTime,
) -> Vec<u8> {
    let (subject, intro, action) = match kind {
        Kind::Failure => (
            "Undelivered Mail Returned to Sender",
            "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. It's attached below.",
            "failed",
        ),
        Kind::Delay => (
            "Delayed Mail (still being retried)",
            "Your message could not be delivered for some time. It will be\r\nretried until it is too old; you do not have to send it again.",
            "delayed",
        ),
    };
    let mut human = format!(
        "This is the mail system at host {myhostname}.\r\n\r\n{intro}\r\n\r\n\
         For further assistance, please send mail to postmaster.\r\n\r\n\
         If you do so, please include this problem report. You can\r\n\
         delete your own text from the attached returned message.\r\n\r\n\
         \x20                  The mail system\r\n"
    );
    for e in entries {
        human.push_str(&format!("\r\n<{}>: {}\r\n", e.address, e.text));
    }

    let mut status = format!(
        "Reporting-MTA: dns; {myhostname}\r\nX-Pigeonpost-Queue-ID: {}\r\nX-Pigeonpost-Sender: rfc822; {}\r\nArrival-Date: {}\r\n",
        env.id,
        env.sender,
        rfc5322_date(from_unix(env.arrival))
    );
    if let Some(id) = &env.envid {
        status.push_str(&format!("Original-Envelope-Id: {id}\r\n"));
    }
    for e in entries {
        status.push_str(&format!("\r\nFinal-Recipient: rfc822; {}\r\n", e.address));
        if let Some(o) = &e.orcpt {
            let o = o.strip_prefix("rfc822;").unwrap_or(o).trim();
            status.push_str(&format!("Original-Recipient: rfc822; {o}\r\n"));
        }
        status.push_str(&format!(
            "Action: {action}\r\nStatus: {}\r\n",
            status_code(&e.text, kind)
        ));
        if let Some(m) = &e.remote_mta {
            let host = m.split('[').next().unwrap_or(m);
            status.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
        }
        status.push_str(&format!("Diagnostic-Code: {}\r\n", diagnostic(&e.text)));
    }

    // RFC 3462: the whole message when asked (RET=FULL) or by default if
    // small, else the headers only (RET=HDRS, or too big).
    let whole = env.ret_full != Some(false) && (original.len() as u64) <= BOUNCE_SIZE_LIMIT;
    let cte = if env.eight_bit || env.smtputf8 {
        "8bit"
    } else {
        "7bit"
    };
    let returned = if whole {
        MimePart::new(
            ContentType::new("message/rfc822"),
            BodyPart::Binary(original.to_vec().into()),
        )
    } else {
        MimePart::new(
            ContentType::new("text/rfc822-headers"),
            BodyPart::Binary(header_section(original).to_vec().into()),
        )
    }
    .transfer_encoding(cte)
    .header("Content-Description", Raw::new("Undelivered Message"));

    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        BodyPart::Multipart(vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "us-ascii"),
                BodyPart::Text(human.into()),
            )
            .header("Content-Description", Raw::new("Notification")),
            MimePart::new(
                ContentType::new("message/delivery-status"),
                BodyPart::Binary(status.into_bytes().into()),
            )
            .transfer_encoding("7bit")
            .header("Content-Description", Raw::new("Delivery report")),
            returned,
        ]),
    );
    let daemon = format!("MAILER-DAEMON@{myhostname}");
    MessageBuilder::new()
        .from(("Mail Delivery System", daemon.as_str()))
        .to(env.sender.clone())
        .subject(subject)
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .message_id(format!(
            "{}.dsn@{myhostname}",
            crate::smtp::received::new_queue_id()
        ))
        .date(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        )
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::queue::spool::{QueuedRcpt, RcptState};

    fn env(ret_full: Option<bool>) -> Envelope {
        Envelope {
            id: "ABC123".into(),
            sender: "alice@example.com".into(),
            arrival: 1_700_000_000,
            size: 60,
            eight_bit: false,
            smtputf8: false,
            ret_full,
            envid: Some("env-1".into()),
            recipients: vec![QueuedRcpt {
                address: "bob@remote.example".into(),
                notify: 0,
                orcpt: Some("rfc822;Bob@Remote.Example".into()),
                state: RcptState::Failed,
                last_error: None,
                remote_mta: None,
            }],
            attempts: 1,
            next_attempt: 0,
            warned: false,
        }
    }

    const ORIGINAL: &[u8] =
        b"From: alice@example.com\r\nTo: bob@remote.example\r\nSubject: hi\r\n\r\nsecret body\r\n";

    fn entry() -> Entry {
        Entry {
            address: "bob@remote.example".into(),
            orcpt: Some("rfc822;Bob@Remote.Example".into()),
            text: "host mx.remote.example[192.0.2.1] said: 550 5.1.1 <bob@remote.example>: User unknown (in reply to RCPT TO command)".into(),
            remote_mta: Some("mx.remote.example[192.0.2.1]".into()),
        }
    }

    #[test]
    fn a_bounce_is_a_parseable_multipart_report() {
        let dsn = build(
            &env(None),
            Kind::Failure,
            &[entry()],
            "mail.example.com",
            ORIGINAL,
            SystemTime::UNIX_EPOCH,
        );
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(text.contains("To: <alice@example.com>"), "{text}");
        assert!(text.contains("Subject: Undelivered Mail Returned to Sender"));
        assert!(text.contains("Auto-Submitted: auto-replied"));
        assert!(
            text.contains("From: \"Mail Delivery System\" <MAILER-DAEMON@mail.example.com>"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: multipart/report; report-type=\"delivery-status\""),
            "{text}"
        );

        let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        assert_eq!(parsed.parts.len(), 4, "report + 3 parts");
        let status = String::from_utf8_lossy(parsed.parts[2].contents()).into_owned();
        assert!(
            status.contains("Reporting-MTA: dns; mail.example.com\r\n"),
            "{status}"
        );
        assert!(status.contains("Original-Envelope-Id: env-1\r\n"));
        assert!(status.contains("Final-Recipient: rfc822; bob@remote.example\r\n"));
        assert!(status.contains("Original-Recipient: rfc822; Bob@Remote.Example\r\n"));
        assert!(status.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(status.contains("Remote-MTA: dns; mx.remote.example\r\n"));
        assert!(
            status.contains("Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.example>: User unknown")
        );
        assert!(text.contains("Content-Type: message/rfc822"));
        assert!(
            text.contains("secret body"),
            "RET default: the whole message"
        );
    }

    #[test]
    fn ret_hdrs_returns_headers_only() {
        let dsn = build(
            &env(Some(false)),
            Kind::Failure,
            &[entry()],
            "mail.example.com",
            ORIGINAL,
            SystemTime::UNIX_EPOCH,
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Content-Type: text/rfc822-headers"));
        assert!(text.contains("Subject: hi"));
        assert!(!text.contains("secret body"));
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_code("said: 550 5.1.1 no", Kind::Failure), "5.1.1");
        assert_eq!(status_code("said: 451 4.3.0 later", Kind::Failure), "5.3.0");
        assert_eq!(status_code("said: 451 4.3.0 later", Kind::Delay), "4.3.0");
        assert_eq!(status_code("connect to x: refused", Kind::Delay), "4.0.0");
        assert_eq!(
            status_code("mail for x loops back to myself", Kind::Failure),
            "5.4.6"
        );
        assert_eq!(status_code("version 1.2.3.4 said", Kind::Failure), "5.0.0");
    }
}
