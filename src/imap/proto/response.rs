//! Small pieces of server responses (RFC 3501 §4 data formats, §9 grammar).

use crate::store::maildir::Flags;

/// A string as IMAP `quoted`, or a literal when it can't be quoted (CR,
/// LF, NUL or 8-bit bytes; RFC 3501 §4.3).
pub fn quote(s: &str) -> String {
    if s.bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return format!("{{{}}}\r\n{s}", s.len());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An `astring`: an atom when it is one, else [`quote`]d.
pub fn astring(s: &str) -> String {
    let atom = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    if atom {
        s.to_string()
    } else {
        quote(s)
    }
}

/// `(\Seen \Flagged $Label)`, with `\Recent` when asked for.
pub fn flag_list(flags: Flags, keywords: &[String], recent: bool) -> String {
    let mut parts: Vec<&str> = flags.imap_names().collect();
    if recent {
        parts.push("\\Recent");
    }
    parts.extend(keywords.iter().map(String::as_str));
    format!("({})", parts.join(" "))
}

/// A tagged response line.
pub fn tagged(tag: &str, status: &str, text: &str) -> String {
    format!("{tag} {status} {text}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(quote("Grüße"), "{7}\r\nGrüße");
        assert_eq!(astring("INBOX"), "INBOX");
        assert_eq!(astring("My Folder"), "\"My Folder\"");
        assert_eq!(astring(""), "\"\"");
    }

    #[test]
    fn flags() {
        let f = Flags::SEEN | Flags::FLAGGED;
        assert_eq!(
            flag_list(f, &["$Label1".into()], true),
            "(\\Flagged \\Seen \\Recent $Label1)"
        );
        assert_eq!(flag_list(Flags::empty(), &[], false), "()");
    }
}
