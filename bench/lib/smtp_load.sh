#!/bin/bash
#
# Copied from the project's shared reference harness (shared/bench/smtp_load.sh,
# "SMTP inbound throughput/latency benchmark"), reused here by its authors
# (this project) so a checkout can run bench/smtp/run.sh without shared/. Keep
# it in sync with the original. One change: smtp-source starts only once the
# watcher has counted its baseline (the "ready" file), not after a fixed
# 0.5 s: on a loaded machine Python's start-up took longer, the first
# messages were counted into the baseline, and the run never looked complete.
# smtp_load.sh -- SMTP inbound throughput/latency benchmark.
#
# Drives Postfix's smtp-source (C, one message per connection unless -d) at a
# target SMTP server and, if a Maildir "new/" directory (or a count command) is
# given, polls it until every message has been stored: accepted->stored rate.
# Server-agnostic: point HOST/PORT/TO/MAILDIR at any server.  Stdlib only
# (bash + smtp-source + python3).  Bounded: COUNT messages, TIMEOUT s per run.
#
# Options (or the env vars in brackets):
#   -H host      [HOST=127.0.0.1]       -P port   [SMTP_PORT=2525]
#   -m msgs      [COUNT=5000]           -l bytes  [SIZE=5120]   (body length)
#   -s sessions  [CONC=20]              -r runs   [RUNS=3]
#   -f from      [FROM=a@example.org]   -t to     [TO=john@example.com]
#   -M dir       [MAILDIR=]   directory whose file count grows with each stored
#                             message (e.g. .../john/new); empty = accept-only
#   -C cmd       [COUNT_CMD=] shell command printing the stored count (instead of -M)
#   -X cmd       [CLEAR_CMD=] shell command run before every run, e.g. move the maildir
#                             aside: mv DIR /tmp/pp-reference/trash/x.$(date +%s%N)  (avoid rm: on
#                             journal-less ext4 mass deletion slows the next run, see README)
#   -p "pids"    [SERVER_PIDS=] root pid(s) of the server process tree(s): peak
#                             RSS/PSS and CPU seconds are sampled over the whole tree
#   -T secs      [TIMEOUT=600] per-run bound
#   -d           [KEEPALIVE=1] reuse connections (smtp-source -d)
#   -q n         [PROBES=0]  also send up to n sequential latency probes (python
#                             smtplib) during each run to PROBE_TO, timing
#                             accept and accept->stored latency (p50/p99); needs
#                             PROBE_MAILDIR (the probe recipient's new/ dir)
#                [PROBE_TO=bob@example.com] [PROBE_MAILDIR=] [PROBE_GAP=0.2 s between probes]
#   -o file      [JSON_OUT=] append one JSON object per run to this file
#                [SAMPLE_EVERY=1.0] seconds between RSS/PSS samples of SERVER_PIDS trees
#                [SETTLE=65] seconds to wait (after CLEAR_CMD + sync) before each run;
#                65 s lets ext4-without-journal forget recently deleted inodes
#                (see README); SETTLE=1 for quick, less reproducible runs
# Output: one line per run, then a final "smtp_load:" summary line (medians).
set -uo pipefail

HOST=${HOST:-127.0.0.1}; PORT=${SMTP_PORT:-2525}; COUNT=${COUNT:-5000}; SIZE=${SIZE:-5120}
CONC=${CONC:-20}; RUNS=${RUNS:-3}; FROM=${FROM:-a@example.org}; TO=${TO:-john@example.com}
MAILDIR=${MAILDIR:-}; COUNT_CMD=${COUNT_CMD:-}; CLEAR_CMD=${CLEAR_CMD:-}; SERVER_PIDS=${SERVER_PIDS:-}
TIMEOUT=${TIMEOUT:-600}; KEEPALIVE=${KEEPALIVE:-0}; PROBES=${PROBES:-0}
PROBE_TO=${PROBE_TO:-bob@example.com}; PROBE_MAILDIR=${PROBE_MAILDIR:-}; PROBE_GAP=${PROBE_GAP:-0.2}; JSON_OUT=${JSON_OUT:-}
SAMPLE_EVERY=${SAMPLE_EVERY:-1.0}; SETTLE=${SETTLE:-65}
SMTP_SOURCE=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}

