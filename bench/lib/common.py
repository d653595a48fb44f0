#!/usr/bin/env python3
"""common.py -- what the bench/lib Python tools share (standard library only).

Imported by imap_load.py, pop3_load.py, idle_mem.py and the *_table.py
scripts. They are run as scripts, and each puts its own directory (bench/lib)
first on sys.path, so `import common` finds this file wherever they are run
from. Sections:

  * /proc sampling: the machine's busy CPU time, and CPU time, process count
    and summed RSS/PSS of a server's process tree(s);
  * the load generators' frame (imap_load.py, pop3_load.py): --clients
    clients spread over --procs forked processes, each looping over the
    protocol's session until --duration expires, the sampling of the server
    tree meanwhile, the per-run JSON, the prewarm loop, the command line;
  * Maildir digests for the content checks (a multiset of SHA-256 digests);
  * Markdown helpers for imap_table.py, pop3_table.py and smtp_table.py;
  * a small command line for the run.sh scripts (see cli() at the end):
      common.py fields FILE key[:type]=value...   the last JSON line of FILE plus fields
      common.py meta FILE key[:type]=value...     write meta.json (plus "host")
      common.py session-line PRIMARY [machine]    one session run's JSON (stdin) as a line
      common.py pull-record key[:type]=value...   one mbsync/fetchmail pull as JSON
      common.py pull-line CLIENT                  that JSON (stdin) as a line
      common.py tree-pids PID...                  the pids of the process tree(s)
      common.py pin CPU|all PID...                the trees' threads on that CPU / on all
      common.py cg-join NAME PID...               the trees into cpuacct cgroup pp-bench-NAME
    type is str (the default), int (the value "null" gives null), float,
    bool (1 or 0) or json.
"""
import argparse
import asyncio
import glob
import hashlib
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import ssl
import statistics
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ /proc sampling
def sys_busy_s():
    """the machine's busy CPU seconds so far (/proc/stat's cpu line but idle and iowait)"""
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return (sum(v) - v[3] - v[4]) / CLK


def _proc_stats():
    """pid -> the fields of /proc/PID/stat after the command name, and ppid -> [pid]"""
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
    return m, kids


def tree_pids(roots, m=None, kids=None):
    """the live pids of the process trees below roots (roots included)"""
    if m is None:
        m, kids = _proc_stats()
    st, pids = list(roots), []
    while st:
        p = st.pop()
        if p in m:
            pids.append(p)
            st.extend(kids.get(p, []))
    return pids


def thread_cpu_ns(roots):
    """{(pid, tid): CPU ns} of every live thread of the trees below roots,
    from /proc/PID/task/TID/schedstat"""
    out = {}
    for p in tree_pids(roots):
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    out[(p, int(t))] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def tree_cpu_ns(roots):
    """CPU time in ns of every live thread of the trees below roots, from
    /proc/PID/task/TID/schedstat: exact where /proc's stat counts 10 ms
    ticks, for short operations on processes that stay alive throughout
    (what ended in between is not counted)"""
    return sum(thread_cpu_ns(roots).values())


def cpu_ns_between(before, after):
    """CPU ns the threads used from `before` to `after` (two thread_cpu_ns
    results; a thread born in between counts whole), or None if a thread
    of `before` ended in between (its time is lost: use the ticks)"""
    if not set(before) <= set(after):
        return None
    return sum(after.values()) - sum(before.values())


CPUACCT = "/sys/fs/cgroup/cpuacct"


def cg_join(name, roots):
    """every process of the trees below roots into the cgroup-v1 cpuacct
    group pp-bench-NAME (made if missing; processes they start later are
    born in it), so that its cpuacct.usage counts the tree's CPU in ns,
    processes that end in between included (Dovecot's per-connection
    processes exit at QUIT: /proc's reaped-children figures count only
    10 ms ticks). False where there is no writable cpuacct hierarchy."""
    d = f"{CPUACCT}/pp-bench-{name}"
    try:
        os.makedirs(d, exist_ok=True)
        for p in tree_pids(roots):
            try:
                with open(f"{d}/cgroup.procs", "w") as f:
                    f.write(str(p))
            except ProcessLookupError:
                pass
        return True
    except OSError:
        return False


def cg_cpu_ns(root):
    """cpuacct.usage (ns) of root's group if cg_join put it in one, else None"""
    try:
        for line in open(f"/proc/{root}/cgroup"):
            _, ctl, path = line.rstrip("\n").split(":", 2)
            if "cpuacct" in ctl.split(",") and path.startswith("/pp-bench-"):
                return int(open(f"{CPUACCT}{path}/cpuacct.usage").read())
    except (OSError, ValueError):
        pass
    return None


