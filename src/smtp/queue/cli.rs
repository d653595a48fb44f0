//! `pigeonpost queue list|flush|delete` (mailq, postqueue -f, postsuper -d)
//! and `pigeonpost sendmail` (sendmail(1) for cron jobs and applications).

use std::io::{Read, Write};

use super::control;
use super::pickup::{self, Drop};
use super::spool::{from_unix, RcptState, Spool};
use crate::auth::login::LoginPolicy;
use crate::config::Config;
use crate::smtp::accept::{passdb_user, LOCAL_TRUST};
use crate::smtp::proto::{Action, Reply, Session, SessionConfig};
use crate::smtp::received::rfc5322_date;
use crate::smtp::router::{self, Destination, RouteContext};

/// sysexits(3) codes sendmail callers expect.
pub const EX_USAGE: u8 = 64;
pub const EX_NOUSER: u8 = 67;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_CONFIG: u8 = 78;

/// `queue list`: like `mailq`.
pub fn list(config: &Config) -> Result<String, String> {
    let spool = Spool::at(&config.queue_directory);
    let (envs, bad) = spool
        .scan()
        .map_err(|e| format!("cannot read {}: {e}", config.queue_directory.display()))?;
    let held = super::hold::list(&spool).map_err(|e| format!("cannot read the hold queue: {e}"))?;
    let mut out = String::new();
    for (path, why) in &bad {
        out.push_str(&format!("unreadable: {} ({why})\n", path.display()));
    }
    if envs.is_empty() && held.is_empty() {
        out.push_str("Mail queue is empty\n");
        return Ok(out);
    }
    out.push_str(
        "-Queue ID-        --Size-- ----Arrival Time-------------- -Sender/Recipient-------\n",
    );
    let mut total = 0;
    for e in &envs {
        total += e.size;
        let sender = if e.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &e.sender
        };
        out.push_str(&format!(
            "{:<17} {:>8} {:<31} {sender}\n",
            e.id,
            e.size,
            rfc5322_date(from_unix(e.arrival))
        ));
        if e.attempts > 0 {
            out.push_str(&format!(
                "{:57}attempts: {}, next: {}\n",
                "",
                e.attempts,
                rfc5322_date(from_unix(e.next_attempt))
            ));
        }
        for r in e
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
        {
            if let Some(err) = &r.last_error {
                out.push_str(&format!("{:57}({err})\n", ""));
            }
            out.push_str(&format!("{:57}{}\n", "", r.address));
        }
        out.push('\n');
    }
    // Held messages: Postfix's mailq marks them with '!' after the id.
    for (id, d, size) in &held {
        total += size;
        let sender = if d.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &d.sender
        };
        out.push_str(&format!(
            "{:<17} {:>8} {:<31} {sender}\n",
            format!("{id}!"),
            size,
            rfc5322_date(from_unix(d.arrival.unwrap_or(0)))
        ));
        out.push_str(&format!(
            "{:57}(hold: {})\n",
            "",
            d.hold_reason.as_deref().unwrap_or("held")
        ));
        for r in &d.recipients {
            out.push_str(&format!("{:57}{r}\n", ""));
        }
        out.push('\n');
    }
    let n = envs.len() + held.len();
    out.push_str(&format!(
        "-- {} Kbytes in {} Request{}.\n",
        total.div_ceil(1024),
        n,
        if n == 1 { "" } else { "s" }
    ));
    Ok(out)
}

/// `queue flush`: asks the running server to retry everything now.
pub fn flush(config: &Config) -> Result<String, String> {
    let socket = Spool::at(&config.queue_directory).control_socket();
    control::request(&socket, "flush").map_err(|e| {
        format!(
            "cannot reach the running server at {}: {e} (is pigeonpost serve running?)",
            socket.display()
        )
    })
}

