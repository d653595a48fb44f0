//! Taking responsibility for a message: one copy in every local Maildir or
//! mbox it goes to, and one queue entry for its remote recipients, all
//! durable before the caller reports success (ARCHITECTURE.md, "rules every module keeps"). Used by the
//! SMTP server, `pigeonpost sendmail` pickup, and bounces.

use super::Ctx;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::proto::{BodyType, DsnRet, Envelope};
use super::queue::spool::{self, QueuedRcpt, RcptState};
use super::received::{delivery_headers, received_header, Trace};
use super::router::{self, ClientTrust, Destination, RouteError};
use crate::config::quota::Grace;
use crate::mailauth::headers::strip_forged_results;
use crate::observe::metrics;
use crate::store::deliver::{self, DeliverError, Message, Owner};
use crate::store::location::as_user;
use crate::store::maildir::quota::{size_in_name, OverQuota, Quota};
use crate::store::maildir::{Error as StoreError, MaildirRoot};
use crate::store::mbox;
use crate::store::notify::Notifier;

/// Where each recipient of a transaction goes, as the router decided.
pub type Routes = Vec<Destination>;

/// Routes one recipient for a client with `trust`.
pub fn route(ctx: &Ctx, rcpt: &str, trust: ClientTrust) -> Result<Routes, RouteError> {
    // Local recipients (mydestination) are system users, like Postfix's
    // local_recipient_maps; a static userdb would accept any name.
    let users = |name: &str| match ctx.config.userdb {
        crate::config::UserdbSpec::Static { .. } => crate::auth::system_user(name),
        _ => ctx.auth.user(name),
    };
    let mailbox_users = |name: &str| passdb_user(&ctx.auth, name);
    let ctx = router::RouteContext {
        config: &ctx.config,
        tables: &ctx.tables,
        users: &users,
        mailbox_users: ctx
            .config
            .virtual_mailbox_passdb_users
            .then_some(&mailbox_users as router::UserLookup),
    };
    router::resolve(&ctx, rcpt, trust).map(|r| r.destinations)
}

/// The userdb entry of a passdb login, `None` when the passdb does not have
/// it (`virtual_mailbox_passdb_users`: a static userdb alone would accept
/// any name).
pub fn passdb_user(
    auth: &crate::auth::Auth,
    name: &str,
) -> Result<Option<crate::auth::UserInfo>, String> {
    if !auth.passdb_has(name)? {
        return Ok(None);
    }
    auth.user(name)
}

/// May the client logged in as `login` use `sender` as its MAIL FROM
/// (`authenticated_sender_policy = owned`, as Stalwart and mox do)? Yes for
/// `<>`, the login itself and its `+extensions`, addresses
/// `smtpd_sender_login_maps` gives it, and addresses that deliver (through
/// aliases) to the login's own mailbox.
pub fn sender_owned(ctx: &Ctx, login: &str, sender: &str) -> bool {
    if sender.is_empty() {
        return true;
    }
    let s = sender.to_ascii_lowercase();
    let l = login.to_ascii_lowercase();
    if s == l {
        return true;
    }
    if let Some((local, domain)) = s.rsplit_once('@') {
        let (base, _) =
            crate::tables::lookup::split_extension(local, &ctx.config.recipient_delimiter);
        if format!("{base}@{domain}") == l {
            return true;
        }
    }
    if let Some(owners) = super::restrict::login_owners(&ctx.tables, &s) {
        return owners.contains(&l);
    }
    let trusted = ClientTrust {
        in_mynetworks: true,
        authenticated: true,
    };
    let (Ok(theirs), Ok(mine)) = (route(ctx, &s, trusted), route(ctx, &l, trusted)) else {
        return false;
    };
    mine.iter()
        .filter(|d| !matches!(d, Destination::Remote { .. }))
        .any(|d| theirs.contains(d))
}

/// Trust for mail made on this host (sendmail, bounces): like mynetworks.
pub const LOCAL_TRUST: ClientTrust = ClientTrust {
    in_mynetworks: true,
    authenticated: false,
};

/// Where a message came from (for the Received: header), and what mail
/// authentication made of it.
pub struct Origin {
    pub helo: String,
    pub client_ip: IpAddr,
    pub protocol: &'static str,
    pub tls: Option<String>,
    /// Our `Authentication-Results:` header for mail from outside.
    pub auth_results: Option<String>,
    /// DMARC quarantine: local copies go to the recipient's Junk folder.
    pub quarantine: bool,
    /// Our own users' mail (authenticated, mynetworks, sendmail, bounces):
    /// DKIM-sign it when a key applies.
    pub sign: bool,
}

