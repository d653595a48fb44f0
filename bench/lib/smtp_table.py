#!/usr/bin/env python3
"""smtp_table.py RESULTS_DIR -- turn bench/smtp/run.sh raw results into Markdown.

Reads RESULTS_DIR/{postfix,pigeonpost}_c<N>.jsonl (one JSON object per run,
written by bench/lib/smtp_load.sh plus the fields run.sh adds: server,
pp_vmhwm_kb) and prints the comparison tables. Medians over runs; min..max in
brackets where there is more than one run. Python standard library only.
"""
import json
import os
import statistics
import sys

sys.dont_write_bytecode = True  # no root-owned __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py
from common import fmt, load_meta, load_sessions, med, rng, vals  # noqa: E402

d = sys.argv[1]
runs, concs = load_sessions(d, prefix="", servers=("postfix", "pigeonpost"))  # (server, conc) -> [dict]


def rng_runs(rows, k, nd=0):
    return rng(vals(rows, k), nd, len(rows), "run(s) incomplete")


def pq(rows, a, b):
    x, y = med(rows, a), med(rows, b)
    return "–" if x is None and y is None else f"{fmt(x, 1)} / {fmt(y, 1)}"


def cpu_ms(rows):
    v = [r["server_cpu_s"] * 1000 / r["count"] for r in rows if r.get("server_cpu_s") is not None and r.get("count")]
    return fmt(statistics.median(v), 2) if v else "–"


def mb(kb):
    return None if kb is None else kb / 1024


meta = load_meta(d)
if meta:
    print(f"{meta.get('count', '?')} messages x {meta.get('size', '?')} B per run, "
          f"{meta.get('runs', '?')} run(s) per server and concurrency, interleaved "
          f"(Postfix, pigeonpost, ...), settle {meta.get('settle', '?')} s; {meta.get('host', '')}")
    print()

