#!/usr/bin/env python3
"""pop3_load.py -- bounded, server-agnostic POP3 load generator (stdlib only).

Adapted from the project's shared reference harness (shared/bench/pop3_load.py,
"bounded, server-agnostic POP3 load generator"), by its authors (this project),
for bench/pop3/run.sh. Changes: several client processes (--procs), one user
per client (--userfile, so a server that locks the maildrop per session is not
refused), the QUIT reply is followed by waiting for the server to close the
connection, a --prewarm mode (one full download per user, optionally checked
byte for byte against the Maildir the mailboxes were copied from), and exact
per-run JSON for bench/lib/pop3_table.py.

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
import hashlib
import json
import multiprocessing
import os
import random
import resource
import ssl
import statistics
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")


class ProtoError(Exception):
    pass


class Pop3:
    def __init__(self, r, w, to):
        self.r, self.w, self.to = r, w, to
        self.buf = bytearray()

    async def _fill(self):
        d = await asyncio.wait_for(self.r.read(262144), self.to)
        if not d:
            raise ProtoError("connection closed by server")
        self.buf += d

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

    async def wait_close(self, t=5.0):
        """After QUIT: read until the server closes (bounded)."""
        end = time.monotonic() + t
        while time.monotonic() < end:
            try:
                d = await asyncio.wait_for(self.r.read(65536), max(0.01, end - time.monotonic()))
            except (asyncio.TimeoutError, OSError):
                return False
            if not d:
                return True
        return False


def unstuff(body):
    if b"\r\n.." not in body and not body.startswith(b".."):
        return body
    lines = body.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b"..") else l for l in lines)


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


class Stats:
    def __init__(self):
        self.lat, self.sessions, self.errors, self.err_samples = {}, [], 0, []
        self.cmds = self.bytes = 0
        self.maildrop = None
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
                    cmds=self.cmds, bytes=self.bytes, maildrop=self.maildrop, per_client=self.per_client,
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
    return Pop3(r, w, a.io_timeout), w


async def close(w):
    try:
        w.close()
        await asyncio.wait_for(w.wait_closed(), 2)
    except Exception:
        pass


async def session(a, user, pw, st, rnd):
    t_s = time.perf_counter()
    c, w = await connect(a)
    try:
        await c.single(None)
        st.add("connect", time.perf_counter() - t_s)

        async def timed(name, coro):
            t = time.perf_counter()
            res = await coro
            st.add(name, time.perf_counter() - t)
            return res

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
        if not await c.wait_close():
            st.unclean_close += 1
    finally:
        await close(w)
    st.sessions.append(time.perf_counter() - t_s)
    return n


async def client(a, idx, users, st, deadline, budget):
    rnd = random.Random(a.seed * 100003 + idx)
    user, pw = users[idx % len(users)]
    done = 0
    while time.time() < deadline and budget[0] > 0:
        budget[0] -= 1
        try:
            st.maildrop = await session(a, user, pw, st, rnd)
            done += 1
        except (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError) as e:
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


def worker(a, users, ids, deadline, budget_n, conn):
    try:
        res = asyncio.run(worker_main(a, users, ids, deadline, [budget_n]))
    except BaseException as e:  # report, never hang the parent
        res = dict(lat={}, sessions=[], errors=1, err_samples=["worker: %r" % e], cmds=0, bytes=0, maildrop=None,
                   per_client={}, unclean_close=0, end=time.time())
    conn.send(res)
    conn.close()


def pct(v, f):
    v = sorted(v)
    return v[min(len(v) - 1, int(f * len(v)))] if v else None


def ms(x):
    return None if x is None else round(x * 1e3, 2)


def one_run(a, users, run_no):
    roots = [int(x) for x in a.server_pids.split()] if a.server_pids else []
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
                    results[k] = dict(lat={}, sessions=[], errors=1, err_samples=["worker %d died" % k], cmds=0,
                                      bytes=0, maildrop=None, per_client={}, unclean_close=0, end=time.time())
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
            results[k] = dict(lat={}, sessions=[], errors=1, err_samples=["worker %d: no result" % k], cmds=0,
                              bytes=0, maildrop=None, per_client={}, unclean_close=0, end=time.time())
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
        "run": run_no, "clients": a.clients, "procs": procs, "retr": a.retr, "duration_s": a.duration,
        "elapsed_s": round(el, 3), "sessions": len(sessions), "commands": cmds, "errors": errors,
        "maildrop_msgs": next((r["maildrop"] for r in results if r["maildrop"] is not None), None),
        "sessions_per_s": round(len(sessions) / el, 2), "cmds_per_s": round(cmds / el, 1),
        "retr_MB_per_s": round(nbytes / el / 1e6, 2),
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
def template_digests(d):
    out = {}
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        for name in os.listdir(p) if os.path.isdir(p) else []:
            with open(os.path.join(p, name), "rb") as f:
                data = f.read()
            if not data.endswith(b"\n"):
                data += b"\n"
            h = hashlib.sha256(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")).hexdigest()
            out[h] = out.get(h, 0) + 1
    return out


async def full_session(a, user, pw, want):
    """USER PASS STAT LIST UIDL RETR 1..n QUIT; returns (seconds, n, problems)."""
    problems = []
    t0 = time.perf_counter()
    c, w = await connect(a)
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
                h = hashlib.sha256(body).hexdigest()
                got[h] = got.get(h, 0) + 1
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
        miss = sum((want[h] - got.get(h, 0)) for h in want if want[h] > got.get(h, 0))
        extra = sum((got[h] - want.get(h, 0)) for h in got if got[h] > want.get(h, 0))
        problems.append("content differs from the template: %d template messages not served, %d served messages "
                        "not in the template" % (miss, extra))
    return dt, n, total, problems, uidls[:1]


def prewarm(a, users):
    want = template_digests(a.verify_dir) if a.verify_dir else None
    times, problems, ns, first_uidl = [], [], set(), None
    for user, pw in users:
        try:
            dt, n, total, p, u1 = asyncio.run(full_session(a, user, pw, want))
        except (ProtoError, OSError, asyncio.TimeoutError, ssl.SSLError, ValueError, IndexError) as e:
            problems.append("%s: %s: %s" % (user, type(e).__name__, e))
            continue
        times.append(dt)
        ns.add(n)
        first_uidl = first_uidl or (u1[0].decode() if u1 else None)
        problems.extend("%s: %s" % (user, x) for x in p[:3])
    res = {"users": len(users), "ok": len(times), "maildrop_msgs": sorted(ns),
           "verified": bool(want) and not problems, "template_msgs": sum(want.values()) if want else None,
           "first_session_p50_ms": ms(statistics.median(times)) if times else None,
           "first_session_min_ms": ms(min(times)) if times else None,
           "first_session_max_ms": ms(max(times)) if times else None,
           "first_session_total_s": round(sum(times), 2), "uidl_sample": first_uidl,
           "problems": problems[:10], "n_problems": len(problems)}
    return res


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
    want = {}
    for sub in ("new", "cur"):
        p = os.path.join(tpl_dir, sub)
        for name in os.listdir(p) if os.path.isdir(p) else []:
            with open(os.path.join(p, name), "rb") as f:
                data = f.read()
            if not data.endswith(b"\n"):
                data += b"\n"
            t = tail(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
            if t is not None:
                h = hashlib.sha256(t).hexdigest()
                want[h] = want.get(h, 0) + 1
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
        h = hashlib.sha256(t).hexdigest()
        got[h] = got.get(h, 0) + 1
    if got != want and not problems:
        miss = sum((want[h] - got.get(h, 0)) for h in want if want[h] > got.get(h, 0))
        extra = sum((got[h] - want.get(h, 0)) for h in got if got[h] > want.get(h, 0))
        problems.append("%d template messages not fetched, %d fetched messages not in the template" % (miss, extra))
    return {"bsmtp_msgs": n, "template_msgs": sum(want.values()), "content_ok": not problems and got == want,
            "problems": problems[:5]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("POP3_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("POP3_PORT", 110)))
    ap.add_argument("--tls", action="store_true", help="implicit TLS (POP3S), certificate not verified")
    ap.add_argument("--user", default=os.environ.get("POP3_USER", "john@example.com"))
    ap.add_argument("--password", default=os.environ.get("POP3_PASS", "john123"))
    ap.add_argument("--userfile", help="lines 'user password'; client i uses line i mod lines")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--procs", type=int, default=1, help="client processes (clients are spread over them)")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--max-sessions", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--retr", type=int, default=20)
    ap.add_argument("--io-timeout", type=float, default=60.0)
    ap.add_argument("--server-pids", default=os.environ.get("SERVER_PIDS", ""))
    ap.add_argument("--sample-every", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prewarm", action="store_true", help="one full download per user, sequentially, timed")
    ap.add_argument("--verify-dir", help="with --prewarm: Maildir every maildrop must be a copy of")
    ap.add_argument("--json-out", help="append one JSON object per run to this file")
    ap.add_argument("--tag", default="", help="free text stored in the JSON ('server' field)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tree-stats", action="store_true",
                    help="print the --server-pids trees' nproc, rss_kb, pss_kb, cpu_s and the machine's busy "
                         "CPU seconds (sys_busy_s) as JSON and exit")
    ap.add_argument("--check-bsmtp", metavar="FILE",
                    help="with --verify-dir: check that the BSMTP file fetchmail wrote holds exactly the template's "
                         "messages; print JSON and exit")
    a = ap.parse_args()
    if a.tree_stats:
        r = proc_tree_stats([int(x) for x in a.server_pids.split()])
        if r is not None:
            r["sys_busy_s"] = sys_busy_s()
        print(json.dumps(r))
        return
    if a.check_bsmtp:
        if not a.verify_dir:
            ap.error("--check-bsmtp needs --verify-dir")
        print(json.dumps(check_bsmtp(a.check_bsmtp, a.verify_dir)))
        return
    if not (1 <= a.clients <= 5000 and 0 < a.duration <= 600 and 1 <= a.runs <= 20 and 1 <= a.procs <= 64
            and 0 <= a.retr <= 10000 and 0.05 <= a.sample_every <= 10):
        ap.error("clients 1..5000, duration 0..600, runs 1..20, procs 1..64, retr 0..10000")
    if a.userfile:
        users = [tuple(l.split(None, 1)) for l in (x.strip() for x in open(a.userfile)) if l and not l.startswith("#")]
    else:
        users = [(a.user, a.password)]
    if a.prewarm:
        r = prewarm(a, users)
        r.update(tool="pop3_prewarm", server=a.tag, host=a.host, port=a.port, tls=a.tls)
        if a.json_out:
            with open(a.json_out, "a") as f:
                f.write(json.dumps(r) + "\n")
        print("pop3_prewarm: %s:%d users=%d ok=%d msgs=%s verified=%s first_session p50=%sms (%s..%s) total=%ss "
              "problems=%d%s" % (a.host, a.port, r["users"], r["ok"], r["maildrop_msgs"], r["verified"],
                                 r["first_session_p50_ms"], r["first_session_min_ms"], r["first_session_max_ms"],
                                 r["first_session_total_s"], r["n_problems"],
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
                f.write(json.dumps(dict(r, tool="pop3_load", server=a.tag, host=a.host, port=a.port, tls=a.tls)) + "\n")

    def med(k):
        v = [r[k] for r in runs if r.get(k) is not None]
        return round(statistics.median(v), 2) if v else None
    extra = ""
    if a.server_pids:
        extra = " server_cpu_s=%s peak_rss=%sMB peak_pss=%sMB" % (
            med("server_cpu_s"), max(r.get("server_peak_rss_mb", 0) for r in runs),
            max(r.get("server_peak_pss_mb", 0) for r in runs))
    print("pop3_load: %s:%d tls=%s clients=%d procs=%d runs=%d dur=%ss maildrop=%s msgs retr=%d "
          "sessions/s=%s cmds/s=%s retr_MB/s=%s session_p50/p99=%s/%sms cmd_p50/p99=%s/%sms errors=%d "
          "client_cpu_s=%s%s" % (
              a.host, a.port, a.tls, a.clients, runs[-1]["procs"], a.runs, a.duration, runs[-1]["maildrop_msgs"],
              a.retr, med("sessions_per_s"), med("cmds_per_s"), med("retr_MB_per_s"), med("session_p50_ms"),
              med("session_p99_ms"), med("cmd_p50_ms"), med("cmd_p99_ms"), sum(r["errors"] for r in runs),
              med("client_cpu_s"), extra), flush=True)


if __name__ == "__main__":
    main()
