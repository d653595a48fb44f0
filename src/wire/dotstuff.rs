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
    /// Bytes of the current line so far, not counting CR.
    line_len: usize,
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
            line_len: 0,
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

    /// Appends the wire form of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 2);
        for &b in input {
            if self.done {
                return;
            }
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            self.at_line_start = false;
            match b {
                b'\n' => {
                    if !self.prev_cr {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    self.prev_cr = false;
                    self.end_line();
                }
                b'\r' => {
                    // A CR not followed by LF is passed through as is.
                    out.push(b'\r');
                    self.prev_cr = true;
                }
                _ => {
                    out.push(b);
                    self.prev_cr = false;
                    self.line_len += 1;
                }
            }
        }
    }

    fn end_line(&mut self) {
        self.at_line_start = true;
        if self.in_header {
            if self.line_len == 0 {
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
        self.line_len = 0;
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
