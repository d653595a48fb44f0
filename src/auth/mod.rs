//! Authentication: Dovecot-compatible password schemes (`scheme.rs`), SASL
//! mechanisms (`sasl.rs`), and the passdb/userdb lookups behind them.
//! Slow hashes (crypt family, Argon2) run on blocking threads with a bound
//! on how many run at once, so a login storm cannot starve the sessions.

pub mod login;
pub mod sasl;
pub mod scheme;
pub mod sessions;
pub mod throttle;

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use self::scheme::Scheme;
use crate::config::expand::{expand_user_template, UserVars};
use crate::config::{Config, ConfigError, PassdbSpec, UserdbSpec};
use crate::tables::passwd_file::PasswdFile;
use crate::tables::reload::Reloadable;
use crate::tables::TableFile;

/// The outcome of a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this (canonical) user name.
    Ok(String),
    /// Wrong user or password; the protocol says "authentication failed".
    Fail,
    /// The password database could not be read: a temporary failure.
    TempFail(String),
}

/// What the userdb says about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: Option<PathBuf>,
    /// A per-user `userdb_mail` override of `mail_location`.
    pub mail: Option<String>,
    /// A per-user `userdb_quota_rule` (Dovecot syntax) replacing `quota_rule`.
    pub quota_rule: Option<String>,
}

enum Passdb {
    File {
        table: Arc<TableFile<PasswdFile>>,
        default: Scheme,
    },
    Shadow {
        path: PathBuf,
    },
}

enum Userdb {
    Passwd,
    File(Arc<TableFile<PasswdFile>>),
    Static {
        uid: u32,
        gid: u32,
        home: Option<String>,
    },
}

pub struct Auth {
    passdb: Passdb,
    userdb: Userdb,
    slow_hashes: Arc<Semaphore>,
    reloadables: Vec<Arc<dyn Reloadable>>,
    /// Failed-login penalties and bans, shared by every protocol.
    pub throttle: Arc<throttle::Throttle>,
    /// Logged-in IMAP/POP3 sessions per user and client address.
    pub sessions: Arc<sessions::UserIpSessions>,
    /// Dovecot `auth_username_format`, applied before the passdb lookup.
    username_format: String,
    /// Dovecot `first_valid_uid` / `first_valid_gid`, for mail access.
    first_valid: (u32, u32),
}

/// A hash checked when the user does not exist, so that "no such user" and
/// "wrong password" take the same time.
const DUMMY_HASH: &str = "{SHA512-CRYPT}$6$qBTT1FeFYCajS.wu$lwE39w0RrjdiATRSt.hU/wg54Y3cvxv3oNF5rOjDIH0REsOtzgpR.bFirmE5O5Hk7WcHqRy.uBbtyBqo0/xED0";

