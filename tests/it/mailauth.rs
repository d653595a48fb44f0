//! Mail authentication end to end, checked against independent
//! implementations: messages signed by dkimpy verify (and fail when
//! changed), messages pigeonpost signs pass dkimpy, SPF results equal
//! pyspf's over a table of records, DMARC and ARC cases, forged
//! Authentication-Results removed, hostile input survived. DNS comes from
//! the test's own server (tests/it/dns.rs), which the Python tools use too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::dns::{Answer, FakeDns};
use crate::proxy::metric;
use crate::queue::{add_config, setup_with, Peer};
use crate::smtp::MailSetup;
use crate::util::{self, require_tool};

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mailauth_tool.py");

/// Runs mailauth_tool.py with `stdin`; panics with its stderr on failure.
fn tool(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    assert!(require_tool("python3"));
    let mut child = Command::new("python3")
        .arg(TOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mailauth_tool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The concatenated strings of the TXT record in an opendkim-genkey (or
/// `pigeonpost dkim keygen`) `.txt` file.
fn txt_record(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split('"').skip(1).step_by(2).collect()
}

/// An RSA key made by OpenDKIM's own opendkim-genkey: (private key file,
/// TXT record). 1024 bits, the least RFC 8301 allows, as older OpenDKIM
/// setups have: verifiers must take it, and we must sign with it.
fn opendkim_key(dir: &Path, domain: &str, selector: &str) -> (PathBuf, String) {
    assert!(
        require_tool("opendkim-genkey"),
        "opendkim-genkey (opendkim-tools) is needed"
    );
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("opendkim-genkey")
        .args(["-b", "1024", "-D"])
        .arg(dir)
        .args(["-d", domain, "-s", selector])
        .status()
        .unwrap();
    assert!(st.success());
    (
        dir.join(format!("{selector}.private")),
        txt_record(&dir.join(format!("{selector}.txt"))),
    )
}

/// An ed25519 key in dkimpy's format: (seed file, TXT record).
fn dkimpy_ed25519_key(dir: &Path, selector: &str) -> (PathBuf, String) {
    let out = String::from_utf8(tool(&["ed25519-keygen"], b"")).unwrap();
    let (seed, public) = out.trim().split_once(' ').unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{selector}.seed"));
    std::fs::write(&path, seed).unwrap();
    (path, format!("v=DKIM1; k=ed25519; p={public}"))
}

fn txt(name: &str, value: &str) -> (String, &'static str, Vec<Answer>) {
    (
        name.to_string(),
        "TXT",
        vec![Answer::Txt(value.to_string())],
    )
}

fn a(name: &str, ip: [u8; 4]) -> (String, &'static str, Vec<Answer>) {
    (name.to_string(), "A", vec![Answer::A(ip)])
}

/// One message to send: from `ip`, with this MAIL FROM and content.
struct Job<'a> {
    ip: &'a str,
    sender: &'a str,
    message: Vec<u8>,
}

/// Sends each job in its own SMTP transaction to john@example.com; the
/// final reply of each.
fn send_all(setup: &MailSetup, port: u16, jobs: &[Job]) -> Vec<String> {
    let list: Vec<serde_json::Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let file = setup.tree.write(
                &format!("out/{i}.eml"),
                &String::from_utf8_lossy(&j.message),
            );
            serde_json::json!({
                "ip": j.ip, "helo": "client.sender.test", "sender": j.sender,
                "rcpt": "john@example.com", "file": file,
            })
        })
        .collect();
    let out = tool(
        &["send", "--port", &port.to_string()],
        serde_json::to_string(&list).unwrap().as_bytes(),
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A message from `from` with an `X-Case` header to find it by.
fn message(case: &str, from: &str) -> Vec<u8> {
    format!(
        "From: Sender <{from}>\r\nTo: john@example.com\r\nSubject: case {case}\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\nX-Case: {case}\r\n\r\nHello, this is case {case}.\r\n"
    )
    .into_bytes()
}

/// The stored copies in john's Maildir (any folder), by X-Case.
fn stored(setup: &MailSetup, folder: &str) -> Vec<(String, String)> {
    let dir = setup
        .tree
        .path(&format!("vmail/example.com/john/{folder}new"));
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let case = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Case: "))
                .unwrap_or("")
                .to_string();
            out.push((case, text));
        }
    }
    out
}

/// The Authentication-Results header of a stored copy, unfolded.
fn auth_results(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("Authentication-Results:") {
            inside = true;
            out.push_str(line);
        } else if inside && (line.starts_with('\t') || line.starts_with(' ')) {
            out.push(' ');
            out.push_str(line.trim());
        } else if inside {
            break;
        }
    }
    out
}

fn result_of(ar: &str, method: &str) -> String {
    ar.split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix(&format!("{method}=")))
        .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn copy_of<'a>(all: &'a [(String, String)], case: &str) -> &'a str {
    &all.iter()
        .find(|(c, _)| c == case)
        .unwrap_or_else(|| panic!("no stored copy of case {case}"))
        .1
}

