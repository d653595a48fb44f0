#!/usr/bin/env python3
"""idle_mem.py -- server memory cost per connected idle IMAP client (stdlib only).

Adapted from the project's shared reference harness (shared/bench/idle_mem.py,
"server memory cost per connected idle IMAP client"), by its authors (this
project), for bench/imap/run.sh. Changes: a --userfile (client i logs in as
line i mod lines), the server's CPU while everyone idles, a check that every
connection is still alive at the end (DONE answered with OK), the server's
memory once more after all clients have logged out, and a --tag. The
process-tree sampling and the options it shares with imap_load.py are in
bench/lib/common.py.

Opens N IMAP connections (default 200), each doing LOGIN, SELECT INBOX and
then IDLE (--parallel at a time), holds them for --hold seconds, and measures
the growth of the server's memory between "before" and "all N idle":
  * sum of RSS over the server process tree(s) (--server-pids; for a single
    process server that is its RSS; it overcounts shared pages of
    multi-process servers)
  * sum of PSS over the same tree (shared pages split fairly)
  * system-wide used memory (MemTotal-MemAvailable; includes kernel socket
    buffers and page tables, and any noise from other processes)
Then DONE/LOGOUT on every connection. Bounded: --timeout for the whole run.

Examples:
  idle_mem.py --port 4143 --userfile idle.txt --clients 200 --server-pids PID --tag dovecot
Final line: "idle_mem: ..." with per-client KiB figures.
"""
import argparse
import asyncio
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no root-owned __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py
from common import add_server_args, proc_tree_stats, quote, read_users, tls_ctx  # noqa: E402


def tree_stats(roots):
    """the server trees' nproc, summed RSS/PSS (KiB), CPU seconds and process names"""
    r = proc_tree_stats(roots, comm=True) or {"nproc": 0, "rss_kb": 0, "pss_kb": 0, "cpu_s": 0.0, "procs": {}}
    r["cpu_s"] = round(r["cpu_s"], 2)
    return r


def sys_used_kb():
    d = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":")
        d[k] = int(v.split()[0])
    return d["MemTotal"] - d["MemAvailable"]


async def readline(r, to):
    return await asyncio.wait_for(r.readline(), to)


async def wait_tag(r, tag, to):
    while True:
        line = await readline(r, to)
        if not line:
            raise ConnectionError("closed")
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise ConnectionError(line.decode(errors="replace").strip())
            return


async def open_idle(a, user, pw):
    r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port, ssl=tls_ctx(a)), a.io_timeout)
    try:
        g = await readline(r, a.io_timeout)
        if not g.startswith(b"* OK"):
            raise ConnectionError("greeting %r" % g[:60])
        w.write(b"a1 LOGIN " + quote(user) + b" " + quote(pw) + b"\r\n")
        await w.drain()
        await wait_tag(r, b"a1", a.io_timeout)
        w.write(b"a2 SELECT INBOX\r\n")
        await w.drain()
        await wait_tag(r, b"a2", a.io_timeout)
        if a.idle:
            w.write(b"a3 IDLE\r\n")
            await w.drain()
            line = await readline(r, a.io_timeout)
            if not line.startswith(b"+"):
                raise ConnectionError("IDLE refused: %r" % line[:80])
    except BaseException:
        w.close()
        raise
    return r, w


async def close_idle(a, r, w):
    """DONE (must be answered with OK: the connection is still alive), LOGOUT; True if DONE was answered."""
    ok = False
    try:
        if a.idle:
            w.write(b"DONE\r\n")
            await w.drain()
            await wait_tag(r, b"a3", 10)
        ok = True
        w.write(b"a4 LOGOUT\r\n")
        await w.drain()
        await wait_tag(r, b"a4", 10)
    except Exception:
        pass
    finally:
        w.close()
    return ok