impl Origin {
    /// Mail made on this host: sendmail, bounces.
    pub fn local(protocol: &'static str) -> Origin {
        Origin {
            helo: "localhost".into(),
            client_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            protocol,
            tls: None,
            auth_results: None,
            quarantine: false,
            sign: true,
        }
    }
}

/// The message as stored and sent: our headers first (DKIM signatures of
/// our users' mail, or the Authentication-Results of mail from outside),
/// and no `Authentication-Results` that claims to be ours (RFC 8601 §5).
fn finish_message(ctx: &Ctx, queue_id: &str, origin: &Origin, message: Vec<u8>) -> Vec<u8> {
    let hostname = &ctx.config.myhostname;
    let message = match strip_forged_results(&message, hostname) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(m) => {
            tracing::info!(
                "{queue_id}: removed an Authentication-Results header claiming to be from {hostname} (client={})",
                origin.client_ip
            );
            m
        }
    };
    let mut head = String::new();
    if let Some(ar) = &origin.auth_results {
        head.push_str(ar);
    }
    if origin.sign {
        if let Some(signer) = &ctx.mail_auth.signer {
            for s in signer.sign(&message) {
                metrics::get()
                    .dkim_signed
                    .get_or_create(&metrics::AlgorithmLabel {
                        algorithm: s.algorithm,
                    })
                    .inc();
                tracing::debug!(domain = %s.domain, selector = %s.selector, "DKIM signed");
                head.push_str(&s.header);
            }
        }
    }
    if head.is_empty() {
        return message;
    }
    let mut out = Vec::with_capacity(head.len() + message.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&message);
    out
}

/// What was stored.
#[derive(Debug)]
pub struct Stored {
    pub local_copies: Vec<PathBuf>,
    /// Recipients queued for remote delivery.
    pub queued: usize,
}

/// Stores `message` for every recipient in `env`; Ok means durable.
pub async fn store(
    ctx: &Arc<Ctx>,
    queue_id: &str,
    origin: &Origin,
    env: &Envelope<Routes>,
    message: Vec<u8>,
) -> Result<Stored, DeliverError> {
    let arrival = SystemTime::now();
    let message = finish_message(ctx, queue_id, origin, message);
    let quarantine = origin.quarantine;
    let trace = Trace {
        helo: &origin.helo,
        client_ip: origin.client_ip,
        hostname: &ctx.config.myhostname,
        protocol: origin.protocol,
        queue_id,
        tls: origin.tls.as_deref(),
        arrival,
    };
    // One local copy per distinct destination, headed for the first
    // recipient that led there; one queue entry for all remote addresses.
    let mut jobs: Vec<(Destination, Vec<u8>)> = Vec::new();
    let mut remote: Vec<QueuedRcpt> = Vec::new();
    for rcpt in &env.recipients {
        for dest in &rcpt.route {
            if let Destination::Remote { address } = dest {
                if !remote.iter().any(|r| r.address == *address) {
                    remote.push(QueuedRcpt {
                        address: address.clone(),
                        notify: rcpt.notify,
                        orcpt: rcpt.orcpt.clone(),
                        state: RcptState::Pending,
                        last_error: None,
                        remote_mta: None,
                    });
                }
            } else if !jobs.iter().any(|(d, _)| d == dest) {
                jobs.push((
                    dest.clone(),
                    delivery_headers(&trace, &env.mail_from, &rcpt.address),
                ));
            }
        }
    }
    let queued = if remote.is_empty() {
        None
    } else {
        let one = (remote.len() == 1).then(|| remote[0].address.as_str());
        let prefix = received_header(&trace, one).into_bytes();
        let qenv = spool::Envelope {
            id: queue_id.to_string(),
            sender: env.mail_from.clone(),
            arrival: spool::unix(arrival),
            size: (prefix.len() + message.len()) as u64,
            eight_bit: env.body != BodyType::SevenBit,
            smtputf8: env.smtputf8,
            ret_full: env.ret.map(|r| r == DsnRet::Full),
            envid: env.envid.clone(),
            recipients: remote,
            attempts: 0,
            next_attempt: 0,
            warned: false,
        };
        Some((qenv, prefix))
    };
    let n_queued = queued.as_ref().map_or(0, |(e, _)| e.recipients.len());
    let spool = ctx.queue.spool().clone();
    let notify = ctx.notify.clone();
    let sender = env.mail_from.clone();
    let id = queue_id.to_string();
    let quotas: Vec<Option<Quota>> = jobs.iter().map(|(d, _)| quota_of(ctx, d)).collect();
    let quota_policy = ctx
        .config
        .quota
        .as_ref()
        .map(|q| (q.grace, q.full_tempfail));
    let result = tokio::task::spawn_blocking(move || {
        if let Some((qenv, prefix)) = &queued {
            spool
                .stage(qenv, &[prefix, &message])
                .map_err(|e| DeliverError::from_io("queue", &spool.msg_path(&qenv.id), e))?;
        }
        let quota = Quotas {
            each: &quotas,
            policy: quota_policy,
        };
        let local = store_all(
            &jobs, &message, &sender, arrival, &notify, quarantine, &quota,
        );
        match (&local, &queued) {
            (Ok(_), Some(_)) => {
                if let Err(e) = spool.commit(&id) {
                    spool.discard(&id);
                    return Err(DeliverError::from_io("queue", &spool.msg_path(&id), e));
                }
            }
            (Err(_), Some(_)) => spool.discard(&id),
            _ => {}
        }
        local
    })
    .await
    .map_err(|e| DeliverError::Io {
        path: PathBuf::from("(delivery task)"),
        op: "run",
        source: std::io::Error::other(e.to_string()),
    })?;
    let local_copies = result?;
    if n_queued > 0 {
        ctx.queue.schedule_now(queue_id);
    }
    Ok(Stored {
        local_copies,
        queued: n_queued,
    })
}

