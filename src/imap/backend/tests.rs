//! Transcript tests for the commands: each command line goes through
//! imap-codec's parser and [`Backend::run`] (or [`Backend::list_extended`])
//! on a temporary Maildir, and the exact response bytes are checked.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::CommandCodec;

use super::*;
use crate::imap::proto::list_ext;
use crate::imap::proto::rev2::SearchReturn;

const ALPHA: &str = "From: Ann <ann@example.org>\r\n\
    Subject: alpha\r\n\
    To: bob@example.org\r\n\
    \r\n\
    first body\r\n";
const BETA: &str = "From: bob@example.org\r\nSubject: beta\r\n\r\nsecond\r\n";
const GAMMA: &str = "Subject: gamma\r\n\r\nthird, and longer\r\n";

/// One session on a Maildir, and what its next command runs with.
struct Client {
    backend: Backend,
    state: State,
    opts: RunOptions,
}

thread_local! {
    /// One server's open mailboxes per test (each test runs on its own
    /// thread): the clients of a test are sessions of the same server.
    static MAILBOXES: Arc<Mailboxes> =
        Mailboxes::new(crate::store::notify::Notifier::new());
}

impl Client {
    fn new(dir: &Path) -> Client {
        Client {
            backend: Backend::new(dir.to_path_buf(), MAILBOXES.with(Arc::clone)),
            state: State::Authenticated,
            opts: RunOptions::default(),
        }
    }

    /// Runs one command line (with any literal inline), as the session
    /// would hand it over: the responses, as text.
    fn run(&mut self, line: &str) -> String {
        let (rest, cmd) = CommandCodec::default()
            .decode(line.as_bytes())
            .unwrap_or_else(|e| panic!("{line:?}: {e:?}"));
        assert!(rest.is_empty(), "{line:?}");
        let tag = cmd.tag.as_ref().to_string();
        let (out, state) = self
            .backend
            .run(&tag, cmd.body.into_static(), self.state, &self.opts);
        self.state = state;
        String::from_utf8(out).unwrap()
    }

    /// A client of another server process (a restart): mailboxes not
    /// shared with this test's other clients.
    fn of_new_process(dir: &Path) -> Client {
        let mut c = Client::new(dir);
        c.backend = Backend::new(
            dir.to_path_buf(),
            Mailboxes::new(crate::store::notify::Notifier::new()),
        );
        c
    }

    /// A STATUS line as the session tries it first: answered from kept
    /// counts, or `None`.
    fn status_from_cache(&mut self, line: &str) -> Option<String> {
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).unwrap();
        let tag = cmd.tag.as_ref().to_string();
        let out = self
            .backend
            .status_from_cache(&tag, &cmd.body, &self.opts)?;
        Some(String::from_utf8(out).unwrap())
    }

    /// An extended LIST, which the session parses itself.
    fn list_extended(&mut self, line: &str) -> String {
        let (tag, list) = list_ext::parse(line.as_bytes()).expect("an extended LIST");
        let out = self
            .backend
            .list_extended(&tag, &list.unwrap(), self.opts.utf8);
        String::from_utf8(out).unwrap()
    }
}

/// `{n}` and the data, for a command line.
fn literal(data: &str) -> String {
    format!("{{{}}}\r\n{data}", data.len())
}

/// A Maildir whose INBOX holds ALPHA (\Seen), BETA and GAMMA (UIDs 1 to
/// 3), and folders `Archive`, `Work` and `Work.Projects`.
fn maildir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Maildir");
    let root = MaildirRoot::new(&dir);
    let inbox = root.inbox().unwrap();
    let date = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (msg, flags) in [
        (ALPHA, Flags::SEEN),
        (BETA, Flags::empty()),
        (GAMMA, Flags::empty()),
    ] {
        inbox
            .append(msg.as_bytes(), flags, &[], Some(date))
            .unwrap();
    }
    for name in ["Archive", "Work", "Work.Projects"] {
        root.create_folder(name).unwrap();
    }
    (tmp, dir)
}

fn uidvalidity(dir: &Path, name: &str) -> u32 {
    MaildirRoot::new(dir).open(name).unwrap().uidvalidity()
}

/// SELECT's answer for the fixture INBOX, with `recent` messages \Recent.
fn selected(v: u32, exists: u32, recent: u32, next: u32) -> String {
    format!(
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
         * {exists} EXISTS\r\n\
         * {recent} RECENT\r\n\
         * OK [UNSEEN 2] First unseen.\r\n\
         * OK [UIDVALIDITY {v}] UIDs valid\r\n\
         * OK [UIDNEXT {next}] Predicted next UID\r\n"
    )
}

#[test]
fn select_examine_close_and_recent() {
    let (_tmp, dir) = maildir();
    let v = uidvalidity(&dir, "INBOX");
    let mut c = Client::new(&dir);
    assert_eq!(
        c.run("a1 SELECT INBOX\r\n"),
        selected(v, 3, 3, 4) + "a1 OK [READ-WRITE] Select completed.\r\n"
    );
    assert_eq!(c.state, State::Selected { read_only: false });
    // The first read-write session claimed \Recent: none for the next.
    let mut other = Client::new(&dir);
    assert_eq!(
        other.run("b1 EXAMINE INBOX\r\n"),
        selected(v, 3, 0, 4) + "b1 OK [READ-ONLY] Examine completed.\r\n"
    );
    assert_eq!(other.state, State::Selected { read_only: true });
    assert_eq!(
        other.run("b2 UNSELECT\r\n"),
        "b2 OK Unselect completed.\r\n"
    );
    assert_eq!(other.state, State::Authenticated);
    // CLOSE expunges the \Deleted messages, silently.
    c.run("a2 STORE 3 +FLAGS.SILENT (\\Deleted)\r\n");
    assert_eq!(c.run("a3 CLOSE\r\n"), "a3 OK Close completed.\r\n");
    assert_eq!(c.state, State::Authenticated);
    assert_eq!(
        c.run("a4 STATUS INBOX (MESSAGES)\r\n"),
        "* STATUS INBOX (MESSAGES 2)\r\na4 OK Status completed.\r\n"
    );
    // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
    c.run("a5 SELECT INBOX\r\n");
    // RFC 7162 §3.2.11: the implicit close of INBOX is marked [CLOSED].
    assert_eq!(
        c.run("a6 SELECT Nope\r\n"),
        "* OK [CLOSED] Previous mailbox closed.\r\na6 NO [NONEXISTENT] Mailbox doesn't exist.\r\n"
    );
    assert_eq!(c.state, State::Authenticated);
}

#[test]
fn select_under_imap4rev2_sends_list_not_recent() {
    let (_tmp, dir) = maildir();
    let v = uidvalidity(&dir, "INBOX");
    let mut c = Client::new(&dir);
    c.opts.rev2 = true;
    c.opts.utf8 = true;
    let want = selected(v, 3, 3, 4).replace("* 3 RECENT\r\n", "* LIST () \".\" INBOX\r\n");
    assert_eq!(
        c.run("a1 SELECT INBOX\r\n"),
        want + "a1 OK [READ-WRITE] Select completed.\r\n"
    );
}

#[test]
fn fetch_flags_uid_and_header_fields() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    assert_eq!(
        c.run("a2 FETCH 1:* (FLAGS UID)\r\n"),
        "* 1 FETCH (FLAGS (\\Seen \\Recent) UID 1)\r\n\
         * 2 FETCH (FLAGS (\\Recent) UID 2)\r\n\
         * 3 FETCH (FLAGS (\\Recent) UID 3)\r\n\
         a2 OK Fetch completed.\r\n"
    );
    assert_eq!(
        c.run("a3 UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject From)])\r\n"),
        "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (Subject From)] {47}\r\n\
         From: Ann <ann@example.org>\r\n\
         Subject: alpha\r\n\
         \r\n)\r\n\
         a3 OK Fetch completed.\r\n"
    );
    // Without PEEK the body fetch sets \Seen, and says so (RFC 3501 §6.4.5).
    assert_eq!(
        c.run("a4 FETCH 2 (RFC822.SIZE BODY[TEXT])\r\n"),
        "* 2 FETCH (RFC822.SIZE 48 BODY[TEXT] {8}\r\nsecond\r\n FLAGS (\\Seen \\Recent))\r\n\
         a4 OK Fetch completed.\r\n"
    );
    // A sequence number past the end is BAD, a UID past the end is nothing.
    assert_eq!(
        c.run("a5 FETCH 4 FLAGS\r\n"),
        "a5 BAD Error in IMAP command FETCH: Invalid messageset.\r\n"
    );
    assert_eq!(
        c.run("a6 UID FETCH 9 FLAGS\r\n"),
        "a6 OK Fetch completed.\r\n"
    );
}

