//! Process-wide counters in Prometheus text format. Counters are plain
//! atomics so the hot paths pay one relaxed increment.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

pub static RELOAD_OK: AtomicU64 = AtomicU64::new(0);
pub static RELOAD_FAILED: AtomicU64 = AtomicU64::new(0);
pub static AUTH_FAILURES: AtomicU64 = AtomicU64::new(0);

pub static MESSAGES_DELIVERED: AtomicU64 = AtomicU64::new(0);
pub static MESSAGES_DEFERRED: AtomicU64 = AtomicU64::new(0);
pub static RCPT_REJECTED: AtomicU64 = AtomicU64::new(0);

pub static OUTBOUND_SENT: AtomicU64 = AtomicU64::new(0);
pub static OUTBOUND_DEFERRED: AtomicU64 = AtomicU64::new(0);
pub static OUTBOUND_BOUNCED: AtomicU64 = AtomicU64::new(0);

/// Connections accepted, per listener (fixed set, so plain statics).
static CONNECTIONS: [(&str, AtomicU64); 9] = [
    ("smtp", AtomicU64::new(0)),
    ("submission", AtomicU64::new(0)),
    ("submissions", AtomicU64::new(0)),
    ("imap", AtomicU64::new(0)),
    ("imaps", AtomicU64::new(0)),
    ("pop3", AtomicU64::new(0)),
    ("pop3s", AtomicU64::new(0)),
    ("lmtp", AtomicU64::new(0)),
    ("http", AtomicU64::new(0)),
];

pub fn connection(listener: &str) {
    if let Some((_, c)) = CONNECTIONS.iter().find(|(n, _)| *n == listener) {
        inc(c);
    }
}

pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn render() -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: &AtomicU64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    };
    counter(
        "pigeonpost_reloads_total",
        "Successful reloads of tables, users and certificates.",
        &RELOAD_OK,
    );
    counter(
        "pigeonpost_reload_failures_total",
        "Reloads rejected because the new file was invalid.",
        &RELOAD_FAILED,
    );
    counter(
        "pigeonpost_auth_failures_total",
        "Failed authentication attempts.",
        &AUTH_FAILURES,
    );
    counter(
        "pigeonpost_messages_delivered_total",
        "Messages accepted and stored durably.",
        &MESSAGES_DELIVERED,
    );
    counter(
        "pigeonpost_messages_deferred_total",
        "Messages refused with a temporary error at delivery.",
        &MESSAGES_DEFERRED,
    );
    counter(
        "pigeonpost_recipients_rejected_total",
        "RCPT TO commands refused by routing or policy.",
        &RCPT_REJECTED,
    );
    counter(
        "pigeonpost_outbound_sent_total",
        "Recipients accepted by the next hop.",
        &OUTBOUND_SENT,
    );
    counter(
        "pigeonpost_outbound_deferred_total",
        "Outbound delivery attempts deferred (recipients).",
        &OUTBOUND_DEFERRED,
    );
    counter(
        "pigeonpost_outbound_bounced_total",
        "Recipients that failed permanently (bounced).",
        &OUTBOUND_BOUNCED,
    );
    let _ = writeln!(out, "# HELP pigeonpost_connections_total Connections accepted, per listener.\n# TYPE pigeonpost_connections_total counter");
    for (name, c) in &CONNECTIONS {
        let _ = writeln!(
            out,
            "pigeonpost_connections_total{{listener=\"{name}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
    out
}
