//! TLS on implicit-TLS listeners: a handshake against a certificate made by
//! rcgen, TLS 1.2+ only, and certificate swaps (plain file replacement and
//! a Kubernetes Secret `..data` symlink swap) seen by new connections.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;

use crate::util::{replace, test_listen, Server, Tree};

/// Connects with TLS, trusting only `trusted_pem`; returns the server's leaf certificate.
fn handshake(
    addr: SocketAddr,
    trusted_pem: &str,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(trusted_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut greeting = [0u8; 64];
    let n = tls.read(&mut greeting).map_err(|e| e.to_string())?;
    assert!(n > 0, "greeting over TLS");
    let leaf = conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    Ok(leaf)
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn tls_config(t: &Tree, cert: &Path, key: &Path) -> std::path::PathBuf {
    t.write(
        "pigeonpost.toml",
        &format!(
            "myhostname = \"localhost\"\nalias_maps = \"\"\nssl_cert = \"<{}\"\nssl_key = \"<{}\"\n{}",
            cert.display(),
            key.display(),
            test_listen(&[("imaps", "127.0.0.1:0")])
        ),
    )
}

/// Retries new handshakes until the server presents `want` (or 2 s pass).
fn wait_for_cert(addr: SocketAddr, trusted_pem: &str, want: &[u8]) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(leaf) = handshake(addr, trusted_pem, &rustls::version::TLS13) {
            if leaf == want {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "new certificate not served within 2 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn handshake_and_certificate_swap_without_restart() {
    let (cert_a, key_a) = pigeonpost::tls::self_signed(&["localhost"]);
    let (cert_b, key_b) = pigeonpost::tls::self_signed(&["localhost"]);
    let t = Tree::new();
    let cert = t.write("tls/cert.pem", &cert_a);
    let key = t.write("tls/key.pem", &key_a);
    let server = Server::start(&tls_config(&t, &cert, &key), &[]);
    let imaps = server.addr("imaps");

    assert_eq!(
        handshake(imaps, &cert_a, &rustls::version::TLS13).unwrap(),
        der_of(&cert_a)
    );
    assert_eq!(
        handshake(imaps, &cert_a, &rustls::version::TLS12).unwrap(),
        der_of(&cert_a),
        "TLS 1.2 works"
    );

    // Swap: key first, then certificate, as a deploy tool would.
    replace(&key, &key_b);
    replace(&cert, &cert_b);
    let trust_both = format!("{cert_a}{cert_b}");
    wait_for_cert(imaps, &trust_both, &der_of(&cert_b));

    // A broken certificate is refused and the last good one stays.
    replace(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    assert!(
        server
            .wait_log("reload failed", Duration::from_secs(3))
            .is_some(),
        "the failure is logged"
    );
    assert_eq!(
        handshake(imaps, &trust_both, &rustls::version::TLS13).unwrap(),
        der_of(&cert_b)
    );
    // A key that does not match the certificate is refused too.
    replace(&cert, &cert_a);
    let line = server
        .wait_log("reload failed", Duration::from_secs(3))
        .expect("mismatch logged");
    assert!(line.contains("does not match"), "{line}");
    assert_eq!(
        handshake(imaps, &trust_both, &rustls::version::TLS13).unwrap(),
        der_of(&cert_b)
    );
}

#[test]
fn kubernetes_secret_symlink_swap_is_picked_up() {
    // The layout kubelet creates for a mounted Secret:
    //   tls.crt -> ..data/tls.crt, ..data -> ..2026_01, ..2026_01/tls.crt
    let (cert_a, key_a) = pigeonpost::tls::self_signed(&["localhost"]);
    let (cert_b, key_b) = pigeonpost::tls::self_signed(&["localhost"]);
    let t = Tree::new();
    let dir = t.path("secret");
    t.write("secret/..2026_01/tls.crt", &cert_a);
    t.write("secret/..2026_01/tls.key", &key_a);
    std::os::unix::fs::symlink("..2026_01", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    let server = Server::start(
        &tls_config(&t, &dir.join("tls.crt"), &dir.join("tls.key")),
        &[],
    );
    let imaps = server.addr("imaps");
    assert_eq!(
        handshake(imaps, &cert_a, &rustls::version::TLS13).unwrap(),
        der_of(&cert_a)
    );

    // kubelet's update: new timestamped dir, new ..data_tmp symlink, renamed over ..data.
    t.write("secret/..2026_02/tls.crt", &cert_b);
    t.write("secret/..2026_02/tls.key", &key_b);
    std::os::unix::fs::symlink("..2026_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_01")).unwrap();
    let took = wait_for_cert(imaps, &format!("{cert_a}{cert_b}"), &der_of(&cert_b));
    eprintln!("certificate swap seen after {took:?}");
}

#[test]
fn an_invalid_certificate_at_start_is_a_config_error() {
    let t = Tree::new();
    let cert = t.write("cert.pem", "garbage\n");
    let (_, key_pem) = pigeonpost::tls::self_signed(&["localhost"]);
    let key = t.write("key.pem", &key_pem);
    let cfg = tls_config(&t, &cert, &key);
    let out = crate::util::run(&["--config", cfg.to_str().unwrap(), "serve"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = crate::util::stderr(&out);
    assert!(
        err.contains("cert.pem") && err.contains("no CERTIFICATE"),
        "{err}"
    );
}

/// systemd's `LoadCredential=` hands files over in `$CREDENTIALS_DIRECTORY`;
/// the certificate keys understand it (TOML and main.cf spellings), and
/// without it set the configuration is refused naming the key.
#[test]
fn certificate_paths_in_the_systemd_credentials_directory() {
    let t = Tree::new();
    let (cert, key) = pigeonpost::tls::self_signed(&["localhost"]);
    t.write("credentials/tls.crt", &cert);
    t.write("credentials/tls.key", &key);
    let creds = t.path("credentials");
    let cfg = t.write(
        "pigeonpost.toml",
        &format!(
            "myhostname = \"localhost\"\nalias_maps = \"\"\n\
             ssl_cert = \"${{CREDENTIALS_DIRECTORY}}/tls.crt\"\n\
             ssl_key = \"$CREDENTIALS_DIRECTORY/tls.key\"\n{}",
            test_listen(&[("imaps", "127.0.0.1:0")])
        ),
    );
    let server = Server::start(&cfg, &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())]);
    let leaf = handshake(server.addr("imaps"), &cert, &rustls::version::TLS13).unwrap();
    assert_eq!(leaf, der_of(&cert));
    drop(server);

    // Postfix's names, in conf.d/*.cf.
    let cf = t.write(
        "conf.d/tls.cf",
        "smtpd_tls_cert_file = ${CREDENTIALS_DIRECTORY}/tls.crt\nsmtpd_tls_key_file = $CREDENTIALS_DIRECTORY/tls.key\n",
    );
    let cfg2 = t.write(
        "pigeonpost.toml",
        &format!(
            "myhostname = \"localhost\"\nalias_maps = \"\"\n{}",
            test_listen(&[("imaps", "127.0.0.1:0")])
        ),
    );
    let server = Server::start(&cfg2, &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())]);
    let leaf = handshake(server.addr("imaps"), &cert, &rustls::version::TLS13).unwrap();
    assert_eq!(leaf, der_of(&cert));
    drop(server);

    // Not under systemd: a configuration error naming the key.
    let out = crate::util::run(&["--config", cfg2.to_str().unwrap(), "config"], &[]);
    let err = crate::util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("smtpd_tls_cert_file") && err.contains("CREDENTIALS_DIRECTORY"),
        "{err}"
    );
    std::fs::remove_file(cf).unwrap();
}

/// Postfix's and Dovecot's TLS and login keys under their own names, over
/// the wire: `smtpd_tls_security_level = encrypt` (no MAIL before
/// STARTTLS on port 25), `smtpd_tls_auth_only` (no AUTH before TLS even
/// from this host with `disable_plaintext_auth = no`), `smtpd_tls_protocols`
/// (TLS 1.2 refused on 465), `ssl_min_protocol` (TLS 1.2 still fine on 993),
/// `ssl = required` (LOGINDISABLED on 143 even locally),
/// `auth_username_format = %Lu` (JOHN@EXAMPLE.COM logs in as john), and
/// `first_valid_uid` (a user below it cannot open their mail).
#[test]
fn postfix_and_dovecot_tls_and_login_keys() {
    use crate::util::{LineClient, MailFixture};
    let f = MailFixture::new(
        &[
            ("submissions", "127.0.0.1:0"),
            ("imap", "127.0.0.1:0"),
            ("imaps", "127.0.0.1:0"),
            ("pop3", "127.0.0.1:0"),
        ],
        "disable_plaintext_auth = \"no\"\n\
         smtpd_tls_security_level = \"encrypt\"\n\
         smtpd_tls_auth_only = \"yes\"\n\
         smtpd_tls_protocols = \">=TLSv1.3\"\n\
         ssl_min_protocol = \"TLSv1.2\"\n\
         ssl = \"required\"\n\
         auth_username_format = \"%Lu\"\n\
         first_valid_uid = 5000\n",
    );
    let server = f.start();
    let cert = std::fs::read_to_string(f.tree.path("tls/cert.pem")).unwrap();

    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    c.line();
    let ehlo = c.cmd("EHLO client.example\r\n", "250 ");
    assert!(ehlo.contains("250-STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "smtpd_tls_auth_only: {ehlo}");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>\r\n", "5"),
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );

    let tls12 = &rustls::version::TLS12;
    let tls13 = &rustls::version::TLS13;
    assert!(handshake(server.addr("submissions"), &cert, tls12).is_err());
    assert!(handshake(server.addr("submissions"), &cert, tls13).is_ok());
    assert!(handshake(server.addr("imaps"), &cert, tls12).is_ok());

    let mut c = LineClient::connect("127.0.0.1", server.addr("imap"));
    c.line();
    let caps = c.cmd("a CAPABILITY\r\n", "a ");
    assert!(
        caps.contains("LOGINDISABLED") && !caps.contains("AUTH="),
        "{caps}"
    );
    assert!(c
        .cmd("b LOGIN john@example.com john123\r\n", "b ")
        .starts_with("b NO"));

    let (ok, out, err) = crate::smtp::python(
        r#"
import imaplib, os, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
ctx.check_hostname = False
m = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["PORT"]), ssl_context=ctx)
print(m.login("JOHN@EXAMPLE.COM", "john123")[0])
print(m.select("INBOX")[0])
"#,
        &[
            ("PORT", server.addr("imaps").port().to_string()),
            ("CAFILE", f.tree.path("tls/cert.pem").display().to_string()),
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out, "OK\nOK\n");
    drop(server);

    // first_valid_uid above the userdb's 5000: the password is right, the
    // mail stays closed.
    let f = MailFixture::new(&[("pop3", "127.0.0.1:0")], "first_valid_uid = 5001\n");
    let server = f.start();
    let mut c = LineClient::connect("127.0.0.1", server.addr("pop3"));
    c.line();
    assert!(c.cmd("USER john@example.com\r\n", "").starts_with("+OK"));
    let pass = c.cmd("PASS john123\r\n", "");
    assert!(pass.starts_with("-ERR"), "{pass}");
    assert!(server
        .wait_log("first_valid_uid", Duration::from_secs(5))
        .is_some());
}

