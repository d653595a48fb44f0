#!/usr/bin/env python3
"""imap_table.py RESULTS_DIR -- turn bench/imap/run.sh raw results into Markdown.

Reads RESULTS_DIR/sessions_{dovecot,pigeonpost}_c<N>.jsonl (one JSON object per
run, written by bench/lib/imap_load.py plus run.sh's pp_vmhwm_kb and overlap),
mbsync.jsonl, idle.jsonl, resync.jsonl, prewarm.jsonl and meta.json, and prints
the comparison tables and the targets (commands/s at least 2.5x Dovecot's at 10
clients and more, 1.5x at fewer, and the mbsync rate 1.5x; at most 64 KiB of
server memory per idle connection; a QRESYNC reselect at most 0.5x Dovecot's
server CPU). Medians over
runs, min..max in brackets where there is more than one run; ratios are
pigeonpost / Dovecot of the medians. Adapted from bench/lib/pop3_table.py.
Standard library only.
"""
import os
import statistics
import sys

sys.dont_write_bytecode = True  # no root-owned __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py
from common import (DOVECOT_SIDE as SERVERS, NAME, cpu_rows, fmt, load_jsonl, load_meta, load_sessions,  # noqa: E402
                    med, per_session_cpu_ms, prewarm_table, print_targets, pull_cpu_ratio, pull_row, rng, session_row,
                    session_warnings, vals)

d = sys.argv[1]
TARGET = 1.5
SESSION_TARGET_MANY = 2.5  # commands/s at 10 clients and more
RESYNC_TARGET = 0.5  # QRESYNC reselect: server CPU, pigeonpost / Dovecot
PULL_CPU_TARGET = 0.5  # mbsync pulls: server CPU, pigeonpost / Dovecot
IDLE_TARGET_KIB = 32
MANY_RSS_TARGET_MB = 400  # all of IDLE_MANY idle connections held
MANY_CPU_TARGET_PCT = 1.0  # server CPU while they idle
CMDS = ("connect", "LOGIN", "SELECT", "FETCH_ALL", "FETCH_BODY", "STORE", "SEARCH", "LOGOUT")

meta = load_meta(d)
sess, concs = load_sessions(d)  # (server, conc) -> rows
mbsync = load_jsonl(os.path.join(d, "mbsync.jsonl"))
idle = load_jsonl(os.path.join(d, "idle.jsonl"))
resync = load_jsonl(os.path.join(d, "resync.jsonl"))
large = load_jsonl(os.path.join(d, "large.jsonl"))
prewarm = {r.get("server"): r for r in load_jsonl(os.path.join(d, "prewarm.jsonl"))}
present = [s for s in SERVERS if any(k[0] == s for k in sess) or any(r["server"] == s for r in mbsync + idle)
           or s in prewarm]


def ok_rows(rows):
    """runs that completed sessions (a run with some failed sessions still counts: its failures are
    listed in the errors column and below the tables)"""
    return [r for r in rows if r.get("sessions")]