/// The recipient's Junk folder (RFC 6154 `\\Junk`), created and subscribed
/// if missing, as the mail user, as Dovecot's autocreate would.
fn junk_folder(maildir: &Path, owner: Option<&Owner>) -> Result<PathBuf, DeliverError> {
    const JUNK: &str = "Junk";
    let root = MaildirRoot::new(maildir);
    let path = root.folder_path(JUNK).map_err(|e| DeliverError::Io {
        path: maildir.to_path_buf(),
        op: "junk folder",
        source: std::io::Error::other(e.to_string()),
    })?;
    if path.join("new").is_dir() {
        return Ok(path);
    }
    deliver::ensure_maildir(maildir, owner)?;
    let (uid, gid) = owner.map_or((u32::MAX, u32::MAX), |o| (o.uid, o.gid));
    let create = || -> Result<(), String> {
        match root.create_folder(JUNK) {
            Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        root.set_subscribed(JUNK, true)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let result = if owner.is_some() {
        as_user(uid, gid, create)
    } else {
        create()
    };
    result.map_err(|e| DeliverError::Io {
        path: path.clone(),
        op: "create folder",
        source: std::io::Error::other(e),
    })?;
    Ok(path)
}

/// The Maildir++ quota of a Maildir destination's user (the userdb's
/// `quota_rule` if it has one for that name, else `quota_rule`).
fn quota_of(ctx: &Ctx, dest: &Destination) -> Option<Quota> {
    let settings = ctx.config.quota.as_ref()?;
    let Destination::Maildir { user, dir, .. } = dest else {
        return None;
    };
    let rule = match ctx.auth.user(user) {
        Ok(Some(info)) => info.quota_rule,
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("userdb lookup of {user} for its quota: {e}");
            None
        }
    };
    Quota::for_user(Some(settings), dir, rule.as_deref())
}

/// At RCPT: is a Maildir this recipient goes to already full (no room for
/// one more message of any size)? Then the recipient is refused on its own,
/// as Postfix does with Dovecot's quota-status policy service, instead of
/// the whole message at the end of DATA. Blocking (it may recount).
pub fn full_mailbox(ctx: &Ctx, routes: &Routes) -> Option<DeliverError> {
    let settings = ctx.config.quota.as_ref()?;
    for dest in routes {
        let Destination::Maildir { uid, gid, .. } = dest else {
            continue;
        };
        let Some(q) = quota_of(ctx, dest) else {
            continue;
        };
        let check = || q.check(0, 1, Some(settings.grace));
        let verdict = match owner(*uid, *gid) {
            Some(o) => as_user(o.uid, o.gid, check),
            None => check(),
        };
        match verdict {
            Ok(Ok(())) => {}
            Ok(Err(OverQuota)) => {
                return Some(DeliverError::OverQuota {
                    path: q.path(),
                    tempfail: settings.full_tempfail,
                })
            }
            // Read again at the end of DATA, where a failure is a 4xx.
            Err(e) => tracing::warn!(path = %q.path().display(), error = %e, "maildirsize"),
        }
    }
    None
}

/// Each job's quota, and `quota_grace` / `quota_full_tempfail`.
struct Quotas<'a> {
    each: &'a [Option<Quota>],
    policy: Option<(Grace, bool)>,
}

