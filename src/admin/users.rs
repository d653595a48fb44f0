//! Virtual users and aliases, as the Postfix + Dovecot HOWTO keeps them:
//! a line in the Dovecot passwd-file (`passdb = passwd-file:…`), an entry
//! `user@domain  domain/user/` in the first `virtual_mailbox_maps` table,
//! and `alias  target, target` entries in the first `virtual_alias_maps`
//! table. Lines we do not touch are kept byte for byte (Dovecot's extra
//! fields included).

use std::path::{Path, PathBuf};

use super::AdminError;
use crate::auth::{scheme, Auth};
use crate::config::{Config, PassdbSpec};
use crate::store::deliver::{ensure_maildir, Owner};
use crate::store::location::user_maildir;
use crate::tables::edit::{self, Lock};
use crate::tables::map::TableRef;
use crate::tables::passwd_file::{normalize_user, PasswdFile};
use crate::tables::{IdSource, Tables};

/// How deep `alias add` follows aliases looking for a loop (the router's
/// expansion limit).
const MAX_DEPTH: usize = 100;

/// The scheme `user add` and `user passwd` hash with unless told otherwise:
/// what `doveadm pw` (and `pigeonpost pw`) make by default.
pub const DEFAULT_SCHEME: &str = "SHA512-CRYPT";

/// The files user management edits.
struct Files {
    passwd: PathBuf,
    mailbox: Option<PathBuf>,
    alias: Option<PathBuf>,
}

/// The first plain (hash:, texthash:, … or bare path) table of a list.
fn first_table(specs: &[String]) -> Option<PathBuf> {
    specs.iter().find_map(|s| {
        TableRef::parse(s)
            .ok()
            .filter(|r| !r.kind.is_pattern())
            .map(|r| r.path)
    })
}

fn files(config: &Config) -> Result<Files, AdminError> {
    let passwd = match &config.passdb {
        PassdbSpec::PasswdFile { path, .. } => path.clone(),
        PassdbSpec::Shadow => {
            return Err(AdminError::usage(format!(
                "passdb (from {}) is shadow: user management edits a Dovecot passwd-file; \
                 set passdb = \"passwd-file:/etc/dovecot/users\" (system users are managed with useradd)",
                config.source_of("passdb")
            )))
        }
    };
    Ok(Files {
        passwd,
        mailbox: first_table(&config.virtual_mailbox_maps),
        alias: first_table(&config.virtual_alias_maps),
    })
}

fn io_err<'a>(what: &str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AdminError + 'a {
    let what = what.to_string();
    move |e| AdminError::runtime(format!("cannot {what} {}: {e}", path.display()))
}

fn read(path: &Path) -> Result<String, AdminError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

fn write(path: &Path, text: &str) -> Result<(), AdminError> {
    edit::write_atomic(path, text.as_bytes()).map_err(io_err("write", path))
}

fn lock(paths: &[&Path]) -> Result<Vec<Lock>, AdminError> {
    edit::lock_all(paths).map_err(|e| {
        AdminError::runtime(format!(
            "cannot lock {}: {e}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Checks and normalises an address: `local@domain`, domain lower-cased.
/// `catch_all` allows `@domain` (aliases only).
pub fn check_address(addr: &str, catch_all: bool) -> Result<String, AdminError> {
    let addr = addr.trim();
    let bad = |why: &str| AdminError::usage(format!("'{addr}' is not a mail address: {why}"));
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err(bad("it needs user@domain"));
    };
    if local.is_empty() && !catch_all {
        return Err(bad("the user part is empty"));
    }
    if domain.is_empty() || !domain.contains('.') && domain != "localhost" {
        return Err(bad("the domain is missing or not qualified"));
    }
    if let Some(c) = addr.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, ':' | ',' | '#' | '"' | '<' | '>' | '\\')
    }) {
        return Err(bad(&format!("it contains {c:?}")));
    }
    if local.contains('@') {
        return Err(bad("it contains more than one @"));
    }
    Ok(format!(
        "{}@{}",
        local.to_lowercase(),
        domain.trim_end_matches('.').to_ascii_lowercase()
    ))
}

fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

fn open_tables(config: &Config) -> Result<Tables, AdminError> {
    Tables::open(config).map_err(|e| AdminError::usage(e.to_string()))
}

/// The passwd-file line index of `user` (normalised comparison).
fn passwd_line(text: &str, user: &str) -> Option<usize> {
    let want = normalize_user(user);
    edit::lines(text).iter().position(|l| {
        let l = l.trim_end_matches(['\n', '\r']);
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#') && {
            let name = l.split(':').next().unwrap_or("");
            normalize_user(name) == want || normalize_user(&name.to_lowercase()) == want
        }
    })
}