/// `queue delete ID|ALL`: through the running server if there is one, so
/// its scheduler forgets the message too; directly on the files otherwise.
pub fn delete(config: &Config, id: &str) -> Result<String, String> {
    if id != "ALL" && !super::spool::valid_id(id) {
        return Err(format!("'{id}' is not a queue id"));
    }
    let spool = Spool::at(&config.queue_directory);
    let answer = match control::request(&spool.control_socket(), &format!("delete {id}")) {
        Ok(answer) => answer,
        Err(_) => {
            let ids: Vec<String> = if id == "ALL" {
                spool
                    .scan()
                    .map_err(|e| e.to_string())?
                    .0
                    .into_iter()
                    .map(|e| e.id)
                    .collect()
            } else {
                vec![id.to_string()]
            };
            let mut n = 0;
            let held: Vec<String> = if id == "ALL" {
                super::hold::list(&spool)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .collect()
            } else {
                vec![id.to_string()]
            };
            for id in held {
                if super::hold::remove(&spool, &id).map_err(|e| e.to_string())? {
                    n += 1;
                }
            }
            for id in ids {
                if spool.read_envelope(&id).is_ok() {
                    spool.remove(&id).map_err(|e| e.to_string())?;
                    n += 1;
                }
            }
            format!("ok {n} messages deleted")
        }
    };
    if let Some(e) = answer.strip_prefix("error ") {
        return Err(e.to_string());
    }
    // Like postsuper -d: naming a message that is not there is an error.
    if id != "ALL" && answer.starts_with("ok 0 ") {
        return Err(format!(
            "no message {id} in the queue {} (see pigeonpost queue list)",
            config.queue_directory.display()
        ));
    }
    Ok(answer)
}

/// `queue release ID|ALL` (postsuper -H): a held message goes to the
/// maildrop, and the running server picks it up and delivers it.
pub fn release(config: &Config, id: &str) -> Result<String, String> {
    if id != "ALL" && !super::spool::valid_id(id) {
        return Err(format!("'{id}' is not a queue id"));
    }
    let spool = Spool::at(&config.queue_directory);
    match control::request(&spool.control_socket(), &format!("release {id}")) {
        Ok(answer) => Ok(answer),
        Err(_) => super::hold::release(&spool, id)
            .map(|n| format!("ok {n} messages released (delivered when the server runs)"))
            .map_err(|e| e.to_string()),
    }
}

/// What `sendmail` is asked to do (`-b` modes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SendmailMode {
    /// `-bm` (the default): read a message and send it.
    #[default]
    Deliver,
    /// `-bs`: speak SMTP on stdin/stdout.
    Smtp,
    /// `-bv`: say where each address would go; nothing is sent.
    Verify,
    /// `-bp`: list the queue (mailq).
    ListQueue,
    /// `--help`.
    Help,
}

/// sendmail(1) options we understand.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SendmailArgs {
    pub mode: SendmailMode,
    pub extract: bool,
    pub from: Option<String>,
    /// `-F`: the sender's full name, for a From: header we add.
    pub full_name: Option<String>,
    pub ignore_dots: bool,
    /// `-v`: say what was done and which options were ignored.
    pub verbose: bool,
    pub recipients: Vec<String>,
    /// Options accepted for compatibility that change nothing here.
    pub ignored: Vec<String>,
}

/// What `pigeonpost sendmail --help` prints.
pub const SENDMAIL_HELP: &str = "\
usage: pigeonpost sendmail [options] [--] [recipient ...]

Reads a message on stdin and hands it to the running pigeonpost server
(any local user may: through queue_directory/public/submit), or, when the
server is not running, leaves it in queue_directory/maildrop (root or the
mail user only) for the next start. As /usr/sbin/sendmail, install a
script: #!/bin/sh + exec pigeonpost sendmail \"$@\".

  -t             take recipients from To:, Cc: and Bcc: (Bcc: is removed)
  -i, -oi        a line with a single dot does not end the message
  -f ADDR, -r ADDR
                 envelope sender (default: your login name @ myorigin; -f '<>' for none)
  -F NAME        full name for the From: header added when the message has none
  -bm            read a message and send it (the default)
  -bs            speak SMTP on stdin/stdout (for programs that submit over a pipe)
  -bv            verify: print where each recipient would go; nothing is sent
  -bp            list the queue (like mailq / pigeonpost queue list)
  -v             verbose: say which compatibility options were ignored
  --help         this text

