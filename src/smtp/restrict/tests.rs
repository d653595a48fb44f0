//! Tests of `restrict`: lists evaluated against a configuration with real
//! table files; replies compared with Postfix's texts.

use super::*;
use crate::config::LoadOptions;

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    tables: Tables,
    checker: Checker,
}

fn fixture(lines: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("clients.cidr"),
        "192.0.2.0/24 REJECT no thanks\n198.51.100.7 OK\n203.0.113.9 HOLD look\n",
    )
    .unwrap();
    std::fs::write(
        d.join("senders"),
        "spam.example REJECT\nboss@corp.example 550 5.7.0 Not the boss\nfree.example from_freemail\nhold@corp.example HOLD\ndrop@corp.example DISCARD bye\nnote@corp.example PREPEND X-Note: seen\n",
    )
    .unwrap();
    std::fs::write(
        d.join("logins"),
        "ceo@corp.example ceo\n@team.example alice, bob\n",
    )
    .unwrap();
    let text = format!(
        "myhostname = \"mail.example.org\"\nmydestination = \"example.org\"\n\
         relay_domains = \"relay.example\"\ndns_servers = \"127.0.0.1:9\"\n\
         smtpd_sender_login_maps = \"hash:{d}/logins\"\n{}",
        lines.replace("$DIR", &d.display().to_string()),
        d = d.display()
    );
    let cfg = d.join("pigeonpost.toml");
    std::fs::write(&cfg, text).unwrap();
    let config = crate::config::load(&LoadOptions {
        config_path: Some(cfg),
        env: vec![],
    })
    .unwrap()
    .config;
    let tables = Tables::open(&config).unwrap();
    let checker = Checker::new(&config).unwrap();
    Fixture {
        _dir: dir,
        config,
        tables,
        checker,
    }
}

struct Ask<'a> {
    client: &'a str,
    sender: &'a str,
    rcpt: &'a str,
    user: Option<&'a str>,
    mynetworks: bool,
}

const OUTSIDE: Ask = Ask {
    client: "203.0.113.1",
    sender: "a@b.example",
    rcpt: "user@example.org",
    user: None,
    mynetworks: false,
};

fn rcpt(f: &Fixture, a: &Ask) -> (Outcome, Effects) {
    let names = ClientNames::unknown();
    let facts = Facts {
        stage: Stage::Rcpt,
        client: format!("{}:40000", a.client).parse().unwrap(),
        server: "127.0.0.1:25".parse().unwrap(),
        names: &names,
        helo: Some("client.example"),
        esmtp: true,
        sender: Some(a.sender),
        recipient: Some(a.rcpt),
        recipient_count: 0,
        sasl_method: a.user.map(|_| "PLAIN"),
        sasl_user: a.user,
        tls: None,
        in_mynetworks: a.mynetworks,
        improper_pipelining: false,
        size: None,
        instance: "t1",
    };
    let unlisted = |_: &str, _: bool| None;
    let env = Env {
        config: &f.config,
        tables: &f.tables,
        checker: &f.checker,
        unlisted: &unlisted,
    };
    let mut fx = Effects::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(check(&env, &facts, &mut fx, Check::Rcpt));
    (out, fx)
}

fn text(o: &Outcome) -> String {
    match &o.result {
        Ok(()) => "ok".into(),
        Err(r) => String::from_utf8(r.to_bytes())
            .unwrap()
            .trim_end()
            .to_string(),
    }
}