#[test]
fn dkimpy_signatures_verify_changes_fail_and_forged_results_go() {
    let setup = setup_with("");
    let keys = setup.tree.path("keys");
    let (rsa_key, rsa_txt) = opendkim_key(&keys, "sender.test", "rsa");
    let (ed_key, ed_txt) = dkimpy_ed25519_key(&keys, "ed");
    let dns = FakeDns::start(vec![
        txt("sender.test", "v=spf1 ip4:127.0.0.2 -all"),
        txt("rsa._domainkey.sender.test", &rsa_txt),
        txt("ed._domainkey.sender.test", &ed_txt),
        txt("_dmarc.sender.test", "v=DMARC1; p=reject"),
    ]);
    add_config(&setup, &format!("dns_servers = \"{}\"", dns.addr));
    let server = setup.start();
    let port = server.addr("smtp").port();
    let sign = |case: &str, args: &[&str]| {
        tool(
            &[&["sign", "--domain", "sender.test"][..], args].concat(),
            &message(case, "a@sender.test"),
        )
    };
    let rsa = rsa_key.to_str().unwrap();
    let ed = ed_key.to_str().unwrap();
    let relaxed_l = sign(
        "rsa-relaxed-l",
        &["--key", rsa, "--selector", "rsa", "--length"],
    );
    let simple = sign(
        "rsa-simple",
        &["--key", rsa, "--selector", "rsa", "--canon", "simple"],
    );
    let ed_relaxed = sign(
        "ed-relaxed",
        &["--key", ed, "--selector", "ed", "--algo", "ed25519"],
    );
    let ed_simple = sign(
        "ed-simple",
        &[
            "--key",
            ed,
            "--selector",
            "ed",
            "--algo",
            "ed25519",
            "--canon",
            "simple",
        ],
    );
    let mut changed = sign("changed", &["--key", rsa, "--selector", "rsa"]);
    // One byte of the body changed after signing.
    let at = changed.len() - 4;
    changed[at] ^= 0x20;
    // l= lets text be appended after signing (RFC 6376 §8.2): not a pass.
    let mut appended = sign("appended", &["--key", rsa, "--selector", "rsa", "--length"]);
    appended.extend(b"P.S. Please wire the money to the new account.\r\n");
    let mut forged =
        b"Authentication-Results: mail.example.com; dkim=pass header.d=sender.test\r\n".to_vec();
    forged.extend(message("forged", "a@sender.test"));
    let jobs: Vec<Job> = [
        relaxed_l, simple, ed_relaxed, ed_simple, changed, forged, appended,
    ]
    .into_iter()
    .map(|m| Job {
        ip: "127.0.0.2",
        sender: "a@sender.test",
        message: m,
    })
    .collect();
    let replies = send_all(&setup, port, &jobs);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let copies = setup_wait(&setup, 7);
    for case in ["rsa-relaxed-l", "rsa-simple", "ed-relaxed", "ed-simple"] {
        let ar = auth_results(copy_of(&copies, case));
        assert!(
            ar.starts_with("Authentication-Results: mail.example.com;"),
            "{ar}"
        );
        assert_eq!(result_of(&ar, "dkim"), "pass", "{case}: {ar}");
        assert_eq!(result_of(&ar, "spf"), "pass", "{case}: {ar}");
        assert_eq!(result_of(&ar, "dmarc"), "pass", "{case}: {ar}");
    }
    let ar = auth_results(copy_of(&copies, "appended"));
    assert_eq!(result_of(&ar, "dkim"), "neutral", "{ar}");
    let ar = auth_results(copy_of(&copies, "changed"));
    assert_eq!(result_of(&ar, "dkim"), "fail", "{ar}");
    // SPF still passes and aligns: DMARC passes on SPF alone.
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    let forged = copy_of(&copies, "forged");
    assert_eq!(
        forged.matches("Authentication-Results:").count(),
        1,
        "only our own header is left: {forged}"
    );
    assert_eq!(result_of(&auth_results(forged), "dkim"), "none", "{forged}");
    // The log line and the metrics say it too.
    assert!(server
        .wait_log("spf=pass dkim=pass dmarc=pass", Duration::from_secs(5))
        .is_some());
    let http = server.addr("http");
    assert!(
        metric(
            http,
            "pigeonpost_auth_results_total{method=\"dkim\",result=\"pass\"}"
        ) >= 4
    );
    assert!(
        metric(
            http,
            "pigeonpost_auth_results_total{method=\"dkim\",result=\"fail\"}"
        ) >= 1
    );
}

fn setup_wait(setup: &MailSetup, n: usize) -> Vec<(String, String)> {
    crate::queue::wait_for(Duration::from_secs(10), || {
        let s = stored(setup, "");
        (s.len() >= n).then_some(s)
    })
    .unwrap_or_else(|| stored(setup, ""))
}

