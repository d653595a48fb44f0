//! Dot-stuffed, CRLF-terminated message text: the body of a POP3 RETR or
//! TOP answer (RFC 1939 §3) and of SMTP DATA (RFC 5321 §4.5.2), which use
//! the same encoding. Every line ends in CRLF
//! whatever the file on disk uses, a line starting with `.` gets another
//! `.`, and the answer ends with `.` alone on a line. For TOP only the
//! header, the blank line and the first `n` body lines go out (§7), so the
//! reader can stop early. Sans-IO: feed file chunks, get wire bytes.

/// Encodes one message for the wire, chunk by chunk.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    prev_cr: bool,
    /// The current line has a byte other than CR so far.
    line_has_text: bool,
    in_header: bool,
    /// Body lines still to send (TOP); `None` for the whole message.
    body_lines_left: Option<u64>,
    done: bool,
}

impl DotStuffer {
    /// The whole message (RETR).
    pub fn full() -> Self {
        Self::new(None)
    }

    /// The header and `lines` body lines (TOP).
    pub fn top(lines: u64) -> Self {
        Self::new(Some(lines))
    }

    fn new(body_lines_left: Option<u64>) -> Self {
        DotStuffer {
            at_line_start: true,
            prev_cr: false,
            line_has_text: false,
            in_header: true,
            body_lines_left,
            done: false,
        }
    }

    /// RETR (the whole message) rather than TOP.
    pub fn is_whole(&self) -> bool {
        self.body_lines_left.is_none()
    }

    /// Whether TOP's line budget is spent: the rest of the file is not needed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the wire form of `input` to `out`. A line at a time (memchr
    /// finds the LF): byte by byte this was a quarter of a POP3 pull's
    /// server CPU.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 2);
        let mut rest = input;
        while !rest.is_empty() && !self.done {
            // RFC 1939 §3: a line that starts with "." gets another.
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            let (text, lf) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if !text.is_empty() {
                out.extend_from_slice(text);
                self.at_line_start = false;
                // A CR not followed by LF is passed through as is; CRs are
                // not text (a "\r\n" line is the blank one).
                self.line_has_text |= text.iter().any(|&b| b != b'\r');
                self.prev_cr = text[text.len() - 1] == b'\r';
            }
            if lf {
                if !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.prev_cr = false;
                self.end_line();
                rest = &rest[text.len() + 1..];
            } else {
                rest = &[];
            }
        }
    }

    fn end_line(&mut self) {
        self.at_line_start = true;
        if self.in_header {
            if !self.line_has_text {
                // the blank line between header and body
                self.in_header = false;
                if self.body_lines_left == Some(0) {
                    self.done = true;
                }
            }
        } else if let Some(left) = &mut self.body_lines_left {
            *left -= 1;
            if *left == 0 {
                self.done = true;
            }
        }
        self.line_has_text = false;
    }

    /// Ends the answer: a CRLF if the message did not end with one, then
    /// `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut d: DotStuffer, input: &[u8], chunk: usize) -> String {
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            d.encode(c, &mut out);
            if d.is_done() {
                break;
            }
        }
        d.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// The encoder as it was, a byte at a time: the reference the line-wise
    /// one must match.
    fn reference(input: &[u8], top: Option<u64>) -> Vec<u8> {
        let (mut at_start, mut prev_cr, mut len, mut header) = (true, false, 0usize, true);
        let (mut left, mut done, mut out) = (top, false, Vec::new());
        for &b in input {
            if done {
                break;
            }
            if at_start && b == b'.' {
                out.push(b'.');
            }
            at_start = false;
            match b {
                b'\n' => {
                    if !prev_cr {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    prev_cr = false;
                    at_start = true;
                    if header {
                        if len == 0 {
                            header = false;
                            done = left == Some(0);
                        }
                    } else if let Some(l) = &mut left {
                        *l -= 1;
                        done = *l == 0;
                    }
                    len = 0;
                }
                b'\r' => {
                    out.push(b'\r');
                    prev_cr = true;
                }
                _ => {
                    out.push(b);
                    prev_cr = false;
                    len += 1;
                }
            }
        }
        if !at_start {
            if !prev_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    #[test]
    fn line_wise_encoding_matches_the_byte_wise_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1939);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let input: Vec<u8> = (0..len)
                .map(|_| [b'.', b'\r', b'\n', b'a', b'\n'][rng.gen_range(0..5)])
                .collect();
            let top = [None, Some(0), Some(1), Some(3)][rng.gen_range(0..4)];
            let chunk = rng.gen_range(1..8);
            let d = top.map_or_else(DotStuffer::full, DotStuffer::top);
            let got = run(d, &input, chunk);
            let want = String::from_utf8(reference(&input, top)).unwrap();
            assert_eq!(got, want, "{input:?} top {top:?} chunk {chunk}");
        }
    }

    #[test]
    fn crlf_and_dot_stuffing_in_any_chunking() {
        let input = b"Subject: x\n\n.hidden\r\nbody\n..two\n.";
        let want = "Subject: x\r\n\r\n..hidden\r\nbody\r\n...two\r\n..\r\n.\r\n";
        for chunk in 1..=input.len() {
            assert_eq!(run(DotStuffer::full(), input, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn empty_message_is_just_the_terminator() {
        assert_eq!(run(DotStuffer::full(), b"", 10), ".\r\n");
    }

    #[test]
    fn top_sends_header_blank_line_and_n_body_lines() {
        let input = b"A: 1\nB: 2\n\nl1\nl2\nl3\n";
        assert_eq!(
            run(DotStuffer::top(0), input, 3),
            "A: 1\r\nB: 2\r\n\r\n.\r\n"
        );
        assert_eq!(
            run(DotStuffer::top(2), input, 1),
            "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n.\r\n"
        );
        assert_eq!(
            run(DotStuffer::top(99), input, 4),
            "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n.\r\n"
        );
    }

    #[test]
    fn top_of_crlf_file_and_header_only_message() {
        assert_eq!(
            run(DotStuffer::top(1), b"A: 1\r\n\r\n.x\r\ny\r\n", 2),
            "A: 1\r\n\r\n..x\r\n.\r\n"
        );
        assert_eq!(run(DotStuffer::top(5), b"A: 1", 2), "A: 1\r\n.\r\n");
    }
}
