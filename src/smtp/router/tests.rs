//! Tests of `router`.

use super::*;
use crate::config::LoadOptions;
use std::collections::BTreeMap;
use std::path::Path;

use Destination::{Maildir, Mbox, Remote};

const UNTRUSTED: ClientTrust = ClientTrust {
    in_mynetworks: false,
    authenticated: false,
};
const NETWORK: ClientTrust = ClientTrust {
    in_mynetworks: true,
    authenticated: false,
};
const AUTHED: ClientTrust = ClientTrust {
    in_mynetworks: false,
    authenticated: true,
};

const VMAILBOX: &str = "\
john@example.com      example.com/john/
jane@example.com      example.com/jane
keep@example.com      example.com/keep/
info@mbox.example     mbox.example/info
@box.example          box.example/all/
";

const VALIAS: &str = "\
sales@alias.example   john@example.com
team@example.com      john@example.com, root@example.org, Friend@Remote.Example, info@mbox.example, JOHN@Example.com
loop1@example.com     loop2@example.com
loop2@example.com     loop3@example.com
loop3@example.com     loop1@example.com
keep@example.com      keep@example.com, jane@example.com
joe@example.com       john@example.com
@catch.example        john@example.com
fwd@example.com       bob
mixed@example.com     ghost@example.com, john@example.com
ghosts@example.com    ghost@example.com, ghost2@example.org
";

const ALIASES: &str = "\
postmaster: root
root: alice
carol: carol, bob
staff: alice, /var/log/staff.log, \"|/usr/bin/procmail\"
pipeonly: \"|/usr/bin/procmail\"
fileonly: /tmp/x
a1: a2
a2: a1
out: someone@remote.example
back: root@localhost
";

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    tables: Tables,
}

fn user(name: &str, uid: u32, home: Option<&str>) -> UserInfo {
    UserInfo {
        name: name.to_string(),
        uid,
        gid: uid,
        home: home.map(PathBuf::from),
        mail: None,
        quota_rule: None,
    }
}

fn users(name: &str) -> Result<Option<UserInfo>, String> {
    Ok(match name {
        "alice" => Some(user("alice", 1000, Some("/home/alice"))),
        "bob" => Some(user("bob", 1001, Some("/home/bob"))),
        "carol" => Some(user("carol", 1002, Some("/home/carol"))),
        "root" => Some(user("root", 0, Some("/root"))),
        "nohome" => Some(user("nohome", 1003, None)),
        "broken" => return Err("passwd-file unreadable".into()),
        _ => None,
    })
}

/// A configuration with the tables above; `overrides` replace or add keys.
fn fixture(overrides: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("vmailbox"), VMAILBOX).unwrap();
    std::fs::write(d.join("valias"), VALIAS).unwrap();
    std::fs::write(d.join("aliases"), ALIASES).unwrap();
    std::fs::write(d.join("uids"), "jane@example.com 6000\n@example.com 5000\n").unwrap();
    let p = |f: &str| format!("hash:{}", d.join(f).display());
    let mut keys: BTreeMap<&str, String> = [
        ("myhostname", "mail.example.org".to_string()),
        ("mydomain", "example.org".into()),
        ("myorigin", "$mydomain".into()),
        ("mydestination", "$myhostname, localhost, $mydomain".into()),
        (
            "virtual_mailbox_domains",
            "example.com, mbox.example, box.example, catch.example".into(),
        ),
        ("virtual_alias_domains", "alias.example".into()),
        ("virtual_mailbox_base", "/var/vmail".into()),
        ("virtual_mailbox_maps", p("vmailbox")),
        ("virtual_alias_maps", p("valias")),
        ("virtual_uid_maps", "static:5000".into()),
        ("virtual_gid_maps", "static:5001".into()),
        ("alias_maps", p("aliases")),
        ("recipient_delimiter", "+".into()),
        ("relay_domains", "relay.example".into()),
        ("home_mailbox", "Maildir/".into()),
        ("mail_spool_directory", "/var/mail".into()),
    ]
    .into_iter()
    .collect();
    for (k, v) in overrides {
        keys.insert(k, v.replace("$DIR", &d.display().to_string()));
    }
    let text: String = keys.iter().map(|(k, v)| format!("{k} = {v:?}\n")).collect();
    let cfg = d.join("pigeonpost.toml");
    std::fs::write(&cfg, text).unwrap();
    let config = crate::config::load(&LoadOptions {
        config_path: Some(cfg),
        env: vec![],
    })
    .unwrap()
    .config;
    let tables = Tables::open(&config).unwrap();
    Fixture {
        _dir: dir,
        config,
        tables,
    }
}

