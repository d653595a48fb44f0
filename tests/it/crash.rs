//! The crash matrix (issue 16 item 6): `kill -9` of the server at random
//! points while clients run IMAP APPEND, COPY, MOVE, EXPUNGE and STORE, POP3
//! DELE+QUIT, the queue delivers outbound mail and generates DSNs, and a
//! table is rewritten and reloaded; then a restart and a check of
//! everything that was acknowledged.
//!
//! One server process serves every operation at once (each on its own
//! user, so their results don't mix), and each round kills it once while
//! all of them are running: a round is one kill point for every operation,
//! and restarting is what costs time. The delay before the kill is drawn
//! log-uniformly from 50 µs to 300 ms by a seeded RNG (the seed is printed
//! and in every failure; `PIGEONPOST_CRASH_SEED` replays one,
//! `PIGEONPOST_CRASH_ROUNDS` changes the number of rounds, at least 50 by
//! default). The APPEND client pipelines up to four APPENDs, the POP3 client
//! sends its DELEs and QUIT in one write, so kills land with pipelines in
//! flight too.
//!
//! After every restart, for every mailbox (through the restarted server,
//! in `dovecot-uidlist`, with Dovecot's own `doveadm` on a copy, and in the
//! files):
//! - a message whose APPEND, COPY, SMTP DATA was acknowledged is there
//!   exactly once; one whose command was cut off is there at most once, and
//!   stays as the first restart found it (no resurrection, no later loss);
//! - an interrupted MOVE leaves the message in one mailbox or both, never
//!   neither; an acknowledged one only in the destination;
//! - an acknowledged EXPUNGE or POP3 DELE+QUIT is gone;
//! - acknowledged STORE flags are in the file name and in FETCH FLAGS;
//! - UIDVALIDITY never changes, a message keeps its UID (the one APPENDUID
//!   gave), new messages get UIDs above every UID seen before, UIDs are
//!   strictly increasing in FETCH and in `dovecot-uidlist`, and `doveadm`
//!   reads the same UIDs for the same messages;
//! - no message file is truncated or mangled;
//! - the server uses the virtual alias table that is on disk, whole.
//!
//! At the end, the queue delivers every acknowledged outbound message to
//! the receiving peer at least once, and every acknowledged message to a
//! recipient the peer refuses comes back as a bounce to its local sender at
//! least once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::queue::Peer;
use crate::util::{give_to_vmail, replace, require_tool, MailFixture, Server};

/// The mail users, one per operation (so their mailboxes don't mix).
const USERS: &[&str] = &["app", "cp", "mv", "ex", "st", "pop", "dsn", "out", "tbl"];

/// The mailboxes checked after every restart: (key, user, IMAP name).
const MAILBOXES: &[(&str, &str, &str)] = &[
    ("app/INBOX", "app", "INBOX"),
    ("cp/INBOX", "cp", "INBOX"),
    ("cp/Copies", "cp", "Copies"),
    ("mv/INBOX", "mv", "INBOX"),
    ("mv/Moved", "mv", "Moved"),
    ("ex/INBOX", "ex", "INBOX"),
    ("st/INBOX", "st", "INBOX"),
    ("pop/INBOX", "pop", "INBOX"),
    ("dsn/INBOX", "dsn", "INBOX"),
];

/// Entries per version of the virtual alias table the reload client writes.
const TABLE_ENTRIES: usize = 200;

const OPS: &[&str] = &[
    "APPEND", "COPY", "MOVE", "EXPUNGE", "STORE", "POP3", "outbound", "DSN", "reload",
];

fn password(user: &str) -> String {
    format!("{user}-secret")
}

fn message(id: &str) -> String {
    format!(
        "From: crash@example.org\r\nTo: someone@example.com\r\nSubject: crash {id}\r\nMessage-ID: <{id}@crash.test>\r\nX-Test: {id}\r\n\r\nbody {id}\r\nsecond line\r\n"
    )
}

/// What must be in one mailbox for one message after a restart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Once,
    Gone,
    /// The command was cut off: there at most once, as the restart finds it.
    Maybe,
}

/// What the clients were told, shared by the client threads.
#[derive(Default)]
struct Model {
    expect: BTreeMap<&'static str, BTreeMap<String, Expect>>,
    /// MOVE: in at least one of the two mailboxes.
    either: Vec<(&'static str, &'static str, String)>,
    /// STORE: id -> (flagged as last acknowledged, flagged if the STORE in
    /// flight took effect).
    flags: HashMap<String, (bool, Option<bool>)>,
    /// UIDs APPENDUID gave.
    appenduid: HashMap<(&'static str, String), u32>,
    /// Outbound messages (to a recipient the peer accepts) that got 250.
    remote_acked: Vec<String>,
    /// Messages to a recipient the peer refuses that got 250.
    bounce_acked: Vec<String>,
    /// The version of the table on disk.
    table_on_disk: u32,
    /// Something no crash explains (a NO, a wrong reply, an error before
    /// the kill).
    anomalies: Vec<String>,
    /// Operation -> a command of it is waiting for its answer.
    busy: BTreeMap<&'static str, bool>,
    /// Operation -> acknowledged commands, all rounds.
    acked: BTreeMap<&'static str, usize>,
}

impl Model {
    fn set(&mut self, mb: &'static str, id: &str, e: Expect) {
        self.expect.entry(mb).or_default().insert(id.to_string(), e);
    }
    fn ack(&mut self, op: &'static str) {
        *self.acked.entry(op).or_default() += 1;
        self.busy.insert(op, false);
    }
}

type Shared = Arc<Mutex<Model>>;

/// Everything a client thread needs for one round.
#[derive(Clone)]
struct Round {
    n: usize,
    seed: u64,
    imap: SocketAddr,
    pop3: SocketAddr,
    smtp: SocketAddr,
    table: PathBuf,
    model: Shared,
    /// Clients that are logged in and about to loop.
    started: Arc<AtomicUsize>,
    /// Set just before the kill: errors after it are the crash.
    killed: Arc<AtomicBool>,
    /// This client has counted itself in `started`.
    me: Arc<AtomicBool>,
}

impl Round {
    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn anomaly(&self, op: &str, what: String) {
        let msg = format!("round {} {op}: {what}", self.n);
        eprintln!("ANOMALY {msg}");
        self.model().anomalies.push(msg);
    }
    fn id(&self, op: &str, k: usize) -> String {
        format!("{op}-r{}-{k}", self.n)
    }
}

// ------------------------------------------------------------ small clients

fn io_err(what: String) -> io::Error {
    io::Error::other(what)
}

/// A minimal IMAP client on a socket: literals in answers are read whole.
struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

/// The length of a literal announced at the end of `line` (`{12}\r\n`).
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"}\r\n")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = std::str::from_utf8(&line[open + 1..]).ok()?;
    digits.trim_end_matches('+').parse().ok()
}

