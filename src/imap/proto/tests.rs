//! Transcript tests of the session: client bytes in, server bytes and
//! actions out.

use super::*;

fn cfg() -> SessionConfig {
    SessionConfig {
        hostname: "mail.example.com".into(),
        login: LoginPolicy {
            tls_available: true,
            tls_active: false,
            local_client: false,
            disable_plaintext_auth: true,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login],
            auth_requires_tls: false,
        },
        max_errors: 5,
        max_message: 1000,
        quota: false,
    }
}

fn out(s: &mut Session) -> String {
    String::from_utf8(s.take_output()).unwrap()
}

/// Feeds `input` and collects actions until the session needs input.
fn run(s: &mut Session, input: &str) -> (String, Vec<Action>) {
    s.feed(input.as_bytes());
    let mut actions = Vec::new();
    loop {
        match s.next_action() {
            Action::NeedInput => break,
            a @ (Action::Close | Action::Idling) => {
                actions.push(a);
                break;
            }
            a => {
                let wait = matches!(
                    a,
                    Action::Run { .. }
                        | Action::CheckAuth(_)
                        | Action::StartTls
                        | Action::CancelUpdate { .. }
                );
                actions.push(a);
                if wait {
                    break;
                }
            }
        }
    }
    (out(s), actions)
}

fn logged_in(cfg: SessionConfig) -> Session {
    let mut s = Session::new(cfg);
    out(&mut s);
    let (_, a) = run(&mut s, "a LOGIN john secret\r\n");
    assert!(matches!(a[0], Action::CheckAuth(_)));
    s.auth_done(AuthOutcome::Ok("john".into()));
    out(&mut s);
    s
}

#[test]
fn greeting_and_capabilities_before_tls() {
    let mut s = Session::new(cfg());
    let greeting = out(&mut s);
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 "),
        "{greeting}"
    );
    assert!(greeting.contains("STARTTLS") && greeting.contains("LOGINDISABLED"));
    assert!(
        !greeting.contains("AUTH=PLAIN"),
        "no plaintext mechanisms before TLS"
    );
    let (o, _) = run(&mut s, "c1 CAPABILITY\r\n");
    assert!(o.starts_with("* CAPABILITY IMAP4rev1"), "{o}");
    assert!(o.ends_with("c1 OK Capability completed.\r\n"));
}

#[test]
fn login_is_refused_before_tls_but_not_after() {
    let mut s = Session::new(cfg());
    out(&mut s);
    let (o, a) = run(&mut s, "a LOGIN john secret\r\n");
    assert!(o.starts_with("a NO [PRIVACYREQUIRED]"), "{o}");
    assert!(a.is_empty());
    let (o, a) = run(&mut s, "b STARTTLS\r\n");
    assert_eq!(o, "b OK Begin TLS negotiation now.\r\n");
    assert!(matches!(a[0], Action::StartTls));
    s.tls_started();
    let (o, _) = run(&mut s, "c CAPABILITY\r\n");
    assert!(
        o.contains("AUTH=PLAIN") && !o.contains("LOGINDISABLED") && !o.contains("STARTTLS"),
        "{o}"
    );
    let (_, a) = run(&mut s, "d LOGIN john \"pass word\"\r\n");
    match &a[0] {
        Action::CheckAuth(Credentials::Plain {
            authcid, password, ..
        }) => {
            assert_eq!(authcid, "john");
            assert_eq!(password, b"pass word");
        }
        other => panic!("{other:?}"),
    }
    s.auth_done(AuthOutcome::Ok("john".into()));
    let o = out(&mut s);
    assert!(o.starts_with("d OK [CAPABILITY IMAP4rev1"), "{o}");
    assert_eq!(s.state(), State::Authenticated);
}

