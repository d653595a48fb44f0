#!/usr/bin/env python3
"""imap_load.py -- bounded, server-agnostic IMAP load generator (stdlib only).

Adapted from the project's shared reference harness (shared/bench/imap_load.py,
"bounded, server-agnostic IMAP load generator"), by its authors (this project),
and from bench/lib/pop3_load.py, for bench/imap/run.sh. Changes: the session
is the one of the IMAP benchmark issue (STORE sets and clears \\Flagged on one
message instead of setting \\Seen on the fetched ones, so the mailbox is the
same before and after every session and no reset between runs is needed),
every response is checked (UID FETCH 1:* gives EXISTS UIDs and sizes, every
body's literal is as long as its RFC822.SIZE, SEARCH UNSEEN finds every
message), several client processes (--procs), a --prewarm/verify mode, a
--check-maildir mode for mbsync's download, --tree-stats, and per-run JSON for
bench/lib/imap_table.py. The frame it shares with pop3_load.py (client
processes, sampling, per-run JSON, command line) is in bench/lib/common.py.

Load mode (default): --clients N concurrent clients, spread over --procs
processes (asyncio in each), loop over sessions until --duration expires (or
--max-sessions sessions have been started):

  connect+greeting, LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS RFC822.SIZE),
  UID FETCH <uid> (BODY.PEEK[]) x --bodies (random distinct UIDs),
  UID STORE <uid> +FLAGS (\\Flagged), UID STORE <uid> -FLAGS (\\Flagged)
  (one random UID), SEARCH UNSEEN, LOGOUT (and wait for the server's close)

Client i logs in as line (i mod lines) of --userfile ("user password" lines);
clients may share a user (IMAP allows concurrent sessions). Reports sessions/s,
commands/s, p50/p99 latency per command and per session, client CPU, machine
CPU, and (with --server-pids) the server process tree's CPU and peak RSS/PSS.

Prewarm mode (--prewarm): for every user of --userfile, in order, one session
LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS RFC822.SIZE), UID FETCH 1:*
(BODY.PEEK[]), SEARCH UNSEEN, LOGOUT, timed: each mailbox's first session.
With --verify-dir DIR it checks that the bodies are exactly the files of the
Maildir DIR with LF -> CRLF (as a multiset of SHA-256 digests), that every
RFC822.SIZE is its body's length, that the UIDs are unique and ascending, and
that every message is unseen.

Examples:
  imap_load.py --port 4143 --userfile users.txt --clients 10 --duration 20
  imap_load.py --port 4143 --userfile users.txt --prewarm --verify-dir /tmp/x/Maildir
  imap_load.py --check-maildir /tmp/store/INBOX --verify-dir /tmp/x/Maildir
Final line: "imap_load: ..." (or "imap_prewarm: ...").
"""
import argparse
import asyncio
import os
import random
import re
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no root-owned __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py
from common import (Conn, Load, ProtoError, Stats, add_digest, add_load_args, add_output_args, add_run_args,  # noqa: E402
                    add_server_args, close, connect, crlf, maildir_digests, multiset_diff, prewarm_main,
                    prewarm_result, prewarm_sessions, quote, timed_session, tool_main)

RE_EXISTS = re.compile(rb"^\* (\d+) EXISTS\r$", re.M)
RE_UID = re.compile(rb"UID (\d+)")
RE_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
# UID and RFC822.SIZE of one FETCH response line, in either order; unsolicited
# FETCH responses (flag changes made by other sessions: UID and FLAGS, no size)
# are not matched
RE_UID_SIZE = re.compile(rb"^\* \d+ FETCH \((?:(?:[^\r\n]*? )?UID (\d+)[^\r\n]*? RFC822\.SIZE (\d+)"
                         rb"|(?:[^\r\n]*? )?RFC822\.SIZE (\d+)[^\r\n]*? UID (\d+))", re.M)
RE_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
RE_TUID = re.compile(rb"^X-TUID: [^\n]*\n", re.M)
RE_SEARCH = re.compile(rb"^\* SEARCH([ \d]*)\r$", re.M)
TAGS = {}
# what fails one session (the load) or one user's first session (the prewarm)
ERRORS = (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError, KeyError)
PREWARM_ERRORS = (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError)


def tag_re(tag):
    r = TAGS.get(tag)
    if r is None:
        r = TAGS[tag] = re.compile(rb"\{(\d+)\+?\}\r\n|^" + re.escape(tag) + rb" (OK|NO|BAD)([^\r\n]*)\r\n", re.M)
    return r