impl Imap {
    fn login(addr: SocketAddr, user: &str) -> io::Result<Imap> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        let mut c = Imap {
            r: BufReader::new(s.try_clone()?),
            w: s,
            tag: 0,
        };
        let greeting = c.response()?;
        if !greeting.starts_with("* OK") {
            return Err(io_err(format!("greeting {greeting}")));
        }
        let (_, done) = c.run(&format!("LOGIN {user}@example.com {}", password(user)))?;
        if !done.contains(" OK") {
            return Err(io_err(format!("LOGIN {user}: {done}")));
        }
        Ok(c)
    }

    /// One response, literals included.
    fn response(&mut self) -> io::Result<String> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            if self.r.read_until(b'\n', &mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            out.extend_from_slice(&line);
            match literal_len(&line) {
                Some(n) => {
                    let mut buf = vec![0; n];
                    self.r.read_exact(&mut buf)?;
                    out.extend_from_slice(&buf);
                }
                None => return Ok(String::from_utf8_lossy(&out).into_owned()),
            }
        }
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("t{}", self.tag)
    }

    /// Reads up to the tagged answer of `tag`: (untagged, tagged).
    fn wait(&mut self, tag: &str) -> io::Result<(Vec<String>, String)> {
        let mut untagged = Vec::new();
        let prefix = format!("{tag} ");
        loop {
            let r = self.response()?;
            if r.starts_with(&prefix) {
                return Ok((untagged, r));
            }
            untagged.push(r);
        }
    }

    fn run(&mut self, cmd: &str) -> io::Result<(Vec<String>, String)> {
        let tag = self.next_tag();
        self.w.write_all(format!("{tag} {cmd}\r\n").as_bytes())?;
        self.wait(&tag)
    }

    /// Sends an APPEND with a LITERAL+ literal; returns its tag.
    fn send_append(&mut self, mailbox: &str, msg: &str) -> io::Result<String> {
        let tag = self.next_tag();
        self.w.write_all(
            format!("{tag} APPEND {mailbox} {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes(),
        )?;
        Ok(tag)
    }
}

/// The UID in `[APPENDUID v uid]`.
fn appenduid(done: &str) -> Option<u32> {
    let rest = &done[done.find("[APPENDUID ")? + 11..];
    rest.split([' ', ']']).nth(1)?.parse().ok()
}

/// A line-level SMTP client.
struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn connect(addr: SocketAddr) -> io::Result<Smtp> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        let mut c = Smtp {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        let (code, text) = c.reply()?;
        if code != 220 {
            return Err(io_err(format!("greeting {text}")));
        }
        let (code, text) = c.cmd("EHLO crash.test")?;
        if code != 250 {
            return Err(io_err(format!("EHLO {text}")));
        }
        Ok(c)
    }

    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Ok((code, all));
            }
        }
    }

    fn cmd(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.w.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// One transaction; the reply to the end of DATA (or the first refusal).
    fn send(&mut self, from: &str, to: &str, msg: &str) -> io::Result<(u16, String)> {
        for (line, want) in [
            (format!("MAIL FROM:<{from}>"), 250),
            (format!("RCPT TO:<{to}>"), 250),
            ("DATA".to_string(), 354),
        ] {
            let (code, text) = self.cmd(&line)?;
            if code != want {
                return Ok((code, text));
            }
        }
        self.w.write_all(format!("{msg}.\r\n").as_bytes())?;
        self.reply()
    }
}

/// A line-level POP3 client.
struct Pop {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop {
    fn login(addr: SocketAddr, user: &str) -> io::Result<Pop> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        let mut p = Pop {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        for (cmd, what) in [
            (None, "greeting"),
            (Some(format!("USER {user}@example.com")), "USER"),
            (Some(format!("PASS {}", password(user))), "PASS"),
        ] {
            let l = match cmd {
                Some(c) => p.cmd(&c)?,
                None => p.line()?,
            };
            if !l.starts_with("+OK") {
                return Err(io_err(format!("{what}: {l}")));
            }
        }
        Ok(p)
    }

    fn line(&mut self) -> io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(l)
    }

    fn cmd(&mut self, c: &str) -> io::Result<String> {
        self.w.write_all(format!("{c}\r\n").as_bytes())?;
        self.line()
    }

    fn multi(&mut self) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        loop {
            let l = self.line()?;
            if l == ".\r\n" {
                return Ok(v);
            }
            v.push(l.trim_end_matches("\r\n").to_string());
        }
    }
}

// ---------------------------------------------------------------- clients

/// Runs one operation's client until the kill cuts it off.
fn client(i: usize, op: &'static str, round: Round) {
    let mut rng = StdRng::seed_from_u64(round.seed ^ ((round.n as u64) << 8) ^ i as u64);
    let res = match op {
        "APPEND" => append_client(&round, &mut rng),
        "COPY" | "MOVE" => copy_client(&round, op == "MOVE"),
        "EXPUNGE" => expunge_client(&round),
        "STORE" => store_client(&round),
        "POP3" => pop3_client(&round, &mut rng),
        "outbound" | "DSN" => outbound_client(&round, op),
        "reload" => reload_client(&round),
        _ => unreachable!(),
    };
    if let Err(e) = res {
        if !round.killed.load(Ordering::SeqCst) {
            round.anomaly(op, format!("client failed before the kill: {e}"));
        }
    }
    // A client that gave up early must not hold up the kill.
    started(&round);
}