async def main_async(a, users):
    roots = [int(x) for x in a.server_pids.split()]
    await asyncio.sleep(a.settle)
    before = tree_stats(roots)
    sys0 = sys_used_kb()
    conns, errors = [], []
    t0 = time.time()
    sem = asyncio.Semaphore(a.parallel)

    async def one(u, p):
        async with sem:
            try:
                conns.append(await open_idle(a, u, p))
            except Exception as e:
                errors.append("%s: %s" % (type(e).__name__, e))

    await asyncio.gather(*(one(*users[i % len(users)]) for i in range(a.clients)))
    t_conn = time.time() - t0
    mid = tree_stats(roots)
    t_mid = time.time()
    await asyncio.sleep(a.hold)
    after = tree_stats(roots)
    t_after = time.time()
    sys1 = sys_used_kb()
    alive = 0
    for ok in await asyncio.gather(*(close_idle(a, r, w) for r, w in conns)):
        alive += ok
    await asyncio.sleep(a.settle)
    gone = tree_stats(roots)
    n = len(conns)
    per = lambda k: round((after[k] - before[k]) / n, 1) if n else None
    return {
        "clients_requested": a.clients, "clients_idle": n, "errors": len(errors), "error_samples": errors[:5],
        "alive_at_end": alive, "connect_all_s": round(t_conn, 2), "hold_s": round(t_after - t_mid, 2),
        "before": before, "after": after, "after_logout": gone,
        "rss_growth_mb": round((after["rss_kb"] - before["rss_kb"]) / 1024, 2),
        "pss_growth_mb": round((after["pss_kb"] - before["pss_kb"]) / 1024, 2),
        "sys_used_growth_mb": round((sys1 - sys0) / 1024, 1),
        "rss_per_client_kb": per("rss_kb"), "pss_per_client_kb": per("pss_kb"),
        "sys_used_per_client_kb": round((sys1 - sys0) / n, 1) if n else None,
        "idle_server_cpu_pct": round((after["cpu_s"] - mid["cpu_s"]) / max(0.01, t_after - t_mid) * 100, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_args(ap, "imap", 143, "IMAPS")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=10, help="concurrent logins while ramping up")
    ap.add_argument("--no-idle", dest="idle", action="store_false", help="stay SELECTed without IDLE")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds to wait with all clients idle before measuring")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--io-timeout", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=300.0, help="hard bound for the whole run")
    ap.add_argument("--server-pids", required=os.environ.get("SERVER_PIDS") is None,
                    default=os.environ.get("SERVER_PIDS"), help="root pid(s) of the server process tree(s)")
    ap.add_argument("--json-out")
    ap.add_argument("--tag", default="", help="free text stored in the JSON ('server' field)")
    ap.add_argument("--extra-json", default="{}", help="JSON object merged into the --json-out line")
    a = ap.parse_args()
    if not (1 <= a.clients <= 10000 and 1 <= a.parallel <= 1000 and 0 <= a.hold <= 600 and 1 <= a.timeout <= 3600):
        ap.error("clients 1..10000, parallel 1..1000, hold 0..600, timeout 1..3600")
    users = read_users(a)
    res = asyncio.run(asyncio.wait_for(main_async(a, users), a.timeout))
    if a.json_out:
        with open(a.json_out, "a") as f:
            f.write(json.dumps(dict(res, tool="idle_mem", server=a.tag, host=a.host, port=a.port, tls=a.tls,
                                    **json.loads(a.extra_json))) + "\n")
    print("idle_mem: %s:%d tls=%s idle_clients=%d/%d errors=%d alive_at_end=%d server_nproc %d->%d  "
          "RSS %.1f->%.1f MB (+%.1f KiB/client)  PSS %.1f->%.1f MB (+%.1f KiB/client)  sys_used +%.1f KiB/client  "
          "server CPU while idle %.1f %%  after logout RSS %.1f MB PSS %.1f MB" % (
              a.host, a.port, a.tls, res["clients_idle"], a.clients, res["errors"], res["alive_at_end"],
              res["before"]["nproc"], res["after"]["nproc"],
              res["before"]["rss_kb"] / 1024, res["after"]["rss_kb"] / 1024, res["rss_per_client_kb"] or 0,
              res["before"]["pss_kb"] / 1024, res["after"]["pss_kb"] / 1024, res["pss_per_client_kb"] or 0,
              res["sys_used_per_client_kb"] or 0, res["idle_server_cpu_pct"],
              res["after_logout"]["rss_kb"] / 1024, res["after_logout"]["pss_kb"] / 1024))
    for e in res["error_samples"]:
        print("  error: " + e)


if __name__ == "__main__":
    main()
