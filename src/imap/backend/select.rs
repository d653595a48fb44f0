//! SELECT and EXAMINE (RFC 3501 §6.3.1 and §6.3.2, RFC 9051 §6.3.2 and
//! §6.3.3), CLOSE (RFC 3501 §6.4.2, RFC 9051 §6.4.1) and UNSELECT
//! (RFC 3691, RFC 9051 §6.4.2), and the `\Recent` flag (RFC 3501 §2.3.2)
//! as Dovecot keeps it: claimed by the first read-write session to see a
//! message.

use std::collections::HashMap;
use std::ops::Range;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::condstore::vanished_set;
use super::registry::lock;
use super::sequence::merged_intervals;
use super::{store_no, Backend, Selected};
use crate::imap::proto::response::{astring, flag_list, tagged};
use crate::imap::proto::State;
use crate::store::maildir::{Flags, Mailbox};

/// `\Recent` as Dovecot keeps it: the first UID no read-write session has
/// been told about yet, per mailbox, in our own disposable
/// `pigeonpost.index.recent` (`<uidvalidity> <first recent uid>`). A session
/// that selects the mailbox read-write claims everything from there on.
const RECENT_FILE: &str = "pigeonpost.index.recent";

pub(super) fn first_recent_uid(mb: &Mailbox) -> u32 {
    std::fs::read_to_string(mb.dir().join(RECENT_FILE))
        .ok()
        .map(|t| parse_recent(&t, mb.uidvalidity()))
        .unwrap_or(1)
}

fn parse_recent(text: &str, uidvalidity: u32) -> u32 {
    let mut w = text.split_whitespace();
    let validity: Option<u32> = w.next().and_then(|v| v.parse().ok());
    let first: Option<u32> = w.next().and_then(|v| v.parse().ok());
    match (validity, first) {
        (Some(v), Some(f)) if v == uidvalidity => f,
        _ => 1,
    }
}

/// Claims `\Recent` for the calling session: the UIDs no read-write
/// session has been told about yet, up to the mailbox's next UID. The
/// read and the update happen under an exclusive `flock` of the file, so
/// two sessions, in this process or another, never claim the same UID
/// (RFC 3501 §2.3.2: one session only sees a message as recent).
pub(super) fn claim_recent(mb: &Mailbox) -> Range<u32> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::io::AsRawFd;
    let next = mb.next_uid();
    let path = mb.dir().join(RECENT_FILE);
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    else {
        // Disposable state: if it can't be kept, nothing is recent
        // rather than everything, twice.
        return next..next;
    };
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return next..next;
    }
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let first = parse_recent(&text, mb.uidvalidity());
    if first < next {
        let line = format!("{} {next}\n", mb.uidvalidity());
        let ok = f.set_len(0).is_ok() && f.rewind().is_ok() && f.write_all(line.as_bytes()).is_ok();
        if !ok {
            return next..next;
        }
    }
    first.min(next)..next
}