fn table_entry(text: &str, key: &str) -> Option<(String, std::ops::Range<usize>)> {
    edit::table_entries(text)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
}

fn virtual_id(sources: &[IdSource], addr: &str) -> Option<u32> {
    sources.iter().find_map(|s| match s {
        IdSource::Static(n) => Some(*n),
        IdSource::Table(t) => t.get().get(addr).and_then(|v| v.trim().parse().ok()),
    })
}

/// The mailbox path `user add` writes: `domain/user/` (a Maildir under
/// `virtual_mailbox_base`), as in the HOWTO.
fn mailbox_value(addr: &str) -> String {
    let (local, domain) = addr.rsplit_once('@').unwrap_or((addr, ""));
    format!("{domain}/{local}/")
}

/// `pigeonpost user add ADDRESS`: the passwd-file line, the
/// `virtual_mailbox_maps` entry and the Maildir. Returns what was done.
pub fn user_add(
    config: &Config,
    address: &str,
    password: &str,
    scheme_name: &str,
) -> Result<String, AdminError> {
    let addr = check_address(address, false)?;
    if password.is_empty() {
        return Err(AdminError::usage(
            "empty passwords are not allowed (anyone could log in)",
        ));
    }
    let f = files(config)?;
    let Some(mailbox) = f.mailbox.clone() else {
        return Err(AdminError::usage(format!(
            "virtual_mailbox_maps (from {}) names no table to add the mailbox to; \
             set it to e.g. hash:/etc/postfix/vmailbox",
            config.source_of("virtual_mailbox_maps")
        )));
    };
    let mut locked: Vec<&Path> = vec![&f.passwd, &mailbox];
    if let Some(a) = &f.alias {
        locked.push(a);
    }
    let _locks = lock(&locked)?;
    // A missing table file is created empty, so the tables can be opened.
    if !mailbox.exists() {
        write(&mailbox, "")?;
    }
    let tables = open_tables(config)?;
    let domain = domain_of(&addr);
    if !tables.virtual_mailbox_domains.contains(domain) {
        return Err(AdminError::usage(format!(
            "{addr}: the domain {domain} is not in virtual_mailbox_domains (from {}); add it there first",
            config.source_of("virtual_mailbox_domains")
        )));
    }
    let passwd_text = read(&f.passwd)?;
    if passwd_line(&passwd_text, &addr).is_some() {
        return Err(AdminError::usage(format!(
            "user {addr} already exists in {} (use `pigeonpost user passwd {addr}` to change the password)",
            f.passwd.display()
        )));
    }
    if let Some(alias) = &f.alias {
        if let Some((k, _)) = table_entry(&read(alias)?, &addr) {
            return Err(AdminError::usage(format!(
                "{k} is an alias in {} (virtual_alias_maps); delete it with `pigeonpost alias del {k}` first",
                alias.display()
            )));
        }
    }
    let hash = scheme::hash_spec(scheme_name, password.as_bytes(), Some(&addr), None)
        .map_err(|e| AdminError::usage(format!("scheme {scheme_name}: {e}")))?;
    let uid = virtual_id(&tables.virtual_uid_maps, &addr);
    let gid = virtual_id(&tables.virtual_gid_maps, &addr);
    let home = config
        .virtual_mailbox_base
        .as_ref()
        .map(|b| b.join(mailbox_value(&addr).trim_end_matches('/')));
    let show = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
    // Dovecot's format: user:password:uid:gid:gecos:home:shell:extra
    let line = format!(
        "{addr}:{hash}:{}:{}::{}::",
        show(uid),
        show(gid),
        home.as_ref()
            .map(|h| h.display().to_string())
            .unwrap_or_default()
    );
    let mut notes = Vec::new();
    let mailbox_text = read(&mailbox)?;
    if let Some((k, r)) = table_entry(&mailbox_text, &addr) {
        notes.push(format!(
            "{k} was already in {} ({}), kept",
            mailbox.display(),
            edit::entry_value(&mailbox_text, &r)
        ));
    } else {
        let mut t = mailbox_text;
        edit::append_line(&mut t, &format!("{addr}  {}", mailbox_value(&addr)));
        write(&mailbox, &t)?;
    }
    // The passwd-file last: the user can log in once mail can reach them.
    let mut t = passwd_text;
    edit::append_line(&mut t, &line);
    write(&f.passwd, &t)?;
    let dirs = create_maildirs(config, &addr)?;
    let mut out = format!(
        "added {addr} ({} in {}, mailbox in {})",
        scheme_name.to_ascii_uppercase(),
        f.passwd.display(),
        mailbox.display()
    );
    for d in dirs {
        out.push_str(&format!("\nMaildir {}", d.display()));
    }
    for n in notes {
        out.push_str(&format!("\nnote: {n}"));
    }
    Ok(out)
}

