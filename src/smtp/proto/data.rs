//! Reading the DATA section (RFC 5321 §4.1.1.4, §4.5.2): dot-unstuffing and
//! the end-of-data mark. Only `<CRLF>.<CRLF>` ends the data: a bare LF or
//! bare CR never does (the "SMTP smuggling" defence). Lines ending in a bare
//! LF are kept as lines and normalised to CRLF, like Postfix's
//! `smtpd_forbid_bare_newline = normalize`.

/// Whether the end-of-data mark has been seen.
#[derive(Debug, PartialEq, Eq)]
pub enum DataEnd {
    More,
    Done,
}

#[derive(Debug)]
pub struct DataReader {
    message: Vec<u8>,
    /// The previous line ended with CRLF (true at the start: DATA's own CRLF).
    after_crlf: bool,
    /// Bytes of the message counted, even once they are no longer kept.
    size: u64,
    too_big: bool,
    /// The start of the current line was taken already (a line longer
    /// than [`MAX_HELD_LINE`]): what follows continues it.
    mid_line: bool,
}

/// Longest partial line held while waiting for its end: beyond that the
/// bytes go into the message (or are counted and dropped once it is too
/// big), so a client sending a line without end grows no buffer.
pub const MAX_HELD_LINE: usize = 64 * 1024;

impl Default for DataReader {
    fn default() -> Self {
        Self::new()
    }
}

impl DataReader {
    pub fn new() -> Self {
        DataReader {
            message: Vec::with_capacity(8192),
            after_crlf: true,
            size: 0,
            too_big: false,
            mid_line: false,
        }
    }

    /// Consumes complete lines from `input`; returns how many bytes were used
    /// and whether the end mark was reached. `limit` 0 = unlimited.
    pub fn read(&mut self, input: &[u8], limit: u64) -> (usize, DataEnd) {
        let mut pos = 0;
        while let Some(off) = input[pos..].iter().position(|&b| b == b'\n') {
            let line = &input[pos..pos + off + 1];
            pos += off + 1;
            let crlf = line.len() >= 2 && line[line.len() - 2] == b'\r';
            let continued = std::mem::take(&mut self.mid_line);
            if crlf && self.after_crlf && !continued && line == b".\r\n" {
                return (pos, DataEnd::Done);
            }
            let content = if crlf {
                &line[..line.len() - 2]
            } else {
                &line[..line.len() - 1]
            };
            // Dot-unstuffing (§4.5.2): a leading "." was doubled by the client.
            let content = if continued {
                content
            } else {
                content.strip_prefix(b".").unwrap_or(content)
            };
            self.take(content, limit);
            self.take(b"\r\n", limit);
            self.after_crlf = crlf;
        }
        // A line without end yet: hold at most MAX_HELD_LINE of it (a
        // trailing CR stays, as it may begin the CRLF).
        let rest = &input[pos..];
        if rest.len() > MAX_HELD_LINE {
            let keep = usize::from(rest.last() == Some(&b'\r'));
            let part = &rest[..rest.len() - keep];
            let part = if self.mid_line {
                part
            } else {
                part.strip_prefix(b".").unwrap_or(part)
            };
            self.take(part, limit);
            self.mid_line = true;
            self.after_crlf = false;
            pos = input.len() - keep;
        }
        (pos, DataEnd::More)
    }

    /// Adds message bytes, or only counts them once the message is too big.
    fn take(&mut self, bytes: &[u8], limit: u64) {
        self.size += bytes.len() as u64;
        if limit > 0 && self.size > limit {
            self.too_big = true;
            self.message = Vec::new();
        }
        if !self.too_big {
            self.message.extend_from_slice(bytes);
        }
    }

    pub fn too_big(&self) -> bool {
        self.too_big
    }

    /// The message with CRLF line endings.
    pub fn into_message(self) -> Vec<u8> {
        self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>, bool) {
        let mut r = DataReader::new();
        let mut buf = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            let (used, end) = r.read(&buf, 0);
            buf.drain(..used);
            if end == DataEnd::Done {
                return (r.into_message(), buf, true);
            }
        }
        (r.into_message(), buf, false)
    }

    #[test]
    fn end_mark_and_unstuffing() {
        let (m, rest, done) = read_all(&[b"Subject: x\r\n\r\n..hidden\r\n.\r\nQUIT\r\n"]);
        assert!(done);
        assert_eq!(m, b"Subject: x\r\n\r\n.hidden\r\n");
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn end_mark_split_across_reads() {
        let (m, _, done) = read_all(&[b"a\r", b"\n.", b"\r", b"\n"]);
        assert!(done);
        assert_eq!(m, b"a\r\n");
    }

    #[test]
    fn smuggling_sequences_do_not_end_data() {
        // <LF>.<LF>, <LF>.<CRLF>, <CRLF>.<LF>, <CR>.<CR> are all content.
        for evil in [
            &b"a\n.\nMAIL FROM:<x>\r\n"[..],
            b"a\n.\r\nMAIL FROM:<x>\r\n",
            b"a\r\n.\nMAIL FROM:<x>\r\n",
            b"a\r.\rMAIL FROM:<x>\r\n",
        ] {
            let mut input = evil.to_vec();
            input.extend_from_slice(b".\r\n");
            let (m, rest, done) = read_all(&[&input]);
            assert!(done, "{evil:?}");
            assert!(rest.is_empty(), "nothing after the real end: {evil:?}");
            assert!(
                m.windows(10).any(|w| w == b"MAIL FROM:"),
                "smuggled command stays inside the message: {evil:?}"
            );
        }
    }

    #[test]
    fn bare_lf_is_normalised() {
        let (m, _, _) = read_all(&[b"a\nb\r\n.\r\n"]);
        assert_eq!(m, b"a\r\nb\r\n");
    }

    #[test]
    fn a_line_without_end_is_not_held_whole() {
        let mut r = DataReader::new();
        let long = vec![b'x'; MAX_HELD_LINE * 3];
        let (used, end) = r.read(&long, 0);
        assert_eq!(end, DataEnd::More);
        assert_eq!(
            used,
            long.len(),
            "taken into the message, not left in the input"
        );
        // The line goes on and ends, then the end mark comes ...
        let (_, end) = r.read(b"yy\r\n.\r\n", 0);
        assert_eq!(end, DataEnd::Done);
        let m = r.into_message();
        assert_eq!(m.len(), MAX_HELD_LINE * 3 + 4);
        assert!(m.ends_with(b"xyy\r\n"));
        // ... and a too-big one is counted without being kept.
        let mut r = DataReader::new();
        r.read(&long, 1000);
        assert!(r.too_big());
        assert!(r.message.is_empty());
    }

    #[test]
    fn size_limit() {
        let mut r = DataReader::new();
        let (used, end) = r.read(b"0123456789\r\n0123456789\r\n.\r\n", 15);
        assert_eq!((used, end), (27, DataEnd::Done));
        assert!(r.too_big());
        assert!(r.into_message().is_empty());
    }
}
