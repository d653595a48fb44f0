//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
//! specification defines them (haproxy.org/download/2.9/doc/proxy-protocol.txt),
//! sans-IO: bytes in, the client's real address and the header length out.
//! A load balancer in front of pigeonpost sends it so that `mynetworks`,
//! limits and logs see the real client, not the balancer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (§2.2).
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes (§2.1).
const V1_MAX: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    NotProxy,
    Malformed(&'static str),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::NotProxy => write!(f, "no PROXY protocol header"),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
        }
    }
}

/// A parsed header: `source` is None for v1 UNKNOWN / v2 LOCAL (health
/// checks from the balancer itself), meaning "keep the connection's address".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    pub source: Option<SocketAddr>,
    pub len: usize,
}

/// Parses the start of a connection. `Ok(None)`: need more bytes.
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] == V2_SIG[..n] {
        return if buf.len() < 16 {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 { Ok(None) } else { parse_v1(buf) };
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let Some(end) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Malformed("v1 line too long"))
        } else {
            Ok(None)
        };
    };
    if end == 0 || buf[end - 1] != b'\r' {
        return Err(ProxyError::Malformed("v1 line must end with CRLF"));
    }
    let line =
        std::str::from_utf8(&buf[..end - 1]).map_err(|_| ProxyError::Malformed("v1 not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let len = end + 1;
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(Some(ProxyHeader { source: None, len })),
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyError::Malformed("v1 bad source address"))?;
            if (*proto == "TCP4") != ip.is_ipv4() {
                return Err(ProxyError::Malformed("v1 address family mismatch"));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| ProxyError::Malformed("v1 bad source port"))?;
            Ok(Some(ProxyHeader {
                source: Some(SocketAddr::new(ip, port)),
                len,
            }))
        }
        _ => Err(ProxyError::Malformed("v1 fields")),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version"));
    }
    let fam = buf[13];
    let addr_len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + addr_len;
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[16..len];
    match ver_cmd & 0x0F {
        0 => return Ok(Some(ProxyHeader { source: None, len })), // LOCAL
        1 => {}                                                  // PROXY
        _ => return Err(ProxyError::Malformed("v2 command")),
    }
    let source = match fam {
        0x11 | 0x12 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        0x21 | 0x22 if body.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&body[..16]);
            Some(SocketAddr::new(
                Ipv6Addr::from(a).into(),
                u16::from_be_bytes([body[32], body[33]]),
            ))
        }
        0x00 => None, // UNSPEC
        0x11 | 0x12 | 0x21 | 0x22 => {
            return Err(ProxyError::Malformed("v2 address block too short"))
        }
        _ => None, // AF_UNIX and others: no usable client address
    };
    Ok(Some(ProxyHeader { source, len }))
}

/// A v2 header for `src` → `dst` (for tests and tools).
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIG.to_vec();
    out.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 25\r\nEHLO x\r\n";
        let p = parse(h).unwrap().unwrap();
        assert_eq!(p.source, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(&h[p.len..], b"EHLO x\r\n");
        let p = parse(b"PROXY TCP6 2001:db8::1 ::1 4000 25\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(p.source, Some("[2001:db8::1]:4000".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().source, None);
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7").unwrap(), None, "incomplete");
        assert_eq!(parse(b"PRO").unwrap(), None);
        assert!(parse(b"PROXY TCP4 ::1 ::1 1 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n").is_err());
        assert!(parse(&[b'P'; 200]).is_err());
        assert!(parse(format!("PROXY {}", "x".repeat(200)).as_bytes()).is_err());
        assert_eq!(parse(b"EHLO x\r\n"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn v2() {
        let src: SocketAddr = "198.51.100.9:4242".parse().unwrap();
        let mut h = encode_v2(src, "10.0.0.1:25".parse().unwrap());
        h.extend_from_slice(b"EHLO");
        let p = parse(&h).unwrap().unwrap();
        assert_eq!((p.source, &h[p.len..]), (Some(src), &b"EHLO"[..]));
        let src6: SocketAddr = "[2001:db8::5]:1".parse().unwrap();
        let h6 = encode_v2(src6, "[::1]:25".parse().unwrap());
        assert_eq!(parse(&h6).unwrap().unwrap().source, Some(src6));
        assert_eq!(parse(&h6[..20]).unwrap(), None, "incomplete");
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local).unwrap().unwrap(),
            ProxyHeader {
                source: None,
                len: 16
            }
        );
        let mut bad = V2_SIG.to_vec();
        bad.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(parse(&bad).is_err());
    }
}