/// The SPF cases: (domain, record or None for no record, client IP).
/// Covers ip4/ip6 with CIDR, a, mx, include, redirect, exists, macros,
/// qualifiers, exp, void lookups, the 10-lookup limit and syntax errors.
fn spf_cases() -> Vec<(&'static str, Option<String>, &'static str)> {
    let mut c: Vec<(&'static str, Option<String>, &'static str)> = vec![
        (
            "c01.test",
            Some("v=spf1 ip4:127.0.0.2 -all".into()),
            "127.0.0.2",
        ),
        (
            "c02.test",
            Some("v=spf1 ip4:127.0.0.2 -all".into()),
            "127.0.0.3",
        ),
        (
            "c03.test",
            Some("v=spf1 ip4:127.0.0.0/24 -all".into()),
            "127.0.0.9",
        ),
        (
            "c04.test",
            Some("v=spf1 ip4:127.0.1.0/24 ~all".into()),
            "127.0.0.9",
        ),
        (
            "c05.test",
            Some("v=spf1 ip4:127.0.1.0/24 ?all".into()),
            "127.0.0.9",
        ),
        (
            "c06.test",
            Some("v=spf1 ip4:127.0.1.0/24 +all".into()),
            "127.0.0.9",
        ),
        ("c07.test", Some("v=spf1 a -all".into()), "127.0.0.4"),
        (
            "c08.test",
            Some("v=spf1 a:host.c08.test -all".into()),
            "127.0.0.5",
        ),
        (
            "c09.test",
            Some("v=spf1 a:host.c08.test/24 -all".into()),
            "127.0.0.77",
        ),
        ("c10.test", Some("v=spf1 mx -all".into()), "127.0.0.6"),
        (
            "c11.test",
            Some("v=spf1 mx:c10.test -all".into()),
            "127.0.0.6",
        ),
        (
            "c12.test",
            Some("v=spf1 include:inc.test -all".into()),
            "127.0.0.7",
        ),
        (
            "c13.test",
            Some("v=spf1 include:inc.test -all".into()),
            "127.0.0.8",
        ),
        (
            "c14.test",
            Some("v=spf1 redirect=inc.test".into()),
            "127.0.0.7",
        ),
        (
            "c15.test",
            Some("v=spf1 redirect=inc.test".into()),
            "127.0.0.8",
        ),
        (
            "c16.test",
            Some("v=spf1 exists:%{i}.ex.test -all".into()),
            "127.0.0.2",
        ),
        (
            "c17.test",
            Some("v=spf1 exists:%{i}.ex.test -all".into()),
            "127.0.0.3",
        ),
        (
            "c18.test",
            Some("v=spf1 exists:%{l}.users.c18.test -all".into()),
            "127.0.0.2",
        ),
        (
            "c19.test",
            Some("v=spf1 include:nospf.test -all".into()),
            "127.0.0.2",
        ),
        (
            "c20.test",
            Some("v=spf1 ip4:127.0.0.300 -all".into()),
            "127.0.0.2",
        ),
        (
            "c21.test",
            Some("v=spf1 frobnicate -all".into()),
            "127.0.0.2",
        ),
        (
            "c22.test",
            Some("v=spf1 -all exp=explain.c22.test".into()),
            "127.0.0.2",
        ),
        ("c23.test", Some("v=spf1 ip6:::1 -all".into()), "127.0.0.2"),
        (
            "c24.test",
            Some("v=spf1 a:void1.test a:void2.test a:void3.test -all".into()),
            "127.0.0.2",
        ),
        (
            "c25.test",
            Some("v=spf1 a:void1.test a:void2.test ip4:127.0.0.2 -all".into()),
            "127.0.0.2",
        ),
        ("c26.test", None, "127.0.0.2"),
        (
            "c27.test",
            Some("v=spf1 redirect=missing.test".into()),
            "127.0.0.2",
        ),
        (
            "c28.test",
            Some("v=spf1 ?ip4:127.0.0.2 -all".into()),
            "127.0.0.2",
        ),
        (
            "c29.test",
            Some("v=spf1 ~ip4:127.0.0.2 -all".into()),
            "127.0.0.2",
        ),
        ("c30.test", Some("v=spf1 ptr -all".into()), "127.0.0.2"),
        (
            "c31.test",
            Some("v=spf1 include:loop.test -all".into()),
            "127.0.0.2",
        ),
        (
            "c32.test",
            Some("v=spf1 ip4:127.0.0.2 redirect=inc.test".into()),
            "127.0.0.2",
        ),
    ];
    // Two exists: the first finds nothing, the second matches.
    c.push((
        "c34.test",
        Some("v=spf1 exists:%{i}.nx.test exists:%{i}.ex.test exists:%{i}.ex.test -all".into()),
        "127.0.0.2",
    ));
    // Twelve includes: past the 10-lookup limit (RFC 7208 §4.6.4).
    let many: Vec<String> = (1..=12).map(|i| format!("include:l{i}.test")).collect();
    c.push((
        "c33.test",
        Some(format!("v=spf1 {} -all", many.join(" "))),
        "127.0.0.2",
    ));
    c
}