Accepted and ignored (they make no difference to pigeonpost):
  -odi -odb -odq -odd (delivery mode: the server always delivers at once)
  -oem -oep -oeq -oew (error mode: errors go back by mail, as with -oem)
  -o<x> / -O opt=val, -N DSN, -R RET, -V ENVID, -B TYPE, -X FILE, -L TAG,
  -h HOPS, -C FILE, -G, -U, -n, -m, -bi, -q...

Exit codes (sysexits): 0 sent, 64 bad usage, 67 unknown recipient (-bv), 75 try again later.
Examples:
  printf 'Subject: hi\\n\\nbody\\n' | pigeonpost sendmail -i user@example.com
  pigeonpost sendmail -t -i < message.eml        (PHP's sendmail_path, cron)
";

/// Parses sendmail's traditional flags (`-t`, `-f from`/`-ffrom`, `-i`,
/// `-oi`, `-F name`, `-b` modes, and the ignored `-odi -oem -N ...`).
pub fn parse_args(args: &[String]) -> Result<SendmailArgs, String> {
    let mut a = SendmailArgs::default();
    let mut it = args.iter();
    // An option's value: attached (`-fa@b`) or the next argument.
    fn value<'a>(
        flag: &str,
        attached: &'a str,
        it: &mut std::slice::Iter<'a, String>,
    ) -> Result<String, String> {
        if !attached.is_empty() {
            return Ok(attached.to_string());
        }
        it.next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value (see pigeonpost sendmail --help)"))
    }
    while let Some(arg) = it.next() {
        let s = arg.as_str();
        if s == "--" {
            a.recipients.extend(it.by_ref().cloned());
            break;
        }
        if s == "--help" || s == "-help" {
            a.mode = SendmailMode::Help;
            continue;
        }
        if !s.starts_with('-') || s == "-" {
            a.recipients.push(s.to_string());
            continue;
        }
        let (flag, rest) = s.split_at(2.min(s.len()));
        match flag {
            "-t" if rest.is_empty() => a.extract = true,
            "-i" if rest.is_empty() => a.ignore_dots = true,
            "-v" => a.verbose = true,
            "-f" | "-r" => a.from = Some(value(flag, rest, &mut it)?),
            "-F" => a.full_name = Some(value(flag, rest, &mut it)?),
            "-b" => match rest {
                "m" => a.mode = SendmailMode::Deliver,
                "s" => a.mode = SendmailMode::Smtp,
                "v" => a.mode = SendmailMode::Verify,
                "p" => a.mode = SendmailMode::ListQueue,
                "i" => a.ignored.push(s.to_string()),
                _ => {
                    return Err(format!(
                        "{s} is not supported (-bm, -bs, -bv and -bp are; see pigeonpost sendmail --help)"
                    ))
                }
            },
            "-o" => {
                // -oi (no dots); -odX, -oeX and the rest change nothing.
                let opt = if rest.is_empty() {
                    value(flag, rest, &mut it)?
                } else {
                    rest.to_string()
                };
                if opt == "i" {
                    a.ignore_dots = true;
                } else {
                    a.ignored.push(format!("-o{opt}"));
                }
            }
            "-N" | "-R" | "-V" | "-B" | "-X" | "-O" | "-L" | "-h" | "-C" => {
                let v = value(flag, rest, &mut it)?;
                a.ignored.push(format!("{flag} {v}"));
            }
            "-G" | "-U" | "-n" | "-m" | "-q" | "-e" | "-A" | "-I" | "-s" | "-x" | "-d" => {
                a.ignored.push(s.to_string())
            }
            _ => {
                return Err(format!(
                    "unknown option {s} (see pigeonpost sendmail --help)"
                ))
            }
        }
    }
    Ok(a)
}

