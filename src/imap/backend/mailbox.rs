//! Mailbox management: CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE
//! (RFC 3501 §6.3.3 to §6.3.7, RFC 9051 §6.3.4 to §6.3.8).

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::{store_no, Backend};
use crate::imap::proto::response::tagged;
use crate::store::maildir::Error as StoreError;

impl Backend {
    /// CREATE (RFC 3501 §6.3.3, RFC 9051 §6.3.4).
    pub(super) fn create(&self, tag: &str, mailbox: &MailboxName, utf8: bool) -> String {
        let name = self.name_of(mailbox, utf8);
        if name == "INBOX" {
            tagged(tag, "NO", "[ALREADYEXISTS] Mailbox already exists.")
        } else {
            match self.root.create_folder(&name) {
                Ok(()) => tagged(tag, "OK", "Create completed."),
                Err(e) => store_no(tag, &e),
            }
        }
    }

    /// DELETE (RFC 3501 §6.3.4, RFC 9051 §6.3.5).
    pub(super) fn delete(&self, tag: &str, mailbox: &MailboxName, utf8: bool) -> String {
        let name = self.name_of(mailbox, utf8);
        if name == "INBOX" {
            tagged(tag, "NO", "INBOX can't be deleted.")
        } else if self.selected.as_ref().is_some_and(|s| s.name == name) {
            tagged(tag, "NO", "Can't delete the selected mailbox.")
        } else {
            match self.root.delete_folder(&name) {
                Ok(()) => {
                    self.mailboxes.forget(&self.root, &name);
                    // RFC 5464 §3.4: a deleted mailbox's metadata goes too.
                    if let Err(e) = self.root.metadata_mailbox_gone(&name, None) {
                        tracing::warn!(error = %e, mailbox = %name, "metadata of a deleted mailbox left behind");
                    }
                    tagged(tag, "OK", "Delete completed.")
                }
                Err(e) => store_no(tag, &e),
            }
        }
    }

    /// RENAME (RFC 3501 §6.3.5, RFC 9051 §6.3.6).
    pub(super) fn rename(
        &mut self,
        tag: &str,
        from: &MailboxName,
        to: &MailboxName,
        utf8: bool,
    ) -> String {
        let (old, new) = (self.name_of(from, utf8), self.name_of(to, utf8));
        if new == "INBOX" {
            return tagged(tag, "NO", "[ALREADYEXISTS] Mailbox already exists.");
        }
        if old == "INBOX" {
            // RFC 3501 §6.3.5: move INBOX's messages to the new name, INBOX stays.
            let result = (|| {
                self.root.create_folder(&new)?;
                let inbox = self.root.inbox()?;
                let dest = self.root.open(&new)?;
                let uids: Vec<u32> = inbox.messages().iter().map(|m| m.uid).collect();
                inbox.copy_to(&uids, &dest)?;
                let mut inbox = inbox;
                inbox.expunge(&uids)?;
                Ok::<(), StoreError>(())
            })();
            return match result {
                Ok(()) => tagged(tag, "OK", "Rename completed."),
                Err(e) => store_no(tag, &e),
            };
        }
        match self.root.rename_folder(&old, &new) {
            Ok(()) => {
                self.mailboxes.forget(&self.root, &old);
                if let Err(e) = self.root.metadata_mailbox_gone(&old, Some(&new)) {
                    tracing::warn!(error = %e, mailbox = %old, "metadata of a renamed mailbox not moved");
                }
                tagged(tag, "OK", "Rename completed.")
            }
            Err(e) => store_no(tag, &e),
        }
    }

    /// SUBSCRIBE (`on`) and UNSUBSCRIBE (RFC 3501 §6.3.6 and §6.3.7,
    /// RFC 9051 §6.3.7 and §6.3.8).
    pub(super) fn subscribe(
        &self,
        tag: &str,
        mailbox: &MailboxName,
        on: bool,
        utf8: bool,
    ) -> String {
        let name = self.name_of(mailbox, utf8);
        match self.root.set_subscribed(&name, on) {
            Ok(_) if on => tagged(tag, "OK", "Subscribe completed."),
            Ok(_) => tagged(tag, "OK", "Unsubscribe completed."),
            Err(e) => store_no(tag, &e),
        }
    }
}
