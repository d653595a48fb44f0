//! POP3 end to end: Python's poplib (every command, STLS and 995),
//! fetchmail (keep and delete, STLS and implicit TLS), raw sockets for the
//! rules a client can't see (IN-USE lock, DELE only at QUIT, dropped
//! connections, new mail during a session, malformed commands), and UIDLs
//! byte-identical to Dovecot's on a Dovecot-made Maildir.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::smtp::python;
use crate::util::{copy_dir, dovecot_expected, give_to_vmail, require_tool, MailFixture, Tree};

/// The HOWTO setup with POP3 on 110 (STLS) and 995, plus `extra` lines.
fn pop3_setup(extra: &str) -> MailFixture {
    MailFixture::new(&[("pop3", "127.0.0.1:0"), ("pop3s", "127.0.0.1:0")], extra)
}

fn message(n: usize) -> String {
    format!(
        "From: sender@example.org\nTo: john@example.com\nSubject: message {n}\n\nline one of {n}\n.starts with a dot\nlast line\n"
    )
}

/// A line-level POP3 client on a raw socket.
struct Pop {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop {
    fn connect(addr: SocketAddr) -> Pop {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut p = Pop {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = p.line();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        p
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.line()
    }

    /// A multi-line answer after `+OK`, up to the terminating dot.
    fn multi(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed in a multi-line answer");
            if l == ".\r\n" {
                return v;
            }
            v.push(l.trim_end_matches("\r\n").to_string());
        }
    }

    fn login(addr: SocketAddr, user: &str, pass: &str) -> Pop {
        let mut p = Pop::connect(addr);
        assert_eq!(p.cmd(&format!("USER {user}")), "+OK\r\n");
        let r = p.cmd(&format!("PASS {pass}"));
        assert_eq!(r, "+OK Logged in.\r\n");
        p
    }

    fn stat(&mut self) -> String {
        self.cmd("STAT")
    }
}

#[test]
fn poplib_every_command_over_stls_and_995() {
    let setup = pop3_setup("");
    setup.deliver("john", &[&message(1), &message(2), &message(3)]);
    let server = setup.start();
    let code = r#"
import os, poplib, ssl, base64
CTX = ssl.create_default_context(cafile=os.environ["CAFILE"])
CTX.check_hostname = False
class FromOutside(poplib.POP3):
    # 127.0.0.2 -> 127.0.0.1: not "this host", so no plaintext before TLS
    def _create_socket(self, timeout):
        import socket
        return socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.2", 0))
p = FromOutside("127.0.0.1", int(os.environ["PORT"]))
caps = p.capa()
assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
assert "UIDL" in caps and "TOP" in caps and "PIPELINING" in caps and "RESP-CODES" in caps, caps
try:
    p.user("john@example.com"); raise SystemExit("USER allowed before TLS")
except poplib.error_proto as e:
    assert b"[AUTH]" in e.args[0], e
p.stls(CTX)
caps = p.capa()
assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN", "LOGIN"], caps
try:
    p.user("john@example.com"); p.pass_("wrong"); raise SystemExit("wrong password accepted")
except poplib.error_proto as e:
    assert e.args[0] == b"-ERR [AUTH] Authentication failed.", e
p.user("john@example.com")
assert p.pass_("john123") == b"+OK Logged in."
count, size = p.stat()
assert count == 3, count
resp, listing, _ = p.list()
sizes = [int(l.split()[1]) for l in listing]
assert sum(sizes) == size, (sizes, size)
assert p.list(2).split()[2] == str(sizes[1]).encode()
resp, uidls, _ = p.uidl()
uidls = [l.split()[1].decode() for l in uidls]
assert len(set(uidls)) == 3 and all(len(u) == 16 for u in uidls), uidls
assert p.uidl(3).split()[2].decode() == uidls[2]
resp, lines, octets = p.top(1, 1)
assert lines[-2:] == [b"", b"line one of 1"], lines
resp, lines, octets = p.retr(2)
assert resp == b"+OK %d octets" % sizes[1], resp
assert lines[2] == b"Subject: message 2" and lines[-2] == b".starts with a dot", lines
# the CRLF size the LIST promised, dot-stuffing undone by poplib
assert sum(len(l) + 2 for l in lines) == sizes[1], (lines, sizes[1])
assert p.dele(3).startswith(b"+OK")
assert p.stat()[0] == 2
assert p.rset().startswith(b"+OK")
assert p.stat()[0] == 3
assert p.noop() == b"+OK"
try:
    p.retr(4); raise SystemExit("RETR 4 worked")
except poplib.error_proto as e:
    assert b"no message 4" in e.args[0], e
p.dele(1)
assert p.quit() == b"+OK Logging out."
# 995, implicit TLS, AUTH PLAIN with an initial response
s = poplib.POP3_SSL("127.0.0.1", int(os.environ["PORTS"]), context=CTX)
ir = base64.b64encode(b"\0john@example.com\0john123").decode()
assert s._shortcmd("AUTH PLAIN " + ir) == b"+OK Logged in."
assert s.stat()[0] == 2
try:
    s.apop("john@example.com", "john123"); raise SystemExit("APOP worked")
except poplib.error_proto:
    pass
s.quit()
print("ok")
"#;
    let (ok, out, err) = python(
        code,
        &[
            ("PORT", server.addr("pop3").port().to_string()),
            ("PORTS", server.addr("pop3s").port().to_string()),
            (
                "CAFILE",
                setup.tree.path("tls/cert.pem").display().to_string(),
            ),
        ],
    );
    assert!(ok && out.contains("ok"), "stdout: {out}\nstderr: {err}");
    // DELE 1 took effect at QUIT; message 2 was retrieved, so it is \Seen.
    let files = setup.files("john");
    assert_eq!(files.len(), 2, "{files:?}");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| f.parent().unwrap().ends_with("cur")));
    assert_eq!(
        names.iter().filter(|n| n.ends_with(":2,S")).count(),
        1,
        "{names:?}"
    );
    assert!(server
        .wait_log("\"logged out\"", Duration::from_secs(5))
        .is_some());
}