fn started(round: &Round) {
    if !round.me.swap(true, Ordering::SeqCst) {
        round.started.fetch_add(1, Ordering::SeqCst);
    }
}

/// APPENDs `id` to `mb` (key) / `mailbox` and waits: its UID if acknowledged.
fn append_one(
    round: &Round,
    imap: &mut Imap,
    op: &'static str,
    mb: &'static str,
    mailbox: &str,
    id: &str,
) -> io::Result<Option<u32>> {
    round.model().set(mb, id, Expect::Maybe);
    let tag = imap.send_append(mailbox, &message(id))?;
    let (_, done) = imap.wait(&tag)?;
    match appenduid(&done) {
        Some(uid) if done.contains(" OK ") => {
            let mut m = round.model();
            m.set(mb, id, Expect::Once);
            m.appenduid.insert((mb, id.to_string()), uid);
            Ok(Some(uid))
        }
        _ => {
            round.anomaly(op, format!("APPEND {id}: {done}"));
            Ok(None)
        }
    }
}

fn append_client(round: &Round, rng: &mut StdRng) -> io::Result<()> {
    let mut imap = Imap::login(round.imap, "app")?;
    started(round);
    let mut k = 0;
    loop {
        // A pipeline of one to four APPENDs (LITERAL+: no round trips).
        let n = rng.gen_range(1..=4);
        let mut sent = Vec::new();
        {
            let mut m = round.model();
            m.busy.insert("APPEND", true);
            for _ in 0..n {
                let id = round.id("app", k);
                k += 1;
                m.set("app/INBOX", &id, Expect::Maybe);
                sent.push(id);
            }
        }
        let mut tags = Vec::new();
        for id in &sent {
            tags.push(imap.send_append("INBOX", &message(id))?);
        }
        for (tag, id) in tags.iter().zip(&sent) {
            let (_, done) = imap.wait(tag)?;
            match appenduid(&done) {
                Some(uid) if done.contains(" OK ") => {
                    let mut m = round.model();
                    m.set("app/INBOX", id, Expect::Once);
                    m.appenduid.insert(("app/INBOX", id.clone()), uid);
                    m.ack("APPEND");
                    m.busy.insert("APPEND", true);
                }
                _ => round.anomaly("APPEND", format!("{id}: {done}")),
            }
        }
        round.model().busy.insert("APPEND", false);
    }
}

/// Messages a client APPENDs before it works on them: the first batch
/// before the client counts as started, so most kill points fall on the
/// operation itself rather than on the APPENDs that feed it.
const BATCH: usize = 12;

/// APPENDs a batch of messages to `mb` (INBOX of the client's user).
fn append_batch(
    round: &Round,
    imap: &mut Imap,
    op: &'static str,
    mb: &'static str,
    user: &str,
    k: &mut usize,
) -> io::Result<Vec<(u32, String)>> {
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        let id = round.id(user, *k);
        *k += 1;
        if let Some(uid) = append_one(round, imap, op, mb, "INBOX", &id)? {
            batch.push((uid, id));
        }
    }
    Ok(batch)
}

fn select_inbox(round: &Round, op: &str, user: &str) -> io::Result<Option<Imap>> {
    let mut imap = Imap::login(round.imap, user)?;
    let (_, done) = imap.run("SELECT INBOX")?;
    if !done.contains(" OK ") {
        round.anomaly(op, format!("SELECT: {done}"));
        return Ok(None);
    }
    Ok(Some(imap))
}

fn copy_client(round: &Round, moving: bool) -> io::Result<()> {
    let (op, user, src, dst, folder) = if moving {
        ("MOVE", "mv", "mv/INBOX", "mv/Moved", "Moved")
    } else {
        ("COPY", "cp", "cp/INBOX", "cp/Copies", "Copies")
    };
    let Some(mut imap) = select_inbox(round, op, user)? else {
        return Ok(());
    };
    let mut k = 0;
    loop {
        let batch = append_batch(round, &mut imap, op, src, user, &mut k)?;
        started(round);
        for (uid, id) in batch {
            {
                let mut m = round.model();
                m.busy.insert(op, true);
                m.set(dst, &id, Expect::Maybe);
                if moving {
                    m.set(src, &id, Expect::Maybe);
                    m.either.push((src, dst, id.clone()));
                }
            }
            let verb = if moving { "MOVE" } else { "COPY" };
            let (_, done) = imap.run(&format!("UID {verb} {uid} {folder}"))?;
            let mut m = round.model();
            if done.contains(" OK ") {
                m.set(dst, &id, Expect::Once);
                if moving {
                    m.set(src, &id, Expect::Gone);
                }
                m.ack(op);
            } else {
                drop(m);
                round.anomaly(op, format!("{verb} {id}: {done}"));
            }
        }
    }
}

