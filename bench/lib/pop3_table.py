#!/usr/bin/env python3
"""pop3_table.py RESULTS_DIR -- turn bench/pop3/run.sh raw results into Markdown.

Reads RESULTS_DIR/sessions_{dovecot,pigeonpost}_c<N>.jsonl (one JSON object per
run, written by bench/lib/pop3_load.py plus run.sh's pp_vmhwm_kb),
fetchmail.jsonl, prewarm.jsonl and meta.json, and prints the comparison
tables. Medians over runs, min..max in brackets where there is more than one
run; ratios are pigeonpost / Dovecot of the medians. Standard library only.
"""
import os
import sys

sys.dont_write_bytecode = True  # no root-owned __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py
from common import (DOVECOT_SIDE as SERVERS, NAME, cpu_rows, fmt, load_jsonl, load_meta, load_sessions,  # noqa: E402
                    med, per_session_cpu_ms, prewarm_table, print_targets, pull_cpu_ratio, pull_row, session_row,
                    session_warnings)

d = sys.argv[1]
TARGET = 1.5

meta = load_meta(d)
sess, concs = load_sessions(d)  # (server, conc) -> rows
fetch = load_jsonl(os.path.join(d, "fetchmail.jsonl"))
floor = load_jsonl(os.path.join(d, "floor.jsonl"))
prewarm = {r.get("server"): r for r in load_jsonl(os.path.join(d, "prewarm.jsonl"))}
present = [s for s in SERVERS if any(k[0] == s for k in sess) or any(r["server"] == s for r in fetch) or s in prewarm]


def fetch_ok(r):
    """a pull that got every message, byte for byte (BSMTP sink), and left the maildrop as it should:
    untouched (keep) or empty (delete)"""
    left_ok = r["left_on_server"] == (0 if r["mode"] == "delete" else r["expected"])
    return r["rc"] in (0, 1) and r["msgs"] == r["expected"] and left_ok and r.get("content_ok") is not False


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
        dv, pp, r, cell = session_row(sess, c, ok_rows, "sessions_per_s", 1)
        if dv and pp:
            targets.append((f"sessions, {c} client(s)", r, TARGET, ">="))
        print(f"| {c} | {cell['rate']} | {fmt(med(dv, 'cmds_per_s'))} | {fmt(med(pp, 'cmds_per_s'))} | {cell['lat']} | "
              f"{fmt(per_session_cpu_ms(dv), 2)} / {fmt(per_session_cpu_ms(pp), 2)} | {cell['dmem']} | {cell['pmem']} | "
              f"{cell['errs']} |")
    print()
    print("Where the CPU went (median per run, % of all CPUs over the run; the clients run on the same CPUs):")
    print()
    print("| clients | server | server CPU | client CPU | machine busy | other | client procs | per-command p50 ms (USER PASS STAT UIDL RETR QUIT; connect) |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for c, s, rows, cpu, pc in cpu_rows(sess, concs, present, ("USER", "PASS", "STAT", "UIDL", "RETR", "QUIT", "connect")):
        print(f"| {c} | {NAME[s]} | {cpu} | {rows[0].get('procs', '–')} | {' '.join(pc[:6])}; {pc[6]} |")
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
        r = pull_row(labels[mode], rows, fetch_ok, "fetchmail_cpu_s")
        if rows["dovecot"] and rows["pigeonpost"] and mode != "keep-first":
            targets.append((f"fetchmail {mode}", r, TARGET, ">="))
        if rows["dovecot"] and rows["pigeonpost"]:
            # issue 19: the server's CPU per pull
            targets.append((f"fetchmail server CPU per pull (mean of the runs), {mode}", pull_cpu_ratio(rows, fetch_ok), 0.5, "<=x"))
    print()
    if floor:
        print("**The floor**: the same pulls from `bench/lib/pop3_floor.c` (every message in memory, one read "
              "and one write per command, no files: the kernel's per-command cost, which every server pays), "
              "and each server's CPU above it, means of the runs in ms:")
        print()
        print("| pull | runs | floor | Dovecot | pigeonpost | Dovecot above the floor | pigeonpost above the floor | "
              "ratio above the floor | content served by the floor |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for mode in ("keep", "delete"):
            fl = [r["floor_cpu_ns"] / 1e6 for r in floor
                  if r["mode"] == mode and r.get("rc") == 0 and r.get("floor_cpu_ns") is not None]
            if not fl:
                continue
            ok = all((r.get("check") or {}).get("content_ok") for r in floor if r["mode"] == mode)
            f = sum(fl) / len(fl)
            mean = {}
            for srv in SERVERS:
                v = [r["server_cpu_s"] * 1000 for r in fetch if r["mode"] == mode and r["server"] == srv and fetch_ok(r)]
                mean[srv] = sum(v) / len(v) if v else None
            dv, pp = mean["dovecot"], mean["pigeonpost"]
            above = (pp - f) / (dv - f) if dv is not None and pp is not None and dv > f else None
            print(f"| {labels[mode]} | {len(fl)} | {f:.1f} | {fmt(dv, 1)} | {fmt(pp, 1)} | "
                  f"{fmt(dv - f if dv is not None else None, 1)} | {fmt(pp - f if pp is not None else None, 1)} | "
                  f"{fmt(above, 2)}{'×' if above is not None else ''} | "
                  f"{'identical to the template' if ok else '**differs**'} |")
        print()
        fo = [r for r in floor if r["mode"] == "fileops" and r.get("renames_ns") and r.get("unlinks_ns")]
        if fo:
            ren = [r["renames_ns"] / 1e6 for r in fo]
            unl = [r["unlinks_ns"] / 1e6 for r in fo]
            tot = [a + b for a, b in zip(ren, unl)]
            print(f"The delete pull's file operations alone (both servers make them: 1,000 renames new/ → cur/ at the "
                  f"first look, 1,000 unlinks at QUIT; `pop3_floor --fileops` on a fresh copy prepared as the pulls' "
                  f"are), {len(fo)} runs: renames {sum(ren) / len(ren):.1f} ms ({min(ren):.1f}..{max(ren):.1f}), "
                  f"unlinks {sum(unl) / len(unl):.1f} ms ({min(unl):.1f}..{max(unl):.1f}), together "
                  f"{sum(tot) / len(tot):.1f} ms.")
            print()

if prewarm:
    print("First session of each fresh maildrop (USER PASS STAT LIST UIDL, RETR of every message, QUIT; "
          "the server builds its index and moves new/ to cur/), and the content check against the generated Maildir:")
    print()
    prewarm_table(prewarm, present, "maildrops",
                  "identical to the template (every message, LIST sizes, STAT octets, unique UIDLs)")

print_targets(targets)
session_warnings(sess, "QUIT")
for r in fetch:
    if not fetch_ok(r):
        print(f"- WARNING: fetchmail {r['mode']} from {NAME[r['server']]}, run {r['run']}: rc {r['rc']}, "
              f"{r['msgs']} of {r['expected']} messages, {r['left_on_server']} left on the server"
              + ("" if r.get("content_ok") is not False else
                 ", content differs from the template: " + "; ".join(r.get("content_problems", [])[:2])))