/// Qualifies a bare user name with `myorigin`, as Postfix does.
fn qualify(addr: &str, myorigin: &str) -> String {
    let addr = addr.trim().trim_start_matches('<').trim_end_matches('>');
    if addr.is_empty() || addr.contains('@') {
        addr.to_string()
    } else {
        format!("{addr}@{myorigin}")
    }
}

/// Reads the message: up to EOF, or a lone "." line unless `-i`. Line
/// endings become CRLF.
pub fn read_message(input: &mut dyn Read, ignore_dots: bool) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    input.read_to_end(&mut raw)?;
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let body = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if !ignore_dots && body == b"." {
            break;
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The header section's end (offset of the blank line's CRLF).
fn header_end(msg: &[u8]) -> usize {
    if msg.starts_with(b"\r\n") {
        return 0;
    }
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(msg.len())
}

/// `-t`: recipients from To/Cc/Bcc, and the Bcc lines removed.
pub fn extract_recipients(msg: &[u8]) -> (Vec<String>, Vec<u8>) {
    let end = header_end(msg);
    let parsed = mail_parser::MessageParser::default().parse_headers(&msg[..end]);
    let mut rcpts = Vec::new();
    if let Some(m) = &parsed {
        for list in [m.to(), m.cc(), m.bcc()].into_iter().flatten() {
            for a in list.iter() {
                if let Some(addr) = a.address() {
                    rcpts.push(addr.to_string());
                }
            }
        }
    }
    // Drop Bcc: and its continuation lines.
    let mut out = Vec::with_capacity(msg.len());
    let mut skipping = false;
    for line in msg[..end].split_inclusive(|b| *b == b'\n') {
        let cont = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !cont {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&msg[end..]);
    (rcpts, out)
}

/// Adds From:, Date: and Message-ID: when the message has none (Postfix's
/// cleanup does the same for local submissions).
fn complete_headers(msg: Vec<u8>, sender: &str, myhostname: &str) -> Vec<u8> {
    let end = header_end(&msg);
    let head = String::from_utf8_lossy(&msg[..end]).to_ascii_lowercase();
    let has =
        |name: &str| head.starts_with(&format!("{name}:")) || head.contains(&format!("\n{name}:"));
    let mut extra = String::new();
    if !has("from") {
        extra.push_str(&format!("From: {sender}\r\n"));
    }
    if !has("date") {
        extra.push_str(&format!(
            "Date: {}\r\n",
            rfc5322_date(std::time::SystemTime::now())
        ));
    }
    if !has("message-id") {
        extra.push_str(&format!(
            "Message-ID: <{}@{myhostname}>\r\n",
            crate::smtp::received::new_queue_id()
        ));
    }
    if extra.is_empty() {
        return msg;
    }
    let mut out = extra.into_bytes();
    if end == 0 {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&msg);
    out
}

/// The login name of a uid (the caller's for sendmail, the peer's on the
/// submit socket).
pub fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy
    // the name out before any other passwd call.
    unsafe {
        let pw = libc::getpwuid(uid);
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    format!("uid{uid}")
}

/// The login name of whoever runs sendmail.
fn login_name() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let name = user_name(uid);
    if name.starts_with("uid") {
        return std::env::var("USER").unwrap_or(name);
    }
    name
}