/// The Maildir `virtual_mailbox_maps` gives `addr` (virtual(8): the value
/// under `virtual_mailbox_base`, a trailing `/` meaning Maildir), with the
/// uid/gid of `virtual_uid_maps`/`virtual_gid_maps`.
fn delivery_maildir(
    config: &Config,
    tables: &Tables,
    addr: &str,
) -> Option<(PathBuf, Option<Owner>)> {
    let value = tables
        .virtual_mailbox_maps
        .iter()
        .find_map(|t| t.get().get(addr).map(|v| v.trim().to_string()))?;
    let dir = value.strip_suffix('/')?;
    let path = match &config.virtual_mailbox_base {
        Some(base) => base.join(dir.trim_start_matches('/')),
        None if dir.starts_with('/') => PathBuf::from(dir),
        None => return None,
    };
    let owner = virtual_id(&tables.virtual_uid_maps, addr)
        .zip(virtual_id(&tables.virtual_gid_maps, addr))
        .map(|(uid, gid)| Owner { uid, gid });
    Some((path, owner))
}

/// Creates the Maildir SMTP delivers to and the one IMAP/POP3 open (the
/// same directory in the HOWTO's setup), owned by the mail user.
fn create_maildirs(config: &Config, addr: &str) -> Result<Vec<PathBuf>, AdminError> {
    let tables = open_tables(config)?;
    let auth = Auth::open(config).map_err(|e| AdminError::usage(e.to_string()))?;
    let mut dirs: Vec<(PathBuf, Option<Owner>)> = Vec::new();
    dirs.extend(delivery_maildir(config, &tables, addr));
    if let Ok(Some(info)) = auth.user(addr) {
        if let Ok(dir) = user_maildir(&config.mail_location, addr, &info) {
            if !dirs.iter().any(|(d, _)| *d == dir) {
                dirs.push((
                    dir,
                    Some(Owner {
                        uid: info.uid,
                        gid: info.gid,
                    }),
                ));
            }
        }
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut out = Vec::new();
    for (dir, owner) in dirs {
        let owner = if root { owner } else { None };
        ensure_maildir(&dir, owner.as_ref())
            .map_err(|e| AdminError::runtime(format!("{addr} was added, but: {e}")))?;
        out.push(dir);
    }
    Ok(out)
}

/// `pigeonpost user passwd ADDRESS`: a new hash in the user's line, every
/// other field kept.
pub fn user_passwd(
    config: &Config,
    address: &str,
    password: &str,
    scheme_name: &str,
) -> Result<String, AdminError> {
    let addr = check_address(address, false)?;
    if password.is_empty() {
        return Err(AdminError::usage(
            "empty passwords are not allowed (anyone could log in)",
        ));
    }
    let f = files(config)?;
    let _locks = lock(&[&f.passwd])?;
    let text = read(&f.passwd)?;
    let Some(i) = passwd_line(&text, &addr) else {
        return Err(unknown_user(&addr, &f.passwd));
    };
    let hash = scheme::hash_spec(scheme_name, password.as_bytes(), Some(&addr), None)
        .map_err(|e| AdminError::usage(format!("scheme {scheme_name}: {e}")))?;
    let old = edit::lines(&text)[i].trim_end_matches(['\n', '\r']);
    let new = match old.split_once(':') {
        Some((user, rest)) => match rest.split_once(':') {
            Some((_, after)) => format!("{user}:{hash}:{after}"),
            None => format!("{user}:{hash}"),
        },
        None => format!("{old}:{hash}"),
    };
    write(&f.passwd, &edit::replace_lines(&text, &(i..i + 1), &new))?;
    Ok(format!("password of {addr} changed"))
}

fn unknown_user(addr: &str, passwd: &Path) -> AdminError {
    AdminError::usage(format!("unknown user {addr} (not in {})", passwd.display()))
}

/// `pigeonpost user del ADDRESS`: the passwd-file line and the mailbox
/// entry go; the mail stays on disk.
pub fn user_del(config: &Config, address: &str) -> Result<String, AdminError> {
    let addr = check_address(address, false)?;
    let f = files(config)?;
    let mut locked: Vec<&Path> = vec![&f.passwd];
    if let Some(m) = &f.mailbox {
        locked.push(m);
    }
    let _locks = lock(&locked)?;
    let text = read(&f.passwd)?;
    let Some(i) = passwd_line(&text, &addr) else {
        return Err(unknown_user(&addr, &f.passwd));
    };
    let mut kept = String::new();
    // Where the mail is, before the entry goes.
    if let Ok(dirs) = maildirs_of(config, &addr) {
        for d in dirs {
            if d.exists() {
                kept.push_str(&format!("\nmail kept in {}", d.display()));
            }
        }
    }
    // The login first, then the mailbox (the reverse of `add`).
    write(&f.passwd, &edit::remove_lines(&text, &(i..i + 1)))?;
    if let Some(m) = &f.mailbox {
        let mt = read(m)?;
        if let Some((_, r)) = table_entry(&mt, &addr) {
            write(m, &edit::remove_lines(&mt, &r))?;
        }
    }
    if let Some(a) = &f.alias {
        let at = read(a)?;
        for (k, r) in edit::table_entries(&at) {
            let v = edit::entry_value(&at, &r);
            if split_targets(&v)
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&addr))
            {
                kept.push_str(&format!(
                    "\nnote: alias {k} still goes to {addr} (pigeonpost alias del {k} {addr})"
                ));
            }
        }
    }
    Ok(format!("deleted {addr}{kept}"))
}

