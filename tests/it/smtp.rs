//! SMTP end to end with real clients (Python's smtplib, swaks) and raw
//! sockets: delivery into the right Maildir byte for byte, aliases, relay
//! policy and address tricks, AUTH rules, TLS on 587/465, limits,
//! pipelining, BDAT, smuggling, disk full, and kill -9 under load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{require_tool, test_listen, Server, Tree};

/// A complete HOWTO-like setup in a temp dir: virtual domain example.com,
/// local domain mail.example.com, aliases, a passwd-file, a certificate.
pub struct MailSetup {
    pub tree: Tree,
    pub config: PathBuf,
}

pub fn mail_setup(extra: &str) -> MailSetup {
    let tree = Tree::new();
    let d = tree.dir.path().display().to_string();
    tree.write_cert(&["localhost", "mail.example.com"]);
    tree.write(
        "postfix/vmailbox",
        "john@example.com example.com/john/\njane@example.com example.com/jane/\nmboxer@example.com example.com/mboxer\n",
    );
    tree.write(
        "postfix/virtual",
        "info@example.com john@example.com, jane@example.com\n@alias.example john@example.com\nteam@mail.example.com alice, jane@example.com\n",
    );
    tree.write("aliases", "postmaster: alice\nroot: alice\n");
    tree.write(
        "dovecot/users",
        &format!(
            "john@example.com:{{PLAIN}}john123::::::\nalice:{{PLAIN}}alice123:1000:1000::{d}/home/alice::\n"
        ),
    );
    std::fs::create_dir_all(tree.path("home/alice")).unwrap();
    std::fs::create_dir_all(tree.path("vmail")).unwrap();
    let config = tree.write(
        "pigeonpost.toml",
        &format!(
            r#"
myhostname = "mail.example.com"
mydomain = "example.com"
myorigin = "$myhostname"
mydestination = "$myhostname, localhost"
mynetworks = "127.0.0.1/32"
home_mailbox = "Maildir/"
alias_maps = "hash:{d}/aliases"
virtual_mailbox_domains = "example.com"
virtual_alias_domains = "alias.example"
virtual_mailbox_base = "{d}/vmail"
virtual_mailbox_maps = "hash:{d}/postfix/vmailbox"
virtual_alias_maps = "hash:{d}/postfix/virtual"
virtual_uid_maps = "static:5000"
virtual_gid_maps = "static:5000"
recipient_delimiter = "+"
auth_mechanisms = "plain login cram-md5"
passdb = "passwd-file:{d}/dovecot/users"
userdb = "passwd-file:{d}/dovecot/users"
ssl_cert = "<{d}/tls/cert.pem"
ssl_key = "<{d}/tls/key.pem"
{extra}
{}"#,
            test_listen(&[
                ("submission", "127.0.0.1:0"),
                ("submissions", "127.0.0.1:0")
            ])
        ),
    );
    MailSetup { tree, config }
}

impl MailSetup {
    pub fn start(&self) -> Server {
        Server::start(&self.config, &[])
    }