#[test]
fn default_lists_keep_the_relay_rule() {
    let f = fixture("");
    assert_eq!(text(&rcpt(&f, &OUTSIDE).0), "ok");
    let out = rcpt(
        &f,
        &Ask {
            rcpt: "x@remote.example",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        text(&out),
        "554 5.7.1 <x@remote.example>: Relay access denied"
    );
    let out = rcpt(
        &f,
        &Ask {
            rcpt: "x@remote.example",
            user: Some("demo"),
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        out,
        Outcome {
            result: Ok(()),
            relay_permitted: true
        }
    );
    let out = rcpt(
        &f,
        &Ask {
            rcpt: "x@relay.example",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        out,
        Outcome {
            result: Ok(()),
            relay_permitted: false
        }
    );
}

#[test]
fn access_tables_answer_with_postfix_texts() {
    let f = fixture(
        "smtpd_restriction_classes = \"from_freemail\"\nfrom_freemail = \"reject_unauth_pipelining, defer\"\n\
         smtpd_client_restrictions = \"check_client_access cidr:$DIR/clients.cidr\"\n\
         smtpd_sender_restrictions = \"check_sender_access hash:$DIR/senders\"\n",
    );
    let out = rcpt(
        &f,
        &Ask {
            client: "192.0.2.5",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        text(&out),
        "554 5.7.1 <unknown[192.0.2.5]>: Client host rejected: no thanks"
    );
    let out = rcpt(
        &f,
        &Ask {
            sender: "x@mail.spam.example",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        text(&out),
        "554 5.7.1 <x@mail.spam.example>: Sender address rejected: Access denied"
    );
    let out = rcpt(
        &f,
        &Ask {
            sender: "boss@corp.example",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        text(&out),
        "550 5.7.0 <boss@corp.example>: Sender address rejected: Not the boss"
    );
    // A class named in a table: its own restrictions decide.
    let out = rcpt(
        &f,
        &Ask {
            sender: "j@free.example",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        text(&out),
        "450 4.7.1 <j@free.example>: Sender address rejected: Access denied"
    );
    // OK in the client list ends that list only: the sender list still rejects.
    let out = rcpt(
        &f,
        &Ask {
            client: "198.51.100.7",
            sender: "x@spam.example",
            ..OUTSIDE
        },
    )
    .0;
    assert!(
        text(&out).starts_with("554 5.7.1 <x@spam.example>"),
        "{}",
        text(&out)
    );
    // HOLD, DISCARD and PREPEND are recorded for the transaction.
    let (out, fx) = rcpt(
        &f,
        &Ask {
            client: "203.0.113.9",
            sender: "note@corp.example",
            ..OUTSIDE
        },
    );
    assert_eq!(text(&out), "ok");
    assert_eq!(
        fx.hold.as_deref(),
        Some("<unknown[203.0.113.9]>: Client host look")
    );
    assert_eq!(fx.prepend, ["X-Note: seen"]);
    let (out, fx) = rcpt(
        &f,
        &Ask {
            sender: "drop@corp.example",
            ..OUTSIDE
        },
    );
    assert_eq!(text(&out), "ok");
    assert_eq!(
        fx.discard.as_deref(),
        Some("<drop@corp.example>: Sender address bye")
    );
}

#[test]
fn warn_if_reject_and_defer_if_permit() {
    let f = fixture(
        "smtpd_client_restrictions = \"warn_if_reject check_client_access cidr:$DIR/clients.cidr, defer_if_permit\"\n",
    );
    // The cidr REJECT is only logged; defer_if_permit then defers the permit.
    let out = rcpt(
        &f,
        &Ask {
            client: "192.0.2.5",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        text(&out),
        "450 4.7.0 <unknown[192.0.2.5]>: Client host rejected: defer_if_permit requested"
    );
}

#[test]
fn dns_failures_never_reject() {
    // dns_servers points at a closed port: every lookup fails.
    let f = fixture(
        "smtpd_client_restrictions = \"reject_rbl_client zen.example\"\n\
         smtpd_sender_restrictions = \"reject_unknown_sender_domain\"\n",
    );
    let out = rcpt(&f, &OUTSIDE).0;
    // The RBL is skipped; the unknown sender domain turns the permit into a deferral.
    assert_eq!(
        text(&out),
        "450 4.1.8 <a@b.example>: Sender address rejected: Domain not found"
    );
}

#[test]
fn sender_login_maps() {
    let f = fixture("smtpd_sender_restrictions = \"reject_sender_login_mismatch\"\n");
    let ask = |sender, user| {
        rcpt(
            &f,
            &Ask {
                sender,
                user,
                ..OUTSIDE
            },
        )
        .0
    };
    assert_eq!(text(&ask("ceo@corp.example", Some("ceo"))), "ok");
    assert_eq!(text(&ask("x@team.example", Some("bob"))), "ok");
    assert_eq!(
        text(&ask("ceo@corp.example", Some("demo"))),
        "553 5.7.1 <ceo@corp.example>: Sender address rejected: not owned by user demo"
    );
    assert_eq!(
        text(&ask("someone@else.example", Some("demo"))),
        "553 5.7.1 <someone@else.example>: Sender address rejected: not owned by user demo"
    );
    assert_eq!(
        text(&ask("ceo@corp.example", None)),
        "553 5.7.1 <ceo@corp.example>: Sender address rejected: not logged in"
    );
    assert_eq!(text(&ask("anyone@else.example", None)), "ok");
}

#[test]
fn class_loops_are_a_server_error_not_a_crash() {
    let f = fixture(
        "smtpd_restriction_classes = \"a, b\"\na = \"b\"\nb = \"a\"\nsmtpd_client_restrictions = \"a\"\n",
    );
    assert_eq!(
        text(&rcpt(&f, &OUTSIDE).0),
        "451 4.3.5 Server configuration error"
    );
}

#[test]
fn defer_unauth_destination_is_454_as_in_postfix() {
    let f = fixture("smtpd_relay_restrictions = \"permit_mynetworks, defer_unauth_destination\"\n");
    let out = rcpt(
        &f,
        &Ask {
            rcpt: "x@remote.example",
            ..OUTSIDE
        },
    )
    .0;
    assert_eq!(
        text(&out),
        "454 4.7.1 <x@remote.example>: Relay access denied"
    );
}

#[test]
fn unknown_client_names_with_postfix_texts() {
    let f = fixture("smtpd_client_restrictions = \"reject_unknown_reverse_client_hostname, reject_unknown_client_hostname\"\nunknown_client_reject_code = \"550\"\n");
    assert_eq!(
        text(&rcpt(&f, &OUTSIDE).0),
        "550 5.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.1]"
    );
    let f = fixture("smtpd_client_restrictions = \"reject_unknown_client_hostname\"\n");
    assert_eq!(
        text(&rcpt(&f, &OUTSIDE).0),
        "450 4.7.25 Client host rejected: cannot find your hostname, [203.0.113.1]"
    );
}