impl Fixture {
    fn resolve(&self, rcpt: &str, trust: ClientTrust) -> Result<Vec<Destination>, RouteError> {
        let ctx = RouteContext {
            config: &self.config,
            tables: &self.tables,
            users: &users,
            mailbox_users: None,
        };
        resolve(&ctx, rcpt, trust).map(|r| {
            assert!(!r.destinations.is_empty());
            r.destinations
        })
    }

    fn ok(&self, rcpt: &str) -> Vec<Destination> {
        self.resolve(rcpt, UNTRUSTED)
            .unwrap_or_else(|e| panic!("{rcpt}: {e:?}"))
    }

    fn err(&self, rcpt: &str, trust: ClientTrust) -> RouteError {
        match self.resolve(rcpt, trust) {
            Ok(d) => panic!("{rcpt}: expected an error, got {d:?}"),
            Err(e) => e,
        }
    }
}

fn vmaildir(user: &str, dir: &str) -> Destination {
    Maildir {
        user: user.into(),
        dir: Path::new("/var/vmail").join(dir),
        uid: Some(5000),
        gid: Some(5001),
    }
}

fn home_maildir(user: &str, uid: u32) -> Destination {
    let home = if user == "root" {
        "/root".to_string()
    } else {
        format!("/home/{user}")
    };
    Maildir {
        user: user.into(),
        dir: Path::new(&home).join("Maildir"),
        uid: Some(uid),
        gid: Some(uid),
    }
}

fn remote(a: &str) -> Destination {
    Remote { address: a.into() }
}

fn john() -> Destination {
    vmaildir("john@example.com", "example.com/john")
}

#[test]
fn virtual_user_maildir_with_static_ids() {
    let f = fixture(&[]);
    assert_eq!(f.ok("john@example.com"), [john()]);
    match &f.ok("john@example.com")[0] {
        Maildir { dir, .. } => assert_eq!(dir.to_str(), Some("/var/vmail/example.com/john")),
        d => panic!("{d:?}"),
    }
}

#[test]
fn virtual_mbox_entry() {
    let f = fixture(&[]);
    assert_eq!(
        f.ok("jane@example.com"),
        [Mbox {
            user: "jane@example.com".into(),
            path: "/var/vmail/example.com/jane".into(),
            uid: Some(5000),
            gid: Some(5001),
        }]
    );
    assert!(
        matches!(&f.ok("info@mbox.example")[0], Mbox { path, .. } if path == Path::new("/var/vmail/mbox.example/info"))
    );
}

#[test]
fn catch_alls() {
    let f = fixture(&[]);
    // virtual_alias_maps @domain
    assert_eq!(f.ok("anyone@catch.example"), [john()]);
    // virtual_mailbox_maps @domain
    assert_eq!(
        f.ok("whoever@box.example"),
        [vmaildir("whoever@box.example", "box.example/all")]
    );
}

#[test]
fn one_to_many_local_virtual_remote_deduplicated() {
    let f = fixture(&[]);
    assert_eq!(
        f.ok("team@example.com"),
        [
            john(),
            home_maildir("alice", 1000),
            remote("Friend@remote.example"),
            Mbox {
                user: "info@mbox.example".into(),
                path: "/var/vmail/mbox.example/info".into(),
                uid: Some(5000),
                gid: Some(5001),
            },
        ]
    );
    // Aliases pointing outside are remote even for an untrusted client.
    assert_eq!(f.ok("out@example.org"), [remote("someone@remote.example")]);
    // A bare name in a virtual alias result means name@$myorigin.
    assert_eq!(f.ok("fwd@example.com"), [home_maildir("bob", 1001)]);
}

#[test]
fn loops_and_self_mapping() {
    let f = fixture(&[]);
    assert_eq!(f.err("loop1@example.com", UNTRUSTED), RouteError::Loop);
    assert_eq!(f.err("a1@example.org", UNTRUSTED), RouteError::Loop);
    let (code, enh, text) = RouteError::Loop.reply("a1@example.org");
    assert_eq!((code, enh), (554, "5.4.6"));
    assert!(text.starts_with("<a1@example.org>: "), "{text}");
    // An address mapping to itself is delivered as is, plus the others.
    assert_eq!(
        f.ok("keep@example.com"),
        [
            vmaildir("keep@example.com", "example.com/keep"),
            Mbox {
                user: "jane@example.com".into(),
                path: "/var/vmail/example.com/jane".into(),
                uid: Some(5000),
                gid: Some(5001),
            }
        ]
    );
    // aliases(5) naming itself: its mailbox plus the others.
    assert_eq!(
        f.ok("carol@example.org"),
        [home_maildir("carol", 1002), home_maildir("bob", 1001)]
    );
    // root: alice, back: root@localhost -> alice.
    assert_eq!(f.ok("back@localhost"), [home_maildir("alice", 1000)]);
}