class Imap(Conn):
    def __init__(self, r, w, to):
        super().__init__(r, w, to)
        self.n = 0

    async def greeting(self):
        while b"\r\n" not in self.buf:
            await self._fill()
        i = self.buf.index(b"\r\n") + 2
        line = bytes(self.buf[:i])
        del self.buf[:i]
        if not line.startswith(b"* OK"):
            raise ProtoError("bad greeting %r" % line[:80])
        return line

    greet = greeting

    async def cmd(self, line, keep_literals=False):
        """send one command; return (response text with literals cut out, [literal sizes], [literals])."""
        self.n += 1
        tag = b"A%d" % self.n
        self.w.write(tag + b" " + line + b"\r\n")
        await self.w.drain()
        rx = tag_re(tag)
        text, sizes, lits = [], [], []
        pos = 0
        while True:
            m = rx.search(self.buf, pos)
            if m is None:
                k = self.buf.rfind(b"\r\n")
                if k >= 0 and k + 2 > pos:
                    pos = k + 2
                await self._fill()
                continue
            if m.group(1) is not None:           # a literal: cut it out of the text
                n = int(m.group(1))
                need = m.end() + n
                while len(self.buf) < need:
                    await self._fill()
                text.append(bytes(self.buf[:m.end()]))
                sizes.append(n)
                if keep_literals:
                    lits.append(bytes(self.buf[m.end():need]))
                del self.buf[:need]
                pos = 0
                continue
            status, tagline = bytes(m.group(2)), bytes(m.group(0))
            text.append(bytes(self.buf[:m.end()]))
            del self.buf[:m.end()]
            if status != b"OK":
                what = b" ".join(line.split(b" ")[:2 if line.startswith(b"UID") else 1]).decode(errors="replace")
                raise ProtoError("%s -> %s" % (what, tagline[:120].decode(errors="replace").strip()))
            return b"".join(text), sizes, lits


# ------------------------------------------------------------------ load
def uid_sizes(resp, exists):
    """[(UID, RFC822.SIZE)] from a UID FETCH 1:* (FLAGS RFC822.SIZE) response, checked against EXISTS."""
    uids, sizes = RE_UID.findall(resp), RE_SIZE.findall(resp)
    if len(uids) == len(sizes) == exists:    # the usual case: no unsolicited FETCH responses in between
        return list(zip(uids, map(int, sizes)))
    pairs = [(a or d, int(b or c)) for a, b, c, d in RE_UID_SIZE.findall(resp)]
    if len(pairs) != exists:
        raise ProtoError("UID FETCH 1:* gave %d messages with UID and RFC822.SIZE, EXISTS %d" % (len(pairs), exists))
    return pairs


async def session(a, user, pw, st, rnd):
    async def commands(c, timed):
        await timed("LOGIN", c.cmd(b"LOGIN " + quote(user) + b" " + quote(pw)))
        resp, _, _ = await timed("SELECT", c.cmd(b"SELECT INBOX"))
        ex = RE_EXISTS.search(resp)
        if not ex:
            raise ProtoError("SELECT: no EXISTS")
        exists = int(ex.group(1))
        resp, _, _ = await timed("FETCH_ALL", c.cmd(b"UID FETCH 1:* (FLAGS RFC822.SIZE)"))
        size = dict(uid_sizes(resp, exists))
        uids = list(size)
        for u in rnd.sample(uids, min(a.bodies, len(uids))):
            resp, lits, _ = await timed("FETCH_BODY", c.cmd(b"UID FETCH " + u + b" (BODY.PEEK[])"))
            if len(lits) != 1 or lits[0] != size[u]:
                raise ProtoError("UID FETCH %s BODY.PEEK[]: literal(s) %s, RFC822.SIZE %d" % (u.decode(), lits, size[u]))
            st.bytes += lits[0]
        if uids:
            u = rnd.choice(uids)
            await timed("STORE", c.cmd(b"UID STORE " + u + b" +FLAGS (\\Flagged)"))
            await timed("STORE", c.cmd(b"UID STORE " + u + b" -FLAGS (\\Flagged)"))
        resp, _, _ = await timed("SEARCH", c.cmd(b"SEARCH UNSEEN"))
        sm = RE_SEARCH.search(resp)
        found = len(sm.group(1).split()) if sm else -1
        if a.expect_unseen and found != exists:
            raise ProtoError("SEARCH UNSEEN found %d of %d messages (none is ever seen)" % (found, exists))
        await timed("LOGOUT", c.cmd(b"LOGOUT"))
        return exists
    return await timed_session(a, Imap, st, commands)


def warmup(a, users):
    for i in range(a.warmup):   # sequential, not counted
        try:
            asyncio.run(session(a, users[0][0], users[0][1], Stats(), random.Random(i)))
        except ERRORS:
            pass


LOAD = Load("imap_load", session, ERRORS, box="mailbox", param="bodies", mb="body", warmup=warmup)


# ---------------------------------------------------------------- prewarm / verify
def compare(want, got, what):
    if got == want:
        return []
    miss, extra = multiset_diff(want, got)
    return ["%s differs from the template: %d template messages missing, %d %s messages not in the template"
            % (what, miss, extra, what)]