while getopts "H:P:m:l:s:r:f:t:M:C:X:p:T:dq:o:h" o; do
  case $o in
    H) HOST=$OPTARG;; P) PORT=$OPTARG;; m) COUNT=$OPTARG;; l) SIZE=$OPTARG;; s) CONC=$OPTARG;;
    r) RUNS=$OPTARG;; f) FROM=$OPTARG;; t) TO=$OPTARG;; M) MAILDIR=$OPTARG;; C) COUNT_CMD=$OPTARG;;
    X) CLEAR_CMD=$OPTARG;; p) SERVER_PIDS=$OPTARG;; T) TIMEOUT=$OPTARG;; d) KEEPALIVE=1;;
    q) PROBES=$OPTARG;; o) JSON_OUT=$OPTARG;;
    *) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 2;;
  esac
done
[ -x "$SMTP_SOURCE" ] || { echo "smtp-source not found (set SMTP_SOURCE=)" >&2; exit 1; }
[ "$COUNT" -ge 1 ] && [ "$COUNT" -le 1000000 ] && [ "$RUNS" -ge 1 ] && [ "$RUNS" -le 50 ] || { echo "bad COUNT/RUNS" >&2; exit 2; }

# ------------------------------------------------------------------ watcher (python, stdlib)
read -r -d '' WATCH_PY <<'PYEOF'
import json, os, sys, time, smtplib
a = json.loads(sys.argv[1])
deadline = time.time() + a["timeout"]
CLK = os.sysconf("SC_CLK_TCK")

def count_dir(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0

def stored():
    if a["count_cmd"]:
        try:
            return int(os.popen(a["count_cmd"]).read().strip() or 0)
        except ValueError:
            return 0
    return count_dir(a["maildir"])

def ppid_map():
    m = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                s = open(f"/proc/{p}/stat").read()
                r = s[s.rindex(")") + 2:].split()
                m[int(p)] = (int(r[1]), r)
            except (OSError, ValueError):
                pass
    return m

def tree(roots, m):
    kids = {}
    for p, (pp, _) in m.items():
        kids.setdefault(pp, []).append(p)
    out, st = [], list(roots)
    while st:
        p = st.pop()
        if p in m:
            out.append(p)
            st.extend(kids.get(p, []))
    return out

def mem_cpu(roots):
    m = ppid_map()
    pids = tree(roots, m)
    rss = pss = 0
    cpu = 0.0
    for p in pids:
        r = m[p][1]
        cpu += (int(r[11]) + int(r[12])) / CLK          # utime+stime of live procs
        if p in roots:
            cpu += (int(r[13]) + int(r[14])) / CLK      # + reaped children (cutime+cstime)
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return len(pids), rss, pss, cpu

def sys_cpu():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f))
    idle = v[3] + v[4]
    return (sum(v) - idle) / CLK, sum(v) / CLK

roots = [int(x) for x in a["pids"].split()] if a["pids"] else []
mode_store = bool(a["maildir"] or a["count_cmd"])
base = stored() if mode_store else 0
target = base + a["count"]
n0, rss0, pss0, cpu0 = mem_cpu(roots) if roots else (0, 0, 0, 0.0)
sb0, st0 = sys_cpu()
peak = {"rss_kb": rss0, "pss_kb": pss0, "nproc": n0}
open(a["sig"] + ".ready", "w").close()   # baseline taken: the shell may start smtp-source
# signal file: the shell writes the smtp-source start/end times
done_send = None
t0 = None
last_sample = 0
probes = []   # (accept_s, e2e_s)
probe_i = 0
next_probe = 0.0

