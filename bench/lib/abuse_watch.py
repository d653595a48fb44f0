#!/usr/bin/env python3
"""abuse_watch.py -- the server side of one bench/abuse phase (standard library only).

Samples the server's process tree(s) (--server-pids: pigeonpost's pid, or the
Postfix and Dovecot masters') every --sample-every seconds for --duration
seconds: peak summed RSS and PSS, peak process count, CPU time, the server's
established TCP connections on --ports (from /proc/net/tcp), and a timeline
(one point a second). If the summed RSS passes --mem-abort-mb (the summed PSS) it creates
--stop-file, which stops the attackers (a guard for the shared machine), and
says so. With --metrics-url it reads pigeonpost's /metrics at the start and the
end and reports how much each counter grew. Every server process that is gone
at the end (a crash) is reported too.
Output: JSON (--json-out) and a last line on stdout.
"""
import argparse
import json
import os
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py
from common import proc_tree_stats  # noqa: E402


def metrics(url):
    if not url:
        return None
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except Exception:
        return None
    out = {}
    for l in text.splitlines():
        if l and not l.startswith("#") and not l.split(" ")[0].endswith(("_bucket", "_sum", "_created")):
            k, _, v = l.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def established(ports):
    """server-side established connections on these local ports, by remote IP class"""
    if not ports:
        return None
    hexports = {"%04X" % p for p in ports}
    legit = attack = 0
    for fn in ("/proc/net/tcp",):
        try:
            lines = open(fn).read().splitlines()[1:]
        except OSError:
            return None
        for l in lines:
            f = l.split()
            if f[3] != "01":       # ESTABLISHED
                continue
            if f[1].split(":")[1] in hexports:
                ip = f[2].split(":")[0]
                if ip == "0100007F":
                    legit += 1
                else:
                    attack += 1
    return legit, attack


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-pids", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--sample-every", type=float, default=0.25)
    ap.add_argument("--ports", default="")
    ap.add_argument("--mem-abort-mb", type=float, default=4096)
    ap.add_argument("--stop-file", default="/nonexistent/stop")
    ap.add_argument("--metrics-url")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    roots = [int(x) for x in a.server_pids.split()]
    ports = [int(x) for x in a.ports.split()]
    m0 = metrics(a.metrics_url)
    s0 = proc_tree_stats(roots)
    t0 = time.time()
    peak = {"rss_kb": 0, "pss_kb": 0, "nproc": 0, "conns_attack": 0, "conns_legit": 0}
    timeline, last_point, aborted = [], 0.0, None
    s = s0
    while time.time() < t0 + a.duration:
        s = proc_tree_stats(roots) or s
        for k in ("rss_kb", "pss_kb", "nproc"):
            peak[k] = max(peak[k], s[k])
        now = time.time()
        if now - last_point >= 1.0:
            e = established(ports)
            if e:
                peak["conns_legit"] = max(peak["conns_legit"], e[0])
                peak["conns_attack"] = max(peak["conns_attack"], e[1])
            timeline.append([round(now - t0, 1), round(s["rss_kb"] / 1024, 1), s["nproc"],
                             round(s["cpu_s"] - s0["cpu_s"], 2)] + (list(e) if e else []))
            last_point = now
        # PSS: the memory the tree really holds (summed RSS counts shared pages once per process)
        if s["pss_kb"] / 1024 > a.mem_abort_mb and aborted is None:
            aborted = round(now - t0, 1)
            open(a.stop_file, "w").write("server PSS %.0f MB > %s MB\n" % (s["pss_kb"] / 1024, a.mem_abort_mb))
        time.sleep(a.sample_every)
    s1 = proc_tree_stats(roots)
    alive = [p for p in roots if os.path.exists("/proc/%d" % p)]
    m1 = metrics(a.metrics_url)
    grew = None
    if m0 is not None and m1 is not None:
        grew = {k: v - m0.get(k, 0) for k, v in sorted(m1.items()) if v - m0.get(k, 0)}
    out = dict(peak_rss_mb=round(peak["rss_kb"] / 1024, 1), peak_pss_mb=round(peak["pss_kb"] / 1024, 1),
               peak_nproc=peak["nproc"], start_rss_mb=round(s0["rss_kb"] / 1024, 1) if s0 else None,
               end_rss_mb=round(s1["rss_kb"] / 1024, 1) if s1 else None,
               cpu_s=round(s1["cpu_s"] - s0["cpu_s"], 2) if s0 and s1 else None,
               peak_conns_legit=peak["conns_legit"], peak_conns_attack=peak["conns_attack"],
               roots=roots, roots_alive=alive, mem_abort_at_s=aborted, metrics_delta=grew,
               timeline_cols=["t_s", "rss_mb", "nproc", "cpu_s", "conns_legit", "conns_attack"], timeline=timeline)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(out, f)
    print("abuse_watch: peak RSS %s MB (PSS %s MB, %s procs), cpu %s s, peak connections legit/attack %s/%s%s%s" % (
        out["peak_rss_mb"], out["peak_pss_mb"], out["peak_nproc"], out["cpu_s"], peak["conns_legit"],
        peak["conns_attack"], "" if len(alive) == len(roots) else ", SERVER PROCESS GONE: %s" % sorted(set(roots) - set(alive)),
        "" if aborted is None else ", MEMORY GUARD: attack stopped at %s s" % aborted), flush=True)


if __name__ == "__main__":
    main()
