//! STATUS (RFC 3501 §6.3.10, RFC 9051 §6.3.11, RFC 8438 SIZE, RFC 9208
//! DELETED-STORAGE, RFC 7162 §3.1.7 HIGHESTMODSEQ) and LIST-STATUS's items.
//!
//! A folder some session of this process has open is answered from that
//! shared copy. Any other folder is opened, and its counts kept in the
//! registry with the folder's [`StatusStamp`]: while the stamp is unchanged
//! (three stats) the next STATUS is answered from them, cheap enough for the
//! connection's own thread ([`Backend::status_from_cache`]).

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;
use imap_codec::imap_types::status::StatusDataItemName;

use super::select::first_recent_uid;
use super::{condstore, store_no, Backend};
use crate::imap::proto::response::{astring, tagged};
use crate::imap::proto::RunOptions;
use crate::store::maildir::{Error as StoreError, Flags, Mailbox, StatusStamp};

/// What the STATUS items other than RECENT report, from one pass over a
/// mailbox's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    messages: u64,
    unseen: u64,
    deleted: u64,
    /// RFC822.SIZE summed (RFC 8438 SIZE).
    vsize: u64,
    /// Sizes on disk of the `\Deleted` messages, what the quota counts.
    deleted_bytes: u64,
    uidnext: u32,
    uidvalidity: u32,
    highest_modseq: u64,
}

impl Counts {
    fn of(mb: &Mailbox) -> Counts {
        let mut c = Counts {
            messages: mb.messages().len() as u64,
            unseen: 0,
            deleted: 0,
            vsize: 0,
            deleted_bytes: 0,
            uidnext: mb.next_uid(),
            uidvalidity: mb.uidvalidity(),
            highest_modseq: mb.highest_modseq(),
        };
        for m in mb.messages() {
            c.unseen += u64::from(!m.flags.contains(Flags::SEEN));
            c.vsize += m.vsize();
            if m.flags.contains(Flags::DELETED) {
                c.deleted += 1;
                c.deleted_bytes += m.size();
            }
        }
        c
    }
}

/// The item names of a STATUS command, as written in the response.
fn item_names(items: &[StatusDataItemName]) -> Vec<&'static str> {
    items
        .iter()
        .map(|i| match i {
            StatusDataItemName::Messages => "MESSAGES",
            StatusDataItemName::Recent => "RECENT",
            StatusDataItemName::UidNext => "UIDNEXT",
            StatusDataItemName::UidValidity => "UIDVALIDITY",
            StatusDataItemName::Unseen => "UNSEEN",
            StatusDataItemName::Deleted => "DELETED",
            StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
            StatusDataItemName::Size => "SIZE",
            StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
        })
        .collect()
}

/// The STATUS items we answer, as written in responses.
const ITEMS: [&str; 9] = [
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "DELETED",
    "DELETED-STORAGE",
    "SIZE",
    "HIGHESTMODSEQ",
];

/// `MESSAGES 3 UNSEEN 1 ...` for the items named (any case; unknown ones
/// are skipped). RECENT needs the mailbox itself: `None` if it is asked
/// for and `mb` is not given.
fn status_items(c: &Counts, mb: Option<&Mailbox>, items: &[&str]) -> Option<String> {
    use std::fmt::Write;
    let mut out = String::with_capacity(16 * items.len());
    for i in items {
        let Some(item) = ITEMS.iter().find(|k| k.eq_ignore_ascii_case(i)) else {
            continue;
        };
        let v = match *item {
            "MESSAGES" => c.messages,
            "RECENT" => {
                let mb = mb?;
                let first = first_recent_uid(mb);
                mb.messages().iter().filter(|m| m.uid >= first).count() as u64
            }
            "UIDNEXT" => u64::from(c.uidnext),
            "UIDVALIDITY" => u64::from(c.uidvalidity),
            "UNSEEN" => c.unseen,
            "DELETED" => c.deleted,
            "SIZE" => c.vsize,
            // RFC 9208 §4.2.2: what EXPUNGE would free, in KiB, never more
            // than the truth (rounded down).
            "DELETED-STORAGE" => c.deleted_bytes / 1024,
            _ => c.highest_modseq,
        };
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{item} {v}");
    }
    Some(out)
}

