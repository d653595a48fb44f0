//! ACME (`acme_domains`) against Debian's `pebble` test ACME server on
//! loopback, with real validation: pebble resolves the name through the
//! test DNS server (127.0.0.1) and fetches the http-01 answer from
//! `listen.http`, or does the tls-alpn-01 handshake with the implicit-TLS
//! listener. A client trusting pebble's root then gets the issued chain
//! over TLS; a renewal serves a new certificate without a restart; an ACME
//! server that is gone (or refuses) leaves the certificate in use alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;

use crate::dns::{Answer, FakeDns};
use crate::util::{require_tool, reserved_port, test_listen, Server, Tree};

const DOMAIN: &str = "mail.example.com";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pebble process (killed on drop) and what a client needs to talk to it.
struct Pebble {
    child: Child,
    /// Its HTTPS certificate (self-signed, for 127.0.0.1), trusted by pigeonpost.
    https_ca: std::path::PathBuf,
    directory: String,
    listen: SocketAddr,
    management: SocketAddr,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Starts pebble validating http-01 on `http_port` and tls-alpn-01 on
    /// `tls_port` of 127.0.0.1 (names resolved by `dns`).
    fn start(t: &Tree, dns: SocketAddr, http_port: u16, tls_port: u16) -> Pebble {
        // (a test brings pebble back on these later)
        let listen: SocketAddr = format!("127.0.0.1:{}", reserved_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", reserved_port()).parse().unwrap();
        Pebble::start_at(t, dns, http_port, tls_port, listen, management)
    }

    /// The same, with the directory on `listen`.
    fn start_at(
        t: &Tree,
        dns: SocketAddr,
        http_port: u16,
        tls_port: u16,
        listen: SocketAddr,
        management: SocketAddr,
    ) -> Pebble {
        let (cert, key) = pigeonpost::tls::self_signed(&["127.0.0.1"]);
        let cert_path = t.write("pebble/cert.pem", &cert);
        let key_path = t.write("pebble/key.pem", &key);
        let config = t.write(
            "pebble/config.json",
            &serde_json::json!({"pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }})
            .to_string(),
        );
        let child = Command::new("pebble")
            .args(["-config", config.to_str().unwrap()])
            .args(["-dnsserver", &dns.to_string()])
            .args(["-strict", "false"])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validates again (renewals included).
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pebble");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(listen).is_err() || TcpStream::connect(management).is_err() {
            assert!(Instant::now() < deadline, "pebble did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pebble {
            child,
            https_ca: cert_path,
            directory: format!("https://{listen}/dir"),
            listen,
            management,
        }
    }

    /// The root certificate pebble issues under (its management API).
    fn issuing_root(&self) -> String {
        let ca = std::fs::read_to_string(&self.https_ca).unwrap();
        let mut conn = rustls::ClientConnection::new(
            client_config(&ca),
            ServerName::try_from("127.0.0.1").unwrap(),
        )
        .unwrap();
        let mut tcp = TcpStream::connect(self.management).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        let _ = tls.read_to_string(&mut body);
        let start = body
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a PEM root");
        body[start..].to_string()
    }
}

fn client_config(trusted_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(trusted_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A TLS handshake with `addr` for DOMAIN, verified against `trusted_pem`
/// (pebble's root); returns the leaf certificate served.
fn served(addr: SocketAddr, trusted_pem: &str) -> Result<Vec<u8>, String> {
    let mut conn = rustls::ClientConnection::new(
        client_config(trusted_pem),
        ServerName::try_from(DOMAIN).unwrap(),
    )
    .unwrap();
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut greeting = [0u8; 64];
    tls.read(&mut greeting).map_err(|e| e.to_string())?;
    Ok(conn.peer_certificates().unwrap()[0].as_ref().to_vec())
}

/// Retries handshakes until one verifies against `root` and serves a leaf
/// other than `not` (or `limit` passes).
fn wait_served(addr: SocketAddr, root: &str, not: Option<&[u8]>, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    loop {
        let last = match served(addr, root) {
            Ok(leaf) if Some(leaf.as_slice()) != not => return leaf,
            Ok(_) => "still the previous certificate".to_string(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "no (new) ACME certificate served on {addr} within {limit:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(
    t: &Tree,
    pebble: &Pebble,
    challenge: &str,
    listen: &[(&str, &str)],
) -> std::path::PathBuf {
    t.write(
        "pigeonpost.toml",
        &format!(
            "myhostname = \"{DOMAIN}\"\nalias_maps = \"\"\nacme_domains = \"{DOMAIN}\"\n\
             acme_email = \"postmaster@example.com\"\n\
             acme_directory = \"{}\"\nacme_ca_file = \"{}\"\nacme_challenge = \"{challenge}\"\n\
             acme_state_directory = \"{}\"\nacme_retry_time = \"1s\"\n{}",
            pebble.directory,
            pebble.https_ca.display(),
            t.path("acme").display(),
            test_listen(listen)
        ),
    )
}

fn dns() -> FakeDns {
    FakeDns::start(vec![(
        DOMAIN.to_string(),
        "A",
        vec![Answer::A([127, 0, 0, 1])],
    )])
}

/// http-01: issue, serve on every implicit-TLS listener, keep the state
/// across a restart, renew without a restart when due, and keep serving
/// the last good certificate while the ACME server is gone.
#[test]
fn http01_issue_renew_and_a_failing_server_keeps_the_certificate() {
    if !require_tool("pebble") {
        return;
    }
    let t = Tree::new();
    let dns = dns();
    let http_port = free_port();
    let pebble = Pebble::start(&t, dns.addr, http_port, free_port());
    let root = pebble.issuing_root();
    let http = format!("127.0.0.1:{http_port}");
    let cfg = config(
        &t,
        &pebble,
        "http-01",
        &[
            ("http", &http),
            ("imaps", "127.0.0.1:0"),
            ("submissions", "127.0.0.1:0"),
        ],
    );

    // First start: a self-signed placeholder, then the issued certificate.
    let server = Server::start(&cfg, &[]);
    server
        .wait_log(
            "ACME: certificate issued and installed",
            Duration::from_secs(60),
        )
        .expect("the certificate was not issued");
    let first = wait_served(server.addr("imaps"), &root, None, Duration::from_secs(10));
    assert_eq!(
        wait_served(
            server.addr("submissions"),
            &root,
            None,
            Duration::from_secs(10)
        ),
        first,
        "465 serves the same certificate"
    );
    use std::os::unix::fs::PermissionsExt;
    for (file, mode) in [("acme/key.pem", 0o600), ("acme/account.json", 0o600)] {
        let m = std::fs::metadata(t.path(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{file} mode {m:o}");
    }
    let info = pigeonpost::acme::der_info(&first).unwrap();
    assert!(!info.self_signed && info.names == [DOMAIN], "{info:?}");
    drop(server);

    // Restart with the renewal due (acme_renew_before longer than the
    // certificate's life): the saved certificate is served at once, the
    // saved account is used, and the renewal is served without a restart.
    let server = Server::start(&cfg, &[("PIGEONPOST_ACME_RENEW_BEFORE", "100000d")]);
    assert_eq!(
        served(server.addr("imaps"), &root).unwrap(),
        first,
        "kept across restarts"
    );
    server
        .wait_log(
            "ACME: certificate issued and installed",
            Duration::from_secs(60),
        )
        .expect("no renewal");
    let second = wait_served(
        server.addr("imaps"),
        &root,
        Some(&first),
        Duration::from_secs(10),
    );
    assert_ne!(second, first);

    // The ACME server goes away: an error naming the domain, and the last
    // good certificate stays in use (and on disk).
    let (listen, management) = (pebble.listen, pebble.management);
    drop(pebble);
    let line = server
        .wait_log(
            "ACME: getting a certificate failed",
            Duration::from_secs(30),
        )
        .expect("no error logged for the failed renewal");
    assert!(line.contains(DOMAIN), "{line}");
    let on_disk = std::fs::read_to_string(t.path("acme/cert.pem")).unwrap();
    let kept = served(server.addr("imaps"), &root).expect("still a valid certificate");
    server
        .wait_log(
            "ACME: getting a certificate failed",
            Duration::from_secs(30),
        )
        .expect("retried");
    assert_eq!(served(server.addr("imaps"), &root).unwrap(), kept);
    assert_eq!(
        std::fs::read_to_string(t.path("acme/cert.pem")).unwrap(),
        on_disk
    );
    assert!(!pigeonpost::acme::der_info(&kept).unwrap().self_signed);

    // An ACME server that refuses: pebble back at the same address (it
    // forgot the account: a new one is made), but its validation reaches a
    // closed port, so the order turns invalid. The certificate stays.
    let closed = reserved_port();
    let _pebble = Pebble::start_at(&t, dns.addr, closed, closed, listen, management);
    server
        .wait_log("does not know the saved account", Duration::from_secs(60))
        .expect("the new ACME server was not asked");
    let line = server
        .wait_log(
            "ACME: getting a certificate failed",
            Duration::from_secs(60),
        )
        .expect("no error logged for the refused order");
    assert!(
        line.contains(DOMAIN) && line.contains("did not validate"),
        "{line}"
    );
    assert_eq!(served(server.addr("imaps"), &root).unwrap(), kept);
    assert_eq!(
        std::fs::read_to_string(t.path("acme/cert.pem")).unwrap(),
        on_disk
    );

    // Both are counted, and the expiry of the certificate in use is exported.
    let metrics = http_get(server.addr("http"), "/metrics");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(value("pigeonpost_acme_certificates_issued_total") >= 1.0);
    assert!(value("pigeonpost_acme_failures_total") >= 2.0);
    let not_after = pigeonpost::acme::der_info(&kept).unwrap().not_after;
    let secs = not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert_eq!(value("pigeonpost_acme_certificate_not_after_seconds"), secs);
}

/// tls-alpn-01 answered on the implicit-TLS listener (993 here), while
/// ordinary clients on it keep getting the certificate in use.
#[test]
fn tls_alpn01_is_answered_on_the_implicit_tls_listener() {
    if !require_tool("pebble") {
        return;
    }
    let t = Tree::new();
    let dns = dns();
    let tls_port = free_port();
    let pebble = Pebble::start(&t, dns.addr, free_port(), tls_port);
    let root = pebble.issuing_root();
    let imaps = format!("127.0.0.1:{tls_port}");
    let cfg = config(&t, &pebble, "tls-alpn-01", &[("imaps", &imaps)]);
    let server = Server::start(&cfg, &[]);
    server
        .wait_log(
            "ACME: certificate issued and installed",
            Duration::from_secs(60),
        )
        .expect("the certificate was not issued");
    let leaf = wait_served(server.addr("imaps"), &root, None, Duration::from_secs(10));
    assert!(!pigeonpost::acme::der_info(&leaf).unwrap().self_signed);
}

/// Bad ACME settings are configuration errors naming the key.
#[test]
fn bad_acme_settings_name_the_key() {
    let t = Tree::new();
    let base = format!("myhostname = \"{DOMAIN}\"\nalias_maps = \"\"\n");
    for (extra, key) in [
        ("acme_domains = \"*.example.com\"\n", "acme_domains"),
        (
            "acme_domains = \"mail.example.com\"\nacme_challenge = \"dns-01\"\n",
            "acme_challenge",
        ),
        (
            "acme_domains = \"mail.example.com\"\nacme_directory = \"http://acme.example/dir\"\n",
            "acme_directory",
        ),
        (
            "acme_domains = \"mail.example.com\"\nacme_ca_file = \"/nonexistent/ca.pem\"\n",
            "acme_ca_file",
        ),
    ] {
        let cfg = t.write(
            "pigeonpost.toml",
            &format!("{base}{extra}{}", test_listen(&[])),
        );
        let out = crate::util::run(&["--config", cfg.to_str().unwrap(), "config"], &[]);
        let err = crate::util::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(key), "{extra}: {err}");
    }
    // http-01 needs the HTTP listener.
    let cfg = t.write(
        "pigeonpost.toml",
        &format!(
            "{base}acme_domains = \"{DOMAIN}\"\n{}",
            test_listen(&[("http", "")])
        ),
    );
    let out = crate::util::run(&["--config", cfg.to_str().unwrap(), "config"], &[]);
    assert!(
        crate::util::stderr(&out).contains("acme_challenge"),
        "{}",
        crate::util::stderr(&out)
    );
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