/// The owner a destination's files get, when the router set both ids.
fn owner(uid: Option<u32>, gid: Option<u32>) -> Option<Owner> {
    uid.zip(gid).map(|(uid, gid)| Owner { uid, gid })
}

/// Bytes of `data` once stored with LF line endings (the `,S=` size).
fn lf_size(data: &[u8]) -> u64 {
    (data.len() - memchr::memmem::find_iter(data, b"\r\n").count()) as u64
}

/// Writes every local copy; on any failure removes the copies already
/// made, so the 4xx the client gets never leaves a partial delivery behind.
fn store_all(
    jobs: &[(Destination, Vec<u8>)],
    message: &[u8],
    sender: &str,
    arrival: SystemTime,
    notify: &Notifier,
    quarantine: bool,
    quotas: &Quotas,
) -> Result<Vec<PathBuf>, DeliverError> {
    let mut prepared = Vec::new();
    // (quota, owner, index into `prepared`) of each Maildir copy to count.
    let mut counted: Vec<(&Quota, Option<Owner>, usize)> = Vec::new();
    let mut done = Vec::new();
    let fail = |prepared: Vec<deliver::Prepared>, e: DeliverError| {
        for p in prepared {
            p.discard();
        }
        Err(e)
    };
    for (i, (dest, prefix)) in jobs.iter().enumerate() {
        let msg = Message {
            prefix,
            body: message,
        };
        match dest {
            Destination::Maildir { dir, uid, gid, .. } => {
                let owner = owner(*uid, *gid);
                let junk;
                let dir = if quarantine {
                    match junk_folder(dir, owner.as_ref()) {
                        Ok(j) => {
                            junk = j;
                            &junk
                        }
                        Err(e) => return fail(prepared, e),
                    }
                } else {
                    dir
                };
                let quota = quotas.each.get(i).and_then(Option::as_ref);
                if let (Some(q), Some((grace, tempfail))) = (quota, quotas.policy) {
                    // Before anything is written: a full mailbox gets
                    // nothing (Dovecot LDA/LMTP, with quota_grace).
                    let size = lf_size(prefix) + lf_size(message);
                    let check = || q.check(size, 1, Some(grace));
                    let verdict = match owner {
                        Some(o) => as_user(o.uid, o.gid, check),
                        None => check(),
                    };
                    match verdict {
                        Ok(Ok(())) => {}
                        Ok(Err(OverQuota)) => {
                            let path = q.path();
                            return fail(prepared, DeliverError::OverQuota { path, tempfail });
                        }
                        Err(e) => {
                            return fail(prepared, DeliverError::from_io("quota", &q.path(), e))
                        }
                    }
                }
                match deliver::prepare(dir, &msg, owner.as_ref()) {
                    Ok(p) => {
                        if let Some(q) = quota {
                            counted.push((q, owner, prepared.len()));
                        }
                        prepared.push(p)
                    }
                    Err(e) => return fail(prepared, e),
                }
            }
            Destination::Mbox { path, uid, gid, .. } => {
                if let Err(e) =
                    mbox::deliver_mbox(path, &msg, sender, arrival, owner(*uid, *gid).as_ref())
                {
                    return fail(prepared, e);
                }
                done.push(path.clone());
            }
            Destination::Remote { .. } => {}
        }
    }
    if let Err(e) = deliver::commit(&mut prepared) {
        return fail(prepared, e);
    }
    for d in prepared.iter().map(|p| p.maildir()) {
        // Open IMAP sessions look at once instead of at their next interval.
        notify.invalidate(d);
    }
    // Durable: now counted (Dovecot's append of `bytes 1`, no fsync).
    for (q, owner, i) in counted {
        let name = prepared[i].path().file_name().map(|n| n.to_string_lossy());
        let size = name.and_then(|n| size_in_name(&n)).unwrap_or(0);
        match owner {
            Some(o) => as_user(o.uid, o.gid, || q.record(size as i64, 1)),
            None => q.record(size as i64, 1),
        }
    }
    done.extend(prepared.into_iter().map(|p| p.into_path()));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;
    use crate::smtp::proto::Recipient;
    use crate::store::notify::Notifier;

    /// An SMTP context on a temporary directory: example.com's john in
    /// `vmail/`, mynetworks may relay, the queue in `queue/`.
    fn ctx(dir: &std::path::Path) -> Ctx {
        let d = dir.display();
        // SAFETY: geteuid and getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        std::fs::write(dir.join("vmailbox"), "john@example.com example.com/john/\n").unwrap();
        std::fs::write(dir.join("users"), "john@example.com:{PLAIN}x::::::\n").unwrap();
        let cfg = dir.join("pigeonpost.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
myhostname = "mx.example.com"
mydestination = "localhost"
mynetworks = "192.0.2.0/24"
alias_maps = ""
virtual_mailbox_domains = "example.com"
virtual_mailbox_base = "{d}/vmail"
virtual_mailbox_maps = "hash:{d}/vmailbox"
virtual_uid_maps = "static:{uid}"
virtual_gid_maps = "static:{gid}"
virtual_minimum_uid = 0
passdb = "passwd-file:{d}/users"
userdb = "passwd-file:{d}/users"
queue_directory = "{d}/queue"
"#
            ),
        )
        .unwrap();
        let config = crate::config::load(&LoadOptions {
            config_path: Some(cfg),
            env: vec![],
        })
        .unwrap()
        .config;
        Ctx {
            tables: Arc::new(crate::tables::Tables::open(&config).unwrap()),
            auth: Arc::new(crate::auth::Auth::open(&config).unwrap()),
            queue: Arc::new(crate::smtp::queue::Queue::open(&config).unwrap()),
            tls: None,
            notify: Notifier::new(),
            mail_auth: Arc::new(crate::mailauth::MailAuth::off()),
            anvil: Arc::new(crate::net::anvil::Anvil::new(Default::default())),
            restrict: Arc::new(crate::smtp::restrict::Checker::new(&config).unwrap()),
            config: Arc::new(config),
        }
    }

    fn recipient(ctx: &Ctx, address: &str, trust: ClientTrust) -> Recipient<Routes> {
        Recipient {
            address: address.into(),
            notify: 0,
            orcpt: None,
            route: route(ctx, address, trust).unwrap(),
        }
    }

    #[tokio::test]
    async fn one_local_copy_and_one_queue_entry_both_durable_and_announced() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Arc::new(ctx(dir.path()));
        let trust = ClientTrust {
            in_mynetworks: true,
            authenticated: false,
        };
        // A stranger may not relay; mynetworks may.
        let stranger = ClientTrust {
            in_mynetworks: false,
            authenticated: false,
        };
        assert!(route(&ctx, "friend@remote.example", stranger).is_err());
        let env = Envelope {
            mail_from: "alice@example.org".into(),
            body: BodyType::SevenBit,
            smtputf8: false,
            ret: None,
            envid: None,
            recipients: vec![
                recipient(&ctx, "john@example.com", trust),
                recipient(&ctx, "friend@remote.example", trust),
            ],
        };
        let john = dir.path().join("vmail/example.com/john");
        let changes = ctx.notify.subscribe(&john);
        let origin = Origin {
            helo: "client.example.org".into(),
            client_ip: "192.0.2.7".parse().unwrap(),
            protocol: "ESMTP",
            tls: None,
            auth_results: None,
            quarantine: false,
            sign: false,
        };
        let stored = store(
            &ctx,
            "ABC123",
            &origin,
            &env,
            b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(stored.local_copies.len(), 1);
        assert_eq!(stored.queued, 1);
        let copy = std::fs::read_to_string(&stored.local_copies[0]).unwrap();
        assert!(copy.starts_with("Return-Path: <alice@example.org>\nDelivered-To: john@example.com\nReceived: from client.example.org"), "{copy}");
        assert!(copy.ends_with("\nSubject: hi\n\nbody\n"), "{copy}");
        assert!(stored.local_copies[0].starts_with(john.join("new")));
        // IMAP sessions of this server hear of it; the queue holds the rest.
        assert!(ctx.notify.take_dirty(&john));
        assert!(changes.has_changed().unwrap());
        let queued = ctx.queue.spool().read_envelope("ABC123").unwrap();
        assert_eq!(queued.recipients.len(), 1);
        assert_eq!(queued.recipients[0].address, "friend@remote.example");
    }
}
