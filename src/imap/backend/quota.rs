//! QUOTA (RFC 9208): GETQUOTAROOT and GETQUOTA over the user's Maildir++
//! quota (one root for all of the user's mailboxes, as Dovecot's
//! `quota = maildir:NAME`); SETQUOTA is refused, the limits come from the
//! configuration and the userdb.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::Backend;
use crate::imap::proto::response::{astring, quote, tagged};
use crate::store::maildir::quota::Usage;

/// RFC 9208 §5.1: STORAGE is in units of 1,024 octets; Dovecot rounds
/// both usage and limit up.
fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

/// `* QUOTA root (STORAGE u l MESSAGE u l)`, only the resources with a
/// limit (as Dovecot); `None` when nothing is limited.
fn quota_line(root: &str, u: &Usage) -> Option<String> {
    let mut res = Vec::new();
    if u.limits.bytes != 0 {
        res.push(format!("STORAGE {} {}", kib(u.bytes), kib(u.limits.bytes)));
    }
    if u.limits.count != 0 {
        res.push(format!("MESSAGE {} {}", u.count, u.limits.count));
    }
    if res.is_empty() {
        return None;
    }
    Some(format!("* QUOTA {} ({})\r\n", quote(root), res.join(" ")))
}

impl Backend {
    /// GETQUOTAROOT (RFC 9208 §4.3.3): every mailbox is under the one root.
    pub(super) fn get_quota_root(
        &mut self,
        tag: &str,
        mailbox: &MailboxName,
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let Some(q) = self.root.quota().cloned() else {
            return not_enabled(tag, "GETQUOTAROOT");
        };
        let name = self.name_of(mailbox, utf8);
        let exists = name.eq_ignore_ascii_case("INBOX")
            || self.root.folder_path(&name).is_ok_and(|p| p.is_dir());
        if !exists {
            return tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist.");
        }
        let usage = match q.usage() {
            Ok(u) => u,
            Err(e) => return quota_error(tag, &e),
        };
        let shown = Self::display_name(&name, utf8);
        out.extend_from_slice(
            format!("* QUOTAROOT {} {}\r\n", astring(&shown), quote(&q.name)).as_bytes(),
        );
        if let Some(line) = quota_line(&q.name, &usage) {
            out.extend_from_slice(line.as_bytes());
        }
        tagged(tag, "OK", "Getquotaroot completed.")
    }

    /// GETQUOTA (RFC 9208 §4.3.2).
    pub(super) fn get_quota(&mut self, tag: &str, root: &AString, out: &mut Vec<u8>) -> String {
        let Some(q) = self.root.quota().cloned() else {
            return not_enabled(tag, "GETQUOTA");
        };
        let asked = String::from_utf8_lossy(root.as_ref());
        if asked != q.name {
            return tagged(tag, "NO", "Quota root does not exist.");
        }
        match q.usage() {
            Ok(u) => {
                let line = quota_line(&q.name, &u)
                    .unwrap_or_else(|| format!("* QUOTA {} ()\r\n", quote(&q.name)));
                out.extend_from_slice(line.as_bytes());
                tagged(tag, "OK", "Getquota completed.")
            }
            Err(e) => quota_error(tag, &e),
        }
    }

    /// SETQUOTA (RFC 9208 §4.3.1): the limits are the configuration's.
    pub(super) fn set_quota(&mut self, tag: &str) -> String {
        if self.root.quota().is_none() {
            return not_enabled(tag, "SETQUOTA");
        }
        tagged(
            tag,
            "NO",
            "[NOPERM] Quota limits come from the server configuration (quota_rule).",
        )
    }
}

fn not_enabled(tag: &str, name: &str) -> String {
    tagged(
        tag,
        "BAD",
        &format!("Error in IMAP command {name}: Not supported."),
    )
}

fn quota_error(tag: &str, e: &std::io::Error) -> String {
    tracing::error!(error = %e, "reading maildirsize");
    tagged(
        tag,
        "NO",
        "[SERVERBUG] Internal error occurred. Refer to server log for more information.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::quota::Limits;

    #[test]
    fn quota_lines() {
        let u = Usage {
            bytes: 18,
            count: 1,
            limits: Limits {
                bytes: 1500,
                count: 0,
            },
        };
        // Dovecot: 18 bytes of 1,500 are "1 2".
        assert_eq!(
            quota_line("User quota", &u).unwrap(),
            "* QUOTA \"User quota\" (STORAGE 1 2)\r\n"
        );
        let both = Usage {
            limits: Limits {
                bytes: 2048,
                count: 5,
            },
            ..u
        };
        assert_eq!(
            quota_line("q", &both).unwrap(),
            "* QUOTA \"q\" (STORAGE 1 2 MESSAGE 1 5)\r\n"
        );
        assert_eq!(quota_line("q", &Usage::default()), None);
    }
}
