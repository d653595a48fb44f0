//! The Sendmail milter protocol, version 6, as Postfix speaks it: a
//! sans-IO codec. Commands are encoded into frames; replies are decoded
//! from bytes with strict bounds. No sockets, no clock.
//!
//! Framing (sendmail libmilter/docs, "milter protocol"; Postfix
//! src/milter/milter8.c): every packet is a 4-byte big-endian length
//! (counting the command byte and the data), one command byte, then data.
//! Strings are NUL-terminated. Integers are 32-bit big-endian.

/// Milter protocol version Postfix speaks by default (`milter_protocol = 6`).
pub const PROTOCOL_VERSION: u32 = 6;

/// The largest body chunk sent in one SMFIC_BODY (libmilter MILTER_CHUNK_SIZE).
pub const BODY_CHUNK: usize = 65535;

/// The largest reply frame we accept. libmilter's MILTER_MAX_DATA_SIZE is
/// 64 KiB, or 256 KiB / 1 MiB with SMFIP_MDS_256K / SMFIP_MDS_1M (which
/// we do not offer); a REPLBODY chunk is at most that. Anything longer is
/// a broken milter.
pub const MAX_FRAME: usize = 1024 * 1024;

// SMFIC_*: MTA → milter commands (libmilter/mfdef.h).
pub const SMFIC_ABORT: u8 = b'A';
pub const SMFIC_BODY: u8 = b'B';
pub const SMFIC_CONNECT: u8 = b'C';
pub const SMFIC_MACRO: u8 = b'D';
pub const SMFIC_BODYEOB: u8 = b'E';
pub const SMFIC_HELO: u8 = b'H';
pub const SMFIC_QUIT_NC: u8 = b'K';
pub const SMFIC_HEADER: u8 = b'L';
pub const SMFIC_MAIL: u8 = b'M';
pub const SMFIC_EOH: u8 = b'N';
pub const SMFIC_OPTNEG: u8 = b'O';
pub const SMFIC_QUIT: u8 = b'Q';
pub const SMFIC_RCPT: u8 = b'R';
pub const SMFIC_DATA: u8 = b'T';

// SMFIF_*: actions a milter may take (negotiated).
pub const SMFIF_ADDHDRS: u32 = 0x01;
pub const SMFIF_CHGBODY: u32 = 0x02;
pub const SMFIF_ADDRCPT: u32 = 0x04;
pub const SMFIF_DELRCPT: u32 = 0x08;
pub const SMFIF_CHGHDRS: u32 = 0x10;
pub const SMFIF_QUARANTINE: u32 = 0x20;
pub const SMFIF_CHGFROM: u32 = 0x40;
pub const SMFIF_ADDRCPT_PAR: u32 = 0x80;
pub const SMFIF_SETSYMLIST: u32 = 0x100;
/// Every action we carry out.
pub const ACTIONS: u32 = 0x1FF;

// SMFIP_*: protocol steps (negotiated).
pub const SMFIP_NOCONNECT: u32 = 0x01;
pub const SMFIP_NOHELO: u32 = 0x02;
pub const SMFIP_NOMAIL: u32 = 0x04;
pub const SMFIP_NORCPT: u32 = 0x08;
pub const SMFIP_NOBODY: u32 = 0x10;
pub const SMFIP_NOHDRS: u32 = 0x20;
pub const SMFIP_NOEOH: u32 = 0x40;
pub const SMFIP_NR_HDR: u32 = 0x80;
pub const SMFIP_NOUNKNOWN: u32 = 0x100;
pub const SMFIP_NODATA: u32 = 0x200;
pub const SMFIP_SKIP: u32 = 0x400;
pub const SMFIP_RCPT_REJ: u32 = 0x800;
pub const SMFIP_NR_CONN: u32 = 0x1000;
pub const SMFIP_NR_HELO: u32 = 0x2000;
pub const SMFIP_NR_MAIL: u32 = 0x4000;
pub const SMFIP_NR_RCPT: u32 = 0x8000;
pub const SMFIP_NR_DATA: u32 = 0x10000;
pub const SMFIP_NR_UNKN: u32 = 0x20000;
pub const SMFIP_NR_EOH: u32 = 0x40000;
pub const SMFIP_NR_BODY: u32 = 0x80000;
pub const SMFIP_HDR_LEADSPC: u32 = 0x100000;
/// The protocol steps we offer to leave out or not wait for: everything
/// but SMFIP_RCPT_REJ (we never tell milters about refused recipients)
/// and the larger data sizes.
pub const PROTOCOL_OFFER: u32 = SMFIP_NOCONNECT
    | SMFIP_NOHELO
    | SMFIP_NOMAIL
    | SMFIP_NORCPT
    | SMFIP_NOBODY
    | SMFIP_NOHDRS
    | SMFIP_NOEOH
    | SMFIP_NR_HDR
    | SMFIP_NOUNKNOWN
    | SMFIP_NODATA
    | SMFIP_SKIP
    | SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY
    | SMFIP_HDR_LEADSPC;

