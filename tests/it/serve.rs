//! `pigeonpost serve`: starts its listeners, logs one line per listener,
//! answers health checks, enforces the per-IP limit, and exits cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::{test_listen, Server, Tree};

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn seed_config(t: &Tree) -> std::path::PathBuf {
    t.write(
        "pigeonpost.toml",
        &format!(
            r#"
myhostname = "mail.example.com"
mydomain = "example.com"
myorigin = "$mydomain"
mydestination = "$myhostname, localhost.$mydomain, localhost, $mydomain"
mynetworks = "192.0.2.0/24"
home_mailbox = "Maildir/"
alias_maps = ""
smtpd_client_connection_count_limit = 2
{}"#,
            test_listen(&[("imap", "127.0.0.1:0, [::1]:0")])
        ),
    )
}

#[test]
fn serve_logs_listeners_answers_health_and_stops_on_sigterm() {
    let t = Tree::new();
    let cfg = seed_config(&t);
    let mut server = Server::start(&cfg, &[]);
    let names: Vec<&str> = server.listeners.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "imap").count(),
        2,
        "one line per bound address: {names:?}"
    );
    assert!(names.contains(&"smtp") && names.contains(&"http"));
    assert!(
        !names.contains(&"pop3"),
        "disabled listeners are not started"
    );

    let http = server.addr("http");
    assert!(http_get(http, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(http, "/readyz").starts_with("HTTP/1.1 200"));
    assert!(http_get(http, "/metrics").contains("pigeonpost_reloads_total"));
    assert!(http_get(http, "/nope").starts_with("HTTP/1.1 404"));

    // smtpd_client_connection_count_limit = 2: the third simultaneous
    // connection from one IP is refused (the HTTP listener holds idle
    // connections open while it waits for a request).
    // The requests above must have released their slots first: a loaded
    // machine can take a moment to finish them.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let mut s = TcpStream::connect(http).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut b = [0u8; 64];
                match s.read(&mut b) {
                    // Nothing to read: accepted and waiting for a request.
                    Err(_) => break s,
                    // Refused (the earlier requests still hold slots): retry.
                    Ok(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Ok(n) => panic!(
                        "held connection refused: {:?}",
                        String::from_utf8_lossy(&b[..n])
                    ),
                }
            }
        })
        .collect();
    let mut third = TcpStream::connect(http).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    let _ = third.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 503") && reply.contains("too many connections from 127.0.0.1"),
        "{reply:?}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        http_get(http, "/healthz").starts_with("HTTP/1.1 200"),
        "slots are released on close"
    );
    let smtp = server.addr("smtp");

    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(
        TcpStream::connect(smtp).is_err(),
        "listener closed after shutdown"
    );
}