def set_tree_affinity(roots, cpus):
    """every thread of the trees below roots on `cpus` (processes they start
    later inherit it). A round trip's server CPU on a small VM is mostly the
    cross-CPU wake-up of whichever side waits (a hypercall when the other
    vCPU idles), and how often that happens depends on where the scheduler
    put client and server: with both on one CPU it is the servers' own work
    that is measured."""
    for p in tree_pids(roots):
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(t), cpus)
        except OSError:
            pass


def proc_tree_stats(roots, comm=False):
    """nproc, summed RSS/PSS (KiB) and CPU seconds (+ reaped children of the roots; user_s: the
    part in user space) of the trees;
    with comm, also "procs": how many processes of each name. None without roots."""
    if not roots:
        return None
    m, kids = _proc_stats()
    pids = tree_pids(roots, m, kids)
    rss = pss = 0
    cpu = user = 0.0
    names = {}
    for p in pids:
        r = m[p]
        cpu += (int(r[11]) + int(r[12])) / CLK          # utime+stime of live procs
        user += int(r[11]) / CLK
        if p in roots:
            cpu += (int(r[13]) + int(r[14])) / CLK      # + reaped children (cutime+cstime)
            user += int(r[13]) / CLK
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
            if comm:
                n = open(f"/proc/{p}/comm").read().strip()
                names[n] = names.get(n, 0) + 1
        except OSError:
            pass
    res = {"nproc": len(pids), "rss_kb": rss, "pss_kb": pss, "cpu_s": cpu, "user_s": user}
    if len(roots) == 1:
        res["cg_cpu_ns"] = cg_cpu_ns(roots[0])
    if comm:
        res["procs"] = names
    return res


# ------------------------------------------------------------------ load generators: protocol side
class ProtoError(Exception):
    pass


class Conn:
    """a client connection's reader, writer, I/O timeout and read buffer"""

    def __init__(self, r, w, to):
        self.r, self.w, self.to = r, w, to
        self.buf = bytearray()

    async def _fill(self):
        d = await asyncio.wait_for(self.r.read(262144), self.to)
        if not d:
            raise ProtoError("connection closed by server")
        self.buf += d

    async def wait_close(self, t=5.0):
        """after the LOGOUT / QUIT reply: read until the server closes (bounded)."""
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
    """an IMAP quoted string"""
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def tls_ctx(a):
    if not a.tls:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(a, cls):
    r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port, ssl=tls_ctx(a), limit=1 << 22),
                                  a.io_timeout)
    return cls(r, w, a.io_timeout), w


async def close(w):
    try:
        w.close()
        await asyncio.wait_for(w.wait_closed(), 2)
    except Exception:
        pass


async def timed_session(a, cls, st, commands):
    """one session of the load, timed as a whole: connect and the greeting (cls.greet, timed as
    "connect"), commands(c, timed) (the protocol's commands, each timed by timed(name, awaitable); it
    returns the mailbox's message count), then the wait for the server's close after the last reply"""
    t_s = time.perf_counter()
    c, w = await connect(a, cls)
    try:
        await c.greet()
        st.add("connect", time.perf_counter() - t_s)

        async def timed(name, aw):
            t = time.perf_counter()
            res = await aw
            st.add(name, time.perf_counter() - t)
            return res
        n = await commands(c, timed)
        if not await c.wait_close():
            st.unclean_close += 1
    finally:
        await close(w)
    st.sessions.append(time.perf_counter() - t_s)
    return n


# ------------------------------------------------------------------ load generators: the load
class Load:
    """what a load generator plugs into the frame: its tool name (the JSON's "tool" and the final
    line), session(a, user, pw, st, rnd) (returns the mailbox's message count), the exceptions
    that fail one session, the JSON's names for the message count ("<box>_msgs"), the per-session
    parameter (an attribute of the arguments, e.g. "bodies") and the bytes rate ("<mb>_MB_per_s"),
    and warmup(a, users), run before each run's measurement (or None)."""

    def __init__(self, tool, session, errors, box, param, mb, warmup=None):
        self.tool, self.session, self.errors = tool, session, errors
        self.box, self.param, self.mb, self.warmup = box, param, mb, warmup


class Stats:
    def __init__(self):
        self.lat, self.sessions, self.errors, self.err_samples = {}, [], 0, []
        self.cmds = self.bytes = 0
        self.msgs = None
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
                    cmds=self.cmds, bytes=self.bytes, msgs=self.msgs, per_client=self.per_client,
                    unclean_close=self.unclean_close, end=time.time())


def empty_result(why):
    return dict(lat={}, sessions=[], errors=1, err_samples=[why], cmds=0, bytes=0, msgs=None, per_client={},
                unclean_close=0, end=time.time())


