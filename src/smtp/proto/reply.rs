//! SMTP replies: a code, an RFC 3463 enhanced status code, and text.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// RFC 3463 enhanced status code ("2.0.0"); empty for the greeting and
    /// the EHLO response, which RFC 2034 §3 exempts.
    pub enhanced: &'static str,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: "",
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Wire form: "250-first\r\n250 last\r\n", each line with the enhanced code.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            let line = if self.enhanced.is_empty() {
                format!("{}{sep}{text}\r\n", self.code)
            } else {
                format!("{}{sep}{} {text}\r\n", self.code, self.enhanced)
            };
            out.extend_from_slice(line.as_bytes());
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.lines.join(" / ");
        if self.enhanced.is_empty() {
            write!(f, "{} {text}", self.code)
        } else {
            write!(f, "{} {} {text}", self.code, self.enhanced)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        assert_eq!(
            Reply::new(250, "2.1.0", "Ok").to_bytes(),
            b"250 2.1.0 Ok\r\n"
        );
        assert_eq!(
            Reply::multi(250, vec!["a".into(), "b".into()]).to_bytes(),
            b"250-a\r\n250 b\r\n"
        );
    }
}
