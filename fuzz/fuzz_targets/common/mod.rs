//! Shared by the framing targets (`mod common;`): how a fuzz input becomes a
//! client byte stream, and how that stream is cut into reads.
//!
//! Input layout: byte 0 is the target's flags, byte 1 seeds the splitter,
//! the rest is the byte stream. In the stream `\0\xFF n c` stands for the
//! byte `c` repeated `(n + 1) * 64` times, so that a small input can reach
//! the line and literal limits (8 KiB, 12 KiB) that real clients hit.
#![allow(dead_code)]

/// Flags, splitter seed and the expanded stream of a fuzz input.
pub fn parse(data: &[u8]) -> (u8, u8, Vec<u8>) {
    let flags = data.first().copied().unwrap_or(0);
    let seed = data.get(1).copied().unwrap_or(0);
    (flags, seed, expand(data.get(2..).unwrap_or_default()))
}

/// Expands the `\0\xFF n c` runs (at most 16 KiB each).
pub fn expand(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == 0 && raw.get(i + 1) == Some(&0xFF) && i + 3 < raw.len() {
            let n = (raw[i + 2] as usize + 1) * 64;
            out.resize(out.len() + n, raw[i + 3]);
            i += 4;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// Cuts `stream` into reads whose sizes come from `seed`: seed 0 gives
/// one-byte reads, others a mix of small and large ones; never more than
/// about 1024 reads (the line readers look for LF in what they hold after
/// every read, so a long line read byte by byte would cost n² per input).
pub fn chunks(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let max = 1 + (seed as usize * 37) % 1500;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = if seed == 0 { 1 } else { 1 + (x as usize) % max };
        let n = n.max(stream.len() / 1024);
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Where a transcript stops being comparable between two ways of reading
/// the same bytes: STARTTLS throws away what was pipelined after it, which
/// depends on how the bytes were read.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Out(Vec<u8>),
    Action(String),
}

/// Appends output to a transcript, merging consecutive output.
pub fn out(log: &mut Vec<Event>, bytes: Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    if let Some(Event::Out(prev)) = log.last_mut() {
        prev.extend_from_slice(&bytes);
    } else {
        log.push(Event::Out(bytes));
    }
}

/// A transcript without what is random by design: the CRAM-MD5 challenge
/// (`+ PD…` / `334 PD…`, base64 of `<nonce@host>`) and its copy in the
/// credentials handed to the I/O layer.
fn canonical(log: &[Event]) -> Vec<Event> {
    log.iter()
        .map(|e| match e {
            Event::Out(o) => {
                let mut out = Vec::with_capacity(o.len());
                for line in o.split_inclusive(|&b| b == b'\n') {
                    match [&b"+ PD"[..], b"334 PD"].iter().find(|p| line.starts_with(p)) {
                        Some(p) => {
                            out.extend_from_slice(&p[..p.len() - 2]);
                            out.extend_from_slice(b"<challenge>\r\n");
                        }
                        None => out.extend_from_slice(line),
                    }
                }
                Event::Out(out)
            }
            Event::Action(a) => match a.find("challenge: ") {
                Some(i) => {
                    // `"<nonce@host>"` (or bytes: `[…]`), up to its close.
                    let from = i + "challenge: ".len();
                    let close = if a[from..].starts_with('[') { ']' } else { '"' };
                    let end = a[from + 1..].find(close).map_or(a.len(), |j| from + j + 2);
                    Event::Action(format!("{}challenge: <challenge>{}", &a[..i], &a[end..]))
                }
                None => Event::Action(a.clone()),
            },
        })
        .collect()
}

/// The transcripts of two runs must be the same; on a difference, shows
/// where they part.
pub fn assert_same(a: &[Event], b: &[Event]) {
    let (a, b) = (&canonical(a)[..], &canonical(b)[..]);
    if a != b {
        let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        let show = |e: Option<&Event>| match e {
            Some(Event::Out(o)) => format!("out {:?}", String::from_utf8_lossy(o)),
            Some(Event::Action(s)) => format!("action {s}"),
            None => "end".to_string(),
        };
        panic!(
            "the transcript depends on how the input was split: event {at}\n  read at once: {}\n  read in pieces: {}",
            show(a.get(at)),
            show(b.get(at))
        );
    }
}