/// A whole message as a literal, in the item order asked for; NUL bytes
/// (which a literal can't hold) dropped; \Seen set by BODY[] but not by
/// BODY.PEEK[].
#[test]
fn fetch_whole_message_in_every_position() {
    let (_tmp, dir) = maildir();
    let nul = "Subject: nul\r\n\r\na\0b\r\n";
    MaildirRoot::new(&dir)
        .inbox()
        .unwrap()
        .append(nul.as_bytes(), Flags::empty(), &[], None)
        .unwrap();
    let mut c = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    let beta = format!("{{{}}}\r\n{BETA}", BETA.len());
    assert_eq!(
        c.run("a2 UID FETCH 2 (UID RFC822.SIZE BODY.PEEK[])\r\n"),
        format!(
            "* 2 FETCH (UID 2 RFC822.SIZE {} BODY[] {beta})\r\na2 OK Fetch completed.\r\n",
            BETA.len()
        )
    );
    assert_eq!(
        c.run("a3 FETCH 2 (BODY.PEEK[] UID)\r\n"),
        format!("* 2 FETCH (BODY[] {beta} UID 2)\r\na3 OK Fetch completed.\r\n")
    );
    assert_eq!(
        c.run("a4 FETCH 2 BODY.PEEK[]\r\n"),
        format!("* 2 FETCH (BODY[] {beta})\r\na4 OK Fetch completed.\r\n")
    );
    assert_eq!(
        c.run("a5 FETCH 4 (BODY.PEEK[])\r\n"),
        format!(
            "* 4 FETCH (BODY[] {{{}}}\r\n{})\r\na5 OK Fetch completed.\r\n",
            nul.len() - 1,
            nul.replace('\0', "")
        )
    );
    assert_eq!(
        c.run("a6 FETCH 2 (BODY[])\r\n"),
        format!("* 2 FETCH (FLAGS (\\Seen \\Recent) BODY[] {beta})\r\na6 OK Fetch completed.\r\n")
    );
    // after an item whose data ends in "(": a space all the same
    let sad = "Subject: sad\r\n\r\nsad :-(";
    let appended = c.run(&format!("a7 APPEND INBOX {{{}}}\r\n{sad}\r\n", sad.len()));
    assert!(appended.contains("* 5 EXISTS"), "{appended}");
    assert_eq!(
        c.run("a8 FETCH 5 (BODY.PEEK[TEXT] BODY.PEEK[])\r\n"),
        format!(
            "* 5 FETCH (BODY[TEXT] {{7}}\r\nsad :-( BODY[] {{{}}}\r\n{sad})\r\na8 OK Fetch completed.\r\n",
            sad.len()
        )
    );
}

#[test]
fn store_flags_and_other_sessions_see_them() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    let mut other = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    other.run("b1 SELECT INBOX\r\n");
    assert_eq!(
        c.run("a2 STORE 2 +FLAGS (\\Flagged $Label)\r\n"),
        // RFC 3501 §7.2.6: the new keyword is announced before it is used.
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label)\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label \\*)] Flags permitted.\r\n\
         * 2 FETCH (FLAGS (\\Flagged \\Recent $Label))\r\na2 OK Store completed.\r\n"
    );
    assert_eq!(
        c.run("a3 UID STORE 1 -FLAGS (\\Seen)\r\n"),
        "* 1 FETCH (UID 1 FLAGS (\\Recent))\r\na3 OK Store completed.\r\n"
    );
    assert_eq!(
        c.run("a4 STORE 3 FLAGS.SILENT (\\Answered)\r\n"),
        "a4 OK Store completed.\r\n"
    );
    // Our own changes are not news to us; they are to the other session.
    assert_eq!(c.run("a5 NOOP\r\n"), "a5 OK NOOP completed.\r\n");
    assert_eq!(
        other.run("b2 NOOP\r\n"),
        "* 1 FETCH (UID 1 FLAGS ())\r\n\
         * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label)\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label \\*)] Flags permitted.\r\n\
         * 2 FETCH (UID 2 FLAGS (\\Flagged $Label))\r\n\
         * 3 FETCH (UID 3 FLAGS (\\Answered))\r\n\
         b2 OK NOOP completed.\r\n"
    );
    let mut ro = Client::new(&dir);
    ro.run("c1 EXAMINE INBOX\r\n");
    assert_eq!(
        ro.run("c2 STORE 1 +FLAGS (\\Seen)\r\n"),
        "c2 NO [READ-ONLY] Mailbox is read-only.\r\n"
    );
}

#[test]
fn uid_search_search_and_esearch() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    c.run("a2 UID STORE 3 +FLAGS.SILENT (\\Seen)\r\n");
    assert_eq!(
        c.run("a3 UID SEARCH UNSEEN\r\n"),
        "* SEARCH 2\r\na3 OK Search completed.\r\n"
    );
    assert_eq!(
        c.run("a4 SEARCH SUBJECT a\r\n"),
        "* SEARCH 1 2 3\r\na4 OK Search completed.\r\n"
    );
    assert_eq!(
        c.run("a5 SEARCH BODY nowhere\r\n"),
        "* SEARCH\r\na5 OK Search completed.\r\n"
    );
    c.opts.search_return = Some(SearchReturn {
        min: true,
        count: true,
        ..Default::default()
    });
    assert_eq!(
        c.run("a6 UID SEARCH SEEN\r\n"),
        "* ESEARCH (TAG \"a6\") UID MIN 1 COUNT 2\r\na6 OK Search completed.\r\n"
    );
    c.opts.search_return = Some(SearchReturn::ALL);
    assert_eq!(
        c.run("a7 SEARCH ALL\r\n"),
        "* ESEARCH (TAG \"a7\") ALL 1:3\r\na7 OK Search completed.\r\n"
    );
}

#[test]
fn list_lsub_and_extended_list() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    MaildirRoot::new(&dir).create_folder("Sent").unwrap();
    assert_eq!(
        c.run("a1 LIST \"\" *\r\n"),
        "* LIST (\\HasNoChildren) \".\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Archive) \".\" Archive\r\n\
         * LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n\
         * LIST (\\HasChildren) \".\" Work\r\n\
         * LIST (\\HasNoChildren) \".\" Work.Projects\r\n\
         a1 OK List completed.\r\n"
    );
    assert_eq!(
        c.run("a2 LIST \"\" %\r\n"),
        "* LIST (\\HasNoChildren) \".\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Archive) \".\" Archive\r\n\
         * LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n\
         * LIST (\\HasChildren) \".\" Work\r\n\
         a2 OK List completed.\r\n"
    );
    assert_eq!(
        c.run("a3 LIST \"\" \"\"\r\n"),
        "* LIST (\\Noselect) \".\" \"\"\r\na3 OK List completed.\r\n"
    );
    assert_eq!(
        c.run("a4 SUBSCRIBE Archive\r\n"),
        "a4 OK Subscribe completed.\r\n"
    );
    assert_eq!(
        c.run("a5 LSUB \"\" *\r\n"),
        "* LSUB (\\HasNoChildren \\Archive) \".\" Archive\r\na5 OK Lsub completed.\r\n"
    );
    assert_eq!(
        c.list_extended("a6 LIST (SPECIAL-USE) \"\" * RETURN (SUBSCRIBED STATUS (MESSAGES))\r\n"),
        "* LIST (\\HasNoChildren \\Archive \\Subscribed) \".\" Archive\r\n\
         * STATUS Archive (MESSAGES 0)\r\n\
         * LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n\
         * STATUS Sent (MESSAGES 0)\r\n\
         a6 OK List completed.\r\n"
    );
    assert_eq!(
        c.run("a7 UNSUBSCRIBE Archive\r\n"),
        "a7 OK Unsubscribe completed.\r\n"
    );
    assert_eq!(c.run("a8 LSUB \"\" *\r\n"), "a8 OK Lsub completed.\r\n");
}

#[test]
fn status() {
    let (_tmp, dir) = maildir();
    let v = uidvalidity(&dir, "INBOX");
    let mut c = Client::new(&dir);
    assert_eq!(
        c.run("a1 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)\r\n"),
        format!(
            "* STATUS INBOX (MESSAGES 3 RECENT 3 UIDNEXT 4 UIDVALIDITY {v} UNSEEN 2)\r\n\
             a1 OK Status completed.\r\n"
        )
    );
    assert_eq!(
        c.run("a2 STATUS Work.Projects (MESSAGES SIZE)\r\n"),
        "* STATUS Work.Projects (MESSAGES 0 SIZE 0)\r\na2 OK Status completed.\r\n"
    );
    assert_eq!(
        c.run("a3 STATUS Nope (MESSAGES)\r\n"),
        "a3 NO [NONEXISTENT] Mailbox doesn't exist.\r\n"
    );
}

/// Sets the times of `new/` and `cur/` of the folder at `dir` an hour
/// back, as if nothing had changed there since.
fn settle_dirs(dir: &Path) -> std::time::SystemTime {
    let t = std::time::SystemTime::now() - Duration::from_secs(3600);
    set_dir_times(dir, t);
    t
}

fn set_dir_times(dir: &Path, t: std::time::SystemTime) {
    for sub in ["new", "cur"] {
        std::fs::File::open(dir.join(sub))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
}

fn kept_status_answers() -> usize {
    super::status::KEPT_STATUS_ANSWERS.with(|n| n.get())
}

/// A message file of the folder at `dir` without `\Seen`, in `cur/`.
fn an_unseen_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            !p.to_str()
                .unwrap()
                .rsplit(":2,")
                .next()
                .unwrap()
                .contains('S')
        })
        .expect("an unseen message")
}

#[test]
fn status_of_an_unchanged_folder_is_answered_from_kept_counts_until_it_changes() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    let ask = "a STATUS INBOX (MESSAGES UNSEEN UIDNEXT)\r\n";
    let answer = |m: u32, u: u32, n: u32| {
        format!(
            "* STATUS INBOX (MESSAGES {m} UNSEEN {u} UIDNEXT {n})\r\na OK Status completed.\r\n"
        )
    };
    assert_eq!(c.run(ask), answer(3, 2, 4));
    // Settled: this open keeps its counts, the next STATUS uses them.
    settle_dirs(&dir);
    let kept = kept_status_answers();
    assert_eq!(c.run(ask), answer(3, 2, 4));
    assert_eq!(kept_status_answers(), kept);
    assert_eq!(c.run(ask), answer(3, 2, 4));
    assert_eq!(kept_status_answers(), kept + 1);
    // The connection's own thread asks the same way.
    assert_eq!(
        c.status_from_cache(ask).as_deref(),
        Some(answer(3, 2, 4).as_str())
    );
    // RECENT is the session's business: not kept.
    assert_eq!(c.status_from_cache("r STATUS INBOX (RECENT)\r\n"), None);

    // Another program marks a message seen (a rename in cur/).
    let unseen = an_unseen_file(&dir);
    std::fs::rename(&unseen, format!("{}S", unseen.display())).unwrap();
    assert_eq!(c.status_from_cache(ask), None);
    assert_eq!(c.run(ask), answer(3, 1, 4));
    // An LDA delivers into new/ (after the counts were kept again).
    settle_dirs(&dir);
    assert_eq!(c.run(ask), answer(3, 1, 4));
    assert!(c.status_from_cache(ask).is_some());
    std::fs::write(
        dir.join("new/1800000000.M1P1.lda"),
        "Subject: x\r\n\r\ny\r\n",
    )
    .unwrap();
    assert_eq!(c.status_from_cache(ask), None);
    assert_eq!(c.run(ask), answer(4, 2, 5));
    // Only the uidlist tells (a message numbered and stored by another
    // process, the directory times put back): that is enough.
    let t = settle_dirs(&dir);
    assert_eq!(c.run(ask), answer(4, 2, 5));
    assert!(c.status_from_cache(ask).is_some());
    let mut other = Client::of_new_process(&dir);
    other.run(&format!("b APPEND INBOX (\\Seen) {}\r\n", literal(BETA)));
    set_dir_times(&dir, t);
    assert_eq!(c.status_from_cache(ask), None);
    assert_eq!(c.run(ask), answer(5, 2, 6));
}