#[test]
fn dele_takes_effect_only_at_quit() {
    let setup = pop3_setup("");
    setup.deliver("john", &[&message(1), &message(2)]);
    let server = setup.start();
    let addr = server.addr("pop3");

    // Dropped connection: nothing deleted.
    let mut p = Pop::login(addr, "john@example.com", "john123");
    assert_eq!(p.cmd("DELE 1"), "+OK Marked to be deleted.\r\n");
    assert_eq!(p.cmd("DELE 2"), "+OK Marked to be deleted.\r\n");
    assert_eq!(p.stat(), "+OK 0 0\r\n");
    drop(p);
    assert!(server
        .wait_log("lost connection, nothing deleted", Duration::from_secs(5))
        .is_some());
    assert_eq!(setup.files("john").len(), 2);

    // RSET undoes DELE.
    let mut p = Pop::login(addr, "john@example.com", "john123");
    assert!(p.stat().starts_with("+OK 2 "));
    p.cmd("DELE 1");
    assert!(p.cmd("RSET").starts_with("+OK 2 messages"));
    assert_eq!(p.cmd("QUIT"), "+OK Logging out.\r\n");
    assert_eq!(setup.files("john").len(), 2);

    // QUIT commits.
    let mut p = Pop::login(addr, "john@example.com", "john123");
    p.cmd("DELE 2");
    assert_eq!(p.cmd("QUIT"), "+OK Logging out.\r\n");
    let files = setup.files("john");
    assert_eq!(files.len(), 1);
    assert!(std::fs::read_to_string(&files[0])
        .unwrap()
        .contains("Subject: message 1"));
}

#[test]
fn second_session_gets_in_use_and_new_mail_waits_for_the_next_session() {
    let setup = pop3_setup("");
    setup.deliver("john", &[&message(1)]);
    let server = setup.start();
    let addr = server.addr("pop3");

    let mut first = Pop::login(addr, "john@example.com", "john123");
    let mut second = Pop::connect(addr);
    second.cmd("USER john@example.com");
    assert_eq!(
        second.cmd("PASS john123"),
        "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    );
    // Another user is not affected.
    setup.deliver("jane", &[&message(9)]);
    let mut jane = Pop::login(addr, "jane@example.com", "jane123");
    assert!(jane.stat().starts_with("+OK 1 "));
    jane.cmd("QUIT");

    // Mail arriving now (by SMTP) is not in this session's listing.
    let (ok, out, err) = python(
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]))
s.sendmail("a@example.org", ["john@example.com"], b"Subject: late\r\n\r\nhello\r\n")
s.quit()
"#,
        &[("PORT", server.addr("smtp").port().to_string())],
    );
    assert!(ok, "{out}{err}");
    assert!(first.stat().starts_with("+OK 1 "));
    assert_eq!(first.cmd("LIST 2"), "-ERR There's no message 2.\r\n");
    assert_eq!(first.cmd("QUIT"), "+OK Logging out.\r\n");

    // The lock is gone with the session; the new mail is there now.
    second.cmd("USER john@example.com");
    assert_eq!(second.cmd("PASS john123"), "+OK Logged in.\r\n");
    assert!(second.stat().starts_with("+OK 2 "));
    assert_eq!(second.cmd("TOP 2 0"), "+OK\r\n");
    let top = second.multi();
    assert!(top.iter().any(|l| l == "Subject: late"), "{top:?}");
    second.cmd("QUIT");
}

