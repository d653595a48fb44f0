//! Dovecot passwd-file (`passdb = "passwd-file:/path"`), the format of
//! Dovecot's db-passwd-file.c:
//!
//! ```text
//! user:password:uid:gid:gecos:home:shell:extra_fields
//! ```
//!
//! - one entry per physical line (no continuation lines); empty lines and
//!   lines starting with `#` are skipped (pigeonpost also skips `#` after
//!   leading whitespace);
//! - every field after `user` may be missing or empty; `user` alone is a
//!   user without password (use the `nopassword` extra field to allow that);
//! - the password keeps its scheme prefix (`{SHA512-CRYPT}$6$...`); it
//!   cannot contain `:`;
//! - uid and gid are numbers (Dovecot also refuses 0, i.e. root: such a user
//!   is skipped with a warning, as Dovecot does);
//! - everything after the 7th `:` is the extra fields (so they may contain
//!   `:`, e.g. `userdb_mail=maildir:~/Maildir`), separated by spaces, each
//!   `key=value` or a bare `key` (`nopassword`);
//! - Dovecot logs "User exists more than once" and keeps the first entry;
//!   we warn and keep the first.
//!
//! User names: Dovecot compares names byte for byte (case-sensitive), after
//! applying `auth_username_format` to the login name. pigeonpost compares
//! the local part case-sensitively and the domain part (after the last `@`)
//! case-insensitively, both for file entries and for lookups, since domain
//! names are case-insensitive on the wire.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;

use super::map::{excerpt, read_text, warning, ParseError};

/// One line of a passwd-file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswdEntry {
    /// The user name as written in the file.
    pub user: String,
    /// The password with its `{SCHEME}` prefix; `None` when empty/absent.
    pub password: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub gecos: String,
    /// Home directory; `None` when empty/absent.
    pub home: Option<String>,
    pub shell: String,
    /// Extra fields in file order: `key=value` → `(key, Some(value))`,
    /// bare `key` → `(key, None)`.
    pub extra: Vec<(String, Option<String>)>,
}

impl PasswdEntry {
    /// The first extra field called `name`; a bare key yields `Some("")`.
    pub fn extra_field(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// Whether an extra field called `name` is present (e.g. `nopassword`).
    pub fn has_extra(&self, name: &str) -> bool {
        self.extra.iter().any(|(k, _)| k == name)
    }

    /// The userdb override `userdb_<name>` from the extra fields, e.g.
    /// `userdb_field("mail")` for `userdb_mail=maildir:~/Maildir`.
    pub fn userdb_field(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k.strip_prefix("userdb_") == Some(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

/// Normalises a user name for lookups: the domain part (after the last
/// `@`) is lower-cased, the local part is kept as is.
pub fn normalize_user(user: &str) -> String {
    match user.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => user.to_string(),
    }
}

/// A parsed passwd-file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswdFile {
    entries: Vec<PasswdEntry>,
    index: HashMap<String, usize>,
}

fn parse_id(
    field: &str,
    what: &str,
    user: &str,
    path: &Path,
    line: usize,
) -> Result<Option<u32>, ParseError> {
    if field.is_empty() {
        return Ok(None);
    }
    if !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(
            path,
            line,
            format!(
                "user '{}': {what} '{}' is not a number",
                excerpt(user),
                excerpt(field)
            ),
        ));
    }
    field.parse::<u32>().map(Some).map_err(|_| {
        ParseError::new(
            path,
            line,
            format!(
                "user '{}': {what} '{}' is too large",
                excerpt(user),
                excerpt(field)
            ),
        )
    })
}