impl Backend {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn select(
        &mut self,
        tag: &str,
        mailbox: &MailboxName,
        params: &[SelectParameter],
        read_only: bool,
        utf8: bool,
        out: &mut Vec<u8>,
        state: &mut State,
    ) -> String {
        let qresync = params.iter().find_map(|p| match p {
            SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                ..
            } => Some((uid_validity.get(), mod_sequence_value.get(), known_uids)),
            SelectParameter::CondStore => None,
        });
        // RFC 7162 §3.2.5: QRESYNC without ENABLE QRESYNC is BAD, and
        // known-uids can't use `*`.
        if qresync.is_some() && !self.qresync {
            return tagged(tag, "BAD", "QRESYNC isn't enabled.");
        }
        // RFC 7162 §3.2.11: the previous mailbox is closed; [CLOSED] marks
        // where its responses end (sent whenever a mailbox was selected, as
        // CONDSTORE/QRESYNC are advertised).
        if self.selected.is_some() {
            out.extend_from_slice(b"* OK [CLOSED] Previous mailbox closed.\r\n");
        }
        // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
        self.selected = None;
        *state = State::Authenticated;
        let name = self.name_of(mailbox, utf8);
        let shared = match self.mailboxes.open_shared(&self.root, &name) {
            Ok(m) => m,
            Err(e) => return store_no(tag, &e),
        };
        let mut sh = lock(&shared);
        let view = sh.uid_list();
        let mb = &sh.mailbox;
        let changes = self.mailboxes.notifier().subscribe(mb.dir());
        // Read-write: this session claims what is recent; read-only
        // (EXAMINE) only looks, claiming nothing (RFC 3501 §6.3.2).
        let recent = if read_only {
            first_recent_uid(mb)..mb.next_uid()
        } else {
            claim_recent(mb)
        };
        let recent_count = view.iter().filter(|u| recent.contains(u)).count();
        let unseen = mb
            .messages()
            .iter()
            .position(|m| !m.flags.contains(Flags::SEEN))
            .map(|i| i + 1);
        let keywords: Vec<String> = {
            let mut k: Vec<String> = mb
                .messages()
                .iter()
                .flat_map(|m| m.keywords().iter().cloned())
                .collect();
            k.sort();
            k.dedup();
            k
        };
        let s = format!(
            "{}* {} EXISTS\r\n",
            super::flags_announcement(&keywords),
            view.len(),
        );
        out.extend_from_slice(s.as_bytes());
        if self.rev2 {
            // RFC 9051 §6.3.2: the mailbox's LIST response instead of RECENT.
            let shown = Self::display_name(&name, true);
            out.extend_from_slice(format!("* LIST () \".\" {}\r\n", astring(&shown)).as_bytes());
        } else {
            out.extend_from_slice(format!("* {recent_count} RECENT\r\n").as_bytes());
        }
        if let Some(u) = unseen {
            out.extend_from_slice(format!("* OK [UNSEEN {u}] First unseen.\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
                mb.uidvalidity(),
                mb.next_uid()
            )
            .as_bytes(),
        );
        if self.condstore {
            // RFC 7162 §3.1.2.1 (sent once CONDSTORE is enabled, as Dovecot).
            out.extend_from_slice(
                format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", sh.modseq()).as_bytes(),
            );
        }
        // RFC 7162 §3.2.5: with a matching UIDVALIDITY, the flags of every
        // message changed since the client's modseq, then the UIDs expunged
        // since (restricted to its known UIDs, if it sent them).
        if let Some((_, since, known)) = qresync.filter(|q| q.0 == mb.uidvalidity()) {
            for (i, m) in mb.messages().iter().enumerate() {
                if m.modseq > since {
                    let recent = !self.rev2 && recent.contains(&m.uid);
                    out.extend_from_slice(
                        format!(
                            "* {} FETCH (UID {} FLAGS {} MODSEQ ({}))\r\n",
                            i + 1,
                            m.uid,
                            flag_list(m.flags, m.keywords(), recent),
                            m.modseq
                        )
                        .as_bytes(),
                    );
                }
            }
            let top = mb.next_uid().saturating_sub(1);
            let within = match known {
                Some(set) => merged_intervals(set, top),
                None => vec![(1, top)],
            };
            let set = vanished_set(mb, since, &within);
            if !set.is_empty() {
                out.extend_from_slice(format!("* VANISHED (EARLIER) {set}\r\n").as_bytes());
            }
        }
        let seen_modseq = sh.modseq();
        let seen_expunges = sh.expunges;
        drop(sh);
        self.selected = Some(Selected {
            name,
            shared,
            read_only,
            view,
            pending_expunge: Vec::new(),
            recent: vec![recent],
            seen_modseq,
            seen_expunges,
            own: HashMap::new(),
            saved: Vec::new(),
            changes,
            announced: keywords,
            live: Vec::new(),
            live_stamp: None,
        });
        *state = State::Selected { read_only };
        if read_only {
            tagged(tag, "OK", "[READ-ONLY] Examine completed.")
        } else {
            tagged(tag, "OK", "[READ-WRITE] Select completed.")
        }
    }

    /// CLOSE (RFC 3501 §6.4.2, RFC 9051 §6.4.1): silently expunges the
    /// `\Deleted` messages unless the mailbox is read-only, then deselects.
    pub(super) fn close(&mut self, tag: &str, state: &mut State) -> String {
        if let Some(sel) = &mut self.selected {
            if !sel.read_only {
                let mut sh = lock(&sel.shared);
                let deleted: Vec<u32> = sh
                    .mailbox
                    .messages()
                    .iter()
                    .filter(|m| m.flags.contains(Flags::DELETED))
                    .map(|m| m.uid)
                    .collect();
                if let Err(e) = sh.expunge(&deleted) {
                    tracing::warn!(error = %e, "CLOSE: expunge failed");
                }
            }
        }
        self.selected = None;
        *state = State::Authenticated;
        tagged(tag, "OK", "Close completed.")
    }

    /// UNSELECT (RFC 3691, RFC 9051 §6.4.2): deselects without expunging.
    pub(super) fn unselect(&mut self, tag: &str, state: &mut State) -> String {
        self.selected = None;
        *state = State::Authenticated;
        tagged(tag, "OK", "Unselect completed.")
    }
}