async def full_session(a, user, pw, want):
    """LOGIN SELECT, UID FETCH 1:* (FLAGS RFC822.SIZE), UID FETCH 1:* (BODY.PEEK[]), SEARCH UNSEEN, LOGOUT."""
    problems = []
    t0 = time.perf_counter()
    c, w = await connect(a, Imap)
    try:
        await c.greeting()
        await c.cmd(b"LOGIN " + quote(user) + b" " + quote(pw))
        resp, _, _ = await c.cmd(b"SELECT INBOX")
        ex = RE_EXISTS.search(resp)
        exists = int(ex.group(1)) if ex else 0
        if not ex:
            problems.append("SELECT: no EXISTS")
        if b"UIDVALIDITY" not in resp:
            problems.append("SELECT: no UIDVALIDITY")
        resp, _, _ = await c.cmd(b"UID FETCH 1:* (FLAGS RFC822.SIZE)")
        pairs = [(int(a or d), int(b or c)) for a, b, c, d in RE_UID_SIZE.findall(resp)]
        uids, sizes = [u for u, _ in pairs], [n for _, n in pairs]
        flags = RE_FLAGS.findall(resp)
        if len(pairs) != exists:
            problems.append("UID FETCH 1:* gave %d messages with UID and RFC822.SIZE, EXISTS %d" % (len(pairs), exists))
        if uids != sorted(set(uids)):
            problems.append("UIDs not unique and ascending")
        if any(b"\\Seen" in f for f in flags):
            problems.append("%d messages already \\Seen" % sum(b"\\Seen" in f for f in flags))
        resp, lens, lits = await c.cmd(b"UID FETCH 1:* (BODY.PEEK[])", keep_literals=True)
        buids = [int(x) for x in RE_UID.findall(resp)]
        if len(lits) != exists:
            problems.append("UID FETCH 1:* BODY.PEEK[] gave %d bodies, EXISTS %d" % (len(lits), exists))
        elif len(buids) == len(lits):
            sz = dict(zip(uids, sizes))
            bad = [u for u, n in zip(buids, lens) if sz.get(u) != n]
            if bad:
                problems.append("%d bodies differ in length from their RFC822.SIZE (e.g. UID %d)" % (len(bad), bad[0]))
        got = {}
        for b in lits:
            add_digest(got, b)
        if want is not None:
            problems += compare(want, got, "served")
        resp, _, _ = await c.cmd(b"SEARCH UNSEEN")
        sm = RE_SEARCH.search(resp)
        found = len(sm.group(1).split()) if sm else -1
        if found != exists:
            problems.append("SEARCH UNSEEN found %d of %d" % (found, exists))
        await c.cmd(b"LOGOUT")
        await c.wait_close()
    finally:
        await close(w)
    return time.perf_counter() - t0, exists, sum(lens), problems


def prewarm(a, users):
    want = maildir_digests(a.verify_dir, crlf)[0] if a.verify_dir else None
    times, ns, problems, _ = prewarm_sessions(a, users, full_session, want, PREWARM_ERRORS)
    return prewarm_result(users, times, ns, problems, want, "mailbox")


def check_maildir(d, tpl):
    """the Maildir mbsync wrote against the template, line endings aside (mbsync stores LF) and
    without the X-TUID header mbsync inserts into every message it propagates."""
    def lf(b):
        return (b if b.endswith(b"\n") else b + b"\n").replace(b"\r\n", b"\n")

    def untuid(b):
        b = lf(b)
        end = b.find(b"\n\n")
        head = b[:end + 1] if end >= 0 else b
        return RE_TUID.sub(b"", head, count=1) + (b[end + 1:] if end >= 0 else b"")
    want, nw = maildir_digests(tpl, lf)
    got, ng = maildir_digests(d, untuid)
    problems = compare(want, got, "downloaded")
    return {"msgs": ng, "template_msgs": nw, "content_ok": not problems, "problems": problems}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_args(ap, "imap", 143, "IMAPS")
    add_load_args(ap)
    ap.add_argument("--bodies", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1, help="sequential sessions before each run, not counted")
    ap.add_argument("--no-expect-unseen", dest="expect_unseen", action="store_false",
                    help="do not require SEARCH UNSEEN to find every message")
    add_run_args(ap)
    ap.add_argument("--verify-dir", help="with --prewarm / --check-maildir: the template Maildir")
    ap.add_argument("--check-maildir", metavar="DIR", help="with --verify-dir: compare a downloaded Maildir, print JSON, exit")
    add_output_args(ap)
    tool_main(ap, LOAD, ("check_maildir", check_maildir),
              lambda a: (0 <= a.bodies <= 10000 and 0 <= a.warmup <= 100, "bodies 0..10000, warmup 0..100"),
              lambda a, users: prewarm_main(a, prewarm(a, users), "imap_prewarm", "mailbox"))


if __name__ == "__main__":
    main()
