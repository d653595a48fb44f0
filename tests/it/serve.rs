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
        reply.starts_with("HTTP/1.1 503")
            && reply.contains("too many connections from your address"),
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