/// The macro stages of SMFIR_SETSYMLIST (libmilter SMFIM_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfMessage,
    EndOfHeaders,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Connect,
        Stage::Helo,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::EndOfMessage,
        Stage::EndOfHeaders,
    ];

    fn from_wire(n: u32) -> Option<Stage> {
        // SMFIM_CONNECT 0, HELO 1, ENVFROM 2, ENVRCPT 3, DATA 4, EOM 5, EOH 6.
        Stage::ALL.get(n as usize).copied()
    }

    /// The command whose macros these are (SMFIC_MACRO's first byte).
    pub fn command(self) -> u8 {
        match self {
            Stage::Connect => SMFIC_CONNECT,
            Stage::Helo => SMFIC_HELO,
            Stage::Mail => SMFIC_MAIL,
            Stage::Rcpt => SMFIC_RCPT,
            Stage::Data => SMFIC_DATA,
            Stage::EndOfMessage => SMFIC_BODYEOB,
            Stage::EndOfHeaders => SMFIC_EOH,
        }
    }
}

/// The client's address as SMFIC_CONNECT carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Family {
    Inet(std::net::IpAddr, u16),
    /// SMFIA_UNKNOWN: only the host name is sent.
    Unknown,
}

/// An MTA → milter command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    Macro {
        stage: u8,
        pairs: &'a [(String, String)],
    },
    Connect {
        hostname: &'a str,
        family: Family,
    },
    Helo(&'a str),
    /// The sender in angle brackets, then ESMTP parameters.
    Mail(&'a [String]),
    Rcpt(&'a [String]),
    Data,
    Header {
        name: &'a str,
        value: &'a str,
    },
    Eoh,
    Body(&'a [u8]),
    BodyEob,
    Abort,
    Quit,
    QuitNc,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // A NUL inside a string would end it early on the other side.
    out.extend(s.bytes().filter(|b| *b != 0));
    out.push(0);
}

impl Command<'_> {
    /// The frame for this command, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                out.push(SMFIC_OPTNEG);
                for n in [version, actions, protocol] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
            Command::Macro { stage, pairs } => {
                out.push(SMFIC_MACRO);
                out.push(*stage);
                for (name, value) in pairs.iter() {
                    put_str(out, name);
                    put_str(out, value);
                }
            }
            Command::Connect { hostname, family } => {
                out.push(SMFIC_CONNECT);
                put_str(out, hostname);
                match family {
                    Family::Inet(ip, port) => {
                        out.push(if ip.is_ipv4() { b'4' } else { b'6' });
                        out.extend_from_slice(&port.to_be_bytes());
                        put_str(out, &ip.to_string());
                    }
                    Family::Unknown => out.push(b'U'),
                }
            }
            Command::Helo(h) => {
                out.push(SMFIC_HELO);
                put_str(out, h);
            }
            Command::Mail(args) | Command::Rcpt(args) => {
                out.push(if matches!(self, Command::Mail(_)) {
                    SMFIC_MAIL
                } else {
                    SMFIC_RCPT
                });
                for a in args.iter() {
                    put_str(out, a);
                }
            }
            Command::Data => out.push(SMFIC_DATA),
            Command::Header { name, value } => {
                out.push(SMFIC_HEADER);
                put_str(out, name);
                put_str(out, value);
            }
            Command::Eoh => out.push(SMFIC_EOH),
            Command::Body(chunk) => {
                debug_assert!(chunk.len() <= BODY_CHUNK);
                out.push(SMFIC_BODY);
                out.extend_from_slice(chunk);
            }
            Command::BodyEob => out.push(SMFIC_BODYEOB),
            Command::Abort => out.push(SMFIC_ABORT),
            Command::Quit => out.push(SMFIC_QUIT),
            Command::QuitNc => out.push(SMFIC_QUIT_NC),
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// What the milter agreed to in its SMFIC_OPTNEG reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
    /// SMFIR_SETSYMLIST: the macros the milter wants at each stage,
    /// replacing our `milter_*_macros` for that stage.
    pub symlists: Vec<(Stage, Vec<String>)>,
}

/// A milter → MTA reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    OptNeg(Negotiated),
    /// SMFIR_CONTINUE 'c'
    Continue,
    /// SMFIR_ACCEPT 'a'
    Accept,
    /// SMFIR_REJECT 'r'
    Reject,
    /// SMFIR_TEMPFAIL 't'
    Tempfail,
    /// SMFIR_DISCARD 'd'
    Discard,
    /// SMFIR_CONN_FAIL 'f': like tempfail, and the connection ends.
    ConnFail,
    /// SMFIR_SHUTDOWN '4': the milter shuts down; tempfail (Postfix: 421).
    Shutdown,
    /// SMFIR_QUARANTINE 'q' with its reason.
    Quarantine(String),
    /// SMFIR_REPLYCODE 'y': `code[ enhanced] text`, possibly multi-line.
    ReplyCode(String),
    /// SMFIR_ADDHEADER 'h'
    AddHeader {
        name: String,
        value: String,
    },
    /// SMFIR_INSHEADER 'i': insert at `index` (0 = first).
    InsHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// SMFIR_CHGHEADER 'm': the `index`th (1-based) header called `name`;
    /// an empty value deletes it.
    ChgHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// SMFIR_ADDRCPT '+'
    AddRcpt(String),
    /// SMFIR_ADDRCPT_PAR '2' with ESMTP parameters.
    AddRcptPar(String, Option<String>),
    /// SMFIR_DELRCPT '-'
    DelRcpt(String),
    /// SMFIR_CHGFROM 'e' with optional ESMTP parameters.
    ChgFrom(String, Option<String>),
    /// SMFIR_REPLBODY 'b': one chunk of the new body.
    ReplBody(Vec<u8>),
    /// SMFIR_PROGRESS 'p': still working; restart the timer.
    Progress,
    /// SMFIR_SKIP 's': send no more body chunks.
    Skip,
}

/// Why a reply could not be decoded: the milter is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("reply frame of {0} bytes is too long")]
    TooLong(usize),
    #[error("empty reply frame")]
    Empty,
    #[error("unknown reply command {0:#04x}")]
    Unknown(u8),
    #[error("malformed {0} reply")]
    Malformed(&'static str),
}

/// Splits one frame off the front of `buf`: `Ok(None)` until a whole
/// frame is there; the number of bytes used and the response.
pub fn decode(buf: &[u8]) -> Result<Option<(usize, Response)>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_FRAME {
        return Err(DecodeError::TooLong(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let cmd = buf[4];
    let data = &buf[5..4 + len];
    parse(cmd, data).map(|r| Some((4 + len, r)))
}

/// Reads NUL-terminated strings.
struct Strings<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Strings<'a> {
    fn next(&mut self) -> Result<String, DecodeError> {
        let nul = self
            .data
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Malformed(self.what))?;
        let s = String::from_utf8_lossy(&self.data[..nul]).into_owned();
        self.data = &self.data[nul + 1..];
        Ok(s)
    }
    fn optional(&mut self) -> Result<Option<String>, DecodeError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        self.next().map(Some)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.data.len() < 4 {
            return Err(DecodeError::Malformed(self.what));
        }
        let n = u32::from_be_bytes([self.data[0], self.data[1], self.data[2], self.data[3]]);
        self.data = &self.data[4..];
        Ok(n)
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(self.what))
        }
    }
}