fn maildirs_of(config: &Config, addr: &str) -> Result<Vec<PathBuf>, AdminError> {
    let tables = open_tables(config)?;
    Ok(delivery_maildir(config, &tables, addr)
        .map(|(d, _)| d)
        .into_iter()
        .collect())
}

/// `pigeonpost user list [DOMAIN]`: one user per line with its mailbox.
pub fn user_list(config: &Config, domain: Option<&str>) -> Result<String, AdminError> {
    let f = files(config)?;
    let text = read(&f.passwd)?;
    let (file, _) =
        PasswdFile::parse(&text, &f.passwd).map_err(|e| AdminError::usage(e.to_string()))?;
    let mailbox_text = match &f.mailbox {
        Some(m) => read(m)?,
        None => String::new(),
    };
    let mut out = String::new();
    for e in file.iter() {
        if let Some(d) = domain {
            if !domain_of(&e.user).eq_ignore_ascii_case(d) {
                continue;
            }
        }
        let mailbox = table_entry(&mailbox_text, &e.user)
            .map(|(_, r)| edit::entry_value(&mailbox_text, &r))
            .unwrap_or_else(|| "(no virtual_mailbox_maps entry)".into());
        out.push_str(&format!("{}  {mailbox}\n", e.user));
    }
    Ok(out)
}

