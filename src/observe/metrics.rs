//! Process-wide metrics in the Prometheus/OpenMetrics text format, kept with
//! the `prometheus-client` crate. Metrics are atomics behind a registry that
//! is built once, so the hot paths pay one relaxed increment.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds, in seconds, of the delivery latency buckets: local
/// deliveries take milliseconds, queued ones minutes to days.
const LATENCY_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0,
    86400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    pub destination: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthResultLabel {
    pub method: &'static str,
    pub result: &'static str,
}

/// Why a connection or command was refused by a limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

/// Every `limit` label value, so each series exists from the start.
pub const LIMITS: [&str; 13] = [
    "connections",
    "client_connections",
    "banned",
    "connection_rate",
    "new_tls_session_rate",
    "message_rate",
    "recipient_rate",
    "auth_rate",
    "userip_sessions",
    "tls_handshakes",
    "slow_client",
    "postscreen_pregreet",
    "postscreen_dnsbl",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlgorithmLabel {
    pub algorithm: &'static str,
}

pub struct Metrics {
    /// Mail authentication outcomes of inbound mail, per method.
    pub auth_results: Family<AuthResultLabel, Counter>,
    /// DKIM signatures added to outgoing mail, per algorithm.
    pub dkim_signed: Family<AlgorithmLabel, Counter>,
    pub connections: Family<ListenerLabel, Counter>,
    pub auth_failures: Family<ProtocolLabel, Counter>,
    /// Clients banned for failed logins.
    pub auth_bans: Counter,
    /// Connections and commands refused (or connections closed) by a limit.
    pub limited: Family<LimitLabel, Counter>,
    pub reloads: Counter,
    pub reload_failures: Counter,
    /// Messages accepted (SMTP 250, or picked up from the maildrop).
    pub received: Counter,
    /// Recipient copies delivered: stored locally or accepted by the next hop.
    pub delivered: Family<DestinationLabel, Counter>,
    /// Messages refused with a temporary error when storing them.
    pub deferred: Counter,
    pub rcpt_rejected: Counter,
    pub outbound_deferred: Counter,
    pub bounced: Counter,
    pub queue_messages: Gauge,
    /// ACME (`acme_domains`): certificates issued, failed attempts, and when
    /// the certificate in use expires (Unix time).
    pub acme_issued: Counter,
    pub acme_failures: Counter,
    pub acme_not_after: Gauge,
    /// Seconds from acceptance to delivery, per destination.
    pub delivery_seconds: Family<DestinationLabel, Histogram, fn() -> Histogram>,
}

pub const LOCAL: DestinationLabel = DestinationLabel {
    destination: "local",
};
pub const REMOTE: DestinationLabel = DestinationLabel {
    destination: "remote",
};

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

static METRICS: LazyLock<(Metrics, Registry)> = LazyLock::new(|| {
    let m = Metrics {
        auth_results: Family::default(),
        dkim_signed: Family::default(),
        connections: Family::default(),
        auth_failures: Family::default(),
        auth_bans: Counter::default(),
        limited: Family::default(),
        reloads: Counter::default(),
        reload_failures: Counter::default(),
        received: Counter::default(),
        delivered: Family::default(),
        deferred: Counter::default(),
        rcpt_rejected: Counter::default(),
        outbound_deferred: Counter::default(),
        bounced: Counter::default(),
        queue_messages: Gauge::default(),
        acme_issued: Counter::default(),
        acme_failures: Counter::default(),
        acme_not_after: Gauge::default(),
        delivery_seconds: Family::new_with_constructor(latency_histogram),
    };
    // Every series exists from the start, so a dashboard (or a rate()) sees
    // zeros rather than gaps.
    // Every listener, so all show from the start.
    for listener in crate::config::LISTENERS {
        let _ = m.connections.get_or_create(&ListenerLabel { listener });
    }
    for protocol in ["smtp", "imap", "pop3"] {
        let _ = m.auth_failures.get_or_create(&ProtocolLabel { protocol });
    }
    for limit in LIMITS {
        let _ = m.limited.get_or_create(&LimitLabel { limit });
    }
    for method in ["spf", "dkim", "dmarc", "arc"] {
        for result in ["pass", "fail", "none", "temperror", "permerror"] {
            let _ = m
                .auth_results
                .get_or_create(&AuthResultLabel { method, result });
        }
    }
    for algorithm in ["rsa", "ed25519"] {
        let _ = m.dkim_signed.get_or_create(&AlgorithmLabel { algorithm });
    }
    for d in [LOCAL, REMOTE] {
        let _ = m.delivered.get_or_create(&d);
        let _ = m.delivery_seconds.get_or_create(&d);
    }

    // Counter names get "_total" appended by the encoder.
    let mut r = Registry::with_prefix("pigeonpost");
    r.register(
        "connections",
        "Connections accepted, per listener",
        m.connections.clone(),
    );
    r.register(
        "auth_results",
        "SPF, DKIM, DMARC and ARC results of mail from outside, per method and result",
        m.auth_results.clone(),
    );
    r.register(
        "dkim_signed",
        "DKIM signatures added to outgoing mail, per algorithm",
        m.dkim_signed.clone(),
    );
    r.register(
        "auth_failures",
        "Failed authentication attempts, per protocol",
        m.auth_failures.clone(),
    );
    r.register(
        "auth_bans",
        "Client addresses banned for too many failed logins (auth_failure_ban_threshold)",
        m.auth_bans.clone(),
    );
    r.register(
        "limited",
        "Connections and commands refused, or connections closed, by a limit, per limit",
        m.limited.clone(),
    );
    r.register(
        "reloads",
        "Successful reloads of tables, users and certificates",
        m.reloads.clone(),
    );
    r.register(
        "acme_certificates_issued",
        "Certificates issued by the ACME server (acme_domains)",
        m.acme_issued.clone(),
    );
    r.register(
        "acme_failures",
        "Failed ACME attempts (the certificate in use stays)",
        m.acme_failures.clone(),
    );
    r.register(
        "acme_certificate_not_after_seconds",
        "When the ACME certificate in use expires (Unix time)",
        m.acme_not_after.clone(),
    );
    r.register(
        "reload_failures",
        "Reloads rejected because the new file was invalid (the old one stays in use)",
        m.reload_failures.clone(),
    );
    r.register(
        "messages_received",
        "Messages accepted over SMTP or picked up from the maildrop",
        m.received.clone(),
    );
    r.register(
        "messages_delivered",
        "Recipient copies delivered: stored in a local mailbox or accepted by the next hop",
        m.delivered.clone(),
    );
    r.register(
        "messages_deferred",
        "Messages refused with a temporary error because they could not be stored",
        m.deferred.clone(),
    );
    r.register(
        "recipients_rejected",
        "RCPT TO commands refused by routing or policy",
        m.rcpt_rejected.clone(),
    );
    r.register(
        "outbound_deferred",
        "Outbound delivery attempts deferred, per recipient",
        m.outbound_deferred.clone(),
    );
    r.register(
        "messages_bounced",
        "Recipients that failed permanently and were bounced",
        m.bounced.clone(),
    );
    r.register(
        "queue_messages",
        "Messages in the outbound queue",
        m.queue_messages.clone(),
    );
    r.register(
        "delivery_seconds",
        "Seconds from acceptance to delivery, per destination",
        m.delivery_seconds.clone(),
    );
    (m, r)
});

pub fn get() -> &'static Metrics {
    &METRICS.0
}