def send_probe(i):
    tok = f"BENCHPROBE-{os.getpid()}-{i}-{time.time_ns()}"
    before = count_dir(a["probe_maildir"])
    t = time.time()
    s = smtplib.SMTP(a["host"], a["port"], timeout=30)
    s.ehlo("probe.example.org")
    body = ("Subject: %s\r\nFrom: %s\r\nTo: %s\r\n\r\n" % (tok, a["from"], a["probe_to"])) + ("x" * 76 + "\r\n") * max(1, a["size"] // 78)
    s.sendmail(a["from"], [a["probe_to"]], body)
    t_acc = time.time()
    try:
        s.quit()
    except Exception:
        pass
    # wait for it to be stored (bounded)
    lim = time.time() + 60
    while time.time() < lim:
        if count_dir(a["probe_maildir"]) > before:
            return (t_acc - t, time.time() - t)
        time.sleep(0.002)
    return (t_acc - t, None)

def step():
    global t0, done_send, last_sample, probe_i, next_probe
    now = time.time()
    if t0 is None and os.path.exists(a["sig"] + ".start"):
        t0 = float(open(a["sig"] + ".start").read())
    if done_send is None and os.path.exists(a["sig"] + ".end"):
        done_send = float(open(a["sig"] + ".end").read())
    if roots and now - last_sample >= a["sample_every"]:
        n, rss, pss, _ = mem_cpu(roots)
        peak["rss_kb"] = max(peak["rss_kb"], rss); peak["pss_kb"] = max(peak["pss_kb"], pss)
        peak["nproc"] = max(peak["nproc"], n)
        last_sample = now
    if (a["probes"] and probe_i < a["probes"] and t0 is not None and done_send is None
            and a["probe_maildir"] and now >= next_probe):
        try:
            probes.append(send_probe(probe_i))
        except Exception as e:
            print(f"probe error: {e}", file=sys.stderr)
        probe_i += 1
        next_probe = time.time() + a["probe_gap"]
        return False
    # Counting a 5000-entry directory costs ~2-3 ms CPU, so don't count while
    # smtp-source is still sending (nothing can be complete before that), then
    # poll every 50 ms, and every 5 ms once fewer than 300 messages remain.
    if done_send is None:
        time.sleep(0.02)
        return False
    if not mode_store:
        return True
    remaining = target - stored()
    if remaining <= 0:
        return True
    time.sleep(0.05 if remaining > 300 else 0.005)
    return False

errs = 0
while time.time() < deadline:
    try:
        if step():
            break
    except Exception as e:          # never let a /proc or fs race kill the watcher
        errs += 1
        if errs <= 3:
            print("watcher: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        time.sleep(0.01)
t_done = time.time()
c = stored() if mode_store else 0
n1, rss1, pss1, cpu1 = mem_cpu(roots) if roots else (0, 0, 0, 0.0)
sb1, st1 = sys_cpu()
res = {
    "stored": (c - base) if mode_store else None,
    "t_stored_done": t_done if mode_store and c >= target else None,
    "peak_rss_kb": peak["rss_kb"], "peak_pss_kb": peak["pss_kb"], "peak_nproc": peak["nproc"],
    "base_rss_kb": rss0, "base_pss_kb": pss0,
    "server_cpu_s": round(cpu1 - cpu0, 3) if roots else None,
    "sys_busy_cpu_s": round(sb1 - sb0, 3), "sys_total_cpu_s": round(st1 - st0, 3),
    "probes": probes,
}
print(json.dumps(res))
PYEOF

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:] if x not in ("","None","null")]; print(round(statistics.median(v),1) if v else "n/a")' "$@"; }

