#!/usr/bin/env python3
"""imap_stress.py -- many IMAP sessions on one mailbox, checked against a model (stdlib only).

N clients (default 10), each on its own raw connection (a small response
parser that reads literals; imaplib hides untagged responses), log in as the
same user and work on INBOX for --seconds (default 60) with a seeded RNG:
APPEND (with and without flags and keywords, synchronizing and LITERAL+),
STORE/UID STORE +FLAGS/-FLAGS/FLAGS (.SILENT too) of system flags and the
keywords $Label1..$Label5, EXPUNGE, UID EXPUNGE (UIDPLUS), COPY/UID COPY into
INBOX itself (COPYUID), FETCH/UID FETCH of FLAGS UID RFC822.SIZE
BODY.PEEK[HEADER.FIELDS (Message-ID)], SEARCH/UID SEARCH, NOOP, a short IDLE,
SELECT/EXAMINE/re-SELECT, CLOSE/UNSELECT.

Each session keeps a model of what it has been told: the sequence-number ->
UID list (SELECT's EXISTS, then EXPUNGE and EXISTS), the flags per message,
the keywords announced in FLAGS. Every response is checked against it and
every violation is counted, with the session's recent transcript:

  view      EXISTS never decreases without an EXPUNGE; EXPUNGE n names a
            message in the view; FETCH n is in the view and its UID is the
            model's UID for n; UIDs in the view strictly increase; a message
            new to the view has a UID above every UID the session knew.
  uid       a UID expunged in a session never comes back there; APPENDUID
            and COPYUID UIDs are above every UID known anywhere when the
            command was sent and never seen before; a UID always carries the
            same Message-ID and RFC822.SIZE (no reuse); UID FETCH answers
            carry their UID; UIDVALIDITY never changes.
  keyword   a FETCH carries a keyword the session was not told about in
            FLAGS (RFC 3501 §7.2.6).
  recent    a UID is \\Recent in more than one session (RFC 3501 §2.3.2).
  expunge   an untagged EXPUNGE during FETCH, STORE or SEARCH (RFC 3501 §7.4.1).
  store     after a session's own STORE (not .SILENT) on a message no other
            session touched meanwhile and that was never \\Deleted, there is a
            FETCH for it and its flags are the intended result for the flags
            changed (+FLAGS: present, -FLAGS: absent, FLAGS: exactly these).
  modseq    (RFC 7162 CONDSTORE; every odd-numbered session ENABLEs it) a
            FETCH with FLAGS lacks MODSEQ in a CONDSTORE session, or carries
            it in another; a message's MODSEQ goes down in a session; its
            flags change while its MODSEQ stays; two sessions see one
            (UID, MODSEQ) with different flags; a SELECT's HIGHESTMODSEQ is
            below a MODSEQ or HIGHESTMODSEQ the session was told before (a
            lower one after a held-back expunge, RFC 7162 §3.2, is
            fine).
  final     after the run every session SELECTs INBOX and NOOPs (twice, after
            a barrier), then UID FETCH 1:* (FLAGS): the UIDs and flags (without
            \\Recent) of every session equal each other's, the model's flags
            before that FETCH (flag changes were pushed), the Maildir on disk
            (dovecot-uidlist + file-name flags + dovecot-keywords) and, when
            --maildir is given and doveadm is usable, Dovecot's own reading
            of a copy of the Maildir (doveadm fetch 'uid flags').

  imap_stress.py --port 143 --user john@example.com --password john123 \\
      [--clients 10] [--seconds 60] [--seed N] [--maildir PATH]
Prints operation counts and "imap_stress: inconsistencies=N seed=S"; exit 1 if N > 0.
"""
import argparse
import collections
import faulthandler
import signal
import os
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

KEYWORDS = ["$Label1", "$Label2", "$Label3", "$Label4", "$Label5"]
SYSFLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"]
FETCH_ITEMS = "(FLAGS UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Message-ID)])"


class Closed(Exception):
    pass


# ---------------------------------------------------------------- parsing


class Lit(bytes):
    """A literal's bytes (so a literal "NIL" is not the atom NIL)."""


def tokenize(data, lits):
    """Parses an IMAP response tail into nested lists of str/Lit/None."""
    pos = 0
    n = len(data)
    stack = [[]]
    while pos < n:
        c = data[pos]
        if c == " ":
            pos += 1
        elif c == "(":
            stack.append([])
            pos += 1
        elif c == ")":
            if len(stack) == 1:
                raise ValueError("unbalanced ) in %r" % data)
            top = stack.pop()
            stack[-1].append(top)
            pos += 1
        elif c == '"':
            pos += 1
            out = []
            while pos < n and data[pos] != '"':
                if data[pos] == "\\":
                    pos += 1
                out.append(data[pos])
                pos += 1
            pos += 1
            stack[-1].append("".join(out))
        elif c == "\x00":
            end = data.index("\x00", pos + 1)
            stack[-1].append(lits[int(data[pos + 1:end])])
            pos = end + 1
        else:
            start = pos
            while pos < n and data[pos] not in " ()":
                if data[pos] == "[":
                    pos = data.index("]", pos)
                pos += 1
            atom = data[start:pos]
            stack[-1].append(None if atom.upper() == "NIL" else atom)
    if len(stack) != 1:
        raise ValueError("unbalanced ( in %r" % data)
    return stack[0]


