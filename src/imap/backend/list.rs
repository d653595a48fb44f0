//! LIST and LSUB (RFC 3501 §6.3.8 and §6.3.9, RFC 9051 §6.3.9), the
//! extended LIST (RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819
//! LIST-STATUS; its STATUS answers come from `status.rs`).

use std::collections::HashSet;

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox as MailboxName};

use super::{store_no, Backend};
use crate::imap::proto::list_ext::ListExtended;
use crate::imap::proto::response::{astring, tagged};
use crate::store::maildir::utf7::utf8_to_mutf7;

/// RFC 6154 special-use attributes from the folder's (English) name, as
/// Dovecot's default config assigns them.
fn special_use(name: &str) -> Option<&'static str> {
    match name {
        "Sent" | "Sent Messages" | "Sent Items" => Some("\\Sent"),
        "Drafts" => Some("\\Drafts"),
        "Junk" | "Spam" => Some("\\Junk"),
        "Trash" | "Deleted Messages" => Some("\\Trash"),
        "Archive" => Some("\\Archive"),
        _ => None,
    }
}

/// IMAP LIST wildcard match (RFC 3501 §6.3.8): `*` matches anything, `%`
/// anything but the hierarchy delimiter.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|i| wildcard(&pattern[1..], &name[i..])),
        Some(b'%') => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'.')
            .any(|i| wildcard(&pattern[1..], &name[i..])),
        Some(c) => name.first().is_some_and(|n| n == c) && wildcard(&pattern[1..], &name[1..]),
    }
}

/// Every proper ancestor of each name (`a` and `a.b` for `a.b.c`): the
/// names that have children. A set, so a user with 10,000 folders costs one
/// pass, not one pass per folder.
fn ancestors<'a>(names: impl Iterator<Item = &'a str>) -> HashSet<&'a str> {
    let mut out = HashSet::new();
    for n in names {
        for (i, b) in n.bytes().enumerate() {
            if b == b'.' && i > 0 {
                out.insert(&n[..i]);
            }
        }
    }
    out
}