/// `pigeonpost user show ADDRESS`: what the files say about the user.
pub fn user_show(config: &Config, address: &str) -> Result<String, AdminError> {
    let addr = check_address(address, false)?;
    let f = files(config)?;
    let text = read(&f.passwd)?;
    let (file, _) =
        PasswdFile::parse(&text, &f.passwd).map_err(|e| AdminError::usage(e.to_string()))?;
    let Some(e) = file.get(&addr) else {
        return Err(unknown_user(&addr, &f.passwd));
    };
    let mut out = format!("user:     {}\n", e.user);
    let scheme = e
        .password
        .as_deref()
        .map(|p| {
            let default = match &config.passdb {
                PassdbSpec::PasswdFile { default_scheme, .. } => {
                    scheme::Scheme::from_name(default_scheme).unwrap_or(scheme::Scheme::Crypt)
                }
                PassdbSpec::Shadow => scheme::Scheme::Crypt,
            };
            scheme::scheme_of(p, default)
                .map(|s| s.name().to_string())
                .unwrap_or_else(|e| format!("unreadable ({e})"))
        })
        .unwrap_or_else(|| "none".into());
    out.push_str(&format!("password: {scheme} (in {})\n", f.passwd.display()));
    if let Ok(auth) = Auth::open(config) {
        match auth.user(&addr) {
            Ok(Some(info)) => {
                out.push_str(&format!("uid/gid:  {}/{}\n", info.uid, info.gid));
                if let Some(h) = &info.home {
                    out.push_str(&format!("home:     {}\n", h.display()));
                }
                if let Ok(d) = user_maildir(&config.mail_location, &addr, &info) {
                    out.push_str(&format!("imap:     {}\n", d.display()));
                }
            }
            Ok(None) => out.push_str("userdb:   not found\n"),
            Err(e) => out.push_str(&format!("userdb:   {e}\n")),
        }
    }
    if !e.extra.is_empty() {
        let extra: Vec<String> = e
            .extra
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect();
        out.push_str(&format!("extra:    {}\n", extra.join(" ")));
    }
    match &f.mailbox {
        Some(m) => {
            let mt = read(m)?;
            match table_entry(&mt, &addr) {
                Some((_, r)) => out.push_str(&format!(
                    "mailbox:  {} (in {})\n",
                    edit::entry_value(&mt, &r),
                    m.display()
                )),
                None => out.push_str(&format!(
                    "mailbox:  none in {}: mail to {addr} is refused\n",
                    m.display()
                )),
            }
        }
        None => out.push_str("mailbox:  no virtual_mailbox_maps table\n"),
    }
    for d in maildirs_of(config, &addr).unwrap_or_default() {
        out.push_str(&format!(
            "delivery: {}{}\n",
            d.display(),
            if d.join("cur").is_dir() {
                ""
            } else {
                " (not created yet)"
            }
        ));
    }
    if let Some(a) = &f.alias {
        let at = read(a)?;
        for (k, r) in edit::table_entries(&at) {
            let v = edit::entry_value(&at, &r);
            if split_targets(&v)
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&addr))
            {
                out.push_str(&format!("alias:    {k} -> {v}\n"));
            }
        }
    }
    Ok(out)
}