#[test]
fn a_folder_replaced_under_its_name_is_not_answered_from_the_old_counts() {
    let (_tmp, dir) = maildir();
    let archive = dir.join(".Archive");
    let folder = MaildirRoot::new(&dir).open("Archive").unwrap();
    for msg in [ALPHA, BETA] {
        folder
            .append(msg.as_bytes(), Flags::empty(), &[], None)
            .unwrap();
    }
    drop(folder);
    let mut c = Client::new(&dir);
    let ask = "a STATUS Archive (MESSAGES)\r\n";
    let answer = |m: u32| format!("* STATUS Archive (MESSAGES {m})\r\na OK Status completed.\r\n");
    settle_dirs(&archive);
    assert_eq!(c.run(ask), answer(2));
    assert!(c.status_from_cache(ask).is_some());
    // Renamed away; an empty folder of the same name takes its place with
    // the same directory times and the very same uidlist file.
    let old = dir.join(".Old");
    std::fs::rename(&archive, &old).unwrap();
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(archive.join(sub)).unwrap();
    }
    std::fs::rename(old.join("dovecot-uidlist"), archive.join("dovecot-uidlist")).unwrap();
    for sub in ["new", "cur"] {
        let t = std::fs::metadata(old.join(sub))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::open(archive.join(sub))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    assert_eq!(c.status_from_cache(ask), None);
    assert_eq!(c.run(ask), answer(0));
}

#[test]
fn append_then_select() {
    let (_tmp, dir) = maildir();
    let v = uidvalidity(&dir, "INBOX");
    let mut c = Client::new(&dir);
    assert_eq!(
        c.run(&format!(
            "a1 APPEND INBOX (\\Seen) {}\r\n",
            literal("Subject: new\r\n\r\nhi\r\n")
        )),
        format!("a1 OK [APPENDUID {v} 4] Append completed.\r\n")
    );
    assert_eq!(
        c.run(&format!("a2 APPEND Nope {}\r\n", literal("hi"))),
        "a2 NO [TRYCREATE] Mailbox doesn't exist.\r\n"
    );
    assert_eq!(
        c.run("a3 SELECT INBOX\r\n"),
        selected(v, 4, 4, 5) + "a3 OK [READ-WRITE] Select completed.\r\n"
    );
    assert_eq!(
        c.run("a4 FETCH 4 (FLAGS BODY.PEEK[HEADER])\r\n"),
        "* 4 FETCH (FLAGS (\\Seen \\Recent) BODY[HEADER] {16}\r\nSubject: new\r\n\r\n)\r\n\
         a4 OK Fetch completed.\r\n"
    );
    // An APPEND to the selected mailbox is announced at once.
    assert_eq!(
        c.run(&format!("a5 APPEND INBOX {}\r\n", literal("x\r\n"))),
        format!("* 5 EXISTS\r\n* 5 RECENT\r\na5 OK [APPENDUID {v} 5] Append completed.\r\n")
    );
}

#[test]
fn copy_and_move_answer_copyuid() {
    let (_tmp, dir) = maildir();
    let va = uidvalidity(&dir, "Archive");
    let mut c = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    assert_eq!(
        c.run("a2 COPY 1:2 Archive\r\n"),
        format!("a2 OK [COPYUID {va} 1,2 1,2] Copy completed.\r\n")
    );
    assert_eq!(
        c.run("a3 UID MOVE 3 Archive\r\n"),
        format!(
            "* OK [COPYUID {va} 3 3] Moved UIDs.\r\n\
             * 3 EXPUNGE\r\n\
             a3 OK Move completed.\r\n"
        )
    );
    assert_eq!(
        c.run("a4 COPY 1 Nope\r\n"),
        "a4 NO [TRYCREATE] Mailbox doesn't exist.\r\n"
    );
    assert_eq!(
        c.run("a5 UID COPY 7 Archive\r\n"),
        "a5 OK No messages found. Copy completed.\r\n"
    );
    assert_eq!(
        c.run("a6 STATUS Archive (MESSAGES UIDNEXT)\r\n"),
        "* STATUS Archive (MESSAGES 3 UIDNEXT 4)\r\na6 OK Status completed.\r\n"
    );
}

#[test]
fn expunge_and_uid_expunge() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    let mut other = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    other.run("b1 SELECT INBOX\r\n");
    c.run("a2 STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\n");
    // UID EXPUNGE removes only the \Deleted messages it names.
    assert_eq!(
        c.run("a3 UID EXPUNGE 2\r\n"),
        "* 2 EXPUNGE\r\na3 OK Expunge completed.\r\n"
    );
    assert_eq!(
        c.run("a4 EXPUNGE\r\n"),
        "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\na4 OK Expunge completed.\r\n"
    );
    // The other session hears of it at its next chance, not during a
    // FETCH (RFC 3501 §7.4.1), where the gone message has no data and the
    // answer says so (RFC 5530 EXPUNGEISSUED, as Dovecot).
    assert_eq!(
        other.run("b2 FETCH 1 UID\r\n"),
        "b2 OK [EXPUNGEISSUED] Some messages were already expunged.\r\n"
    );
    assert_eq!(
        other.run("b3 NOOP\r\n"),
        "* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\nb3 OK NOOP completed.\r\n"
    );
    let mut ro = Client::new(&dir);
    ro.run("c1 EXAMINE INBOX\r\n");
    assert_eq!(
        ro.run("c2 EXPUNGE\r\n"),
        "c2 NO [READ-ONLY] Mailbox is read-only.\r\n"
    );
}

/// The selected session's UID list, and whether it is the one the
/// mailbox's other up-to-date sessions share.
fn view_of(c: &Client) -> (Vec<u32>, Arc<Vec<u32>>) {
    let sel = c.backend.selected.as_ref().expect("a mailbox is selected");
    (sel.view.to_vec(), sel.view.clone())
}

/// Sessions whose view is the whole mailbox share one UID list (200 idle
/// sessions on a 5,000-message INBOX would otherwise hold 200 copies); a
/// session whose view falls behind gets its own copy, and the shared list
/// again once it has caught up.
#[test]
fn up_to_date_sessions_share_one_uid_list() {
    let (_tmp, dir) = maildir();
    let mut a = Client::new(&dir);
    let mut b = Client::new(&dir);
    a.run("a1 SELECT INBOX\r\n");
    b.run("b1 SELECT INBOX\r\n");
    let ((va, pa), (vb, pb)) = (view_of(&a), view_of(&b));
    assert_eq!(va, [1, 2, 3]);
    assert_eq!(va, vb);
    assert!(Arc::ptr_eq(&pa, &pb), "one list for both");
    drop((pa, pb));

    // a expunges 2; b, in a FETCH, may not hear of it yet (RFC 3501
    // §7.4.1): its view keeps UID 2 and is its own.
    a.run("a2 UID STORE 2 +FLAGS.SILENT (\\Deleted)\r\n");
    assert_eq!(
        a.run("a3 EXPUNGE\r\n"),
        "* 2 EXPUNGE\r\na3 OK Expunge completed.\r\n"
    );
    b.run("b2 FETCH 1 UID\r\n");
    let ((va, pa), (vb, pb)) = (view_of(&a), view_of(&b));
    assert_eq!(
        (va.as_slice(), vb.as_slice()),
        ([1, 3].as_slice(), [1, 2, 3].as_slice())
    );
    assert!(!Arc::ptr_eq(&pa, &pb));
    drop((pa, pb));

    // Once b is told, both hold the same list again, shared.
    assert_eq!(
        b.run("b3 NOOP\r\n"),
        "* 2 EXPUNGE\r\nb3 OK NOOP completed.\r\n"
    );
    let ((va, pa), (vb, pb)) = (view_of(&a), view_of(&b));
    assert_eq!(va, [1, 3]);
    assert_eq!(va, vb);
    assert!(Arc::ptr_eq(&pa, &pb), "shared again after catching up");
}

#[test]
fn create_rename_delete() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    assert_eq!(c.run("a1 CREATE Lists\r\n"), "a1 OK Create completed.\r\n");
    assert_eq!(
        c.run("a2 CREATE Lists\r\n"),
        "a2 NO [ALREADYEXISTS] Mailbox already exists.\r\n"
    );
    assert_eq!(
        c.run("a3 RENAME Lists Old\r\n"),
        "a3 OK Rename completed.\r\n"
    );
    assert_eq!(c.run("a4 DELETE Old\r\n"), "a4 OK Delete completed.\r\n");
    assert_eq!(
        c.run("a5 DELETE INBOX\r\n"),
        "a5 NO INBOX can't be deleted.\r\n"
    );
    assert_eq!(
        c.run("a6 LIST \"\" *\r\n"),
        "* LIST (\\HasNoChildren) \".\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Archive) \".\" Archive\r\n\
         * LIST (\\HasChildren) \".\" Work\r\n\
         * LIST (\\HasNoChildren) \".\" Work.Projects\r\n\
         a6 OK List completed.\r\n"
    );
}

