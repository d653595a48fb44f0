#!/usr/bin/env python3
"""pop3_load.py -- bounded, server-agnostic POP3 load generator (stdlib only).

Adapted from the project's shared reference harness (shared/bench/pop3_load.py,
"bounded, server-agnostic POP3 load generator"), by its authors (this project),
for bench/pop3/run.sh. Changes: several client processes (--procs), one user
per client (--userfile, so a server that locks the maildrop per session is not
refused), the QUIT reply is followed by waiting for the server to close the
connection, a --prewarm mode (one full download per user, optionally checked
byte for byte against the Maildir the mailboxes were copied from), and exact
per-run JSON for bench/lib/pop3_table.py. The frame it shares with
imap_load.py (client processes, sampling, per-run JSON, command line) is in
bench/lib/common.py.

Load mode (default): --clients N concurrent clients, spread over --procs
processes (asyncio in each), loop over sessions until --duration expires (or
--max-sessions sessions have been started):

  connect+greeting, USER, PASS, STAT, UIDL, RETR x --retr (random message
  numbers, distinct within a session), QUIT, wait for the server's close
                                                   (never DELE: the maildrop stays)

Client i logs in as line (i mod lines) of --userfile ("user password" lines).
Reports sessions/s, commands/s, p50/p99 latency per command and per session,
client CPU, machine CPU, and (with --server-pids) the server process tree's
CPU and peak RSS/PSS, sampled every --sample-every seconds.

Prewarm mode (--prewarm): for every user of --userfile, in order, one session
USER, PASS, STAT, LIST, UIDL, RETR 1..n, QUIT, timed. This is each maildrop's
first POP3 session (the servers build their indexes and move new/ to cur/).
With --verify-dir DIR it checks, for every user, that the retrieved messages
(dot-unstuffed) are exactly the files of the Maildir DIR with LF -> CRLF (as a
multiset of SHA-256 digests), that every LIST size is the retrieved size, that
STAT's octets are their sum, and that the UIDLs are unique.

Examples:
  pop3_load.py --port 4110 --userfile users.txt --clients 10 --duration 20
  pop3_load.py --port 4110 --userfile users.txt --prewarm --verify-dir /tmp/x/Maildir
Final line: "pop3_load: ..." (or "pop3_prewarm: ...").
"""
import argparse
import asyncio
import os
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no root-owned __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py
from common import (Conn, Load, ProtoError, add_digest, add_load_args, add_output_args, add_run_args,  # noqa: E402
                    add_server_args, close, connect, crlf, maildir_digests, multiset_diff, prewarm_main,
                    prewarm_result, prewarm_sessions, timed_session, tool_main)

# what fails one session (the load) or one user's first session (the prewarm)
ERRORS = (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError)


class Pop3(Conn):
    async def greet(self):
        return await self.single(None)

    async def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                l = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return l
            await self._fill()

    async def single(self, cmd):
        if cmd is not None:
            self.w.write(cmd + b"\r\n")
            await self.w.drain()
        l = await self.line()
        if not l.startswith(b"+OK"):
            what = (cmd or b"greeting").split(b" ")[0].decode()
            raise ProtoError("%s -> %s" % (what, l[:100].decode(errors="replace")))
        return l

    async def multi(self, cmd):
        """status line + dot-terminated body; returns the body (still dot-stuffed, CRLF)."""
        await self.single(cmd)
        while len(self.buf) < 3:
            await self._fill()
        if self.buf.startswith(b".\r\n"):          # empty body
            del self.buf[:3]
            return b""
        pos = 0
        while True:
            i = self.buf.find(b"\r\n.\r\n", pos)
            if i >= 0:
                body = bytes(self.buf[:i + 2])
                del self.buf[:i + 5]
                return body
            pos = max(0, len(self.buf) - 4)
            await self._fill()


def unstuff(body):
    if b"\r\n.." not in body and not body.startswith(b".."):
        return body
    lines = body.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b"..") else l for l in lines)


async def session(a, user, pw, st, rnd):
    async def commands(c, timed):
        await timed("USER", c.single(b"USER " + user.encode()))
        await timed("PASS", c.single(b"PASS " + pw.encode()))
        stat = await timed("STAT", c.single(b"STAT"))
        n = int(stat.split()[1])
        uidl = await timed("UIDL", c.multi(b"UIDL"))
        if uidl.count(b"\r\n") != n:
            raise ProtoError("UIDL returned %d lines, STAT said %d" % (uidl.count(b"\r\n"), n))
        for k in (rnd.sample(range(1, n + 1), min(a.retr, n)) if n else []):
            body = await timed("RETR", c.multi(b"RETR %d" % k))
            if not body:
                raise ProtoError("RETR %d: empty message" % k)
            st.bytes += len(body)
        await timed("QUIT", c.single(b"QUIT"))
        return n
    return await timed_session(a, Pop3, st, commands)


LOAD = Load("pop3_load", session, ERRORS, box="maildrop", param="retr", mb="retr")