fn expunge_client(round: &Round) -> io::Result<()> {
    let Some(mut imap) = select_inbox(round, "EXPUNGE", "ex")? else {
        return Ok(());
    };
    let mut k = 0;
    loop {
        let batch = append_batch(round, &mut imap, "EXPUNGE", "ex/INBOX", "ex", &mut k)?;
        started(round);
        for (uid, id) in batch {
            let (_, done) = imap.run(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
            if !done.contains(" OK ") {
                round.anomaly("EXPUNGE", format!("STORE \\Deleted {id}: {done}"));
                continue;
            }
            {
                let mut m = round.model();
                m.busy.insert("EXPUNGE", true);
                m.set("ex/INBOX", &id, Expect::Maybe);
            }
            let (_, done) = imap.run(&format!("UID EXPUNGE {uid}"))?;
            if done.contains(" OK ") {
                let mut m = round.model();
                m.set("ex/INBOX", &id, Expect::Gone);
                m.ack("EXPUNGE");
            } else {
                round.anomaly("EXPUNGE", format!("{id}: {done}"));
            }
        }
    }
}

/// The two flag sets STORE switches a message between.
const FLAGGED: &str = "\\Flagged \\Seen $Crash";
const SEEN: &str = "\\Seen";

fn store_client(round: &Round) -> io::Result<()> {
    let Some(mut imap) = select_inbox(round, "STORE", "st")? else {
        return Ok(());
    };
    let mut k = 0;
    let pool = append_batch(round, &mut imap, "STORE", "st/INBOX", "st", &mut k)?;
    for (_, id) in &pool {
        round.model().flags.insert(id.clone(), (false, None));
    }
    started(round);
    // Back and forth between the two sets, one message after the other.
    for (uid, id) in pool.iter().cycle() {
        let want = {
            let mut m = round.model();
            m.busy.insert("STORE", true);
            let e = m.flags.get_mut(id).unwrap();
            e.1 = Some(!e.0);
            !e.0
        };
        let set = if want { FLAGGED } else { SEEN };
        let (_, done) = imap.run(&format!("UID STORE {uid} FLAGS ({set})"))?;
        if done.contains(" OK ") {
            let mut m = round.model();
            m.flags.insert(id.clone(), (want, None));
            m.ack("STORE");
        } else {
            round.anomaly("STORE", format!("{id}: {done}"));
        }
        // A STORE is a rename: without a pause this client alone keeps a
        // core busy.
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

fn pop3_client(round: &Round, rng: &mut StdRng) -> io::Result<()> {
    let mut smtp = Smtp::connect(round.smtp)?;
    let mut k = 0;
    let mut first = true;
    loop {
        // Mail for the maildrop, over SMTP.
        for _ in 0..rng.gen_range(1..=3) {
            let id = round.id("pop", k);
            k += 1;
            round.model().set("pop/INBOX", &id, Expect::Maybe);
            let (code, text) = smtp.send("crash@example.org", "pop@example.com", &message(&id))?;
            if code == 250 {
                round.model().set("pop/INBOX", &id, Expect::Once);
            } else {
                round.anomaly("POP3", format!("SMTP to pop {id}: {text}"));
            }
        }
        let mut pop = Pop::login(round.pop3, "pop")?;
        // A session cut off before QUIT deletes nothing.
        round.model().busy.insert("POP3", true);
        if first {
            started(round);
            first = false;
        }
        let stat = pop.cmd("STAT")?;
        let n: usize = stat
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io_err(format!("STAT: {stat}")))?;
        let mut dele = Vec::new();
        for i in 1..=n {
            let l = pop.cmd(&format!("TOP {i} 0"))?;
            if !l.starts_with("+OK") {
                round.anomaly("POP3", format!("TOP {i}: {l}"));
                return Ok(());
            }
            let head = pop.multi()?;
            let id = head
                .iter()
                .find_map(|l| l.strip_prefix("X-Test: "))
                .map(str::to_string);
            match id {
                Some(id) if rng.gen_bool(0.6) => dele.push((i, id)),
                Some(_) => {}
                None => round.anomaly("POP3", format!("message {i} without X-Test: {head:?}")),
            }
        }
        // DELEs and QUIT in one write (PIPELINING).
        let mut script = String::new();
        {
            let mut m = round.model();
            m.busy.insert("POP3", true);
            for (i, id) in &dele {
                m.set("pop/INBOX", id, Expect::Maybe);
                script.push_str(&format!("DELE {i}\r\n"));
            }
        }
        script.push_str("QUIT\r\n");
        pop.w.write_all(script.as_bytes())?;
        for (i, _) in &dele {
            let l = pop.line()?;
            if !l.starts_with("+OK") {
                round.anomaly("POP3", format!("DELE {i}: {l}"));
            }
        }
        let quit = pop.line()?;
        if quit.starts_with("+OK") {
            let mut m = round.model();
            for (_, id) in &dele {
                m.set("pop/INBOX", id, Expect::Gone);
            }
            m.ack("POP3");
        } else {
            round.anomaly("POP3", format!("QUIT: {quit}"));
        }
    }
}

fn outbound_client(round: &Round, op: &'static str) -> io::Result<()> {
    let (user, to) = if op == "DSN" {
        ("dsn", "nobody@remote.example")
    } else {
        ("out", "friend@remote.example")
    };
    let mut smtp = Smtp::connect(round.smtp)?;
    started(round);
    for k in 0.. {
        let id = round.id(user, k);
        let (code, text) = smtp.send(&format!("{user}@example.com"), to, &message(&id))?;
        if code == 250 {
            let mut m = round.model();
            if op == "DSN" {
                m.bounce_acked.push(id);
            } else {
                m.remote_acked.push(id);
            }
            m.ack(op);
        } else {
            round.anomaly(op, format!("{id}: {text}"));
        }
        // Queue work, not SMTP receiving, is what this client is for.
        std::thread::sleep(Duration::from_millis(8));
    }
    Ok(())
}

/// The virtual alias table, version `v`: TABLE_ENTRIES addresses that exist
/// only in this version.
fn table_text(v: u32) -> String {
    (0..TABLE_ENTRIES)
        .map(|i| format!("t{v}-{i}@example.com tbl@example.com\n"))
        .collect()
}

/// RCPT answers for version `v`'s first and last address and the previous
/// version's first: (first, last, previous). The last is asked first, so a
/// table read only in part shows as (250, 550, _).
fn probe_table(smtp: &mut Smtp, v: u32) -> io::Result<(u16, u16, u16)> {
    let (code, text) = smtp.cmd("MAIL FROM:<probe@example.org>")?;
    if code != 250 {
        return Err(io_err(format!("MAIL FROM: {text}")));
    }
    let last = smtp
        .cmd(&format!("RCPT TO:<t{v}-{}@example.com>", TABLE_ENTRIES - 1))?
        .0;
    let first = smtp.cmd(&format!("RCPT TO:<t{v}-0@example.com>"))?.0;
    let prev = smtp
        .cmd(&format!("RCPT TO:<t{}-0@example.com>", v.wrapping_sub(1)))?
        .0;
    smtp.cmd("RSET")?;
    Ok((first, last, prev))
}

fn reload_client(round: &Round) -> io::Result<()> {
    // Probes answered 550 count as errors, and a session ends after 20 of
    // them (Postfix smtpd_hard_error_limit): a new session per probe.
    drop(Smtp::connect(round.smtp)?);
    started(round);
    loop {
        let v = {
            let mut m = round.model();
            m.busy.insert("reload", true);
            m.table_on_disk + 1
        };
        replace(&round.table, &table_text(v));
        round.model().table_on_disk = v;
        // In force within 2 s (README), and only ever a whole version: a
        // probe may straddle the swap, but the same mixed answer twice in a
        // row is a table in force in part.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last_mixed = None;
        loop {
            let answer = probe_table(&mut Smtp::connect(round.smtp)?, v)?;
            match answer {
                (250, 250, 550) => break,
                _ if Instant::now() > deadline || last_mixed == Some(answer) => {
                    round.anomaly(
                        "reload",
                        format!("table version {v}: RCPT first/last/previous = {answer:?}"),
                    );
                    return Ok(());
                }
                (550, 550, 250) => std::thread::sleep(Duration::from_millis(10)),
                mixed => last_mixed = Some(mixed),
            }
        }
        round.model().ack("reload");
    }
}

// ------------------------------------------------------------ the checks

/// One message as the restarted server lists it.
#[derive(Debug, Clone)]
struct Listed {
    uid: u32,
    flags: String,
    id: Option<String>,
}

/// What is remembered of a mailbox from one restart to the next.
#[derive(Default)]
struct Seen {
    uidvalidity: u32,
    uidnext: u32,
    /// Highest UID ever listed.
    max_uid: u32,
    uid_of: HashMap<String, u32>,
}

fn parse_fetch(resp: &str) -> Option<Listed> {
    let uid = resp
        .split("UID ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let flags = resp
        .split("FLAGS (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or("")
        .to_string();
    let id = resp
        .split("X-Test: ")
        .nth(1)
        .and_then(|r| r.split('\r').next())
        .map(str::to_string);
    Some(Listed { uid, flags, id })
}

fn code_value(lines: &[String], code: &str) -> Option<u32> {
    lines.iter().find_map(|l| {
        let rest = &l[l.find(&format!("[{code} "))? + code.len() + 2..];
        rest.split(']').next()?.parse().ok()
    })
}

/// A parsed `dovecot-uidlist`: (uidvalidity, next uid, [(uid, basename)]).
type UidlistFile = (u32, u32, Vec<(u32, String)>);

/// `dovecot-uidlist` of `dir`.
fn read_uidlist(dir: &Path) -> Result<UidlistFile, String> {
    let text = std::fs::read_to_string(dir.join("dovecot-uidlist"))
        .map_err(|e| format!("dovecot-uidlist: {e}"))?;
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty dovecot-uidlist")?;
    let mut fields = header.split(' ');
    if fields.next() != Some("3") {
        return Err(format!("not version 3: {header}"));
    }
    let (mut v, mut n) = (0, 0);
    for f in fields {
        if let Some(x) = f.strip_prefix('V') {
            v = x.parse().map_err(|_| format!("bad V in {header}"))?;
        } else if let Some(x) = f.strip_prefix('N') {
            n = x.parse().map_err(|_| format!("bad N in {header}"))?;
        }
    }
    let mut records = Vec::new();
    for l in lines {
        let (head, base) = l
            .split_once(" :")
            .ok_or_else(|| format!("bad record {l:?}"))?;
        let uid = head
            .split(' ')
            .next()
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| format!("bad uid in {l:?}"))?;
        records.push((uid, base.to_string()));
    }
    if !text.ends_with('\n') {
        return Err("dovecot-uidlist does not end with a newline".into());
    }
    Ok((v, n, records))
}

/// The mailbox's directory for a user and an IMAP name.
fn mailbox_dir(fixture: &MailFixture, user: &str, name: &str) -> PathBuf {
    let root = fixture.maildir(user);
    if name == "INBOX" {
        root
    } else {
        root.join(format!(".{name}"))
    }
}

/// `doveadm fetch uid hdr.x-test` on a copy of the user's Maildir (doveadm
/// may write to what it reads): (uid, x-test) pairs.
fn doveadm_list(
    fixture: &MailFixture,
    user: &str,
    name: &str,
) -> Result<Vec<(u32, String)>, String> {
    let scratch = fixture.tree.path("doveadm-copy");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let copy = scratch.join(user);
    crate::util::copy_dir(&fixture.maildir(user), &copy);
    let conf = fixture.tree.path("doveadm.conf");
    let location = format!("mail_location=maildir:{}:INDEX=MEMORY", copy.display());
    let doveadm = |args: &[&str]| -> Result<String, String> {
        let o = Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(["-o", &location, "-f", "flow"])
            .args(args)
            .env("USER", "vmail")
            .env("HOME", &scratch)
            .output()
            .map_err(|e| format!("doveadm: {e}"))?;
        if !o.status.success() || !o.stderr.is_empty() {
            return Err(format!(
                "doveadm {args:?}: {} {}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let out = doveadm(&["fetch", "uid hdr.x-test", "mailbox", name])?;
    let mut pairs = Vec::new();
    for l in out.lines().filter(|l| !l.is_empty()) {
        let rest = l
            .strip_prefix("uid=")
            .ok_or_else(|| format!("doveadm fetch line {l:?}"))?;
        let (uid, hdr) = rest.split_once(' ').unwrap_or((rest, ""));
        let uid = uid.parse().map_err(|_| format!("doveadm uid in {l:?}"))?;
        pairs.push((
            uid,
            hdr.strip_prefix("hdr.x-test=").unwrap_or("").to_string(),
        ));
    }
    Ok(pairs)
}

/// Every message file of the mailbox: (file name, content).
fn message_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                if let Ok(data) = std::fs::read(e.path()) {
                    out.push((e.file_name().to_string_lossy().into_owned(), data));
                }
            }
        }
    }
    out
}

struct Checker<'a> {
    fixture: &'a MailFixture,
    seed: u64,
    seen: HashMap<&'static str, Seen>,
    failures: Vec<String>,
}

impl Checker<'_> {
    fn fail(&mut self, what: String) {
        eprintln!("FAILED {what}");
        self.failures.push(what);
    }

    /// Every check of one restart; `round` is the round whose kill came
    /// before it.
    fn check(&mut self, server: &Server, model: &Shared, round: usize, first: bool) {
        let imap = server.addr("imap");
        let mut m = model.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts: HashMap<&'static str, HashMap<String, usize>> = HashMap::new();
        for &(mb, user, name) in MAILBOXES {
            let (v, next, listed) = match self.list(imap, user, name) {
                Ok(l) => l,
                Err(e) => {
                    self.fail(format!("round {round} {mb}: listing: {e}"));
                    continue;
                }
            };
            self.check_uids(
                mb,
                user,
                name,
                (v, next),
                &listed,
                &m.appenduid,
                round,
                first,
            );
            let c = counts.entry(mb).or_default();
            for l in &listed {
                if let Some(id) = &l.id {
                    *c.entry(id.clone()).or_default() += 1;
                }
            }
            if mb == "st/INBOX" {
                self.check_flags(&listed, &mut m.flags, round);
            }
            self.check_files(mb, user, name, round);
        }
        // Presence against what the clients were told.
        for (mb, ids) in m.expect.iter_mut() {
            let c = counts.get(mb).cloned().unwrap_or_default();
            for (id, e) in ids.iter_mut() {
                let n = c.get(id).copied().unwrap_or(0);
                let ok = match *e {
                    Expect::Once => n == 1,
                    Expect::Gone => n == 0,
                    Expect::Maybe => n <= 1,
                };
                if !ok {
                    self.failures.push(format!(
                        "round {round} {mb}: {id} is there {n} times, expected {e:?}"
                    ));
                }
                if *e == Expect::Maybe {
                    // As the restart found it, from now on.
                    *e = if n == 0 { Expect::Gone } else { Expect::Once };
                }
            }
            for (id, n) in &c {
                if !ids.contains_key(id) {
                    self.failures.push(format!(
                        "round {round} {mb}: {id} ({n}x) was never sent there"
                    ));
                }
            }
        }
        for (a, b, id) in &m.either {
            let n = |mb: &str| counts.get(mb).and_then(|c| c.get(id)).copied().unwrap_or(0);
            if n(a) + n(b) == 0 {
                self.failures.push(format!(
                    "round {round} MOVE lost {id}: in neither {a} nor {b}"
                ));
            }
        }
        // The table on disk is the one in force, whole.
        let v = m.table_on_disk;
        drop(m);
        match Smtp::connect(server.addr("smtp")).and_then(|mut s| probe_table(&mut s, v)) {
            Ok((250, 250, p)) if v == 0 || p == 550 => {}
            other => self.fail(format!(
                "round {round}: table version {v} on disk, RCPT first/last/previous = {other:?}"
            )),
        }
        if !self.failures.is_empty() {
            panic!(
                "crash matrix (seed {}, PIGEONPOST_CRASH_SEED={} replays it) after round {round}:\n{}",
                self.seed,
                self.seed,
                self.failures.join("\n")
            );
        }
    }

    /// UIDVALIDITY, UIDNEXT and the messages, as the server lists them.
    fn list(
        &self,
        addr: SocketAddr,
        user: &str,
        name: &str,
    ) -> Result<(u32, u32, Vec<Listed>), String> {
        let e = |e: io::Error| e.to_string();
        let mut imap = Imap::login(addr, user).map_err(e)?;
        let (untagged, done) = imap.run(&format!("EXAMINE {name}")).map_err(e)?;
        if !done.contains(" OK ") {
            return Err(format!("EXAMINE: {done}"));
        }
        let v = code_value(&untagged, "UIDVALIDITY").ok_or("no UIDVALIDITY")?;
        let next = code_value(&untagged, "UIDNEXT").ok_or("no UIDNEXT")?;
        let (untagged, done) = imap
            .run("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TEST)])")
            .map_err(e)?;
        if !done.contains(" OK ") {
            return Err(format!("UID FETCH: {done}"));
        }
        let _ = imap.run("LOGOUT");
        let mut out = Vec::new();
        for r in untagged.iter().filter(|r| r.contains(" FETCH (")) {
            out.push(parse_fetch(r).ok_or_else(|| format!("unparsable {r:?}"))?);
        }
        Ok((v, next, out))
    }

    #[allow(clippy::too_many_arguments)]
    fn check_uids(
        &mut self,
        mb: &'static str,
        user: &str,
        name: &str,
        (v, next): (u32, u32),
        listed: &[Listed],
        appenduids: &HashMap<(&'static str, String), u32>,
        round: usize,
        first: bool,
    ) {
        let mut fails = Vec::new();
        let seen = self.seen.entry(mb).or_default();
        if first {
            seen.uidvalidity = v;
        }
        if v != seen.uidvalidity {
            fails.push(format!("UIDVALIDITY {v}, was {}", seen.uidvalidity));
        }
        if next < seen.uidnext {
            fails.push(format!("UIDNEXT went back: {next} < {}", seen.uidnext));
        }
        for w in listed.windows(2) {
            if w[0].uid >= w[1].uid {
                fails.push(format!(
                    "UIDs not increasing: {} then {}",
                    w[0].uid, w[1].uid
                ));
            }
        }
        let before = seen.max_uid;
        for l in listed {
            if l.uid >= next {
                fails.push(format!("UID {} not below UIDNEXT {next}", l.uid));
            }
            let Some(id) = &l.id else { continue };
            if let Some(&u) = appenduids.get(&(mb, id.clone())) {
                if u != l.uid {
                    fails.push(format!("{id} has UID {}, APPENDUID said {u}", l.uid));
                }
            }
            match seen.uid_of.get(id) {
                Some(&u) if u != l.uid => fails.push(format!("{id} had UID {u}, now {}", l.uid)),
                Some(_) => {}
                None => {
                    if l.uid <= before {
                        fails.push(format!(
                            "{id} is new with UID {}, not above the highest seen before ({before})",
                            l.uid
                        ));
                    }
                    seen.uid_of.insert(id.clone(), l.uid);
                }
            }
            seen.max_uid = seen.max_uid.max(l.uid);
        }
        seen.uidnext = next;
        // dovecot-uidlist itself.
        let dir = mailbox_dir(self.fixture, user, name);
        match read_uidlist(&dir) {
            Ok((uv, un, records)) => {
                if uv != v {
                    fails.push(format!("dovecot-uidlist V{uv}, IMAP says {v}"));
                }
                if un < next {
                    fails.push(format!("dovecot-uidlist N{un} below UIDNEXT {next}"));
                }
                for w in records.windows(2) {
                    if w[0].0 >= w[1].0 {
                        fails.push(format!("dovecot-uidlist: UID {} then {}", w[0].0, w[1].0));
                    }
                }
                let mut bases = HashSet::new();
                for (u, b) in &records {
                    if *u >= un {
                        fails.push(format!("dovecot-uidlist: UID {u} not below N{un}"));
                    }
                    if !bases.insert(b) {
                        fails.push(format!("dovecot-uidlist: {b} listed twice"));
                    }
                }
                let uids: HashSet<u32> = records.iter().map(|r| r.0).collect();
                for l in listed {
                    if !uids.contains(&l.uid) {
                        fails.push(format!("UID {} not in dovecot-uidlist", l.uid));
                    }
                }
            }
            Err(e) => fails.push(e),
        }
        // And Dovecot reads the same UIDs for the same messages.
        match doveadm_list(self.fixture, user, name) {
            Ok(pairs) => {
                let ours: Vec<(u32, String)> = listed
                    .iter()
                    .map(|l| (l.uid, l.id.clone().unwrap_or_default()))
                    .collect();
                if pairs != ours {
                    fails.push(format!(
                        "doveadm fetch differs:\n  doveadm {pairs:?}\n  ours    {ours:?}"
                    ));
                }
            }
            Err(e) => fails.push(e),
        }
        for f in fails {
            self.fail(format!("round {round} {mb}: {f}"));
        }
    }

    /// STORE: each message has the flags of its last acknowledged STORE,
    /// or of the one cut off, in FETCH FLAGS and in its file name alike.
    fn check_flags(
        &mut self,
        listed: &[Listed],
        flags: &mut HashMap<String, (bool, Option<bool>)>,
        round: usize,
    ) {
        let mut fails = Vec::new();
        let dir = self.fixture.maildir("st");
        let letter = std::fs::read_to_string(dir.join("dovecot-keywords"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let (i, name) = l.split_once(' ')?;
                    let i: u8 = i.parse().ok()?;
                    (name == "$Crash").then_some((b'a' + i) as char)
                })
            });
        // id -> whether its file name says \Flagged \Seen $Crash.
        let mut in_name = HashMap::new();
        for (file, data) in message_files(&dir) {
            let text = String::from_utf8_lossy(&data);
            if let Some(id) = ids_in(&text).into_iter().next() {
                let info = file.split_once(":2,").map_or("", |(_, i)| i).to_string();
                let kw = letter.is_some_and(|c| info.contains(c));
                let flagged = info.contains('F') && info.contains('S') && kw;
                if !flagged && (info.contains('F') || kw) {
                    fails.push(format!("{id}: half the flags in {file}"));
                }
                in_name.insert(id, flagged);
            }
        }
        for l in listed {
            let Some(id) = &l.id else { continue };
            let Some((acked, inflight)) = flags.get(id).copied() else {
                continue;
            };
            let f = &l.flags;
            let flagged = f.contains("\\Flagged") && f.contains("\\Seen") && f.contains("$Crash");
            if !flagged && (f.contains("\\Flagged") || f.contains("$Crash")) {
                fails.push(format!("{id}: half the flags: ({f})"));
            }
            if flagged != acked && Some(flagged) != inflight {
                fails.push(format!(
                    "{id}: FLAGS ({f}), but the last STORE acknowledged set {}",
                    if acked { FLAGGED } else { SEEN }
                ));
            }
            if in_name.get(id) != Some(&flagged) {
                fails.push(format!(
                    "{id}: FLAGS ({f}), file name says {:?}",
                    in_name.get(id)
                ));
            }
            flags.insert(id.clone(), (flagged, None));
        }
        for f in fails {
            self.fail(format!("round {round} st/INBOX: {f}"));
        }
    }

    /// No message file is cut short or mangled.
    fn check_files(&mut self, mb: &str, user: &str, name: &str, round: usize) {
        let dir = mailbox_dir(self.fixture, user, name);
        let mut fails = Vec::new();
        for (file, data) in message_files(&dir) {
            let text = String::from_utf8_lossy(&data);
            if mb == "dsn/INBOX" {
                if !text.contains("multipart/report") || !text.trim_end().ends_with("--") {
                    fails.push(format!("{file}: not a whole bounce"));
                }
                continue;
            }
            let id = text
                .split("X-Test: ")
                .nth(1)
                .and_then(|r| r.split('\n').next())
                .unwrap_or("");
            if id.is_empty() || !text.ends_with(&format!("\n\nbody {id}\nsecond line\n")) {
                fails.push(format!("{file}: damaged: {text:?}"));
            }
        }
        for f in fails {
            self.fail(format!("round {round} {mb}: {f}"));
        }
    }
}