#[test]
fn a_parent_that_does_not_exist_is_listed_noselect() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    // Only the child exists on disk (another client, or Dovecot, made it).
    MaildirRoot::new(&dir).create_folder("Lists.Rust").unwrap();
    // RFC 3501 §6.3.8: `%` must show the parent, as \Noselect.
    assert_eq!(
        c.run("a1 LIST \"\" %\r\n"),
        "* LIST (\\HasNoChildren) \".\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Archive) \".\" Archive\r\n\
         * LIST (\\Noselect \\HasChildren) \".\" Lists\r\n\
         * LIST (\\HasChildren) \".\" Work\r\n\
         a1 OK List completed.\r\n"
    );
    let all = c.run("a2 LIST \"\" *\r\n");
    assert!(all.contains("* LIST (\\Noselect \\HasChildren) \".\" Lists\r\n* LIST (\\HasNoChildren) \".\" Lists.Rust\r\n"), "{all}");
    assert_eq!(
        c.run("a3 LIST Lists. %\r\n"),
        "* LIST (\\HasNoChildren) \".\" Lists.Rust\r\na3 OK List completed.\r\n"
    );
    // It can't be selected, and LSUB is about subscriptions only.
    assert!(c.run("a4 SELECT Lists\r\n").starts_with("a4 NO"));
    assert_eq!(c.run("a5 LSUB \"\" *\r\n"), "a5 OK Lsub completed.\r\n");
}

#[test]
fn lsub_shows_an_unsubscribed_parent_where_percent_stops() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    c.run("a0 SUBSCRIBE Work.Projects\r\n");
    // RFC 3501 §6.3.9: `%` stops at Work, which isn't subscribed.
    assert_eq!(
        c.run("a1 LSUB \"\" %\r\n"),
        "* LSUB (\\Noselect) \".\" Work\r\na1 OK Lsub completed.\r\n"
    );
    // With `*` the subscribed child itself is listed.
    assert_eq!(
        c.run("a2 LSUB \"\" *\r\n"),
        "* LSUB (\\HasNoChildren) \".\" Work.Projects\r\na2 OK Lsub completed.\r\n"
    );
    // Once Work is subscribed too, it is listed as itself.
    c.run("a3 SUBSCRIBE Work\r\n");
    assert_eq!(
        c.run("a4 LSUB \"\" %\r\n"),
        "* LSUB (\\HasChildren) \".\" Work\r\na4 OK Lsub completed.\r\n"
    );
}

// ------------------------------------------------- CONDSTORE / QRESYNC

/// The mod-sequences in a response, in order: `MODSEQ (n)`, `(MODSEQ n)`,
/// `[HIGHESTMODSEQ n]`, ESEARCH `MODSEQ n`.
fn modseqs(out: &str) -> Vec<u64> {
    let mut v = Vec::new();
    for (i, _) in out.match_indices("MODSEQ ") {
        let rest = out[i + 7..].trim_start_matches('(');
        let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = n.parse() {
            v.push(n);
        }
    }
    v
}

/// `out` with every mod-sequence written as `M`, for exact comparisons
/// (modseqs come from the clock, see store/maildir/modseq.rs).
fn masked(out: &str) -> String {
    let mut s = String::new();
    let mut rest = out;
    while let Some(i) = rest.find("MODSEQ ") {
        s.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        if rest.starts_with('(') {
            s.push('(');
            rest = &rest[1..];
        }
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            s.push('M');
        }
        rest = &rest[digits..];
    }
    s.push_str(rest);
    s
}

#[test]
fn condstore_select_fetch_changedsince_and_status() {
    let (_tmp, dir) = maildir();
    let v = uidvalidity(&dir, "INBOX");
    let mut c = Client::new(&dir);
    // RFC 7162 §3.1.8: SELECT (CONDSTORE) enables CONDSTORE and answers
    // HIGHESTMODSEQ (§3.1.2.1).
    let out = c.run("a1 SELECT INBOX (CONDSTORE)\r\n");
    assert_eq!(
        masked(&out),
        selected(v, 3, 3, 4)
            + "* OK [HIGHESTMODSEQ M] Highest\r\na1 OK [READ-WRITE] Select completed.\r\n"
    );
    let h = modseqs(&out)[0];
    // RFC 7162 §3.1.4: FETCH MODSEQ; every message's is at most HIGHESTMODSEQ.
    let out = c.run("a2 FETCH 1:* (MODSEQ)\r\n");
    assert_eq!(
        masked(&out),
        "* 1 FETCH (MODSEQ (M))\r\n* 2 FETCH (MODSEQ (M))\r\n* 3 FETCH (MODSEQ (M))\r\n\
         a2 OK Fetch completed.\r\n"
    );
    assert!(modseqs(&out).iter().all(|m| *m <= h && *m > 0));
    // A STORE answers with the new MODSEQ, above the old HIGHESTMODSEQ.
    let out = c.run("a3 STORE 2 +FLAGS (\\Flagged)\r\n");
    assert_eq!(
        masked(&out),
        "* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (M))\r\na3 OK Store completed.\r\n"
    );
    let m2 = modseqs(&out)[0];
    assert!(m2 > h);
    // RFC 7162 §3.1.4.1: CHANGEDSINCE: only what changed, with MODSEQ.
    let out = c.run(&format!("a4 FETCH 1:* (FLAGS) (CHANGEDSINCE {h})\r\n"));
    assert_eq!(
        out,
        format!(
            "* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ({m2}))\r\na4 OK Fetch completed.\r\n"
        )
    );
    assert_eq!(
        c.run(&format!("a5 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m2})\r\n")),
        "a5 OK Fetch completed.\r\n"
    );
    // A STORE that changes nothing keeps the modseq.
    c.run("a6 STORE 2 +FLAGS.SILENT (\\Flagged)\r\n");
    assert_eq!(modseqs(&c.run("a7 FETCH 2 (MODSEQ)\r\n")), vec![m2]);
    // RFC 7162 §3.1.7: STATUS HIGHESTMODSEQ, the same as the session's.
    assert_eq!(
        c.run("a8 STATUS INBOX (HIGHESTMODSEQ MESSAGES)\r\n"),
        format!("* STATUS INBOX (HIGHESTMODSEQ {m2} MESSAGES 3)\r\na8 OK Status completed.\r\n")
    );
    // Another session's change reaches this one with its MODSEQ (§3.1.4).
    let mut other = Client::new(&dir);
    other.run("b1 SELECT INBOX\r\n");
    // Without CONDSTORE enabled, no MODSEQ in its answers.
    assert_eq!(
        other.run("b2 STORE 1 -FLAGS (\\Seen)\r\n"),
        "* 1 FETCH (FLAGS ())\r\nb2 OK Store completed.\r\n"
    );
    let out = c.run("a9 NOOP\r\n");
    assert_eq!(
        masked(&out),
        "* 1 FETCH (UID 1 FLAGS (\\Recent) MODSEQ (M))\r\na9 OK NOOP completed.\r\n"
    );
    assert!(modseqs(&out)[0] > m2);
}

#[test]
fn store_unchangedsince_reports_modified() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    c.opts.condstore = true;
    let h = modseqs(&c.run("a1 SELECT INBOX\r\n"))[0];
    let mut other = Client::new(&dir);
    other.run("b1 SELECT INBOX\r\n");
    other.run("b2 STORE 2 +FLAGS (\\Answered)\r\n");
    // RFC 7162 §3.1.3 (example 5): the message changed since h is left
    // alone and named in [MODIFIED]; the others' new MODSEQs are sent even
    // with .SILENT.
    let out = c.run(&format!(
        "a2 STORE 1:3 (UNCHANGEDSINCE {h}) +FLAGS.SILENT (\\Deleted)\r\n"
    ));
    assert_eq!(
        masked(&out),
        "* 1 FETCH (MODSEQ (M))\r\n* 3 FETCH (MODSEQ (M))\r\n\
         * 2 FETCH (UID 2 FLAGS (\\Answered \\Recent) MODSEQ (M))\r\n\
         a2 OK [MODIFIED 2] Conditional STORE failed.\r\n"
    );
    let out = c.run("a3 FETCH 1:3 (FLAGS)\r\n");
    assert_eq!(
        masked(&out),
        "* 1 FETCH (FLAGS (\\Deleted \\Seen \\Recent) MODSEQ (M))\r\n\
         * 2 FETCH (FLAGS (\\Answered \\Recent) MODSEQ (M))\r\n\
         * 3 FETCH (FLAGS (\\Deleted \\Recent) MODSEQ (M))\r\n\
         a3 OK Fetch completed.\r\n"
    );
    // UNCHANGEDSINCE 0 always fails (§3.1.3); UID STORE names UIDs.
    assert_eq!(
        c.run("a4 UID STORE 1,3 (UNCHANGEDSINCE 0) -FLAGS (\\Deleted)\r\n"),
        "a4 OK [MODIFIED 1,3] Conditional STORE failed.\r\n"
    );
}