/// `From:` with the `-F` full name, quoted when it needs to be (RFC 5322 §3.4).
fn from_header(sender: &str, full_name: Option<&str>) -> String {
    match full_name.map(str::trim).filter(|n| !n.is_empty()) {
        None => sender.to_string(),
        Some(name) => {
            let atext = |c: char| {
                c.is_ascii_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c)
            };
            if name.chars().all(atext) {
                format!("{name} <{sender}>")
            } else {
                let escaped = name
                    .chars()
                    .filter(|c| !c.is_control())
                    .map(|c| match c {
                        '"' | '\\' => format!("\\{c}"),
                        c => c.to_string(),
                    })
                    .collect::<String>();
                format!("\"{escaped}\" <{sender}>")
            }
        }
    }
}

/// Hands a message to the server: over the submit socket when the server
/// runs (any local user may), else into the maildrop (root or the mail
/// user) where it waits for `pigeonpost serve`. Ok((id, notice)).
pub fn submit(
    config: &Config,
    drop: &Drop,
    message: &[u8],
) -> Result<(String, String), (u8, String)> {
    let spool = Spool::at(&config.queue_directory);
    match control::submit(&spool.submit_socket(), drop, message) {
        Ok(Ok(id)) => return Ok((id, String::new())),
        Ok(Err(refused)) => return Err((EX_TEMPFAIL, refused)),
        Err(_) => {} // no server: the maildrop
    }
    let id = pickup::drop_message(&spool, drop, message).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!(
                " (pigeonpost serve is not running, and only root or the owner of {} may queue mail without it; start the server, then any user can send through {})",
                config.queue_directory.display(),
                spool.submit_socket().display()
            )
        } else {
            String::new()
        };
        (
            EX_TEMPFAIL,
            format!("cannot write to {}: {e}{hint}", spool.maildrop().display()),
        )
    })?;
    match control::request(&spool.control_socket(), "pickup") {
        Ok(_) => Ok((id, String::new())),
        Err(_) => Ok((
            id.clone(),
            format!(
                "pigeonpost: message {id} is in {}; it goes out when pigeonpost serve runs",
                spool.maildrop().display()
            ),
        )),
    }
}