/// The X-Test ids in `text`.
fn ids_in(text: &str) -> Vec<String> {
    text.split("X-Test: ")
        .skip(1)
        .filter_map(|r| r.split(['\r', '\n']).next())
        .map(str::to_string)
        .collect()
}

/// Log-uniform between 50 µs and 300 ms.
fn kill_delay(rng: &mut StdRng) -> Duration {
    let (lo, hi) = (50e-6f64.ln(), 0.3f64.ln());
    Duration::from_secs_f64(rng.gen_range(lo..hi).exp())
}

fn setup(peer_port: u16) -> MailFixture {
    let fixture = MailFixture::new(&[("imap", "127.0.0.1:0"), ("pop3", "127.0.0.1:0")], "");
    let d = fixture.tree.dir.path().display().to_string();
    let users: String = USERS
        .iter()
        .map(|u| format!("{u}@example.com:{{PLAIN}}{}::::::\n", password(u)))
        .collect();
    fixture.tree.write("users", &users);
    let vmailbox: String = USERS
        .iter()
        .map(|u| format!("{u}@example.com example.com/{u}/\n"))
        .collect();
    fixture.tree.write("vmailbox", &vmailbox);
    fixture.tree.write("virtual", &table_text(0));
    for u in USERS {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(fixture.maildir(u).join(sub)).unwrap();
        }
    }
    give_to_vmail(&fixture.tree.path("vmail"));
    let config = std::fs::read_to_string(&fixture.config).unwrap().replacen(
        "\n[listen]",
        &format!(
            "virtual_alias_maps = \"hash:{d}/virtual\"\nrelayhost = \"[127.0.0.1]:{peer_port}\"\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"2s\"\n\n[listen]"
        ),
        1,
    );
    std::fs::write(&fixture.config, config).unwrap();
    fixture.tree.write(
        "doveadm.conf",
        &format!(
            "ssl = no\nbase_dir = {d}/doveadm-run\nstate_dir = {d}/doveadm-state\nlog_path = /dev/stderr\nmail_uid = 5000\nmail_gid = 5000\nfirst_valid_uid = 1\nnamespace inbox {{\n  inbox = yes\n  separator = .\n  prefix =\n}}\n"
        ),
    );
    fixture
}

