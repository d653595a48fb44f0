//! A cursor over a header value with Dovecot's `rfc822-parser` functions
//! (RFC 5322 §3.2 lexical tokens: atoms, quoted strings, comments, domains;
//! RFC 2045 §5.1 Content-Type and RFC 2231 parameters), used for the
//! Content-* fields and for addresses.

use super::mime::{Param, Params};

/// A cursor over a header value, with Dovecot's `rfc822-parser` functions.
/// They return -1 on a syntax error, 0 at the end of the data, 1 when more
/// data follows; whitespace and comments after a token are skipped.
pub(super) struct Tok<'a> {
    data: &'a [u8],
    pub(super) pos: usize,
    /// The text of the last comment skipped, when wanted.
    pub(super) comment: Option<Vec<u8>>,
}

/// RFC 5322 atext (8-bit bytes included).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 2045 token characters: atext without the tspecials "/", "=", "?".
fn is_token(b: u8) -> bool {
    is_atext(b) && !b"/=?".contains(&b)
}

impl<'a> Tok<'a> {
    pub(super) fn new(data: &'a [u8], comments: bool) -> Self {
        Tok {
            data,
            pos: 0,
            comment: comments.then(Vec::new),
        }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The current byte; 0 at the end (like the C string terminator).
    pub(super) fn cur(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    pub(super) fn more(&self) -> i32 {
        i32::from(!self.at_end())
    }

    fn take(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.data.get(from..to).unwrap_or_default());
    }

    /// Skips a (nested) comment at '(' (RFC 5322 §3.2.2).
    fn skip_comment(&mut self) -> i32 {
        if let Some(comment) = &mut self.comment {
            comment.clear();
        }
        let mut text = Vec::new();
        self.pos += 1;
        let mut start = self.pos;
        let mut level = 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        self.take(start, self.pos, &mut text);
                        if let Some(comment) = &mut self.comment {
                            *comment = text;
                        }
                        self.pos += 1;
                        return self.more();
                    }
                }
                b'\\' => {
                    self.take(start, self.pos, &mut text);
                    start = self.pos + 1;
                    self.pos += 1;
                    if self.at_end() {
                        return -1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// Skips whitespace (CR and LF included) and comments.
    pub(super) fn skip_lwsp(&mut self) -> i32 {
        while !self.at_end() {
            match self.cur() {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() < 0 {
                        return -1;
                    }
                }
                _ => break,
            }
        }
        self.more()
    }

    /// Consumes bytes while `keep`, appends them, then skips whitespace.
    fn run(&mut self, out: &mut Vec<u8>, keep: impl Fn(u8) -> bool) -> i32 {
        let start = self.pos;
        while !self.at_end() && keep(self.cur()) {
            self.pos += 1;
        }
        self.take(start, self.pos, out);
        if self.at_end() {
            0
        } else {
            self.skip_lwsp()
        }
    }

    pub(super) fn atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if !is_atext(self.cur()) {
            return -1;
        }
        self.run(out, is_atext)
    }

    pub(super) fn mime_token(&mut self, out: &mut Vec<u8>) -> i32 {
        self.run(out, |b| is_token(b) || b == b'.')
    }

    fn atom_or_dot(&mut self, out: &mut Vec<u8>) -> i32 {
        self.run(out, |b| is_atext(b) || b == b'.')
    }

