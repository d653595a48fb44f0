//! SORT and THREAD (RFC 5256) and SORT=DISPLAY (RFC 5957): sans-IO and
//! pure. The server turns each message that matched the search criteria
//! into a [`Msg`] (from the cached ENVELOPE and References, see
//! [`crate::imap::cache`]), then calls [`sort`], [`ordered_subject`] or
//! [`references`]; [`thread_response`] writes the `* THREAD` line.
//!
//! Choices where the RFCs leave room (Dovecot-like):
//!
//! * Strings compare with `i;ascii-casemap` (RFC 5256 §3, the default
//!   comparator: ASCII letters folded, other bytes as they are), the base
//!   subject and display names after RFC 2047 decoding to UTF-8.
//! * FROM, TO and CC compare the first address's mailbox (local part,
//!   RFC 5256 §3 "addr-mailbox"); DISPLAYFROM and DISPLAYTO its decoded
//!   display name, or `mailbox@host` when it has none (RFC 5957 §3.1).
//!   A message without the header sorts as the empty string.
//! * Every tie is broken by sequence number (RFC 5256 §3), including equal
//!   sent dates in threads (§2.2).

use std::cmp::Ordering;
use std::collections::HashMap;

use imap_codec::imap_types::core::NString;
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};

/// One message as SORT and THREAD see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Msg {
    /// Sequence number: the last tie-breaker.
    pub seq: u32,
    /// What the answer lists (sequence number or UID).
    pub id: u32,
    /// RFC822.SIZE.
    pub size: u64,
    /// INTERNALDATE, Unix seconds (ARRIVAL).
    pub arrival: i64,
    /// The sent date (RFC 5256 §2.2), Unix seconds.
    pub sent: i64,
    /// The header texts the other keys and THREAD compare; `None` (all
    /// empty) for a SORT on dates and sizes alone, which reads no header:
    /// 40 bytes a message instead of 230 (100,000 in a big mailbox).
    pub text: Option<Box<MsgText>>,
}

/// What SORT's text keys and THREAD compare of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsgText {
    /// The base subject (§2.1), casemapped for comparing.
    pub subject: String,
    /// The base-subject extraction removed a reply or forward marker
    /// (`Re:`, `Fwd:`, `(fwd)`, `[fwd: …]`): §4 step 6.
    pub reply: bool,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
    /// The Message-ID, if it has a valid one (`<…>`).
    pub message_id: Option<String>,
    /// The References message ids in order, or else the first of
    /// In-Reply-To (§4 step 1.A).
    pub references: Vec<String>,
}

static NO_TEXT: MsgText = MsgText {
    subject: String::new(),
    reply: false,
    from: String::new(),
    to: String::new(),
    cc: String::new(),
    display_from: String::new(),
    display_to: String::new(),
    message_id: None,
    references: Vec::new(),
};

impl Msg {
    /// A message from its ENVELOPE and raw `References:` value.
    pub fn new(
        seq: u32,
        id: u32,
        size: u64,
        arrival: i64,
        env: &Envelope<'_>,
        references: Option<&[u8]>,
    ) -> Msg {
        let (subject, reply) = base_subject(nbytes(&env.subject).unwrap_or_default());
        let mut refs = references.map(msg_ids).unwrap_or_default();
        if refs.is_empty() {
            // §4 step 1.A: no valid References, so In-Reply-To's first.
            refs = nbytes(&env.in_reply_to)
                .map(msg_ids)
                .unwrap_or_default()
                .into_iter()
                .take(1)
                .collect();
        }
        Msg {
            seq,
            id,
            size,
            arrival,
            sent: sent_date(nbytes(&env.date)).unwrap_or(arrival),
            text: Some(Box::new(MsgText {
                subject: casemap(&subject),
                reply,
                from: casemap(&mailbox(&env.from)),
                to: casemap(&mailbox(&env.to)),
                cc: casemap(&mailbox(&env.cc)),
                display_from: casemap(&display(&env.from)),
                display_to: casemap(&display(&env.to)),
                message_id: nbytes(&env.message_id).and_then(|m| msg_ids(m).into_iter().next()),
                references: refs,
            })),
        }
    }