#[test]
fn search_modseq() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    let out = c.run("a2 STORE 3 +FLAGS (\\Draft)\r\n");
    assert!(!out.contains("MODSEQ"), "CONDSTORE not enabled yet: {out}");
    let m3 = modseqs(&c.run("a3 FETCH 3 (MODSEQ)\r\n"))[0];
    // RFC 7162 §3.1.5 and §3.1.6: MODSEQ criterion, answer with the
    // highest modseq found.
    assert_eq!(
        c.run(&format!("a4 SEARCH MODSEQ {m3}\r\n")),
        format!("* SEARCH 3 (MODSEQ {m3})\r\na4 OK Search completed.\r\n")
    );
    // The entry-name form compares the message's modseq.
    assert_eq!(
        c.run(&format!(
            "a5 UID SEARCH MODSEQ \"/flags/\\\\draft\" all {m3} DRAFT\r\n"
        )),
        format!("* SEARCH 3 (MODSEQ {m3})\r\na5 OK Search completed.\r\n")
    );
    assert_eq!(
        c.run(&format!("a6 SEARCH MODSEQ {}\r\n", m3 + 1)),
        "* SEARCH\r\na6 OK Search completed.\r\n"
    );
    // RFC 7162 §3.1.10 with ESEARCH (RFC 4731).
    c.opts.search_return = Some(SearchReturn::ALL);
    let out = c.run("a7 SEARCH MODSEQ 1\r\n");
    assert_eq!(
        out,
        format!("* ESEARCH (TAG \"a7\") ALL 1:3 MODSEQ {m3}\r\na7 OK Search completed.\r\n")
    );
}

#[test]
fn qresync_select_vanished_earlier_and_vanished_updates() {
    let (_tmp, dir) = maildir();
    let v = uidvalidity(&dir, "INBOX");
    let mut c = Client::new(&dir);
    // RFC 7162 §3.2.5: QRESYNC needs ENABLE QRESYNC first.
    assert_eq!(
        c.run(&format!("a0 SELECT INBOX (QRESYNC ({v} 1))\r\n")),
        "a0 BAD QRESYNC isn't enabled.\r\n"
    );
    c.opts.qresync = true;
    c.opts.condstore = true;
    let h = modseqs(&c.run("a1 SELECT INBOX\r\n"))[0];
    c.run("a2 UNSELECT\r\n");
    // Meanwhile another session flags 1, deletes and expunges 3.
    let mut other = Client::new(&dir);
    other.run("b1 SELECT INBOX\r\n");
    other.run("b2 STORE 1 +FLAGS (\\Flagged)\r\n");
    other.run("b3 STORE 3 +FLAGS (\\Deleted)\r\n");
    other.run("b4 EXPUNGE\r\n");
    // RFC 7162 §3.2.5.1: only the changed message's flags, then the UIDs
    // expunged since h.
    let out = c.run(&format!("a3 SELECT INBOX (QRESYNC ({v} {h}))\r\n"));
    assert!(
        masked(&out).ends_with(
            "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen) MODSEQ (M))\r\n\
             * VANISHED (EARLIER) 3\r\n\
             a3 OK [READ-WRITE] Select completed.\r\n"
        ),
        "{out}"
    );
    assert!(!out.contains("* 2 FETCH"), "{out}");
    let highest = modseqs(&out)[0];
    // Known UIDs limit VANISHED (EARLIER) to them.
    let out = c.run(&format!("a4 EXAMINE INBOX (QRESYNC ({v} {h} 1:2))\r\n"));
    assert!(
        out.starts_with("* OK [CLOSED] Previous mailbox closed.\r\n"),
        "{out}"
    );
    assert!(!out.contains("VANISHED"), "{out}");
    // A wrong UIDVALIDITY: a plain SELECT.
    let out = c.run(&format!("a5 SELECT INBOX (QRESYNC ({} {h}))\r\n", v + 1));
    assert!(!out.contains("FETCH") && !out.contains("VANISHED"), "{out}");
    // RFC 7162 §3.2.6: UID FETCH (CHANGEDSINCE … VANISHED).
    let out = c.run(&format!(
        "a6 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h} VANISHED)\r\n"
    ));
    assert_eq!(
        masked(&out),
        "* VANISHED (EARLIER) 3\r\n* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen) MODSEQ (M))\r\n\
         a6 OK Fetch completed.\r\n"
    );
    // VANISHED only with UID FETCH and CHANGEDSINCE.
    assert!(c
        .run(&format!(
            "a7 FETCH 1:* (FLAGS) (CHANGEDSINCE {h} VANISHED)\r\n"
        ))
        .starts_with("a7 BAD"));
    assert!(c
        .run("a8 UID FETCH 1:* (FLAGS) (VANISHED)\r\n")
        .starts_with("a8 BAD"));
    // RFC 7162 §3.2.10: once QRESYNC is enabled, expunges by others and by
    // this session come as VANISHED, never EXPUNGE; §3.2.7: the tagged OK
    // to EXPUNGE carries HIGHESTMODSEQ.
    other.run("b5 STORE 1 +FLAGS (\\Deleted)\r\n");
    other.run("b6 EXPUNGE\r\n");
    assert_eq!(
        c.run("a9 NOOP\r\n"),
        "* VANISHED 1\r\na9 OK NOOP completed.\r\n"
    );
    c.run("a10 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n");
    let out = c.run("a11 EXPUNGE\r\n");
    assert_eq!(
        masked(&out),
        "* VANISHED 2\r\na11 OK [HIGHESTMODSEQ M] Expunge completed.\r\n"
    );
    assert!(modseqs(&out)[0] > highest);
    // Every expunge is remembered: from h, all three.
    let out = c.run(&format!(
        "a12 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h} VANISHED)\r\n"
    ));
    assert_eq!(
        out,
        "* VANISHED (EARLIER) 1:3\r\na12 OK Fetch completed.\r\n"
    );
}

#[test]
fn a_held_back_expunge_comes_with_a_lower_highestmodseq() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    c.opts.condstore = true;
    c.run("a1 SELECT INBOX\r\n");
    let mut other = Client::new(&dir);
    other.run("b1 SELECT INBOX\r\n");
    other.run("b2 STORE 2 +FLAGS (\\Deleted)\r\n");
    other.run("b3 EXPUNGE\r\n");
    other.run("b4 STORE 1 +FLAGS (\\Flagged)\r\n");
    // RFC 7162 §3.2: the expunge of UID 2 can't be reported during
    // FETCH (RFC 3501 §7.4.1), but the FETCH carries a newer MODSEQ: a
    // HIGHESTMODSEQ below the expunge's follows, so a client resyncing
    // from it still learns of the expunge.
    let out = c.run("a2 FETCH 1 (FLAGS)\r\n");
    assert_eq!(
        masked(&out),
        "* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent) MODSEQ (M))\r\n\
         * 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen \\Recent) MODSEQ (M))\r\n\
         * OK [HIGHESTMODSEQ M] Highest\r\n\
         a2 OK Fetch completed.\r\n"
    );
    let ms = modseqs(&out);
    assert!(ms[2] < ms[0], "{out}");
    // The expunge itself is reported at the next chance, without it.
    assert_eq!(
        c.run("a3 NOOP\r\n"),
        "* 2 EXPUNGE\r\na3 OK NOOP completed.\r\n"
    );
}

/// INTERNALDATE is the file's mtime, read only when something asks for
/// it (a first look stats no file whose name gives its sizes, as Dovecot
/// does): FETCH, SEARCH BEFORE/ON/SINCE, a sent date falling back to it,
/// and SORT (ARRIVAL) each see it in a server process that never looked
/// at the folder before.
#[test]
fn internal_dates_are_read_from_the_files_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Maildir");
    drop(MaildirRoot::new(&dir).inbox().unwrap());
    // (headers, mtime): 3 Jan, 1 Jan and 2 Jan 2024, 12:00 UTC
    let msgs = [
        (
            "Subject: a\nDate: Mon, 1 Jan 2024 08:00:00 +0000\n",
            1_704_283_200,
        ),
        ("Subject: b\n", 1_704_110_400),
        (
            "Subject: c\nDate: Fri, 5 Jan 2024 08:00:00 +0000\n",
            1_704_196_800,
        ),
    ];
    for (i, (head, mtime)) in msgs.iter().enumerate() {
        let body = format!("{head}\nbody\n");
        let lines = body.matches('\n').count();
        let name = format!(
            "1700000000.M{i}P1.host,S={},W={}",
            body.len(),
            body.len() + lines
        );
        let path = dir.join("cur").join(format!("{name}:2,"));
        std::fs::write(&path, body).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(*mtime))
            .unwrap();
    }
    let fresh = |cmd: &str| {
        let mut c = Client::of_new_process(&dir);
        c.run("a SELECT INBOX\r\n");
        c.run(cmd)
    };
    assert_eq!(
        fresh("f FETCH 1:3 (INTERNALDATE)\r\n"),
        "* 1 FETCH (INTERNALDATE \"03-Jan-2024 12:00:00 +0000\")\r\n\
         * 2 FETCH (INTERNALDATE \"01-Jan-2024 12:00:00 +0000\")\r\n\
         * 3 FETCH (INTERNALDATE \"02-Jan-2024 12:00:00 +0000\")\r\n\
         f OK Fetch completed.\r\n"
    );
    for (search, found) in [
        ("SINCE 2-Jan-2024", "1 3"),
        ("BEFORE 2-Jan-2024", "2"),
        ("ON 3-Jan-2024", "1"),
        ("NOT ON 3-Jan-2024 SMALLER 1000", "2 3"),
        // no Date: header: the sent date is the arrival
        ("SENTON 1-Jan-2024", "1 2"),
    ] {
        assert_eq!(
            fresh(&format!("s SEARCH {search}\r\n")),
            format!("* SEARCH {found}\r\ns OK Search completed.\r\n"),
            "{search}"
        );
    }
    assert_eq!(
        fresh("o SORT (ARRIVAL) UTF-8 ALL\r\n"),
        "* SORT 2 3 1\r\no OK Sort completed.\r\n"
    );
    // the sent date of message 2 (no Date:) is its arrival, by the
    // dates-only path and by the one through the structure cache
    for sort in ["DATE", "FROM DATE"] {
        assert_eq!(
            fresh(&format!("o SORT ({sort}) UTF-8 ALL\r\n")),
            "* SORT 1 2 3\r\no OK Sort completed.\r\n",
            "{sort}"
        );
    }
}