    /// Files in a Maildir's new/ directory, sorted.
    pub fn new_mail(&self, maildir: &str) -> Vec<PathBuf> {
        let dir = self.tree.path(maildir).join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Waits (briefly) for `n` messages in `maildir`.
    pub fn wait_mail(&self, maildir: &str, n: usize) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let files = self.new_mail(maildir);
            if files.len() >= n || Instant::now() > deadline {
                return files;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs a Python snippet with `PORT`/`PORTS` style variables in its environment.
pub fn python(code: &str, env: &[(&str, String)]) -> (bool, String, String) {
    assert!(
        require_tool("python3"),
        "python3 is needed for the SMTP client tests"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PY_PRELUDE: &str = r#"
import os, smtplib, ssl, sys
PORT = int(os.environ.get("PORT", "0"))
CTX = ssl.create_default_context(cafile=os.environ.get("CAFILE"))
CTX.check_hostname = False
def code_of(f, *a, **k):
    try:
        r = f(*a, **k)
        return r[0] if isinstance(r, tuple) else 250
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]
"#;

fn py(code: &str, port: u16, setup: &MailSetup, extra: &[(&str, String)]) -> String {
    let mut env = vec![
        ("PORT", port.to_string()),
        (
            "CAFILE",
            setup.tree.path("tls/cert.pem").display().to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    let (ok, out, err) = python(&format!("{PY_PRELUDE}\n{code}"), &env);
    assert!(ok, "python failed:\n{err}\n{out}");
    out
}

/// A raw SMTP conversation: writes `script` in one go, reads until `expect_replies` final lines.
fn raw(addr: SocketAddr, script: &[u8], expect_replies: usize) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 4096];
    // Greeting first.
    while !out.contains("\r\n") {
        let n = s.read(&mut buf).unwrap();
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(script).unwrap();
    let finals = |o: &str| {
        o.lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .count()
    };
    while finals(&out) < expect_replies + 1 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    out
}

fn codes(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect()
}

/// Splits a delivered file into (trace headers we added, the message as sent).
fn split_trace(path: &Path) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("Return-Path: <"), "{text}");
    // Our block: Return-Path, Delivered-To, Received (with continuation lines).
    let mut end = 0;
    let mut seen_received = false;
    for line in text.split_inclusive('\n') {
        let is_ours = line.starts_with("Return-Path:")
            || line.starts_with("Delivered-To:")
            || line.starts_with("Received:");
        if is_ours || (seen_received && line.starts_with('\t')) {
            seen_received |= line.starts_with("Received:");
            end += line.len();
        } else {
            break;
        }
    }
    (text[..end].to_string(), bytes[end..].to_vec())
}

const MESSAGE: &str = "From: Sender <sender@outside.org>\r\nTo: john@example.com\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHällo,\r\n.a line that starts with a dot\r\n..two dots\r\n\r\n-- \r\nbye\r\n";

#[test]
fn virtual_and_local_delivery_is_byte_exact() {
    let setup = mail_setup("");
    let server = setup.start();
    let port = server.addr("smtp").port();
    py(
        r#"
s = smtplib.SMTP("127.0.0.1", PORT)
s.ehlo("client.outside.org")
msg = os.environ["MSG"].encode()
s.sendmail("sender@outside.org", ["john@example.com"], msg)
s.sendmail("sender@outside.org", ["alice@mail.example.com"], msg)
s.sendmail("", ["mboxer@example.com"], msg)
s.quit()
"#,
        port,
        &setup,
        &[("MSG", MESSAGE.to_string())],
    );
    let expected: Vec<u8> = MESSAGE.replace("\r\n", "\n").into_bytes();
    let john = setup.wait_mail("vmail/example.com/john", 1);
    assert_eq!(john.len(), 1);
    let (trace, body) = split_trace(&john[0]);
    assert_eq!(
        body, expected,
        "body stored byte-exact (LF line endings, dots unstuffed)"
    );
    assert!(trace.starts_with("Return-Path: <sender@outside.org>\nDelivered-To: john@example.com\nReceived: from client.outside.org ([127.0.0.1])\n\tby mail.example.com (pigeonpost) with ESMTP id "), "{trace}");
    assert!(trace.contains("\tfor <john@example.com>; "), "{trace}");
    let name = john[0].file_name().unwrap().to_string_lossy().into_owned();
    let size = std::fs::metadata(&john[0]).unwrap().len();
    assert!(name.contains(&format!(",S={size},W=")), "{name}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(setup.tree.path("vmail/example.com/john")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (5000, 5000, 0o700),
        "virtual_uid_maps/gid_maps, mode 0700"
    );

    let alice = setup.wait_mail("home/alice/Maildir", 1);
    assert_eq!(
        alice.len(),
        1,
        "local user: home_mailbox under the home directory"
    );
    assert_eq!(split_trace(&alice[0]).1, expected);
    assert_eq!(std::fs::metadata(&alice[0]).unwrap().uid(), 1000);

    let mbox = std::fs::read_to_string(setup.tree.path("vmail/example.com/mboxer")).unwrap();
    assert!(mbox.starts_with("From MAILER-DAEMON "), "{mbox}");
    assert!(mbox.contains("Return-Path: <>\n"));
    assert!(mbox.contains("\n.a line that starts with a dot\n"));
    assert!(
        setup
            .tree
            .path("vmail/example.com/john/tmp")
            .read_dir()
            .unwrap()
            .next()
            .is_none(),
        "tmp/ left empty"
    );
}

#[test]
fn aliases_one_to_many_and_catch_all() {
    let setup = mail_setup("");
    let server = setup.start();
    let out = raw(
        server.addr("smtp"),
        b"EHLO c\r\nMAIL FROM:<a@outside.org>\r\nRCPT TO:<info@example.com>\r\nRCPT TO:<anything@alias.example>\r\nRCPT TO:<team@mail.example.com>\r\nRCPT TO:<john+tag@example.com>\r\nDATA\r\nSubject: fan-out\r\n\r\nx\r\n.\r\nQUIT\r\n",
        8,
    );
    assert_eq!(
        codes(&out),
        ["220", "250", "250", "250", "250", "250", "250", "354", "250", "221"],
        "{out}"
    );
    // john gets one copy although three recipients lead to him; jane two routes, one copy; alice via alias.
    assert_eq!(setup.wait_mail("vmail/example.com/john", 1).len(), 1);
    assert_eq!(setup.wait_mail("vmail/example.com/jane", 1).len(), 1);
    assert_eq!(setup.wait_mail("home/alice/Maildir", 1).len(), 1);
}

#[test]
fn unknown_users_are_rejected_at_rcpt() {
    let setup = mail_setup("");
    let server = setup.start();
    let out = raw(
        server.addr("smtp"),
        b"EHLO c\r\nMAIL FROM:<a@outside.org>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<nobody@mail.example.com>\r\nRCPT TO:<john@example.com>\r\nQUIT\r\n",
        5,
    );
    assert!(
        out.contains("550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"),
        "{out}"
    );
    assert!(
        out.contains(
            "550 5.1.1 <nobody@mail.example.com>: Recipient address rejected: User unknown"
        ),
        "{out}"
    );
    assert!(out.contains("250 2.1.5"), "{out}");
}

#[test]
fn no_relay_from_outside_for_any_address_trick() {
    let setup = mail_setup("");
    let server = setup.start();
    let port = server.addr("smtp").port();
    let tricks = [
        "victim@remote.org",
        "victim%remote.org@example.com",
        "victim%remote.org@mail.example.com",
        "@example.com:victim@remote.org",
        "@mail.example.com,@example.com:victim@remote.org",
        "\"victim@remote.org\"@example.com",
        "\"victim@remote.org\"@mail.example.com",
        "remote.org!victim@example.com",
        "remote.org!victim@mail.example.com",
        "victim@remote.org@example.com",
        "victim@[192.0.2.1]",
    ];
    let list = tricks.join("\n");
    let out = py(
        r#"
s = smtplib.SMTP("127.0.0.1", PORT, source_address=("127.0.0.2", 0))
s.ehlo("outsider")
for rcpt in os.environ["TRICKS"].split("\n"):
    s.rset()
    s.mail("spammer@spam.example")
    code, text = s.docmd("RCPT TO:<%s>" % rcpt)
    print(code, rcpt, text.decode())
s.quit()
"#,
        port,
        &setup,
        &[("TRICKS", list)],
    );
    for line in out.lines() {
        assert!(
            line.starts_with("554 ") || line.starts_with("501 "),
            "not refused: {line}"
        );
    }
    assert_eq!(out.lines().count(), tricks.len());
    assert!(
        out.contains("554 victim@remote.org 5.7.1 <victim@remote.org>: Relay access denied"),
        "{out}"
    );
    // From inside mynetworks, the same relay is allowed.
    let inside = raw(
        server.addr("smtp"),
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<victim@remote.org>\r\nQUIT\r\n",
        4,
    );
    assert!(
        !inside.contains("554") && inside.contains("250 2.1.5"),
        "{inside}"
    );
}

#[test]
fn auth_needs_tls_on_587_and_on_25_from_outside() {
    let setup = mail_setup("");
    let server = setup.start();
    let out = py(
        r#"
s = smtplib.SMTP("127.0.0.1", PORT)
s.ehlo("c")
print("auth-advertised-before-tls", s.has_extn("auth"))
print("mail-before-tls", code_of(s.mail, "john@example.com"))
print("auth-before-tls", s.docmd("AUTH PLAIN AGpvaG5AZXhhbXBsZS5jb20Aam9objEyMw==")[0])
s.starttls(context=CTX)
s.ehlo("c")
print("auth-advertised-after-tls", s.has_extn("auth"))
print("mail-before-auth", code_of(s.mail, "john@example.com"))
s.rset()
try:
    s.login("john@example.com", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("wrong-password", e.smtp_code, e.smtp_error.decode())
s.login("john@example.com", "john123")
print("mail-after-auth", code_of(s.mail, "john@example.com"))
print("rcpt-after-auth", code_of(s.rcpt, "john@example.com"))
s.quit()
"#,
        server.addr("submission").port(),
        &setup,
        &[],
    );
    assert!(out.contains("auth-advertised-before-tls False"), "{out}");
    assert!(out.contains("mail-before-tls 530"), "{out}");
    assert!(out.contains("auth-before-tls 530"), "{out}");
    assert!(out.contains("auth-advertised-after-tls True"), "{out}");
    assert!(out.contains("mail-before-auth 530"), "{out}");
    assert!(out.contains("wrong-password 535 5.7.8"), "{out}");
    assert!(
        out.contains("mail-after-auth 250") && out.contains("rcpt-after-auth 250"),
        "{out}"
    );

    // Port 25 from a non-local address (127.0.0.2 -> 127.0.0.1): no AUTH without TLS.
    let out = py(
        r#"
s = smtplib.SMTP("127.0.0.1", PORT, source_address=("127.0.0.2", 0))
s.ehlo("c")
print("advertised", s.has_extn("auth"))
print("auth", s.docmd("AUTH PLAIN AGpvaG5AZXhhbXBsZS5jb20Aam9objEyMw==")[0])
s.starttls(context=CTX)
s.ehlo("c")
s.login("john@example.com", "john123")
print("relay-after-auth", code_of(s.mail, "john@example.com"), code_of(s.rcpt, "victim@remote.org"))
"#,
        server.addr("smtp").port(),
        &setup,
        &[],
    );
    assert!(
        out.contains("advertised False") && out.contains("auth 538"),
        "{out}"
    );
    assert!(
        out.contains("relay-after-auth 250 250"),
        "authenticated relay is allowed: {out}"
    );
}

#[test]
fn implicit_tls_on_465_and_swaks() {
    let setup = mail_setup("");
    let server = setup.start();
    py(
        r#"
s = smtplib.SMTP_SSL("127.0.0.1", PORT, context=CTX)
s.login("john@example.com", "john123")
s.sendmail("john@example.com", ["jane@example.com"], b"Subject: over 465\r\n\r\nhi\r\n")
s.quit()
"#,
        server.addr("submissions").port(),
        &setup,
        &[],
    );
    let jane = setup.wait_mail("vmail/example.com/jane", 1);
    assert_eq!(jane.len(), 1);
    assert!(
        split_trace(&jane[0]).0.contains("with ESMTPSA id"),
        "RFC 3848 protocol for TLS + AUTH"
    );

    if require_tool("swaks") {
        let out = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{}", server.addr("submission").port()),
            ])
            .args([
                "--tls",
                "--auth",
                "LOGIN",
                "--auth-user",
                "john@example.com",
                "--auth-password",
                "john123",
            ])
            .args([
                "--from",
                "john@example.com",
                "--to",
                "jane@example.com",
                "--header",
                "Subject: from swaks",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(setup.wait_mail("vmail/example.com/jane", 2).len(), 2);
        let out = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{}", server.addr("smtp").port()),
            ])
            .args([
                "--from",
                "a@outside.org",
                "--to",
                "john@example.com",
                "--pipeline",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(setup.wait_mail("vmail/example.com/john", 1).len(), 1);
    }
}

#[test]
fn oversize_pipelining_bdat_and_smuggling() {
    let setup = mail_setup("message_size_limit = 20000");
    let server = setup.start();
    let smtp = server.addr("smtp");
    let big = "x".repeat(998) + "\r\n";
    let mut script = b"EHLO c\r\nMAIL FROM:<a@outside.org> SIZE=30000\r\nMAIL FROM:<a@outside.org>\r\nRCPT TO:<john@example.com>\r\nDATA\r\n".to_vec();
    script.extend(big.repeat(25).as_bytes());
    script.extend(b".\r\nQUIT\r\n");
    let out = raw(smtp, &script, 6);
    assert!(
        out.contains("552 5.3.4 Message size exceeds fixed limit"),
        "{out}"
    );
    assert!(
        out.contains("552 5.3.4 Error: message file too big"),
        "{out}"
    );
    assert!(setup.new_mail("vmail/example.com/john").is_empty());

    // Two transactions pipelined in one write, then BDAT.
    let out = raw(
        smtp,
        b"EHLO c\r\nMAIL FROM:<a@outside.org>\r\nRCPT TO:<john@example.com>\r\nDATA\r\nSubject: one\r\n\r\n1\r\n.\r\nMAIL FROM:<b@outside.org>\r\nRCPT TO:<jane@example.com>\r\nDATA\r\nSubject: two\r\n\r\n2\r\n.\r\nMAIL FROM:<c@outside.org>\r\nRCPT TO:<jane@example.com>\r\nBDAT 10\r\nSubject: tBDAT 11 LAST\r\nhree\r\n\r\n3\r\nQUIT\r\n",
        13,
    );
    assert_eq!(
        codes(&out),
        [
            "220", "250", "250", "250", "354", "250", "250", "250", "354", "250", "250", "250",
            "250", "250", "221"
        ],
        "{out}"
    );
    assert_eq!(setup.wait_mail("vmail/example.com/john", 1).len(), 1);
    let jane = setup.wait_mail("vmail/example.com/jane", 2);
    assert_eq!(jane.len(), 2);
    let bodies: Vec<Vec<u8>> = jane.iter().map(|p| split_trace(p).1).collect();
    assert!(
        bodies.contains(&b"Subject: three\n\n3\n".to_vec()),
        "{bodies:?}"
    );

    // SMTP smuggling: <LF>.<LF> must not end the first message.
    let out = raw(
        smtp,
        b"EHLO c\r\nMAIL FROM:<a@outside.org>\r\nRCPT TO:<john@example.com>\r\nDATA\r\nSubject: carrier\r\n\r\nhello\n.\nMAIL FROM:<admin@example.com>\r\nRCPT TO:<john@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\nQUIT\r\n",
        6,
    );
    assert_eq!(
        codes(&out),
        ["220", "250", "250", "250", "354", "250", "221"],
        "{out}"
    );
    let john = setup.wait_mail("vmail/example.com/john", 2);
    assert_eq!(john.len(), 2, "exactly one new message");
    let newest = john
        .iter()
        .map(|p| split_trace(p).1)
        .find(|b| b.starts_with(b"Subject: carrier"))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&newest).contains("Subject: smuggled"),
        "the smuggled part stays inside"
    );
}

/// Mounts a tiny tmpfs at `dir`; None where the sandbox forbids mounting.
fn tiny_tmpfs(dir: &Path) -> Option<TmpfsGuard> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| TmpfsGuard(dir.to_path_buf()))
}

