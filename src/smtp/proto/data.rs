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
}

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
            if crlf && self.after_crlf && line == b".\r\n" {
                return (pos, DataEnd::Done);
            }
            let content = if crlf {
                &line[..line.len() - 2]
            } else {
                &line[..line.len() - 1]
            };
            // Dot-unstuffing (§4.5.2): a leading "." was doubled by the client.
            let content = content.strip_prefix(b".").unwrap_or(content);
            self.size += content.len() as u64 + 2;
            if limit > 0 && self.size > limit {
                self.too_big = true;
                self.message = Vec::new();
            }
            if !self.too_big {
                self.message.extend_from_slice(content);
                self.message.extend_from_slice(b"\r\n");
            }
            self.after_crlf = crlf;
        }
        (pos, DataEnd::More)
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
    fn size_limit() {
        let mut r = DataReader::new();
        let (used, end) = r.read(b"0123456789\r\n0123456789\r\n.\r\n", 15);
        assert_eq!((used, end), (27, DataEnd::Done));
        assert!(r.too_big());
        assert!(r.into_message().is_empty());
    }
}
