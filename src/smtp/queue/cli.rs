//! `pigeonpost queue list|flush|delete` (mailq, postqueue -f, postsuper -d)
//! and `pigeonpost sendmail` (sendmail(1) for cron jobs and applications).

use std::io::Read;

use super::control;
use super::pickup::{self, Drop};
use super::spool::{from_unix, RcptState, Spool};
use crate::config::Config;
use crate::smtp::received::rfc5322_date;

/// sysexits(3) codes sendmail callers expect.
pub const EX_USAGE: u8 = 64;
pub const EX_TEMPFAIL: u8 = 75;

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
    match control::request(&spool.control_socket(), &format!("delete {id}")) {
        Ok(answer) => Ok(answer),
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
            Ok(format!("ok {n} messages deleted"))
        }
    }
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
usage: pigeonpost sendmail [options] [--] [recipient ...]   (also as sendmail, via a symlink or /usr/sbin/sendmail wrapper)

Reads a message on stdin and hands it to the running pigeonpost server
(through the maildrop in queue_directory; it waits there if the server is
not running).

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

/// The login name of whoever runs sendmail.
fn login_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy
    // the name out before any other passwd call.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "nobody".into())
}

/// `pigeonpost sendmail`: the message on stdin goes to the maildrop and
/// the running server is asked to pick it up. Ok(notice) or Err((exit, why)).
pub fn sendmail(
    config: &Config,
    args: &[String],
    input: &mut dyn Read,
) -> Result<String, (u8, String)> {
    let a = parse_args(args).map_err(|e| (EX_USAGE, e))?;
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
    let mut recipients: Vec<String> = Vec::new();
    for r in rcpts.iter().flat_map(|r| r.split(',')) {
        let q = qualify(r, &config.myorigin);
        if !q.is_empty() && !recipients.contains(&q) {
            recipients.push(q);
        }
    }
    if recipients.is_empty() {
        return Err((
            EX_USAGE,
            "no recipients (give addresses, or -t to take them from the message)".into(),
        ));
    }
    let header_sender = if sender.is_empty() {
        format!("MAILER-DAEMON@{}", config.myhostname)
    } else {
        sender.clone()
    };
    let message = complete_headers(message, &header_sender, &config.myhostname);
    let spool = Spool::at(&config.queue_directory);
    let drop = Drop {
        sender,
        recipients,
        user,
        hold_reason: None,
        arrival: None,
        sign: true,
    };
    let id = pickup::drop_message(&spool, &drop, &message).map_err(|e| {
        (
            EX_TEMPFAIL,
            format!("cannot write to {}: {e}", spool.maildrop().display()),
        )
    })?;
    match control::request(&spool.control_socket(), "pickup") {
        Ok(_) => Ok(String::new()),
        Err(_) => Ok(format!(
            "pigeonpost: message {id} is in {}; it goes out when pigeonpost serve runs",
            spool.maildrop().display()
        )),
    }
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
            }
        );
        assert_eq!(
            parse_args(&s(&["-fcron@example.com", "-F", "Cron Daemon", "root"]))
                .unwrap()
                .from
                .as_deref(),
            Some("cron@example.com")
        );
        assert!(parse_args(&s(&["-f"])).is_err());
        assert!(parse_args(&s(&["-bp"])).is_err());
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
    fn bare_names_get_myorigin() {
        assert_eq!(qualify("root", "example.com"), "root@example.com");
        assert_eq!(qualify("<a@b.example>", "example.com"), "a@b.example");
    }
}