declare -a ACC E2E LAT RSS PSS CPU PA50 PE50 PE99 PA99
sig=$(mktemp -u /tmp/smtp_load.XXXXXX)
dopt=""; [ "$KEEPALIVE" = 1 ] && dopt="-d"
for run in $(seq 1 "$RUNS"); do
  [ -n "$CLEAR_CMD" ] && bash -c "$CLEAR_CMD"
  # ext4 without a journal (as on this VM) skips inodes deleted in the last
  # 60 s (360 s while their inode-table block is dirty) on every file create,
  # which makes creates CPU-expensive right after mass deletions (the previous
  # run's queue files, CLEAR_CMD).  sync + SETTLE seconds makes runs independent.
  sync; sleep "$SETTLE"
  rm -f "$sig.start" "$sig.end" "$sig.json" "$sig.ready"
  args=$(python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
      maildir "$MAILDIR" count_cmd "$COUNT_CMD" pids "$SERVER_PIDS" sig "$sig" host "$HOST" \
      from "$FROM" probe_to "$PROBE_TO" probe_maildir "$PROBE_MAILDIR")
  args=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(timeout=float(sys.argv[2]), count=int(sys.argv[3]), port=int(sys.argv[4]), size=int(sys.argv[5]), probes=int(sys.argv[6]), probe_gap=float(sys.argv[7]), sample_every=float(sys.argv[8])); print(json.dumps(d))' \
      "$args" "$TIMEOUT" "$COUNT" "$PORT" "$SIZE" "$PROBES" "$PROBE_GAP" "$SAMPLE_EVERY")
  python3 -c "$WATCH_PY" "$args" > "$sig.json" 2> "$sig.werr" &
  wpid=$!
  # let the watcher take its baseline first (bounded: 30 s)
  for _ in $(seq 300); do [ -e "$sig.ready" ] && break; kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
  [ -e "$sig.ready" ] || echo "run $run/$RUNS: the watcher did not report its baseline within 30 s" >&2
  date +%s.%N > "$sig.start.tmp"; mv "$sig.start.tmp" "$sig.start"   # atomic for the watcher
  t0=$(cat "$sig.start")
  timeout "$TIMEOUT" "$SMTP_SOURCE" $dopt -l "$SIZE" -m "$COUNT" -s "$CONC" -f "$FROM" -t "$TO" "$HOST:$PORT" > /dev/null 2> "$sig.err"
  rc=$?
  date +%s.%N > "$sig.end.tmp"; mv "$sig.end.tmp" "$sig.end"
  t1=$(cat "$sig.end")
  wait "$wpid"
  [ -s "$sig.werr" ] && sed 's/^/  [watcher] /' "$sig.werr" | head -5
  [ -s "$sig.json" ] || { echo "run $run/$RUNS: watcher produced no result"; continue; }
  out=$(python3 - "$sig.json" "$t0" "$t1" "$COUNT" "$CONC" "$rc" <<'PYEOF'
import json, sys, statistics
r = json.load(open(sys.argv[1])); t0, t1 = float(sys.argv[2]), float(sys.argv[3]); n, conc, rc = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
acc_s = t1 - t0
r.update(smtp_source_rc=rc, accept_s=round(acc_s, 3), accept_rate=round(n / acc_s, 1),
         mean_txn_latency_ms=round(conc * acc_s / n * 1000, 2))
if r.get("t_stored_done"):
    e2e = r["t_stored_done"] - t0
    r.update(e2e_s=round(e2e, 3), e2e_rate=round(n / e2e, 1))
else:
    r.update(e2e_s=None, e2e_rate=None)
pr = r.pop("probes")
acc = sorted(p[0] for p in pr); e2 = sorted(p[1] for p in pr if p[1] is not None)
q = lambda v, f: round(v[min(len(v) - 1, int(f * len(v)))] * 1000, 1) if v else None
r.update(probes=len(pr), probe_accept_p50_ms=q(acc, .5), probe_accept_p99_ms=q(acc, .99),
         probe_e2e_p50_ms=q(e2, .5), probe_e2e_p99_ms=q(e2, .99))
print(json.dumps(r))
PYEOF
)
  [ -n "$JSON_OUT" ] && echo "$out" >> "$JSON_OUT"
  g() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$out" "$1"; }
  ACC+=("$(g accept_rate)"); E2E+=("$(g e2e_rate)"); LAT+=("$(g mean_txn_latency_ms)")
  RSS+=("$(g peak_rss_kb)"); PSS+=("$(g peak_pss_kb)"); CPU+=("$(g server_cpu_s)")
  PA50+=("$(g probe_accept_p50_ms)"); PA99+=("$(g probe_accept_p99_ms)"); PE50+=("$(g probe_e2e_p50_ms)"); PE99+=("$(g probe_e2e_p99_ms)")
  echo "run $run/$RUNS: $out"
  [ "$rc" != 0 ] && { echo "  smtp-source rc=$rc: $(tail -3 "$sig.err")"; }
done
rm -f "$sig.start" "$sig.end" "$sig.json" "$sig.err" "$sig.werr" "$sig.ready"

mode="accept-only"; [ -n "$MAILDIR$COUNT_CMD" ] && mode="end-to-end"
pr=""; [ "$PROBES" -gt 0 ] && pr=" probe_accept_p50/p99=$(median "${PA50[@]}")/$(median "${PA99[@]}")ms probe_e2e_p50/p99=$(median "${PE50[@]}")/$(median "${PE99[@]}")ms"
peak_rss=n/a; peak_pss=n/a
if [ -n "$SERVER_PIDS" ]; then
  peak_rss=$(python3 -c 'import sys; v=[int(x) for x in sys.argv[1:] if x]; print(round(max(v)/1024,1) if v else "n/a")' "${RSS[@]}")
  peak_pss=$(python3 -c 'import sys; v=[int(x) for x in sys.argv[1:] if x]; print(round(max(v)/1024,1) if v else "n/a")' "${PSS[@]}")
fi
echo "smtp_load: $HOST:$PORT mode=$mode conc=$CONC msgs=$COUNT size=$SIZE runs=$RUNS keepalive=$KEEPALIVE median_accept_rate=$(median "${ACC[@]}") msg/s median_e2e_rate=$(median "${E2E[@]}") msg/s median_mean_txn_latency=$(median "${LAT[@]}") ms peak_tree_rss=${peak_rss}MB peak_tree_pss=${peak_pss}MB median_server_cpu=$(median "${CPU[@]}")s$pr"