    /// The header texts (all empty when they weren't read).
    pub fn text(&self) -> &MsgText {
        self.text.as_deref().unwrap_or(&NO_TEXT)
    }
}

fn nbytes<'a>(s: &'a NString<'_>) -> Option<&'a [u8]> {
    s.0.as_ref().map(|s| s.as_ref())
}

/// `i;ascii-casemap` (RFC 4790 §9.2): ASCII letters upper-cased.
fn casemap(s: &str) -> String {
    s.to_ascii_uppercase()
}

/// The first real address (group markers skipped).
fn first<'a, 'b>(list: &'a [Address<'b>]) -> Option<&'a Address<'b>> {
    list.iter()
        .find(|a| a.host.0.is_some())
        .or_else(|| list.iter().find(|a| a.mailbox.0.is_some()))
}

/// RFC 5256 §3: the first address's addr-mailbox.
fn mailbox(list: &[Address<'_>]) -> String {
    first(list)
        .and_then(|a| nbytes(&a.mailbox))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default()
}

/// RFC 5957 §3.1: the first address's display name (RFC 2047 decoded),
/// or its addr-spec when it has none.
fn display(list: &[Address<'_>]) -> String {
    let Some(a) = first(list) else {
        return String::new();
    };
    let name = nbytes(&a.name)
        .map(|n| {
            crate::imap::search::decode_unstructured(n)
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    if !name.is_empty() {
        return name;
    }
    let mb = nbytes(&a.mailbox).map(String::from_utf8_lossy);
    match (mb, nbytes(&a.host).map(String::from_utf8_lossy)) {
        (Some(m), Some(h)) => format!("{m}@{h}"),
        (Some(m), None) => m.into_owned(),
        _ => String::new(),
    }
}

/// The `<…>` message ids in a header value, brackets kept; comments and
/// blanks inside dropped.
pub fn msg_ids(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur: Option<String> = None;
    for &b in value {
        match b {
            b'(' if cur.is_none() => depth += 1,
            b')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            b'<' => cur = Some("<".into()),
            b'>' => {
                if let Some(mut id) = cur.take() {
                    id.push('>');
                    if id.len() > 2 {
                        out.push(id);
                    }
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => {
                if let Some(id) = &mut cur {
                    id.push(b as char);
                }
            }
        }
    }
    out
}

/// RFC 5256 §2.2: the Date: header in UTC, `None` when missing or
/// unparsable (the caller uses INTERNALDATE).
pub fn sent_date(date: Option<&[u8]>) -> Option<i64> {
    let dt = mail_parser::DateTime::parse_rfc822(&String::from_utf8_lossy(date?))?;
    dt.is_valid().then(|| dt.to_timestamp())
}

fn starts_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start of `s`: its length.
fn blob(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    let close = 1 + b[1..].iter().position(|&c| c == b'[' || c == b']')?;
    if b[close] != b']' {
        return None;
    }
    let mut n = close + 1;
    while b.get(n) == Some(&b' ') {
        n += 1;
    }
    Some(n)
}

/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`: its length.
fn refwd(s: &str) -> Option<usize> {
    let mut n = if starts_ci(s, "fwd") {
        3
    } else if starts_ci(s, "fw") || starts_ci(s, "re") {
        2
    } else {
        return None;
    };
    while s.as_bytes().get(n) == Some(&b' ') {
        n += 1;
    }
    if let Some(b) = blob(&s[n..]) {
        n += b;
    }
    (s.as_bytes().get(n) == Some(&b':')).then_some(n + 1)
}

/// `subj-leader = (*subj-blob subj-refwd) / WSP`: its length.
fn leader(s: &str) -> Option<usize> {
    if s.starts_with(' ') {
        return Some(1);
    }
    let mut n = 0;
    while let Some(b) = blob(&s[n..]) {
        n += b;
    }
    refwd(&s[n..]).map(|r| n + r)
}

/// The base subject of a raw Subject value (RFC 5256 §2.1), and whether
/// the extraction took away a reply or forward marker (§4 step 6's
/// "reply or forward"). Not casemapped.
pub fn base_subject(raw: &[u8]) -> (String, bool) {
    // (1) Encoded words to UTF-8; tabs and continuations to a space; runs
    // of spaces to one.
    let decoded = crate::imap::search::decode_unstructured(raw);
    let mut s = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if !(c == ' ' && s.ends_with(' ')) {
            s.push(c);
        }
    }
    let mut reply = false;
    loop {
        // (2) subj-trailer = "(fwd)" / WSP, repeatedly.
        loop {
            if s.ends_with(' ') {
                s.pop();
            } else if ends_ci(&s, "(fwd)") {
                s.truncate(s.len() - 5);
                reply = true;
            } else {
                break;
            }
        }
        // (5) Repeat (3) and (4) until nothing changes.
        loop {
            let before = s.len();
            // (3) subj-leader, repeatedly.
            while let Some(n) = leader(&s) {
                if !s.starts_with(' ') {
                    reply = true;
                }
                s.drain(..n);
            }
            // (4) A subj-blob, if a non-empty subj-base is left.
            if let Some(n) = blob(&s) {
                if !s[n..].trim_matches(' ').is_empty() {
                    s.drain(..n);
                }
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd:" … "]" around it: take them off, and again from (2).
        if starts_ci(&s, "[fwd:") && s.ends_with(']') && s.len() >= 6 {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        break;
    }
    (s, reply)
}

fn compare(a: &Msg, b: &Msg, criteria: &[SortCriterion]) -> Ordering {
    for c in criteria {
        let o = match c.key {
            SortKey::Arrival => a.arrival.cmp(&b.arrival),
            SortKey::Cc => a.text().cc.cmp(&b.text().cc),
            SortKey::Date => a.sent.cmp(&b.sent),
            SortKey::From => a.text().from.cmp(&b.text().from),
            SortKey::Size => a.size.cmp(&b.size),
            SortKey::Subject => a.text().subject.cmp(&b.text().subject),
            SortKey::To => a.text().to.cmp(&b.text().to),
            SortKey::DisplayFrom => a.text().display_from.cmp(&b.text().display_from),
            SortKey::DisplayTo => a.text().display_to.cmp(&b.text().display_to),
        };
        let o = if c.reverse { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    // RFC 5256 §3: equal on every key, by sequence number (REVERSE doesn't
    // apply to it).
    a.seq.cmp(&b.seq)
}

/// SORT (RFC 5256 §3): `msgs` in the order of `criteria`.
pub fn sort<'m>(msgs: &'m [Msg], criteria: &[SortCriterion]) -> Vec<&'m Msg> {
    let mut v: Vec<&Msg> = msgs.iter().collect();
    v.sort_by(|a, b| compare(a, b, criteria));
    v
}

/// A thread tree: index-linked nodes, a node with no message is a dummy.
#[derive(Debug, Default)]
pub struct Threads {
    nodes: Vec<Node>,
    /// The top-level threads, in order.
    roots: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Index into the messages.
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// The sent-date order of §2.2, ties by sequence number.
fn by_date(a: &Msg, b: &Msg) -> Ordering {
    a.sent.cmp(&b.sent).then(a.seq.cmp(&b.seq))
}

/// THREAD=ORDEREDSUBJECT (RFC 5256 §4): messages grouped by base subject,
/// each group a thread of its first message (by sent date) with all the
/// others as its children; threads ordered by their first message.
pub fn ordered_subject(msgs: &[Msg]) -> Threads {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        msgs[a]
            .text()
            .subject
            .cmp(&msgs[b].text().subject)
            .then(by_date(&msgs[a], &msgs[b]))
    });
    let mut t = Threads::default();
    let mut i = 0;
    while i < order.len() {
        let top = t.nodes.len();
        t.nodes.push(Node {
            msg: Some(order[i]),
            ..Node::default()
        });
        t.roots.push(top);
        let mut j = i + 1;
        while j < order.len() && msgs[order[j]].text().subject == msgs[order[i]].text().subject {
            let n = t.nodes.len();
            t.nodes.push(Node {
                msg: Some(order[j]),
                parent: Some(top),
                children: Vec::new(),
            });
            t.nodes[top].children.push(n);
            j += 1;
        }
        i = j;
    }
    let nodes = &t.nodes;
    t.roots.sort_by(|&a, &b| {
        by_date(
            &msgs[nodes[a].msg.unwrap_or(0)],
            &msgs[nodes[b].msg.unwrap_or(0)],
        )
    });
    t
}

impl Threads {
    fn new_node(&mut self, msg: Option<usize>) -> usize {
        self.nodes.push(Node {
            msg,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    /// Whether making `parent` the parent of `child` would make a loop.
    fn would_loop(&self, parent: usize, child: usize) -> bool {
        let mut at = Some(parent);
        while let Some(n) = at {
            if n == child {
                return true;
            }
            at = self.nodes[n].parent;
        }
        false
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.nodes[child].parent.take() {
            self.nodes[p].children.retain(|&c| c != child);
        }
    }

    /// §4 step 4: dummies without children go; those with children give
    /// them to their parent's level (at the top only if there is one).
    fn prune(&mut self, list: Vec<usize>, top: bool) -> Vec<usize> {
        let mut out = Vec::with_capacity(list.len());
        for n in list {
            let kids = std::mem::take(&mut self.nodes[n].children);
            let kids = self.prune(kids, false);
            if self.nodes[n].msg.is_none() && (kids.is_empty() || !top || kids.len() == 1) {
                out.extend(kids);
                continue;
            }
            self.nodes[n].children = kids;
            out.push(n);
        }
        out
    }

    /// The message that stands for a node in date order and subject: its
    /// own, or a dummy's first child's.
    fn first_msg(&self, n: usize) -> Option<usize> {
        let mut at = n;
        loop {
            match self.nodes[at].msg {
                Some(m) => return Some(m),
                None => at = *self.nodes[at].children.first()?,
            }
        }
    }

    fn sort_list(&self, list: &mut [usize], msgs: &[Msg]) {
        list.sort_by(|&a, &b| match (self.first_msg(a), self.first_msg(b)) {
            (Some(x), Some(y)) => by_date(&msgs[x], &msgs[y]),
            (x, y) => x.is_some().cmp(&y.is_some()),
        });
    }

    /// §4 step 7: every set of siblings by sent date, the deepest first.
    fn sort_all(&mut self, n: usize, msgs: &[Msg]) {
        let mut kids = std::mem::take(&mut self.nodes[n].children);
        for &k in &kids {
            self.sort_all(k, msgs);
        }
        self.sort_list(&mut kids, msgs);
        self.nodes[n].children = kids;
    }
}

/// THREAD=REFERENCES (RFC 5256 §4).
pub fn references(msgs: &[Msg]) -> Threads {
    let mut t = Threads::default();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        // (1) The message's container: a dummy made for its Message-ID
        // earlier is filled in; a duplicate Message-ID (or none) gets a
        // container of its own, as if its id were unique.
        let me = match m.text().message_id.as_deref() {
            Some(id) => match ids.get(id) {
                Some(&n) if t.nodes[n].msg.is_none() => {
                    t.nodes[n].msg = Some(i);
                    n
                }
                Some(_) => t.new_node(Some(i)),
                None => {
                    let n = t.new_node(Some(i));
                    ids.insert(id, n);
                    n
                }
            },
            None => t.new_node(Some(i)),
        };
        // (1.A) Link the references in order, each the parent of the next,
        // unless one already has a parent or that would make a loop.
        let mut prev: Option<usize> = None;
        for r in &m.text().references {
            let n = match ids.get(r.as_str()) {
                Some(&n) => n,
                None => {
                    let n = t.new_node(None);
                    ids.insert(r, n);
                    n
                }
            };
            if let Some(p) = prev {
                if t.nodes[n].parent.is_none() && !t.would_loop(p, n) {
                    t.link(p, n);
                }
            }
            prev = Some(n);
        }
        // (1.B) The last reference is the message's parent: a parent it
        // had (from a truncated References elsewhere) is replaced; with no
        // references it has none.
        t.unlink(me);
        if let Some(p) = prev {
            if !t.would_loop(p, me) {
                t.link(p, me);
            }
        }
    }
    // (2) The root set: everything without a parent. (3) The id table goes.
    drop(ids);
    let roots: Vec<usize> = (0..t.nodes.len())
        .filter(|&n| t.nodes[n].parent.is_none())
        .collect();
    // (4) Prune dummies.
    let mut roots = t.prune(roots, true);
    for &r in &roots {
        t.nodes[r].parent = None;
    }
    // (5) The top level by sent date; a dummy by its first child's
    // (its children sorted first).
    for &r in &roots {
        if t.nodes[r].msg.is_none() {
            let mut kids = std::mem::take(&mut t.nodes[r].children);
            t.sort_list(&mut kids, msgs);
            t.nodes[r].children = kids;
        }
    }
    t.sort_list(&mut roots, msgs);
    // (6) Threads with the same base subject together.
    let subject = |t: &Threads, n: usize| t.first_msg(n).map(|m| msgs[m].text().subject.as_str());
    let reply = |t: &Threads, n: usize| t.first_msg(n).is_some_and(|m| msgs[m].text().reply);
    let dummy = |t: &Threads, n: usize| t.nodes[n].msg.is_none();
    // (6.A, B) The table: per subject, a dummy if there is one, else a
    // message that isn't a reply if there is one, else the first.
    let mut table: HashMap<&str, usize> = HashMap::new();
    for &r in &roots {
        let Some(s) = subject(&t, r).filter(|s| !s.is_empty()) else {
            continue;
        };
        match table.get(s) {
            None => {
                table.insert(s, r);
            }
            Some(&old) => {
                let replace = (dummy(&t, r) && !dummy(&t, old))
                    || (!dummy(&t, old) && reply(&t, old) && !reply(&t, r) && !dummy(&t, r));
                if replace {
                    table.insert(s, r);
                }
            }
        }
    }
    // (6.C) Merge each root into its subject's table entry.
    let mut removed = vec![false; t.nodes.len()];
    let mut replaced: HashMap<usize, usize> = HashMap::new();
    for &r in &roots {
        let Some(s) = subject(&t, r).filter(|s| !s.is_empty()) else {
            continue;
        };
        let Some(&e) = table.get(s) else {
            continue;
        };
        if e == r {
            continue;
        }
        if dummy(&t, e) && dummy(&t, r) {
            let kids = std::mem::take(&mut t.nodes[r].children);
            for k in kids {
                t.nodes[k].parent = None;
                t.link(e, k);
            }
        } else if dummy(&t, e) || (reply(&t, r) && !reply(&t, e) && !dummy(&t, r)) {
            t.link(e, r);
        } else {
            let d = t.new_node(None);
            removed.push(false);
            // The table message's place at the top goes to the dummy.
            replaced.insert(e, d);
            t.link(d, e);
            t.link(d, r);
            table.insert(s, d);
        }
        removed[r] = true;
    }
    let roots: Vec<usize> = roots
        .into_iter()
        .filter(|&r| !removed[r])
        .map(|r| replaced.get(&r).copied().unwrap_or(r))
        .collect();
    // (7) Siblings by sent date at every level, the deepest first.
    let top = t.new_node(None);
    t.nodes[top].children = roots;
    t.sort_all(top, msgs);
    t.roots = std::mem::take(&mut t.nodes[top].children);
    t
}

/// The `* THREAD` response (RFC 5256 §5): `(2)(3 6 (4 23)(44 7 96))`, the
/// messages by their [`Msg::id`].
pub fn thread_response(t: &Threads, msgs: &[Msg]) -> String {
    let mut s = String::from("* THREAD");
    if !t.roots.is_empty() {
        s.push(' ');
    }
    for &r in &t.roots {
        s.push('(');
        write_thread(t, r, msgs, &mut s);
        s.push(')');
    }
    s.push_str("\r\n");
    s
}

/// A thread-list's contents: `thread-members` (a chain of single children)
/// ending in a `thread-nested` where a message has several.
fn write_thread(t: &Threads, n: usize, msgs: &[Msg], s: &mut String) {
    let mut at = n;
    loop {
        let node = &t.nodes[at];
        if let Some(m) = node.msg {
            s.push_str(&msgs[m].id.to_string());
        }
        match node.children.as_slice() {
            [] => return,
            [only] if node.msg.is_some() => {
                s.push(' ');
                at = *only;
            }
            kids => {
                if node.msg.is_some() {
                    s.push(' ');
                }
                for &k in kids {
                    s.push('(');
                    write_thread(t, k, msgs, s);
                    s.push(')');
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
