//! Shared test helpers: temporary config trees, running the binary, and a
//! server process that is killed when the test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pigeonpost");

/// A command with a clean environment: no PIGEONPOST_* from the developer's shell.
pub fn pigeonpost() -> Command {
    let mut cmd = Command::new(BIN);
    // Not the test's own directory: paths in messages must not depend on it.
    cmd.current_dir("/");
    for (k, _) in std::env::vars() {
        if k.starts_with("PIGEONPOST_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = pigeonpost();
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("running pigeonpost")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Replaces a file atomically (write + rename), as editors and config tools do.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `cp -a from to`: a Maildir copied with its modes, owners and mtimes.
pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Runs `cmd` with `input` on its stdin, collecting stdout and stderr.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // A command that exits without reading everything is not our error.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A loopback port nothing listens on right now, for configurations that
/// need a fixed port (a peer's, or one the server advertises).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback port free now that stays out of everyone else's way for
/// the test's whole run, for a peer that is dead at first and comes back
/// later on the same port. [`free_port`] hands out ephemeral ports, which
/// other tests' connections and `bind(0)` listeners take meanwhile (CI
/// once saw such a peer fail to come back with EADDRINUSE): these lie just
/// below the kernel's ephemeral range, and no two calls in this process
/// return the same one.
pub fn reserved_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = 8000.min(low.saturating_sub(2048)).max(1);
    let start = low - span;
    let seed = std::process::id() % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (start + (seed + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// A `[listen]` table with every listener off except smtp and http on
/// loopback port 0 (so tests never collide), plus `extra` ("name", "addr") pairs.
pub fn test_listen(extra: &[(&str, &str)]) -> String {
    let mut out = String::from("\n[listen]\n");
    for name in [
        "smtp",
        "submission",
        "submissions",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "lmtp",
        "http",
    ] {
        let default = if name == "smtp" || name == "http" {
            "127.0.0.1:0"
        } else {
            ""
        };
        let addr = extra
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .unwrap_or(default);
        out.push_str(&format!("{name} = \"{addr}\"\n"));
    }
    out
}

/// A running `pigeonpost serve`, killed on drop.
pub struct Server {
    pub child: Child,
    /// listener name -> bound addresses, from the JSON "listening" log lines.
    pub listeners: Vec<(String, SocketAddr)>,
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `serve` with `config` (JSON logs) and waits until it is ready.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = pigeonpost();
        // Every server gets its own queue beside its config unless the test
        // chose one (the default, /var/spool/pigeonpost, is shared).
        let text = std::fs::read_to_string(config).unwrap_or_default();
        if !text.contains("queue_directory")
            && !env.iter().any(|(k, _)| *k == "PIGEONPOST_QUEUE_DIRECTORY")
        {
            let dir = config.parent().unwrap().join("queue");
            cmd.env("PIGEONPOST_QUEUE_DIRECTORY", dir);
        }
        cmd.args(["--config", config.to_str().unwrap(), "serve"])
            .envs(env.iter().copied());
        Server::spawn(cmd)
    }

    /// Runs a prepared `serve` command (JSON logs) and waits until it is ready.
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.env("PIGEONPOST_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning pigeonpost serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            listeners: Vec::new(),
            log: rx,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = server
                .next_log(deadline.saturating_duration_since(Instant::now()))
                .expect("server did not become ready");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            match v["message"].as_str() {
                Some("listening") => server.listeners.push((
                    v["listener"].as_str().unwrap().to_string(),
                    v["addr"].as_str().unwrap().parse().unwrap(),
                )),
                Some("pigeonpost ready") => return server,
                _ => {}
            }
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == listener)
            .unwrap_or_else(|| panic!("no {listener} listener in {:?}", self.listeners))
            .1
    }

    pub fn next_log(&self, timeout: Duration) -> Option<String> {
        self.log.recv_timeout(timeout).ok()
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.next_log(deadline.saturating_duration_since(Instant::now())) {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory holding a config tree.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        write(&p, text);
        p
    }

    /// A self-signed certificate for `names` in `tls/cert.pem` and
    /// `tls/key.pem`.
    pub fn write_cert(&self, names: &[&str]) {
        let (cert, key) = pigeonpost::tls::self_signed(names);
        self.write("tls/cert.pem", &cert);
        self.write("tls/key.pem", &key);
    }
}

/// The lines of a `[section]` of the Dovecot-made fixture's expected.txt
/// (tests/fixtures/dovecot-maildir: what Dovecot itself answered).
pub fn dovecot_expected(section: &str) -> Vec<String> {
    let text = std::fs::read_to_string("tests/fixtures/dovecot-maildir/expected.txt").unwrap();
    let header = format!("[{section}]");
    text.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(str::to_string)
        .collect()
}

/// Must every peer be there? Set by `tests/run.sh` (the README's test
/// command, which installs them first) and in CI (CI=true).
pub fn peers_required() -> bool {
    std::env::var_os("PIGEONPOST_REQUIRE_PEERS").is_some_and(|v| !v.is_empty())
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// Is `tool` on PATH? Where peers are required (see [`peers_required`]) a
/// missing tool fails the test instead of skipping it.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        if peers_required() {
            panic!("{tool} is required but not installed (tests/setup.sh installs it)");
        }
        eprintln!("SKIPPED: {tool} not installed");
    }
    found
}

/// A mail server set up as in the Postfix + Dovecot HOWTO, in a temp dir:
/// the virtual domain example.com with users john (john123) and jane
/// (jane123) in a Dovecot passwd-file, a static userdb (uid/gid 5000),
/// Maildirs under `vmail/example.com/<user>` (`mail_location =
/// maildir:…/%d/%n`, where SMTP delivers too), a self-signed certificate,
/// and the listeners given (smtp and http are always on).
pub struct MailFixture {
    pub tree: Tree,
    pub config: PathBuf,
}

impl MailFixture {
    /// `listeners`: ("name", "addr") pairs as for [`test_listen`]; `extra`:
    /// more configuration lines.
    pub fn new(listeners: &[(&str, &str)], extra: &str) -> MailFixture {
        let tree = Tree::new();
        let d = tree.dir.path().display().to_string();
        tree.write_cert(&["localhost"]);
        tree.write(
            "users",
            "john@example.com:{PLAIN}john123::::::\njane@example.com:{PLAIN}jane123::::::\n",
        );
        tree.write(
            "vmailbox",
            "john@example.com example.com/john/\njane@example.com example.com/jane/\n",
        );
        std::fs::create_dir_all(tree.path("vmail")).unwrap();
        let config = tree.write(
            "pigeonpost.toml",
            &format!(
                r#"
myhostname = "mail.example.com"
mydomain = "example.com"
mydestination = "localhost"
mynetworks = "127.0.0.1/32"
alias_maps = ""
virtual_mailbox_domains = "example.com"
virtual_mailbox_base = "{d}/vmail"
virtual_mailbox_maps = "hash:{d}/vmailbox"
virtual_uid_maps = "static:5000"
virtual_gid_maps = "static:5000"
mail_location = "maildir:{d}/vmail/%d/%n"
passdb = "passwd-file:{d}/users"
userdb = "static:uid=5000 gid=5000 home={d}/vmail/%d/%n"
auth_mechanisms = "plain login"
ssl_cert = "<{d}/tls/cert.pem"
ssl_key = "<{d}/tls/key.pem"
{extra}
{}"#,
                test_listen(listeners)
            ),
        );
        MailFixture { tree, config }
    }

    pub fn start(&self) -> Server {
        Server::start(&self.config, &[])
    }

    /// `user`'s INBOX Maildir.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.tree.path(&format!("vmail/example.com/{user}"))
    }

    /// Puts messages into `user`'s `new/` the way an MTA would.
    pub fn deliver(&self, user: &str, messages: &[&str]) {
        let dir = self.maildir(user);
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for (i, m) in messages.iter().enumerate() {
            let name = format!("{}.M{i}P{}.test", 1_700_000_000 + i, std::process::id());
            std::fs::write(dir.join("new").join(name), m).unwrap();
        }
        give_to_vmail(&dir);
    }

    /// All message files of `user` (new/ and cur/), sorted.
    pub fn files(&self, user: &str) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir(user).join(sub)) {
                v.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        v.sort();
        v
    }
}