fn spf_zone() -> Vec<(String, &'static str, Vec<Answer>)> {
    let mut z = Vec::new();
    for (domain, record, _) in spf_cases() {
        if let Some(r) = record {
            z.push(txt(domain, &r));
        }
    }
    z.extend([
        a("c07.test", [127, 0, 0, 4]),
        a("host.c08.test", [127, 0, 0, 5]),
        ("c10.test".into(), "MX", vec![Answer::Mx(10, "mx.c10.test")]),
        a("mx.c10.test", [127, 0, 0, 6]),
        txt("inc.test", "v=spf1 ip4:127.0.0.7 -all"),
        a("127.0.0.2.ex.test", [127, 0, 0, 1]),
        a("user.users.c18.test", [127, 0, 0, 1]),
        txt("explain.c22.test", "Not allowed, %{i}"),
        txt("loop.test", "v=spf1 include:loop.test -all"),
        ("c26.test".into(), "A", vec![Answer::A([127, 0, 0, 2])]),
        ("void1.test".into(), "A", vec![Answer::Empty]),
        ("void2.test".into(), "A", vec![Answer::Empty]),
        ("void3.test".into(), "A", vec![Answer::Empty]),
    ]);
    for i in 1..=12 {
        z.push(txt(&format!("l{i}.test"), "v=spf1 ip4:192.0.2.1 ?all"));
    }
    z
}