pub fn connection(listener: &'static str) {
    get()
        .connections
        .get_or_create(&ListenerLabel { listener })
        .inc();
}

pub fn auth_failure(protocol: &'static str) {
    get()
        .auth_failures
        .get_or_create(&ProtocolLabel { protocol })
        .inc();
}

pub fn auth_ban() {
    get().auth_bans.inc();
}

/// A limit refused a connection or command, or closed a connection.
pub fn limited(limit: &'static str) {
    debug_assert!(LIMITS.contains(&limit), "unknown limit label {limit}");
    get().limited.get_or_create(&LimitLabel { limit }).inc();
}

/// `copies` recipients delivered to `destination`, `seconds` after acceptance.
pub fn delivered(destination: DestinationLabel, copies: usize, seconds: f64) {
    if copies == 0 {
        return;
    }
    let m = get();
    m.delivered
        .get_or_create(&destination)
        .inc_by(copies as u64);
    let h = m.delivery_seconds.get_or_create(&destination);
    for _ in 0..copies {
        h.observe(seconds);
    }
}

/// The OpenMetrics text exposition (Prometheus reads it too).
pub fn render(queue_messages: usize) -> String {
    let (m, registry) = &*METRICS;
    m.queue_messages.set(queue_messages as i64);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    }

    #[test]
    fn series_exist_from_the_start_and_move() {
        let before = render(3);
        assert_eq!(value(&before, "pigeonpost_queue_messages"), 3.0);
        let smtp = "pigeonpost_connections_total{listener=\"smtp\"}";
        let local_count = "pigeonpost_delivery_seconds_count{destination=\"local\"}";
        let fast = "pigeonpost_delivery_seconds_bucket{le=\"0.01\",destination=\"local\"}";
        let (c0, n0, f0) = (
            value(&before, smtp),
            value(&before, local_count),
            value(&before, fast),
        );
        connection("smtp");
        delivered(LOCAL, 2, 0.003);
        delivered(LOCAL, 1, 3.0);
        let after = render(0);
        assert_eq!(value(&after, smtp), c0 + 1.0);
        assert_eq!(value(&after, local_count), n0 + 3.0);
        assert_eq!(value(&after, fast), f0 + 2.0, "3 s is not under 10 ms");
        assert!(after.trim_end().ends_with("# EOF"));
    }
}