fn split_targets(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn alias_file(config: &Config) -> Result<PathBuf, AdminError> {
    first_table(&config.virtual_alias_maps).ok_or_else(|| {
        AdminError::usage(format!(
            "virtual_alias_maps (from {}) names no table to edit; set it to e.g. hash:/etc/postfix/virtual",
            config.source_of("virtual_alias_maps")
        ))
    })
}

/// Follows `targets` through the alias table (with `source`'s new value);
/// the chain back to `source` if there is one.
fn alias_loop(text: &str, source: &str, targets: &[String]) -> Option<Vec<String>> {
    let entries: Vec<(String, Vec<String>)> = edit::table_entries(text)
        .into_iter()
        .map(|(k, r)| {
            (
                k.to_lowercase(),
                split_targets(&edit::entry_value(text, &r)),
            )
        })
        .collect();
    let next = |a: &str| -> Vec<String> {
        if a == source {
            return targets.to_vec();
        }
        entries
            .iter()
            .find(|(k, _)| k == a)
            .map(|(_, v)| v.iter().map(|t| t.to_lowercase()).collect())
            .unwrap_or_default()
    };
    // Depth-first with the path, bounded like the router's expansion.
    let mut stack: Vec<(String, Vec<String>)> = targets
        .iter()
        .map(|t| (t.to_lowercase(), vec![source.to_string(), t.to_lowercase()]))
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some((a, path)) = stack.pop() {
        if a == source {
            return Some(path);
        }
        if !seen.insert(a.clone()) || path.len() > MAX_DEPTH {
            continue;
        }
        for t in next(&a) {
            let mut p = path.clone();
            p.push(t.clone());
            stack.push((t, p));
        }
    }
    None
}

/// `pigeonpost alias add ADDRESS TARGET…`: a new entry, or the targets
/// added to an existing one.
pub fn alias_add(config: &Config, address: &str, targets: &[String]) -> Result<String, AdminError> {
    let source = check_address(address, true)?;
    if targets.is_empty() {
        return Err(AdminError::usage(
            "alias add needs at least one target address",
        ));
    }
    let mut new_targets = Vec::new();
    for t in targets.iter().flat_map(|t| split_targets(t)) {
        let t = check_address(&t, false)?;
        if t == source {
            return Err(AdminError::usage(format!(
                "{source} -> {t}: an alias cannot point to itself (the mail would loop)"
            )));
        }
        if !new_targets.contains(&t) {
            new_targets.push(t);
        }
    }
    let file = alias_file(config)?;
    let _locks = lock(&[&file])?;
    if !file.exists() {
        write(&file, "")?;
    }
    let tables = open_tables(config)?;
    let domain = domain_of(&source);
    if !(tables.virtual_mailbox_domains.contains(domain)
        || tables.virtual_alias_domains.contains(domain)
        || tables.mydestination.contains(domain))
    {
        return Err(AdminError::usage(format!(
            "{source}: the domain {domain} is not one of ours (virtual_mailbox_domains, \
             virtual_alias_domains or mydestination); add it there first"
        )));
    }
    let text = read(&file)?;
    let existing = table_entry(&text, &source);
    let mut all = existing
        .as_ref()
        .map(|(_, r)| split_targets(&edit::entry_value(&text, r)))
        .unwrap_or_default();
    let before = all.len();
    for t in &new_targets {
        if !all.iter().any(|a| a.eq_ignore_ascii_case(t)) {
            all.push(t.clone());
        }
    }
    if all.len() == before {
        return Ok(format!("{source} already goes to {}", all.join(", ")));
    }
    let lowered: Vec<String> = all.iter().map(|t| t.to_lowercase()).collect();
    if let Some(path) = alias_loop(&text, &source, &lowered) {
        return Err(AdminError::usage(format!(
            "{source}: the alias would loop: {}",
            path.join(" -> ")
        )));
    }
    let line = format!("{source}  {}", all.join(", "));
    let new_text = match &existing {
        Some((_, r)) => edit::replace_lines(&text, r, &line),
        None => {
            let mut t = text.clone();
            edit::append_line(&mut t, &line);
            t
        }
    };
    write(&file, &new_text)?;
    Ok(format!(
        "{source} -> {} (in {})",
        all.join(", "),
        file.display()
    ))
}

/// `pigeonpost alias del ADDRESS [TARGET…]`: the whole entry, or only the
/// targets named.
pub fn alias_del(config: &Config, address: &str, targets: &[String]) -> Result<String, AdminError> {
    let source = check_address(address, true)?;
    let file = alias_file(config)?;
    let _locks = lock(&[&file])?;
    let text = read(&file)?;
    let Some((key, r)) = table_entry(&text, &source) else {
        return Err(AdminError::usage(format!(
            "unknown alias {source} (not in {})",
            file.display()
        )));
    };
    if targets.is_empty() {
        write(&file, &edit::remove_lines(&text, &r))?;
        return Ok(format!("deleted alias {key}"));
    }
    let drop: Vec<String> = targets
        .iter()
        .flat_map(|t| split_targets(t))
        .map(|t| t.to_lowercase())
        .collect();
    let all = split_targets(&edit::entry_value(&text, &r));
    for d in &drop {
        if !all.iter().any(|a| a.eq_ignore_ascii_case(d)) {
            return Err(AdminError::usage(format!(
                "alias {key} does not go to {d} (it goes to {})",
                all.join(", ")
            )));
        }
    }
    let left: Vec<String> = all
        .into_iter()
        .filter(|a| !drop.contains(&a.to_lowercase()))
        .collect();
    if left.is_empty() {
        write(&file, &edit::remove_lines(&text, &r))?;
        return Ok(format!("deleted alias {key}"));
    }
    let line = format!("{key}  {}", left.join(", "));
    write(&file, &edit::replace_lines(&text, &r, &line))?;
    Ok(format!("{key} -> {}", left.join(", ")))
}

/// `pigeonpost alias list [DOMAIN]`.
pub fn alias_list(config: &Config, domain: Option<&str>) -> Result<String, AdminError> {
    let file = alias_file(config)?;
    let text = read(&file)?;
    let mut out = String::new();
    for (k, r) in edit::table_entries(&text) {
        if let Some(d) = domain {
            if !domain_of(&k).eq_ignore_ascii_case(d) {
                continue;
            }
        }
        out.push_str(&format!(
            "{k} -> {}\n",
            split_targets(&edit::entry_value(&text, &r)).join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            check_address("John@Example.COM", false).unwrap(),
            "john@example.com"
        );
        assert!(check_address("john", false).is_err());
        assert!(check_address("jo hn@example.com", false).is_err());
        assert!(check_address("jo:hn@example.com", false).is_err());
        assert!(check_address("@example.com", false).is_err());
        assert_eq!(check_address("@example.com", true).unwrap(), "@example.com");
    }

    #[test]
    fn loops_are_found() {
        let text = "b@x.example c@x.example\nc@x.example a@x.example, d@y.example\n";
        let path = alias_loop(text, "a@x.example", &["b@x.example".into()]).unwrap();
        assert_eq!(
            path,
            ["a@x.example", "b@x.example", "c@x.example", "a@x.example"]
        );
        assert!(alias_loop(text, "a@x.example", &["d@y.example".into()]).is_none());
    }

    #[test]
    fn passwd_lines_by_user() {
        let text = "# users\njohn@example.com:{PLAIN}x::::::userdb_quota_rule=*:storage=1G\nJane@Example.com:{PLAIN}y\n";
        assert_eq!(passwd_line(text, "john@example.com"), Some(1));
        assert_eq!(passwd_line(text, "jane@example.com"), Some(2));
        assert_eq!(passwd_line(text, "bob@example.com"), None);
    }
}
