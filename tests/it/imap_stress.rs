//! Ten IMAP sessions at once on one INBOX, checked against a model of what
//! each was told (issue 15, "Tests and evidence"): the checker is
//! `tests/peers/imap_stress.py` (its docstring lists every check). It runs
//! for 20 s here; `PIGEONPOST_STRESS_SECONDS` runs it longer,
//! `PIGEONPOST_STRESS_SEED` repeats a seed and `PIGEONPOST_STRESS_CLIENTS`
//! changes the number of sessions.

use std::process::Command;
use std::time::Instant;

use crate::util::{require_tool, MailFixture};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/imap_stress.py");

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

#[test]
fn ten_sessions_on_one_mailbox_stay_consistent() {
    if !require_tool("python3") {
        return;
    }
    let clients = env_or("PIGEONPOST_STRESS_CLIENTS", "10");
    let setup = MailFixture::new(
        &[("imap", "127.0.0.1:0")],
        // Every session logs in as john from 127.0.0.1 (the default allows 10).
        &format!(
            "mail_max_userip_connections = {}",
            clients.parse::<u32>().unwrap() + 5
        ),
    );
    // An empty INBOX that exists before the first SELECT.
    setup.deliver("john", &[]);
    let server = setup.start();
    let port = server.addr("imap").port().to_string();
    let maildir = setup.maildir("john");
    let seconds = env_or("PIGEONPOST_STRESS_SECONDS", "20");
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT)
        .args(["--port", &port])
        .args(["--user", "john@example.com", "--password", "john123"])
        .args(["--clients", &clients, "--seconds", &seconds])
        .args(["--maildir", maildir.to_str().unwrap()]);
    if let Ok(seed) = std::env::var("PIGEONPOST_STRESS_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let start = Instant::now();
    let out = cmd.output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The operation counts (and the seed) belong in the test's output.
    println!("{stdout}");
    eprintln!("{stderr}");
    println!("imap_stress took {:.1} s", start.elapsed().as_secs_f64());
    assert!(
        out.status.success() && stdout.contains("imap_stress: inconsistencies=0 "),
        "the IMAP stress checker found inconsistencies (rerun with PIGEONPOST_STRESS_SEED \
         set to the seed below):\n{stdout}\n{stderr}"
    );
}

