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
bench/lib/imap_table.py.

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
import hashlib
import json
import multiprocessing
import os
import random
import re
import resource
import ssl
import statistics
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")
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


class ProtoError(Exception):
    pass


def tag_re(tag):
    r = TAGS.get(tag)
    if r is None:
        r = TAGS[tag] = re.compile(rb"\{(\d+)\+?\}\r\n|^" + re.escape(tag) + rb" (OK|NO|BAD)([^\r\n]*)\r\n", re.M)
    return r


class Imap:
    def __init__(self, r, w, to):
        self.r, self.w, self.to = r, w, to
        self.buf = bytearray()
        self.n = 0

    async def _fill(self):
        d = await asyncio.wait_for(self.r.read(262144), self.to)
        if not d:
            raise ProtoError("connection closed by server")
        self.buf += d

    async def greeting(self):
        while b"\r\n" not in self.buf:
            await self._fill()
        i = self.buf.index(b"\r\n") + 2
        line = bytes(self.buf[:i])
        del self.buf[:i]
        if not line.startswith(b"* OK"):
            raise ProtoError("bad greeting %r" % line[:80])
        return line

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

    async def wait_close(self, t=5.0):
        """after the LOGOUT reply: read until the server closes (bounded)."""
        end = time.monotonic() + t
        while time.monotonic() < end:
            try:
                d = await asyncio.wait_for(self.r.read(65536), max(0.01, end - time.monotonic()))
            except (asyncio.TimeoutError, OSError):
                return False
            if not d:
                return True
        return False


def quote(s):
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


# ------------------------------------------------------------------ process-tree sampling
def sys_busy_s():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return (sum(v) - v[3] - v[4]) / CLK


def proc_tree_stats(roots):
    """nproc, summed RSS/PSS (KiB) and CPU seconds (+ reaped children of the roots) of the trees."""
    if not roots:
        return None
    m, kids = {}, {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                s = open(f"/proc/{p}/stat").read()
                r = s[s.rindex(")") + 2:].split()
                m[int(p)] = r
                kids.setdefault(int(r[1]), []).append(int(p))
            except (OSError, ValueError):
                pass
    st, pids = list(roots), []
    while st:
        p = st.pop()
        if p in m:
            pids.append(p)
            st.extend(kids.get(p, []))
    rss = pss = 0
    cpu = 0.0
    for p in pids:
        r = m[p]
        cpu += (int(r[11]) + int(r[12])) / CLK
        if p in roots:
            cpu += (int(r[13]) + int(r[14])) / CLK
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return {"nproc": len(pids), "rss_kb": rss, "pss_kb": pss, "cpu_s": cpu}


# ------------------------------------------------------------------ load
class Stats:
    def __init__(self):
        self.lat, self.sessions, self.errors, self.err_samples = {}, [], 0, []
        self.cmds = self.bytes = 0
        self.mailbox = None
        self.per_client = {}
        self.unclean_close = 0

    def add(self, name, dt):
        self.lat.setdefault(name, []).append(dt)
        if name != "connect":
            self.cmds += 1

    def err(self, e):
        self.errors += 1
        if len(self.err_samples) < 5:
            self.err_samples.append("%s: %s" % (type(e).__name__, e))

    def as_dict(self):
        return dict(lat=self.lat, sessions=self.sessions, errors=self.errors, err_samples=self.err_samples,
                    cmds=self.cmds, bytes=self.bytes, mailbox=self.mailbox, per_client=self.per_client,
                    unclean_close=self.unclean_close, end=time.time())


def tls_ctx(a):
    if not a.tls:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(a):
    r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port, ssl=tls_ctx(a), limit=1 << 22),
                                  a.io_timeout)
    return Imap(r, w, a.io_timeout), w


