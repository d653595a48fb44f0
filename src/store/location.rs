//! Where a logged-in user's mail is (Dovecot's `mail_location` and the
//! userdb's `mail` override), and running store work with the user's file
//! system identity, so that what IMAP and POP3 sessions create in a Maildir
//! is owned by the mail user, as under Dovecot (which runs a process per
//! user with that uid).

use std::path::PathBuf;
use std::sync::OnceLock;

use super::deliver::{ensure_maildir, Owner};
use crate::auth::UserInfo;
use crate::config::expand::{expand_user_template, UserVars};

/// The Maildir directory (INBOX) of `user` for `mail_location`
/// (`maildir:PATH[:OPTIONS]`; `~` is the home directory, `%u %n %d %h`
/// expand as in Dovecot). The userdb's `mail` field wins over the global
/// setting.
pub fn user_maildir(mail_location: &str, login: &str, info: &UserInfo) -> Result<PathBuf, String> {
    let location = info.mail.as_deref().unwrap_or(mail_location);
    let Some(rest) = location.strip_prefix("maildir:") else {
        return Err(format!(
            "mail location '{location}' is not supported: use maildir:PATH"
        ));
    };
    // Dovecot options follow the path after ':' (e.g. `:INDEX=...`).
    let path = rest.split(':').next().unwrap_or_default();
    let home = info.home.as_ref().map(|h| h.to_string_lossy().into_owned());
    let vars = UserVars {
        user: login,
        home: home.as_deref(),
    };
    let mut path = expand_user_template(path, &vars)?;
    if let Some(after) = path.strip_prefix('~') {
        let home = home
            .as_deref()
            .ok_or_else(|| format!("'{location}' uses ~ but user {login} has no home"))?;
        path = format!("{home}{after}");
    }
    if !path.starts_with('/') {
        return Err(format!(
            "mail location of user {login} is not an absolute path: '{path}'"
        ));
    }
    Ok(PathBuf::from(path))
}

/// The logged-in user's INBOX Maildir, created (owned by the mail user when
/// we run as root) if missing, as Dovecot does at the first login. What
/// IMAP and POP3 logins both call; blocking.
pub fn open_user_maildir(
    mail_location: &str,
    login: &str,
    info: &UserInfo,
) -> Result<PathBuf, String> {
    let dir = user_maildir(mail_location, login, info)?;
    let owner = running_as_root().then_some(Owner {
        uid: info.uid,
        gid: info.gid,
    });
    ensure_maildir(&dir, owner.as_ref()).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Runs `f` with the thread's file system uid and gid set to `uid`/`gid`
/// (Linux `setfsuid(2)`, which is per thread), when we run as root and the
/// user is not root; otherwise just runs `f`. Call it on a blocking thread
/// only: the ids in force before are restored before returning, even if
/// `f` panics (so calls may nest: a mailbox closed inside a session's
/// `as_user` leaves the session still the user's).
pub fn as_user<T>(uid: u32, gid: u32, f: impl FnOnce() -> T) -> T {
    if !running_as_root() || uid == 0 {
        return f();
    }
    struct Restore {
        uid: u32,
        gid: u32,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: setfsuid/setfsgid only change this thread's
            // credentials; the uid first, back to what may change the gid.
            unsafe {
                libc::setfsuid(self.uid);
                libc::setfsgid(self.gid);
            }
        }
    }
    // SAFETY: as above; the group first, while we may still change it.
    // Each call returns the id in force before it.
    let _restore = unsafe {
        let gid_before = libc::setfsgid(gid) as u32;
        let uid_before = libc::setfsuid(uid) as u32;
        Restore {
            uid: uid_before,
            gid: gid_before,
        }
    };
    f()
}

/// Whether the server runs as root (asked once: it never changes identity).
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    // SAFETY: geteuid cannot fail.
    *ROOT.get_or_init(|| unsafe { libc::geteuid() } == 0)
}

/// Whether root may open a file in the directory of mail user `uid` for
/// them without taking their identity, after checking the file's owner
/// itself (`Mailbox::open_message_for`): only for a user who is not root,
/// and only where the kernel keeps users from hard-linking files they could
/// not read and write themselves (`fs.protected_hardlinks = 1`, the default
/// of current distributions), so that no link planted in a Maildir makes
/// root open what the user could not.
pub fn root_may_open_for(uid: u32) -> bool {
    static PROTECTED: OnceLock<bool> = OnceLock::new();
    running_as_root()
        && uid != 0
        && *PROTECTED.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/fs/protected_hardlinks")
                .is_ok_and(|v| v.trim() == "1")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(home: Option<&str>, mail: Option<&str>) -> UserInfo {
        UserInfo {
            name: "u".into(),
            uid: 1000,
            gid: 1000,
            home: home.map(PathBuf::from),
            mail: mail.map(str::to_string),
            quota_rule: None,
        }
    }

    #[test]
    fn howto_layouts() {
        assert_eq!(
            user_maildir(
                "maildir:/var/mail/vhosts/%d/%n",
                "john@example.com",
                &info(None, None)
            )
            .unwrap(),
            PathBuf::from("/var/mail/vhosts/example.com/john")
        );
        assert_eq!(
            user_maildir("maildir:~/Maildir", "john", &info(Some("/home/john"), None)).unwrap(),
            PathBuf::from("/home/john/Maildir")
        );
        assert_eq!(
            user_maildir(
                "maildir:%h/Maildir:INDEX=/var/idx/%u",
                "a@b",
                &info(Some("/srv/b/a"), None)
            )
            .unwrap(),
            PathBuf::from("/srv/b/a/Maildir")
        );
    }

    #[test]
    fn userdb_mail_overrides_and_errors_are_clear() {
        assert_eq!(
            user_maildir(
                "maildir:~/Maildir",
                "a@b",
                &info(None, Some("maildir:/m/%n"))
            )
            .unwrap(),
            PathBuf::from("/m/a")
        );
        let e = user_maildir("maildir:~/Maildir", "john", &info(None, None)).unwrap_err();
        assert!(e.contains("no home"), "{e}");
        let e = user_maildir("mbox:~/mail", "john", &info(Some("/h"), None)).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = user_maildir("maildir:Maildir", "john", &info(Some("/h"), None)).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }

    /// Identities nest: what an inner `as_user` ran leaves the outer one's
    /// identity in force (a mailbox closed inside a session's call), and
    /// the outermost returns the thread to the server's.
    #[test]
    fn as_user_calls_nest_and_restore_the_identity_before_them() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !running_as_root() {
            eprintln!("not root: as_user changes nothing");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let make = |name: &str| {
            let p = tmp.path().join(name);
            std::fs::write(&p, name).unwrap();
            let m = std::fs::metadata(&p).unwrap();
            (m.uid(), m.gid())
        };
        let (outer, inner) = as_user(54323, 54324, || {
            let inner = as_user(54325, 54326, || make("inner"));
            (make("outer"), inner)
        });
        assert_eq!(inner, (54325, 54326));
        assert_eq!(outer, (54323, 54324), "the outer identity again");
        assert_eq!(make("after"), (0, 0), "the server's own again");
    }
}