#[test]
fn depth_limit() {
    let f = fixture(&[]);
    let dir = f._dir.path();
    let chain: String = (0..150)
        .map(|i| format!("c{i}@example.com c{}@example.com\n", i + 1))
        .collect();
    std::fs::write(dir.join("chain"), chain).unwrap();
    let f2 = fixture(&[(
        "virtual_alias_maps",
        &format!("hash:{}", dir.join("chain").display()),
    )]);
    drop(f);
    assert_eq!(f2.err("c0@example.com", UNTRUSTED), RouteError::Loop);
    assert_eq!(
        f2.err("c120@example.com", UNTRUSTED),
        RouteError::UserUnknown(RecipientTable::VirtualMailbox)
    );
}

#[test]
fn recipient_delimiter() {
    let f = fixture(&[]);
    // virtual mailbox: user+tag@ finds user@.
    assert_eq!(f.ok("john+tag@example.com"), [john()]);
    assert_eq!(f.ok("John+Tag@Example.com"), [john()]);
    // virtual alias: joe@ -> john@, the extension propagates.
    assert_eq!(f.ok("joe+news@example.com"), [john()]);
    // aliases(5): root+x -> root -> alice; userdb: bob+x -> bob.
    assert_eq!(f.ok("root+x@example.org"), [home_maildir("alice", 1000)]);
    assert_eq!(f.ok("bob+lists@example.org"), [home_maildir("bob", 1001)]);
    // Without a delimiter, john+tag is just unknown.
    let f = fixture(&[("recipient_delimiter", "")]);
    assert_eq!(
        f.err("john+tag@example.com", UNTRUSTED),
        RouteError::UserUnknown(RecipientTable::VirtualMailbox)
    );
}

#[test]
fn local_users_and_aliases() {
    let f = fixture(&[]);
    assert_eq!(
        f.ok("postmaster@example.org"),
        [home_maildir("alice", 1000)]
    );
    assert_eq!(f.ok("bob@mail.example.org"), [home_maildir("bob", 1001)]);
    assert_eq!(f.ok("root@localhost"), [home_maildir("alice", 1000)]);
    // Unqualified: @$myorigin.
    assert_eq!(f.ok("bob"), [home_maildir("bob", 1001)]);
}

#[test]
fn home_mailbox_forms() {
    let f = fixture(&[("home_mailbox", "")]);
    assert_eq!(
        f.ok("bob@example.org"),
        [Mbox {
            user: "bob".into(),
            path: "/var/mail/bob".into(),
            uid: Some(1001),
            gid: Some(1001),
        }]
    );
    let f = fixture(&[("home_mailbox", "Mailbox")]);
    assert!(
        matches!(&f.ok("bob@example.org")[0], Mbox { path, .. } if path == Path::new("/home/bob/Mailbox"))
    );
    let f = fixture(&[("home_mailbox", "mail/box/")]);
    assert!(
        matches!(&f.ok("bob@example.org")[0], Maildir { dir, .. } if dir == Path::new("/home/bob/mail/box"))
    );
    assert!(matches!(
        f.err("nohome@example.org", UNTRUSTED),
        RouteError::Temporary(m) if m.contains("no home directory")
    ));
}

#[test]
fn unknown_users() {
    let f = fixture(&[]);
    let e = f.err("nobody@example.org", UNTRUSTED);
    assert_eq!(e, RouteError::UserUnknown(RecipientTable::Local));
    assert_eq!(
        e.reply("Nobody@Example.org"),
        (
            550,
            "5.1.1",
            "<Nobody@Example.org>: Recipient address rejected: User unknown in local recipient table".into()
        )
    );
    let e = f.err("nobody@example.com", UNTRUSTED);
    assert_eq!(e, RouteError::UserUnknown(RecipientTable::VirtualMailbox));
    assert!(e
        .reply("nobody@example.com")
        .2
        .ends_with("User unknown in virtual mailbox table"));
    assert_eq!(
        f.err("nobody@alias.example", UNTRUSTED),
        RouteError::UserUnknown(RecipientTable::VirtualAlias)
    );
    assert_eq!(f.ok("sales@alias.example"), [john()]);
    // Trust changes nothing for local domains.
    assert_eq!(
        f.err("nobody@example.org", AUTHED),
        RouteError::UserUnknown(RecipientTable::Local)
    );
}