#[test]
fn kill_9_at_random_points_loses_nothing_acknowledged() {
    if !require_tool("doveadm") || !require_tool("python3") {
        return;
    }
    let seed: u64 = std::env::var("PIGEONPOST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: usize = std::env::var("PIGEONPOST_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(55);
    eprintln!("crash matrix: seed {seed} (PIGEONPOST_CRASH_SEED), {rounds} rounds");
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);

    let peer_dir = tempfile::tempdir().unwrap();
    let peer = Peer::start(peer_dir.path(), &["--reject-rcpt", "nobody@remote.example"]);
    let fixture = setup(peer.port);
    let model: Shared = Arc::default();
    let mut checker = Checker {
        fixture: &fixture,
        seed,
        seen: HashMap::new(),
        failures: Vec::new(),
    };

    let mut server = fixture.start();
    for (user, folder) in [("cp", "Copies"), ("mv", "Moved")] {
        let mut imap = Imap::login(server.addr("imap"), user).unwrap();
        let (_, done) = imap.run(&format!("CREATE {folder}")).unwrap();
        assert!(done.contains(" OK "), "{done}");
    }
    checker.check(&server, &model, 0, true);

    let mut in_flight: BTreeMap<&str, usize> = BTreeMap::new();
    for n in 1..=rounds {
        let round = Round {
            n,
            seed,
            imap: server.addr("imap"),
            pop3: server.addr("pop3"),
            smtp: server.addr("smtp"),
            table: fixture.tree.path("virtual"),
            model: model.clone(),
            started: Arc::default(),
            killed: Arc::default(),
            me: Arc::default(),
        };
        let clients: Vec<_> = OPS
            .iter()
            .enumerate()
            .map(|(i, &op)| {
                let r = Round {
                    me: Arc::default(),
                    ..round.clone()
                };
                std::thread::spawn(move || client(i, op, r))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while round.started.load(Ordering::SeqCst) < OPS.len() {
            assert!(
                Instant::now() < deadline,
                "seed {seed} round {n}: clients did not start"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(kill_delay(&mut rng));
        {
            // Hold the model so the snapshot of what is in flight is exact.
            let m = round.model();
            round.killed.store(true, Ordering::SeqCst);
            server.signal(libc::SIGKILL);
            for (op, busy) in &m.busy {
                if *busy {
                    *in_flight.entry(op).or_default() += 1;
                }
            }
        }
        let _ = server.child.wait();
        for c in clients {
            c.join().unwrap();
        }
        // Queue work cut off: messages of each kind still queued.
        for env in std::fs::read_dir(fixture.tree.path("queue/q"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if env.file_name().to_string_lossy().ends_with(".env") {
                let text = std::fs::read_to_string(env.path()).unwrap_or_default();
                let op = if text.contains("dsn@example.com") {
                    "DSN"
                } else {
                    "outbound"
                };
                *in_flight.entry(op).or_default() += 1;
            }
        }
        drop(server);
        server = fixture.start();
        checker.check(&server, &model, n, false);
        let anomalies = model.lock().unwrap().anomalies.clone();
        assert!(
            anomalies.is_empty(),
            "crash matrix (seed {seed}, PIGEONPOST_CRASH_SEED={seed} replays it) round {n}: answers no crash explains:\n{}",
            anomalies.join("\n")
        );
        eprintln!(
            "crash round {n}/{rounds} done at {:.1}s",
            t0.elapsed().as_secs_f64()
        );
    }

    // The queue delivers every acknowledged message at least once, and
    // every refused one comes back to its sender.
    let (remote, bounces) = {
        let m = model.lock().unwrap();
        (m.remote_acked.clone(), m.bounce_acked.clone())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut missing_remote, mut missing_bounce);
    loop {
        let delivered: HashSet<String> = peer
            .received()
            .iter()
            .flat_map(|(_, eml)| ids_in(&String::from_utf8_lossy(eml)))
            .collect();
        missing_remote = remote
            .iter()
            .filter(|id| !delivered.contains(*id))
            .cloned()
            .collect::<Vec<_>>();
        let bounced: HashSet<String> = message_files(&fixture.maildir("dsn"))
            .iter()
            .flat_map(|(_, d)| ids_in(&String::from_utf8_lossy(d)))
            .collect();
        missing_bounce = bounces
            .iter()
            .filter(|id| !bounced.contains(*id))
            .cloned()
            .collect::<Vec<_>>();
        if (missing_remote.is_empty() && missing_bounce.is_empty()) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = model.lock().unwrap();
    eprintln!(
        "crash matrix: seed {seed}, {rounds} kills in {:.1}s; acknowledged per operation {:?}; kills with the operation in flight {:?}; outbound acked {}, bounces acked {}",
        t0.elapsed().as_secs_f64(),
        m.acked,
        in_flight,
        remote.len(),
        bounces.len()
    );
    assert!(
        m.anomalies.is_empty(),
        "seed {seed}: answers no crash explains:\n{}",
        m.anomalies.join("\n")
    );
    assert!(
        missing_remote.is_empty(),
        "seed {seed}: acknowledged outbound mail never delivered: {missing_remote:?}"
    );
    assert!(
        missing_bounce.is_empty(),
        "seed {seed}: acknowledged mail to a refused recipient never bounced: {missing_bounce:?}"
    );
    for op in OPS {
        assert!(
            m.acked.get(op).copied().unwrap_or(0) > 0,
            "seed {seed}: {op} never got through"
        );
    }
}