async def client(a, load, idx, users, st, deadline, budget):
    rnd = random.Random(a.seed * 100003 + idx)
    user, pw = users[idx % len(users)]
    done = 0
    while time.time() < deadline and budget[0] > 0:
        budget[0] -= 1
        try:
            st.msgs = await load.session(a, user, pw, st, rnd)
            done += 1
        except load.errors as e:
            st.err(e)
            await asyncio.sleep(0.1)
    st.per_client[idx] = done


async def worker_main(a, load, users, ids, deadline, budget):
    st = Stats()
    tasks = [asyncio.create_task(client(a, load, i, users, st, deadline, budget)) for i in ids]
    hard = deadline + a.io_timeout + 10
    while not all(t.done() for t in tasks) and time.time() < hard:
        await asyncio.sleep(0.1)
    for t in tasks:
        if not t.done():
            t.cancel()
            st.err(RuntimeError("client still busy %.0f s after the deadline: cancelled" % (a.io_timeout + 10)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return st.as_dict()


def worker(a, load, users, ids, deadline, budget_n, conn):
    try:
        res = asyncio.run(worker_main(a, load, users, ids, deadline, [budget_n]))
    except BaseException as e:  # report, never hang the parent
        res = empty_result("worker: %r" % e)
    conn.send(res)
    conn.close()


def pct(v, f):
    v = sorted(v)
    return v[min(len(v) - 1, int(f * len(v)))] if v else None


def ms(x):
    return None if x is None else round(x * 1e3, 2)


def one_run(a, load, users, run_no):
    roots = [int(x) for x in a.server_pids.split()] if a.server_pids else []
    if load.warmup:
        load.warmup(a, users)
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
        p = ctx.Process(target=worker, args=(a, load, users, ids, deadline, budget, wr), daemon=True)
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
        "run": run_no, "clients": a.clients, "procs": procs, load.param: getattr(a, load.param),
        "duration_s": a.duration, "elapsed_s": round(el, 3), "sessions": len(sessions), "commands": cmds,
        "errors": errors, load.box + "_msgs": next((r["msgs"] for r in results if r["msgs"] is not None), None),
        "sessions_per_s": round(len(sessions) / el, 2), "cmds_per_s": round(cmds / el, 1),
        load.mb + "_MB_per_s": round(nbytes / el / 1e6, 2),
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


def append_json(path, obj):
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def load_main(a, users, load):
    """--runs runs of the load, one JSON object per run (--json-out), then the final line of medians"""
    runs = []
    for i in range(1, a.runs + 1):
        r = one_run(a, load, users, i)
        runs.append(r)
        if not a.quiet:
            print("run %d/%d: %s" % (i, a.runs, json.dumps(r)), flush=True)
        if a.json_out:
            append_json(a.json_out, dict(r, tool=load.tool, server=a.tag, host=a.host, port=a.port, tls=a.tls))

    def med(k):
        v = [r[k] for r in runs if r.get(k) is not None]
        return round(statistics.median(v), 2) if v else None
    extra = ""
    if a.server_pids:
        extra = " server_cpu_s=%s peak_rss=%sMB peak_pss=%sMB" % (
            med("server_cpu_s"), max(r.get("server_peak_rss_mb", 0) for r in runs),
            max(r.get("server_peak_pss_mb", 0) for r in runs))
    print("%s: %s:%d tls=%s clients=%d procs=%d runs=%d dur=%ss %s=%s msgs %s=%d "
          "sessions/s=%s cmds/s=%s %s_MB/s=%s session_p50/p99=%s/%sms cmd_p50/p99=%s/%sms errors=%d "
          "client_cpu_s=%s%s" % (
              load.tool, a.host, a.port, a.tls, a.clients, runs[-1]["procs"], a.runs, a.duration, load.box,
              runs[-1][load.box + "_msgs"], load.param, getattr(a, load.param), med("sessions_per_s"),
              med("cmds_per_s"), load.mb, med(load.mb + "_MB_per_s"), med("session_p50_ms"), med("session_p99_ms"),
              med("cmd_p50_ms"), med("cmd_p99_ms"), sum(r["errors"] for r in runs), med("client_cpu_s"), extra),
          flush=True)


# ------------------------------------------------------------------ load generators: prewarm
def prewarm_sessions(a, users, full_session, want, errors):
    """full_session(a, user, pw, want) for every user, in order: (seconds, message counts, problems,
    [what each session returned after (seconds, n, total, problems)])"""
    times, problems, ns, extras = [], [], set(), []
    for user, pw in users:
        try:
            dt, n, _total, p, *extra = asyncio.run(full_session(a, user, pw, want))
        except errors as e:
            problems.append("%s: %s: %s" % (user, type(e).__name__, e))
            continue
        times.append(dt)
        ns.add(n)
        extras.append(extra)
        problems.extend("%s: %s" % (user, x) for x in p[:3])
    return times, ns, problems, extras


def prewarm_result(users, times, ns, problems, want, box, **extra):
    return dict({"users": len(users), "ok": len(times), box + "_msgs": sorted(ns),
                 "verified": bool(want) and not problems, "template_msgs": sum(want.values()) if want else None,
                 "first_session_p50_ms": ms(statistics.median(times)) if times else None,
                 "first_session_min_ms": ms(min(times)) if times else None,
                 "first_session_max_ms": ms(max(times)) if times else None},
                **extra, problems=problems[:10], n_problems=len(problems))


def prewarm_main(a, r, tool, box, extra=""):
    """record (--json-out) and print a prewarm result; exit 0 if every user's session was fine"""
    r.update(tool=tool, server=a.tag, host=a.host, port=a.port, tls=a.tls)
    if a.json_out:
        append_json(a.json_out, r)
    print("%s: %s:%d users=%d ok=%d msgs=%s verified=%s first_session p50=%sms (%s..%s)%s problems=%d%s" % (
        tool, a.host, a.port, r["users"], r["ok"], r[box + "_msgs"], r["verified"], r["first_session_p50_ms"],
        r["first_session_min_ms"], r["first_session_max_ms"], extra, r["n_problems"],
        "".join("\n  " + p for p in r["problems"])), flush=True)
    sys.exit(0 if r["n_problems"] == 0 and r["ok"] == r["users"] else 1)


# ------------------------------------------------------------------ load generators: command line
def add_server_args(ap, proto, port, tls_name):
    """--host, --port, --tls, --user, --password (defaults from PROTO_HOST etc.), --userfile"""
    env = proto.upper()
    ap.add_argument("--host", default=os.environ.get(env + "_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get(env + "_PORT", port)))
    ap.add_argument("--tls", action="store_true", help="implicit TLS (%s), certificate not verified" % tls_name)
    ap.add_argument("--user", default=os.environ.get(env + "_USER", "john@example.com"))
    ap.add_argument("--password", default=os.environ.get(env + "_PASS", "john123"))
    ap.add_argument("--userfile", help="lines 'user password'; client i uses line i mod lines")


def add_load_args(ap):
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--procs", type=int, default=1, help="client processes (clients are spread over them)")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--max-sessions", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)


def add_run_args(ap):
    ap.add_argument("--io-timeout", type=float, default=60.0)
    ap.add_argument("--server-pids", default=os.environ.get("SERVER_PIDS", ""))
    ap.add_argument("--sample-every", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prewarm", action="store_true", help="one full download per user, sequentially, timed")


def add_output_args(ap):
    ap.add_argument("--json-out", help="append one JSON object per run to this file")
    ap.add_argument("--tag", default="", help="free text stored in the JSON ('server' field)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tree-stats", action="store_true",
                    help="print the --server-pids trees' nproc, rss_kb, pss_kb, cpu_s and the machine's busy "
                         "CPU seconds (sys_busy_s) as JSON and exit")


def check_load_args(ap, a, ok, what):
    """the bounds every load run keeps, and the protocol's own (ok, described by what)"""
    if not (ok and 1 <= a.clients <= 5000 and 0 < a.duration <= 600 and 1 <= a.runs <= 20 and 1 <= a.procs <= 64
            and 0.05 <= a.sample_every <= 10):
        ap.error("clients 1..5000, duration 0..600, runs 1..20, procs 1..64, " + what)


def tool_main(ap, load, check, valid, prewarm):
    """what a load generator does with its arguments (ap, the parser): --tree-stats; its content check
    (check: the option's name, e.g. "check_maildir", and the function of the option's value and
    --verify-dir whose result is printed as JSON); else, when valid(a) says that the protocol's own
    bounds hold (a pair: they hold, their description), with the users, --prewarm (prewarm(a, users))
    or the load"""
    a = ap.parse_args()
    if a.tree_stats:
        return tree_stats_cmd(a)
    opt, fn = check
    if getattr(a, opt):
        if not a.verify_dir:
            ap.error("--%s needs --verify-dir" % opt.replace("_", "-"))
        print(json.dumps(fn(getattr(a, opt), a.verify_dir)))
        return
    check_load_args(ap, a, *valid(a))
    users = read_users(a)
    if a.prewarm:
        prewarm(a, users)
    load_main(a, users, load)


def tree_stats_cmd(a):
    """--tree-stats: one sample of the --server-pids trees and the machine's busy CPU, as JSON"""
    r = proc_tree_stats([int(x) for x in a.server_pids.split()])
    if r is not None:
        r["sys_busy_s"] = sys_busy_s()
    print(json.dumps(r))


def read_users(a):
    """[(user, password)] from --userfile ("user password" lines, # comments), else --user/--password"""
    if a.userfile:
        return [tuple(l.split(None, 1)) for l in (x.strip() for x in open(a.userfile)) if l and not l.startswith("#")]
    return [(a.user, a.password)]


# ------------------------------------------------------------------ content checks
def crlf(data):
    """a Maildir file as a server sends it: CRLF line endings, ending in a line break"""
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def add_digest(counts, data):
    h = hashlib.sha256(data).hexdigest()
    counts[h] = counts.get(h, 0) + 1


def maildir_digests(d, norm):
    """SHA-256 digest -> count of norm(file) over the files of Maildir d (new/ and cur/), and how
    many there were; a file for which norm gives None is left out"""
    out, n = {}, 0
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        for name in os.listdir(p) if os.path.isdir(p) else []:
            with open(os.path.join(p, name), "rb") as f:
                data = norm(f.read())
            if data is not None:
                add_digest(out, data)
                n += 1
    return out, n


def multiset_diff(want, got):
    """(how many of want are missing from got, how many of got are not in want)"""
    miss = sum((want[h] - got.get(h, 0)) for h in want if want[h] > got.get(h, 0))
    extra = sum((got[h] - want.get(h, 0)) for h in got if got[h] > want.get(h, 0))
    return miss, extra


# ------------------------------------------------------------------ Markdown tables (*_table.py)
DOVECOT_SIDE = ("dovecot", "pigeonpost")
NAME = {"dovecot": "Dovecot", "pigeonpost": "pigeonpost", "postfix": "Postfix"}


def load_jsonl(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except OSError:
        return []


def load_meta(d):
    p = os.path.join(d, "meta.json")
    return json.load(open(p)) if os.path.exists(p) else {}


def load_sessions(d, prefix="sessions_", servers=DOVECOT_SIDE):
    """{(server, clients): rows} from D/<prefix><server>_c<clients>.jsonl, and the sorted client counts"""
    sess = {}
    for f in sorted(glob.glob(os.path.join(d, prefix + "*_c*.jsonl"))):
        m = re.match(re.escape(prefix) + r"(%s)_c(\d+)\.jsonl$" % "|".join(servers), os.path.basename(f))
        if m:
            sess[(m.group(1), int(m.group(2)))] = load_jsonl(f)
    return sess, sorted({c for _, c in sess})


def vals(rows, k):
    return [r[k] for r in rows if r.get(k) is not None]


def med(rows, k):
    v = vals(rows, k)
    return statistics.median(v) if v else None


def fmt(x, nd=0):
    return "–" if x is None else f"{x:,.{nd}f}"


def rng(v, nd=0, nrows=None, failed="failed"):
    """median (min..max) of v; with nrows (the runs there were), "failed" or how many failed"""
    if not v:
        return "failed" if nrows else "–"
    s = fmt(statistics.median(v), nd)
    if len(v) > 1:
        s += f" ({fmt(min(v), nd)}..{fmt(max(v), nd)})"
    if nrows and nrows > len(v):
        s += f" [{nrows - len(v)} {failed}]"
    return s


def ratio(a, b):
    return None if not a or b is None else b / a


def rfmt(r):
    return "–" if r is None else f"**{r:.2f}×**"


def per_session_cpu_ms(rows):
    v = [r["server_cpu_s"] * 1000 / r["sessions"] for r in rows if r.get("server_cpu_s") is not None and r.get("sessions")]
    return statistics.median(v) if v else None


def other_cpu(rows, client_key):
    """median busy CPU seconds of the machine during a pull that were neither the server's nor the client's"""
    v = [r["sys_busy_cpu_s"] - r["server_cpu_s"] - r[client_key] for r in rows
         if None not in (r.get("sys_busy_cpu_s"), r.get("server_cpu_s"), r.get(client_key))]
    return statistics.median(v) if v else None


def session_row(sess, c, ok_rows, key, nd):
    """the session runs at c clients: Dovecot's and pigeonpost's, the ratio pigeonpost / Dovecot of the
    medians of key (None unless every run counts: ok_rows), and the cells both session tables have:
    key's median (min..max) of each and the ratio, session p50 / p99 of each, Dovecot's tree peak
    RSS / PSS, pigeonpost's exact peak RSS (VmHWM, else the sampled one), the errors of each"""
    dv, pp = sess.get(("dovecot", c), []), sess.get(("pigeonpost", c), [])
    a, b = med(ok_rows(dv), key), med(ok_rows(pp), key)
    r = ratio(a, b) if len(ok_rows(dv)) == len(dv) and len(ok_rows(pp)) == len(pp) else None
    dmem = (f"{fmt(max(vals(dv, 'server_peak_rss_mb')))} / {fmt(max(vals(dv, 'server_peak_pss_mb')))}"
            if vals(dv, "server_peak_rss_mb") else "–")
    hwm = vals(pp, "pp_vmhwm_kb")
    pmem = fmt(max(hwm) / 1024, 1) if hwm else (fmt(max(vals(pp, "server_peak_rss_mb")), 1) if vals(pp, "server_peak_rss_mb") else "–")
    lat = lambda rows: "–" if not rows else f"{fmt(med(rows, 'session_p50_ms'), 1)} / {fmt(med(rows, 'session_p99_ms'), 1)}"
    errs = lambda rows: "–" if not rows else str(sum(r.get("errors", 0) for r in rows))
    return dv, pp, r, dict(rate=f"{rng(vals(ok_rows(dv), key), nd, len(dv))} | {rng(vals(ok_rows(pp), key), nd, len(pp))} | "
                                f"{rfmt(r)}",
                           lat=f"{lat(dv)} | {lat(pp)}", dmem=dmem, pmem=pmem, errs=f"{errs(dv)} / {errs(pp)}")


def cpu_rows(sess, concs, present, cmds):
    """where each session run's CPU went, per client count and server: (clients, server, its runs,
    "server | client | machine busy | other" cells (medians, % of all CPUs), the median per-command
    p50 latencies of cmds)"""
    for c in concs:
        for s in present:
            rows = sess.get((s, c), [])
            if rows:
                yield (c, s, rows) + cpu_cells(rows, cmds)


def cpu_cells(rows, cmds):
    """where a server's session runs' CPU went, as "| server | client | machine busy | other |" cells,
    and the median per-command p50 latencies of cmds"""
    def share(k):
        v = [r[k] / r.get("cpu_window_s", r["elapsed_s"]) / r["sys_cpus"] * 100
             for r in rows if r.get(k) is not None and r.get("elapsed_s")]
        return f"{statistics.median(v):.0f} %" if v else "–"
    # busy CPU that is neither the server's nor the load generator's (kernel work
    # charged to nobody, and anything else running on the machine, e.g. a build)
    other = [(r["sys_busy_cpu_s"] - r["server_cpu_s"] - r["client_cpu_s"]) / r.get("cpu_window_s", r["elapsed_s"])
             / r["sys_cpus"] * 100 for r in rows
             if None not in (r.get("sys_busy_cpu_s"), r.get("server_cpu_s"), r.get("client_cpu_s")) and r.get("elapsed_s")]
    other_s = f"{statistics.median(other):.0f} %" if other else "–"
    pc = []
    for k in cmds:
        v = [r["per_cmd"][k]["p50_ms"] for r in rows if k in r.get("per_cmd", {})]
        pc.append(fmt(statistics.median(v), 2) if v else "–")
    return f"{share('server_cpu_s')} | {share('client_cpu_s')} | {share('sys_busy_cpu_s')} | {other_s}", pc


def pull_row(label, rows, ok, client_key):
    """print one row of the mbsync / fetchmail table (rows: server -> that mode's pulls, ok: a pull
    that counts); return the ratio pigeonpost / Dovecot of the median rates, None if a pull failed"""
    dv, pp = [r for r in rows["dovecot"] if ok(r)], [r for r in rows["pigeonpost"] if ok(r)]
    a, b = med(dv, "rate"), med(pp, "rate")
    r = ratio(a, b) if len(dv) == len(rows["dovecot"]) and len(pp) == len(rows["pigeonpost"]) else None
    nruns = max(len(x) for x in rows.values())
    print(f"| {label} | {nruns} | {rng(vals(dv, 'secs'), 2, len(rows['dovecot']))} | "
          f"{rng(vals(pp, 'secs'), 2, len(rows['pigeonpost']))} | {rng(vals(dv, 'rate'), 0, len(rows['dovecot']))} | "
          f"{rng(vals(pp, 'rate'), 0, len(rows['pigeonpost']))} | {rfmt(r)} | "
          f"{cpu_cell(dv)} / {cpu_cell(pp)} | "
          f"{fmt(med(dv, client_key), 2)} / {fmt(med(pp, client_key), 2)} | "
          f"{fmt(other_cpu(dv, client_key), 2)} / {fmt(other_cpu(pp, client_key), 2)} |")
    return r


def cpu_cell(rows):
    """the median server CPU of pulls: ms-exact where the cgroup counted it,
    else in /proc's 10 ms ticks (marked)"""
    if rows and all(r.get("server_cpu_source") == "cgroup" for r in rows):
        return fmt(med(rows, "server_cpu_s"), 3)
    return fmt(med(rows, "server_cpu_s"), 2) + (" *ticks*" if rows else "")


def pull_cpu_ratio(rows, ok):
    """pigeonpost's server CPU per pull / Dovecot's, from the CPU summed over
    each side's runs (where a pull's CPU is counted in 10 ms ticks, the
    median of such counts moves the ratio by a tenth per tick, their sum
    over ten runs by a hundredth); None if a pull failed or a side used none"""
    dv, pp = [r for r in rows["dovecot"] if ok(r)], [r for r in rows["pigeonpost"] if ok(r)]
    if len(dv) != len(rows["dovecot"]) or len(pp) != len(rows["pigeonpost"]) or not dv or not pp:
        return None
    a = sum(r["server_cpu_s"] for r in dv) / len(dv)
    b = sum(r["server_cpu_s"] for r in pp) / len(pp)
    return b / a if a else None


def prewarm_table(prewarm, present, noun, verified_text):
    """the first-session table: per server, how many of its mailboxes/maildrops (noun) were fine, the
    first session's p50 (min..max), and the content check"""
    print(f"| server | {noun} | first session p50 (min..max) ms | content served |")
    print("|---|---:|---:|---|")
    for s in present:
        r = prewarm.get(s)
        if not r:
            continue
        chk = (verified_text if r.get("verified")
               else f"**{r.get('n_problems')} problem(s)**: " + "; ".join(r.get("problems", [])[:2]))
        print(f"| {NAME[s]} | {r.get('ok')}/{r.get('users')} | {fmt(r.get('first_session_p50_ms'), 0)} "
              f"({fmt(r.get('first_session_min_ms'), 0)}..{fmt(r.get('first_session_max_ms'), 0)}) | {chk} |")
    print()


def print_targets(targets):
    """targets: (label, value, goal, ">=" for a ratio to Dovecot, "<=" for KiB, "<=x" for a cost ratio
    (pigeonpost's CPU / Dovecot's) at most goal, "<=abs" for a plain figure (its unit in the label))"""
    for label, r, goal, op in targets:
        if op == "<=x":
            verdict = "n/a (a run failed)" if r is None else ("met" if r <= goal else "NOT met")
            print(f"- target, {label}: pigeonpost ≤ {goal}× Dovecot's: {verdict} ({'–' if r is None else f'{r:.2f}×'})")
        elif op == ">=":
            verdict = "n/a (a run failed)" if r is None else ("met" if r >= goal else "NOT met")
            print(f"- target, {label}: pigeonpost ≥ {goal}× Dovecot: {verdict} ({'–' if r is None else f'{r:.2f}×'})")
        elif op == "<=abs":
            verdict = "n/a (a run failed)" if r is None else ("met" if r <= goal else "NOT met")
            print(f"- target, {label}: pigeonpost ≤ {goal}: {verdict} ({'–' if r is None else f'{r:.1f}'})")
        else:
            verdict = "n/a (a run failed)" if r is None else ("met" if r <= goal else "NOT met")
            print(f"- target, {label}: pigeonpost ≤ {goal} KiB: {verdict} ({'–' if r is None else f'{r:.1f} KiB'})")


def session_warnings(sess, last_cmd):
    """a line for every session run with failed sessions or unclean closes (after last_cmd's reply)"""
    for (s, c), rows in sorted(sess.items()):
        for r in rows:
            if r.get("errors"):
                print(f"- WARNING: {NAME[s]}, {c} client(s), run {r.get('run')}: {r['errors']} failed sessions, e.g. "
                      + "; ".join(r.get("error_samples", [])[:2]))
            if r.get("unclean_close"):
                print(f"- note: {NAME[s]}, {c} client(s), run {r.get('run')}: {r['unclean_close']} sessions where the "
                      f"server did not close the connection within 5 s of the {last_cmd} reply")


# ------------------------------------------------------------------ command line for the run.sh scripts
def typed_fields(args):
    """key[:type]=value arguments as a dict, in order (see the module's doc string)"""
    out = {}
    for arg in args:
        key, value = arg.split("=", 1)
        key, _, kind = key.partition(":")
        if kind == "int":
            out[key] = None if value == "null" else int(value)
        elif kind == "float":
            out[key] = float(value)
        elif kind == "bool":
            out[key] = value == "1"
        elif kind == "json":
            out[key] = json.loads(value or "null")
        else:
            out[key] = value
    return out


def children_cpu(t):
    """bash `times`, second line: children's user and system time, e.g. "0m1.234s 0m0.567s" """
    lines = t.strip().splitlines()
    v = re.findall(r"(\d+)m([\d.]+)s", lines[1]) if len(lines) > 1 else []
    return sum(int(m) * 60 + float(x) for m, x in v) if v else None


def pull_record(f):
    """one pull of a client (mbsync, fetchmail) as JSON. f: the record's own fields first (server,
    mode, run, rc, expected, ...; msgs, else the content check's count), then client (its name), t0
    and t1 (the pull's start and end, s), tree0 and tree1 (--tree-stats of the server before and
    after, JSON), times0 and times1 (bash `times` before and after: the client is the only child in
    between), busy0, busy1 and clk (the machine's busy jiffies before and after, and clock ticks per
    second), check (the content check, JSON or null) and no_check (its problems without one)."""
    secs = float(f.pop("t1")) - float(f.pop("t0"))
    c0, c1 = f.pop("tree0"), f.pop("tree1")
    f0, f1 = children_cpu(f.pop("times0")), children_cpu(f.pop("times1"))
    busy = (int(f.pop("busy1")) - int(f.pop("busy0"))) / int(f.pop("clk"))
    client, chk, no_check = f.pop("client"), f.pop("check"), f.pop("no_check", [])
    if "msgs" not in f:
        f["msgs"] = chk["msgs"] if chk else 0
    n = f["msgs"]
    # the cgroup's ns where both samples have them, else /proc's ticks
    cg = c0 and c1 and c0.get("cg_cpu_ns") is not None and c1.get("cg_cpu_ns") is not None
    server_cpu = (round((c1["cg_cpu_ns"] - c0["cg_cpu_ns"]) / 1e9, 4) if cg
                  else round(c1["cpu_s"] - c0["cpu_s"], 2) if c0 and c1 else None)
    return dict(f, secs=round(secs, 3), rate=round(n / secs, 1) if secs > 0 else None,
                server_cpu_s=server_cpu, server_cpu_source="cgroup" if cg else "ticks",
                **{client + "_cpu_s": round(f1 - f0, 2) if f0 is not None and f1 is not None else None},
                sys_busy_cpu_s=round(busy, 2),
                content_ok=chk["content_ok"] if chk else None, content_problems=chk["problems"] if chk else no_check)


def pull_line(r, client):
    return "   rc %s, %s messages in %.2f s = %s msg/s, %scontent %s, cpu: server %s s, %s %s s, machine %s s" % (
        r["rc"], r["msgs"], r["secs"], r["rate"],
        "%s left on the server, " % r["left_on_server"] if "left_on_server" in r else "",
        {True: "identical to the template", False: "DIFFERS: " + "; ".join(r["content_problems"]),
         None: "not checked"}[r["content_ok"]],
        r["server_cpu_s"], client, r[client + "_cpu_s"], r["sys_busy_cpu_s"])


def session_line(r, primary, machine):
    """one session run (the load generator's JSON) as a progress line, primary rate first"""
    rates = {"cmds": "%s cmds/s" % r["cmds_per_s"], "sessions": "%s sessions/s" % r["sessions_per_s"]}
    return "   %s, %s, session p50/p99 %s/%s ms, errors %s, server cpu %s s, client cpu %s s, %speak RSS %s MB " \
           "(PSS %s MB, %s procs)" % (
               rates[primary], rates["sessions" if primary == "cmds" else "cmds"], r["session_p50_ms"],
               r["session_p99_ms"], r["errors"], r.get("server_cpu_s"), r["client_cpu_s"],
               "machine %s s, " % r["sys_busy_cpu_s"] if machine else "", r.get("server_peak_rss_mb"),
               r.get("server_peak_pss_mb"), r.get("server_peak_nproc"))


def cli(argv):
    ap = argparse.ArgumentParser(prog="common.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("fields", "meta", "session-line", "pull-record", "pull-line", "tree-pids",
                                    "pin", "cg-join"))
    ap.add_argument("args", nargs="*")
    a = ap.parse_args(argv)
    if a.cmd == "fields":
        r = json.loads(open(a.args[0]).read().splitlines()[-1])
        r.update(typed_fields(a.args[1:]))
        print(json.dumps(r))
    elif a.cmd == "meta":
        json.dump(dict(typed_fields(a.args[1:]),
                       host=f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}"),
                  open(a.args[0], "w"))
    elif a.cmd == "session-line":
        r = json.loads(sys.stdin.read().splitlines()[-1])
        print(session_line(r, a.args[0], a.args[1:] == ["machine"]))
        for e in r.get("error_samples", []):
            print("     error: " + e)
    elif a.cmd == "pull-record":
        print(json.dumps(pull_record(typed_fields(a.args))))
    elif a.cmd == "pull-line":
        print(pull_line(json.loads(sys.stdin.read()), a.args[0]))
    elif a.cmd == "tree-pids":
        print(" ".join(map(str, tree_pids([int(x) for x in a.args]))))
    elif a.cmd == "pin":
        # pin CPU|all PID...: the trees' threads on that CPU, or on every one
        cpus = set(range(os.cpu_count())) if a.args[0] == "all" else {int(a.args[0])}
        set_tree_affinity([int(x) for x in a.args[1:] if int(x) > 1], cpus)  # never init's tree
    elif a.cmd == "cg-join":
        # cg-join NAME PID...: the trees into cpuacct group pp-bench-NAME (see cg_join)
        if not cg_join(a.args[0], [int(x) for x in a.args[1:] if int(x) > 1]):
            print("no writable cpuacct cgroup: server CPU per pull in 10 ms ticks", file=sys.stderr)


if __name__ == "__main__":
    cli(sys.argv[1:])
