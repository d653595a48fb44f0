//! QUOTA (RFC 9208) and the Maildir++ `maildirsize` file end to end: IMAP
//! APPEND and SMTP delivery refused over quota, GETQUOTAROOT's numbers,
//! and Dovecot's own `doveadm quota` agreeing with us on the same Maildir,
//! whichever of the two changed it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{give_to_vmail, require_tool, LineClient, MailFixture, Server};

/// The HOWTO fixture with IMAP, quota on (`quota_rule` 1M for everyone)
/// and a passwd-file userdb giving john his own `userdb_quota_rule`.
fn quota_setup(john_rule: &str) -> MailFixture {
    let f = MailFixture::new(
        &[("imap", "127.0.0.1:0")],
        "quota = \"maildir:User quota\"\nquota_rule = \"*:storage=1M\"\n",
    );
    let d = f.tree.dir.path().display().to_string();
    f.tree.write(
        "users",
        &format!(
            "john@example.com:{{PLAIN}}john123:5000:5000::{d}/vmail/example.com/john::userdb_quota_rule={john_rule}\n\
             jane@example.com:{{PLAIN}}jane123:5000:5000::{d}/vmail/example.com/jane::\n"
        ),
    );
    let config = std::fs::read_to_string(&f.config).unwrap();
    let static_userdb = format!("userdb = \"static:uid=5000 gid=5000 home={d}/vmail/%d/%n\"");
    let config = config.replace(
        &static_userdb,
        &format!("userdb = \"passwd-file:{d}/users\""),
    );
    std::fs::write(&f.config, config).unwrap();
    for u in ["john", "jane"] {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(f.maildir(u).join(sub)).unwrap();
        }
    }
    give_to_vmail(&f.tree.path("vmail"));
    f
}

fn imap_login(server: &Server, user: &str, password: &str) -> LineClient {
    let mut c = LineClient::connect("127.0.0.1", server.addr("imap"));
    c.line();
    let o = c.cmd(&format!("l LOGIN {user} {password}\r\n"), "l ");
    assert!(o.contains("l OK"), "{o}");
    c
}

fn append(c: &mut LineClient, tag: &str, msg: &str) -> String {
    c.send(&format!(
        "{tag} APPEND INBOX {{{}+}}\r\n{msg}\r\n",
        msg.len()
    ));
    c.until(&format!("{tag} "))
}

/// A message of exactly `n` bytes once stored with LF line endings.
fn message(n: usize) -> String {
    let head = "Subject: quota\r\n\r\n";
    let stored_head = head.len() - 2;
    format!("{head}{}", "x".repeat(n - stored_head))
}

/// `(STORAGE used limit MESSAGE used limit)` numbers of a QUOTA response.
fn quota_numbers(o: &str) -> Vec<u64> {
    let line = o
        .lines()
        .find(|l| l.starts_with("* QUOTA "))
        .unwrap_or_else(|| panic!("no QUOTA in {o}"));
    let list = &line[line.find('(').unwrap() + 1..line.rfind(')').unwrap()];
    list.split(' ').filter_map(|w| w.parse().ok()).collect()
}

/// The reply to the end of DATA, or `RCPT <reply>` when RCPT was refused.
fn smtp(server: &Server, rcpt: &str, body: &str) -> String {
    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    c.line();
    c.cmd("EHLO client.example\r\n", "250 ");
    c.cmd("MAIL FROM:<a@outside.example>\r\n", "250");
    let o = c.cmd(&format!("RCPT TO:<{rcpt}>\r\n"), "");
    if !o.starts_with("250") {
        return format!("RCPT {o}");
    }
    c.cmd("DATA\r\n", "354");
    c.send(&format!("Subject: by smtp\r\n\r\n{body}\r\n.\r\n"));
    c.line()
}

fn files(dir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|s| std::fs::read_dir(dir.join(s)).map_or(0, |r| r.count()))
        .sum()
}