/// A Maildir whose INBOX holds four messages for SORT and THREAD: a
/// thread of three (2 ← 1 ← 4, by References and In-Reply-To) and one with
/// no Date (its sent date is its arrival).
fn sort_maildir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Maildir");
    let inbox = MaildirRoot::new(&dir).inbox().unwrap();
    let msgs = [
        (
            "From: \"Zed\" <carol@example.org>\r\nTo: dave@example.org\r\nSubject: Re: plan\r\n\
             Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <2@x>\r\nReferences: <1@x>\r\n\r\nb\r\n",
            3,
        ),
        (
            "From: Ann <bob@example.org>\r\nTo: Eve <eve@example.org>\r\nSubject: plan\r\n\
             Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\nb\r\n",
            1,
        ),
        (
            "From: alice@example.org\r\nCc: x@example.org\r\nSubject: [list] news\r\n\
             Message-ID: <3@x>\r\n\r\nb\r\n",
            0,
        ),
        (
            "From: =?utf-8?q?=C3=84rger?= <aaron@example.org>\r\nSubject: Fwd: plan\r\n\
             Date: Wed, 3 Jan 2024 10:00:00 +0000\r\nMessage-ID: <4@x>\r\nIn-Reply-To: <2@x>\r\n\r\nb\r\n",
            2,
        ),
    ];
    for (msg, arrival) in msgs {
        let date = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + arrival);
        inbox
            .append(msg.as_bytes(), Flags::empty(), &[], Some(date))
            .unwrap();
    }
    (tmp, dir)
}

#[test]
fn sort_by_every_key() {
    let (_tmp, dir) = sort_maildir();
    let mut c = Client::new(&dir);
    c.run("a SELECT INBOX\r\n");
    for (criteria, order) in [
        ("DATE", "3 2 1 4"),
        ("ARRIVAL", "3 2 4 1"),
        ("SUBJECT", "3 1 2 4"),
        ("FROM", "4 3 2 1"),
        ("DISPLAYFROM", "3 2 1 4"),
        ("TO", "3 4 1 2"),
        ("DISPLAYTO", "3 4 1 2"),
        ("CC SUBJECT", "1 2 4 3"),
        ("REVERSE DATE", "4 1 2 3"),
        ("SUBJECT REVERSE ARRIVAL", "3 1 4 2"),
    ] {
        assert_eq!(
            c.run(&format!("s SORT ({criteria}) UTF-8 ALL\r\n")),
            format!("* SORT {order}\r\ns OK Sort completed.\r\n"),
            "{criteria}"
        );
    }
    c.run("b STORE 1,4 +FLAGS (\\Seen)\r\n");
    assert_eq!(
        c.run("c UID SORT (REVERSE DATE) US-ASCII SEEN\r\n"),
        "* SORT 4 1\r\nc OK Sort completed.\r\n"
    );
    assert_eq!(
        c.run("d SORT (DATE) UTF-8 FROM example TEXT nowhere\r\n"),
        "* SORT\r\nd OK Sort completed.\r\n"
    );
    assert_eq!(
        c.run("e SORT (DATE) KOI9 ALL\r\n"),
        "e NO [BADCHARSET (UTF-8 US-ASCII ISO-8859-1)] Unknown charset.\r\n"
    );
    // RFC 7162 §3.1.5: with MODSEQ, the highest modseq of those found.
    let out = c.run("f SORT (DATE) UTF-8 MODSEQ 1\r\n");
    let m = modseqs(&c.run("g FETCH 1:4 (MODSEQ)\r\n"));
    let top = m.iter().max().unwrap();
    assert!(
        out.starts_with(&format!("* SORT 3 2 1 4 (MODSEQ {top})\r\n")),
        "{out}"
    );
}

#[test]
fn thread_references_and_orderedsubject() {
    let (_tmp, dir) = sort_maildir();
    let mut c = Client::new(&dir);
    c.run("a SELECT INBOX\r\n");
    assert_eq!(
        c.run("b THREAD REFERENCES UTF-8 ALL\r\n"),
        "* THREAD (3)(2 1 4)\r\nb OK Thread completed.\r\n"
    );
    assert_eq!(
        c.run("c THREAD ORDEREDSUBJECT UTF-8 ALL\r\n"),
        "* THREAD (3)(2 (1)(4))\r\nc OK Thread completed.\r\n"
    );
    // Message 2 left out: 1 and 4 still hang together under a dummy that
    // is pruned away (§4 step 4: a single child at the top is promoted).
    assert_eq!(
        c.run("d UID THREAD REFERENCES UTF-8 NOT UID 2\r\n"),
        "* THREAD (3)(1 4)\r\nd OK Thread completed.\r\n"
    );
    assert_eq!(
        c.run("e THREAD REFERENCES UTF-8 SUBJECT nothing\r\n"),
        "* THREAD\r\ne OK Thread completed.\r\n"
    );
    assert_eq!(
        c.run("f THREAD XYZ UTF-8 ALL\r\n"),
        "f BAD Error in IMAP command THREAD: Unknown thread algorithm.\r\n"
    );
}

#[test]
fn esort_and_partial_results() {
    let (_tmp, dir) = sort_maildir();
    let mut c = Client::new(&dir);
    c.run("a SELECT INBOX\r\n");
    // RFC 5267 §3.2: MIN and MAX are the first and last in sort order,
    // ALL is in sort order.
    c.opts.search_return = Some(SearchReturn {
        min: true,
        max: true,
        all: true,
        count: true,
        ..Default::default()
    });
    assert_eq!(
        c.run("b SORT (DATE) UTF-8 ALL\r\n"),
        "* ESEARCH (TAG \"b\") MIN 3 MAX 4 ALL 3,2,1,4 COUNT 4\r\nb OK Sort completed.\r\n"
    );
    assert_eq!(
        c.run("c UID SORT (ARRIVAL) UTF-8 UID 1:3\r\n"),
        "* ESEARCH (TAG \"c\") UID MIN 3 MAX 1 ALL 3,2,1 COUNT 3\r\nc OK Sort completed.\r\n"
    );
    assert_eq!(
        c.run("d SORT (DATE) UTF-8 SUBJECT nothing\r\n"),
        "* ESEARCH (TAG \"d\") COUNT 0\r\nd OK Sort completed.\r\n"
    );
    // RFC 5267 §4.4 / RFC 9394: PARTIAL, negative ranges from the end.
    c.opts.search_return = Some(SearchReturn {
        partial: Some((1, 2)),
        ..Default::default()
    });
    assert_eq!(
        c.run("e SORT (DATE) UTF-8 ALL\r\n"),
        "* ESEARCH (TAG \"e\") PARTIAL (1:2 3,2)\r\ne OK Sort completed.\r\n"
    );
    c.opts.search_return = Some(SearchReturn {
        partial: Some((-1, -2)),
        ..Default::default()
    });
    assert_eq!(
        c.run("f SEARCH ALL\r\n"),
        "* ESEARCH (TAG \"f\") PARTIAL (-1:-2 3:4)\r\nf OK Search completed.\r\n"
    );
    c.opts.search_return = Some(SearchReturn {
        partial: Some((5, 9)),
        ..Default::default()
    });
    assert_eq!(
        c.run("g SORT (DATE) UTF-8 ALL\r\n"),
        "* ESEARCH (TAG \"g\") PARTIAL (5:9 NIL)\r\ng OK Sort completed.\r\n"
    );
    // SAVE keeps the sorted messages for `$` (RFC 5182).
    c.opts.search_return = Some(SearchReturn {
        save: true,
        ..Default::default()
    });
    assert_eq!(
        c.run("h SORT (DATE) UTF-8 FROM bob\r\n"),
        "h OK Sort completed.\r\n"
    );
    c.opts.search_return = None;
    c.opts.saved = true;
    let out = c.run(&format!(
        "i FETCH {} (UID)\r\n",
        crate::imap::proto::rev2::SAVED_PLACEHOLDER
    ));
    assert_eq!(out, "* 2 FETCH (UID 2)\r\ni OK Fetch completed.\r\n");
}

#[test]
fn sort_and_thread_read_the_structure_cache_not_the_messages() {
    let (_tmp, dir) = sort_maildir();
    let mut c = Client::new(&dir);
    c.run("a SELECT INBOX\r\n");
    let sorted = c.run("b SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n");
    let threads = c.run("c THREAD REFERENCES UTF-8 ALL\r\n");
    assert!(dir.join(crate::imap::cache::CACHE_FILE).exists());
    // Every message file now says something else: a SORT that opened them
    // would answer differently.
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            // (keeping the mtime: it is the INTERNALDATE)
            let path = e.unwrap().path();
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            std::fs::write(&path, "Subject: zzz\r\n\r\n").unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(mtime).unwrap();
        }
    }
    // Another server process: the cache comes from the file.
    let mut other = Client::of_new_process(&dir);
    other.run("a SELECT INBOX\r\n");
    assert_eq!(
        other.run("b SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n"),
        sorted
    );
    assert_eq!(other.run("c THREAD REFERENCES UTF-8 ALL\r\n"), threads);
}