async def close(w):
    try:
        w.close()
        await asyncio.wait_for(w.wait_closed(), 2)
    except Exception:
        pass


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
    t_s = time.perf_counter()
    c, w = await connect(a)
    try:
        await c.greeting()
        st.add("connect", time.perf_counter() - t_s)

        async def timed(name, line):
            t = time.perf_counter()
            res = await c.cmd(line)
            st.add(name, time.perf_counter() - t)
            return res

        await timed("LOGIN", b"LOGIN " + quote(user) + b" " + quote(pw))
        resp, _, _ = await timed("SELECT", b"SELECT INBOX")
        ex = RE_EXISTS.search(resp)
        if not ex:
            raise ProtoError("SELECT: no EXISTS")
        exists = int(ex.group(1))
        resp, _, _ = await timed("FETCH_ALL", b"UID FETCH 1:* (FLAGS RFC822.SIZE)")
        size = dict(uid_sizes(resp, exists))
        uids = list(size)
        for u in rnd.sample(uids, min(a.bodies, len(uids))):
            resp, lits, _ = await timed("FETCH_BODY", b"UID FETCH " + u + b" (BODY.PEEK[])")
            if len(lits) != 1 or lits[0] != size[u]:
                raise ProtoError("UID FETCH %s BODY.PEEK[]: literal(s) %s, RFC822.SIZE %d" % (u.decode(), lits, size[u]))
            st.bytes += lits[0]
        if uids:
            u = rnd.choice(uids)
            await timed("STORE", b"UID STORE " + u + b" +FLAGS (\\Flagged)")
            await timed("STORE", b"UID STORE " + u + b" -FLAGS (\\Flagged)")
        resp, _, _ = await timed("SEARCH", b"SEARCH UNSEEN")
        sm = RE_SEARCH.search(resp)
        found = len(sm.group(1).split()) if sm else -1
        if a.expect_unseen and found != exists:
            raise ProtoError("SEARCH UNSEEN found %d of %d messages (none is ever seen)" % (found, exists))
        await timed("LOGOUT", b"LOGOUT")
        if not await c.wait_close():
            st.unclean_close += 1
    finally:
        await close(w)
    st.sessions.append(time.perf_counter() - t_s)
    return exists


async def client(a, idx, users, st, deadline, budget):
    rnd = random.Random(a.seed * 100003 + idx)
    user, pw = users[idx % len(users)]
    done = 0
    while time.time() < deadline and budget[0] > 0:
        budget[0] -= 1
        try:
            st.mailbox = await session(a, user, pw, st, rnd)
            done += 1
        except (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError, KeyError) as e:
            st.err(e)
            await asyncio.sleep(0.1)
    st.per_client[idx] = done