/// `pigeonpost sendmail`: by mode, a message on stdin goes to the server
/// (`-bm`), an SMTP session runs on stdin/stdout (`-bs`), addresses are
/// verified (`-bv`), the queue listed (`-bp`) or help printed. Ok(notice
/// for stderr) or Err((exit, why)).
pub fn sendmail(
    config: &Config,
    args: &[String],
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<String, (u8, String)> {
    let a = parse_args(args).map_err(|e| (EX_USAGE, e))?;
    let mut notes = Vec::new();
    if a.verbose && !a.ignored.is_empty() {
        notes.push(format!(
            "pigeonpost sendmail: ignored (no effect here): {}",
            a.ignored.join(" ")
        ));
    }
    let out_err = |e: std::io::Error| (EX_TEMPFAIL, format!("writing the output: {e}"));
    match a.mode {
        SendmailMode::Help => {
            output
                .write_all(SENDMAIL_HELP.as_bytes())
                .map_err(out_err)?;
            return Ok(String::new());
        }
        SendmailMode::ListQueue => {
            let text = list(config).map_err(|e| (EX_TEMPFAIL, e))?;
            output.write_all(text.as_bytes()).map_err(out_err)?;
            return Ok(notes.join("\n"));
        }
        SendmailMode::Verify => {
            verify(config, &a.recipients, output)?;
            return Ok(notes.join("\n"));
        }
        SendmailMode::Smtp => {
            smtp_session(config, input, output)?;
            return Ok(notes.join("\n"));
        }
        SendmailMode::Deliver => {}
    }
    let user = login_name();
    let sender = match &a.from {
        Some(f) if f.trim().is_empty() || f == "<>" => String::new(),
        Some(f) => qualify(f, &config.myorigin),
        None => qualify(&user, &config.myorigin),
    };
    let message = read_message(input, a.ignore_dots)
        .map_err(|e| (EX_TEMPFAIL, format!("reading the message: {e}")))?;
    let (mut rcpts, message) = if a.extract {
        extract_recipients(&message)
    } else {
        (Vec::new(), message)
    };
    rcpts.extend(a.recipients.iter().cloned());
    let recipients = qualify_all(&rcpts, &config.myorigin);
    if recipients.is_empty() {
        return Err((
            EX_USAGE,
            "no recipients (give addresses, or -t to take them from the message; see pigeonpost sendmail --help)".into(),
        ));
    }
    let header_sender = if sender.is_empty() {
        format!("MAILER-DAEMON@{}", config.myhostname)
    } else {
        from_header(&sender, a.full_name.as_deref())
    };
    let message = complete_headers(message, &header_sender, &config.myhostname);
    let drop = Drop {
        sender,
        recipients,
        user,
        hold_reason: None,
        arrival: None,
        sign: true,
    };
    let (id, notice) = submit(config, &drop, &message)?;
    if !notice.is_empty() {
        notes.push(notice);
    }
    if a.verbose {
        notes.push(format!(
            "pigeonpost sendmail: queued as {id}: from=<{}> to=<{}>",
            drop.sender,
            drop.recipients.join(">,<")
        ));
    }
    Ok(notes.join("\n"))
}

/// Recipients as given (comma lists split), qualified and deduplicated.
fn qualify_all(rcpts: &[String], myorigin: &str) -> Vec<String> {
    let mut recipients: Vec<String> = Vec::new();
    for r in rcpts.iter().flat_map(|r| r.split(',')) {
        let q = qualify(r, myorigin);
        if !q.is_empty() && !recipients.contains(&q) {
            recipients.push(q);
        }
    }
    recipients
}

/// The tables and users the router reads, opened from the files.
fn route_with<T>(config: &Config, f: impl FnOnce(&RouteContext) -> T) -> Result<T, (u8, String)> {
    let tables = crate::tables::Tables::open(config).map_err(|e| (EX_CONFIG, e.to_string()))?;
    let auth = crate::auth::Auth::open(config).map_err(|e| (EX_CONFIG, e.to_string()))?;
    let users = |n: &str| auth.user(n);
    let mailbox_users = |n: &str| passdb_user(&auth, n);
    let ctx = RouteContext {
        config,
        tables: &tables,
        users: &users,
        mailbox_users: config
            .virtual_mailbox_passdb_users
            .then_some(&mailbox_users as crate::smtp::router::UserLookup),
    };
    Ok(f(&ctx))
}

/// `-bv`: where each recipient would go, as the server would route mail
/// from this host. Err (EX_NOUSER) when any is undeliverable.
fn verify(
    config: &Config,
    recipients: &[String],
    output: &mut dyn Write,
) -> Result<(), (u8, String)> {
    let recipients = qualify_all(recipients, &config.myorigin);
    if recipients.is_empty() {
        return Err((EX_USAGE, "-bv needs addresses to verify".into()));
    }
    let lines = route_with(config, |ctx| {
        let mut all_ok = true;
        let mut lines = Vec::new();
        for r in &recipients {
            match router::resolve(ctx, r, LOCAL_TRUST) {
                Ok(res) => {
                    let dests: Vec<String> = res
                        .destinations
                        .iter()
                        .map(|d| match d {
                            Destination::Maildir { user, dir, .. } => {
                                format!("mailbox of {user} (Maildir {})", dir.display())
                            }
                            Destination::Mbox { user, path, .. } => {
                                format!("mailbox of {user} (mbox {})", path.display())
                            }
                            Destination::Remote { address } => {
                                format!("remote <{address}> (queued for SMTP delivery)")
                            }
                        })
                        .collect();
                    lines.push(format!("{r}: deliverable: {}", dests.join(", ")));
                }
                Err(e) => {
                    all_ok = false;
                    let (code, enhanced, text) = e.reply(r);
                    lines.push(format!("{r}: undeliverable: {code} {enhanced} {text}"));
                }
            }
        }
        (lines, all_ok)
    })?;
    let (lines, all_ok) = lines;
    for l in lines {
        writeln!(output, "{l}").map_err(|e| (EX_TEMPFAIL, e.to_string()))?;
    }
    if all_ok {
        Ok(())
    } else {
        Err((EX_NOUSER, "some addresses are undeliverable".into()))
    }
}

/// `-bs`: an SMTP session on stdin/stdout, through the same sans-IO
/// session as the listeners (no TLS, no AUTH: the caller is on this host),
/// each message handed to the server like `sendmail -bm`.
fn smtp_session(
    config: &Config,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<(), (u8, String)> {
    let io = |e: std::io::Error| (EX_TEMPFAIL, format!("SMTP on stdin/stdout: {e}"));
    let user = login_name();
    let mut session: Session<()> = Session::new(SessionConfig {
        hostname: config.myhostname.clone(),
        max_message_size: config.message_size_limit,
        max_recipients: config.smtpd_recipient_limit,
        login: LoginPolicy {
            tls_available: false,
            tls_active: false,
            local_client: true,
            disable_plaintext_auth: true,
            mechanisms: Vec::new(),
            auth_requires_tls: false,
        },
        submission: false,
        require_tls: false,
        check_sender: false,
        max_errors: 20,
        check_data: false,
        check_helo: false,
    });
    route_with(config, |ctx| -> Result<(), (u8, String)> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match session.next_action() {
                Action::NeedInput => {
                    output.write_all(&session.take_output()).map_err(io)?;
                    output.flush().map_err(io)?;
                    let n = input.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        return Ok(());
                    }
                    session.feed(&buf[..n]);
                }
                Action::CheckRecipient(rcpt) => {
                    let rcpt = qualify(&rcpt, &config.myorigin);
                    let result = router::resolve(ctx, &rcpt, LOCAL_TRUST)
                        .map(|_| ())
                        .map_err(|e| {
                            let (code, enhanced, text) = e.reply(&rcpt);
                            Reply::new(code, enhanced, text)
                        });
                    session.rcpt_done(result);
                }
                Action::Deliver(env, message) => {
                    let drop = Drop {
                        sender: env.mail_from.clone(),
                        recipients: env.recipients.iter().map(|r| r.address.clone()).collect(),
                        user: user.clone(),
                        hold_reason: None,
                        arrival: None,
                        sign: true,
                    };
                    let header_sender = if drop.sender.is_empty() {
                        format!("MAILER-DAEMON@{}", config.myhostname)
                    } else {
                        drop.sender.clone()
                    };
                    let message = complete_headers(message, &header_sender, &config.myhostname);
                    let reply = match submit(config, &drop, &message) {
                        Ok((id, _)) => Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
                        Err((_, e)) => {
                            Reply::new(451, "4.3.0", format!("Error: queue file write error ({e})"))
                        }
                    };
                    session.data_done(reply);
                }
                Action::CheckAuth(_) => session.auth_refused(Reply::new(
                    503,
                    "5.5.1",
                    "Error: authentication not enabled",
                )),
                Action::CheckSender(_) => session.sender_done(Ok(())),
                Action::CheckHelo(_) => session.helo_done(Ok(())),
                Action::CheckData => session.data_checked(Ok(())),
                Action::StartTls => {
                    session.start_tls_refused(Reply::new(454, "4.7.0", "TLS not available"))
                }
                Action::Close => {
                    output.write_all(&session.take_output()).map_err(io)?;
                    output.flush().map_err(io)?;
                    return Ok(());
                }
            }
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sendmail_flags() {
        assert_eq!(
            parse_args(&s(&["-t", "-oi", "-f", "app@example.com", "-odi", "x@y"])).unwrap(),
            SendmailArgs {
                extract: true,
                from: Some("app@example.com".into()),
                ignore_dots: true,
                recipients: vec!["x@y".into()],
                ignored: vec!["-odi".into()],
                ..Default::default()
            }
        );
        // PHP's sendmail_path, cron, Git.
        let php = parse_args(&s(&["-t", "-i"])).unwrap();
        assert!(php.extract && php.ignore_dots && php.recipients.is_empty());
        let git = parse_args(&s(&["-i", "--", "-dash@example.com", "b@example.com"])).unwrap();
        assert_eq!(git.recipients, ["-dash@example.com", "b@example.com"]);
        let cron = parse_args(&s(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"])).unwrap();
        assert_eq!(cron.full_name.as_deref(), Some("CronDaemon"));
        assert_eq!(cron.ignored, ["-B 8BITMIME", "-oem"]);
        assert_eq!(parse_args(&s(&["-bs"])).unwrap().mode, SendmailMode::Smtp);
        assert_eq!(
            parse_args(&s(&["-bv", "a@b"])).unwrap().mode,
            SendmailMode::Verify
        );
        assert_eq!(
            parse_args(&s(&["--help"])).unwrap().mode,
            SendmailMode::Help
        );
        assert!(parse_args(&s(&["-bz"])).is_err());
        assert!(parse_args(&s(&["-Q"])).is_err());
        assert_eq!(
            parse_args(&s(&["-fcron@example.com", "-F", "Cron Daemon", "root"]))
                .unwrap()
                .from
                .as_deref(),
            Some("cron@example.com")
        );
        assert!(parse_args(&s(&["-f"])).is_err());
    }

    #[test]
    fn message_reading_and_dots() {
        let m = read_message(&mut &b"Subject: a\n\nline\n.\nafter\n"[..], false).unwrap();
        assert_eq!(m, b"Subject: a\r\n\r\nline\r\n");
        let m = read_message(&mut &b"Subject: a\n\nline\n.\nafter"[..], true).unwrap();
        assert_eq!(m, b"Subject: a\r\n\r\nline\r\n.\r\nafter\r\n");
    }

    #[test]
    fn extract_and_strip_bcc() {
        let msg = b"From: a@example.com\r\nTo: Bob <bob@example.com>, carol@remote.example\r\nCc: dave@example.com\r\nBcc: secret@example.com,\r\n  other@example.com\r\nSubject: x\r\n\r\nBcc: in the body stays\r\n";
        let (rcpts, out) = extract_recipients(msg);
        assert_eq!(
            rcpts,
            vec![
                "bob@example.com",
                "carol@remote.example",
                "dave@example.com",
                "secret@example.com",
                "other@example.com"
            ]
        );
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("secret@"), "{out}");
        assert!(!out.contains("other@"), "{out}");
        assert!(
            out.contains("Subject: x\r\n\r\nBcc: in the body stays"),
            "{out}"
        );
    }

    #[test]
    fn missing_headers_are_added() {
        let out = complete_headers(
            b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            "root@example.com",
            "mail.example.com",
        );
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("From: root@example.com\r\nDate: "), "{out}");
        assert!(out.contains("Message-ID: <"));
        assert!(out.ends_with("Subject: hi\r\n\r\nbody\r\n"));
        let full = b"From: a@b\r\nDate: x\r\nMessage-ID: <1@b>\r\n\r\nbody\r\n".to_vec();
        assert_eq!(complete_headers(full.clone(), "r@e", "h"), full);
    }

    #[test]
    fn full_names_are_quoted_when_needed() {
        assert_eq!(from_header("a@b", Some("Cron Daemon")), "Cron Daemon <a@b>");
        assert_eq!(
            from_header("a@b", Some("Doe, J. \"x\"")),
            "\"Doe, J. \\\"x\\\"\" <a@b>"
        );
        assert_eq!(from_header("a@b", None), "a@b");
    }

    #[test]
    fn bare_names_get_myorigin() {
        assert_eq!(qualify("root", "example.com"), "root@example.com");
        assert_eq!(qualify("<a@b.example>", "example.com"), "a@b.example");
    }
}