    /// dot-atom, allowing blanks around the dots (RFC 822).
    pub(super) fn dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if !is_atext(self.cur()) {
            return -1;
        }
        let mut start = self.pos;
        self.pos += 1;
        loop {
            while !self.at_end() && is_atext(self.cur()) {
                self.pos += 1;
            }
            self.take(start, self.pos, out);
            if self.at_end() {
                return 0;
            }
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            if self.cur() != b'.' {
                return 1;
            }
            self.pos += 1;
            out.push(b'.');
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            start = self.pos;
        }
    }

    /// A quoted string at '"', unescaped, with folding line ends removed.
    pub(super) fn quoted_string(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        let mut start = self.pos;
        while !self.at_end() {
            match self.cur() {
                b'"' => {
                    self.take(start, self.pos, out);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut stop = self.pos;
                    if stop > start && self.data[stop - 1] == b'\r' {
                        stop -= 1;
                    }
                    self.take(start, stop, out);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.at_end() {
                        return -1;
                    }
                    self.take(start, self.pos - 1, out);
                    start = self.pos;
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// phrase (RFC 5322 §3.2.5, with obs-phrase): words joined by one space.
    pub(super) fn phrase(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() {
            return 0;
        }
        if self.cur() == b'.' {
            return -1;
        }
        loop {
            let ret = if self.cur() == b'"' {
                self.quoted_string(out)
            } else {
                self.atom_or_dot(out)
            };
            if ret <= 0 {
                return ret;
            }
            let c = self.cur();
            if !is_atext(c) && c != b'"' && c != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    /// domain at '@': dot-atom or domain-literal (RFC 5322 §3.4.1).
    pub(super) fn domain(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.cur() != b'[' {
            return self.dot_atom(out);
        }
        let start = self.pos;
        while !self.at_end() {
            match self.cur() {
                b'\\' => {
                    self.pos += 1;
                    if self.at_end() {
                        break;
                    }
                }
                b']' => {
                    self.pos += 1;
                    self.take(start, self.pos, out);
                    return self.skip_lwsp();
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// `type "/" subtype` of Content-Type (RFC 2045 §5.1), to be followed by
    /// parameters or the end.
    pub(super) fn content_type(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.skip_lwsp() <= 0 {
            return None;
        }
        let mut ty = Vec::new();
        if self.mime_token(&mut ty) <= 0 || ty.is_empty() || self.cur() != b'/' {
            return None;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return None;
        }
        let mut subtype = Vec::new();
        if self.mime_token(&mut subtype) < 0
            || subtype.is_empty()
            || (!self.at_end() && self.cur() != b';')
        {
            return None;
        }
        Some((ty, subtype))
    }

    /// One `; attribute=value` (RFC 2045 §5.1): `Err` on bad syntax,
    /// `Ok(None)` at the end.
    fn content_param(&mut self) -> Result<Option<Param>, ()> {
        if self.at_end() {
            return Ok(None);
        }
        if self.cur() != b';' {
            return Err(());
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return Err(());
        }
        let mut key = Vec::new();
        if self.mime_token(&mut key) <= 0 || self.cur() != b'=' {
            return Err(());
        }
        self.pos += 1;
        let mut value = Vec::new();
        let mut ret = self.skip_lwsp();
        if ret <= 0 {
            // no value
        } else if self.cur() == b'"' {
            ret = self.quoted_string(&mut value);
        } else if self.cur() == b'=' {
            // Broken but common: name==?utf-8?b?...?=
            while !self.at_end() && !b"; \t\r\n".contains(&self.cur()) {
                value.push(self.cur());
                self.pos += 1;
            }
        } else {
            ret = self.mime_token(&mut value);
        }
        if ret < 0 {
            Err(())
        } else {
            Ok(Some((key, value)))
        }
    }

    /// The parameters, skipping bad ones, with RFC 2231 continuations
    /// (`name*0`, `name*1*`, ...) joined into `name` or, when any piece is
    /// extended, `name*` (still encoded), as Dovecot's rfc2231-parser does.
    pub(super) fn rfc2231_params(&mut self) -> Params {
        struct Piece {
            key: Vec<u8>,
            idx: u32,
            extended: bool,
            value: Vec<u8>,
        }
        let mut result = Params::new();
        let mut pieces: Vec<Piece> = Vec::new();
        loop {
            let (key, value) = match self.content_param() {
                Ok(Some(kv)) => kv,
                Ok(None) => break,
                Err(()) => {
                    if self.at_end() {
                        break;
                    }
                    self.pos += 1;
                    continue;
                }
            };
            if let Some(star) = key.iter().position(|&b| b == b'*') {
                let mut i = star + 1;
                let mut idx = 0u32;
                while i < key.len() && key[i].is_ascii_digit() {
                    idx = idx
                        .saturating_mul(10)
                        .saturating_add(u32::from(key[i] - b'0'));
                    i += 1;
                }
                let extended = key.get(i) == Some(&b'*');
                if extended {
                    i += 1;
                }
                if i == key.len() {
                    pieces.push(Piece {
                        key: key[..star].to_vec(),
                        idx,
                        extended,
                        value,
                    });
                    continue;
                }
            }
            result.push((key, value));
        }
        pieces.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
        let mut i = 0;
        while i < pieces.len() {
            let group_len = pieces[i..]
                .iter()
                .take_while(|p| p.key.eq_ignore_ascii_case(&pieces[i].key))
                .count();
            let group = &pieces[i..i + group_len];
            i += group_len;
            let in_order = group
                .iter()
                .enumerate()
                .all(|(n, p)| usize::try_from(p.idx).ok() == Some(n));
            let extended = group.iter().any(|p| p.extended);
            if !in_order {
                for p in group {
                    let mut key = p.key.clone();
                    key.extend_from_slice(
                        format!("*{}{}", p.idx, if p.extended { "*" } else { "" }).as_bytes(),
                    );
                    result.push((key, p.value.clone()));
                }
                continue;
            }
            let mut value = Vec::new();
            if extended && !group[0].extended {
                value.extend_from_slice(b"''");
            }
            for p in group {
                if extended && !p.extended {
                    for &b in &p.value {
                        if b == b'%' {
                            value.extend_from_slice(b"%25");
                        } else {
                            value.push(b);
                        }
                    }
                } else {
                    value.extend_from_slice(&p.value);
                }
            }
            let mut key = group[0].key.clone();
            if extended {
                key.push(b'*');
            }
            result.push((key, value));
        }
        result
    }
}