async def worker_main(a, users, ids, deadline, budget):
    st = Stats()
    tasks = [asyncio.create_task(client(a, i, users, st, deadline, budget)) for i in ids]
    hard = deadline + a.io_timeout + 10
    while not all(t.done() for t in tasks) and time.time() < hard:
        await asyncio.sleep(0.1)
    for t in tasks:
        if not t.done():
            t.cancel()
            st.err(RuntimeError("client still busy %.0f s after the deadline: cancelled" % (a.io_timeout + 10)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return st.as_dict()


def empty_result(why):
    return dict(lat={}, sessions=[], errors=1, err_samples=[why], cmds=0, bytes=0, mailbox=None, per_client={},
                unclean_close=0, end=time.time())


def worker(a, users, ids, deadline, budget_n, conn):
    try:
        res = asyncio.run(worker_main(a, users, ids, deadline, [budget_n]))
    except BaseException as e:  # report, never hang the parent
        res = empty_result("worker: %r" % e)
    conn.send(res)
    conn.close()


def pct(v, f):
    v = sorted(v)
    return v[min(len(v) - 1, int(f * len(v)))] if v else None


def ms(x):
    return None if x is None else round(x * 1e3, 2)


def one_run(a, users, run_no):
    roots = [int(x) for x in a.server_pids.split()] if a.server_pids else []
    for i in range(a.warmup):   # sequential, not counted
        try:
            asyncio.run(session(a, users[0][0], users[0][1], Stats(), random.Random(i)))
        except (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError, KeyError):
            pass
    s0 = proc_tree_stats(roots)
    peak = dict(s0) if s0 else None
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    rc0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sb0, w0 = sys_busy_s(), time.time()
    procs = max(1, min(a.procs, a.clients))
    t0 = time.time()
    deadline = t0 + a.duration
    ctx = multiprocessing.get_context("fork")
    workers = []
    for k in range(procs):
        ids = list(range(k, a.clients, procs))
        rd, wr = ctx.Pipe(duplex=False)
        budget = -(-a.max_sessions // procs)
        p = ctx.Process(target=worker, args=(a, users, ids, deadline, budget, wr), daemon=True)
        p.start()
        wr.close()
        workers.append((p, rd))
    results = [None] * procs
    hard = deadline + a.io_timeout + 20
    while any(r is None for r in results) and time.time() < hard:
        for k, (p, rd) in enumerate(workers):
            if results[k] is None and rd.poll(0):
                try:
                    results[k] = rd.recv()
                except EOFError:
                    results[k] = empty_result("worker %d died" % k)
        if roots:
            s = proc_tree_stats(roots)
            if s:
                for key in ("nproc", "rss_kb", "pss_kb"):
                    peak[key] = max(peak[key], s[key])
        time.sleep(a.sample_every)
    for k, (p, rd) in enumerate(workers):
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(2)
        if results[k] is None:
            results[k] = empty_result("worker %d: no result" % k)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    rc1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sb1, w1 = sys_busy_s(), time.time()
    s1 = proc_tree_stats(roots)
    el = max(r["end"] for r in results) - t0
    lat, sessions, per_client, errs = {}, [], {}, []
    for r in results:
        for k, v in r["lat"].items():
            lat.setdefault(k, []).extend(v)
        sessions.extend(r["sessions"])
        per_client.update(r["per_client"])
        errs.extend(r["err_samples"])
    cmds = sum(r["cmds"] for r in results)
    nbytes = sum(r["bytes"] for r in results)
    errors = sum(r["errors"] for r in results)
    allcmd = [x for k, v in lat.items() if k != "connect" for x in v]
    pcv = list(per_client.values()) or [0]
    cpu = lambda r: r.ru_utime + r.ru_stime
    res = {
        "run": run_no, "clients": a.clients, "procs": procs, "bodies": a.bodies, "duration_s": a.duration,
        "elapsed_s": round(el, 3), "sessions": len(sessions), "commands": cmds, "errors": errors,
        "mailbox_msgs": next((r["mailbox"] for r in results if r["mailbox"] is not None), None),
        "sessions_per_s": round(len(sessions) / el, 2), "cmds_per_s": round(cmds / el, 1),
        "body_MB_per_s": round(nbytes / el / 1e6, 2),
        "session_p50_ms": ms(pct(sessions, .5)), "session_p99_ms": ms(pct(sessions, .99)),
        "cmd_p50_ms": ms(pct(allcmd, .5)), "cmd_p99_ms": ms(pct(allcmd, .99)),
        "per_cmd": {k: {"n": len(v), "p50_ms": ms(pct(v, .5)), "p99_ms": ms(pct(v, .99))} for k, v in sorted(lat.items())},
        "sessions_per_client_min": min(pcv), "sessions_per_client_max": max(pcv),
        "unclean_close": sum(r["unclean_close"] for r in results),
        "client_cpu_s": round(cpu(ru1) - cpu(ru0) + cpu(rc1) - cpu(rc0), 2),
        "sys_busy_cpu_s": round(sb1 - sb0, 2), "sys_cpus": os.cpu_count(),
        "cpu_window_s": round(w1 - w0, 3),   # the wall time the three CPU figures cover
    }
    if roots and s1:
        res.update(server_cpu_s=round(s1["cpu_s"] - s0["cpu_s"], 2), server_peak_nproc=peak["nproc"],
                   server_peak_rss_mb=round(peak["rss_kb"] / 1024, 1),
                   server_peak_pss_mb=round(peak["pss_kb"] / 1024, 1))
    if errs:
        res["error_samples"] = errs[:5]
    return res


# ---------------------------------------------------------------- prewarm / verify
def crlf(data):
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def maildir_digests(d, norm):
    out, n = {}, 0
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        for name in os.listdir(p) if os.path.isdir(p) else []:
            with open(os.path.join(p, name), "rb") as f:
                h = hashlib.sha256(norm(f.read())).hexdigest()
            out[h] = out.get(h, 0) + 1
            n += 1
    return out, n


def compare(want, got, what):
    if got == want:
        return []
    miss = sum((want[h] - got.get(h, 0)) for h in want if want[h] > got.get(h, 0))
    extra = sum((got[h] - want.get(h, 0)) for h in got if got[h] > want.get(h, 0))
    return ["%s differs from the template: %d template messages missing, %d %s messages not in the template"
            % (what, miss, extra, what)]


async def full_session(a, user, pw, want):
    """LOGIN SELECT, UID FETCH 1:* (FLAGS RFC822.SIZE), UID FETCH 1:* (BODY.PEEK[]), SEARCH UNSEEN, LOGOUT."""
    problems = []
    t0 = time.perf_counter()
    c, w = await connect(a)
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
            h = hashlib.sha256(b).hexdigest()
            got[h] = got.get(h, 0) + 1
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
    times, problems, ns = [], [], set()
    for user, pw in users:
        try:
            dt, n, total, p = asyncio.run(full_session(a, user, pw, want))
        except (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError) as e:
            problems.append("%s: %s: %s" % (user, type(e).__name__, e))
            continue
        times.append(dt)
        ns.add(n)
        problems.extend("%s: %s" % (user, x) for x in p[:3])
    return {"users": len(users), "ok": len(times), "mailbox_msgs": sorted(ns),
            "verified": bool(want) and not problems, "template_msgs": sum(want.values()) if want else None,
            "first_session_p50_ms": ms(statistics.median(times)) if times else None,
            "first_session_min_ms": ms(min(times)) if times else None,
            "first_session_max_ms": ms(max(times)) if times else None,
            "problems": problems[:10], "n_problems": len(problems)}


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
    ap.add_argument("--host", default=os.environ.get("IMAP_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("IMAP_PORT", 143)))
    ap.add_argument("--tls", action="store_true", help="implicit TLS (IMAPS), certificate not verified")
    ap.add_argument("--user", default=os.environ.get("IMAP_USER", "john@example.com"))
    ap.add_argument("--password", default=os.environ.get("IMAP_PASS", "john123"))
    ap.add_argument("--userfile", help="lines 'user password'; client i uses line i mod lines")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--procs", type=int, default=1, help="client processes (clients are spread over them)")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--max-sessions", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--bodies", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1, help="sequential sessions before each run, not counted")
    ap.add_argument("--no-expect-unseen", dest="expect_unseen", action="store_false",
                    help="do not require SEARCH UNSEEN to find every message")
    ap.add_argument("--io-timeout", type=float, default=60.0)
    ap.add_argument("--server-pids", default=os.environ.get("SERVER_PIDS", ""))
    ap.add_argument("--sample-every", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prewarm", action="store_true", help="one full download per user, sequentially, timed")
    ap.add_argument("--verify-dir", help="with --prewarm / --check-maildir: the template Maildir")
    ap.add_argument("--check-maildir", metavar="DIR", help="with --verify-dir: compare a downloaded Maildir, print JSON, exit")
    ap.add_argument("--json-out", help="append one JSON object per run to this file")
    ap.add_argument("--tag", default="", help="free text stored in the JSON ('server' field)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tree-stats", action="store_true",
                    help="print the --server-pids trees' nproc, rss_kb, pss_kb, cpu_s and the machine's busy "
                         "CPU seconds (sys_busy_s) as JSON and exit")
    a = ap.parse_args()
    if a.tree_stats:
        r = proc_tree_stats([int(x) for x in a.server_pids.split()])
        if r is not None:
            r["sys_busy_s"] = sys_busy_s()
        print(json.dumps(r))
        return
    if a.check_maildir:
        if not a.verify_dir:
            ap.error("--check-maildir needs --verify-dir")
        print(json.dumps(check_maildir(a.check_maildir, a.verify_dir)))
        return
    if not (1 <= a.clients <= 5000 and 0 < a.duration <= 600 and 1 <= a.runs <= 20 and 1 <= a.procs <= 64
            and 0 <= a.bodies <= 10000 and 0.05 <= a.sample_every <= 10 and 0 <= a.warmup <= 100):
        ap.error("clients 1..5000, duration 0..600, runs 1..20, procs 1..64, bodies 0..10000, warmup 0..100")
    if a.userfile:
        users = [tuple(l.split(None, 1)) for l in (x.strip() for x in open(a.userfile)) if l and not l.startswith("#")]
    else:
        users = [(a.user, a.password)]
    if a.prewarm:
        r = prewarm(a, users)
        r.update(tool="imap_prewarm", server=a.tag, host=a.host, port=a.port, tls=a.tls)
        if a.json_out:
            with open(a.json_out, "a") as f:
                f.write(json.dumps(r) + "\n")
        print("imap_prewarm: %s:%d users=%d ok=%d msgs=%s verified=%s first_session p50=%sms (%s..%s) problems=%d%s" % (
            a.host, a.port, r["users"], r["ok"], r["mailbox_msgs"], r["verified"], r["first_session_p50_ms"],
            r["first_session_min_ms"], r["first_session_max_ms"], r["n_problems"],
            "".join("\n  " + p for p in r["problems"])), flush=True)
        sys.exit(0 if r["n_problems"] == 0 and r["ok"] == r["users"] else 1)
    runs = []
    for i in range(1, a.runs + 1):
        r = one_run(a, users, i)
        runs.append(r)
        if not a.quiet:
            print("run %d/%d: %s" % (i, a.runs, json.dumps(r)), flush=True)
        if a.json_out:
            with open(a.json_out, "a") as f:
                f.write(json.dumps(dict(r, tool="imap_load", server=a.tag, host=a.host, port=a.port, tls=a.tls)) + "\n")

    def med(k):
        v = [r[k] for r in runs if r.get(k) is not None]
        return round(statistics.median(v), 2) if v else None
    extra = ""
    if a.server_pids:
        extra = " server_cpu_s=%s peak_rss=%sMB peak_pss=%sMB" % (
            med("server_cpu_s"), max(r.get("server_peak_rss_mb", 0) for r in runs),
            max(r.get("server_peak_pss_mb", 0) for r in runs))
    print("imap_load: %s:%d tls=%s clients=%d procs=%d runs=%d dur=%ss mailbox=%s msgs bodies=%d "
          "sessions/s=%s cmds/s=%s body_MB/s=%s session_p50/p99=%s/%sms cmd_p50/p99=%s/%sms errors=%d "
          "client_cpu_s=%s%s" % (
              a.host, a.port, a.tls, a.clients, runs[-1]["procs"], a.runs, a.duration, runs[-1]["mailbox_msgs"],
              a.bodies, med("sessions_per_s"), med("cmds_per_s"), med("body_MB_per_s"), med("session_p50_ms"),
              med("session_p99_ms"), med("cmd_p50_ms"), med("cmd_p99_ms"), sum(r["errors"] for r in runs),
              med("client_cpu_s"), extra), flush=True)


if __name__ == "__main__":
    main()