/// A header SEARCH keeps what it compares (the mailbox's header keys, in
/// memory and in `pigeonpost.index.keys`, the sent dates also in
/// `pigeonpost.index.dates`): the same search again, and SORT (DATE), read
/// no message file, in this process or after a restart, and a
/// message that arrives later is keyed when a search first needs it.
#[test]
fn repeated_header_searches_and_date_sorts_read_no_files() {
    let (_tmp, dir) = sort_maildir();
    let mut c = Client::new(&dir);
    c.run("a SELECT INBOX\r\n");
    let searches = [
        "b SEARCH SUBJECT plan\r\n",
        "c SEARCH FROM \"ann <bob@\"\r\n",
        "d SEARCH OR CC x@ SENTBEFORE 2-Jan-2024\r\n",
        "e SEARCH NOT SUBJECT plan\r\n",
    ];
    let found: Vec<String> = searches.iter().map(|s| c.run(s)).collect();
    assert_eq!(found[0], "* SEARCH 1 2 4\r\nb OK Search completed.\r\n");
    assert_eq!(found[1], "* SEARCH 2\r\nc OK Search completed.\r\n");
    assert_eq!(found[2], "* SEARCH 2 3\r\nd OK Search completed.\r\n");
    let sorted = c.run("f SORT (DATE) UTF-8 ALL\r\n");
    assert_eq!(sorted, "* SORT 3 2 1 4\r\nf OK Sort completed.\r\n");
    // Every message file now says something else (mtime kept: it is the
    // INTERNALDATE): searches that opened them would answer differently.
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = e.unwrap().path();
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            std::fs::write(
                &path,
                "Subject: zzz\r\nDate: 1 Jan 2030 00:00 +0000\r\n\r\n",
            )
            .unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(mtime).unwrap();
        }
    }
    for (s, want) in searches.iter().zip(&found) {
        assert_eq!(&c.run(s), want, "{s}");
    }
    assert_eq!(c.run("f SORT (DATE) UTF-8 ALL\r\n"), sorted);
    // Another server process (a restart): the keys come from their file.
    let mut other = Client::of_new_process(&dir);
    other.run("a SELECT INBOX\r\n");
    assert_eq!(other.run("f SORT (DATE) UTF-8 ALL\r\n"), sorted);
    for (s, want) in searches.iter().zip(&found) {
        assert_eq!(&other.run(s), want, "{s}");
    }
    drop(other);
    // SORT (DATE) after a restart reads the small dates file alone: with
    // the keys file gone it still reads no message and makes no keys.
    let keys = dir.join(crate::imap::keys::KEYS_FILE);
    std::fs::remove_file(&keys).unwrap();
    let mut third = Client::of_new_process(&dir);
    third.run("a SELECT INBOX\r\n");
    assert_eq!(third.run("f SORT (DATE) UTF-8 ALL\r\n"), sorted);
    assert!(!keys.exists(), "a date sort made header keys");
    drop(third);
    // A new message is read when a search first needs it.
    c.run(&format!(
        "g APPEND INBOX {}\r\n",
        literal("Subject: plan B\r\n\r\nb\r\n")
    ));
    assert_eq!(
        c.run("h SEARCH SUBJECT plan\r\n"),
        "* SEARCH 1 2 4 5\r\nh OK Search completed.\r\n"
    );
    // A body search still reads the files (which say zzz now).
    assert_eq!(
        c.run("i SEARCH TEXT plan\r\n"),
        "* SEARCH 5\r\ni OK Search completed.\r\n"
    );
    // After a restart, the one message the dates file lacks has its
    // header read; the other dates come from the file, and no keys file is
    // loaded or made for them.
    drop(c);
    std::fs::remove_file(&keys).unwrap();
    let mut fourth = Client::of_new_process(&dir);
    fourth.run("a SELECT INBOX\r\n");
    assert_eq!(
        fourth.run("f SORT (DATE) UTF-8 ALL\r\n"),
        "* SORT 3 2 1 4 5\r\nf OK Sort completed.\r\n"
    );
    assert!(!keys.exists(), "a date sort loaded or made header keys");
}

/// A client whose Maildir has a Maildir++ quota of `bytes` bytes.
fn quota_client(dir: &Path, bytes: u64) -> Client {
    use crate::config::quota::{Limits, Rule};
    use crate::store::maildir::quota::Quota;
    let rule = Rule {
        limits: Limits { bytes, count: 0 },
        force: true,
    };
    let mut c = Client::new(dir);
    let b = std::mem::replace(
        &mut c.backend,
        Backend::new(dir.to_path_buf(), MAILBOXES.with(Arc::clone)),
    );
    c.backend = b.with_quota(Some(Arc::new(Quota::new(dir, Some(rule), "User quota"))));
    c
}

#[test]
fn quota_root_numbers_and_over_quota_append() {
    let (_tmp, dir) = maildir();
    let used: u64 = [ALPHA, BETA, GAMMA]
        .iter()
        .map(|m| m.replace("\r\n", "\n").len() as u64)
        .sum();
    let mut c = quota_client(&dir, used + 40);
    assert_eq!(
        c.run("q GETQUOTAROOT INBOX\r\n"),
        "* QUOTAROOT INBOX \"User quota\"\r\n* QUOTA \"User quota\" (STORAGE 1 1)\r\nq OK Getquotaroot completed.\r\n"
    );
    assert_eq!(
        c.run("n GETQUOTAROOT Nonesuch\r\n"),
        "n NO [NONEXISTENT] Mailbox doesn't exist.\r\n"
    );
    let fits = "Subject: x\r\n\r\n12345678901234567890\r\n";
    let o = c.run(&format!("a APPEND INBOX {}\r\n", literal(fits)));
    assert!(o.starts_with("a OK [APPENDUID"), "{o}");
    assert_eq!(
        c.run(&format!("b APPEND Archive {}\r\n", literal(fits))),
        "b NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n"
    );
    assert_eq!(
        c.run("s SETQUOTA \"User quota\" (STORAGE 512)\r\n"),
        "s NO [NOPERM] Quota limits come from the server configuration (quota_rule).\r\n"
    );
    // Without a quota the commands are unknown, as without Dovecot's plugin.
    let mut plain = Client::new(&dir);
    assert_eq!(
        plain.run("g GETQUOTA \"User quota\"\r\n"),
        "g BAD Error in IMAP command GETQUOTA: Not supported.\r\n"
    );
}

/// CATENATE (RFC 4469), as the session hands it over: parts of ALPHA and
/// BETA by absolute and relative URL; BADURL for what doesn't resolve,
/// TOOBIG over the limit, nothing stored by a command that fails.
#[test]
fn catenate_builds_from_urls_all_or_nothing() {
    use crate::imap::proto::multiappend;
    let (_tmp, dir) = maildir();
    let v = uidvalidity(&dir, "INBOX");
    let mut c = Client::new(&dir);
    c.backend = Backend::new(dir.clone(), MAILBOXES.with(Arc::clone)).with_user("john", 200);
    let mut append = |line: String| {
        let (tag, m) = multiappend::parse(line.as_bytes()).expect("an APPEND");
        String::from_utf8(c.backend.multi_append(&tag, &m.unwrap(), false)).unwrap()
    };
    let r = append(format!(
        "a APPEND INBOX CATENATE (URL \"/INBOX;UIDVALIDITY={v}/;UID=2/;SECTION=HEADER\" TEXT {} URL \"imap://john@h/INBOX/;UID=1/;SECTION=TEXT/;PARTIAL=6\")\r\n",
        literal("new\r\n")
    ));
    assert_eq!(r, format!("a OK [APPENDUID {v} 4] Append completed.\r\n"));
    let stored = read_message(&MaildirRoot::new(&dir).open("INBOX").unwrap(), 4).unwrap();
    assert_eq!(
        stored,
        b"From: bob@example.org\r\nSubject: beta\r\n\r\nnew\r\nbody\r\n"
    );
    for (url, why) in [
        (
            format!("/INBOX;UIDVALIDITY={}/;UID=1", v + 1),
            "Invalid UIDVALIDITY",
        ),
        ("/INBOX/;UID=9".into(), "Message not found"),
        ("/INBOX/;UID=1/;SECTION=2".into(), "Section not found"),
        ("/Nowhere/;UID=1".into(), "Mailbox doesn't exist"),
        ("imap://jane@h/INBOX/;UID=1".into(), "URL of another user"),
        (";UID=1".into(), "no mailbox selected"),
    ] {
        // The first message is fine: none is stored all the same.
        let r = append(format!(
            "b APPEND INBOX CATENATE (URL /INBOX/;UID=3) CATENATE (URL \"{url}\")\r\n"
        ));
        assert!(r.starts_with(&format!("b NO [BADURL {url}] ")), "{r}");
        assert!(r.contains(why), "{r}");
    }
    let r = append(
        "c APPEND INBOX CATENATE (URL /INBOX/;UID=1 URL /INBOX/;UID=1 URL /INBOX/;UID=1)\r\n"
            .into(),
    );
    assert_eq!(r, "c NO [TOOBIG] Composed message grows too big.\r\n");
    let r = append("d APPEND Nowhere CATENATE (URL /INBOX/;UID=1)\r\n".into());
    assert_eq!(r, "d NO [TRYCREATE] Mailbox doesn't exist.\r\n");
    assert_eq!(
        MaildirRoot::new(&dir)
            .open("INBOX")
            .unwrap()
            .messages()
            .len(),
        4
    );
    // With INBOX selected, `;UID=n` is relative to it.
    c.run("s SELECT INBOX\r\n");
    let r = String::from_utf8(
        c.backend.multi_append(
            "e",
            &multiappend::parse(b"e APPEND Work CATENATE (URL \";UID=3/;SECTION=1\")\r\n")
                .unwrap()
                .1
                .unwrap(),
            false,
        ),
    )
    .unwrap();
    assert!(r.starts_with("e OK [APPENDUID "), "{r}");
    let work = MaildirRoot::new(&dir).open("Work").unwrap();
    assert_eq!(read_message(&work, 1).unwrap(), b"third, and longer\r\n");
}

/// Applies RFC 5267 ADDTO/REMOVEFROM pairs as a client does (§4.3.3,
/// §4.3.4): position 0 in mailbox order, else at that position.
fn apply_update(list: &mut Vec<u32>, removals: &context::Pairs, additions: &context::Pairs) {
    for (pos, set) in removals {
        if *pos == 0 {
            list.retain(|u| !set.contains(u));
        } else {
            let at = *pos as usize - 1;
            assert_eq!(&list[at..at + set.len()], set.as_slice());
            list.drain(at..at + set.len());
        }
    }
    for (pos, set) in additions {
        if *pos == 0 {
            list.extend(set);
            list.sort_unstable();
        } else {
            let at = *pos as usize - 1;
            list.splice(at..at, set.iter().copied());
        }
    }
}

