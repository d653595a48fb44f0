//! PROXY protocol v1/v2 on a listener behind a load balancer, and the
//! metrics counters moving with real traffic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::smtp::mail_setup;

/// Connects from `from`, sends `header`, then an SMTP relay attempt; returns what the server said.
fn relay_attempt(server: SocketAddr, from: &str, header: &[u8]) -> String {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&server.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(header).unwrap();
    let _ = s.write_all(
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<victim@remote.org>\r\nQUIT\r\n",
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn proxy_header_sets_the_client_address_only_from_trusted_peers() {
    let setup = mail_setup("proxy_protocol = \"smtp\"\nproxy_trusted_networks = \"127.0.0.1/32\"");
    let server = setup.start();
    let smtp = server.addr("smtp");

    // v1 from the trusted balancer, client outside mynetworks: relay refused.
    let out = relay_attempt(
        smtp,
        "127.0.0.1",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n",
    );
    assert!(
        out.contains("554 5.7.1 <victim@remote.org>: Relay access denied"),
        "{out}"
    );
    assert!(
        server
            .wait_log("192.0.2.7", Duration::from_secs(3))
            .is_some(),
        "logs show the real client"
    );
    // v1 claiming a client inside mynetworks: relaying allowed.
    let out = relay_attempt(
        smtp,
        "127.0.0.1",
        b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\n",
    );
    assert!(out.contains("220 ") && !out.contains("554"), "{out}");
    // v2, outside client.
    let v2 = pigeonpost::net::proxy::encode_v2("198.51.100.9:4242".parse().unwrap(), smtp);
    let out = relay_attempt(smtp, "127.0.0.1", &v2);
    assert!(out.contains("554 5.7.1"), "{out}");
    assert!(server
        .wait_log("198.51.100.9", Duration::from_secs(3))
        .is_some());
    // v2 written out byte by byte from the spec (haproxy proxy-protocol.txt
    // §2.2), not by our encoder: signature, 0x21 = v2 PROXY, 0x11 = TCP over
    // IPv4, 12 address bytes, then 203.0.113.5:4242 -> 127.0.0.1:25.
    let mut literal = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    literal.extend_from_slice(&[203, 0, 113, 5, 127, 0, 0, 1, 0x10, 0x92, 0, 25]);
    let out = relay_attempt(smtp, "127.0.0.1", &literal);
    assert!(out.contains("554 5.7.1"), "{out}");
    assert!(server
        .wait_log("203.0.113.5", Duration::from_secs(3))
        .is_some());
    // The same for TCP over IPv6 (0x21): 2001:db8::7 -> ::1, 36 address bytes.
    let mut literal = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    literal.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    literal.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    literal.extend_from_slice(&[0x10, 0x92, 0, 25]);
    let out = relay_attempt(smtp, "127.0.0.1", &literal);
    assert!(out.contains("554 5.7.1"), "{out}");
    assert!(server
        .wait_log("2001:db8::7", Duration::from_secs(3))
        .is_some());
    // Without a header from the balancer: dropped, no greeting.
    let out = relay_attempt(smtp, "127.0.0.1", b"");
    assert!(out.is_empty(), "{out}");
    // A header from an untrusted address: dropped before any greeting.
    let out = relay_attempt(
        smtp,
        "127.0.0.2",
        b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\n",
    );
    assert!(out.is_empty(), "untrusted PROXY sender gets nothing: {out}");
    assert!(server
        .wait_log("not in proxy_trusted_networks", Duration::from_secs(3))
        .is_some());
}

pub fn metric(http: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(http).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{out}"))
}

#[test]
fn metrics_counters_move() {
    let setup = mail_setup("");
    let server = setup.start();
    let http = server.addr("http");
    let smtp_conns = "pigeonpost_connections_total{listener=\"smtp\"}";
    let local = "pigeonpost_messages_delivered_total{destination=\"local\"}";
    let latency = "pigeonpost_delivery_seconds_count{destination=\"local\"}";
    assert_eq!(metric(http, local), 0);
    assert_eq!(metric(http, "pigeonpost_messages_received_total"), 0);
    assert_eq!(metric(http, latency), 0);
    let before = metric(http, smtp_conns);
    let mut s = TcpStream::connect(server.addr("smtp")).unwrap();
    s.write_all(b"EHLO c\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<john@example.com>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("Ok: queued"), "{out}");
    assert_eq!(metric(http, "pigeonpost_messages_received_total"), 1);
    assert_eq!(metric(http, local), 1);
    assert_eq!(metric(http, latency), 1);
    assert_eq!(metric(http, "pigeonpost_recipients_rejected_total"), 1);
    assert_eq!(metric(http, smtp_conns), before + 1);
}
