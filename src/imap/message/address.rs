//! Addresses (RFC 5322 §3.4 with the obsolete forms), as Dovecot's
//! `message-address` parses them, and the ENVELOPE built from them
//! (RFC 3501 §7.4.2, RFC 9051 §7.5.2).

use imap_codec::imap_types::core::NString;
use imap_codec::imap_types::envelope::{Address, Envelope};

use super::mime::Node;
use super::quote::{for_humans, nstring, nstring_nolf};
use super::rfc822::Tok;

#[derive(Debug, Default, Clone)]
struct Addr {
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    domain: Option<Vec<u8>>,
}

struct AddrParser<'a> {
    tok: Tok<'a>,
    cur: Addr,
    out: Vec<Addr>,
}

/// Parses an address list; empty when there is none. Groups become a start
/// entry (mailbox = group name, no domain) and an all-empty end entry
/// (RFC 3501 §7.4.2); a missing mailbox or domain is filled in as
/// `MISSING_MAILBOX` / `MISSING_DOMAIN`.
fn parse_addresses(value: &[u8]) -> Vec<Addr> {
    let mut p = AddrParser {
        tok: Tok::new(value, true),
        cur: Addr::default(),
        out: Vec::new(),
    };
    if p.tok.skip_lwsp() > 0 {
        p.address_list();
    }
    p.out
}

