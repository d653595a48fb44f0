//! Ten IMAP sessions at once on one INBOX, checked against a model of what
//! each was told (issue 15, "Tests and evidence"): the checker is
//! `tests/peers/imap_stress.py` (its docstring lists every check). It runs
//! for 20 s here; `PIGEONPOST_STRESS_SECONDS` runs it longer,
//! `PIGEONPOST_STRESS_SEED` repeats a seed and `PIGEONPOST_STRESS_CLIENTS`
//! changes the number of sessions.

use std::process::Command;
use std::time::Instant;

use crate::util::{require_tool, LineClient, MailFixture};

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

/// What the stress checker found first: a FETCH naming a message another
/// session expunged answered a plain OK with that message silently left
/// out, so the client could not tell why. The answer is now Dovecot's
/// `OK [EXPUNGEISSUED]` (RFC 5530 §3), and the EXPUNGE follows on the next
/// command that may carry it (RFC 3501 §7.4.1).
#[test]
fn a_fetch_of_a_message_expunged_elsewhere_says_expungeissued() {
    let setup = MailFixture::new(&[("imap", "127.0.0.1:0")], "");
    setup.deliver(
        "john",
        &[
            "Subject: one\n\nbody\n",
            "Subject: two\n\nbody\n",
            "Subject: three\n\nbody\n",
        ],
    );
    let server = setup.start();
    let addr = server.addr("imap");
    let open = |tag: &str| {
        let mut c = LineClient::connect("127.0.0.1", addr);
        c.line();
        let r = c.cmd(
            &format!("{tag}1 LOGIN john@example.com john123\r\n"),
            &format!("{tag}1 "),
        );
        assert!(r.contains("OK"), "{r}");
        let r = c.cmd(&format!("{tag}2 SELECT INBOX\r\n"), &format!("{tag}2 "));
        assert!(r.contains("* 3 EXISTS"), "{r}");
        c
    };
    let (mut a, mut b) = (open("a"), open("b"));
    let r = b.cmd("b3 STORE 2 +FLAGS.SILENT (\\Deleted)\r\n", "b3 ");
    assert!(r.starts_with("b3 OK"), "{r}");
    let r = b.cmd("b4 EXPUNGE\r\n", "b4 ");
    assert!(r.contains("* 2 EXPUNGE") && r.contains("b4 OK"), "{r}");

    let r = a.cmd("a3 FETCH 1:* (UID)\r\n", "a3 ");
    assert!(!r.contains("EXPUNGE\r\n"), "no EXPUNGE during FETCH: {r}");
    assert!(
        r.contains("* 1 FETCH (UID 1)") && r.contains("* 3 FETCH (UID 3)"),
        "{r}"
    );
    assert!(!r.contains("* 2 FETCH"), "{r}");
    assert!(r.contains("a3 OK [EXPUNGEISSUED]"), "{r}");
    let r = a.cmd("a4 NOOP\r\n", "a4 ");
    assert!(r.contains("* 2 EXPUNGE") && r.contains("a4 OK"), "{r}");
    // Nothing missing any more: a plain OK.
    let r = a.cmd("a5 FETCH 1:* (UID)\r\n", "a5 ");
    assert!(
        r.contains("* 2 FETCH (UID 3)") && r.contains("a5 OK Fetch completed."),
        "{r}"
    );
}

/// COPY by sequence number of messages another session expunged copies
/// nothing and says so; UID COPY skips UIDs that are gone.
#[test]
fn a_copy_of_messages_expunged_elsewhere_is_refused() {
    let setup = MailFixture::new(&[("imap", "127.0.0.1:0")], "");
    setup.deliver(
        "john",
        &[
            "Subject: 1\n\n1\n",
            "Subject: 2\n\n2\n",
            "Subject: 3\n\n3\n",
        ],
    );
    let server = setup.start();
    let open = |tag: &str| {
        let mut c = LineClient::connect("127.0.0.1", server.addr("imap"));
        c.line();
        c.cmd(
            &format!("{tag}1 LOGIN john@example.com john123\r\n"),
            &format!("{tag}1 "),
        );
        c.cmd(&format!("{tag}2 SELECT INBOX\r\n"), &format!("{tag}2 "));
        c
    };
    let (mut a, mut b) = (open("a"), open("b"));
    b.cmd("b3 STORE 2 +FLAGS.SILENT (\\Deleted)\r\n", "b3 ");
    b.cmd("b4 EXPUNGE\r\n", "b4 ");
    let r = a.cmd("a3 COPY 1:3 INBOX\r\n", "a3 ");
    assert!(r.contains("a3 NO [EXPUNGEISSUED]"), "{r}");
    let r = a.cmd("a4 NOOP\r\n", "a4 ");
    assert!(r.contains("* 2 EXPUNGE"), "{r}");
    let r = a.cmd("a5 COPY 1:2 INBOX\r\n", "a5 ");
    assert!(r.contains("a5 OK [COPYUID "), "{r}");
}