impl PasswdFile {
    /// Parses passwd-file text. `path` is only used in messages. Returns
    /// the file and warnings (duplicates, skipped lines) for the caller to
    /// log.
    pub fn parse(text: &str, path: &Path) -> Result<(PasswdFile, Vec<String>), ParseError> {
        let mut warnings = Vec::new();
        let mut file = PasswdFile::default();
        let mut entry_lines: Vec<usize> = Vec::new();

        for (idx, raw) in text.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with(':') {
                warnings.push(warning(path, line_no, "line has no user name; ignored"));
                continue;
            }
            let mut fields = line.splitn(8, ':');
            let user = fields.next().unwrap_or_default();
            if user.chars().any(char::is_whitespace) {
                return Err(ParseError::new(
                    path,
                    line_no,
                    format!("user name '{}' contains whitespace", excerpt(user)),
                ));
            }
            let password = fields.next().unwrap_or_default();
            let uid = parse_id(
                fields.next().unwrap_or_default(),
                "uid",
                user,
                path,
                line_no,
            )?;
            let gid = parse_id(
                fields.next().unwrap_or_default(),
                "gid",
                user,
                path,
                line_no,
            )?;
            let gecos = fields.next().unwrap_or_default();
            let home = fields.next().unwrap_or_default();
            let shell = fields.next().unwrap_or_default();
            let extra_text = fields.next().unwrap_or_default();

            let mut extra = Vec::new();
            for field in extra_text.split([' ', '\t']).filter(|f| !f.is_empty()) {
                let (key, value) = match field.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (field, None),
                };
                if key.is_empty() {
                    return Err(ParseError::new(
                        path,
                        line_no,
                        format!(
                            "user '{}': extra field '{}' has no name (expected key=value or key)",
                            excerpt(user),
                            excerpt(field)
                        ),
                    ));
                }
                extra.push((key.to_string(), value));
            }

            if uid == Some(0) || gid == Some(0) {
                warnings.push(warning(
                    path,
                    line_no,
                    format!(
                        "user '{}' has uid or gid 0 (root), which Dovecot refuses; user ignored",
                        excerpt(user)
                    ),
                ));
                continue;
            }