#[test]
fn append_until_over_quota_and_getquotaroot() {
    let f = quota_setup("*:bytes=1000");
    let server = f.start();
    let mut c = imap_login(&server, "john@example.com", "john123");
    let caps = c.cmd("c CAPABILITY\r\n", "c ");
    assert!(
        caps.contains(" QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE"),
        "{caps}"
    );
    // john's userdb rule (1,000 bytes) replaces quota_rule.
    let o = c.cmd("q GETQUOTAROOT INBOX\r\n", "q ");
    assert!(o.contains("* QUOTAROOT INBOX \"User quota\"\r\n"), "{o}");
    assert_eq!(quota_numbers(&o), [0, 1]);
    for i in 0..3 {
        let o = append(&mut c, &format!("a{i}"), &message(300));
        assert!(o.contains("OK [APPENDUID"), "{o}");
    }
    // 900 + 300 > 1,000: refused, and nothing written.
    let o = append(&mut c, "a3", &message(300));
    assert!(o.contains("a3 NO [OVERQUOTA]"), "{o}");
    assert_eq!(files(&f.maildir("john")), 3);
    // What fits still goes in.
    let o = append(&mut c, "a4", &message(100));
    assert!(o.contains("a4 OK"), "{o}");
    let o = c.cmd("g GETQUOTA \"User quota\"\r\n", "g ");
    assert!(o.contains("* QUOTA \"User quota\" (STORAGE 1 1)"), "{o}");
    let o = c.cmd("s SETQUOTA \"User quota\" (STORAGE 5000)\r\n", "s ");
    assert!(o.starts_with("s NO"), "{o}");
    let o = c.cmd("n GETQUOTA \"nonsense\"\r\n", "n ");
    assert!(o.starts_with("n NO"), "{o}");
    // Every change was a delta line: the recalculation, then the appends.
    let size = std::fs::read_to_string(f.maildir("john").join("maildirsize")).unwrap();
    assert_eq!(size, "1000S\n0 0\n300 1\n300 1\n300 1\n100 1\n", "{size}");
    // EXPUNGE and MOVE/COPY count too.
    c.cmd("x SELECT INBOX\r\n", "x ");
    c.cmd("cr CREATE Archive\r\n", "cr ");
    let o = c.cmd("cp COPY 1 Archive\r\n", "cp ");
    assert!(o.contains("cp NO [OVERQUOTA]"), "{o}");
    let o = c.cmd("mv MOVE 1 Archive\r\n", "mv ");
    assert!(o.contains("mv OK"), "{o}");
    c.cmd("st STORE 1:2 +FLAGS (\\Deleted)\r\n", "st ");
    c.cmd("e EXPUNGE\r\n", "e ");
    let o = c.cmd("q2 GETQUOTAROOT Archive\r\n", "q2 ");
    assert!(o.contains("* QUOTAROOT Archive \"User quota\""), "{o}");
    // The MOVE's copy took the file over quota with several delta lines,
    // so its expunge recounted (Dovecot's rule); the EXPUNGE is a delta.
    let size = std::fs::read_to_string(f.maildir("john").join("maildirsize")).unwrap();
    assert_eq!(size, "1000S\n1000 4\n-600 -2\n");
    assert_eq!(quota_numbers(&o), [1, 1]);
    let o = c.cmd("s2 STATUS Archive (DELETED-STORAGE DELETED)\r\n", "s2 ");
    assert!(o.contains("s2 OK"), "{o}");
    drop(c);

    // jane has quota_rule's megabyte.
    let mut c = imap_login(&server, "jane@example.com", "jane123");
    let o = c.cmd("q GETQUOTAROOT INBOX\r\n", "q ");
    assert_eq!(quota_numbers(&o), [0, 1024]);
}

