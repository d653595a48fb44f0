//! Applying a milter's message modifications (SMFIR_ADDHEADER,
//! INSHEADER, CHGHEADER, REPLBODY) to the message as received: headers
//! are kept as the client sent them, edited in place, and the message is
//! rebuilt only when something changed.

/// One header field as it appears in the message: `Name: value\r\n`,
/// folded lines included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub raw: Vec<u8>,
    /// Length of the name (before the colon).
    name_len: usize,
}

impl Field {
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.raw[..self.name_len])
            .trim_end()
            .to_string()
    }

    /// The value as a milter gets it (Postfix milter8.c): the folding
    /// kept as bare LF, the line end removed, and without the one leading
    /// space unless the milter asked for SMFIP_HDR_LEADSPC.
    pub fn value(&self, leading_space: bool) -> String {
        let v = &self.raw[self.name_len + 1..];
        let v = v
            .strip_suffix(b"\r\n")
            .or(v.strip_suffix(b"\n"))
            .unwrap_or(v);
        let text = String::from_utf8_lossy(v).replace("\r\n", "\n");
        match text.strip_prefix(' ') {
            Some(rest) if !leading_space => rest.to_string(),
            _ => text,
        }
    }

    /// A new field from a milter: `value` with LF line breaks becomes
    /// folded CRLF lines (each continuation starts with white space).
    pub fn new(name: &str, value: &str, leading_space: bool) -> Field {
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.push(b':');
        if !leading_space {
            raw.push(b' ');
        }
        let value = value.replace("\r\n", "\n");
        for (i, line) in value.split('\n').enumerate() {
            if i > 0 {
                raw.extend_from_slice(b"\r\n");
                if !line.starts_with([' ', '\t']) {
                    raw.push(b'\t');
                }
            }
            raw.extend_from_slice(line.as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        Field {
            raw,
            name_len: name.len(),
        }
    }
}

/// Splits a message into its header fields and the offset of its body
/// (after the blank line). A line that is neither a field nor a
/// continuation ends the header section there (RFC 5322 §2.1).
pub fn split(msg: &[u8]) -> (Vec<Field>, usize) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return (fields, end);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            match fields.last_mut() {
                Some(f) => f.raw.extend_from_slice(line),
                None => return (fields, pos),
            }
        } else {
            match line.iter().position(|b| *b == b':') {
                Some(colon)
                    if colon > 0
                        && line[..colon]
                            .iter()
                            .all(|b| b.is_ascii_graphic() || *b == b' ') =>
                {
                    fields.push(Field {
                        raw: line.to_vec(),
                        name_len: colon,
                    })
                }
                _ => return (fields, pos),
            }
        }
        pos = end;
    }
    (fields, msg.len())
}

/// The header section being edited, and maybe a new body.
#[derive(Debug)]
pub struct Editor {
    pub fields: Vec<Field>,
    body_start: usize,
    pub new_body: Option<Vec<u8>>,
    pub changed: bool,
}

impl Editor {
    pub fn new(msg: &[u8]) -> Editor {
        let (fields, body_start) = split(msg);
        Editor {
            fields,
            body_start,
            new_body: None,
            changed: false,
        }
    }

    /// SMFIR_ADDHEADER: appended after the last field.
    pub fn add(&mut self, name: &str, value: &str, leading_space: bool) {
        self.fields.push(Field::new(name, value, leading_space));
        self.changed = true;
    }

    /// SMFIR_INSHEADER: before the `index`th field (0 = the top); past
    /// the end it is appended.
    pub fn insert(&mut self, index: u32, name: &str, value: &str, leading_space: bool) {
        let at = (index as usize).min(self.fields.len());
        self.fields
            .insert(at, Field::new(name, value, leading_space));
        self.changed = true;
    }

    /// SMFIR_CHGHEADER: the `index`th (1-based) field called `name`
    /// changes; an empty value deletes it; a missing one is added
    /// (libmilter smfi_chgheader).
    pub fn change(&mut self, index: u32, name: &str, value: &str, leading_space: bool) {
        let index = index.max(1) as usize;
        let found = self
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name().eq_ignore_ascii_case(name))
            .nth(index - 1)
            .map(|(i, _)| i);
        match (found, value.is_empty()) {
            (Some(i), true) => {
                self.fields.remove(i);
            }
            (Some(i), false) => self.fields[i] = Field::new(name, value, leading_space),
            (None, true) => return,
            (None, false) => self.fields.push(Field::new(name, value, leading_space)),
        }
        self.changed = true;
    }

    /// One SMFIR_REPLBODY chunk; the chunks together are the new body.
    /// Bare LFs become CRLF.
    pub fn body_chunk(&mut self, chunk: &[u8]) {
        let body = self.new_body.get_or_insert_with(Vec::new);
        for &b in chunk {
            if b == b'\n' && body.last() != Some(&b'\r') {
                body.push(b'\r');
            }
            body.push(b);
        }
        self.changed = true;
    }

    /// The edited message (`msg` is the one the editor was made from).
    pub fn finish(self, msg: &[u8]) -> Vec<u8> {
        let body = self.new_body.as_deref().unwrap_or(&msg[self.body_start..]);
        let head: usize = self.fields.iter().map(|f| f.raw.len()).sum();
        let mut out = Vec::with_capacity(head + 2 + body.len());
        for f in &self.fields {
            out.extend_from_slice(&f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }

    /// Where the body starts in the original message.
    pub fn body_start(&self) -> usize {
        self.body_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@b\r\nSubject: one\r\n two\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody\r\n";

    #[test]
    fn splits_and_reads_fields() {
        let (f, body) = split(MSG);
        assert_eq!(f.len(), 4);
        assert_eq!(&MSG[body..], b"body\r\n");
        assert_eq!(f[1].name(), "Subject");
        assert_eq!(f[1].value(false), "one\n two");
        assert_eq!(f[1].value(true), " one\n two");
        // No blank line: the body starts at the first non-field line.
        let (f, body) = split(b"A: 1\r\nnot a header\r\n");
        assert_eq!((f.len(), body), (1, 6));
    }

    #[test]
    fn edits_headers_and_body() {
        let mut e = Editor::new(MSG);
        e.add("X-Spam", "yes", false);
        e.insert(0, "X-First", "1", false);
        e.change(2, "X-A", "", false);
        e.change(1, "Subject", "new\nfolded", false);
        e.change(1, "X-Missing", "added", false);
        assert_eq!(
            e.finish(MSG),
            b"X-First: 1\r\nFrom: a@b\r\nSubject: new\r\n\tfolded\r\nX-A: 1\r\nX-Spam: yes\r\nX-Missing: added\r\n\r\nbody\r\n"
        );
        let mut e = Editor::new(MSG);
        e.body_chunk(b"new\nbo");
        e.body_chunk(b"dy\r\n");
        assert!(e.finish(MSG).ends_with(b"x-a: 2\r\n\r\nnew\r\nbody\r\n"));
        let e = Editor::new(MSG);
        assert!(!e.changed);
        assert_eq!(e.finish(MSG), MSG);
    }
}