class Conn:
    def __init__(self, host, port, name, log):
        self.s = socket.create_connection((host, port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.name = name
        self.log = log

    def _fill(self, timeout):
        if timeout is not None:
            r, _, _ = select.select([self.s], [], [], timeout)
            if not r:
                return False
        d = self.s.recv(65536)
        if not d:
            raise Closed("%s: connection closed by the server" % self.name)
        self.buf += d
        return True

    def _line(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._fill(left) and deadline is not None and time.monotonic() >= deadline:
                return None
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def _bytes(self, k):
        while len(self.buf) < k:
            self._fill(None)
        d, self.buf = self.buf[:k], self.buf[k:]
        return d

    def response(self, timeout=None):
        """One whole response: (text with literals as \\0i\\0 markers, literals),
        or None on timeout before its first line."""
        line = self._line(timeout)
        if line is None:
            return None
        text = ""
        lits = []
        while True:
            s = line.decode("utf-8", "replace")
            m = re.search(r"\{(\d+)\+?\}$", s)
            if not m:
                text += s
                break
            text += s[:m.start()] + "\x00%d\x00" % len(lits)
            lits.append(Lit(self._bytes(int(m.group(1)))))
            line = self._line()
        self.log("S: " + text.replace("\x00", "~") + ("  [+%d literal(s)]" % len(lits) if lits else ""))
        return text, lits

    def send(self, data):
        text = data.decode("utf-8", "replace")
        first, nl, rest = text.partition("\r\n")
        self.log("C: " + first[:300] + (" [+%d bytes]" % len(rest) if rest else ""))
        self.s.sendall(data)


# ---------------------------------------------------------------- shared state


class Shared:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.violations = []  # (kind, session, message, transcript)
        self.counts = collections.Counter()
        self.recent_owner = {}  # uid -> session
        self.msgid = {}  # uid -> Message-ID
        self.size = {}  # uid -> RFC822.SIZE
        self.max_uid_seen = 0  # highest UID any session was told
        self.all_uids = set()
        self.ever_deleted = set()  # UIDs a STORE may have given \Deleted
        self.ops = {}  # id -> [session, kind, uids or None (all), t0, t1]
        self.op_seq = 0
        self.uidvalidity = None
        self.modseq_flags = {}  # (uid, modseq) -> flags, across sessions
        self.stop_at = time.monotonic() + a.seconds
        self.barrier = threading.Barrier(a.clients)

    def violation(self, kind, sess, msg):
        with self.lock:
            self.violations.append((kind, sess.name, msg, list(sess.transcript)))
        sess.log("!! VIOLATION %s: %s" % (kind, msg))

    def op_begin(self, sess, kind, uids):
        with self.lock:
            self.op_seq += 1
            self.ops[self.op_seq] = [sess.name, kind, uids, time.monotonic(), None]
            return self.op_seq

    def op_end(self, op):
        with self.lock:
            self.ops[op][4] = time.monotonic()

    def interfered(self, op, uid):
        """Did another session's flag change or expunge overlap op on uid?"""
        with self.lock:
            me, _, _, t0, t1 = self.ops[op]
            for o, (who, kind, uids, s0, s1) in self.ops.items():
                if o == op or who == me:
                    continue
                if s0 < t1 and (s1 is None or s1 > t0) and (uids is None or uid in uids):
                    return True
            return False

    def prune_ops(self):
        with self.lock:
            now = time.monotonic()
            for o in [o for o, v in self.ops.items() if v[4] is not None and now - v[4] > 30]:
                del self.ops[o]


# ---------------------------------------------------------------- one session


class Msg:
    __slots__ = ("uid", "flags", "recent", "new", "new_above")

    def __init__(self):
        self.uid = None
        self.flags = None  # set of str, None = never told
        self.recent = False
        self.new = False  # arrived by EXISTS after SELECT
        self.new_above = 0  # the highest UID the session knew then


def norm(flag):
    return flag.lower() if flag.startswith("\\") else flag


class Session:
    def __init__(self, shared, idx, seed):
        self.sh = shared
        self.a = shared.a
        self.idx = idx
        self.name = "s%d" % idx
        self.rng = random.Random(seed)
        self.transcript = collections.deque(maxlen=80)
        self.full = open(os.path.join(self.a.transcripts, self.name + ".log"), "w", buffering=1) if self.a.transcripts else None
        self.conn = Conn(self.a.host, self.a.port, self.name, self.log)
        self.tagn = 0
        self.state = "auth"  # auth | selected | examined
        self.view = []
        self.kw_known = set()  # lower-case keywords announced in FLAGS
        self.perm_kw = set()
        self.expunged = set()
        self.max_uid = 0  # highest UID this session was told
        self.cmd_kind = None  # the kind of the command in progress
        self.cur_store = None
        self.uid_cmd = None  # "FETCH"/"STORE" during UID FETCH/UID STORE
        self.uid_cmd_set = set()
        self.fetched = set()  # sequence numbers FETCH answered in this command
        self.recent_reported = set()
        self.appended = 0
        self.condstore = idx % 2 == 1  # ENABLE CONDSTORE after LOGIN
        self.modseqs = {}  # uid -> (MODSEQ, flags) last told
        self.highest = 0  # highest MODSEQ/HIGHESTMODSEQ this session was told

    def log(self, line):
        t = "%.3f %s" % (time.monotonic() % 1000, line)
        self.transcript.append(t)
        if self.full:
            self.full.write(t + "\n")

    def bad(self, kind, msg):
        self.sh.violation(kind, self, msg)

    # -- the model

    def known_uids(self):
        return [m.uid for m in self.view if m.uid is not None]

    def learn_uid(self, seq, uid):
        m = self.view[seq - 1]
        if m.uid is not None:
            if m.uid != uid:
                self.bad("view", "FETCH %d says UID %d, the model has UID %d for %d" % (seq, uid, m.uid, seq))
            return
        if uid in self.expunged:
            self.bad("uid", "UID %d (message %d) was expunged in this session before and is back" % (uid, seq))
        before = [x.uid for x in self.view[:seq - 1] if x.uid is not None]
        after = [x.uid for x in self.view[seq:] if x.uid is not None]
        if (before and before[-1] >= uid) or (after and after[0] <= uid):
            self.bad("view", "UID %d at %d breaks the strictly increasing order (before %s, after %s)"
                     % (uid, seq, before[-1:], after[:1]))
        if m.new and uid <= m.new_above:
            self.bad("view", "message %d is new to the view but its UID %d is not above %d, the highest UID known when it arrived"
                     % (seq, uid, m.new_above))
        m.uid = uid
        self.max_uid = max(self.max_uid, uid)
        with self.sh.lock:
            self.sh.all_uids.add(uid)
            self.sh.max_uid_seen = max(self.sh.max_uid_seen, uid)
        if m.recent:
            self.claim_recent(uid)

    def claim_recent(self, uid):
        # EXAMINE shows \Recent without taking it (RFC 3501 §6.3.2): only
        # read-write sessions own a message's \Recent.
        if self.state != "selected":
            return
        with self.sh.lock:
            owner = self.sh.recent_owner.setdefault(uid, self.name)
        if owner != self.name and uid not in self.recent_reported:
            self.recent_reported.add(uid)
            self.bad("recent", "UID %d is \\Recent here and in %s (both read-write)" % (uid, owner))

    def on_untagged(self, text, lits):
        body = text[2:]
        m = re.match(r"(\d+) (EXISTS|RECENT|EXPUNGE|FETCH)\b ?(.*)$", body, re.S)
        if m:
            n, what, rest = int(m.group(1)), m.group(2), m.group(3)
            if self.state == "auth":
                if what != "RECENT":
                    self.bad("view", "'%s' with no mailbox selected" % text)
                return
            if what == "EXISTS":
                if n < len(self.view):
                    self.bad("view", "EXISTS %d after %d with no EXPUNGE between" % (n, len(self.view)))
                    del self.view[n:]
                while len(self.view) < n:
                    x = Msg()
                    x.new = True
                    x.new_above = max([self.max_uid] + self.known_uids())
                    self.view.append(x)
            elif what == "EXPUNGE":
                self.sh.counts["untagged EXPUNGE"] += 1
                if self.cmd_kind in ("FETCH", "STORE", "SEARCH"):
                    self.bad("expunge", "EXPUNGE %d during a %s command (RFC 3501 §7.4.1)" % (n, self.cmd_kind))
                if not 1 <= n <= len(self.view):
                    self.bad("view", "EXPUNGE %d but the view has %d messages" % (n, len(self.view)))
                    return
                gone = self.view.pop(n - 1)
                if gone.uid is not None:
                    self.expunged.add(gone.uid)
            elif what == "FETCH":
                self.on_fetch(n, text, rest, lits)
            return
        if body.startswith("FLAGS "):
            try:
                flags = tokenize(body[6:], lits)[0]
            except (ValueError, IndexError) as e:
                self.bad("parse", "%s: %s" % (text, e))
                return
            self.kw_known = {f for f in flags if isinstance(f, str) and not f.startswith("\\")}
            self.kw_known = {k.lower() for k in self.kw_known}
            return
        m = re.match(r"OK \[HIGHESTMODSEQ (\d+)\]", body)
        if m:
            h = int(m.group(1))
            self.sh.counts["(checker) HIGHESTMODSEQ checked"] += 1
            if not self.condstore:
                self.bad("modseq", "HIGHESTMODSEQ in a session without CONDSTORE: %s" % text)
            if self.cmd_kind != "SELECT":
                # below a held-back expunge (RFC 7162 §3.2): may be lower
                return
            if h < self.highest:
                self.bad("modseq", "HIGHESTMODSEQ %d below the %d this session was told before" % (h, self.highest))
            self.highest = max(self.highest, h)
            return
        m = re.match(r"OK \[PERMANENTFLAGS \((.*?)\)\]", body)
        if m:
            self.perm_kw = {f.lower() for f in m.group(1).split() if not f.startswith("\\")}
            return
        m = re.match(r"OK \[UIDVALIDITY (\d+)\]", body)
        if m:
            with self.sh.lock:
                if self.sh.uidvalidity is None:
                    self.sh.uidvalidity = m.group(1)
                v = self.sh.uidvalidity
            if v != m.group(1):
                self.bad("uid", "UIDVALIDITY %s, was %s" % (m.group(1), v))
            return
        m = re.match(r"SEARCH\b(.*)$", body)
        if m:
            nums = [int(x) for x in m.group(1).split()]
            if self.cmd_kind == "SEARCH":
                for x in nums:
                    if not 1 <= x <= len(self.view):
                        self.bad("view", "SEARCH answers %d but the view has %d messages" % (x, len(self.view)))
            self.search_result = nums
            return
        if body.startswith("BYE") and self.cmd_kind != "LOGOUT":
            raise Closed("%s: %s" % (self.name, text))

    def on_fetch(self, n, text, rest, lits):
        self.sh.counts["untagged FETCH"] += 1
        self.fetched.add(n)
        if not 1 <= n <= len(self.view):
            self.bad("view", "FETCH %d but the view has %d messages: %s" % (n, len(self.view), text))
            return
        try:
            items = tokenize(rest, lits)[0]
        except (ValueError, IndexError) as e:
            self.bad("parse", "%s: %s" % (text, e))
            return
        d = {}
        for i in range(0, len(items) - 1, 2):
            d[str(items[i]).upper()] = items[i + 1]
        msg = self.view[n - 1]
        if "UID" in d:
            self.learn_uid(n, int(d["UID"]))
        elif self.uid_cmd == "FETCH" and "RFC822.SIZE" in d:
            self.bad("uid", "a UID FETCH answer has no UID (RFC 3501 §6.4.8): %s" % text)
        elif self.uid_cmd == "STORE" and msg.uid in self.uid_cmd_set and "FLAGS" in d:
            self.bad("uid", "a UID STORE answer has no UID (RFC 3501 §6.4.8): %s" % text)
        uid = msg.uid
        if "FLAGS" in d:
            flags = d["FLAGS"] or []
            for f in flags:
                if not f.startswith("\\") and f.lower() not in self.kw_known:
                    self.bad("keyword", "FETCH %d (UID %s) carries %s, never announced in FLAGS (known: %s)"
                             % (n, uid, f, sorted(self.kw_known)))
            if any(f.lower() == "\\recent" for f in flags):
                msg.recent = True
                if uid is not None:
                    self.claim_recent(uid)
            msg.flags = {norm(f) for f in flags if f.lower() != "\\recent"}
            if self.cur_store is not None and uid is not None:
                self.cur_store[uid] = set(msg.flags)
            if self.condstore and "MODSEQ" not in d:
                self.bad("modseq", "FETCH with FLAGS but no MODSEQ under CONDSTORE (RFC 7162 §3.1.4): %s" % text)
        if "MODSEQ" in d:
            self.check_modseq(uid, d, msg, text)
        if uid is not None:
            for key, table in (("RFC822.SIZE", self.sh.size),):
                if key in d:
                    v = int(d[key])
                    with self.sh.lock:
                        old = table.setdefault(uid, v)
                    if old != v:
                        self.bad("uid", "UID %d has %s %d, was %d" % (uid, key, v, old))
            for k, v in d.items():
                if k.startswith("BODY[HEADER.FIELDS"):
                    mid = re.search(r"<[^>]*>", (v or b"").decode("utf-8", "replace") if isinstance(v, bytes) else (v or ""))
                    mid = mid.group(0) if mid else ""
                    with self.sh.lock:
                        old = self.sh.msgid.setdefault(uid, mid)
                    if old != mid:
                        self.bad("uid", "UID %d has Message-ID %s, was %s (UID reused?)" % (uid, mid, old))

    def check_modseq(self, uid, d, msg, text):
        if not self.condstore:
            self.bad("modseq", "MODSEQ in a session without CONDSTORE: %s" % text)
            return
        try:
            ms = int(d["MODSEQ"][0])
        except (TypeError, ValueError, IndexError):
            self.bad("parse", "MODSEQ item: %s" % text)
            return
        self.sh.counts["(checker) MODSEQ checked"] += 1
        self.highest = max(self.highest, ms)
        if uid is None or "FLAGS" not in d:
            return
        flags = frozenset(msg.flags)
        prev = self.modseqs.get(uid)
        if prev is not None:
            if ms < prev[0]:
                self.bad("modseq", "UID %d: MODSEQ %d after %d" % (uid, ms, prev[0]))
            elif ms == prev[0] and flags != prev[1]:
                self.bad("modseq", "UID %d: flags %s then %s, both at MODSEQ %d"
                         % (uid, sorted(prev[1]), sorted(flags), ms))
        self.modseqs[uid] = (ms, flags)
        with self.sh.lock:
            other = self.sh.modseq_flags.setdefault((uid, ms), flags)
        if other != flags:
            self.bad("modseq", "UID %d MODSEQ %d: flags %s here, %s in another session"
                     % (uid, ms, sorted(flags), sorted(other)))

    def command(self, kind, cmd, literal=None, nonsync=False):
        """Sends one command; returns (tagged status line, untagged texts)."""
        self.tagn += 1
        tag = "%s.%d" % (self.name, self.tagn)
        self.cmd_kind = kind
        self.search_result = None
        self.fetched = set()
        untagged = []
        try:
            if literal is None:
                self.conn.send(("%s %s\r\n" % (tag, cmd)).encode())
            else:
                self.conn.send(("%s %s{%d%s}\r\n" % (tag, cmd, len(literal), "+" if nonsync else "")).encode())
                if not nonsync:
                    while True:
                        text, lits = self.conn.response()
                        if text.startswith("+"):
                            break
                        if text.startswith(tag + " "):
                            return text[len(tag) + 1:], untagged
                        self.on_untagged(text, lits)
                        untagged.append(text)
                self.conn.send(literal + b"\r\n")
            while True:
                text, lits = self.conn.response()
                if text.startswith(tag + " "):
                    return text[len(tag) + 1:], untagged
                if text.startswith("* "):
                    self.on_untagged(text, lits)
                    untagged.append(text)
                elif not text.startswith("+"):
                    self.bad("parse", "unexpected line %r" % text)
        finally:
            self.cmd_kind = None

    def expect_ok(self, status, what):
        if not status.startswith("OK"):
            self.bad("status", "%s answered %s" % (what, status))
            return False
        return True

    def fetch_seqs(self, first, last, items, why):
        """FETCH first:last (last None = *); every message of the view in the
        range must be answered, unless the server says some were expunged."""
        n = len(self.view)
        st, _ = self.command("FETCH", "FETCH %d:%s %s" % (first, "*" if last is None else last, items))
        hi = n if last is None else min(last, n)
        missing = [q for q in range(first, hi + 1) if q not in self.fetched]
        if st.startswith("OK") and missing and "[EXPUNGEISSUED]" not in st:
            self.bad("fetch-omit", "%s: FETCH %d:%s answered OK with no FETCH for messages %s of the %d in the view "
                     "(expunged elsewhere? RFC 2180 §4.1.3 wants NO, Dovecot answers OK [EXPUNGEISSUED])"
                     % (why, first, "*" if last is None else last, missing[:10], n))
        elif not st.startswith("OK") and not st.startswith("NO"):
            self.bad("status", "FETCH answered %s" % st)
        return st, missing

    def resolve(self):
        """Learns the UIDs of messages new to the view."""
        for _ in range(5):
            if self.state == "auth":
                return
            first = next((i for i, m in enumerate(self.view) if m.uid is None), None)
            if first is None:
                return
            asked = [m for m in self.view[first:] if m.uid is None]
            self.sh.counts["(checker) FETCH n:* (UID FLAGS)"] += 1
            st, omitted = self.fetch_seqs(first + 1, None, "(UID FLAGS)", "learning new UIDs")
            if omitted:
                return  # expunged elsewhere: an EXPUNGE will come
            # Messages that arrived during the FETCH are asked for next time.
            missing = [i + 1 for i, m in enumerate(self.view) if m.uid is None and any(m is x for x in asked)]
            if missing:
                self.bad("view", "FETCH %d:* answered but gave no UID for messages %s" % (first + 1, missing[:10]))
                return

    # -- operations

    def select(self, verb="SELECT"):
        self.view = []
        self.state = "selected" if verb == "SELECT" else "examined"
        self.kw_known = set()
        st, _ = self.command("SELECT", verb + " INBOX")
        if not self.expect_ok(st, verb):
            self.state = "auth"
            return
        for m in self.view:
            m.new = False
        self.resolve()

    def pick_seqs(self):
        n = len(self.view)
        if n == 0:
            return None
        a = self.rng.randint(1, n)
        b = min(n, a + self.rng.choice([0, 0, 1, 2, 5]))
        return a, b

    def pick_uids(self):
        uids = self.known_uids()
        if not uids:
            return None
        k = self.rng.choice([1, 1, 2, 3])
        return sorted(self.rng.sample(uids, min(k, len(uids))))

    def op_append(self):
        self.appended += 1
        mid = "<stress-%s-%s-%d@example.com>" % (self.a.seed, self.name, self.appended)
        body = ("From: %s@example.com\r\nTo: john@example.com\r\nSubject: stress %d\r\nMessage-ID: %s\r\n\r\n"
                "%s\r\n" % (self.name, self.appended, mid, "x" * self.rng.randint(0, 300))).encode()
        pool = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft"] + KEYWORDS
        flags = self.rng.sample(pool, self.rng.randint(0, 3)) if self.rng.random() < 0.6 else []
        flagtext = "(%s) " % " ".join(flags) if flags else ""
        with self.sh.lock:
            above = self.sh.max_uid_seen
        st, _ = self.command("APPEND", "APPEND INBOX %s" % flagtext, literal=body, nonsync=self.rng.random() < 0.5)
        if not self.expect_ok(st, "APPEND"):
            return
        m = re.search(r"\[APPENDUID (\d+) (\d+)\]", st)
        if not m:
            self.bad("uid", "APPEND without APPENDUID: %s" % st)
            return
        uid = int(m.group(2))
        self.check_new_uids("APPENDUID", [uid], above)
        with self.sh.lock:
            old = self.sh.msgid.setdefault(uid, mid)
            self.sh.size.setdefault(uid, len(body))
        if old != mid:
            self.bad("uid", "APPENDUID %d was already Message-ID %s" % (uid, old))
        self.sh.counts["APPEND" + (" with flags" if flags else "")] += 1

    def check_new_uids(self, what, uids, above):
        for uid in uids:
            if uid <= above:
                self.bad("uid", "%s %d is not above %d, a UID known before the command" % (what, uid, above))
            with self.sh.lock:
                self.sh.all_uids.add(uid)
                self.sh.max_uid_seen = max(self.sh.max_uid_seen, uid)

    def op_store(self):
        use_uid = self.rng.random() < 0.5
        if use_uid:
            uids = self.pick_uids()
            if not uids:
                return
            target = ",".join(map(str, uids))
        else:
            r = self.pick_seqs()
            if not r:
                return
            uids = [m.uid for m in self.view[r[0] - 1:r[1]] if m.uid is not None]
            target = "%d:%d" % r if r[0] != r[1] else str(r[0])
        mode = self.rng.choice(["+FLAGS", "-FLAGS", "FLAGS", "+FLAGS", "-FLAGS"])
        pool = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft"] + KEYWORDS
        if self.rng.random() < 0.15:
            pool = pool + ["\\Deleted"]
        flags = self.rng.sample(pool, self.rng.randint(1 if mode != "FLAGS" else 0, 3))
        if mode != "-FLAGS" and "\\Deleted" not in flags and self.rng.random() < 0.12:
            flags.append("\\Deleted")
        silent = self.rng.random() < 0.2
        if mode != "-FLAGS" and "\\Deleted" in flags:
            with self.sh.lock:
                self.sh.ever_deleted.update(uids)
        op = self.sh.op_begin(self, "STORE", set(uids))
        self.cur_store = {}
        if use_uid and not silent:
            self.uid_cmd, self.uid_cmd_set = "STORE", set(uids)
        try:
            st, _ = self.command("UID" if use_uid else "STORE", "%sSTORE %s %s%s (%s)" % (
                "UID " if use_uid else "", target, mode, ".SILENT" if silent else "", " ".join(flags)))
        finally:
            self.uid_cmd = None
        self.sh.op_end(op)
        got, self.cur_store = self.cur_store, None
        self.sh.counts["%sSTORE %s%s" % ("UID " if use_uid else "", mode, ".SILENT" if silent else "")] += 1
        if self.state == "examined":
            if st.startswith("OK"):
                self.bad("status", "STORE in an EXAMINEd mailbox answered %s" % st)
            return
        if not st.startswith("OK"):
            if not st.startswith("NO"):
                self.bad("status", "STORE answered %s" % st)
            return
        want = {norm(f) for f in flags}
        if silent:
            # The session knows what it set; others' changes come as FETCH.
            for m in self.view:
                if m.uid in uids and m.flags is not None:
                    m.flags = want if mode == "FLAGS" else (m.flags | want if mode == "+FLAGS" else m.flags - want)
            return
        for uid in uids:
            with self.sh.lock:
                dead = uid in self.sh.ever_deleted
            if dead or self.sh.interfered(op, uid):
                continue
            self.sh.counts["(checked) STORE results"] += 1
            if uid not in got:
                self.bad("store", "%s on UID %d (untouched by others) brought no FETCH" % (mode, uid))
                continue
            res = got[uid]
            if mode == "+FLAGS" and not want <= res:
                self.bad("store", "+FLAGS %s on UID %d gave %s" % (sorted(want), uid, sorted(res)))
            elif mode == "-FLAGS" and want & res:
                self.bad("store", "-FLAGS %s on UID %d gave %s" % (sorted(want), uid, sorted(res)))
            elif mode == "FLAGS" and want != res:
                self.bad("store", "FLAGS %s on UID %d gave %s" % (sorted(want), uid, sorted(res)))

    def op_expunge(self):
        if len(self.view) > 50 and self.state == "selected":
            # Keep the mailbox small: mark a few, then expunge them.
            uids = self.rng.sample(self.known_uids(), min(len(self.known_uids()), self.rng.randint(2, 8)))
            if uids:
                with self.sh.lock:
                    self.sh.ever_deleted.update(uids)
                op = self.sh.op_begin(self, "STORE", set(uids))
                st, _ = self.command("UID", "UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(map(str, sorted(uids))))
                self.sh.op_end(op)
                for m in self.view:
                    if m.uid in uids and m.flags is not None:
                        m.flags = m.flags | {"\\deleted"}
                self.sh.counts["UID STORE +FLAGS.SILENT (\\Deleted) before expunge"] += 1
        op = self.sh.op_begin(self, "EXPUNGE", None)
        if self.rng.random() < 0.5:
            uids = self.pick_uids()
            if not uids:
                self.sh.op_end(op)
                return
            st, _ = self.command("UID", "UID EXPUNGE %s" % ",".join(map(str, uids)))
            self.sh.counts["UID EXPUNGE"] += 1
        else:
            st, _ = self.command("EXPUNGE", "EXPUNGE")
            self.sh.counts["EXPUNGE"] += 1
        self.sh.op_end(op)
        if self.state == "examined":
            if st.startswith("OK"):
                self.bad("status", "EXPUNGE in an EXAMINEd mailbox answered %s" % st)
        else:
            self.expect_ok(st, "EXPUNGE")

    def op_copy(self):
        use_uid = self.rng.random() < 0.5
        if use_uid:
            uids = self.pick_uids()
            if not uids:
                return
            target = ",".join(map(str, uids))
        else:
            r = self.pick_seqs()
            if not r:
                return
            target = "%d:%d" % r
        with self.sh.lock:
            above = self.sh.max_uid_seen
        op = self.sh.op_begin(self, "COPY", None)
        st, _ = self.command("UID" if use_uid else "COPY", "%sCOPY %s INBOX" % ("UID " if use_uid else "", target))
        self.sh.counts["%sCOPY" % ("UID " if use_uid else "")] += 1
        m = re.search(r"\[COPYUID \d+ ([\d:,]+) ([\d:,]+)\]", st)
        if m:
            src, dst = expand(m.group(1)), expand(m.group(2))
            if len(src) != len(dst):
                self.bad("uid", "COPYUID with %d source and %d destination UIDs: %s" % (len(src), len(dst), st))
            self.check_new_uids("COPYUID", dst, above)
            with self.sh.lock:
                # A copy carries its source's flags, \Deleted included.
                self.sh.ever_deleted.update(dst)
                for s, d in zip(src, dst):
                    if s in self.sh.msgid:
                        self.sh.msgid.setdefault(d, self.sh.msgid[s])
                    if s in self.sh.size:
                        self.sh.size.setdefault(d, self.sh.size[s])
        elif st.startswith("OK") and not (use_uid and "No messages found" in st):
            # UID COPY of UIDs all expunged meanwhile copies nothing (RFC
            # 3501 §6.4.8: missing UIDs are ignored), as Dovecot answers;
            # COPY by sequence numbers must not succeed that way.
            self.bad("uid", "COPY OK without COPYUID: %s" % st)
        self.sh.op_end(op)

    def op_fetch(self):
        if self.rng.random() < 0.5:
            uids = self.known_uids()
            if not uids:
                return
            a = self.rng.choice(uids)
            target = self.rng.choice(["%d" % a, "%d:*" % a, "1:*", "%d:%d" % (a, a + 3)])
            self.uid_cmd = "FETCH"
            try:
                st, _ = self.command("UID", "UID FETCH %s %s" % (target, FETCH_ITEMS))
            finally:
                self.uid_cmd = None
            self.sh.counts["UID FETCH"] += 1
        else:
            r = self.pick_seqs()
            if not r:
                return
            first, last = self.rng.choice([r, (r[0], None), (1, None)])
            self.fetch_seqs(first, last, FETCH_ITEMS, "FETCH")
            self.sh.counts["FETCH"] += 1
            return
        if not st.startswith("OK") and not st.startswith("NO"):
            self.bad("status", "UID FETCH answered %s" % st)

    def op_search(self):
        key = self.rng.choice(["ALL", "DELETED", "KEYWORD %s" % self.rng.choice(KEYWORDS), "UNSEEN", "FLAGGED"])
        if self.rng.random() < 0.5:
            st, _ = self.command("UID", "UID SEARCH %s" % key)
            self.sh.counts["UID SEARCH"] += 1
        else:
            st, _ = self.command("SEARCH", "SEARCH %s" % key)
            self.sh.counts["SEARCH"] += 1
        self.expect_ok(st, "SEARCH")

    def op_noop(self):
        st, _ = self.command("NOOP", "NOOP")
        self.sh.counts["NOOP"] += 1
        self.expect_ok(st, "NOOP")

    def op_idle(self):
        self.tagn += 1
        tag = "%s.%d" % (self.name, self.tagn)
        self.cmd_kind = "IDLE"
        try:
            self.conn.send(("%s IDLE\r\n" % tag).encode())
            while True:
                text, lits = self.conn.response()
                if text.startswith("+"):
                    break
                if text.startswith(tag + " "):
                    self.bad("status", "IDLE answered %s" % text)
                    return
                self.on_untagged(text, lits)
            until = time.monotonic() + self.rng.uniform(0.05, 0.6)
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    break
                r = self.conn.response(timeout=left)
                if r is None:
                    break
                self.on_untagged(*r)
            self.conn.send(b"DONE\r\n")
            while True:
                text, lits = self.conn.response()
                if text.startswith(tag + " "):
                    self.expect_ok(text[len(tag) + 1:], "IDLE")
                    break
                self.on_untagged(text, lits)
        finally:
            self.cmd_kind = None
        self.sh.counts["IDLE"] += 1

    def op_close(self):
        if self.rng.random() < 0.5:
            op = self.sh.op_begin(self, "CLOSE", None)
            st, ut = self.command("CLOSE", "CLOSE")
            self.sh.op_end(op)
            self.sh.counts["CLOSE"] += 1
        else:
            st, ut = self.command("CLOSE", "UNSELECT")
            self.sh.counts["UNSELECT"] += 1
        self.expect_ok(st, "CLOSE/UNSELECT")
        self.state = "auth"
        self.view = []

    def step(self):
        if self.state == "auth":
            verb = "EXAMINE" if self.rng.random() < 0.15 else "SELECT"
            self.select(verb)
            self.sh.counts[verb] += 1
            return
        n = len(self.view)
        ops = [
            (self.op_append, 14 if n < 30 else (5 if n < 60 else 1)),
            (self.op_store, 22),
            (self.op_expunge, 8 if n > 30 else 2),
            (self.op_copy, 3 if n < 40 else 0),
            (self.op_fetch, 18),
            (self.op_search, 6),
            (self.op_noop, 8),
            (self.op_idle, 4),
            (lambda: (self.select("SELECT"), self.sh.counts.update(["re-SELECT"])), 3),
            (lambda: (self.select("EXAMINE"), self.sh.counts.update(["EXAMINE"])), 1),
            (self.op_close, 2),
        ]
        f = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        f()
        self.resolve()

    def login(self):
        self.conn.response()
        st, _ = self.command("LOGIN", 'LOGIN "%s" "%s"' % (self.a.user, self.a.password))
        if not st.startswith("OK"):
            raise Closed("%s: LOGIN answered %s" % (self.name, st))
        if self.condstore:
            st, _ = self.command("ENABLE", "ENABLE CONDSTORE")
            if not st.startswith("OK"):
                raise Closed("%s: ENABLE CONDSTORE answered %s" % (self.name, st))

    def final(self):
        """Views after the run: SELECT (if needed), NOOP, barrier, NOOP, UID FETCH 1:* FLAGS."""
        if self.state != "selected":
            self.select("SELECT")
        self.op_noop()
        self.resolve()
        self.sh.barrier.wait(timeout=120)
        self.op_noop()
        self.resolve()
        self.sh.barrier.wait(timeout=120)
        before = [(m.uid, m.flags) for m in self.view]
        st, _ = self.command("UID", "UID FETCH 1:* (UID FLAGS)")
        self.expect_ok(st, "final UID FETCH")
        after = [(m.uid, m.flags) for m in self.view]
        for (u, f0), (_, f1) in zip(before, after):
            if f0 is not None and f0 != f1:
                self.bad("final", "UID %d: the flags this session was told, %s, are not the mailbox's %s (a change was not pushed)"
                         % (u, sorted(f0), sorted(f1)))
        return [(m.uid, frozenset(m.flags or ())) for m in self.view]


def expand(s):
    out = []
    for part in s.split(","):
        if ":" in part:
            a, b = map(int, part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


# ---------------------------------------------------------------- the Maildir


FLAG_LETTERS = {"D": "\\draft", "F": "\\flagged", "R": "\\answered", "S": "\\seen", "T": "\\deleted"}


def maildir_view(path):
    """(uid, flags) from dovecot-uidlist, the file names and dovecot-keywords."""
    kw = {}
    try:
        for line in open(os.path.join(path, "dovecot-keywords")):
            p = line.split()
            if len(p) == 2:
                kw[chr(ord("a") + int(p[0]))] = p[1]
    except FileNotFoundError:
        pass
    files = {}
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(path, sub)):
            base, _, info = name.partition(":")
            flags = set()
            if info.startswith("2,"):
                for c in info[2:]:
                    if c in FLAG_LETTERS:
                        flags.add(FLAG_LETTERS[c])
                    elif c in kw:
                        flags.add(kw[c])
            files[base] = flags
    out = []
    lines = open(os.path.join(path, "dovecot-uidlist")).read().splitlines()
    for line in lines[1:]:
        head, _, name = line.partition(" :")
        if not name:
            continue
        uid = int(head.split()[0])
        base = name.partition(":")[0]
        if base in files:
            out.append((uid, frozenset(files.pop(base))))
    return out, sorted(files)


def doveadm_view(path):
    """What Dovecot reads from a copy of the Maildir (None, reason when it can't)."""
    if os.geteuid() != 0 or not shutil.which("dovecot") or not shutil.which("doveadm"):
        return None, "doveadm needs root and dovecot-core"
    work = tempfile.mkdtemp(prefix="imap-stress-dovecot.")
    try:
        os.chmod(work, 0o755)
        st = os.stat(path)
        subprocess.run(["cp", "-a", path, os.path.join(work, "Maildir")], check=True)
        for d in ("run", "state"):
            os.mkdir(os.path.join(work, d))
        conf = os.path.join(work, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""base_dir = {w}/run
state_dir = {w}/state
instance_name = imap-stress-{pid}
log_path = {w}/dovecot.log
ssl = no
protocols = none
listen = 127.0.0.1
mail_location = maildir:{w}/Maildir:INDEX=MEMORY
first_valid_uid = 1
last_valid_uid = 0
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={w}/Maildir
}}
passdb {{
  driver = static
  args = nopassword=y
}}
""".format(w=work, pid=os.getpid(), uid=st.st_uid, gid=st.st_gid))
        # The daemon keeps whatever it inherits open: no pipes.
        r = subprocess.run(["dovecot", "-c", conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return None, "dovecot did not start: %s" % open(os.path.join(work, "dovecot.log")).read()[-2000:]
        try:
            r = subprocess.run(["doveadm", "-c", conf, "-f", "flow", "fetch", "-u", "stress", "uid flags", "mailbox", "INBOX", "all"],
                               capture_output=True, text=True, timeout=60)
        finally:
            subprocess.run(["doveadm", "-c", conf, "stop"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return None, "doveadm fetch failed: %s" % r.stderr
        out = []
        for line in r.stdout.splitlines():
            m = re.match(r"uid=(\d+) flags=(.*)$", line)
            if m:
                out.append((int(m.group(1)), frozenset(norm(f) for f in m.group(2).split() if f.lower() != "\\recent")))
        return out, None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def show(view):
    return " ".join("%d(%s)" % (u, ",".join(sorted(f))) for u, f in view)


def diff(a, b):
    da, db = dict(a), dict(b)
    out = []
    for u in sorted(set(da) | set(db)):
        if u not in da:
            out.append("UID %d only in the second" % u)
        elif u not in db:
            out.append("UID %d only in the first" % u)
        elif da[u] != db[u]:
            out.append("UID %d: %s vs %s" % (u, sorted(da[u]), sorted(db[u])))
    if not out and [u for u, _ in a] != [u for u, _ in b]:
        out.append("same UIDs in a different order")
    return "; ".join(out[:8])


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--maildir", help="the INBOX Maildir, compared with the sessions' views at the end")
    ap.add_argument("--transcripts", help="a directory for each session's whole transcript")
    ap.add_argument("--show", type=int, default=5, help="violations to print with their transcript")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 10**9)
    if a.transcripts:
        os.makedirs(a.transcripts, exist_ok=True)
    print("imap_stress: seed=%d clients=%d seconds=%g (thread timing makes a rerun similar, not identical)"
          % (a.seed, a.clients, a.seconds), flush=True)
    # A hung server (or checker) must not hang the test: dump every thread and exit.
    faulthandler.dump_traceback_later(a.seconds + 240, exit=True)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sh = Shared(a)
    sessions = [Session(sh, i, a.seed * 1000 + i) for i in range(a.clients)]
    results = [None] * a.clients
    errors = []

    def run(i):
        s = sessions[i]
        try:
            s.login()
            while time.monotonic() < sh.stop_at:
                s.step()
                if s.rng.random() < 0.02:
                    sh.prune_ops()
            results[i] = s.final()
            s.command("LOGOUT", "LOGOUT")
        except Exception as e:  # a dead session is a failure too
            errors.append("%s: %s: %s" % (s.name, type(e).__name__, e))
            sh.violation("session", s, "%s: %s" % (type(e).__name__, e))
            sh.barrier.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(a.seconds + 300)

    class Final:
        name = "final"
        transcript = []

        @staticmethod
        def log(_):
            pass

    views = [r for r in results if r is not None]
    if len(views) == a.clients:
        for i, v in enumerate(views[1:], 1):
            if v != views[0]:
                sh.violation("final", Final, "s%d's view differs from s0's: %s" % (i, diff(views[0], v)))
        if a.maildir:
            disk, stray = maildir_view(a.maildir)
            if stray:
                sh.violation("final", Final, "message files not in dovecot-uidlist: %s" % stray[:5])
            if disk != views[0]:
                sh.violation("final", Final, "the Maildir on disk differs from the sessions' view: %s" % diff(views[0], disk))
            dv, why = doveadm_view(a.maildir)
            if dv is None:
                print("imap_stress: doveadm comparison skipped: %s (compared with dovecot-uidlist and file names only)" % why)
            else:
                sh.counts["(final) doveadm fetch compared"] += 1
                if dv != views[0]:
                    sh.violation("final", Final, "doveadm fetch differs from the sessions' view: %s" % diff(views[0], dv))
        print("imap_stress: final view: %d messages, UIDs %s..%s, %d with keywords" % (
            len(views[0]), views[0][0][0] if views[0] else "-", views[0][-1][0] if views[0] else "-",
            sum(1 for _, f in views[0] if any(not x.startswith("\\") for x in f))))

    with sh.lock:
        print("imap_stress: %d recent UIDs claimed, %d UIDs seen, highest %d" % (
            len(sh.recent_owner), len(sh.all_uids), sh.max_uid_seen))
    print("imap_stress: operations:")
    for k, v in sorted(sh.counts.items()):
        print("  %-34s %d" % (k, v))
    kinds = collections.Counter(k for k, *_ in sh.violations)
    for n, (kind, who, msg, tr) in enumerate(sh.violations):
        print("VIOLATION %s %s: %s" % (kind, who, msg))
        if n < a.show and tr:
            print("  transcript of %s (last %d lines):" % (who, len(tr)))
            for line in tr:
                print("    " + line)
    print("imap_stress: inconsistencies=%d %s seed=%d" % (len(sh.violations), dict(kinds), a.seed), flush=True)
    sys.exit(1 if sh.violations else 0)


if __name__ == "__main__":
    main()