            let entry = PasswdEntry {
                user: user.to_string(),
                password: (!password.is_empty()).then(|| password.to_string()),
                uid,
                gid,
                gecos: gecos.to_string(),
                home: (!home.is_empty()).then(|| home.to_string()),
                shell: shell.to_string(),
                extra,
            };
            match file.index.entry(normalize_user(user)) {
                Entry::Occupied(e) => warnings.push(warning(
                    path,
                    line_no,
                    format!(
                        "user '{}' exists more than once; the entry on line {} is used",
                        excerpt(user),
                        entry_lines[*e.get()]
                    ),
                )),
                Entry::Vacant(e) => {
                    e.insert(file.entries.len());
                    file.entries.push(entry);
                    entry_lines.push(line_no);
                }
            }
        }
        Ok((file, warnings))
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<(PasswdFile, Vec<String>), ParseError> {
        PasswdFile::parse(&read_text(path)?, path)
    }

    /// Looks a user up: local part case-sensitive, domain case-insensitive
    /// (see the module documentation).
    pub fn get(&self, user: &str) -> Option<&PasswdEntry> {
        self.index
            .get(&normalize_user(user))
            .map(|&i| &self.entries[i])
    }

    /// All entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = &PasswdEntry> + '_ {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/etc/dovecot/users")
    }

    fn parse(text: &str) -> (PasswdFile, Vec<String>) {
        PasswdFile::parse(text, p()).unwrap()
    }

    fn err(text: &str) -> ParseError {
        PasswdFile::parse(text, p()).unwrap_err()
    }

    #[test]
    fn howto_style_entries() {
        let (f, w) = parse(
            "# users\n\
             \n\
             john@example.com:{SHA512-CRYPT}$6$salt$hash:5000:5000::/var/vmail/example.com/john::userdb_mail=maildir:~/Maildir userdb_quota_rule=*:storage=1G\r\n\
             jane@Example.COM:{PLAIN}secret:5000:5000:Jane Doe:/home/jane:/bin/false\n\
             guest\n\
             open::::::: nopassword allow_nets=127.0.0.1/32,::1\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(f.len(), 4);
        let john = f.get("john@EXAMPLE.com").unwrap();
        assert_eq!(john.user, "john@example.com");
        assert_eq!(john.password.as_deref(), Some("{SHA512-CRYPT}$6$salt$hash"));
        assert_eq!((john.uid, john.gid), (Some(5000), Some(5000)));
        assert_eq!(john.gecos, "");
        assert_eq!(john.home.as_deref(), Some("/var/vmail/example.com/john"));
        assert_eq!(john.shell, "");
        assert_eq!(john.userdb_field("mail"), Some("maildir:~/Maildir"));
        assert_eq!(john.userdb_field("quota_rule"), Some("*:storage=1G"));
        assert_eq!(john.userdb_field("home"), None);

        let jane = f.get("jane@example.com").unwrap();
        assert_eq!(jane.user, "jane@Example.COM");
        assert_eq!(jane.gecos, "Jane Doe");
        assert_eq!(jane.shell, "/bin/false");
        assert!(jane.extra.is_empty());

        let guest = f.get("guest").unwrap();
        assert_eq!(
            guest,
            &PasswdEntry {
                user: "guest".into(),
                ..Default::default()
            }
        );

        let open = f.get("open").unwrap();
        assert_eq!(open.password, None);
        assert_eq!(open.uid, None);
        assert!(open.has_extra("nopassword"));
        assert_eq!(open.extra_field("nopassword"), Some(""));
        assert_eq!(open.extra_field("allow_nets"), Some("127.0.0.1/32,::1"));
        assert_eq!(
            open.extra,
            vec![
                ("nopassword".to_string(), None),
                (
                    "allow_nets".to_string(),
                    Some("127.0.0.1/32,::1".to_string())
                )
            ]
        );

        let order: Vec<&str> = f.iter().map(|e| e.user.as_str()).collect();
        assert_eq!(
            order,
            ["john@example.com", "jane@Example.COM", "guest", "open"]
        );
    }

    #[test]
    fn local_part_is_case_sensitive() {
        let (f, _) = parse("John@example.com:{PLAIN}x\n");
        assert!(f.get("John@EXAMPLE.COM").is_some());
        assert!(f.get("john@example.com").is_none());
    }

    #[test]
    fn short_lines_and_empty_fields() {
        let (f, _) = parse("a:pw\nb:pw:1000\nc:pw::1000\n");
        assert_eq!(f.get("a").unwrap().password.as_deref(), Some("pw"));
        assert_eq!(f.get("b").unwrap().uid, Some(1000));
        assert_eq!(f.get("b").unwrap().gid, None);
        assert_eq!(f.get("c").unwrap().uid, None);
        assert_eq!(f.get("c").unwrap().gid, Some(1000));
    }

    #[test]
    fn bad_uid_gid_name_the_line() {
        let e = err("a:pw:1:1\nb:pw:vmail:1\n");
        assert_eq!(
            e.to_string(),
            "/etc/dovecot/users:2: user 'b': uid 'vmail' is not a number"
        );
        assert!(err("a:pw:1:-5\n")
            .reason
            .contains("gid '-5' is not a number"));
        assert!(err("a:pw:+5:1\n").reason.contains("not a number"));
        assert!(err("a:pw:99999999999:1\n").reason.contains("too large"));
    }

    #[test]
    fn root_ids_are_skipped_with_warning() {
        let (f, w) = parse("root:pw:0:0\nok:pw:1:1\n");
        assert!(f.get("root").is_none());
        assert!(f.get("ok").is_some());
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("/etc/dovecot/users:1:"));
    }

    #[test]
    fn duplicates_warn_and_keep_first() {
        let (f, w) = parse("u@x.org:first\n\nu@X.ORG:second\n");
        assert_eq!(f.get("u@x.org").unwrap().password.as_deref(), Some("first"));
        assert_eq!(f.len(), 1);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("/etc/dovecot/users:3: user 'u@X.ORG' exists more than once"));
        assert!(w[0].contains("line 1"));
    }

    #[test]
    fn comments_blank_and_nameless_lines() {
        let (f, w) = parse("  # indented comment\n\t\n:nouser\n");
        assert!(f.is_empty());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains(":3:"));
    }

    #[test]
    fn bad_extra_fields_and_names() {
        assert!(err("a:pw:1:1::/h::=x\n").reason.contains("has no name"));
        assert!(err("a b:pw\n").reason.contains("whitespace"));
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_user("John@Example.COM"), "John@example.com");
        assert_eq!(normalize_user("a@b@C"), "a@b@c");
        assert_eq!(normalize_user("Plain"), "Plain");
    }
}