#[test]
fn smtp_delivery_over_quota_is_552_and_writes_nothing() {
    let f = quota_setup("*:bytes=10000");
    // 9,500 bytes already there (a file named without ,S=: stat'ed).
    f.deliver("john", &[&"y".repeat(9500)]);
    let server = f.start();
    let maildir = f.maildir("john");
    // 2,000 more would pass the limit and its 10% grace: refused.
    let o = smtp(&server, "john@example.com", &"z".repeat(2000));
    assert!(o.starts_with("552 5.2.2 Mailbox full"), "{o}");
    assert_eq!(files(&maildir), 1);
    assert_eq!(
        std::fs::read_dir(maildir.join("tmp")).unwrap().count(),
        0,
        "nothing left in tmp/"
    );
    // A small one fits.
    let o = smtp(&server, "john@example.com", "small");
    assert!(o.starts_with("250"), "{o}");
    // The last one may take the user over the limit by quota_grace (10%)...
    let o = smtp(&server, "john@example.com", &"z".repeat(500));
    assert!(o.starts_with("250"), "{o}");
    // ...and then nothing more: a full mailbox is refused at RCPT, that
    // recipient alone.
    let o = smtp(&server, "john@example.com", "tiny");
    assert!(o.starts_with("RCPT 552 5.2.2 Mailbox full"), "{o}");
    assert_eq!(files(&maildir), 3);
    // jane's mailbox is not john's.
    let o = smtp(&server, "jane@example.com", &"z".repeat(2000));
    assert!(o.starts_with("250"), "{o}");
    let mut c = imap_login(&server, "john@example.com", "john123");
    let o = c.cmd("q GETQUOTAROOT INBOX\r\n", "q ");
    let n = quota_numbers(&o);
    assert!(n[0] > 10 && n[1] == 10, "{o}");
}

/// `doveadm` with the quota plugin on `maildir`, as the mail user.
struct Doveadm {
    conf: PathBuf,
    home: PathBuf,
}