fn parse(cmd: u8, data: &[u8]) -> Result<Response, DecodeError> {
    let none = |r: Response| {
        // Postfix ignores trailing data on simple replies; so do we.
        Ok(r)
    };
    let mut s = Strings { data, what: "" };
    match cmd {
        b'c' => none(Response::Continue),
        b'a' => none(Response::Accept),
        b'r' => none(Response::Reject),
        b't' => none(Response::Tempfail),
        b'd' => none(Response::Discard),
        b'f' => none(Response::ConnFail),
        b'4' => none(Response::Shutdown),
        b'p' => none(Response::Progress),
        b's' => none(Response::Skip),
        b'q' => {
            s.what = "QUARANTINE";
            // The reason is NUL-terminated; tolerate a missing NUL.
            let reason = if data.contains(&0) {
                s.next()?
            } else {
                String::from_utf8_lossy(data).into_owned()
            };
            Ok(Response::Quarantine(reason))
        }
        b'y' => {
            s.what = "REPLYCODE";
            let text = s.next()?;
            check_reply_code(&text)?;
            Ok(Response::ReplyCode(text))
        }
        b'h' => {
            s.what = "ADDHEADER";
            let name = header_name(s.next()?, "ADDHEADER")?;
            let value = s.next()?;
            Ok(Response::AddHeader { name, value })
        }
        b'i' | b'm' => {
            s.what = if cmd == b'i' {
                "INSHEADER"
            } else {
                "CHGHEADER"
            };
            let index = s.u32()?;
            let name = header_name(s.next()?, s.what)?;
            let value = s.next()?;
            Ok(if cmd == b'i' {
                Response::InsHeader { index, name, value }
            } else {
                Response::ChgHeader { index, name, value }
            })
        }
        b'+' => {
            s.what = "ADDRCPT";
            let r = s.next()?;
            nonempty(&r, "ADDRCPT")?;
            Ok(Response::AddRcpt(r))
        }
        b'2' => {
            s.what = "ADDRCPT_PAR";
            let r = s.next()?;
            nonempty(&r, "ADDRCPT_PAR")?;
            Ok(Response::AddRcptPar(r, s.optional()?))
        }
        b'-' => {
            s.what = "DELRCPT";
            let r = s.next()?;
            nonempty(&r, "DELRCPT")?;
            Ok(Response::DelRcpt(r))
        }
        b'e' => {
            s.what = "CHGFROM";
            let f = s.next()?;
            Ok(Response::ChgFrom(f, s.optional()?))
        }
        b'b' => Ok(Response::ReplBody(data.to_vec())),
        b'O' => {
            s.what = "OPTNEG";
            let version = s.u32()?;
            let actions = s.u32()?;
            let protocol = s.u32()?;
            let mut symlists = Vec::new();
            while !s.data.is_empty() {
                let stage = s.u32()?;
                let list = s.next()?;
                let stage = Stage::from_wire(stage).ok_or(DecodeError::Malformed("OPTNEG"))?;
                symlists.push((stage, list.split_whitespace().map(String::from).collect()));
            }
            s.end()?;
            Ok(Response::OptNeg(Negotiated {
                version,
                actions,
                protocol,
                symlists,
            }))
        }
        other => Err(DecodeError::Unknown(other)),
    }
}