def mbsync_ok(r):
    return r["rc"] == 0 and r["msgs"] == r["expected"] and r.get("content_ok") is True


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
        dv, pp, r, cell = session_row(sess, c, ok_rows, "cmds_per_s", 0)
        if dv and pp:
            targets.append((f"commands/s, {c} client(s)", r, SESSION_TARGET_MANY if c >= 10 else TARGET, ">="))
        print(f"| {c} | {cell['rate']} | {fmt(med(dv, 'sessions_per_s'), 1)} / {fmt(med(pp, 'sessions_per_s'), 1)} | "
              f"{cell['lat']} | {fmt(per_session_cpu_ms(dv), 1)} / {fmt(per_session_cpu_ms(pp), 1)} | {cell['dmem']} | "
              f"{cell['pmem']} | {cell['errs']} |")
    print()
    print("Where the time and CPU went (median per run; CPU as % of all CPUs over the run; the clients run on the same CPUs):")
    print()
    print("| clients | server | server CPU | client CPU | machine busy | other | per-command p50 ms (" + " ".join(CMDS[1:]) + "; connect) |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for c, s, rows, cpu, pc in cpu_rows(sess, concs, present, CMDS[1:] + CMDS[:1]):
        print(f"| {c} | {NAME[s]} | {cpu} | {' '.join(pc[:-1])}; {pc[-1]} |")
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
        label = f"`FSync {fs}`, " + ("first pull of the fresh copy" if mode == "first" else "warm mailbox")
        r = pull_row(label, rows, mbsync_ok, "mbsync_cpu_s")
        if rows["dovecot"] and rows["pigeonpost"] and mode != "first":
            targets.append((f"mbsync rate, FSync {fs}", r, TARGET, ">="))
        if rows["dovecot"] and rows["pigeonpost"]:
            # issue 19: the server's CPU per pull, first and warm
            targets.append((f"mbsync server CPU per pull (mean of the runs), FSync {fs}, {'first' if mode == 'first' else 'warm'}",
                            pull_cpu_ratio(rows, mbsync_ok), PULL_CPU_TARGET, "<=x"))
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
    many = [r for r in idle if r.get("mode") == "many" and r["server"] == "pigeonpost"]
    if many:
        print(f"**Many idle connections** (pigeonpost only: Dovecot runs one imap process per connection, "
              f"1,024 at most by default): {many[0]['clients_requested']:,} connections (LOGIN, SELECT INBOX of "
              f"{meta.get('msgs', '?'):,} messages, IDLE, {meta.get('idle_many_parallel', '?')} logins at a time), "
              "held for the idle hold; the server's whole RSS with all of them idle:")
        print()
        print("| run | connections idle / asked | RSS before → all idle MB | KiB/conn (RSS) | "
              "server CPU while idle | alive at the end | logins took s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in many:
            print(f"| {r.get('run')} | {r['clients_idle']:,} / {r['clients_requested']:,} | "
                  f"{r['before']['rss_kb'] / 1024:.0f} → {r['after']['rss_kb'] / 1024:.0f} | "
                  f"{fmt(r.get('rss_per_client_kb'), 1)} | {fmt(r.get('idle_server_cpu_pct'), 1)} % | "
                  f"{r.get('alive_at_end'):,} | {fmt(r.get('connect_all_s'), 1)} |")
        print()
        full = [r for r in many if r["clients_idle"] == r["clients_requested"] and not r["errors"]]
        rss = max((r["after"]["rss_kb"] / 1024 for r in full), default=None) if len(full) == len(many) else None
        cpu = max((r["idle_server_cpu_pct"] for r in full), default=None) if len(full) == len(many) else None
        targets.append((f"{many[0]['clients_requested']:,} idle connections, server RSS MB", rss, MANY_RSS_TARGET_MB, "<=abs"))
        targets.append((f"{many[0]['clients_requested']:,} idle connections, server CPU % while idle", cpu,
                        MANY_CPU_TARGET_PCT, "<=abs"))

if resync:
    r0 = resync[0]
    print(f"**QRESYNC reselect** (RFC 7162): a {r0['msgs']:,}-message INBOX; per round a second session toggles "
          f"\\Flagged on {r0['changed']} messages, then the client re-selects with `SELECT INBOX (QRESYNC "
          "(uidvalidity modseq))` and gets one FETCH per changed message; for context, what a client without "
          "QRESYNC does to learn the same: `SELECT INBOX` + `UID FETCH 1:* (FLAGS)`. Server CPU (its process tree, "
          "from /proc) per reselect, median (min..max) over rounds; every answer checked:")
    print()
    print("| measure | rounds | Dovecot ms CPU | pigeonpost ms CPU | pp / Dovecot | Dovecot ms wall | pigeonpost ms wall | "
          "checks failed Dovecot / pp |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = {s: [r for r in resync if r["server"] == s] for s in SERVERS}
    for key, label in (("qresync", "QRESYNC reselect"), ("plain", "SELECT + UID FETCH 1:* (FLAGS)")):
        dv = vals(rows["dovecot"], f"{key}_cpu_ms")
        pp = vals(rows["pigeonpost"], f"{key}_cpu_ms")
        bad = lambda rs: sum(1 for r in rs if not r["ok"])
        # the ratio of the sums: each round's figure is a few clock ticks
        ratio = sum(pp) / sum(dv) if dv and pp and sum(dv) > 0 else None
        if key == "qresync" and rows["pigeonpost"]:
            ok = not bad(rows["dovecot"]) and not bad(rows["pigeonpost"])
            targets.append(("QRESYNC reselect server CPU", ratio if ok else None, RESYNC_TARGET, "<=x"))
        print(f"| {label} | {max(len(rows['dovecot']), len(rows['pigeonpost']))} | {rng(dv, 2)} | {rng(pp, 2)} | "
              f"{'–' if ratio is None else f'{ratio:.2f}×'} | {rng(vals(rows['dovecot'], f'{key}_wall_ms'), 1)} | "
              f"{rng(vals(rows['pigeonpost'], f'{key}_wall_ms'), 1)} | {bad(rows['dovecot'])} / {bad(rows['pigeonpost'])} |")
    print()

if prewarm:
    print("First session of each fresh mailbox (LOGIN, SELECT, UID FETCH 1:* (FLAGS RFC822.SIZE), "
          "UID FETCH 1:* (BODY.PEEK[]), SEARCH UNSEEN, LOGOUT; the server builds its index and moves new/ to cur/), "
          "and the content check against the generated Maildir:")
    print()
    prewarm_table(prewarm, present, "mailboxes", "identical to the template (every body; RFC822.SIZE = body length; "
                                                   "UIDs unique and ascending; all unseen)")

if large:
    ops = {}
    for r in large:
        for name, v in r.get("ops", {}).items():
            ops.setdefault(name, {})[r["server"]] = v
    n = large[0]["msgs"]
    print(f"**A large mailbox** ({n:,} messages in one INBOX, fresh in new/; bench/lib/imap_large.py): "
          "server CPU and wall time per operation; the first SELECT on the fresh Maildir, the rest after a "
          "restart of the server (`select` averages three SELECTs, each on a new connection; `sort_date` "
          "follows the searches; the `_cold` pair after another restart, nothing searched before). CPU from "
          "the threads' schedstat (ns); an operation marked *ticks* was counted in /proc's 10 ms ticks "
          "instead, because a thread of that server ended during it:")
    print()
    print("| operation | Dovecot ms CPU | pigeonpost ms CPU | pp / Dovecot | Dovecot ms wall | pigeonpost ms wall |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, per in ops.items():
        dv, pp = per.get("dovecot", {}), per.get("pigeonpost", {})
        a, b = dv.get("cpu_ms"), pp.get("cpu_ms")
        r = b / a if a and b is not None else None
        ticks = [NAME[srv] for srv, v in (("dovecot", dv), ("pigeonpost", pp)) if v.get("cpu_source") == "ticks"]
        label = name + (f" (*ticks*: {', '.join(ticks)})" if ticks else "")
        print(f"| {label} | {fmt(a, 1)} | {fmt(b, 1)} | {'–' if r is None else f'{r:.2f}×'} | "
              f"{fmt(dv.get('wall_ms'), 1)} | {fmt(pp.get('wall_ms'), 1)} |")
        if a and b is not None and not name.endswith("_first") and name != "noop":
            targets.append((f"large mailbox, {name}, server CPU", r, 0.5, "<=x"))
    # what STATUS costs beyond the round trip every command pays
    above = {s: ops.get("status", {}).get(s, {}).get("cpu_ms", 0) - ops.get("noop", {}).get(s, {}).get("cpu_ms", 0)
             for s in ("dovecot", "pigeonpost") if "cpu_ms" in ops.get("noop", {}).get(s, {})}
    if len(above) == 2:
        print()
        print(f"STATUS beyond a NOOP round trip (`status` − `noop`, ms CPU): Dovecot {fmt(above['dovecot'], 1)}, "
              f"pigeonpost {fmt(above['pigeonpost'], 1)}")
        user = {s: [ops[k].get(s, {}).get("user_ms_total") for k in ("status", "noop")]
                for s in ("dovecot", "pigeonpost")}
        runs = ops["status"].get("pigeonpost", {}).get("runs")
        pin = ops["status"].get("pigeonpost", {}).get("pinned_cpu")
        print(f"(`status` and `noop`: median of {runs} alternated passes, CPU from the threads' schedstat, "
              + ("client and server unpinned)" if pin is None else f"client and server on CPU {pin})"))
        print(f"User-space CPU of those passes (the servers' own code; the rest is the kernel's socket and file "
              f"work), ms summed over {runs} passes, status / noop: "
              + "; ".join(f"{NAME[s]} {fmt(u[0], 0)} / {fmt(u[1], 0)}" for s, u in user.items()))
    mem = {r["server"]: r for r in large if r.get("phase") == "later"}
    if mem:
        print()
        print("Memory while one session holds it selected (growth of the server tree from before the later "
              "sessions), per message: " + "; ".join(
                  f"{NAME[s]} RSS {fmt(m.get('rss_growth_b_per_msg'))} B, PSS {fmt(m.get('pss_growth_b_per_msg'))} B"
                  for s, m in mem.items()))
        pp = mem.get("pigeonpost", {}).get("rss_growth_b_per_msg")
        if pp is not None:
            targets.append(("large mailbox, resident memory per message", float(pp), 100, "<=abs"))
    bad = [r for r in large if not r.get("ok")]
    for r in bad:
        print(f"- WARNING: large mailbox on {NAME.get(r['server'], r['server'])} ({r.get('phase')}): "
              + "; ".join(r.get("problems", [])))
    print()

print_targets(targets)
session_warnings(sess, "LOGOUT")
for r in mbsync:
    if not mbsync_ok(r):
        print(f"- WARNING: mbsync (FSync {r['fsync']}, {r['mode']}) from {NAME[r['server']]}, run {r['run']}: rc {r['rc']}, "
              f"{r['msgs']} of {r['expected']} messages" + ("" if r.get("content_ok") else
                                                           ", content: " + "; ".join(r.get("content_problems", [])[:2])))
for r in resync:
    if not r["ok"]:
        print(f"- WARNING: QRESYNC resync on {NAME[r['server']]}, round {r['round']}: " + "; ".join(r["problems"][:2]))
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
