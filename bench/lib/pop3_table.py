#!/usr/bin/env python3
"""pop3_table.py RESULTS_DIR -- turn bench/pop3/run.sh raw results into Markdown.

Reads RESULTS_DIR/sessions_{dovecot,pigeonpost}_c<N>.jsonl (one JSON object per
run, written by bench/lib/pop3_load.py plus run.sh's pp_vmhwm_kb),
fetchmail.jsonl, prewarm.jsonl and meta.json, and prints the comparison
tables. Medians over runs, min..max in brackets where there is more than one
run; ratios are pigeonpost / Dovecot of the medians. Standard library only.
"""
import glob
import json
import os
import re
import statistics
import sys

d = sys.argv[1]
SERVERS = ("dovecot", "pigeonpost")
NAME = {"dovecot": "Dovecot", "pigeonpost": "pigeonpost"}
TARGET = 1.5


def load(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except OSError:
        return []


meta = {}
if os.path.exists(os.path.join(d, "meta.json")):
    meta = json.load(open(os.path.join(d, "meta.json")))

sess = {}  # (server, conc) -> rows
for f in sorted(glob.glob(os.path.join(d, "sessions_*_c*.jsonl"))):
    m = re.match(r"sessions_(dovecot|pigeonpost)_c(\d+)\.jsonl$", os.path.basename(f))
    if m:
        sess[(m.group(1), int(m.group(2)))] = load(f)
concs = sorted({c for _, c in sess})
fetch = load(os.path.join(d, "fetchmail.jsonl"))
prewarm = {r.get("server"): r for r in load(os.path.join(d, "prewarm.jsonl"))}
present = [s for s in SERVERS if any(k[0] == s for k in sess) or any(r["server"] == s for r in fetch) or s in prewarm]


def vals(rows, k):
    return [r[k] for r in rows if r.get(k) is not None]


def med(rows, k):
    v = vals(rows, k)
    return statistics.median(v) if v else None


def fmt(x, nd=0):
    return "–" if x is None else f"{x:,.{nd}f}"


def rng(v, nd=0, nrows=None):
    if not v:
        return "failed" if nrows else "–"
    s = fmt(statistics.median(v), nd)
    if len(v) > 1:
        s += f" ({fmt(min(v), nd)}..{fmt(max(v), nd)})"
    if nrows and nrows > len(v):
        s += f" [{nrows - len(v)} failed]"
    return s


def ratio(a, b):
    return None if not a or b is None else b / a


def rfmt(r):
    return "–" if r is None else f"**{r:.2f}×**"


def per_session_cpu_ms(rows):
    v = [r["server_cpu_s"] * 1000 / r["sessions"] for r in rows if r.get("server_cpu_s") is not None and r.get("sessions")]
    return statistics.median(v) if v else None


def fetch_ok(r):
    """a pull that got every message, byte for byte (BSMTP sink), and left the maildrop as it should:
    untouched (keep) or empty (delete)"""
    left_ok = r["left_on_server"] == (0 if r["mode"] == "delete" else r["expected"])
    return r["rc"] in (0, 1) and r["msgs"] == r["expected"] and left_ok and r.get("content_ok") is not False


def other_cpu(rows):
    """median busy CPU seconds of the machine during a pull that were neither the server's nor fetchmail's"""
    v = [r["sys_busy_cpu_s"] - r["server_cpu_s"] - r["fetchmail_cpu_s"] for r in rows
         if None not in (r.get("sys_busy_cpu_s"), r.get("server_cpu_s"), r.get("fetchmail_cpu_s"))]
    return statistics.median(v) if v else None


def ok_rows(rows):
    """runs that completed sessions without errors"""
    return [r for r in rows if r.get("sessions") and not r.get("errors")]


if meta:
    print(f"Maildrop: {meta.get('msgs')} messages, {meta.get('maildrop_bytes', 0) / 1024:,.0f} KiB "
          f"(about {meta.get('size')} B each, file names `{meta.get('names')}`), one copy per user and server. "
          f"Sessions: USER, PASS, STAT, UIDL, {meta.get('retr')} × RETR (random), QUIT, no DELE; every client its "
          f"own user; {meta.get('duration')} s per run, {meta.get('runs')} run(s) per server and concurrency, "
          f"interleaved. {meta.get('host', '')}.")
    print()

targets = []
if sess:
    print("**Sessions per second** (median (min..max) over runs) and what they cost:")
    print()
    print("| clients | Dovecot sessions/s | pigeonpost sessions/s | ratio pp/Dovecot | Dovecot cmds/s | pigeonpost cmds/s | "
          "session p50 / p99 ms, Dovecot | session p50 / p99 ms, pigeonpost | server CPU ms/session Dovecot / pp | "
          "Dovecot tree peak RSS / PSS MB | pigeonpost peak RSS MB | errors Dovecot / pp |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in concs:
        dv, pp = sess.get(("dovecot", c), []), sess.get(("pigeonpost", c), [])
        a, b = med(ok_rows(dv), "sessions_per_s"), med(ok_rows(pp), "sessions_per_s")
        r = ratio(a, b) if len(ok_rows(dv)) == len(dv) and len(ok_rows(pp)) == len(pp) else None
        if dv and pp:
            targets.append((f"sessions, {c} client(s)", r))
        dmem = (f"{fmt(max(vals(dv, 'server_peak_rss_mb')))} / {fmt(max(vals(dv, 'server_peak_pss_mb')))}"
                if vals(dv, "server_peak_rss_mb") else "–")
        hwm = vals(pp, "pp_vmhwm_kb")
        pmem = fmt(max(hwm) / 1024, 1) if hwm else (fmt(max(vals(pp, "server_peak_rss_mb")), 1) if vals(pp, "server_peak_rss_mb") else "–")
        lat = lambda rows: "–" if not rows else f"{fmt(med(rows, 'session_p50_ms'), 1)} / {fmt(med(rows, 'session_p99_ms'), 1)}"
        errs = lambda rows: "–" if not rows else str(sum(r.get("errors", 0) for r in rows))
        print(f"| {c} | {rng(vals(ok_rows(dv), 'sessions_per_s'), 1, len(dv))} | {rng(vals(ok_rows(pp), 'sessions_per_s'), 1, len(pp))} | "
              f"{rfmt(r)} | {fmt(med(dv, 'cmds_per_s'))} | {fmt(med(pp, 'cmds_per_s'))} | {lat(dv)} | {lat(pp)} | "
              f"{fmt(per_session_cpu_ms(dv), 2)} / {fmt(per_session_cpu_ms(pp), 2)} | {dmem} | {pmem} | {errs(dv)} / {errs(pp)} |")
    print()
    print("Where the CPU went (median per run, % of all CPUs over the run; the clients run on the same CPUs):")
    print()
    print("| clients | server | server CPU | client CPU | machine busy | other | client procs | per-command p50 ms (USER PASS STAT UIDL RETR QUIT; connect) |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for c in concs:
        for s in present:
            rows = sess.get((s, c), [])
            if not rows:
                continue

            def pcts(k):
                return [r[k] / r.get("cpu_window_s", r["elapsed_s"]) / r["sys_cpus"] * 100
                        for r in rows if r.get(k) is not None and r.get("elapsed_s")]

            def share(k):
                v = pcts(k)
                return f"{statistics.median(v):.0f} %" if v else "–"
            # busy CPU that is neither the server's nor the load generator's (kernel work
            # charged to nobody, and anything else running on the machine, e.g. a build)
            other = [(r["sys_busy_cpu_s"] - r["server_cpu_s"] - r["client_cpu_s"]) / r.get("cpu_window_s", r["elapsed_s"])
                     / r["sys_cpus"] * 100 for r in rows
                     if None not in (r.get("sys_busy_cpu_s"), r.get("server_cpu_s"), r.get("client_cpu_s")) and r.get("elapsed_s")]
            other_s = f"{statistics.median(other):.0f} %" if other else "–"
            pc = []
            for k in ("USER", "PASS", "STAT", "UIDL", "RETR", "QUIT", "connect"):
                v = [r["per_cmd"][k]["p50_ms"] for r in rows if k in r.get("per_cmd", {})]
                pc.append(fmt(statistics.median(v), 2) if v else "–")
            print(f"| {c} | {NAME[s]} | {share('server_cpu_s')} | {share('client_cpu_s')} | {share('sys_busy_cpu_s')} | "
                  f"{other_s} | {rows[0].get('procs', '–')} | {' '.join(pc[:6])}; {pc[6]} |")
    print()

if fetch:
    n = meta.get("msgs", "?")
    print(f"**fetchmail** pulling the whole {n}-message maildrop over plain POP3 on loopback "
          f"(sink: {'BSMTP file' if meta.get('fetch_sink', 'bsmtp') == 'bsmtp' else 'mda cat >/dev/null'}); "
          "seconds and messages per second, median (min..max):")
    print()
    print("| pull | runs | Dovecot s | pigeonpost s | Dovecot msg/s | pigeonpost msg/s | ratio pp/Dovecot | "
          "server CPU s Dovecot / pp | fetchmail CPU s Dovecot / pp | other CPU s Dovecot / pp |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    labels = {"keep": "`--all --keep`, warm maildrop",
              "keep-first": "`--all --keep`, first pull of a fresh copy",
              "delete": "`--all` (DELE, QUIT), fresh copy each run"}
    for mode in ("keep", "keep-first", "delete"):
        rows = {s: [r for r in fetch if r["mode"] == mode and r["server"] == s] for s in SERVERS}
        if not any(rows.values()):
            continue

        def good(rs):
            return [r for r in rs if fetch_ok(r)]
        dv, pp = good(rows["dovecot"]), good(rows["pigeonpost"])
        a, b = med(dv, "rate"), med(pp, "rate")
        r = ratio(a, b) if len(dv) == len(rows["dovecot"]) and len(pp) == len(rows["pigeonpost"]) else None
        if rows["dovecot"] and rows["pigeonpost"] and mode != "keep-first":
            targets.append((f"fetchmail {mode}", r))
        nruns = max(len(x) for x in rows.values())
        print(f"| {labels[mode]} | {nruns} | {rng(vals(dv, 'secs'), 2, len(rows['dovecot']))} | "
              f"{rng(vals(pp, 'secs'), 2, len(rows['pigeonpost']))} | {rng(vals(dv, 'rate'), 0, len(rows['dovecot']))} | "
              f"{rng(vals(pp, 'rate'), 0, len(rows['pigeonpost']))} | {rfmt(r)} | "
              f"{fmt(med(dv, 'server_cpu_s'), 2)} / {fmt(med(pp, 'server_cpu_s'), 2)} | "
              f"{fmt(med(dv, 'fetchmail_cpu_s'), 2)} / {fmt(med(pp, 'fetchmail_cpu_s'), 2)} | "
              f"{fmt(other_cpu(dv), 2)} / {fmt(other_cpu(pp), 2)} |")
    print()

if prewarm:
    print("First session of each fresh maildrop (USER PASS STAT LIST UIDL, RETR of every message, QUIT; "
          "the server builds its index and moves new/ to cur/), and the content check against the generated Maildir:")
    print()
    print("| server | maildrops | first session p50 (min..max) ms | content served |")
    print("|---|---:|---:|---|")
    for s in present:
        r = prewarm.get(s)
        if not r:
            continue
        chk = ("identical to the template (every message, LIST sizes, STAT octets, unique UIDLs)" if r.get("verified")
               else f"**{r.get('n_problems')} problem(s)**: " + "; ".join(r.get("problems", [])[:2]))
        print(f"| {NAME[s]} | {r.get('ok')}/{r.get('users')} | {fmt(r.get('first_session_p50_ms'), 0)} "
              f"({fmt(r.get('first_session_min_ms'), 0)}..{fmt(r.get('first_session_max_ms'), 0)}) | {chk} |")
    print()

for label, r in targets:
    print(f"- target, {label}: pigeonpost ≥ {TARGET}× Dovecot: "
          f"{'n/a (a run failed)' if r is None else ('met' if r >= TARGET else 'NOT met')} ({'–' if r is None else f'{r:.2f}×'})")
for (s, c), rows in sorted(sess.items()):
    for r in rows:
        if r.get("errors"):
            print(f"- WARNING: {NAME[s]}, {c} client(s), run {r.get('run')}: {r['errors']} failed sessions, e.g. "
                  + "; ".join(r.get("error_samples", [])[:2]))
        if r.get("unclean_close"):
            print(f"- note: {NAME[s]}, {c} client(s), run {r.get('run')}: {r['unclean_close']} sessions where the "
                  "server did not close the connection within 5 s of the QUIT reply")
for r in fetch:
    if not fetch_ok(r):
        print(f"- WARNING: fetchmail {r['mode']} from {NAME[r['server']]}, run {r['run']}: rc {r['rc']}, "
              f"{r['msgs']} of {r['expected']} messages, {r['left_on_server']} left on the server"
              + ("" if r.get("content_ok") is not False else
                 ", content differs from the template: " + "; ".join(r.get("content_problems", [])[:2])))