impl Backend {
    pub(super) fn list(
        &mut self,
        tag: &str,
        reference: &MailboxName,
        pattern: &ListMailbox,
        lsub: bool,
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let cmd = if lsub { "LSUB" } else { "LIST" };
        let reference = match reference {
            MailboxName::Inbox => "INBOX".to_string(),
            MailboxName::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        if pattern.is_empty() && !lsub {
            // The hierarchy delimiter and root (RFC 3501 §6.3.8).
            out.extend_from_slice(b"* LIST (\\Noselect) \".\" \"\"\r\n");
            return tagged(tag, "OK", "List completed.");
        }
        let pattern = format!("{reference}{pattern}");
        let pattern = if utf8 {
            utf8_to_mutf7(&pattern)
        } else {
            pattern
        };
        let folders = match self.root.list_folders() {
            Ok(f) => f,
            Err(e) => return store_no(tag, &e),
        };
        let subscribed: HashSet<String> = if lsub {
            self.root
                .subscriptions()
                .unwrap_or_default()
                .into_iter()
                .collect()
        } else {
            HashSet::new()
        };
        let mut names: Vec<String> = vec!["INBOX".into()];
        names.extend(folders.iter().map(|f| f.name.clone()));
        let with_children = ancestors(names.iter().map(String::as_str));
        let has_children = |n: &str| with_children.contains(n);
        let existing: HashSet<&str> = names.iter().map(String::as_str).collect();
        // RFC 3501 §6.3.8: a parent that doesn't exist but has children
        // (only `Work.Projects` on disk) is listed as \Noselect, or a client
        // walking the hierarchy with `%` never finds the children.
        // RFC 3501 §6.3.9: likewise LSUB lists an unsubscribed parent of a
        // subscribed name as \Noselect where `%` stops at it.
        let mut parents: Vec<String> = Vec::new();
        let sources: Vec<&String> = if lsub {
            subscribed.iter().collect()
        } else {
            names.iter().collect()
        };
        for n in sources {
            let mut end = 0;
            while let Some(i) = n[end..].find('.') {
                let p = &n[..end + i];
                let known = if lsub {
                    // Only where `%` stops: the parent matches, the child doesn't.
                    subscribed.contains(p)
                        || !wildcard(pattern.as_bytes(), p.as_bytes())
                        || wildcard(pattern.as_bytes(), n.as_bytes())
                } else {
                    existing.contains(p)
                };
                if !p.is_empty() && !known && !parents.iter().any(|o| o == p) {
                    parents.push(p.to_string());
                }
                end += i + 1;
            }
        }
        let mut listed: Vec<(&String, bool)> = names
            .iter()
            .map(|n| (n, true))
            .chain(parents.iter().map(|p| (p, false)))
            .collect();
        // INBOX first, then by name, parents before their children.
        listed[1..].sort_by(|a, b| a.0.cmp(b.0));
        for (n, exists) in listed {
            let matched = if n == "INBOX" {
                wildcard(pattern.to_ascii_uppercase().as_bytes(), b"INBOX")
            } else {
                wildcard(pattern.as_bytes(), n.as_bytes())
            };
            if !matched || (lsub && exists && !subscribed.contains(n)) {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !exists {
                attrs.push("\\Noselect");
            }
            // LSUB's placeholder says only \Noselect (RFC 3501 §6.3.9).
            if exists || !lsub {
                attrs.push(if has_children(n) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if let Some(su) = special_use(n) {
                attrs.push(su);
            }
            let shown = Self::display_name(n, utf8);
            out.extend_from_slice(
                format!(
                    "* {cmd} ({}) \".\" {}\r\n",
                    attrs.join(" "),
                    astring(&shown)
                )
                .as_bytes(),
            );
            self.spill(out);
        }
        tagged(
            tag,
            "OK",
            &format!("{} completed.", if lsub { "Lsub" } else { "List" }),
        )
    }
    /// LIST with RFC 5258 selection/return options, RFC 6154 SPECIAL-USE
    /// selection and RFC 5819 STATUS return.
    pub fn list_extended(&mut self, tag: &str, l: &ListExtended, utf8: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let folders = match self.root.list_folders() {
            Ok(f) => f,
            Err(e) => {
                out.extend_from_slice(store_no(tag, &e).as_bytes());
                return out;
            }
        };
        let mut names: Vec<String> = vec!["INBOX".into()];
        names.extend(folders.iter().map(|f| f.name.clone()));
        let subscribed: Vec<String> = if l.select_subscribed || l.return_subscribed {
            self.root.subscriptions().unwrap_or_default()
        } else {
            Vec::new()
        };
        let subscribed_set: HashSet<&str> = subscribed.iter().map(String::as_str).collect();
        let inbox_subscribed = subscribed.iter().any(|s| s.eq_ignore_ascii_case("INBOX"));
        let is_subscribed =
            |n: &str| subscribed_set.contains(n) || (n == "INBOX" && inbox_subscribed);
        let patterns: Vec<String> = l
            .patterns
            .iter()
            .map(|p| {
                let full = format!("{}{p}", l.reference);
                if utf8 {
                    utf8_to_mutf7(&full)
                } else {
                    full
                }
            })
            .collect();
        let matches = |n: &str| {
            patterns.iter().any(|p| {
                if n == "INBOX" {
                    wildcard(p.to_ascii_uppercase().as_bytes(), b"INBOX")
                } else {
                    wildcard(p.as_bytes(), n.as_bytes())
                }
            })
        };
        let with_children = ancestors(names.iter().map(String::as_str));
        let has_children = |n: &str| with_children.contains(n);
        let existing: HashSet<&str> = names.iter().map(String::as_str).collect();
        let unmatched_subscribed = ancestors(
            subscribed
                .iter()
                .map(String::as_str)
                .filter(|s| !matches(s)),
        );
        // RFC 5258 §3.5: with RECURSIVEMATCH, a name is also listed when a
        // descendant meets the selection criteria without matching the
        // pattern, and says so with CHILDINFO.
        let childinfo =
            |n: &str| l.recursive_match && l.select_subscribed && unmatched_subscribed.contains(n);
        // Every name that can be listed: the mailboxes, the subscribed
        // names (SUBSCRIBED lists them even when gone), and the parents
        // of both that aren't mailboxes (RFC 3501 §6.3.8 hierarchy nodes;
        // RFC 5258 §3.5 for subscribed descendants).
        let mut candidates = names.clone();
        let mut seen: HashSet<String> = names.iter().cloned().collect();
        let mut add = |c: &mut Vec<String>, n: &str| {
            let other_inbox = n.eq_ignore_ascii_case("INBOX") && n != "INBOX";
            if !other_inbox && seen.insert(n.to_string()) {
                c.push(n.to_string());
            }
        };
        let sources: Vec<String> = if l.select_subscribed {
            subscribed.clone()
        } else {
            names.clone()
        };
        for n in &sources {
            add(&mut candidates, n);
            let mut end = 0;
            while let Some(i) = n[end..].find('.') {
                add(&mut candidates, &n[..end + i]);
                end += i + 1;
            }
        }
        candidates[1..].sort();
        for n in &candidates {
            if !matches(n) {
                continue;
            }
            let exists = existing.contains(n.as_str());
            let use_attr = special_use(n);
            let subscribed_here = is_subscribed(n);
            let child_info = childinfo(n);
            if l.select_subscribed && !subscribed_here && !child_info {
                continue;
            }
            if !l.select_subscribed && !exists && !has_children(n) {
                continue;
            }
            if l.select_special_use && use_attr.is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if exists {
                attrs.push(if has_children(n) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            } else if has_children(n) {
                // A hierarchy node: its children exist, it doesn't.
                attrs.push("\\Noselect");
                attrs.push("\\HasChildren");
            } else {
                attrs.push("\\NonExistent");
            }
            if let Some(su) = use_attr {
                attrs.push(su);
            }
            if (l.select_subscribed || l.return_subscribed) && subscribed_here {
                attrs.push("\\Subscribed");
            }
            let extra = if child_info {
                " (\"CHILDINFO\" (\"SUBSCRIBED\"))"
            } else {
                ""
            };
            let shown = astring(&Self::display_name(n, utf8));
            out.extend_from_slice(
                format!("* LIST ({}) \".\" {shown}{extra}\r\n", attrs.join(" ")).as_bytes(),
            );
            self.spill(&mut out);
            if let (Some(items), true) = (&l.return_status, exists) {
                if let Some(parts) =
                    self.status_of(n, &items.iter().map(String::as_str).collect::<Vec<_>>())
                {
                    out.extend_from_slice(format!("* STATUS {shown} ({parts})\r\n").as_bytes());
                }
            }
        }
        out.extend_from_slice(tagged(tag, "OK", "List completed.").as_bytes());
        out
    }
}