#[test]
fn relay_policy() {
    let f = fixture(&[]);
    let e = f.err("Someone@Remote.Example", UNTRUSTED);
    assert_eq!(e, RouteError::RelayDenied);
    assert_eq!(
        e.reply("Someone@Remote.Example"),
        (
            554,
            "5.7.1",
            "<Someone@Remote.Example>: Relay access denied".into()
        )
    );
    for t in [NETWORK, AUTHED] {
        assert_eq!(
            f.resolve("Someone@Remote.Example.", t).unwrap(),
            [remote("Someone@remote.example")]
        );
    }
    assert_eq!(
        f.ok("Anyone@Relay.Example"),
        [remote("Anyone@relay.example")]
    );
    // Address literals are not ours.
    assert_eq!(f.err("x@[192.0.2.1]", UNTRUSTED), RouteError::RelayDenied);
    assert_eq!(
        f.resolve("x@[192.0.2.1]", AUTHED).unwrap(),
        [remote("x@[192.0.2.1]")]
    );
}

#[test]
fn address_tricks_never_relay() {
    let f = fixture(&[]);
    let tricks = [
        "user%remote.com@example.org",
        "user%remote.com@relay.example",
        "user%remote.com@remote.example",
        "remote!user@example.org",
        "remote!user@relay.example",
        "\"user@remote.com\"@example.org",
        "\"user@remote.com\"@relay.example",
        "user@remote.com@example.org",
        "\"user%remote\"@example.com",
        "@a:user@remote.example",
        "@a,@b:user@remote.example",
        "@a:user@relay.example",
        "@a:out@example.org",
        "@a:user%x@example.org",
    ];
    for t in tricks {
        match f.resolve(t, UNTRUSTED) {
            Ok(d) => assert!(!d.iter().any(|d| matches!(d, Remote { .. })), "{t}: {d:?}"),
            Err(e) => assert!(
                matches!(e, RouteError::RelayDenied | RouteError::UserUnknown(_)),
                "{t}: {e:?}"
            ),
        }
    }
    assert_eq!(
        f.err("user%remote.com@example.org", UNTRUSTED),
        RouteError::RelayDenied
    );
    assert_eq!(
        f.err("\"user@remote.com\"@example.org", UNTRUSTED),
        RouteError::RelayDenied
    );
    assert_eq!(
        f.err("@a:out@example.org", UNTRUSTED),
        RouteError::RelayDenied
    );
    // Trusted clients get a clear refusal of %, ! and quoted @.
    assert!(matches!(
        f.err("user%remote.com@example.org", AUTHED),
        RouteError::BadAddress(_)
    ));
    assert!(matches!(
        f.err("remote!user@example.org", NETWORK),
        RouteError::BadAddress(_)
    ));
    // Source routes are ignored (RFC 5321 §3.6.1) when they end here.
    assert_eq!(f.ok("@a,@b:john@example.com"), [john()]);
    assert_eq!(
        f.resolve("@a:User@Remote.Example", AUTHED).unwrap(),
        [remote("User@remote.example")]
    );
}

#[test]
fn quoted_local_parts() {
    let f = fixture(&[]);
    // A quoted plain local part is the plain one.
    assert_eq!(f.ok("\"john\"@example.com"), [john()]);
    assert_eq!(
        f.resolve("\"John Smith\"@Remote.Example", AUTHED).unwrap(),
        [remote("\"John Smith\"@remote.example")]
    );
}

#[test]
fn bare_postmaster() {
    let f = fixture(&[]);
    for p in ["postmaster", "PostMaster", "POSTMASTER"] {
        assert_eq!(f.ok(p), [home_maildir("alice", 1000)], "{p}");
    }
    // A virtual-only host: myhostname is not local, postmaster still is.
    let f = fixture(&[("mydestination", "localhost")]);
    assert_eq!(f.ok("postmaster"), [home_maildir("alice", 1000)]);
    assert_eq!(
        f.err("postmaster@mail.example.org", UNTRUSTED),
        RouteError::RelayDenied
    );
}