#[test]
fn loopback_clients_may_log_in_without_tls() {
    let mut c = cfg();
    c.login.local_client = true;
    let mut s = Session::new(c);
    assert!(!out(&mut s).contains("LOGINDISABLED"));
    let (_, a) = run(&mut s, "a LOGIN john secret\r\n");
    assert!(matches!(a[0], Action::CheckAuth(_)));
    s.auth_done(AuthOutcome::Fail);
    assert_eq!(
        out(&mut s),
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert_eq!(s.state(), State::NotAuthenticated);
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let mut c = cfg();
    c.login.tls_active = true;
    let mut s = Session::new(c.clone());
    out(&mut s);
    // base64("\0john\0secret")
    let (_, a) = run(&mut s, "a AUTHENTICATE PLAIN AGpvaG4Ac2VjcmV0\r\n");
    assert!(
        matches!(&a[0], Action::CheckAuth(Credentials::Plain { authcid, .. }) if authcid == "john")
    );

    let mut s = Session::new(c);
    out(&mut s);
    let (o, a) = run(&mut s, "a AUTHENTICATE PLAIN\r\n");
    assert_eq!(o, "+ \r\n");
    assert!(a.is_empty());
    let (_, a) = run(&mut s, "AGpvaG4Ac2VjcmV0\r\n");
    assert!(matches!(&a[0], Action::CheckAuth(_)));
    s.auth_done(AuthOutcome::Ok("john".into()));
    assert!(out(&mut s).starts_with("a OK"));

    let mut s = Session::new(cfg_tls());
    out(&mut s);
    run(&mut s, "b AUTHENTICATE PLAIN\r\n");
    let (o, _) = run(&mut s, "*\r\n");
    assert_eq!(o, "b BAD Authentication aborted by client.\r\n");
}

fn cfg_tls() -> SessionConfig {
    let mut c = cfg();
    c.login.tls_active = true;
    c
}

#[test]
fn mailbox_commands_need_the_right_state() {
    let mut s = Session::new(cfg_tls());
    out(&mut s);
    let (o, a) = run(&mut s, "a SELECT INBOX\r\n");
    assert_eq!(o, "a BAD Error in IMAP command SELECT: Not logged in.\r\n");
    assert!(a.is_empty());
    let mut s = logged_in(cfg_tls());
    let (o, _) = run(&mut s, "b FETCH 1 FLAGS\r\n");
    assert_eq!(
        o,
        "b BAD Error in IMAP command FETCH: No mailbox selected.\r\n"
    );
    let (_, a) = run(&mut s, "c SELECT INBOX\r\n");
    match &a[0] {
        Action::Run { tag, command, .. } => {
            assert_eq!(tag, "c");
            assert!(matches!(**command, CommandBody::Select { .. }));
        }
        other => panic!("{other:?}"),
    }
    s.respond(b"c OK [READ-WRITE] Select completed.\r\n");
    s.command_done(State::Selected { read_only: false });
    assert_eq!(out(&mut s), "c OK [READ-WRITE] Select completed.\r\n");
    let (_, a) = run(&mut s, "d UID FETCH 1:* (FLAGS)\r\n");
    assert!(
        matches!(&a[0], Action::Run { command, .. } if matches!(**command, CommandBody::Fetch { uid: true, .. }))
    );
    s.respond(b"d OK Fetch completed.\r\n");
    s.command_done(State::Selected { read_only: false });
    out(&mut s);
    // RFC 5161 §3.1: ENABLE only before a mailbox is selected.
    let (o, _) = run(&mut s, "e ENABLE UTF8=ACCEPT\r\n");
    assert_eq!(
        o,
        "e BAD ENABLE is only valid before a mailbox is selected.\r\n"
    );
    assert!(!s.utf8_enabled());
}

#[test]
fn literals_get_a_continuation_and_literal_plus_does_not() {
    let mut s = logged_in(cfg_tls());
    let (o, a) = run(&mut s, "a APPEND INBOX {5}\r\n");
    assert_eq!(o, "+ OK\r\n");
    assert!(a.is_empty());
    let (_, a) = run(&mut s, "hello\r\n");
    assert!(
        matches!(&a[0], Action::Run { command, .. } if matches!(**command, CommandBody::Append { .. }))
    );
    s.respond(b"a OK Append completed.\r\n");
    s.command_done(State::Authenticated);
    out(&mut s);
    let (o, a) = run(&mut s, "b APPEND INBOX {5+}\r\nhello\r\n");
    assert!(!o.contains('+'), "{o}");
    assert!(matches!(&a[0], Action::Run { .. }));
}

#[test]
fn oversized_literals_are_refused_and_the_session_goes_on() {
    let mut s = logged_in(cfg_tls());
    let (o, a) = run(&mut s, "a APPEND INBOX {5000}\r\n");
    assert_eq!(o, "a NO [TOOBIG] Literal too large.\r\n");
    assert!(a.is_empty());
    let (o, _) = run(&mut s, "b NOOP\r\n");
    assert_eq!(o, "b OK NOOP completed.\r\n");
    // A command pipelined in the same read after a refused literal is
    // answered at once, not left waiting for more input.
    let (o, _) = run(&mut s, "c SEARCH TEXT {70000}\r\nd NOOP\r\n");
    assert_eq!(
        o,
        "c NO [TOOBIG] Literal too large.\r\nd OK NOOP completed.\r\n"
    );
}

#[test]
fn malformed_commands_get_bad_and_too_many_end_the_session() {
    let mut s = logged_in(cfg_tls());
    let (o, _) = run(&mut s, "a FETCH\r\n");
    assert_eq!(
        o,
        "a BAD Error in IMAP command FETCH: Invalid arguments.\r\n"
    );
    let (o, _) = run(&mut s, "b FROBNICATE\r\n");
    assert_eq!(o, "b BAD Error in IMAP command received by server.\r\n");
    let (o, _) = run(&mut s, "\r\n");
    assert_eq!(o, "");
    let (o, _) = run(&mut s, "c NOOP\r\n");
    assert_eq!(o, "c OK NOOP completed.\r\n");
    let (o, a) = run(&mut s, "d X\r\ne X\r\nf X\r\n");
    assert!(
        o.ends_with("* BYE Too many invalid IMAP commands.\r\n"),
        "{o}"
    );
    assert!(matches!(a.last(), Some(Action::Close)));
}

#[test]
fn idle_ends_with_done() {
    let mut s = logged_in(cfg_tls());
    let (_, a) = run(&mut s, "a IDLE\r\n");
    assert!(matches!(&a[0], Action::Run { command, .. } if matches!(**command, CommandBody::Idle)));
    // The I/O layer finishes the command, then starts idling.
    s.command_done(State::Authenticated);
    s.idle_started("a".into());
    assert_eq!(out(&mut s), "+ idling\r\n");
    assert!(matches!(s.next_action(), Action::Idling));
    s.respond(b"* 3 EXISTS\r\n");
    let (o, _) = run(&mut s, "DONE\r\n");
    assert_eq!(o, "* 3 EXISTS\r\na OK Idle completed.\r\n");
}

#[test]
fn logout_and_namespace_and_id() {
    let mut s = logged_in(cfg_tls());
    let (o, _) = run(&mut s, "n NAMESPACE\r\n");
    assert_eq!(
        o,
        "* NAMESPACE ((\"\" \".\")) NIL NIL\r\nn OK Namespace completed.\r\n"
    );
    let (o, _) = run(&mut s, "i ID (\"name\" \"imaplib\")\r\n");
    assert!(o.starts_with("* ID (\"name\" \"pigeonpost\")\r\n"), "{o}");
    let (o, _) = run(&mut s, "e ENABLE UTF8=ACCEPT\r\n");
    assert_eq!(o, "* ENABLED UTF8=ACCEPT\r\ne OK Enabled.\r\n");
    assert!(s.utf8_enabled());
    let (o, a) = run(&mut s, "z LOGOUT\r\n");
    assert_eq!(o, "* BYE Logging out\r\nz OK Logout completed.\r\n");
    assert!(matches!(a[0], Action::Close));
}

#[test]
fn list_patterns_parse() {
    for cmd in [
        "a LIST \"\" Work*\r\n",
        "a LIST \"\" \"Work*\"\r\n",
        "a LIST \"\" *\r\n",
        "a LIST \"\" %\r\n",
        "a LIST \"\" \"\"\r\n",
    ] {
        let mut s = logged_in(cfg_tls());
        let (o, a) = run(&mut s, cmd);
        assert!(matches!(a.first(), Some(Action::Run { .. })), "{cmd}: {o}");
    }
}

#[test]
fn extended_list_is_parsed_here_and_needs_login() {
    let mut s = Session::new(cfg_tls());
    out(&mut s);
    let (o, a) = run(&mut s, "a LIST (SUBSCRIBED) \"\" *\r\n");
    assert_eq!(o, "a BAD Error in IMAP command LIST: Not logged in.\r\n");
    assert!(a.is_empty());
    let mut s = logged_in(cfg_tls());
    let (_, a) = run(
        &mut s,
        "b LIST (SPECIAL-USE) \"\" (\"*\") RETURN (STATUS (MESSAGES))\r\n",
    );
    match &a[0] {
        Action::List { tag, list } => {
            assert_eq!(tag, "b");
            assert!(list.select_special_use);
            assert_eq!(list.return_status, Some(vec!["MESSAGES".to_string()]));
        }
        other => panic!("{other:?}"),
    }
    s.respond(b"b OK List completed.\r\n");
    s.command_done(State::Authenticated);
    out(&mut s);
    let (o, _) = run(&mut s, "c LIST (NOPE) \"\" *\r\n");
    assert_eq!(
        o,
        "c BAD Error in IMAP command LIST: unknown LIST selection option NOPE.\r\n"
    );
}

/// The options a [`Action::Run`] carries.
fn run_options(s: &mut Session, input: &str) -> RunOptions {
    let (o, a) = run(s, input);
    match a.into_iter().next() {
        Some(Action::Run { options, .. }) => {
            s.command_done(State::Selected { read_only: false });
            options
        }
        other => panic!("{input}: {other:?} / {o}"),
    }
}

#[test]
fn imap4rev2_search_return_and_saved_result() {
    let mut s = logged_in(cfg_tls());
    s.state = State::Selected { read_only: false };
    // IMAP4rev1 until ENABLEd: a plain SEARCH stays a SEARCH.
    assert_eq!(
        run_options(&mut s, "a SEARCH ALL\r\n"),
        RunOptions::default()
    );
    let o = run_options(&mut s, "b UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n");
    let r = o.search_return.unwrap();
    assert!(r.min && r.count && !r.all && !o.saved);
    let o = run_options(&mut s, "c UID FETCH $ (FLAGS)\r\n");
    assert!(o.saved && o.search_return.is_none());
    let (o, a) = run(&mut s, "d SEARCH RETURN (FOO) ALL\r\n");
    assert!(a.is_empty());
    assert_eq!(
        o,
        "d BAD Error in IMAP command SEARCH: unknown RETURN option FOO.\r\n"
    );
    // A rewritten command that doesn't parse afterwards is BAD too.
    let (o, _) = run(&mut s, "e FETCH $\r\n");
    assert!(o.starts_with("e BAD "), "{o}");

    s.command_done(State::Authenticated);
    let (o, _) = run(&mut s, "f ENABLE IMAP4rev2\r\n");
    assert_eq!(o, "* ENABLED IMAP4rev2\r\nf OK Enabled.\r\n");
    s.command_done(State::Selected { read_only: false });
    let o = run_options(&mut s, "g SEARCH ALL\r\n");
    assert!(o.rev2 && o.utf8, "rev2 mailbox names are UTF-8");
    assert_eq!(o.search_return, Some(rev2::SearchReturn::ALL));
    // Only SEARCH gets the default.
    let o = run_options(&mut s, "h FETCH 1 (FLAGS)\r\n");
    assert_eq!(o.search_return, None);
    // What imap-codec parses is taken as it is: here `$` is the text
    // searched for, not the saved result.
    let o = run_options(&mut s, "k SEARCH SUBJECT $\r\n");
    assert!(!o.saved);
    // The rewrite of one command never leaks into the next.
    let (_, _) = run(&mut s, "i CAPABILITY\r\n");
    let o = run_options(&mut s, "j FETCH 1 (FLAGS)\r\n");
    assert!(!o.saved);
}

#[test]
fn enable_condstore_and_qresync() {
    let mut s = logged_in(cfg_tls());
    // RFC 7162 §3.1 and §3.2.3: both advertised; QRESYNC implies CONDSTORE
    // (the ENABLED answer names what was asked for).
    let caps = s.capabilities();
    assert!(
        caps.contains(" CONDSTORE") && caps.contains(" QRESYNC"),
        "{caps}"
    );
    let (o, _) = run(&mut s, "e ENABLE QRESYNC\r\n");
    assert_eq!(o, "* ENABLED QRESYNC\r\ne OK Enabled.\r\n");
    let (o, _) = run(&mut s, "f ENABLE CONDSTORE QRESYNC\r\n");
    assert_eq!(o, "* ENABLED\r\nf OK Enabled.\r\n");
    let o = run_options(&mut s, "g SELECT INBOX (QRESYNC (1 2 1:9 (1:2 3:4)))\r\n");
    assert!(o.condstore && o.qresync);
    let mut t = logged_in(cfg_tls());
    let (o, _) = run(&mut t, "e ENABLE CONDSTORE\r\n");
    assert_eq!(o, "* ENABLED CONDSTORE\r\ne OK Enabled.\r\n");
    let o = run_options(&mut t, "h SELECT INBOX (CONDSTORE)\r\n");
    assert!(o.condstore && !o.qresync);
    // The RFC 7162 syntax reaches the backend parsed.
    let (_, a) = run(
        &mut t,
        "i UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)\r\n",
    );
    assert!(matches!(a.first(), Some(Action::Run { .. })));
}

#[test]
fn context_update_and_cancelupdate() {
    let mut s = logged_in(cfg_tls());
    // RFC 5267 §5: CANCELUPDATE is a command of the selected state.
    let (o, a) = run(&mut s, "a CANCELUPDATE \"x\"\r\n");
    assert!(a.is_empty());
    assert_eq!(
        o,
        "a BAD Error in IMAP command CANCELUPDATE: No mailbox selected.\r\n"
    );
    s.state = State::Selected { read_only: false };
    let o = run_options(&mut s, "b SEARCH RETURN (UPDATE) UNSEEN\r\n");
    let r = o.search_return.unwrap();
    assert!(r.update && !r.all);
    let o = run_options(
        &mut s,
        "c UID SORT RETURN (CONTEXT UPDATE COUNT) (SUBJECT) UTF-8 ALL\r\n",
    );
    let r = o.search_return.unwrap();
    assert!(r.update && r.count && !r.all);
    let (_, a) = run(&mut s, "d CANCELUPDATE \"b\" \"c\"\r\n");
    match a.as_slice() {
        [Action::CancelUpdate { tag, tags }] => {
            assert_eq!(tag, "d");
            assert_eq!(tags, &["b".to_string(), "c".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    s.command_done(State::Selected { read_only: false });
    let (o, a) = run(&mut s, "e CANCELUPDATE b\r\n");
    assert!(a.is_empty());
    assert_eq!(
        o,
        "e BAD Error in IMAP command CANCELUPDATE: tags must be quoted strings.\r\n"
    );
    let (o, _) = run(&mut s, "f CANCELUPDATE\r\n");
    assert_eq!(
        o,
        "f BAD Error in IMAP command CANCELUPDATE: missing tag.\r\n"
    );
}

#[test]
fn sort_thread_and_esort_reach_the_backend() {
    let mut s = logged_in(cfg_tls());
    let caps = s.capabilities();
    for c in [
        "SORT",
        "SORT=DISPLAY",
        "ESORT",
        "THREAD=ORDEREDSUBJECT",
        "THREAD=REFERENCES",
        "CONTEXT=SEARCH",
        "CONTEXT=SORT",
    ] {
        assert!(caps.split(' ').any(|w| w == c), "{c}: {caps}");
    }
    // Only with a mailbox selected (RFC 5256 §3, §4).
    let (o, a) = run(&mut s, "a SORT (DATE) UTF-8 ALL\r\n");
    assert!(a.is_empty());
    assert_eq!(
        o,
        "a BAD Error in IMAP command SORT: No mailbox selected.\r\n"
    );
    s.state = State::Selected { read_only: false };
    assert_eq!(
        run_options(&mut s, "b UID SORT (REVERSE DATE) UTF-8 ALL\r\n"),
        RunOptions::default()
    );
    assert_eq!(
        run_options(&mut s, "c THREAD REFERENCES UTF-8 ALL\r\n"),
        RunOptions::default()
    );
    let o = run_options(
        &mut s,
        "d SORT RETURN (MAX PARTIAL 1:5) (SUBJECT) UTF-8 ALL\r\n",
    );
    let r = o.search_return.unwrap();
    assert!(r.max && !r.all && r.partial == Some((1, 5)));
    let (o, _) = run(
        &mut s,
        "e UID SORT RETURN (PARTIAL 0:5) (SUBJECT) UTF-8 ALL\r\n",
    );
    assert_eq!(
        o,
        "e BAD Error in IMAP command SORT: PARTIAL needs a range n:m.\r\n"
    );
}

#[test]
fn quota_is_offered_only_when_configured_and_its_commands_go_to_the_store() {
    let mut s = logged_in(cfg_tls());
    let (o, _) = run(&mut s, "c CAPABILITY\r\n");
    assert!(!o.contains("QUOTA"), "{o}");
    let mut c = cfg_tls();
    c.quota = true;
    let mut s = logged_in(c);
    let (o, _) = run(&mut s, "c CAPABILITY\r\n");
    assert!(
        o.contains(" QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE "),
        "{o}"
    );
    // RFC 9208 §4.3: valid in the authenticated state, parsed by imap-codec.
    for (line, want) in [
        ("q GETQUOTAROOT INBOX\r\n", "GETQUOTAROOT"),
        ("g GETQUOTA \"User quota\"\r\n", "GETQUOTA"),
        ("s SETQUOTA \"User quota\" (STORAGE 512)\r\n", "SETQUOTA"),
    ] {
        let (o, a) = run(&mut s, line);
        match a.into_iter().next() {
            Some(Action::Run { command, .. }) => assert_eq!(command.name(), want),
            other => panic!("{line}: {other:?} / {o}"),
        }
        s.command_done(State::Authenticated);
    }
    let (o, _) = run(&mut s, "b GETQUOTA\r\n");
    assert_eq!(
        o,
        "b BAD Error in IMAP command GETQUOTA: Invalid arguments.\r\n"
    );
}

/// The one message of a CATENATE APPEND that reached the backend, or the
/// session's answer when none did.
fn catenate(input: &str) -> Result<Vec<multiappend::AppendMessage>, String> {
    let mut s = logged_in(cfg_tls());
    let (o, actions) = run(&mut s, input);
    match actions.into_iter().next() {
        Some(Action::MultiAppend { tag, append }) => {
            assert_eq!(tag, "c");
            assert_eq!(append.mailbox, "INBOX");
            Ok(append.messages)
        }
        Some(other) => panic!("{other:?}"),
        None => Err(o),
    }
}

#[test]
fn catenate_parts_reach_the_backend_in_order() {
    use multiappend::{AppendData, CatPart};
    let url = "/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.MIME";
    // Synchronizing literals get their continuation; LITERAL+ doesn't.
    let mut s = logged_in(cfg_tls());
    let (o, a) = run(&mut s, "c APPEND INBOX (\\Seen) CATENATE (TEXT {4}\r\n");
    assert_eq!(o, "+ OK\r\n");
    assert!(a.is_empty());
    let (o, a) = run(
        &mut s,
        &format!("ab\r\n URL \"{url}\" URL {{6+}}\r\n;UID=1 TEXT ~{{3}}\r\n"),
    );
    assert_eq!(o, "+ OK\r\n");
    assert!(a.is_empty());
    let (o, a) = run(&mut s, "x\0y)\r\n");
    assert_eq!(o, "");
    let Some(Action::MultiAppend { tag, append }) = a.into_iter().next() else {
        panic!("no MultiAppend");
    };
    assert_eq!(tag, "c");
    assert_eq!(append.messages.len(), 1);
    assert_eq!(append.messages[0].flags, ["\\Seen"]);
    assert_eq!(
        append.messages[0].data,
        AppendData::Catenate(vec![
            CatPart::Text(b"ab\r\n".to_vec()),
            CatPart::Url(url.into()),
            CatPart::Url(";UID=1".into()),
            // A literal8 may hold NUL (BINARY is offered).
            CatPart::Text(b"x\0y".to_vec()),
        ])
    );
    // An atom URL; CATENATE within MULTIAPPEND, next to a plain message.
    let m = catenate(
        "c APPEND INBOX {3+}\r\nabc \"07-Feb-1994 22:43:04 -0800\" catenate (url /INBOX/;UID=1) ~{2+}\r\nhi\r\n",
    )
    .unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].data, AppendData::Literal(b"abc".to_vec()));
    assert_eq!(m[1].date.as_deref(), Some("07-Feb-1994 22:43:04 -0800"));
    assert_eq!(
        m[1].data,
        AppendData::Catenate(vec![CatPart::Url("/INBOX/;UID=1".into())])
    );
    assert_eq!(m[2].data, AppendData::Literal(b"hi".to_vec()));
}

#[test]
fn malformed_catenate_is_bad() {
    for (input, why) in [
        ("c APPEND INBOX CATENATE ()\r\n", "Empty CATENATE list"),
        (
            "c APPEND INBOX CATENATE URL \"/INBOX/;UID=1\"\r\n",
            "expected '('",
        ),
        (
            "c APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\"\r\n",
            "missing ')'",
        ),
        (
            "c APPEND INBOX CATENATE (TEXT {2+}\r\nab\r\n",
            "missing ')'",
        ),
        (
            "c APPEND INBOX CATENATE (BODY \"/INBOX/;UID=1\")\r\n",
            "unknown CATENATE part",
        ),
        (
            "c APPEND INBOX CATENATE (TEXT \"abc\")\r\n",
            "TEXT needs a literal",
        ),
        ("c APPEND INBOX CATENATE (URL)\r\n", "URL needs a string"),
        (
            "c APPEND INBOX CATENATE (URL (x))\r\n",
            "URL needs a string",
        ),
        ("c APPEND INBOX CATENATE (URL \"\")\r\n", "empty URL"),
        (
            "c APPEND INBOX CATENATE (TEXT {3+}\r\na\0b)\r\n",
            "NUL in a literal",
        ),
        ("c APPEND INBOX CATENATE\r\n", "expected '('"),
        (
            "c APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\") junk\r\n",
            "expected a message literal",
        ),
    ] {
        let o = catenate(input).unwrap_err();
        assert!(
            o.starts_with("c BAD Error in IMAP command APPEND: ") && o.contains(why),
            "{input:?}: {o}"
        );
    }
    // An unterminated quoted URL: the tokenizer gives up, so imap-codec's
    // verdict stands.
    let o = catenate("c APPEND INBOX CATENATE (URL \"/INBOX)\r\n").unwrap_err();
    assert!(o.starts_with("c BAD "), "{o}");
}

#[test]
fn catenate_is_offered_after_login() {
    let mut s = logged_in(cfg_tls());
    let (o, _) = run(&mut s, "c CAPABILITY\r\n");
    assert!(
        o.contains(" CATENATE ") && o.contains(" URL-PARTIAL "),
        "{o}"
    );
    let mut s = Session::new(cfg_tls());
    let (o, _) = run(&mut s, "c CAPABILITY\r\n");
    assert!(!o.contains("CATENATE"), "{o}");
}