/// As root, hands `dir` to the mail user (uid 5000), as the MTA would have:
/// the server reads and writes it with that identity.
pub fn give_to_vmail(dir: &Path) {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let st = Command::new("chown")
            .args(["-R", "5000:5000"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// A line-oriented client connected from a chosen loopback address (the
/// limits count per client address, and 127.0.0.1 is in mynetworks).
pub struct LineClient {
    pub r: BufReader<TcpStream>,
}

impl LineClient {
    pub fn connect(from: &str, to: SocketAddr) -> LineClient {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let src: SocketAddr = format!("{from}:0").parse().unwrap();
        sock.bind(&src.into()).unwrap();
        sock.connect_timeout(&to.into(), Duration::from_secs(5))
            .unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        LineClient {
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, text: &str) {
        self.r.get_mut().write_all(text.as_bytes()).unwrap();
    }

    /// The next line, or "" at end of stream (or a reset).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        let _ = self.r.read_line(&mut l);
        l
    }

    /// Sends `cmd` and reads lines until one starts with `until`.
    pub fn cmd(&mut self, cmd: &str, until: &str) -> String {
        self.send(cmd);
        self.until(until)
    }

    pub fn until(&mut self, prefix: &str) -> String {
        let mut all = String::new();
        loop {
            let l = self.line();
            all.push_str(&l);
            if l.is_empty() || l.starts_with(prefix) {
                return all;
            }
        }
    }

    /// Reads until the server closes; how long that took.
    pub fn closed_after(&mut self) -> (Duration, String) {
        let start = Instant::now();
        let mut rest = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.r.read(&mut buf) {
                Ok(0) | Err(_) => return (start.elapsed(), rest),
                Ok(n) => rest.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    }
}