print("| clients | Postfix msg/s stored | pigeonpost msg/s stored | ratio pp/Postfix | "
      "Postfix CPU ms/msg | pigeonpost CPU ms/msg | Postfix tree peak RSS / PSS MB | pigeonpost peak RSS MB |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios = {}
for c in concs:
    pf, pp = runs.get(("postfix", c), []), runs.get(("pigeonpost", c), [])
    a, b = med(pf, "e2e_rate"), med(pp, "e2e_rate")
    ratio = b / a if a and b and len(vals(pf, "e2e_rate")) == len(pf) and len(vals(pp, "e2e_rate")) == len(pp) else None
    ratios[c] = ratio
    pfmem = "–"
    if pf:
        pfmem = f"{fmt(mb(max(vals(pf, 'peak_rss_kb') or [0])))} / {fmt(mb(max(vals(pf, 'peak_pss_kb') or [0])))}"
    ppmem = fmt(mb(max(vals(pp, "pp_vmhwm_kb") or [0])), 1) if vals(pp, "pp_vmhwm_kb") else "–"
    print(f"| {c} | {rng_runs(pf, 'e2e_rate')} | {rng_runs(pp, 'e2e_rate')} | "
          f"{'–' if ratio is None else f'**{ratio:.2f}×**'} | {cpu_ms(pf)} | {cpu_ms(pp)} | {pfmem} | {ppmem} |")

# the disk's ceiling (CEILING=1): fsync_limit -t c -D before each run
ceil = {}
for c in concs:
    path = os.path.join(d, f"ceiling_c{c}.jsonl")
    if os.path.exists(path):
        rows = [json.loads(line) for line in open(path) if line.strip()]
        ceil[c] = rows
share = {}
if ceil:
    print()
    print("The disk's ceiling, measured before each run (bench/lib/fsync_limit.c -t <clients> -D: "
          "per 5 KiB file write + fsync + rename into new/ + fsync new/, c writers), and each "
          "server's stored rate as a share of it (medians over runs):")
    print()
    print("| clients | ceiling files/s | ceiling p50 / p99 ms | Postfix share | pigeonpost share |")
    print("|---:|---:|---:|---:|---:|")
    for c in concs:
        rows = ceil.get(c, [])
        cm = med(rows, "rate")
        pf, pp = runs.get(("postfix", c), []), runs.get(("pigeonpost", c), [])

        def pct(x):
            return "–" if x is None or not cm else f"{100 * x / cm:.0f} %"
        a, b = med(pf, "e2e_rate"), med(pp, "e2e_rate")
        share[c] = None if b is None or not cm else b / cm
        print(f"| {c} | {rng_runs(rows, 'rate')} | {pq(rows, 'p50_ms', 'p99_ms')} | {pct(a)} | {pct(b)} |")

print()
print("Latency, ms (median over runs). *accept*: sequential probe, connect until the "
      "DATA reply; *stored*: connect until the probe is in the Maildir's new/; "
      "*txn*: mean SMTP transaction of the load itself (Little's law).")
print()
print("| clients | Postfix accept p50 / p99 | pigeonpost accept p50 / p99 | Postfix stored p50 / p99 | "
      "pigeonpost stored p50 / p99 | probes Postfix / pp | Postfix txn | pigeonpost txn | Postfix accept msg/s | pigeonpost accept msg/s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in concs:
    pf, pp = runs.get(("postfix", c), []), runs.get(("pigeonpost", c), [])
    print(f"| {c} | {pq(pf, 'probe_accept_p50_ms', 'probe_accept_p99_ms')} | "
          f"{pq(pp, 'probe_accept_p50_ms', 'probe_accept_p99_ms')} | "
          f"{pq(pf, 'probe_e2e_p50_ms', 'probe_e2e_p99_ms')} | {pq(pp, 'probe_e2e_p50_ms', 'probe_e2e_p99_ms')} | "
          f"{fmt(med(pf, 'probes'))} / {fmt(med(pp, 'probes'))} | "
          f"{fmt(med(pf, 'mean_txn_latency_ms'), 1)} | {fmt(med(pp, 'mean_txn_latency_ms'), 1)} | "
          f"{fmt(med(pf, 'accept_rate'))} | {fmt(med(pp, 'accept_rate'))} |")

# RESTRICTIONS=1: the local DNS server's share (bench/lib/fake_dns.py), and the
# whole machine's busy CPU per message (server, DNS, smtp-source, probes)
if any(r.get("dns_queries") is not None for rows in runs.values() for r in rows):
    def per_msg(rows, k, scale=1.0, nd=2):
        v = [r[k] * scale / r["count"] for r in rows if r.get(k) is not None and r.get("count")]
        return fmt(statistics.median(v), nd) if v else "–"
    print()
    print("Local DNS server (bench/lib/fake_dns.py, one Python process) and the whole machine, "
          "medians per message:")
    print()
    print("| clients | DNS queries/msg Postfix / pigeonpost | DNS server CPU ms/msg Postfix / pigeonpost | "
          "machine busy CPU ms/msg Postfix / pigeonpost |")
    print("|---:|---:|---:|---:|")
    for c in concs:
        pf, pp = runs.get(("postfix", c), []), runs.get(("pigeonpost", c), [])
        print(f"| {c} | {per_msg(pf, 'dns_queries')} / {per_msg(pp, 'dns_queries')} | "
              f"{per_msg(pf, 'dns_cpu_s', 1000)} / {per_msg(pp, 'dns_cpu_s', 1000)} | "
              f"{per_msg(pf, 'sys_busy_cpu_s', 1000)} / {per_msg(pp, 'sys_busy_cpu_s', 1000)} |")

# MILTER=rspamd: rspamd's CPU (one rspamd for both servers), each server's own,
# their sum, and the whole machine's busy CPU, per message
if any(r.get("rspamd_cpu_s") is not None for rows in runs.values() for r in rows):
    def per_msg_ms(rows, k):
        v = [r[k] * 1000 / r["count"] for r in rows if r.get(k) is not None and r.get("count")]
        return fmt(statistics.median(v), 2) if v else "–"

    def sum_ms(rows):
        v = [(r["server_cpu_s"] + r["rspamd_cpu_s"]) * 1000 / r["count"] for r in rows
             if r.get("server_cpu_s") is not None and r.get("rspamd_cpu_s") is not None and r.get("count")]
        return fmt(statistics.median(v), 2) if v else "–"
    print()
    print("rspamd as the milter of both servers (MILTER=rspamd), CPU ms per message, medians over runs:")
    print()
    print("| clients | server Postfix / pigeonpost | rspamd, behind Postfix / pigeonpost | "
          "server + rspamd Postfix / pigeonpost | machine busy Postfix / pigeonpost | stored copies with rspamd's verdict, Postfix / pigeonpost |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c in concs:
        pf, pp = runs.get(("postfix", c), []), runs.get(("pigeonpost", c), [])

        def scanned(rows):
            return f"{sum(r.get('rspamd_clean') or 0 for r in rows)}/{sum(r.get('count') or 0 for r in rows)}"
        print(f"| {c} | {cpu_ms(pf)} / {cpu_ms(pp)} | {per_msg_ms(pf, 'rspamd_cpu_s')} / {per_msg_ms(pp, 'rspamd_cpu_s')} | "
              f"{sum_ms(pf)} / {sum_ms(pp)} | {per_msg_ms(pf, 'sys_busy_cpu_s')} / {per_msg_ms(pp, 'sys_busy_cpu_s')} | "
              f"{scanned(pf)} / {scanned(pp)} |")

# problems worth a look
notes = []
for (s, c), rows in sorted(runs.items()):
    for i, r in enumerate(rows, 1):
        if r.get("smtp_source_rc"):
            notes.append(f"{s} -s {c} run {i}: smtp-source exited {r['smtp_source_rc']}")
        if r.get("e2e_rate") is None:
            notes.append(f"{s} -s {c} run {i}: only {r.get('stored')} of {r.get('count')} messages stored before the time limit")
pp_hwm = [x for (s, _), rows in runs.items() if s == "pigeonpost" for x in vals(rows, "pp_vmhwm_kb")]
print()
if 20 in ratios:
    r = ratios[20]
    print(f"- target, 20 clients, pigeonpost ≥ 2× Postfix stored rate: "
          f"{'n/a' if r is None else ('met' if r >= 2 else 'NOT met')} ({'–' if r is None else f'{r:.2f}×'})")
if share.get(20) is not None:
    x = share[20]
    print(f"- target, 20 clients, pigeonpost ≥ 50 % of the disk's 20-writer ceiling: "
          f"{'met' if x >= 0.5 else 'NOT met'} ({100 * x:.0f} %)")
if 1 in ratios:
    r = ratios[1]
    print(f"- target, 1 client, pigeonpost ≥ 3× Postfix stored rate: "
          f"{'n/a' if r is None else ('met' if r >= 3 else 'NOT met')} ({'–' if r is None else f'{r:.2f}×'})")
if pp_hwm:
    m = max(pp_hwm) / 1024
    print(f"- target, pigeonpost peak RSS < 30 MB during the run: {'met' if m < 30 else 'NOT met'} ({m:.1f} MB)")
for n in notes:
    print(f"- WARNING: {n}")
rc = os.path.join(d, "restrict_check.md")
if os.path.exists(rc):
    print()
    print("Restriction replies (RESTRICTIONS=1; the same MAIL FROM / RCPT TO to each server before the runs):")
    print()
    print(open(rc).read().rstrip())
fs = os.path.join(d, "fsync_check.txt")
if os.path.exists(fs):
    print()
    print("Durability check (strace, separate un-timed run):")
    print()
    for line in open(fs):
        print("    " + line.rstrip())
