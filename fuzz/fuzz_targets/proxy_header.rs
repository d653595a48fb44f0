#![no_main]
//! PROXY protocol v1 and v2 headers (`net::proxy`), two ways on every input.
//!
//! As raw bytes at the start of a connection: the parser never panics, a
//! parsed header never claims more bytes than it was given, reads the same
//! from exactly its own bytes, and every shorter prefix of it asks for more
//! (the listener peeks at a growing buffer, so an error on a prefix would
//! drop a good connection).
//!
//! As a recipe for a v2 header (command, family, addresses, then TLVs,
//! PP2_TYPE_SSL with sub-TLVs among them): the header built from it parses
//! to the address it carries, and its TLVs are stepped over exactly, so
//! the first byte of the protocol after it is not eaten. Also `encode_v2`
//! and a v1 line round-trip their source address.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use pigeonpost::net::proxy::{self, ProxyError};

const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Reads bytes off the fuzz input, zeros once it runs out.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// A TLV (type, 16-bit length, value).
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// TLVs as HAProxy sends them: ALPN, AUTHORITY, CRC32C, NOOP, UNIQUE_ID,
/// SSL (client flags, verify, then VERSION/CN/CIPHER/SIG_ALG/KEY_ALG
/// sub-TLVs), NETNS, or any type at all.
fn tlvs(c: &mut Cursor) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..c.byte() % 8 {
        let kind = c.byte();
        let len = c.byte() as usize;
        match kind % 4 {
            0 => {
                let mut ssl = vec![c.byte()];
                ssl.extend_from_slice(&c.bytes::<4>());
                for _ in 0..c.byte() % 5 {
                    let sub = [0x21, 0x22, 0x23, 0x24, 0x25][c.byte() as usize % 5];
                    let n = c.byte() as usize % 64;
                    tlv(&mut ssl, sub, &c.take(n));
                }
                tlv(&mut out, 0x20, &ssl);
            }
            1 => {
                let known = [0x01, 0x02, 0x03, 0x04, 0x05, 0x30][len % 6];
                tlv(&mut out, known, &c.take(len % 40));
            }
            2 => tlv(&mut out, kind, &c.take(len * 4)),
            _ => tlv(&mut out, kind, &c.take(len % 8)),
        }
    }
    out
}

fn built_v2(data: &[u8]) {
    let mut c = Cursor(data);
    let ver_cmd = 0x20 | (c.byte() & 1);
    let fam = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x01][c.byte() as usize % 8];
    let mut body = Vec::new();
    let expected: Option<SocketAddr> = match fam {
        0x11 | 0x12 => {
            let (src, dst, sp, dp) = (c.bytes::<4>(), c.bytes::<4>(), c.bytes::<2>(), c.bytes::<2>());
            body.extend_from_slice(&src);
            body.extend_from_slice(&dst);
            body.extend_from_slice(&sp);
            body.extend_from_slice(&dp);
            Some(SocketAddr::new(Ipv4Addr::from(src).into(), u16::from_be_bytes(sp)))
        }
        0x21 | 0x22 => {
            let (src, dst, sp, dp) = (c.bytes::<16>(), c.bytes::<16>(), c.bytes::<2>(), c.bytes::<2>());
            body.extend_from_slice(&src);
            body.extend_from_slice(&dst);
            body.extend_from_slice(&sp);
            body.extend_from_slice(&dp);
            Some(SocketAddr::new(Ipv6Addr::from(src).into(), u16::from_be_bytes(sp)))
        }
        // AF_UNIX: two 108-byte paths; UNSPEC and others: nothing.
        0x31 | 0x32 => {
            body.extend_from_slice(&c.take(216));
            None
        }
        _ => None,
    };
    let expected = if ver_cmd == 0x20 { None } else { expected };
    body.extend_from_slice(&tlvs(&mut c));
    let mut header = V2_SIG.to_vec();
    header.push(ver_cmd);
    header.push(fam);
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(&body);
    let len = header.len();
    for k in 0..len {
        assert_eq!(proxy::parse(&header[..k]), Ok(None), "prefix of {k} bytes");
    }
    header.extend_from_slice(b"EHLO x\r\n");
    let h = proxy::parse(&header).expect("a well-formed v2 header").expect("complete");
    assert_eq!(h.len, len, "TLVs stepped over exactly");
    assert_eq!(h.source, expected);
}

fn round_trips(data: &[u8]) {
    let mut c = Cursor(data);
    let addr = |c: &mut Cursor, v6: bool| -> SocketAddr {
        let ip: IpAddr = if v6 {
            Ipv6Addr::from(c.bytes::<16>()).into()
        } else {
            Ipv4Addr::from(c.bytes::<4>()).into()
        };
        SocketAddr::new(ip, u16::from_be_bytes(c.bytes::<2>()))
    };
    let kinds = c.byte();
    let src = addr(&mut c, kinds & 1 == 1);
    let dst = addr(&mut c, kinds & 2 == 2);
    let h = proxy::parse(&proxy::encode_v2(src, dst)).unwrap().unwrap();
    let got = h.source.expect("encode_v2 carries an address");
    assert_eq!((got.ip().to_canonical(), got.port()), (src.ip().to_canonical(), src.port()));

    if src.is_ipv4() == dst.is_ipv4() {
        let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        let line = format!("PROXY {proto} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port());
        let h = proxy::parse(line.as_bytes()).unwrap().unwrap();
        assert_eq!((h.source, h.len), (Some(src), line.len()));
    }
}

fuzz_target!(|data: &[u8]| {
    match proxy::parse(data) {
        Ok(Some(h)) => {
            assert!(h.len <= data.len());
            assert_eq!(proxy::parse(&data[..h.len]), Ok(Some(h.clone())));
            for k in 0..h.len.min(600) {
                assert_eq!(proxy::parse(&data[..k]), Ok(None), "prefix of {k} bytes");
            }
        }
        Ok(None) => {
            for k in 0..data.len().min(600) {
                assert_eq!(proxy::parse(&data[..k]), Ok(None), "prefix of {k} bytes");
            }
        }
        Err(ProxyError::NotProxy | ProxyError::Malformed(_)) => {}
    }
    built_v2(data);
    round_trips(data);
});