impl AddrParser<'_> {
    fn add(&mut self) {
        self.out.push(std::mem::take(&mut self.cur));
    }

    fn add_fixed(&mut self) {
        self.cur
            .mailbox
            .get_or_insert_with(|| b"MISSING_MAILBOX".to_vec());
        self.cur
            .domain
            .get_or_insert_with(|| b"MISSING_DOMAIN".to_vec());
        self.add();
    }

    fn local_part(&mut self) -> i32 {
        let mut s = Vec::new();
        let ret = if self.tok.cur() == b'"' {
            self.tok.quoted_string(&mut s)
        } else {
            self.tok.dot_atom(&mut s)
        };
        if ret < 0 {
            return -1;
        }
        self.cur.mailbox = Some(s);
        ret
    }

    fn domain(&mut self) -> i32 {
        let mut s = Vec::new();
        let ret = self.tok.domain(&mut s);
        if ret < 0 {
            return -1;
        }
        self.cur.domain = Some(s);
        ret
    }

    /// obs-domain-list: "@a,@b" before the ':' of a source route.
    fn domain_list(&mut self) -> i32 {
        let mut s = Vec::new();
        loop {
            if self.tok.at_end() {
                return 0;
            }
            if self.tok.cur() != b'@' {
                break;
            }
            if !s.is_empty() {
                s.push(b',');
            }
            s.push(b'@');
            let ret = self.tok.domain(&mut s);
            if ret <= 0 {
                return ret;
            }
            while self.tok.skip_lwsp() > 0 && self.tok.cur() == b',' {
                self.tok.pos += 1;
            }
        }
        self.cur.route = Some(s);
        1
    }

    /// `"<" [route ":"] local-part ["@" domain] ">"` at '<'.
    fn angle_addr(&mut self) -> i32 {
        self.tok.pos += 1;
        let ret = self.tok.skip_lwsp();
        if ret <= 0 {
            return ret;
        }
        if self.tok.cur() == b'@' {
            if self.domain_list() <= 0 || self.tok.cur() != b':' {
                self.cur.route = Some(b"INVALID_ROUTE".to_vec());
                return -1;
            }
            self.tok.pos += 1;
            let ret = self.tok.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
        }
        let ret = self.local_part();
        if ret <= 0 {
            return ret;
        }
        if self.tok.cur() == b'@' {
            let ret = self.domain();
            if ret <= 0 {
                return ret;
            }
        }
        if self.tok.cur() != b'>' {
            return -1;
        }
        self.tok.pos += 1;
        self.tok.skip_lwsp()
    }

    fn name_addr(&mut self) -> i32 {
        let mut name = Vec::new();
        if self.tok.phrase(&mut name) <= 0 || self.tok.cur() != b'<' {
            return -1;
        }
        self.cur.name = (!name.is_empty()).then_some(name);
        if self.angle_addr() < 0 {
            self.cur.domain = Some(b"SYNTAX_ERROR".to_vec());
        }
        self.tok.more()
    }

    /// `local-part "@" domain`, with a trailing comment as the name.
    fn addr_spec(&mut self) -> i32 {
        self.tok.comment = Some(Vec::new());
        let mut ret = self.local_part();
        if ret != 0 && self.tok.cur() == b'@' {
            let ret2 = self.domain();
            if ret2 <= 0 {
                ret = ret2;
            }
        }
        if let Some(comment) = self.tok.comment.as_ref().filter(|c| !c.is_empty()) {
            self.cur.name = Some(comment.clone());
        }
        ret
    }

    fn mailbox(&mut self) -> i32 {
        let start = self.tok.pos;
        let mut ret = self.name_addr();
        if ret < 0 {
            self.tok.pos = start;
            ret = self.addr_spec();
        }
        self.add_fixed();
        ret
    }

    fn group(&mut self) -> i32 {
        let mut name = Vec::new();
        if self.tok.phrase(&mut name) <= 0 || self.tok.cur() != b':' {
            return -1;
        }
        self.tok.pos += 1;
        let mut ret = self.tok.skip_lwsp();
        self.cur.mailbox = Some(name);
        self.add();
        if ret > 0 && self.tok.cur() != b';' {
            loop {
                if self.mailbox() <= 0 {
                    ret = -1;
                    break;
                }
                if self.tok.cur() != b',' {
                    break;
                }
                self.tok.pos += 1;
                if self.tok.skip_lwsp() <= 0 {
                    ret = -1;
                    break;
                }
            }
        }
        if ret >= 0 {
            if self.tok.cur() != b';' {
                ret = -1;
            } else {
                self.tok.pos += 1;
                ret = self.tok.skip_lwsp();
            }
        }
        self.add();
        i32::from(ret != 0)
    }

    fn address(&mut self) -> i32 {
        let start = self.tok.pos;
        let ret = self.group();
        if ret >= 0 {
            return ret;
        }
        self.tok.pos = start;
        self.mailbox()
    }

    fn address_list(&mut self) {
        loop {
            if self.address() == 0 || self.tok.cur() != b',' {
                break;
            }
            self.tok.pos += 1;
            let ret = self.tok.skip_lwsp();
            if ret <= 0 {
                if ret < 0 {
                    self.add_fixed();
                }
                break;
            }
        }
    }
}
pub(super) fn envelope_of(data: &[u8], node: &Node) -> Envelope<'static> {
    let addrs = |name: &str| {
        node.last(data, name)
            .map(parse_addresses)
            .unwrap_or_default()
    };
    let from = addrs("From");
    let or_from = |list: Vec<Addr>| if list.is_empty() { from.clone() } else { list };
    let sender = or_from(addrs("Sender"));
    let reply_to = or_from(addrs("Reply-To"));
    Envelope {
        date: nstring_nolf(node.last(data, "Date")),
        subject: NString(node.last(data, "Subject").map(for_humans)),
        from: address_list(&from),
        sender: address_list(&sender),
        reply_to: address_list(&reply_to),
        to: address_list(&addrs("To")),
        cc: address_list(&addrs("Cc")),
        bcc: address_list(&addrs("Bcc")),
        in_reply_to: nstring_nolf(node.last(data, "In-Reply-To")),
        message_id: nstring_nolf(node.last(data, "Message-ID")),
    }
}

fn address_list(addrs: &[Addr]) -> Vec<Address<'static>> {
    addrs
        .iter()
        .map(|a| Address {
            name: NString(a.name.as_deref().map(for_humans)),
            adl: nstring(a.route.as_deref()),
            mailbox: nstring(a.mailbox.as_deref()),
            host: nstring(a.domain.as_deref()),
        })
        .collect()
}
