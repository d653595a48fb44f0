//! Mail storage: durable delivery into Maildir (`deliver.rs`) and mbox
//! (`mbox.rs`), the Dovecot-compatible Maildir that IMAP and POP3 read
//! (`maildir.rs`; every write through `maildir/write.rs`), where a user's
//! mail is (`location.rs`), and "this mailbox changed" (`notify.rs`).

pub mod deliver;
pub mod index_file;
pub mod location;
pub mod maildir;
pub mod mbox;
pub mod notify;

/// Test helpers shared by the store's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::process::Command;

    /// A small tmpfs mounted on a temp dir, unmounted on drop: a real full disk.
    pub struct Tmpfs {
        pub dir: tempfile::TempDir,
    }

    impl Tmpfs {
        /// `None` means "skip": mounting is impossible here and CI is not set.
        pub fn mount(size: &str) -> Option<Tmpfs> {
            let dir = tempfile::tempdir().unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Some(Tmpfs { dir });
            }
            if std::env::var_os("CI").is_some() {
                panic!("cannot mount tmpfs for the disk-full test (CI is set)");
            }
            eprintln!("skipping disk-full test: cannot mount tmpfs (not root?)");
            None
        }

        pub fn path(&self) -> &Path {
            self.dir.path()
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }
}