#[test]
fn spf_results_equal_pyspf_for_a_table_of_records() {
    let setup = setup_with("");
    let dns = FakeDns::start(spf_zone());
    add_config(&setup, &format!("dns_servers = \"{}\"", dns.addr));
    let server = setup.start();
    let port = server.addr("smtp").port();
    let cases = spf_cases();
    let jobs: Vec<Job> = cases
        .iter()
        .map(|(domain, _, ip)| Job {
            ip,
            sender: Box::leak(format!("user@{domain}").into_boxed_str()),
            message: message(domain, &format!("user@{domain}")),
        })
        .collect();
    let replies = send_all(&setup, port, &jobs);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let copies = setup_wait(&setup, cases.len());
    let oracle_input: Vec<serde_json::Value> = cases
        .iter()
        .map(|(domain, _, ip)| {
            serde_json::json!({"ip": ip, "sender": format!("user@{domain}"), "helo": "client.sender.test"})
        })
        .collect();
    let oracle: Vec<String> = serde_json::from_slice(&tool(
        &["spf", "--dns", &dns.addr.to_string()],
        serde_json::to_string(&oracle_input).unwrap().as_bytes(),
    ))
    .unwrap();
    let mut differ = Vec::new();
    for ((domain, record, ip), want) in cases.iter().zip(&oracle) {
        let got = result_of(&auth_results(copy_of(&copies, domain)), "spf");
        if &got != want {
            differ.push(format!(
                "{domain} {record:?} from {ip}: pigeonpost {got}, pyspf {want}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "SPF results that differ from pyspf:\n{}",
        differ.join("\n")
    );
}

/// DMARC: the zone for every case below.
fn dmarc_setup(policy: &str) -> (MailSetup, FakeDns, PathBuf) {
    let setup = setup_with("");
    let keys = setup.tree.path("keys");
    let (key, key_txt) = opendkim_key(&keys, "a.test", "s");
    let dns = FakeDns::start(vec![
        // Aligned DKIM, SPF failing: passes.
        txt("a.test", "v=spf1 -all"),
        txt("s._domainkey.a.test", &key_txt),
        txt("_dmarc.a.test", "v=DMARC1; p=reject"),
        // Nothing passes, p=reject.
        txt("b.test", "v=spf1 -all"),
        txt("_dmarc.b.test", "v=DMARC1; p=reject"),
        // Nothing passes, p=quarantine.
        txt("c.test", "v=spf1 -all"),
        txt("_dmarc.c.test", "v=DMARC1; p=quarantine"),
        // A subdomain: sp= applies, not p=.
        txt("sub.d.test", "v=spf1 -all"),
        txt("_dmarc.d.test", "v=DMARC1; p=none; sp=reject"),
        // Strict DKIM alignment: a signature by a subdomain doesn't align.
        txt("e.test", "v=spf1 -all"),
        txt("s._domainkey.mail.e.test", &key_txt),
        txt("_dmarc.e.test", "v=DMARC1; p=reject; adkim=s"),
        // No DMARC record at all.
        txt("f.test", "v=spf1 -all"),
    ]);
    add_config(
        &setup,
        &format!(
            "dns_servers = \"{}\"\ndmarc_policy = \"{policy}\"",
            dns.addr
        ),
    );
    (setup, dns, key)
}

#[test]
fn dmarc_enforce_refuses_quarantines_and_passes_as_published() {
    let (setup, _dns, key) = dmarc_setup("enforce");
    let server = setup.start();
    let port = server.addr("smtp").port();
    let k = key.to_str().unwrap();
    let signed_a = tool(
        &["sign", "--key", k, "--selector", "s", "--domain", "a.test"],
        &message("a", "x@a.test"),
    );
    let signed_e = tool(
        &[
            "sign",
            "--key",
            k,
            "--selector",
            "s",
            "--domain",
            "mail.e.test",
        ],
        &message("e", "x@e.test"),
    );
    let job = |ip, sender, message| Job {
        ip,
        sender,
        message,
    };
    let replies = send_all(
        &setup,
        port,
        &[
            job("127.0.0.2", "x@a.test", signed_a),
            job("127.0.0.2", "x@b.test", message("b", "x@b.test")),
            job("127.0.0.2", "x@c.test", message("c", "x@c.test")),
            job("127.0.0.2", "x@sub.d.test", message("d", "x@sub.d.test")),
            job("127.0.0.2", "x@e.test", signed_e),
            job("127.0.0.2", "x@f.test", message("f", "x@f.test")),
            // A second author domain, which DMARC would otherwise skip.
            job("127.0.0.2", "x@f.test", {
                let mut m = b"From: Boss <ceo@b.test>\r\n".to_vec();
                m.extend(message("two-from", "x@f.test"));
                m
            }),
        ],
    );
    assert!(
        replies[6].starts_with("550 5.7.1"),
        "two author domains: {replies:?}"
    );
    assert!(
        replies[0].starts_with("250"),
        "aligned DKIM passes: {replies:?}"
    );
    assert!(replies[1].starts_with("550 5.7.1"), "p=reject: {replies:?}");
    assert!(
        replies[2].starts_with("250"),
        "p=quarantine is delivered: {replies:?}"
    );
    assert!(
        replies[3].starts_with("550 5.7.1"),
        "sp=reject for a subdomain: {replies:?}"
    );
    assert!(replies[4].starts_with("550 5.7.1"), "adkim=s: {replies:?}");
    assert!(replies[5].starts_with("250"), "no record: {replies:?}");
    let inbox = setup_wait(&setup, 2);
    let ar = auth_results(copy_of(&inbox, "a"));
    assert_eq!(result_of(&ar, "dmarc"), "pass", "{ar}");
    assert_eq!(result_of(&ar, "spf"), "fail", "{ar}");
    assert_eq!(
        result_of(&auth_results(copy_of(&inbox, "f")), "dmarc"),
        "none"
    );
    assert!(
        !inbox.iter().any(|(c, _)| c == "c"),
        "quarantined mail is not in INBOX"
    );
    let junk = stored(&setup, ".Junk/");
    let ar = auth_results(copy_of(&junk, "c"));
    assert_eq!(result_of(&ar, "dmarc"), "fail", "{ar}");
    let subs =
        std::fs::read_to_string(setup.tree.path("vmail/example.com/john/subscriptions")).unwrap();
    assert!(subs.contains("Junk"), "Junk is subscribed: {subs}");
    assert!(setup
        .tree
        .path("vmail/example.com/john/.Junk/maildirfolder")
        .exists());
}

#[test]
fn dmarc_report_mode_delivers_failures_with_the_result_in_the_header() {
    let (setup, _dns, _key) = dmarc_setup("report");
    let server = setup.start();
    let replies = send_all(
        &setup,
        server.addr("smtp").port(),
        &[Job {
            ip: "127.0.0.2",
            sender: "x@b.test",
            message: message("b", "x@b.test"),
        }],
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let inbox = setup_wait(&setup, 1);
    let ar = auth_results(copy_of(&inbox, "b"));
    assert_eq!(result_of(&ar, "dmarc"), "fail", "{ar}");
    assert!(ar.contains("policy.dmarc=reject"), "{ar}");
}

#[test]
fn arc_chains_sealed_by_dkimpy_verify_and_tampered_ones_fail() {
    let setup = setup_with("");
    let keys = setup.tree.path("keys");
    let (key, key_txt) = opendkim_key(&keys, "list.test", "arc");
    let dns = FakeDns::start(vec![
        txt("arc._domainkey.list.test", &key_txt),
        txt("sender.test", "v=spf1 ip4:127.0.0.2 -all"),
    ]);
    add_config(&setup, &format!("dns_servers = \"{}\"", dns.addr));
    let server = setup.start();
    let k = key.to_str().unwrap();
    let mut original =
        b"Authentication-Results: list.test; spf=pass smtp.mailfrom=sender.test\r\n".to_vec();
    original.extend(message("arc", "x@sender.test"));
    let sealed = tool(
        &[
            "arcsign",
            "--key",
            k,
            "--selector",
            "arc",
            "--domain",
            "list.test",
            "--srv-id",
            "list.test",
        ],
        &original,
    );
    let mut tampered = sealed.clone();
    let n = tampered.len() - 4;
    tampered[n] ^= 0x20;
    let mut tampered_case = Vec::new();
    for line in String::from_utf8_lossy(&tampered).split_inclusive('\n') {
        tampered_case.extend(line.replace("X-Case: arc", "X-Case: tampered").as_bytes());
    }
    let replies = send_all(
        &setup,
        server.addr("smtp").port(),
        &[
            Job {
                ip: "127.0.0.2",
                sender: "x@sender.test",
                message: sealed,
            },
            Job {
                ip: "127.0.0.2",
                sender: "x@sender.test",
                message: tampered_case,
            },
        ],
    );
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let inbox = setup_wait(&setup, 2);
    assert_eq!(
        result_of(&auth_results(copy_of(&inbox, "arc")), "arc"),
        "pass"
    );
    assert_eq!(
        result_of(&auth_results(copy_of(&inbox, "tampered")), "arc"),
        "fail"
    );
}

#[test]
fn hostile_input_gets_results_not_crashes() {
    let setup = setup_with("");
    let dns = FakeDns::start(vec![
        txt("sender.test", "v=spf1 ip4:127.0.0.2 -all"),
        txt("_dmarc.sender.test", "v=DMARC1; p=reject; adkim=zz; pct=x"),
        txt(
            "broken._domainkey.sender.test",
            "v=DKIM1; k=rsa; p=!!!notbase64",
        ),
        ("slow.test".into(), "TXT", vec![Answer::Silent]),
    ]);
    add_config(&setup, &format!("dns_servers = \"{}\"", dns.addr));
    let server = setup.start();
    let garbage_sig = {
        let mut m =
            b"DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=broken; b=;;;===\r\n".to_vec();
        m.extend(message("garbage", "x@sender.test"));
        m
    };
    let fifty = {
        let mut m = Vec::new();
        for i in 0..50 {
            m.extend(format!("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.test; s=s{i}; h=from; bh=AAAA; b=AAAA\r\n").as_bytes());
        }
        m.extend(message("fifty", "x@sender.test"));
        m
    };
    let replies = send_all(
        &setup,
        server.addr("smtp").port(),
        &[
            Job {
                ip: "127.0.0.2",
                sender: "x@sender.test",
                message: garbage_sig,
            },
            Job {
                ip: "127.0.0.2",
                sender: "x@sender.test",
                message: fifty,
            },
            Job {
                ip: "127.0.0.2",
                sender: "x@slow.test",
                message: message("slow", "x@slow.test"),
            },
        ],
    );
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let inbox = setup_wait(&setup, 3);
    let ar = auth_results(copy_of(&inbox, "garbage"));
    assert!(
        ["permerror", "neutral"].contains(&result_of(&ar, "dkim").as_str()),
        "{ar}"
    );
    // Only the first few of the fifty signatures were looked up.
    let lookups = dns
        .queries
        .lock()
        .unwrap()
        .iter()
        .filter(|q| q.contains("._domainkey.sender.test"))
        .count();
    assert!(lookups <= 6, "{lookups} key lookups for 50 signatures");
    let ar = auth_results(copy_of(&inbox, "slow"));
    assert_eq!(result_of(&ar, "spf"), "temperror", "{ar}");
}

#[test]
fn spf_reject_fail_refuses_at_mail_from_but_never_for_a_dns_failure() {
    let setup = setup_with("");
    let dns = FakeDns::start(vec![
        txt("sender.test", "v=spf1 ip4:127.0.0.2 -all"),
        ("slow.test".into(), "TXT", vec![Answer::Silent]),
    ]);
    add_config(
        &setup,
        &format!(
            "dns_servers = \"{}\"\nspf_policy = \"reject_fail\"",
            dns.addr
        ),
    );
    let server = setup.start();
    let replies = send_all(
        &setup,
        server.addr("smtp").port(),
        &[
            Job {
                ip: "127.0.0.3",
                sender: "x@sender.test",
                message: message("fail", "x@sender.test"),
            },
            Job {
                ip: "127.0.0.2",
                sender: "x@sender.test",
                message: message("pass", "x@sender.test"),
            },
            Job {
                ip: "127.0.0.2",
                sender: "x@slow.test",
                message: message("slow", "x@slow.test"),
            },
        ],
    );
    assert!(replies[0].starts_with("550 5.7.23"), "{replies:?}");
    assert!(replies[1].starts_with("250"), "{replies:?}");
    assert!(
        replies[2].starts_with("250"),
        "temperror is not a reason to refuse: {replies:?}"
    );
}

/// Signing: keys from `pigeonpost dkim keygen` (rsa and ed25519, both lines
/// of the SigningTable match, so both sign), an OpenDKIM key made by
/// opendkim-genkey in OpenDKIM's own KeyTable/SigningTable format.
fn signing_setup(peer_port: Option<u16>) -> (MailSetup, FakeDns) {
    let setup = setup_with("");
    let keys = setup.tree.path("keys");
    let keygen = |alg: &str, sel: &str| {
        let o = util::run(
            &[
                "dkim",
                "keygen",
                "--domain",
                "example.com",
                "--selector",
                sel,
                "--algorithm",
                alg,
                "--dir",
                keys.to_str().unwrap(),
            ],
            &[],
        );
        assert!(o.status.success(), "{}", util::stderr(&o));
        let line = util::stdout(&o);
        assert!(
            line.starts_with(&format!("{sel}._domainkey\tIN\tTXT\t")),
            "{line}"
        );
        txt_record(&keys.join(format!("{sel}.txt")))
    };
    let rsa_txt = keygen("rsa", "pp");
    let ed_txt = keygen("ed25519", "pped");
    // An old OpenDKIM setup's 1024-bit key (RFC 8301's minimum) still signs.
    let (od_key, od_txt) = opendkim_key(&keys, "other.example", "od");
    let mode = std::fs::metadata(keys.join("pp.private")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    let k = keys.display();
    setup.tree.write(
        "opendkim/KeyTable",
        &format!(
            "# OpenDKIM's format\npp._domainkey.example.com example.com:pp:{k}/pp.private\npped._domainkey.example.com example.com:pped:{k}/pped.private\nod._domainkey.other.example other.example:od:{}\n",
            od_key.display()
        ),
    );
    setup.tree.write(
        "opendkim/SigningTable",
        "*@example.com pp._domainkey.example.com\n*@example.com pped._domainkey.example.com\n*@other.example od._domainkey.other.example\n",
    );
    let dns = FakeDns::start(vec![
        txt("pp._domainkey.example.com", &rsa_txt),
        txt("pped._domainkey.example.com", &ed_txt),
        txt("od._domainkey.other.example", &od_txt),
    ]);
    let d = setup.tree.dir.path().display().to_string();
    let mut extra = format!(
        "dkim_key_table = \"{d}/opendkim/KeyTable\"\ndkim_signing_table = \"refile:{d}/opendkim/SigningTable\"\ndns_servers = \"{}\"",
        dns.addr
    );
    if let Some(p) = peer_port {
        extra.push_str(&format!("\nrelayhost = \"[127.0.0.1]:{p}\""));
    }
    add_config(&setup, &extra);
    (setup, dns)
}

#[test]
fn mail_pigeonpost_signs_passes_dkimpy_locally_and_after_the_queue() {
    let setup0 = setup_with("");
    let peer = Peer::start(&setup0.tree.path("peer"), &[]);
    let (setup, dns) = signing_setup(Some(peer.port));
    let server = setup.start();
    // From mynetworks (127.0.0.1): one local recipient, one remote.
    let jobs = vec![
        serde_json::json!({"ip": "127.0.0.1", "helo": "client", "sender": "alice@example.com", "rcpt": "john@example.com",
            "file": setup.tree.write("out/1.eml", &String::from_utf8_lossy(&message("local", "alice@example.com")))}),
        serde_json::json!({"ip": "127.0.0.1", "helo": "client", "sender": "alice@example.com", "rcpt": "friend@remote.example",
            "file": setup.tree.write("out/2.eml", &String::from_utf8_lossy(&message("remote", "alice@example.com")))}),
        serde_json::json!({"ip": "127.0.0.1", "helo": "client", "sender": "bob@other.example", "rcpt": "john@example.com",
            "file": setup.tree.write("out/3.eml", &String::from_utf8_lossy(&message("opendkim", "bob@other.example")))}),
    ];
    let out = tool(
        &["send", "--port", &server.addr("smtp").port().to_string()],
        serde_json::to_string(&jobs).unwrap().as_bytes(),
    );
    let replies = String::from_utf8(out).unwrap();
    assert!(replies.lines().all(|l| l.starts_with("250")), "{replies}");
    let inbox = setup_wait(&setup, 2);
    let dns_addr = dns.addr.to_string();
    let verify = |msg: &[u8], index: usize| {
        String::from_utf8(tool(
            &["verify", "--dns", &dns_addr, "--index", &index.to_string()],
            msg,
        ))
        .unwrap()
        .trim()
        .to_string()
    };
    let local = copy_of(&inbox, "local");
    assert_eq!(
        local.matches("DKIM-Signature:").count(),
        2,
        "rsa and ed25519: {local}"
    );
    assert!(
        local.contains("a=rsa-sha256") && local.contains("a=ed25519-sha256"),
        "{local}"
    );
    assert!(local.contains("c=relaxed/relaxed"), "{local}");
    assert_eq!(verify(local.as_bytes(), 0), "pass", "{local}");
    assert_eq!(verify(local.as_bytes(), 1), "pass", "{local}");
    let od = copy_of(&inbox, "opendkim");
    assert!(
        od.contains("s=od") && od.contains("d=other.example"),
        "{od}"
    );
    assert_eq!(verify(od.as_bytes(), 0), "pass", "{od}");
    let got = peer.wait(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1);
    assert_eq!(
        verify(&got[0].1, 0),
        "pass",
        "after the queue and a real SMTP peer"
    );
    assert_eq!(verify(&got[0].1, 1), "pass");
    let http = server.addr("http");
    assert!(metric(http, "pigeonpost_dkim_signed_total{algorithm=\"ed25519\"}") >= 2);
    // Outside mynetworks, unauthenticated: not ours to sign.
    let replies = send_all(
        &setup,
        server.addr("smtp").port(),
        &[Job {
            ip: "127.0.0.2",
            sender: "x@outside.test",
            message: message("outside", "alice@example.com"),
        }],
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let inbox = setup_wait(&setup, 3);
    assert!(!copy_of(&inbox, "outside").contains("DKIM-Signature"));
}

#[test]
fn dns_records_prints_what_a_domain_needs_and_check_compares() {
    let (setup, dns) = signing_setup(None);
    let cfg = setup.config.to_str().unwrap();
    let o = util::run(&["--config", cfg, "dns-records", "example.com"], &[]);
    assert!(o.status.success(), "{}", util::stderr(&o));
    let out = util::stdout(&o);
    for want in [
        "example.com.\tIN\tMX\t10 mail.example.com.",
        "\"v=spf1 mx ~all\"",
        "pp._domainkey.example.com.\tIN\tTXT",
        "pped._domainkey.example.com.\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=",
        "_dmarc.example.com.\tIN\tTXT\t\"v=DMARC1; p=none; rua=mailto:postmaster@example.com\"",
        "_mta-sts.example.com.",
        "_smtp._tls.example.com.",
        "_submissions._tcp.example.com.\tIN\tSRV\t0 1 465 mail.example.com.",
        "_imaps._tcp.example.com.\tIN\tSRV\t0 1 993 mail.example.com.",
        "_pop3s._tcp.example.com.\tIN\tSRV\t0 1 995 mail.example.com.",
    ] {
        assert!(out.contains(want), "{want} in\n{out}");
    }
    // --check: the fake DNS has the DKIM keys and nothing else.
    let o = util::run(
        &["--config", cfg, "dns-records", "--check", "example.com"],
        &[],
    );
    assert!(!o.status.success());
    let out = util::stdout(&o);
    assert!(
        out.contains("ok        pped._domainkey.example.com."),
        "{out}"
    );
    assert!(out.contains("missing   example.com. MX"), "{out}");
    drop(dns);
}

#[test]
fn signing_keys_reload_and_a_broken_key_keeps_the_old_ones() {
    let (setup, dns) = signing_setup(None);
    let server = setup.start();
    let port = server.addr("smtp").port().to_string();
    let dns_addr = dns.addr.to_string();
    let send = |case: &str| {
        let job = serde_json::json!([{"ip": "127.0.0.1", "helo": "client", "sender": "alice@example.com",
            "rcpt": "john@example.com",
            "file": setup.tree.write(&format!("out/{case}.eml"), &String::from_utf8_lossy(&message(case, "alice@example.com")))}]);
        let out = tool(&["send", "--port", &port], job.to_string().as_bytes());
        assert!(String::from_utf8_lossy(&out).starts_with("250"));
    };
    let signatures = |case: &str| {
        let n = stored(&setup, "").iter().filter(|(c, _)| c == case).count();
        assert_eq!(n, 1, "one copy of {case}");
        let all = setup_wait(&setup, 1);
        let text = copy_of(&all, case).to_string();
        let n = text.matches("DKIM-Signature:").count();
        let first =
            String::from_utf8(tool(&["verify", "--dns", &dns_addr], text.as_bytes())).unwrap();
        (n, first.trim().to_string())
    };
    send("before");
    crate::queue::wait_for(Duration::from_secs(5), || {
        (!stored(&setup, "").is_empty()).then_some(())
    });
    assert_eq!(signatures("before"), (2, "pass".to_string()));
    // A KeyTable naming a key file that isn't a key: refused, old keys kept.
    setup.tree.write("keys/garbage.private", "not a key\n");
    let keys = setup.tree.path("keys");
    util::replace(
        &setup.tree.path("opendkim/KeyTable"),
        &format!(
            "pp._domainkey.example.com example.com:pp:{}/garbage.private\npped._domainkey.example.com example.com:pped:{}/pped.private\n",
            keys.display(),
            keys.display()
        ),
    );
    assert!(server
        .wait_log(
            "reload failed; keeping the previous version",
            Duration::from_secs(10)
        )
        .is_some());
    send("broken");
    crate::queue::wait_for(Duration::from_secs(5), || {
        (stored(&setup, "").len() >= 2).then_some(())
    });
    assert_eq!(
        signatures("broken"),
        (2, "pass".to_string()),
        "the old keys still sign"
    );
    // A good KeyTable with only the ed25519 key: reloaded, one signature.
    util::replace(
        &setup.tree.path("opendkim/KeyTable"),
        &format!(
            "pped._domainkey.example.com example.com:pped:{}/pped.private\n",
            keys.display()
        ),
    );
    assert!(server
        .wait_log("reloaded", Duration::from_secs(10))
        .is_some());
    send("after");
    crate::queue::wait_for(Duration::from_secs(5), || {
        (stored(&setup, "").len() >= 3).then_some(())
    });
    assert_eq!(signatures("after"), (1, "pass".to_string()));
}