#[test]
fn a_busy_port_is_a_runtime_error_naming_the_listener() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let t = Tree::new();
    let cfg = seed_config(&t);
    let out = crate::util::run(
        &["--config", cfg.to_str().unwrap(), "serve"],
        &[("PIGEONPOST_LISTEN__SMTP", &format!("127.0.0.1:{port}"))],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = crate::util::stderr(&out);
    assert!(
        err.contains(&format!("cannot listen for smtp on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn sigterm_lets_open_sessions_finish() {
    let t = Tree::new();
    let cfg = seed_config(&t);
    let mut server = Server::start(&cfg, &[]);
    let http = server.addr("http");
    // A session in progress: connected, request not yet sent.
    let mut s = TcpStream::connect(http).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    assert!(server
        .wait_log("shutting down", Duration::from_secs(5))
        .is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "waits for the open session"
    );
    assert!(
        TcpStream::connect(http).is_err(),
        "but accepts no new connections"
    );
    write!(s, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the session completes: {reply:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "exits once sessions are done");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The README's "run" command: `serve --dev` takes mail by SMTP (plain port
/// and authenticated submission) and hands it out by IMAP over TLS, with
/// health and metrics answering. Ports are moved to free ones through the
/// environment, as a user would to avoid a clash.
#[test]
fn dev_server_takes_mail_by_smtp_and_hands_it_out_by_imap() {
    let t = Tree::new();
    let mut cmd = crate::util::pigeonpost();
    cmd.args(["serve", "--dev"]).current_dir(t.dir.path());
    for (name, _) in pigeonpost::dev::DEV_PORTS {
        cmd.env(
            format!("PIGEONPOST_LISTEN__{}", name.to_uppercase()),
            "127.0.0.1:0",
        );
    }
    let server = Server::spawn(cmd);
    let password = std::fs::read_to_string(t.path("pigeonpost-dev/demo-password.txt")).unwrap();
    let port = |n: &str| server.addr(n).port().to_string();
    let (ok, out, err) = crate::smtp::python(
        r#"
import imaplib, os, smtplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
ctx.check_hostname = False
user, pw = "demo@example.com", os.environ["PASSWORD"]
with smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"])) as s:
    s.sendmail("someone@elsewhere.example", [user],
               "From: someone@elsewhere.example\r\nSubject: inbound hello\r\n\r\nby port 25\r\n")
with smtplib.SMTP("127.0.0.1", int(os.environ["SUBMISSION"])) as s:
    s.starttls(context=ctx)
    s.login(user, pw)
    s.sendmail(user, ["postmaster@example.com"],
               "From: demo@example.com\r\nSubject: submitted hello\r\n\r\nby 587\r\n")
m = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS"]), ssl_context=ctx)
m.login(user, pw)
typ, data = m.select("INBOX")
print("exists", data[0].decode())
typ, data = m.uid("FETCH", "1:*", "(BODY[HEADER.FIELDS (SUBJECT)])")
for item in data:
    if isinstance(item, tuple):
        print(item[1].decode().strip())
m.logout()
"#,
        &[
            (
                "CAFILE",
                t.path("pigeonpost-dev/tls/cert.pem").display().to_string(),
            ),
            ("PASSWORD", password.trim().to_string()),
            ("SMTP", port("smtp")),
            ("SUBMISSION", port("submission")),
            ("IMAPS", port("imaps")),
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("exists 2"), "{out}");
    assert!(out.contains("Subject: inbound hello"), "{out}");
    assert!(
        out.contains("Subject: submitted hello"),
        "postmaster is an alias of the demo user: {out}"
    );

    let http = server.addr("http");
    let ready = http_get(http, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("virtual_mailbox_base"), "{ready}");
    let metric = |name| crate::proxy::metric(http, name);
    assert_eq!(metric("pigeonpost_messages_received_total"), 2);
    assert_eq!(
        metric("pigeonpost_messages_delivered_total{destination=\"local\"}"),
        2
    );
    assert_eq!(
        metric("pigeonpost_connections_total{listener=\"imaps\"}"),
        1
    );
    assert_eq!(
        metric("pigeonpost_auth_failures_total{protocol=\"imap\"}"),
        0
    );
}

/// `/readyz` fails, naming the directory, when the mail store goes away.
#[test]
fn readyz_fails_when_the_mail_store_is_not_writable() {
    let t = Tree::new();
    let cfg = seed_config(&t);
    let base = t.path("vmail");
    std::fs::create_dir(&base).unwrap();
    let env = [("PIGEONPOST_VIRTUAL_MAILBOX_BASE", base.to_str().unwrap())];
    let server = Server::start(&cfg, &env);
    let http = server.addr("http");
    assert!(http_get(http, "/readyz").starts_with("HTTP/1.1 200"));
    std::fs::remove_dir(&base).unwrap();
    let reply = http_get(http, "/readyz");
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(
        reply.contains(&format!(
            "virtual_mailbox_base {}: not writable",
            base.display()
        )),
        "{reply}"
    );
    assert!(
        http_get(http, "/healthz").starts_with("HTTP/1.1 200"),
        "alive even when not ready"
    );
}

/// The NixOS VM test's client script (nix/vm-client.py) can only run under
/// KVM there; here it runs against a local server set up like the VM (the
/// HOWTO's virtual users, loopback outside `mynetworks`, the same demo user
/// and password hash), so the VM test's checks are known to pass.
#[test]
fn the_nixos_vm_test_client_passes_against_a_local_server() {
    let t = Tree::new();
    let d = t.dir.path().display().to_string();
    let vm_test = std::fs::read_to_string("nix/vm-test.nix").unwrap();
    let demo = vm_test
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("demo@example.com:{SHA512-CRYPT}"))
        .expect("vm-test.nix has the demo user");
    t.write("users", &format!("{demo}\n"));
    t.write("virtual_mailbox", "demo@example.com  example.com/demo/\n");
    t.write(
        "virtual_alias",
        "postmaster@example.com  demo@example.com\n",
    );
    t.write_cert(&["mail.example.com"]);
    std::fs::create_dir(t.path("vmail")).unwrap();
    let cfg = t.write(
        "pigeonpost.toml",
        &format!(
            r#"
myhostname = "mail.example.com"
mydomain = "example.com"
mydestination = "localhost"
mynetworks = "192.0.2.0/24"
virtual_mailbox_domains = "example.com"
virtual_mailbox_base = "{d}/vmail"
virtual_mailbox_maps = "hash:{d}/virtual_mailbox"
virtual_alias_maps = "hash:{d}/virtual_alias"
virtual_uid_maps = "static:5000"
virtual_gid_maps = "static:5000"
alias_maps = ""
recipient_delimiter = "+"
mail_location = "maildir:{d}/vmail/%d/%n"
auth_mechanisms = "plain login"
passdb = "passwd-file:{d}/users"
userdb = "static:uid=5000 gid=5000 home={d}/vmail/%d/%n"
ssl_cert = "<{d}/tls/cert.pem"
ssl_key = "<{d}/tls/key.pem"
{}"#,
            test_listen(&[
                ("submission", "127.0.0.1:0"),
                ("imap", "127.0.0.1:0"),
                ("imaps", "127.0.0.1:0"),
                ("pop3s", "127.0.0.1:0"),
            ])
        ),
    );
    let server = Server::start(&cfg, &[]);
    let ports: Vec<String> = ["smtp", "submission", "imap", "imaps", "pop3s"]
        .iter()
        .map(|n| format!("{n}={}", server.addr(n).port()))
        .collect();
    for mode in ["deliver", "submit", "no-relay", "imap", "pop3"] {
        let out = std::process::Command::new("python3")
            .args(["nix/vm-client.py", mode])
            .env("VM_CLIENT_PORTS", ports.join(","))
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "vm-client.py {mode}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Started with the 1,024 open files a service manager gives by default,
/// the server raises its own soft limit to the hard one (thousands of idle
/// IMAP clients need a descriptor each).
#[test]
fn serve_raises_its_open_files_limit_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let t = Tree::new();
    let cfg = seed_config(&t);
    let mut cmd = crate::util::pigeonpost();
    cmd.env("PIGEONPOST_QUEUE_DIRECTORY", t.path("queue"))
        .args(["--config", cfg.to_str().unwrap(), "serve"]);
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) },
        0
    );
    let soft = 256.min(hard.rlim_max);
    // SAFETY: setrlimit in the child between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = Server::spawn(cmd);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    // "Max open files  <soft>  <hard>  files"
    let now_soft = line.split_whitespace().nth(3).unwrap();
    assert_eq!(now_soft, hard.rlim_max.min(1 << 20).to_string(), "{line}");
}