# ---------------------------------------------------------------- prewarm / verify
async def full_session(a, user, pw, want):
    """USER PASS STAT LIST UIDL RETR 1..n QUIT; returns (seconds, n, total octets, problems, [first UIDL])."""
    problems = []
    t0 = time.perf_counter()
    c, w = await connect(a, Pop3)
    try:
        await c.single(None)
        await c.single(b"USER " + user.encode())
        await c.single(b"PASS " + pw.encode())
        stat = (await c.single(b"STAT")).split()
        n, octets = int(stat[1]), int(stat[2])
        sizes = {}
        for l in (await c.multi(b"LIST")).split(b"\r\n"):
            if l:
                k, v = l.split()[:2]
                sizes[int(k)] = int(v)
        uidls = [l.split()[1] for l in (await c.multi(b"UIDL")).split(b"\r\n") if l]
        got, total = {}, 0
        for k in range(1, n + 1):
            body = unstuff(await c.multi(b"RETR %d" % k))
            total += len(body)
            if want is not None:
                add_digest(got, body)
            if sizes.get(k) != len(body):
                problems.append("message %d: LIST says %s octets, RETR gave %d" % (k, sizes.get(k), len(body)))
        await c.single(b"QUIT")
        await c.wait_close()
    finally:
        await close(w)
    dt = time.perf_counter() - t0
    if len(sizes) != n or len(uidls) != n:
        problems.append("STAT %d messages, LIST %d lines, UIDL %d lines" % (n, len(sizes), len(uidls)))
    if len(set(uidls)) != len(uidls):
        problems.append("duplicate UIDLs")
    if octets != total:
        problems.append("STAT says %d octets, messages total %d" % (octets, total))
    if want is not None and got != want:
        miss, extra = multiset_diff(want, got)
        problems.append("content differs from the template: %d template messages not served, %d served messages "
                        "not in the template" % (miss, extra))
    return dt, n, total, problems, uidls[:1]


def prewarm(a, users):
    want = maildir_digests(a.verify_dir, crlf)[0] if a.verify_dir else None
    times, ns, problems, extras = prewarm_sessions(a, users, full_session, want, ERRORS)
    first_uidl = next((u1[0].decode() for u1, in extras if u1), None)
    return prewarm_result(users, times, ns, problems, want, "maildrop",
                          first_session_total_s=round(sum(times), 2), uidl_sample=first_uidl)


def check_bsmtp(path, tpl_dir):
    """Compare the messages fetchmail wrote to a BSMTP file with the template Maildir.

    fetchmail turns Return-Path into MAIL FROM and inserts its own Received
    header, so each message is compared from the template's own first
    Received header ("Received: from client.example.org") to its end, as a
    multiset of SHA-256 digests (CRLF line endings, dot-unstuffed)."""
    mark = b"Received: from client.example.org"

    def tail(msg):
        i = msg.find(b"\r\n" + mark)
        return None if i < 0 else msg[i + 2:]
    want = maildir_digests(tpl_dir, lambda data: tail(crlf(data)))[0]
    got, n, problems = {}, 0, []
    try:
        data = open(path, "rb").read()
    except OSError as e:
        data = b""
        problems.append("cannot read %s: %s" % (path, e))
    pos = 0
    while True:
        i = data.find(b"\r\nDATA\r\n", pos)
        if i < 0:
            break
        j = data.find(b"\r\n.\r\n", i + 6)
        if j < 0:
            problems.append("message %d: no end of DATA" % (n + 1))
            break
        msg = unstuff(data[i + 8:j + 2])
        pos = j + 5
        n += 1
        t = tail(msg)
        if t is None:
            problems.append("message %d: no 'Received: from client.example.org' header" % n)
            continue
        add_digest(got, t)
    if got != want and not problems:
        miss, extra = multiset_diff(want, got)
        problems.append("%d template messages not fetched, %d fetched messages not in the template" % (miss, extra))
    return {"bsmtp_msgs": n, "template_msgs": sum(want.values()), "content_ok": not problems and got == want,
            "problems": problems[:5]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_args(ap, "pop3", 110, "POP3S")
    add_load_args(ap)
    ap.add_argument("--retr", type=int, default=20)
    add_run_args(ap)
    ap.add_argument("--verify-dir", help="with --prewarm: Maildir every maildrop must be a copy of")
    ap.add_argument("--check-bsmtp", metavar="FILE",
                    help="with --verify-dir: check that the BSMTP file fetchmail wrote holds exactly the template's "
                         "messages; print JSON and exit")
    add_output_args(ap)

    def prewarm_cmd(a, users):
        r = prewarm(a, users)
        prewarm_main(a, r, "pop3_prewarm", "maildrop", " total=%ss" % r["first_session_total_s"])
    tool_main(ap, LOAD, ("check_bsmtp", check_bsmtp), lambda a: (0 <= a.retr <= 10000, "retr 0..10000"), prewarm_cmd)


if __name__ == "__main__":
    main()