impl Backend {
    /// STATUS items of mailbox `name`: from the shared copy if a session
    /// has it open (so HIGHESTMODSEQ is the one those sessions see), else
    /// from the kept counts if the folder is unchanged, else by opening it.
    fn status_items_of(&self, name: &str, items: &[&str]) -> Result<String, StoreError> {
        if let Some(shared) = self.mailboxes.open_already(&self.root, name) {
            let mut sh = super::registry::lock(&shared);
            sh.sync()?;
            let mb = &sh.mailbox;
            return Ok(status_items(&Counts::of(mb), Some(mb), items).unwrap_or_default());
        }
        if let Some(parts) = self.kept_status_items(name, items) {
            return Ok(parts);
        }
        let mb = self.open(name)?;
        let counts = Counts::of(&mb);
        if let Some(stamp) = mb.status_stamp() {
            self.mailboxes.keep_status(mb.dir(), stamp, counts);
        }
        Ok(status_items(&counts, Some(&mb), items).unwrap_or_default())
    }

    /// The items from the counts kept for folder `name`, if no session has
    /// it open and it is unchanged since they were taken.
    fn kept_status_items(&self, name: &str, items: &[&str]) -> Option<String> {
        let path = self.root.mailbox_path(name).ok()?;
        let (stamp, counts) = self.mailboxes.kept_status(&path)?;
        if self.mailboxes.get(&path).is_some() || StatusStamp::current(&path)? != stamp {
            return None;
        }
        #[cfg(test)]
        KEPT_STATUS_ANSWERS.with(|n| n.set(n.get() + 1));
        status_items(&counts, None, items)
    }

    /// LIST-STATUS: the items, or None when the mailbox can't be opened.
    pub(super) fn status_of(&self, name: &str, items: &[&str]) -> Option<String> {
        self.status_items_of(name, items).ok()
    }

    pub(super) fn status(
        &mut self,
        tag: &str,
        mailbox: &MailboxName,
        items: &[StatusDataItemName],
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let name = self.name_of(mailbox, utf8);
        match self.status_items_of(&name, &item_names(items)) {
            Ok(parts) => {
                status_line(out, &name, &parts, utf8);
                tagged(tag, "OK", "Status completed.")
            }
            Err(e) => store_no(tag, &e),
        }
    }

    /// A STATUS command answered from kept counts (see the module
    /// comment), or `None` to run it the usual way: three stats, so the
    /// connection's thread can ask before handing the command to the
    /// blocking pool. Safe with the server's own credentials: it reads and
    /// writes nothing, and answers only with counts an open as the user
    /// made, when the stats match what that open saw (a folder swapped for
    /// a link to somewhere else has other inode numbers).
    pub fn status_from_cache(
        &mut self,
        tag: &str,
        cmd: &CommandBody,
        opts: &RunOptions,
    ) -> Option<Vec<u8>> {
        let CommandBody::Status {
            mailbox,
            item_names: items,
        } = cmd
        else {
            return None;
        };
        let name = self.name_of(mailbox, opts.utf8);
        let parts = self.kept_status_items(&name, &item_names(items))?;
        // What `run` does first, for this command.
        self.rev2 = opts.rev2;
        self.qresync |= opts.qresync;
        self.condstore |= opts.condstore || opts.qresync || condstore::enables_condstore(cmd);
        let mut out = Vec::new();
        status_line(&mut out, &name, &parts, opts.utf8);
        out.extend_from_slice(tagged(tag, "OK", "Status completed.").as_bytes());
        Some(out)
    }
}

fn status_line(out: &mut Vec<u8>, name: &str, items: &str, utf8: bool) {
    out.extend_from_slice(b"* STATUS ");
    out.extend_from_slice(astring(&Backend::display_name(name, utf8)).as_bytes());
    out.extend_from_slice(b" (");
    out.extend_from_slice(items.as_bytes());
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
thread_local! {
    /// STATUS answers served from kept counts, for tests that show a
    /// folder was not opened.
    pub(super) static KEPT_STATUS_ANSWERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