impl Doveadm {
    fn new(f: &MailFixture, maildir: &Path) -> Doveadm {
        let d = f.tree.dir.path().display();
        let conf = f.tree.write(
            "dovecot-quota.conf",
            &format!(
                "ssl = no\nbase_dir = {d}/doveadm-run\nstate_dir = {d}/doveadm-state\n\
                 log_path = /dev/stderr\nmail_uid = 5000\nmail_gid = 5000\nfirst_valid_uid = 1\n\
                 mail_location = maildir:{}:INDEX=MEMORY\nmail_plugins = quota\n\
                 namespace inbox {{\n  inbox = yes\n  separator = .\n  prefix =\n}}\n\
                 plugin {{\n  quota = maildir:User quota\n  quota_rule = {RULE}\n}}\n",
                maildir.display()
            ),
        );
        Doveadm {
            conf,
            home: f.tree.path("vmail"),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = Command::new("doveadm");
        cmd.arg("-c")
            .arg(&self.conf)
            .args(["-f", "flow"])
            .args(args)
            .env("USER", "vmail")
            .env("HOME", &self.home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("doveadm");
        {
            use std::io::Write;
            let mut i = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                i.write_all(s.as_bytes()).unwrap();
            }
        }
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "doveadm {args:?}: {} {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `(storage KiB, messages)` as `doveadm quota get` reports them.
    fn usage(&self) -> (u64, u64) {
        let out = self.run(&["quota", "get"], None);
        let value = |kind: &str| -> u64 {
            let line = out
                .lines()
                .find(|l| l.contains(&format!("Type={kind} ")))
                .unwrap_or_else(|| panic!("{kind} in {out}"));
            let v = line.split("Value=").nth(1).unwrap();
            v.split(' ').next().unwrap().parse().unwrap()
        };
        (value("STORAGE"), value("MESSAGE"))
    }
}

/// pigeonpost's `(STORAGE used, MESSAGE used)` from GETQUOTAROOT.
fn our_usage(server: &Server) -> (u64, u64) {
    let mut c = imap_login(server, "john@example.com", "john123");
    let o = c.cmd("q GETQUOTAROOT INBOX\r\n", "q ");
    let n = quota_numbers(&o);
    assert_eq!((n[1], n[3]), (1024, 1000), "{o}");
    (n[0], n[2])
}

#[test]
fn dovecot_and_pigeonpost_agree_on_maildirsize() {
    if !require_tool("doveadm") {
        return;
    }
    // The same rule on both sides (Dovecot's syntax, from the userdb here).
    let f = quota_setup(RULE);
    let maildir = f.maildir("john");
    let dove = Doveadm::new(&f, &maildir);
    let server = f.start();
    // pigeonpost writes: two deliveries, an APPEND.
    for body in ["first", &"x".repeat(3000)] {
        assert!(smtp(&server, "john@example.com", body).starts_with("250"));
    }
    let mut c = imap_login(&server, "john@example.com", "john123");
    assert!(append(&mut c, "a", &message(2100)).contains("a OK"));
    drop(c);
    let size = std::fs::read_to_string(maildir.join("maildirsize")).unwrap();
    assert!(size.starts_with("1048576S,1000C\n0 0\n"), "{size}");
    let ours = our_usage(&server);
    assert_eq!(ours.1, 3);
    assert_eq!(dove.usage(), ours, "doveadm reads our maildirsize");
    // Read, not recalculated: our delta lines are still there.
    assert_eq!(
        std::fs::read_to_string(maildir.join("maildirsize")).unwrap(),
        size
    );

    // Dovecot writes: a save and an expunge, each a delta line of its own.
    dove.run(
        &["save", "-m", "INBOX"],
        Some(&format!("Subject: by dovecot\n\n{}\n", "d".repeat(5000))),
    );
    dove.run(&["expunge", "mailbox", "INBOX", "uid", "1"], None);
    let after = std::fs::read_to_string(maildir.join("maildirsize")).unwrap();
    assert_eq!(after.lines().count(), size.lines().count() + 2, "{after}");
    let theirs = dove.usage();
    assert_eq!(theirs.1, 3);
    assert_eq!(our_usage(&server), theirs, "we read Dovecot's deltas");

    // Both recalculate to the same file.
    dove.run(&["quota", "recalc"], None);
    let dovecot_file = std::fs::read_to_string(maildir.join("maildirsize")).unwrap();
    std::fs::remove_file(maildir.join("maildirsize")).unwrap();
    assert_eq!(our_usage(&server), theirs);
    let our_file = std::fs::read_to_string(maildir.join("maildirsize")).unwrap();
    assert_eq!(our_file, dovecot_file);
}

const RULE: &str = "*:storage=1M:messages=1000";

#[test]
fn pop3_dele_and_imap_delete_leave_the_quota() {
    let f = MailFixture::new(
        &[("imap", "127.0.0.1:0"), ("pop3", "127.0.0.1:0")],
        "quota = \"maildir:User quota\"\nquota_rule = \"*:bytes=100000\"\n",
    );
    f.deliver(
        "john",
        &["Subject: a\n\n12345\n", "Subject: b\n\n1234567890\n"],
    );
    let server = f.start();
    let mut c = imap_login(&server, "john@example.com", "john123");
    c.cmd("cr CREATE Old\r\n", "cr ");
    c.send(&format!(
        "a APPEND Old {{{}+}}\r\n{}\r\n",
        20, "Subject: old\r\n\r\nabcd"
    ));
    assert!(c.until("a ").contains("a OK"));
    let o = c.cmd("q GETQUOTAROOT INBOX\r\n", "q ");
    assert_eq!(quota_numbers(&o), [1, 98], "{o}");
    // Deleting a folder takes its messages out of the quota.
    assert!(c.cmd("d DELETE Old\r\n", "d ").contains("d OK"));
    drop(c);
    let size = std::fs::read_to_string(f.maildir("john").join("maildirsize")).unwrap();
    assert!(size.ends_with("18 1\n-18 -1\n"), "{size}");

    // POP3: DELE, then QUIT expunges.
    let mut p = LineClient::connect("127.0.0.1", server.addr("pop3"));
    p.line();
    p.cmd("USER john@example.com\r\n", "+OK");
    assert!(p.cmd("PASS john123\r\n", "").starts_with("+OK"));
    assert!(p.cmd("DELE 1\r\n", "").starts_with("+OK"));
    assert!(p.cmd("QUIT\r\n", "").starts_with("+OK"));
    let size = std::fs::read_to_string(f.maildir("john").join("maildirsize")).unwrap();
    assert_eq!(size, "100000S\n41 2\n18 1\n-18 -1\n-18 -1\n");
}

#[test]
fn quota_settings_are_checked_like_every_key() {
    let t = crate::util::Tree::new();
    let p = t.path("pigeonpost.toml");
    let check = |text: &str| {
        crate::util::write(&p, text);
        crate::util::run(&["--config", p.to_str().unwrap(), "config"], &[])
    };
    for (text, key) in [
        ("quota_rule = \"*:storage=1G\"\n", "quota_rule"),
        ("quota = \"dict:proxy::quota\"\n", "quota"),
        (
            "quota = \"maildir:User quota\"\nquota_rule = \"Trash:storage=+100M\"\n",
            "quota_rule",
        ),
        (
            "quota = \"maildir\"\nquota_grace = \"lots\"\n",
            "quota_grace",
        ),
    ] {
        let out = check(text);
        let err = crate::util::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(&format!("config error: {key} ")), "{err}");
    }
    let out = check(
        "quota = \"maildir:User quota\"\nquota_rule = \"*:storage=1G\"\nmail_plugins = \"quota\"\n",
    );
    let text = crate::util::stdout(&out);
    assert!(out.status.success(), "{}", crate::util::stderr(&out));
    assert!(text.contains("*:storage=1G"), "{text}");
}

#[test]
fn quota_full_tempfail_and_several_recipients() {
    let f = quota_setup("*:bytes=1000");
    let cfg = std::fs::read_to_string(&f.config).unwrap();
    let cfg = cfg.replacen("\n[listen]", "quota_full_tempfail = \"yes\"\n\n[listen]", 1);
    std::fs::write(&f.config, cfg).unwrap();
    f.deliver("john", &[&"y".repeat(900)]);
    let server = f.start();
    // The message would take john past 1,000 + 10%: with jane beside him,
    // SMTP has one answer for both, and neither gets a copy.
    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    c.line();
    c.cmd("EHLO client.example\r\n", "250 ");
    c.cmd("MAIL FROM:<a@outside.example>\r\n", "250");
    assert!(c
        .cmd("RCPT TO:<john@example.com>\r\n", "")
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<jane@example.com>\r\n", "")
        .starts_with("250"));
    c.cmd("DATA\r\n", "354");
    c.send(&format!(
        "Subject: both\r\n\r\n{}\r\n.\r\n",
        "z".repeat(300)
    ));
    let o = c.line();
    assert!(o.starts_with("452 4.2.2 Mailbox full"), "{o}");
    assert_eq!(files(&f.maildir("john")), 1);
    assert_eq!(files(&f.maildir("jane")), 0);
    // Once full, john alone is refused at RCPT, for now (4xx).
    // (Another writer's message, and its delta line.)
    std::fs::write(f.maildir("john").join("new/big"), "y".repeat(200)).unwrap();
    let size = f.maildir("john").join("maildirsize");
    let text = std::fs::read_to_string(&size).unwrap() + "200 1\n";
    std::fs::write(&size, text).unwrap();
    let o = smtp(&server, "john@example.com", "x");
    assert!(o.starts_with("RCPT 452 4.2.2 Mailbox full"), "{o}");
    assert!(smtp(&server, "jane@example.com", "x").starts_with("250"));
}