#[test]
fn malformed_commands_get_err_and_the_session_goes_on() {
    let setup = pop3_setup("");
    setup.deliver("john", &[&message(1)]);
    let server = setup.start();
    let mut p = Pop::connect(server.addr("pop3"));
    assert_eq!(p.cmd("HELO there"), "-ERR Unknown command: HELO\r\n");
    assert_eq!(p.cmd(""), "-ERR Empty command.\r\n");
    assert_eq!(p.cmd("STAT"), "-ERR Not logged in.\r\n");
    let long = "A".repeat(20_000);
    assert_eq!(p.cmd(&long), "-ERR Line too long.\r\n");
    assert_eq!(p.cmd("USER john@example.com"), "+OK\r\n");
    assert_eq!(p.cmd("PASS john123"), "+OK Logged in.\r\n");
    assert_eq!(p.cmd("RETR x"), "-ERR Invalid message number: x\r\n");
    assert_eq!(p.cmd("TOP 1 -5"), "-ERR Invalid number of lines: -5\r\n");
    assert_eq!(p.cmd("LIST 1 2"), "-ERR Too many arguments.\r\n");
    assert_eq!(
        p.cmd("RETR 1"),
        format!("+OK {} octets\r\n", message(1).len() + 7)
    );
    let body = p.multi();
    assert_eq!(body[2], "Subject: message 1");
    assert_eq!(body[5], "..starts with a dot");
    // Pipelined commands come back in order.
    p.w.write_all(b"NOOP\r\nSTAT\r\nUIDL 1\r\n").unwrap();
    assert_eq!(p.line(), "+OK\r\n");
    assert!(p.line().starts_with("+OK 1 "));
    assert!(p.line().starts_with("+OK 1 00000001"));
    assert_eq!(p.cmd("QUIT"), "+OK Logging out.\r\n");
}

#[test]
fn too_many_bad_commands_end_the_session() {
    let setup = pop3_setup("");
    let server = setup.start();
    let mut p = Pop::connect(server.addr("pop3"));
    for _ in 0..19 {
        assert!(p.cmd("BOGUS").starts_with("-ERR Unknown command"));
    }
    assert!(p.cmd("BOGUS").starts_with("-ERR Unknown command"));
    assert_eq!(p.line(), "-ERR Too many bad commands.\r\n");
    assert_eq!(p.line(), "", "connection should be closed");
}

#[test]
fn uidls_are_byte_identical_to_dovecots_on_a_dovecot_maildir() {
    let fixture = std::fs::canonicalize("tests/fixtures/dovecot-maildir/Maildir").expect("fixture");
    for format in ["%08Xu%08Xv", "%u.%v", "%f", "%g", "%v-%u-%04Xu"] {
        let setup = pop3_setup(&format!("pop3_uidl_format = \"{format}\""));
        std::fs::create_dir_all(setup.tree.path("vmail/example.com")).unwrap();
        copy_dir(&fixture, &setup.maildir("john"));
        give_to_vmail(&setup.maildir("john"));
        let server = setup.start();
        let mut p = Pop::login(server.addr("pop3"), "john@example.com", "john123");
        assert_eq!(p.cmd("UIDL"), "+OK\r\n");
        let got = p.multi();
        let want = dovecot_expected(&format!("uidl {format}"));
        assert!(!want.is_empty(), "fixture has no [uidl {format}] section");
        assert_eq!(got, want, "pop3_uidl_format = {format}");
        p.cmd("QUIT");
    }
}

