#!/usr/bin/env python3
"""imap_table.py RESULTS_DIR -- turn bench/imap/run.sh raw results into Markdown.

Reads RESULTS_DIR/sessions_{dovecot,pigeonpost}_c<N>.jsonl (one JSON object per
run, written by bench/lib/imap_load.py plus run.sh's pp_vmhwm_kb and overlap),
mbsync.jsonl, idle.jsonl, prewarm.jsonl and meta.json, and prints the
comparison tables and the targets (commands/s and mbsync rate at least 1.5x
Dovecot's, at most 64 KiB of server memory per idle connection). Medians over
runs, min..max in brackets where there is more than one run; ratios are
pigeonpost / Dovecot of the medians. Adapted from bench/lib/pop3_table.py.
Standard library only.
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
IDLE_TARGET_KIB = 64
CMDS = ("connect", "LOGIN", "SELECT", "FETCH_ALL", "FETCH_BODY", "STORE", "SEARCH", "LOGOUT")


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
mbsync = load(os.path.join(d, "mbsync.jsonl"))
idle = load(os.path.join(d, "idle.jsonl"))
prewarm = {r.get("server"): r for r in load(os.path.join(d, "prewarm.jsonl"))}
present = [s for s in SERVERS if any(k[0] == s for k in sess) or any(r["server"] == s for r in mbsync + idle)
           or s in prewarm]


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


def ok_rows(rows):
    """runs that completed sessions (a run with some failed sessions still counts: its failures are
    listed in the errors column and below the tables)"""
    return [r for r in rows if r.get("sessions")]


def mbsync_ok(r):
    return r["rc"] == 0 and r["msgs"] == r["expected"] and r.get("content_ok") is True


def other_cpu(rows, client_key):
    v = [r["sys_busy_cpu_s"] - r["server_cpu_s"] - r[client_key] for r in rows
         if None not in (r.get("sys_busy_cpu_s"), r.get("server_cpu_s"), r.get(client_key))]
    return statistics.median(v) if v else None


if meta:
    print(f"Mailbox: {meta.get('msgs'):,} messages, {meta.get('mailbox_bytes', 0) / 1024:,.0f} KiB "
          f"(about {meta.get('size')} B each, file names `{meta.get('names')}`), a copy per user and server. "
          f"Session: LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS RFC822.SIZE), {meta.get('bodies')} × UID FETCH n "
          f"(BODY.PEEK[]), UID STORE n +FLAGS (\\Flagged), UID STORE n -FLAGS (\\Flagged), SEARCH UNSEEN, LOGOUT "
          f"({meta.get('bodies', 20) + 7} commands); every client logs in as the same user; "
          f"{meta.get('duration')} s per run, {meta.get('runs')} run(s) per server and concurrency, interleaved. "
          f"{meta.get('host', '')}.")
    print()

targets = []
if sess:
    print("**Commands per second** (median (min..max) over runs) and what they cost:")
    print()
    print("| clients | Dovecot cmds/s | pigeonpost cmds/s | ratio pp/Dovecot | Dovecot / pp sessions/s | "
          "session p50 / p99 ms, Dovecot | session p50 / p99 ms, pigeonpost | server CPU ms/session Dovecot / pp | "
          "Dovecot tree peak RSS / PSS MB | pigeonpost peak RSS MB | errors Dovecot / pp |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in concs:
        dv, pp = sess.get(("dovecot", c), []), sess.get(("pigeonpost", c), [])
        a, b = med(ok_rows(dv), "cmds_per_s"), med(ok_rows(pp), "cmds_per_s")
        r = ratio(a, b) if len(ok_rows(dv)) == len(dv) and len(ok_rows(pp)) == len(pp) else None
        if dv and pp:
            targets.append((f"commands/s, {c} client(s)", r, TARGET, ">="))
        dmem = (f"{fmt(max(vals(dv, 'server_peak_rss_mb')))} / {fmt(max(vals(dv, 'server_peak_pss_mb')))}"
                if vals(dv, "server_peak_rss_mb") else "–")
        hwm = vals(pp, "pp_vmhwm_kb")
        pmem = fmt(max(hwm) / 1024, 1) if hwm else (fmt(max(vals(pp, "server_peak_rss_mb")), 1) if vals(pp, "server_peak_rss_mb") else "–")
        lat = lambda rows: "–" if not rows else f"{fmt(med(rows, 'session_p50_ms'), 1)} / {fmt(med(rows, 'session_p99_ms'), 1)}"
        errs = lambda rows: "–" if not rows else str(sum(r.get("errors", 0) for r in rows))
        print(f"| {c} | {rng(vals(ok_rows(dv), 'cmds_per_s'), 0, len(dv))} | {rng(vals(ok_rows(pp), 'cmds_per_s'), 0, len(pp))} | "
              f"{rfmt(r)} | {fmt(med(dv, 'sessions_per_s'), 1)} / {fmt(med(pp, 'sessions_per_s'), 1)} | {lat(dv)} | {lat(pp)} | "
              f"{fmt(per_session_cpu_ms(dv), 1)} / {fmt(per_session_cpu_ms(pp), 1)} | {dmem} | {pmem} | {errs(dv)} / {errs(pp)} |")
    print()
    print("Where the time and CPU went (median per run; CPU as % of all CPUs over the run; the clients run on the same CPUs):")
    print()
    print("| clients | server | server CPU | client CPU | machine busy | other | per-command p50 ms (" + " ".join(CMDS[1:]) + "; connect) |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for c in concs:
        for s in present:
            rows = sess.get((s, c), [])
            if not rows:
                continue

            def share(k):
                v = [r[k] / r.get("cpu_window_s", r["elapsed_s"]) / r["sys_cpus"] * 100
                     for r in rows if r.get(k) is not None and r.get("elapsed_s")]
                return f"{statistics.median(v):.0f} %" if v else "–"
            other = [(r["sys_busy_cpu_s"] - r["server_cpu_s"] - r["client_cpu_s"]) / r.get("cpu_window_s", r["elapsed_s"])
                     / r["sys_cpus"] * 100 for r in rows
                     if None not in (r.get("sys_busy_cpu_s"), r.get("server_cpu_s"), r.get("client_cpu_s")) and r.get("elapsed_s")]
            other_s = f"{statistics.median(other):.0f} %" if other else "–"
            pc = []
            for k in CMDS[1:] + CMDS[:1]:
                v = [r["per_cmd"][k]["p50_ms"] for r in rows if k in r.get("per_cmd", {})]
                pc.append(fmt(statistics.median(v), 2) if v else "–")
            print(f"| {c} | {NAME[s]} | {share('server_cpu_s')} | {share('client_cpu_s')} | {share('sys_busy_cpu_s')} | "
                  f"{other_s} | {' '.join(pc[:-1])}; {pc[-1]} |")
    print()

if mbsync:
    n = meta.get("msgs", "?")
    print(f"**mbsync** (isync) full download of the {n:,}-message INBOX into a fresh local Maildir, plain IMAP on "
          "loopback; seconds and messages per second, median (min..max):")
    print()
    print("| pull | runs | Dovecot s | pigeonpost s | Dovecot msg/s | pigeonpost msg/s | ratio pp/Dovecot | "
          "server CPU s Dovecot / pp | mbsync CPU s Dovecot / pp | other CPU s Dovecot / pp |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    keys = []
    for r in mbsync:
        if (r["fsync"], r["mode"]) not in keys:
            keys.append((r["fsync"], r["mode"]))
    for fs, mode in keys:
        rows = {s: [r for r in mbsync if r["mode"] == mode and r["fsync"] == fs and r["server"] == s] for s in SERVERS}
        good = lambda rs: [r for r in rs if mbsync_ok(r)]
        dv, pp = good(rows["dovecot"]), good(rows["pigeonpost"])
        a, b = med(dv, "rate"), med(pp, "rate")
        r = ratio(a, b) if len(dv) == len(rows["dovecot"]) and len(pp) == len(rows["pigeonpost"]) else None
        label = f"`FSync {fs}`, " + ("first pull of the fresh copy" if mode == "first" else "warm mailbox")
        if rows["dovecot"] and rows["pigeonpost"] and mode != "first":
            targets.append((f"mbsync rate, FSync {fs}", r, TARGET, ">="))
        nruns = max(len(x) for x in rows.values())
        print(f"| {label} | {nruns} | {rng(vals(dv, 'secs'), 2, len(rows['dovecot']))} | "
              f"{rng(vals(pp, 'secs'), 2, len(rows['pigeonpost']))} | {rng(vals(dv, 'rate'), 0, len(rows['dovecot']))} | "
              f"{rng(vals(pp, 'rate'), 0, len(rows['pigeonpost']))} | {rfmt(r)} | "
              f"{fmt(med(dv, 'server_cpu_s'), 2)} / {fmt(med(pp, 'server_cpu_s'), 2)} | "
              f"{fmt(med(dv, 'mbsync_cpu_s'), 2)} / {fmt(med(pp, 'mbsync_cpu_s'), 2)} | "
              f"{fmt(other_cpu(dv, 'mbsync_cpu_s'), 2)} / {fmt(other_cpu(pp, 'mbsync_cpu_s'), 2)} |")
    print()

if idle:
    n = meta.get("idle_clients", "?")
    print(f"**Memory per idle connection**: {n} connections (LOGIN, SELECT INBOX, IDLE), growth of the server's "
          "memory ÷ connections, median (min..max) over runs; both servers restarted before every run. "
          "pigeonpost: its process RSS; Dovecot: PSS summed over its process tree (summed RSS in brackets):")
    print()
    print(f"| INBOX | runs | Dovecot KiB/conn (PSS) | pigeonpost KiB/conn (RSS) | pigeonpost ≤ {IDLE_TARGET_KIB} KiB | "
          "Dovecot summed RSS KiB/conn | pigeonpost PSS KiB/conn | Dovecot processes before → after | "
          "server CPU while idle Dovecot / pp | connections alive at the end Dovecot / pp |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for mode in ("shared", "distinct"):
        rows = {s: [r for r in idle if r.get("mode") == mode and r["server"] == s] for s in SERVERS}
        if not any(rows.values()):
            continue
        good = lambda rs: [r for r in rs if r["clients_idle"] == r["clients_requested"] and not r["errors"]]
        dv, pp = good(rows["dovecot"]), good(rows["pigeonpost"])
        ppv = vals(pp, "rss_per_client_kb")
        kib = statistics.median(ppv) if ppv and len(pp) == len(rows["pigeonpost"]) else None
        if rows["pigeonpost"]:
            targets.append((f"memory per idle connection, {mode}", kib, IDLE_TARGET_KIB, "<="))
        label = (f"one user, {meta.get('msgs', '?'):,} messages" if mode == "shared" else f"{n} users, empty")
        procs = lambda rs: (f"{statistics.median([r['before']['nproc'] for r in rs]):.0f} → "
                            f"{statistics.median([r['after']['nproc'] for r in rs]):.0f}") if rs else "–"
        alive = lambda rs: "–" if not rs else "/".join(str(r.get("alive_at_end")) for r in rs)
        nruns = max(len(x) for x in rows.values())
        met = "–" if kib is None else ("met" if kib <= IDLE_TARGET_KIB else "**NOT met**")
        print(f"| {label} | {nruns} | {rng(vals(dv, 'pss_per_client_kb'), 0, len(rows['dovecot']))} | "
              f"{rng(ppv, 1, len(rows['pigeonpost']))} | {met} | {rng(vals(dv, 'rss_per_client_kb'), 0)} | "
              f"{rng(vals(pp, 'pss_per_client_kb'), 1)} | {procs(dv)} | "
              f"{fmt(med(dv, 'idle_server_cpu_pct'), 1)} % / {fmt(med(pp, 'idle_server_cpu_pct'), 1)} % | "
              f"{alive(rows['dovecot'])} / {alive(rows['pigeonpost'])} |")
    print()

if prewarm:
    print("First session of each fresh mailbox (LOGIN, SELECT, UID FETCH 1:* (FLAGS RFC822.SIZE), "
          "UID FETCH 1:* (BODY.PEEK[]), SEARCH UNSEEN, LOGOUT; the server builds its index and moves new/ to cur/), "
          "and the content check against the generated Maildir:")
    print()
    print("| server | mailboxes | first session p50 (min..max) ms | content served |")
    print("|---|---:|---:|---|")
    for s in present:
        r = prewarm.get(s)
        if not r:
            continue
        chk = ("identical to the template (every body; RFC822.SIZE = body length; UIDs unique and ascending; "
               "all unseen)" if r.get("verified")
               else f"**{r.get('n_problems')} problem(s)**: " + "; ".join(r.get("problems", [])[:2]))
        print(f"| {NAME[s]} | {r.get('ok')}/{r.get('users')} | {fmt(r.get('first_session_p50_ms'), 0)} "
              f"({fmt(r.get('first_session_min_ms'), 0)}..{fmt(r.get('first_session_max_ms'), 0)}) | {chk} |")
    print()

for label, r, goal, op in targets:
    if op == ">=":
        verdict = "n/a (a run failed)" if r is None else ("met" if r >= goal else "NOT met")
        print(f"- target, {label}: pigeonpost ≥ {goal}× Dovecot: {verdict} ({'–' if r is None else f'{r:.2f}×'})")
    else:
        verdict = "n/a (a run failed)" if r is None else ("met" if r <= goal else "NOT met")
        print(f"- target, {label}: pigeonpost ≤ {goal} KiB: {verdict} ({'–' if r is None else f'{r:.1f} KiB'})")
for (s, c), rows in sorted(sess.items()):
    for r in rows:
        if r.get("errors"):
            print(f"- WARNING: {NAME[s]}, {c} client(s), run {r.get('run')}: {r['errors']} failed sessions, e.g. "
                  + "; ".join(r.get("error_samples", [])[:2]))
        if r.get("unclean_close"):
            print(f"- note: {NAME[s]}, {c} client(s), run {r.get('run')}: {r['unclean_close']} sessions where the "
                  "server did not close the connection within 5 s of the LOGOUT reply")
for r in mbsync:
    if not mbsync_ok(r):
        print(f"- WARNING: mbsync (FSync {r['fsync']}, {r['mode']}) from {NAME[r['server']]}, run {r['run']}: rc {r['rc']}, "
              f"{r['msgs']} of {r['expected']} messages" + ("" if r.get("content_ok") else
                                                           ", content: " + "; ".join(r.get("content_problems", [])[:2])))
for r in idle:
    if r["clients_idle"] != r["clients_requested"] or r["errors"]:
        print(f"- WARNING: idle ({r.get('mode')}) on {NAME[r['server']]}, run {r.get('run')}: {r['clients_idle']} of "
              f"{r['clients_requested']} connections idle, e.g. " + "; ".join(r.get("error_samples", [])[:2]))
    elif r.get("alive_at_end") != r["clients_idle"]:
        print(f"- WARNING: idle ({r.get('mode')}) on {NAME[r['server']]}, run {r.get('run')}: only {r.get('alive_at_end')} "
              f"of {r['clients_idle']} connections answered DONE after the hold")
overl = [r for rows in sess.values() for r in rows if r.get("overlap")] + [r for r in mbsync + idle if r.get("overlap")]
if overl:
    print(f"- WARNING: {len(overl)} measured run(s) overlapped another benchmark (see waits.log)")