#[test]
fn case_and_trailing_dot() {
    let f = fixture(&[]);
    assert_eq!(f.ok("JOHN@EXAMPLE.COM."), [john()]);
    assert_eq!(f.ok("Bob@Example.Org."), [home_maildir("bob", 1001)]);
    assert_eq!(f.ok("ROOT@LOCALHOST"), [home_maildir("alice", 1000)]);
}

#[test]
fn commands_and_files() {
    let f = fixture(&[]);
    // Dropped next to a deliverable target.
    assert_eq!(f.ok("staff@example.org"), [home_maildir("alice", 1000)]);
    let e = f.err("pipeonly@example.org", UNTRUSTED);
    assert!(
        matches!(&e, RouteError::Unsupported(m) if m.contains("command")),
        "{e:?}"
    );
    assert_eq!(e.reply("pipeonly@example.org").0, 550);
    assert_eq!(e.reply("pipeonly@example.org").1, "5.3.0");
    assert!(
        matches!(f.err("fileonly@example.org", UNTRUSTED), RouteError::Unsupported(m) if m.contains("file"))
    );
}

#[test]
fn virtual_ids() {
    let f = fixture(&[("virtual_uid_maps", "static:50")]);
    let e = f.err("john@example.com", UNTRUSTED);
    assert!(
        matches!(&e, RouteError::Temporary(m) if m.contains("virtual_minimum_uid")),
        "{e:?}"
    );
    assert_eq!(
        e.reply("john@example.com"),
        (
            451,
            "4.3.0",
            "<john@example.com>: Temporary lookup failure".into()
        )
    );
    let f = fixture(&[
        ("virtual_uid_maps", "hash:$DIR/uids"),
        ("virtual_gid_maps", "hash:$DIR/uids"),
    ]);
    assert!(matches!(
        &f.ok("jane@example.com")[0],
        Mbox {
            uid: Some(6000),
            gid: Some(6000),
            ..
        }
    ));
    assert!(matches!(
        &f.ok("john@example.com")[0],
        Maildir {
            uid: Some(5000),
            gid: Some(5000),
            ..
        }
    ));
    // No entry at all: defer.
    assert!(
        matches!(f.err("info@mbox.example", UNTRUSTED), RouteError::Temporary(m) if m.contains("no entry"))
    );
}

#[test]
fn unknown_targets_are_dropped_unless_none_is_left() {
    let f = fixture(&[]);
    assert_eq!(f.ok("mixed@example.com"), [john()]);
    assert_eq!(
        f.err("ghosts@example.com", UNTRUSTED),
        RouteError::UserUnknown(RecipientTable::VirtualMailbox)
    );
}

#[test]
fn user_lookup_accepts_auth_and_system_user() {
    fn takes(_: UserLookup<'_>) {}
    fn with_auth(auth: &crate::auth::Auth) {
        takes(&|n| auth.user(n));
    }
    fn send_sync<T: Send + Sync>() {}
    takes(&crate::auth::system_user);
    let _ = with_auth;
    send_sync::<RouteContext<'static>>();
}

#[test]
fn userdb_failure_is_temporary() {
    let f = fixture(&[]);
    assert!(matches!(
        f.err("broken@example.org", UNTRUSTED),
        RouteError::Temporary(_)
    ));
}

#[test]
fn mydestination_wins_over_virtual_mailbox_domains() {
    let f = fixture(&[("mydestination", "example.com, localhost")]);
    assert_eq!(f.ok("bob@example.com"), [home_maildir("bob", 1001)]);
    assert_eq!(
        f.err("john@example.com", UNTRUSTED),
        RouteError::UserUnknown(RecipientTable::Local)
    );
}

#[test]
fn bad_syntax() {
    let f = fixture(&[]);
    for bad in [
        "",
        "john@",
        "@example.com",
        "a b@example.com",
        "\"unterminated@example.com",
        "\"x\"y@example.com",
        "john@exa mple.com",
        "john@example..com",
        "john@[1.2.3]",
        "john@ex<ample.com",
        "@a:",
        "@:john@example.com",
        "jo\r\nhn@example.com",
    ] {
        let e = f.err(bad, AUTHED);
        assert!(matches!(e, RouteError::BadAddress(_)), "{bad:?}: {e:?}");
        let (code, enh, text) = e.reply(bad);
        assert_eq!((code, enh), (501, "5.1.3"));
        assert!(text.starts_with(&format!("<{}>", printable(bad))), "{text}");
        assert!(!text.contains(['\r', '\n']));
    }
}