fn cstr_field(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: getpwnam_r filled the buffer with NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The system user database (getpwnam_r).
pub fn system_user(name: &str) -> Result<Option<UserInfo>, String> {
    let cname = CString::new(name).map_err(|_| "user name contains NUL".to_string())?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter; the buffer outlives the call.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; getpwnam_r is thread-safe.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(format!(
            "getpwnam({name}): {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    if result.is_null() {
        return Ok(None);
    }
    Ok(Some(UserInfo {
        name: name.to_string(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home: Some(PathBuf::from(cstr_field(pwd.pw_dir))),
        mail: None,
        quota_rule: None,
    }))
}

/// The hash for `user` in shadow(5) text, if any. Locked accounts ("!…",
/// "*") have no usable hash.
pub fn shadow_hash(text: &str, user: &str) -> Option<String> {
    text.lines()
        .find_map(|line| {
            let mut f = line.split(':');
            (f.next()? == user).then(|| f.next().unwrap_or("").to_string())
        })
        .filter(|h| !h.is_empty() && !h.starts_with('!') && !h.starts_with('*'))
}

impl Auth {
    /// Opens the passdb and userdb the configuration names.
    pub fn open(config: &Config) -> Result<Auth, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            key: Some(key.to_string()),
            source: config.source_of(key).to_string(),
            reason,
        };
        let mut reloadables: Vec<Arc<dyn Reloadable>> = Vec::new();
        let mut open_file =
            |key: &str, path: &Path, existing: Option<&Arc<TableFile<PasswdFile>>>| {
                if let Some(t) = existing.filter(|t| t.path() == path) {
                    return Ok(t.clone());
                }
                let t = TableFile::<PasswdFile>::open(
                    format!("{key} passwd-file:{}", path.display()),
                    path,
                )
                .map_err(|e| err(key, e.to_string()))?;
                reloadables.push(t.clone());
                Ok::<_, ConfigError>(t)
            };
        let passdb = match &config.passdb {
            PassdbSpec::PasswdFile {
                path,
                default_scheme,
            } => {
                let default = Scheme::from_name(default_scheme).ok_or_else(|| {
                    err(
                        "passdb",
                        format!("unknown password scheme '{default_scheme}'"),
                    )
                })?;
                Passdb::File {
                    table: open_file("passdb", path, None)?,
                    default,
                }
            }
            PassdbSpec::Shadow => Passdb::Shadow {
                path: PathBuf::from("/etc/shadow"),
            },
        };
        let pass_table = match &passdb {
            Passdb::File { table, .. } => Some(table.clone()),
            Passdb::Shadow { .. } => None,
        };
        let userdb = match &config.userdb {
            UserdbSpec::Passwd => Userdb::Passwd,
            UserdbSpec::PasswdFile { path } => {
                Userdb::File(open_file("userdb", path, pass_table.as_ref())?)
            }
            UserdbSpec::Static { uid, gid, home } => Userdb::Static {
                uid: *uid,
                gid: *gid,
                home: home.clone(),
            },
        };
        let parallel = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Ok(Auth {
            passdb,
            userdb,
            slow_hashes: Arc::new(Semaphore::new(parallel * 2)),
            reloadables,
            throttle: throttle::Throttle::new(throttle::ThrottleConfig::from_config(config)),
            sessions: sessions::UserIpSessions::new(config.mail_max_userip_connections),
            username_format: config.auth_username_format.clone(),
            first_valid: (config.first_valid_uid, config.first_valid_gid),
        })
    }

    pub fn reloadables(&self) -> Vec<Arc<dyn Reloadable>> {
        self.reloadables.clone()
    }

    /// The name the passdb is asked for: `auth_username_format` (`%Lu`,
    /// `%n`, …) applied to what the client typed.
    pub fn lookup_name(&self, login: &str) -> Result<String, String> {
        if self.username_format == "%u" {
            return Ok(login.to_string());
        }
        expand_user_template(
            &self.username_format,
            &UserVars {
                user: login,
                home: None,
            },
        )
    }

    /// The stored hash and its default scheme for `user`, with the user's canonical name.
    fn stored(&self, user: &str) -> Result<Option<(String, String, Scheme)>, String> {
        let name = self.lookup_name(user)?;
        let user = name.as_str();
        match &self.passdb {
            Passdb::File { table, default } => {
                let t = table.get();
                Ok(t.get(user).map(|e| {
                    (
                        e.user.clone(),
                        e.password.clone().unwrap_or_default(),
                        *default,
                    )
                }))
            }
            Passdb::Shadow { path } => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(shadow_hash(&text, user).map(|h| (user.to_string(), h, Scheme::Crypt)))
            }
        }
    }

    /// Runs `check` on a blocking thread when the scheme is slow.
    async fn run_check(
        &self,
        stored: &str,
        default: Scheme,
        check: impl FnOnce() -> bool + Send + 'static,
    ) -> bool {
        let slow = scheme::scheme_of(stored, default).map_or(true, |s| s.is_slow());
        if !slow {
            return check();
        }
        let Ok(_permit) = self.slow_hashes.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(check).await.unwrap_or(false)
    }

    /// Checks a user name and password (USER/PASS, LOGIN, AUTH PLAIN/LOGIN).
    /// An empty password never logs in, whatever the stored hash (as
    /// Dovecot refuses it): an account made with an empty password would
    /// otherwise be open to anyone.
    pub async fn check_password(&self, user: &str, password: &[u8]) -> Verdict {
        if password.is_empty() {
            return Verdict::Fail;
        }
        let found = match self.stored(user) {
            Ok(f) => f,
            Err(e) => return Verdict::TempFail(e),
        };
        let (name, stored, default) =
            found.unwrap_or_else(|| (String::new(), DUMMY_HASH.to_string(), Scheme::Sha512Crypt));
        let (s, pw) = (stored.clone(), password.to_vec());
        let ok = self
            .run_check(&stored, default, move || {
                scheme::verify(&s, default, &pw).unwrap_or(false)
            })
            .await;
        if ok && !name.is_empty() {
            Verdict::Ok(name)
        } else {
            Verdict::Fail
        }
    }

    /// Checks the result of a SASL exchange.
    pub async fn check_sasl(&self, creds: sasl::Credentials) -> Verdict {
        let user = creds.username().to_string();
        let found = match self.stored(&user) {
            Ok(f) => f,
            Err(e) => return Verdict::TempFail(e),
        };
        let Some((name, stored, default)) = found else {
            // Spend the same effort as for a real user.
            let _ = self.check_password("", b"x").await;
            return Verdict::Fail;
        };
        if matches!(&creds, sasl::Credentials::Plain { password, .. } if password.is_empty()) {
            return Verdict::Fail;
        }
        let cram = matches!(creds, sasl::Credentials::CramMd5 { .. });
        let s = stored.clone();
        let ok = self
            .run_check(&stored, default, move || {
                // CRAM-MD5 never shows the password: refuse an account
                // whose stored password is the empty one.
                creds.verify(&s, default)
                    && !(cram && scheme::verify(&s, default, b"").unwrap_or(false))
            })
            .await;
        if ok {
            Verdict::Ok(name)
        } else {
            Verdict::Fail
        }
    }

    /// Is `name` a login of the passdb (one it would check a password for)?
    pub fn passdb_has(&self, name: &str) -> Result<bool, String> {
        Ok(self.stored(name)?.is_some())
    }

    /// The userdb entry of a logged-in user who opens their mail (IMAP,
    /// POP3): refused, as Dovecot does, when the uid or gid is below
    /// `first_valid_uid` / `first_valid_gid`.
    pub fn mail_user(&self, name: &str) -> Result<Option<UserInfo>, String> {
        let info = self.user(name)?;
        if let Some(i) = &info {
            let (uid, gid) = self.first_valid;
            if i.uid < uid {
                return Err(format!("Mail access for users with UID {} not permitted (see first_valid_uid, uid from userdb lookup of {name})", i.uid));
            }
            if i.gid < gid {
                return Err(format!("Mail access for users with GID {} not permitted (see first_valid_gid, gid from userdb lookup of {name})", i.gid));
            }
        }
        Ok(info)
    }

    /// Looks a user up in the userdb; `%u %n %d %h` in a static home are expanded.
    pub fn user(&self, name: &str) -> Result<Option<UserInfo>, String> {
        match &self.userdb {
            Userdb::Passwd => system_user(name),
            Userdb::File(table) => {
                let t = table.get();
                let Some(e) = t.get(name) else {
                    return Ok(None);
                };
                let (Some(uid), Some(gid)) = (
                    e.uid
                        .or_else(|| e.userdb_field("uid").and_then(|v| v.parse().ok())),
                    e.gid
                        .or_else(|| e.userdb_field("gid").and_then(|v| v.parse().ok())),
                ) else {
                    return Err(format!(
                        "{}: user {name} has no uid/gid",
                        table.path().display()
                    ));
                };
                let home = e
                    .home
                    .clone()
                    .or_else(|| e.userdb_field("home").map(str::to_string))
                    .map(PathBuf::from);
                Ok(Some(UserInfo {
                    name: e.user.clone(),
                    uid,
                    gid,
                    home,
                    mail: e.userdb_field("mail").map(str::to_string),
                    quota_rule: e.userdb_field("quota_rule").map(str::to_string),
                }))
            }
            Userdb::Static { uid, gid, home } => {
                let home = match home {
                    Some(tpl) => Some(PathBuf::from(expand_user_template(
                        tpl,
                        &UserVars {
                            user: name,
                            home: None,
                        },
                    )?)),
                    None => None,
                };
                Ok(Some(UserInfo {
                    name: name.to_string(),
                    uid: *uid,
                    gid: *gid,
                    home,
                    mail: None,
                    quota_rule: None,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_lines() {
        let text = "root:$6$s$h:19000:0:99999:7:::\nlocked:!$6$s$h:1::::::\nnopw:*:1::::::\nempty::1::::::\n";
        assert_eq!(shadow_hash(text, "root").as_deref(), Some("$6$s$h"));
        assert_eq!(shadow_hash(text, "locked"), None);
        assert_eq!(shadow_hash(text, "nopw"), None);
        assert_eq!(shadow_hash(text, "empty"), None);
        assert_eq!(shadow_hash(text, "ghost"), None);
    }

    #[test]
    fn dummy_hash_is_well_formed() {
        assert!(!scheme::verify(DUMMY_HASH, Scheme::Plain, b"x").unwrap());
    }

    #[test]
    fn root_is_a_system_user() {
        let root = system_user("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert!(system_user("no-such-user-pigeonpost").unwrap().is_none());
    }
}