#[test]
fn context_diff_positions_for_search_and_sort() {
    // SEARCH: position 0, mailbox order (RFC 5267 §4.3.3, §4.3.4).
    let (r, a) = context::diff(&[1, 3, 5], &[3, 5, 6, 7], false);
    assert_eq!(r, vec![(0, vec![1])]);
    assert_eq!(a, vec![(0, vec![6, 7])]);
    assert_eq!(context::diff(&[1, 2], &[1, 2], false), (vec![], vec![]));
    // SORT: positions in sort order, each pair counted after the ones
    // before it are applied.
    let (r, a) = context::diff(&[4, 2, 9, 7], &[2, 8, 7, 1], true);
    assert_eq!(r, vec![(1, vec![4]), (2, vec![9])]);
    assert_eq!(a, vec![(2, vec![8]), (4, vec![1])]);
    let (r, a) = context::diff(&[1, 2, 3, 4], &[1, 4], true);
    assert_eq!(r, vec![(2, vec![2, 3])]);
    assert!(a.is_empty());
    let (r, a) = context::diff(&[], &[5, 3], true);
    assert!(r.is_empty());
    assert_eq!(a, vec![(1, vec![5, 3])]);
    // Members that changed places: the list is sent again.
    let (r, a) = context::diff(&[1, 2], &[2, 1], true);
    assert_eq!(r, vec![(1, vec![1, 2])]);
    assert_eq!(a, vec![(1, vec![2, 1])]);
    // Applying the pairs always gives the new list.
    let lists: [&[u32]; 7] = [
        &[],
        &[1],
        &[5, 1, 9, 3],
        &[9, 5, 3],
        &[2, 5, 7, 1, 9, 3],
        &[4, 6, 8],
        &[1, 9, 2, 8],
    ];
    for old in lists {
        for new in lists {
            for sorted in [false, true] {
                let (old, new): (Vec<u32>, Vec<u32>) = if sorted {
                    (old.to_vec(), new.to_vec())
                } else {
                    let mut o = old.to_vec();
                    let mut n = new.to_vec();
                    o.sort_unstable();
                    n.sort_unstable();
                    (o, n)
                };
                let (r, a) = context::diff(&old, &new, sorted);
                let mut got = old.clone();
                apply_update(&mut got, &r, &a);
                assert_eq!(got, new, "{old:?} -> {new:?} sorted {sorted}");
            }
        }
    }
}

#[test]
fn search_and_sort_updates_across_sessions() {
    let (_tmp, dir) = maildir();
    let mut c = Client::new(&dir);
    let mut other = Client::new(&dir);
    c.run("a1 SELECT INBOX\r\n");
    other.run("b1 SELECT INBOX\r\n");
    c.opts.search_return = Some(SearchReturn {
        update: true,
        all: true,
        ..Default::default()
    });
    assert_eq!(
        c.run("a2 SEARCH UNSEEN\r\n"),
        "* ESEARCH (TAG \"a2\") ALL 2:3\r\na2 OK Search completed.\r\n"
    );
    assert_eq!(
        c.run("a3 UID SORT (REVERSE SUBJECT) UTF-8 ALL\r\n"),
        "* ESEARCH (TAG \"a3\") UID ALL 3,2,1\r\na3 OK Sort completed.\r\n"
    );
    // RFC 5267 §4.3: message numbers are taken when the command comes.
    assert_eq!(
        c.run("a4 SEARCH 1:2\r\n"),
        "* ESEARCH (TAG \"a4\") ALL 1:2\r\na4 OK Search completed.\r\n"
    );
    c.opts.search_return = None;
    other.run("b2 STORE 2 +FLAGS.SILENT (\\Seen)\r\n");
    other.run(&format!(
        "b3 APPEND INBOX {}\r\n",
        literal("Subject: delta\r\n\r\nx\r\n")
    ));
    other.run("b4 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n");
    other.run("b5 EXPUNGE\r\n");
    // REMOVEFROM before the EXPUNGE (§4.3.4), ADDTO after the EXISTS
    // (§4.3.3); SEARCH at position 0, SORT in sort order.
    assert_eq!(
        c.run("a5 NOOP\r\n"),
        "* ESEARCH (TAG \"a3\") UID REMOVEFROM (3 1)\r\n\
         * ESEARCH (TAG \"a4\") REMOVEFROM (0 1)\r\n\
         * 1 EXPUNGE\r\n\
         * 3 EXISTS\r\n\
         * 2 RECENT\r\n\
         * 1 FETCH (UID 2 FLAGS (\\Seen \\Recent))\r\n\
         * ESEARCH (TAG \"a2\") REMOVEFROM (0 1) ADDTO (0 3)\r\n\
         * ESEARCH (TAG \"a3\") UID ADDTO (2 4)\r\n\
         a5 OK NOOP completed.\r\n"
    );
    // This session's own STORE changes a result too.
    assert_eq!(
        c.run("a6 STORE 3 +FLAGS.SILENT (\\Seen)\r\n"),
        "* ESEARCH (TAG \"a2\") REMOVEFROM (0 3)\r\na6 OK Store completed.\r\n"
    );
    // CANCELUPDATE (§4.3.5); an unknown tag is NO, as Dovecot says.
    assert_eq!(
        String::from_utf8(c.backend.cancel_update("a7", &["a2".into()])).unwrap(),
        "a7 OK Updates cancelled.\r\n"
    );
    assert_eq!(
        String::from_utf8(c.backend.cancel_update("a8", &["a2".into()])).unwrap(),
        "a8 NO Unknown tag.\r\n"
    );
    other.run("b6 UID STORE 2 -FLAGS.SILENT (\\Seen)\r\n");
    assert_eq!(
        c.run("a9 NOOP\r\n"),
        "* 1 FETCH (UID 2 FLAGS (\\Recent))\r\na9 OK NOOP completed.\r\n"
    );
    // §4.3: a tag still updating can't be reused with UPDATE.
    c.opts.search_return = Some(SearchReturn {
        update: true,
        all: true,
        ..Default::default()
    });
    assert_eq!(
        c.run("a3 SEARCH ALL\r\n"),
        "a3 BAD Tag reuse: that tag's search is still updating.\r\n"
    );
    // §4.3.1: past the limit, NO [NOUPDATE] and the answer all the same.
    for i in 2..context::MAX_LIVE {
        assert!(c
            .run(&format!("t{i} SEARCH ALL\r\n"))
            .ends_with("OK Search completed.\r\n"));
    }
    assert_eq!(
        c.run("t99 SEARCH ALL\r\n"),
        "* ESEARCH (TAG \"t99\") ALL 1:3\r\n\
         * NO [NOUPDATE \"t99\"] Too many contexts (at most 16).\r\n\
         t99 OK Search completed.\r\n"
    );
    // Updates end with the selection.
    c.opts.search_return = None;
    c.run("a10 UNSELECT\r\n");
    c.run("a11 SELECT INBOX\r\n");
    assert_eq!(
        String::from_utf8(c.backend.cancel_update("a12", &["a3".into()])).unwrap(),
        "a12 NO Unknown tag.\r\n"
    );
}

/// A flag sync's FETCH (UID, FLAGS, MODSEQ, RFC822.SIZE in any mix) is
/// written straight from each message's record; its bytes are the ones the
/// general item path makes, with flags, \Recent, keywords (which take the
/// item path), CONDSTORE and IMAP4rev2.
#[test]
fn flag_sync_fetches_answer_as_the_item_path_does() {
    use super::fetch::{FLAG_SYNC_PATH, FLAG_SYNC_WRITES};
    let (_tmp, dir) = maildir();
    std::fs::write(dir.join("new/1700000100.M1P1.host"), "Subject: new\n\nx\n").unwrap();
    let mut c = Client::new(&dir);
    let sel = c.run("a SELECT INBOX\r\n");
    assert!(!sel.contains("* 0 RECENT"), "{sel}");
    c.run("b STORE 2 +FLAGS (\\Flagged \\Answered \\Draft)\r\n");
    c.run("c STORE 3 +FLAGS (\\Deleted work)\r\n");
    let fetches = [
        "f1 FETCH 1:* (FLAGS)\r\n",
        "f2 UID FETCH 1:* (FLAGS)\r\n",
        "f3 FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE)\r\n",
        "f4 FETCH 1:* (MODSEQ FLAGS UID)\r\n",
        "f5 FETCH 2,4 (FLAGS RFC822.SIZE FLAGS UID)\r\n",
        "f6 UID FETCH 1:* (RFC822.SIZE)\r\n",
        "f7 FETCH 1:* FAST\r\n",
        "f8 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)\r\n",
    ];
    let compare = |c: &mut Client, what: &str| {
        for f in fetches {
            let writes = FLAG_SYNC_WRITES.with(|n| n.get());
            let fast = c.run(f);
            let took_it = FLAG_SYNC_WRITES.with(|n| n.get()) > writes;
            FLAG_SYNC_PATH.with(|p| p.set(false));
            let items = c.run(f);
            FLAG_SYNC_PATH.with(|p| p.set(true));
            assert_eq!(fast, items, "{what}: {f}");
            assert!(
                took_it || f.starts_with("f7"),
                "{what}: {f} took the item path"
            );
        }
    };
    compare(&mut c, "plain");
    c.run("e ENABLE CONDSTORE\r\n");
    compare(&mut c, "condstore");
    let mut r = Client::new(&dir);
    r.run("e ENABLE IMAP4rev2\r\n");
    r.run("a SELECT INBOX\r\n");
    compare(&mut r, "rev2");
}
