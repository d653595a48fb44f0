//! Process-wide counters in Prometheus text format. Counters are plain
//! atomics so the hot paths pay one relaxed increment.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

pub static RELOAD_OK: AtomicU64 = AtomicU64::new(0);
pub static RELOAD_FAILED: AtomicU64 = AtomicU64::new(0);
pub static AUTH_FAILURES: AtomicU64 = AtomicU64::new(0);

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
    out
}
