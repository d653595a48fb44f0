//! Trace headers added at final delivery (RFC 5321 §4.4: Received,
//! Return-Path) and Postfix-style queue ids for log lines.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month 1-12, day 1-31); Howard Hinnant's civil_from_days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An RFC 5322 §3.3 date-time in UTC: "Sun, 22 Nov 2026 06:30:00 +0000".
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

static QUEUE_SEQ: AtomicU32 = AtomicU32::new(0);

/// A short unique id for one accepted message, for logs and the 250 reply.
pub fn new_queue_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seq = QUEUE_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08X}{:05X}{:03X}",
        now.as_secs() as u32,
        now.subsec_micros(),
        seq & 0xFFF
    )
}

/// What the Received: header says about the session.
pub struct Trace<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub hostname: &'a str,
    /// RFC 3848 protocol: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA.
    pub protocol: &'a str,
    pub queue_id: &'a str,
    pub tls: Option<&'a str>,
    pub arrival: SystemTime,
}

/// RFC 3848 "with" keyword.
pub fn protocol_name(esmtp: bool, tls: bool, authenticated: bool) -> &'static str {
    match (esmtp, tls, authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

/// Keeps header text printable and on one line: client-supplied HELO names
/// must not be able to inject headers.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')')
        .take(255)
        .collect()
}

/// The Received: header (RFC 5321 §4.4), with `for <recipient>` when the
/// copy is for one recipient.
pub fn received_header(trace: &Trace, recipient: Option<&str>) -> String {
    let helo = sanitize(trace.helo);
    let ip = match trace.client_ip {
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
        v4 => v4.to_string(),
    };
    let mut h = format!(
        "Received: from {} ([{ip}])\r\n\tby {} (pigeonpost) with {} id {}",
        if helo.is_empty() { "unknown" } else { &helo },
        trace.hostname,
        trace.protocol,
        trace.queue_id,
    );
    if let Some(tls) = trace.tls {
        h.push_str(&format!("\r\n\t(using {})", sanitize(tls)));
    }
    match recipient {
        Some(r) => h.push_str(&format!("\r\n\tfor <{}>; ", sanitize(r))),
        None => h.push_str(";\r\n\t"),
    }
    h.push_str(&rfc5322_date(trace.arrival));
    h.push_str("\r\n");
    h
}

/// The headers prepended to a message delivered to `recipient`:
/// Return-Path, Delivered-To (as Postfix's local/virtual add) and Received.
pub fn delivery_headers(trace: &Trace, mail_from: &str, recipient: &str) -> Vec<u8> {
    format!(
        "Return-Path: <{}>\r\nDelivered-To: {}\r\n{}",
        sanitize(mail_from),
        sanitize(recipient),
        received_header(trace, Some(recipient))
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_795_329_000)),
            "Sun, 22 Nov 2026 06:30:00 +0000"
        );
    }

    #[test]
    fn queue_ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_queue_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn headers_resist_injection() {
        let t = Trace {
            helo: "evil\r\nX-Injected: yes",
            client_ip: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example.com",
            protocol: "ESMTP",
            queue_id: "ABC",
            tls: None,
            arrival: UNIX_EPOCH,
        };
        let h = String::from_utf8(delivery_headers(&t, "a@b", "c@d")).unwrap();
        assert!(!h.contains("\r\nX-Injected"));
        assert!(h.starts_with("Return-Path: <a@b>\r\nDelivered-To: c@d\r\nReceived: from evilX-Injected: yes ([192.0.2.1])\r\n\tby mx.example.com (pigeonpost) with ESMTP id ABC\r\n\tfor <c@d>; Thu, 01 Jan 1970"), "{h}");
        assert_eq!(h.matches("\r\n").count(), 5);
    }
}