fn nonempty(s: &str, what: &'static str) -> Result<(), DecodeError> {
    if s.trim().is_empty() {
        Err(DecodeError::Malformed(what))
    } else {
        Ok(())
    }
}

/// A header name must be RFC 5322 §2.2 field-name characters.
fn header_name(name: String, what: &'static str) -> Result<String, DecodeError> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(DecodeError::Malformed(what));
    }
    Ok(name)
}

/// SMFIR_REPLYCODE text: `4xx` or `5xx`, then a space or `-` (libmilter
/// smfi_setmlreply joins lines with CRLF and `xyz-`).
fn check_reply_code(text: &str) -> Result<(), DecodeError> {
    let b = text.as_bytes();
    let ok = b.len() >= 3
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && (b.len() == 3 || b[3] == b' ' || b[3] == b'-');
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Malformed("REPLYCODE"))
    }
}

/// A decoded REPLYCODE as an SMTP reply: the code and the lines of text
/// (each keeps its enhanced status code, if the milter gave one).
pub fn split_reply_code(text: &str) -> (u16, Vec<String>) {
    let code: u16 = text[..3].parse().unwrap_or(451);
    let lines = text
        .split("\r\n")
        .map(|line| {
            // Every line starts with the code and ' ' or '-'.
            line.strip_prefix(&text[..3])
                .map(|r| r.strip_prefix([' ', '-']).unwrap_or(r))
                .unwrap_or(line)
                .to_string()
        })
        .collect();
    (code, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut v = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(cmd);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn encodes_optneg_like_postfix() {
        let b = Command::OptNeg {
            version: 6,
            actions: ACTIONS,
            protocol: PROTOCOL_OFFER,
        }
        .to_bytes();
        assert_eq!(&b[..5], &[0, 0, 0, 13, b'O']);
        assert_eq!(&b[5..9], &[0, 0, 0, 6]);
        assert_eq!(&b[9..13], &[0, 0, 1, 0xff]);
    }

    #[test]
    fn encodes_connect_macro_and_envelope() {
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let b = Command::Connect {
            hostname: "unknown",
            family: Family::Inet(ip, 25),
        }
        .to_bytes();
        assert_eq!(b, frame(b'C', b"unknown\x004\x00\x19192.0.2.7\x00"));
        assert_eq!(
            Command::Connect {
                hostname: "h",
                family: Family::Unknown
            }
            .to_bytes(),
            frame(b'C', b"h\x00U")
        );
        let pairs = vec![("j".to_string(), "mx.example".to_string())];
        assert_eq!(
            Command::Macro {
                stage: b'C',
                pairs: &pairs
            }
            .to_bytes(),
            frame(b'D', b"Cj\x00mx.example\x00")
        );
        let args = vec!["<a@b>".to_string(), "SIZE=10".to_string()];
        assert_eq!(
            Command::Mail(&args).to_bytes(),
            frame(b'M', b"<a@b>\x00SIZE=10\x00")
        );
        assert_eq!(Command::Helo("x").to_bytes(), frame(b'H', b"x\x00"));
        assert_eq!(
            Command::Header {
                name: "Subject",
                value: "hi"
            }
            .to_bytes(),
            frame(b'L', b"Subject\x00hi\x00")
        );
        assert_eq!(Command::Body(b"abc").to_bytes(), frame(b'B', b"abc"));
        for (c, byte) in [
            (Command::Data, b'T'),
            (Command::Eoh, b'N'),
            (Command::BodyEob, b'E'),
            (Command::Abort, b'A'),
            (Command::Quit, b'Q'),
            (Command::QuitNc, b'K'),
        ] {
            assert_eq!(c.to_bytes(), frame(byte, b""));
        }
    }

    #[test]
    fn decodes_every_reply() {
        let cases: Vec<(Vec<u8>, Response)> = vec![
            (frame(b'c', b""), Response::Continue),
            (frame(b'a', b""), Response::Accept),
            (frame(b'r', b""), Response::Reject),
            (frame(b't', b""), Response::Tempfail),
            (frame(b'd', b""), Response::Discard),
            (frame(b'p', b""), Response::Progress),
            (frame(b's', b""), Response::Skip),
            (
                frame(b'q', b"virus\x00"),
                Response::Quarantine("virus".into()),
            ),
            (
                frame(b'y', b"554 5.7.1 Gtube pattern\x00"),
                Response::ReplyCode("554 5.7.1 Gtube pattern".into()),
            ),
            (
                frame(b'h', b"X-Spam\x00yes\x00"),
                Response::AddHeader {
                    name: "X-Spam".into(),
                    value: "yes".into(),
                },
            ),
            (
                frame(b'i', b"\x00\x00\x00\x01X-A\x00v\x00"),
                Response::InsHeader {
                    index: 1,
                    name: "X-A".into(),
                    value: "v".into(),
                },
            ),
            (
                frame(b'm', b"\x00\x00\x00\x02Subject\x00\x00"),
                Response::ChgHeader {
                    index: 2,
                    name: "Subject".into(),
                    value: "".into(),
                },
            ),
            (frame(b'+', b"<x@y>\x00"), Response::AddRcpt("<x@y>".into())),
            (
                frame(b'2', b"<x@y>\x00NOTIFY=NEVER\x00"),
                Response::AddRcptPar("<x@y>".into(), Some("NOTIFY=NEVER".into())),
            ),
            (frame(b'-', b"<x@y>\x00"), Response::DelRcpt("<x@y>".into())),
            (
                frame(b'e', b"<n@e>\x00"),
                Response::ChgFrom("<n@e>".into(), None),
            ),
            (
                frame(b'b', b"new\r\n"),
                Response::ReplBody(b"new\r\n".to_vec()),
            ),
        ];
        for (bytes, want) in cases {
            let (used, got) = decode(&bytes).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(got, want);
        }
    }

    #[test]
    fn decodes_optneg_with_symlist() {
        let mut d = Vec::new();
        for n in [6u32, 0x1ff, SMFIP_NOHELO | SMFIP_NR_HDR] {
            d.extend_from_slice(&n.to_be_bytes());
        }
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(b"{tls_version} j\x00");
        let (_, r) = decode(&frame(b'O', &d)).unwrap().unwrap();
        assert_eq!(
            r,
            Response::OptNeg(Negotiated {
                version: 6,
                actions: 0x1ff,
                protocol: SMFIP_NOHELO | SMFIP_NR_HDR,
                symlists: vec![(Stage::Helo, vec!["{tls_version}".into(), "j".into()])],
            })
        );
    }

    #[test]
    fn waits_for_whole_frames_and_splits_them() {
        let mut b = frame(b'c', b"");
        b.extend(frame(b'h', b"A\x00b\x00"));
        assert_eq!(decode(&b[..3]).unwrap(), None);
        assert_eq!(decode(&b[..4]).unwrap(), None);
        let (n, r) = decode(&b).unwrap().unwrap();
        assert_eq!((n, r), (5, Response::Continue));
        assert!(matches!(
            decode(&b[n..]).unwrap().unwrap().1,
            Response::AddHeader { .. }
        ));
        assert_eq!(decode(&b[n..b.len() - 1]).unwrap(), None);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(decode(&[0, 0, 0, 0]), Err(DecodeError::Empty));
        assert_eq!(
            decode(&[0x7f, 0, 0, 0, b'c']),
            Err(DecodeError::TooLong(0x7f00_0000))
        );
        assert_eq!(decode(&frame(b'Z', b"")), Err(DecodeError::Unknown(b'Z')));
        // Missing NULs, bad header names, short integers, bad reply codes.
        for bad in [
            frame(b'h', b"X-A\x00v"),
            frame(b'h', b"X A\x00v\x00"),
            frame(b'h', b"\x00v\x00"),
            frame(b'i', b"\x00\x01X\x00v\x00"),
            frame(b'y', b"250 ok\x00"),
            frame(b'y', b"55\x00"),
            frame(b'y', b"554x\x00"),
            frame(b'+', b"\x00"),
            frame(b'O', b"\x00\x00\x00\x06"),
            frame(
                b'O',
                &[0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, b'j', 0],
            ),
        ] {
            assert!(decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn splits_reply_codes() {
        assert_eq!(
            split_reply_code("554 5.7.1 Gtube pattern"),
            (554, vec!["5.7.1 Gtube pattern".into()])
        );
        assert_eq!(
            split_reply_code("450 try later"),
            (450, vec!["try later".into()])
        );
        assert_eq!(
            split_reply_code("550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third"),
            (
                550,
                vec![
                    "5.7.1 first".into(),
                    "5.7.1 second".into(),
                    "5.7.1 third".into()
                ]
            )
        );
    }
}