/// Runs fetchmail with an rc file; the MDA writes each message to `out`.
fn fetchmail(tree: &Tree, port: u16, options: &str, out: &Path) -> (bool, String) {
    let rc = tree.write(
        "fetchmailrc",
        &format!(
            "set no bouncemail\n\
             poll 127.0.0.1 with proto POP3 service {port} auth password\n  \
             user \"john@example.com\" there with password \"john123\" is \"root\" here\n  \
             options {options} no sslcertck mda \"cat > {}/msg.$$\"\n",
            out.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let home = tree.path("fetchmail-home");
    std::fs::create_dir_all(&home).unwrap();
    let started = Instant::now();
    let o = Command::new("fetchmail")
        .arg("-f")
        .arg(&rc)
        .args(["--nodetach", "-v", "--pidfile"])
        .arg(home.join("pid"))
        .env("HOME", &home)
        .env("FETCHMAILHOME", &home)
        .output()
        .expect("fetchmail");
    assert!(started.elapsed() < Duration::from_secs(60));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // 0: mail fetched, 1: no mail
    (o.status.success(), log)
}

fn fetched(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn fetchmail_keep_then_delete_over_stls_and_995() {
    if !require_tool("fetchmail") {
        return;
    }
    let setup = pop3_setup("");
    let msgs: Vec<String> = (1..=5).map(message).collect();
    let refs: Vec<&str> = msgs.iter().map(String::as_str).collect();
    setup.deliver("john", &refs);
    let server = setup.start();

    // 110 + STLS, keep: everything fetched, nothing deleted.
    let out = setup.tree.path("out-keep");
    std::fs::create_dir_all(&out).unwrap();
    let (ok, log) = fetchmail(
        &setup.tree,
        server.addr("pop3").port(),
        "keep fetchall sslproto \"tls1.2+\"",
        &out,
    );
    assert!(ok, "{log}");
    assert!(log.contains("STLS"), "fetchmail did not use STLS:\n{log}");
    let got = fetched(&out);
    assert_eq!(got.len(), 5, "{log}");
    for (i, m) in got.iter().enumerate() {
        // fetchmail adds a Received: header; the message itself is intact.
        assert!(m.ends_with(&msgs[i]), "message {i}:\n{m}");
    }
    assert_eq!(setup.files("john").len(), 5);

    // 995, delete: fetched again, then the Maildir is empty.
    let out = setup.tree.path("out-delete");
    std::fs::create_dir_all(&out).unwrap();
    let (ok, log) = fetchmail(
        &setup.tree,
        server.addr("pop3s").port(),
        "ssl nokeep fetchall",
        &out,
    );
    assert!(ok, "{log}");
    assert_eq!(fetched(&out).len(), 5, "{log}");
    assert_eq!(setup.files("john"), Vec::<PathBuf>::new());
}

/// Peak resident memory of a process, from /proc (kB).
fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn retr_of_a_large_message_streams_it() {
    let setup = pop3_setup("");
    // 40 MiB in 100-octet LF lines; the server must not hold it in memory.
    let lines = (40 << 20) / 100;
    let mut big = String::with_capacity(lines * 100 + 64);
    big.push_str("Subject: big\n\n");
    let line = format!("{}\n", "x".repeat(99));
    for _ in 0..lines {
        big.push_str(&line);
    }
    setup.deliver("john", &[&big]);
    let crlf_size = big.len() + big.matches('\n').count();
    drop(big);
    let server = setup.start();
    let mut p = Pop::login(server.addr("pop3"), "john@example.com", "john123");
    assert_eq!(p.cmd("LIST 1"), format!("+OK 1 {crlf_size}\r\n"));
    assert_eq!(p.cmd("RETR 1"), format!("+OK {crlf_size} octets\r\n"));
    let mut got = 0;
    let mut n = 0;
    loop {
        let l = p.line();
        assert!(!l.is_empty(), "connection closed after {got} octets");
        if l == ".\r\n" {
            break;
        }
        assert!(l.ends_with("\r\n"));
        got += l.len();
        n += 1;
    }
    assert_eq!(got, crlf_size);
    assert_eq!(n, lines + 2);
    assert_eq!(p.cmd("QUIT"), "+OK Logging out.\r\n");
    let hwm = vm_hwm_kb(server.child.id());
    eprintln!("server VmHWM {hwm} kB");
    assert!(
        hwm < 32 * 1024,
        "server peaked at {hwm} kB while sending a 40 MiB message"
    );
}