/// `smtpd_tls_security_level = none` (no STARTTLS on port 25) and
/// Dovecot's `ssl = no` (no STARTTLS on 143, no 993) with a certificate
/// configured: submission on 465 still speaks TLS.
#[test]
fn tls_switched_off_by_postfix_and_dovecot_keys() {
    use crate::util::{LineClient, MailFixture};
    let f = MailFixture::new(
        &[
            ("submissions", "127.0.0.1:0"),
            ("imap", "127.0.0.1:0"),
            ("imaps", "127.0.0.1:0"),
        ],
        "smtpd_tls_security_level = \"none\"\nssl = \"no\"\n",
    );
    let server = f.start();
    let cert = std::fs::read_to_string(f.tree.path("tls/cert.pem")).unwrap();
    let mut c = LineClient::connect("127.0.0.1", server.addr("smtp"));
    c.line();
    let ehlo = c.cmd("EHLO client.example\r\n", "250 ");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let mut c = LineClient::connect("127.0.0.1", server.addr("imap"));
    c.line();
    let caps = c.cmd("a CAPABILITY\r\n", "a ");
    assert!(!caps.contains("STARTTLS"), "{caps}");
    assert!(server.listeners.iter().all(|(n, _)| n != "imaps"));
    assert!(handshake(server.addr("submissions"), &cert, &rustls::version::TLS13).is_ok());
}