struct TmpfsGuard(PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_4xx_and_leaves_nothing_behind() {
    let setup = mail_setup("");
    let Some(_mount) = tiny_tmpfs(&setup.tree.path("vmail")) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must be able to mount a tmpfs for this test"
        );
        eprintln!("SKIPPED: cannot mount tmpfs here");
        return;
    };
    let server = setup.start();
    let body = "y".repeat(998) + "\r\n";
    let mut script =
        b"EHLO c\r\nMAIL FROM:<a@outside.org>\r\nRCPT TO:<info@example.com>\r\nDATA\r\n".to_vec();
    script.extend(body.repeat(100).as_bytes());
    script.extend(b".\r\nRCPT TO:<x@example.com>\r\nQUIT\r\n");
    let out = raw(server.addr("smtp"), &script, 5);
    assert!(
        out.contains("452 4.3.1 Insufficient system storage"),
        "{out}"
    );
    for user in ["john", "jane"] {
        for sub in ["new", "tmp", "cur"] {
            let dir = setup.tree.path(&format!("vmail/example.com/{user}/{sub}"));
            let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            assert_eq!(
                n,
                0,
                "{} must be empty after a failed delivery",
                dir.display()
            );
        }
    }
    // A small message still fits and is delivered.
    let out = raw(server.addr("smtp"), b"EHLO c\r\nMAIL FROM:<a@outside.org>\r\nRCPT TO:<john@example.com>\r\nDATA\r\nsmall\r\n.\r\nQUIT\r\n", 5);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    let setup = mail_setup("");
    let mut server = setup.start();
    let port = server.addr("smtp").port();
    // 8 clients send up to 1000 numbered messages; each prints the ids the server acknowledged.
    let script = format!(
        r#"{PY_PRELUDE}
import threading
acked = []
lock = threading.Lock()
def worker(w):
    try:
        s = smtplib.SMTP("127.0.0.1", PORT, timeout=10)
        for i in range(w, 1000, 8):
            s.sendmail("load@outside.org", ["john@example.com"], ("Subject: load %d\r\nMessage-Id: <load-%d@test>\r\n\r\nbody %d\r\n" % (i, i, i)).encode())
            with lock:
                print("ACK", i, flush=True)
    except Exception as e:
        pass
ts = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
"#
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if let Some(i) = line.strip_prefix("ACK ") {
                acked.push(i.parse::<u32>().unwrap());
            }
        }
        acked
    });
    // Let a few hundred through, then kill -9 mid-stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.new_mail("vmail/example.com/john").len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    // Acks trail the stored files slightly: the kill came after ~200 were stored.
    assert!(acked.len() >= 100, "load ran: {} acked", acked.len());
    let mut found = std::collections::HashMap::new();
    for f in setup.new_mail("vmail/example.com/john") {
        let (_, body) = split_trace(&f);
        let text = String::from_utf8_lossy(&body);
        let id: u32 = text
            .strip_prefix("Subject: load ")
            .and_then(|r| r.split('\n').next())
            .unwrap()
            .parse()
            .unwrap();
        *found.entry(id).or_insert(0) += 1;
    }
    for id in &acked {
        assert_eq!(
            found.get(id),
            Some(&1),
            "acknowledged message {id} must be present exactly once"
        );
    }
    assert!(found.values().all(|&n| n == 1), "no duplicates");
    let tmp = std::fs::read_dir(setup.tree.path("vmail/example.com/john/tmp"))
        .unwrap()
        .count();
    eprintln!(
        "acked {}, stored {}, leftover tmp files {tmp}",
        acked.len(),
        found.len()
    );
}
