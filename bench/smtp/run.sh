#!/bin/bash
# bench/smtp/run.sh -- SMTP -> Maildir benchmark: pigeonpost and Postfix side
# by side in one run.
#
# For every concurrency in CONCS it sends COUNT messages of 5 KiB with Postfix's
# smtp-source to each server, interleaved (Postfix, pigeonpost, Postfix, ...,
# RUNS times), and measures the end-to-end rate (smtp-source start until the
# last message is a file in the Maildir's new/), sequential probe latencies
# (accept, and accept -> stored), server CPU, pigeonpost's peak RSS and the
# Postfix process tree's peak RSS/PSS. Both servers get the HOWTO's virtual
# mailbox setup (john@ and bob@example.com under <state>/<server>/mail).
# Prints Markdown tables; raw results go to $STATE/results/<timestamp>/.
#
# Run from anywhere (as root for the Postfix side):   bench/smtp/run.sh
# Quick smoke run (1000 msgs, 1 run, 5 s settle):      QUICK=1 bench/smtp/run.sh
#
# Env:
#   PIGEONPOST_BIN=path  use this binary instead of `cargo build --release`
#   STATE=/tmp/pp-bench  all state (configs, mailboxes, logs, results)
#   COUNT=5000 RUNS=3 SETTLE=65 CONCS="1 20 100" SIZE=5120
#   SERVERS="postfix pigeonpost"   either one alone is fine
#   PROBES=200 PROBE_GAP=0.05      at most PROBES sequential latency probes per run, sent
#                                  only while smtp-source runs (0 = none)
#   POSTFIX_PORT=4525 PIGEONPOST_PORT=5525 PIGEONPOST_HTTP_PORT=5580
#   TIMEOUT=300                    bound on one measured run, seconds
#   FSYNC_CHECK=1                  after the runs, count fsync/rename syscalls
#                                  per message with strace (if installed)
#   CLEAN_TRASH=0                  1 = delete the moved-aside mailboxes at the end
#                                  (default: keep them, as deleting them slows file
#                                  creation for the next ~6 minutes; see bench/README.md)
# Every wait is bounded; both servers are stopped on exit (also on Ctrl-C).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=$ROOT/bench/lib
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then D_COUNT=1000 D_RUNS=1 D_SETTLE=5; else D_COUNT=5000 D_RUNS=3 D_SETTLE=65; fi
STATE=${STATE:-/tmp/pp-bench}
COUNT=${COUNT:-$D_COUNT}; RUNS=${RUNS:-$D_RUNS}; SETTLE=${SETTLE:-$D_SETTLE}
CONCS=${CONCS:-"1 20 100"}; SIZE=${SIZE:-5120}
SERVERS=${SERVERS:-"postfix pigeonpost"}
PROBES=${PROBES:-200}; PROBE_GAP=${PROBE_GAP:-0.05}
PF_PORT=${POSTFIX_PORT:-4525}; PP_PORT=${PIGEONPOST_PORT:-5525}; PP_HTTP=${PIGEONPOST_HTTP_PORT:-5580}
TIMEOUT=${TIMEOUT:-300}; FSYNC_CHECK=${FSYNC_CHECK:-1}; CLEAN_TRASH=${CLEAN_TRASH:-0}
ADDR=127.0.0.1

say() { echo "[bench/smtp $(date +%T)] $*"; }
die() { echo "bench/smtp: $*" >&2; exit 1; }
has() { case " $SERVERS " in *" $1 "*) return 0;; *) return 1;; esac; }

for s in $SERVERS; do case $s in postfix|pigeonpost) ;; *) die "SERVERS: unknown server '$s' (postfix, pigeonpost)";; esac; done
for n in "$COUNT" "$RUNS" "$SETTLE" "$PROBES" "$TIMEOUT" $CONCS; do
  [[ $n =~ ^[0-9]+$ ]] || die "COUNT/RUNS/SETTLE/PROBES/TIMEOUT/CONCS must be whole numbers"
done
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 20 ] && [ "$COUNT" -ge 1 ] || die "need 1 <= RUNS <= 20 and COUNT >= 1"

# ------------------------------------------------------------------ prerequisites
# Nothing is installed here: say what is missing and how to get it.
missing=() pkgs=()
command -v python3 >/dev/null || { missing+=(python3); pkgs+=(python3); }
SMTP_SOURCE=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}
[ -x "$SMTP_SOURCE" ] || { missing+=("smtp-source (in the postfix package)"); pkgs+=(postfix); }
if has postfix; then
  { command -v postfix && command -v postmap; } >/dev/null 2>&1 || { missing+=(postfix); pkgs+=(postfix); }
fi
command -v ss >/dev/null || { missing+=("ss (iproute2)"); pkgs+=(iproute2); }
if [ -z "${PIGEONPOST_BIN:-}" ]; then command -v cargo >/dev/null || missing+=("cargo (https://rustup.rs), or set PIGEONPOST_BIN"); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/smtp: missing: ${missing[*]}" >&2
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "install with (Debian/Ubuntu; for postfix choose \"No configuration\", its own service is not used):" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')" >&2
  fi
  exit 1
fi
if has postfix && [ "$(id -u)" != 0 ]; then
  die "the Postfix side needs root (its master drops privileges itself): run with sudo, or SERVERS=pigeonpost for pigeonpost alone"
fi

# ------------------------------------------------------------------ pigeonpost binary
if has pigeonpost; then
  if [ -n "${PIGEONPOST_BIN:-}" ]; then
    BIN=$PIGEONPOST_BIN
  else
    say "building pigeonpost (cargo build --release in $ROOT)"
    (cd "$ROOT" && timeout 3600 cargo build --release) || die "cargo build --release failed"
    BIN=$ROOT/target/release/pigeonpost
  fi
  [ -x "$BIN" ] || die "pigeonpost binary not found or not executable: $BIN"
fi

# ------------------------------------------------------------------ layout
PF=$STATE/postfix; PP=$STATE/pigeonpost; TRASH=$STATE/trash
STAMP=$(date +%Y%m%d-%H%M%S); R=$STATE/results/$STAMP
mkdir -p "$STATE" "$PP/mail" "$PP/queue" "$TRASH" "$R" || die "cannot create $STATE"
chmod 755 "$STATE"
ln -sfn "$STAMP" "$STATE/results/latest"
if [ "$(id -u)" = 0 ]; then VUID=5000 VGID=5000; else VUID=$(id -u) VGID=$(id -g); fi

port_busy() { ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qx "$ADDR:$1"; }

# ------------------------------------------------------------------ cleanup (trap)
PP_PID=""
stop_pigeonpost() {
  [ -n "$PP_PID" ] || return 0
  if kill -0 "$PP_PID" 2>/dev/null; then
    say "stopping pigeonpost (pid $PP_PID)"
    kill -TERM "$PP_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$PP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PP_PID" 2>/dev/null && { say "pigeonpost still alive after 10 s: SIGKILL"; kill -KILL "$PP_PID" 2>/dev/null; }
  fi
  wait "$PP_PID" 2>/dev/null; PP_PID=""; rm -f "$PP/pid"
}
cleanup() {
  trap - EXIT INT TERM
  stop_pigeonpost
  if has postfix; then PEERS=$PF SMTP_PORT=$PF_PORT "$LIB/stop-postfix.sh" 2>&1 | sed 's/^/  /'; fi
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 130' INT TERM

# a pigeonpost left over from an aborted run of this script (same state dir)
if [ -s "$PP/pid" ]; then
  old=$(cat "$PP/pid")
  if [ "$(cat /proc/"$old"/comm 2>/dev/null)" = pigeonpost ]; then
    say "stopping pigeonpost left from an earlier run (pid $old)"; PP_PID=$old; kill -TERM "$old"
    for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$old" 2>/dev/null && kill -KILL "$old"; PP_PID=""
  fi
  rm -f "$PP/pid"
fi

# ------------------------------------------------------------------ start Postfix
if has postfix; then
  PEERS=$PF SMTP_PORT=$PF_PORT "$LIB/stop-postfix.sh" >/dev/null 2>&1
  port_busy "$PF_PORT" && die "$ADDR:$PF_PORT is in use by something else (set POSTFIX_PORT=)"
  PEERS=$PF SMTP_PORT=$PF_PORT VMAIL_UID=$VUID VMAIL_GID=$VGID DELIVERY=virtual "$LIB/start-postfix.sh" \
    > "$R/postfix-start.log" 2>&1 || { cat "$R/postfix-start.log" >&2; die "Postfix did not start"; }
  PF_PID=$(cat "$PF/run/postfix.pid")
  say "Postfix $(postconf -d -h mail_version 2>/dev/null) running, master pid $PF_PID, $ADDR:$PF_PORT, mail in $PF/mail"
fi

# ------------------------------------------------------------------ start pigeonpost
if has pigeonpost; then
  for p in "$PP_PORT" "$PP_HTTP"; do port_busy "$p" && die "$ADDR:$p is in use (set PIGEONPOST_PORT= / PIGEONPOST_HTTP_PORT=)"; done
  cat > "$PP/vmailbox" <<EOF
# user@domain -> maildir relative to virtual_mailbox_base (trailing / = Maildir)
john@example.com  example.com/john/
bob@example.com   example.com/bob/
EOF
  cat > "$PP/virtual" <<EOF
postmaster@example.com  john@example.com
EOF
  cat > "$PP/pigeonpost.toml" <<EOF
# Generated by bench/smtp/run.sh -- the HOWTO's virtual delivery, as Postfix
# gets it in bench/lib/start-postfix.sh. Loopback only, SMTP only.
myhostname = "mail.example.com"
mydomain = "example.com"
myorigin = "\$mydomain"
inet_interfaces = "$ADDR"
mydestination = "\$myhostname, localhost.\$mydomain, localhost"
mynetworks = "127.0.0.0/8"
relay_domains = ""
alias_maps = ""
recipient_delimiter = "+"
virtual_mailbox_domains = "example.com"
virtual_mailbox_base = "$PP/mail"
virtual_mailbox_maps = "hash:$PP/vmailbox"
virtual_alias_maps = "hash:$PP/virtual"
virtual_uid_maps = "static:$VUID"
virtual_gid_maps = "static:$VGID"
queue_directory = "$PP/queue"
# Postfix exempts \$mynetworks from this limit (smtpd_client_event_limit_exceptions),
# and all 100 benchmark clients come from 127.0.0.1: no per-IP limit here either.
smtpd_client_connection_count_limit = 0
protocols = ""
log_level = "warn"
shutdown_timeout = "5s"

[listen]
smtp = "$ADDR:$PP_PORT"
submission = ""
submissions = ""
imap = ""
imaps = ""
pop3 = ""
pop3s = ""
lmtp = ""
http = "$ADDR:$PP_HTTP"
EOF
  # PIGEONPOST_* variables in our environment (PIGEONPOST_BIN included) would be
  # read as settings: start pigeonpost without them.
  unset_pp=(); for v in $(compgen -e | grep '^PIGEONPOST_' || true); do unset_pp+=(-u "$v"); done
  env "${unset_pp[@]}" "$BIN" --config "$PP/pigeonpost.toml" config > "$R/pigeonpost-config.toml" 2>&1 \
    || { cat "$R/pigeonpost-config.toml" >&2; die "pigeonpost rejects the generated config"; }
  ( cd "$PP" && exec env "${unset_pp[@]}" "$BIN" --config "$PP/pigeonpost.toml" serve ) \
    </dev/null >> "$PP/pigeonpost.log" 2>&1 &
  PP_PID=$!; echo "$PP_PID" > "$PP/pid"
  banner=""
  for _ in $(seq 100); do   # bounded: 10 s
    kill -0 "$PP_PID" 2>/dev/null || { tail -20 "$PP/pigeonpost.log" >&2; PP_PID=""; die "pigeonpost exited at start (log: $PP/pigeonpost.log)"; }
    banner=$(timeout 3 bash -c "exec 3<>/dev/tcp/$ADDR/$PP_PORT && IFS= read -r -t 2 l <&3 && printf '%s' \"\$l\" && printf 'QUIT\r\n' >&3" 2>/dev/null | tr -d '\r')
    [ -n "$banner" ] && break
    sleep 0.1
  done
  case "$banner" in
    220*) ;;
    "") die "pigeonpost does not answer on $ADDR:$PP_PORT after 10 s (log: $PP/pigeonpost.log)";;
    *) die "pigeonpost answers '$banner' instead of 220 on $ADDR:$PP_PORT: is SMTP receiving in this build?";;
  esac
  say "pigeonpost $("$BIN" --version 2>/dev/null | awk '{print $2}') running, pid $PP_PID, $ADDR:$PP_PORT, mail in $PP/mail ($BIN)"
fi

# ------------------------------------------------------------------ one measured run
# mv (never rm) the mailboxes aside: on a journal-less ext4, mass deletion
# slows every file create for the next 60-360 s (see bench/README.md).
clear_cmd() { # server mailroot
  printf 'for u in john bob; do d=%s/example.com/$u; [ -e "$d" ] && mv "$d" %s/%s-$u.$(date +%%s%%N); done; true' "$2" "$TRASH" "$1"
}
measure() { # server conc run
  local s=$1 c=$2 i=$3 port pids mail extra=""
  if [ "$s" = postfix ]; then
    port=$PF_PORT; mail=$PF/mail; pids=$PF_PID
  else
    port=$PP_PORT; mail=$PP/mail; pids=$PP_PID
    kill -0 "$PP_PID" 2>/dev/null || die "pigeonpost (pid $PP_PID) has exited: see $PP/pigeonpost.log"
    # reset VmHWM (peak RSS) so this run's peak is read afterwards
    extra="; echo 5 > /proc/$PP_PID/clear_refs"
  fi
  say "$s: -s $c, $COUNT x $SIZE B, run $i/$RUNS (settle ${SETTLE}s)"
  local one=$R/.one.jsonl; rm -f "$one"
  HOST=$ADDR SMTP_PORT=$port COUNT=$COUNT SIZE=$SIZE CONC=$c RUNS=1 SETTLE=$SETTLE TIMEOUT=$TIMEOUT \
    TO=john@example.com MAILDIR=$mail/example.com/john/new CLEAR_CMD="$(clear_cmd "$s" "$mail")$extra" \
    SERVER_PIDS="$pids" SAMPLE_EVERY=0.25 PROBES=$PROBES PROBE_GAP=$PROBE_GAP \
    PROBE_TO=bob@example.com PROBE_MAILDIR=$mail/example.com/bob/new SMTP_SOURCE=$SMTP_SOURCE \
    JSON_OUT=$one "$LIB/smtp_load.sh" >> "$R/${s}_c$c.log" 2>&1
  local hwm=null rss=null
  if [ "$s" = pigeonpost ] && [ -r "/proc/$PP_PID/status" ]; then
    hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$PP_PID/status"); rss=$(awk '/^VmRSS:/{print $2}' "/proc/$PP_PID/status")
  fi
  if [ -s "$one" ]; then
    python3 - "$one" "$s" "$c" "$i" "$COUNT" "$hwm" "$rss" >> "$R/${s}_c$c.jsonl" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
hwm = None if sys.argv[6] == "null" else int(sys.argv[6])
rss = None if sys.argv[7] == "null" else int(sys.argv[7])
r.update(server=sys.argv[2], conc=int(sys.argv[3]), run=int(sys.argv[4]), count=int(sys.argv[5]),
         pp_vmhwm_kb=hwm, pp_rss_after_kb=rss)
print(json.dumps(r))
PY
    python3 -c 'import json,sys; r=json.loads(sys.argv[1].splitlines()[-1]); print("   stored %s/%s, e2e %s msg/s, accept %s msg/s, probe accept p50 %s ms, server cpu %s s" % (r.get("stored"), sys.argv[2], r.get("e2e_rate"), r.get("accept_rate"), r.get("probe_accept_p50_ms"), r.get("server_cpu_s")))' "$(cat "$one")" "$COUNT"
    [ "$hwm" != null ] && echo "   pigeonpost peak RSS $((hwm / 1024)) MB"
  else
    say "  no result (see $R/${s}_c$c.log)"; tail -3 "$R/${s}_c$c.log" | sed 's/^/   /'
  fi
  rm -f "$one"
}

python3 - "$R/meta.json" "$COUNT" "$SIZE" "$RUNS" "$SETTLE" "$CONCS" "$SERVERS" <<'PY'
import json, os, sys, platform
a = sys.argv
json.dump(dict(count=int(a[2]), size=int(a[3]), runs=int(a[4]), settle=int(a[5]), concs=a[6], servers=a[7],
               host=f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}"), open(a[1], "w"))
PY
{ echo "date: $(date -Is)"; echo "host: $(uname -r) cpus=$(nproc) fs=$(df -T "$STATE" | awk 'NR==2{print $2" on "$1}')";
  echo "mount: $(findmnt -no OPTIONS -T "$STATE" 2>/dev/null)"; has postfix && echo "postfix: $(postconf -d -h mail_version 2>/dev/null)";
  has pigeonpost && echo "pigeonpost: $BIN ($("$BIN" --version 2>/dev/null))"; [ -e "$ROOT/.git" ] && echo "checkout commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)";
  echo "COUNT=$COUNT SIZE=$SIZE RUNS=$RUNS SETTLE=$SETTLE CONCS=$CONCS PROBES=$PROBES"; } > "$R/env.txt"

T0=$(date +%s)
for c in $CONCS; do
  for i in $(seq 1 "$RUNS"); do
    for s in $SERVERS; do measure "$s" "$c" "$i"; done
  done
done
say "measured runs done in $(( $(date +%s) - T0 )) s"

# ------------------------------------------------------------------ durability check (strace)
# Not timed: counts the syscalls that make a message durable, per message.
if [ "$FSYNC_CHECK" = 1 ] && command -v strace >/dev/null; then
  N=300
  for s in $SERVERS; do
    if [ "$s" = postfix ]; then
      port=$PF_PORT; mail=$PF/mail
      # every process of the Postfix tree now, plus (-f) every child forked later
      pids=$(python3 -c '
import os, sys
root = int(sys.argv[1]); kids = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            s = open(f"/proc/{p}/stat").read(); kids.setdefault(int(s[s.rindex(")") + 2:].split()[1]), []).append(int(p))
        except OSError: pass
out, st = [], [root]
while st:
    p = st.pop(); out.append(p); st.extend(kids.get(p, []))
print(" ".join(map(str, out)))' "$PF_PID")
    else
      port=$PP_PORT; mail=$PP/mail; pids=$PP_PID
    fi
    sopts=(); for p in $pids; do sopts+=(-p "$p"); done
    eval "$(clear_cmd "$s" "$mail")"
    timeout 120 strace -f -c -o "$R/strace_$s.txt" -e trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2,link,linkat,unlink,unlinkat "${sopts[@]}" 2>/dev/null &
    spid=$!; sleep 1.5
    timeout 120 "$SMTP_SOURCE" -l "$SIZE" -m "$N" -s 20 -f a@example.org -t john@example.com "$ADDR:$port" >/dev/null 2>&1
    for _ in $(seq 300); do [ "$(ls "$mail/example.com/john/new" 2>/dev/null | wc -l)" -ge "$N" ] && break; sleep 0.1; done
    stored=$(ls "$mail/example.com/john/new" 2>/dev/null | wc -l)
    sleep 0.5; kill -INT "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
    python3 - "$R/strace_$s.txt" "$s" "$N" "$stored" >> "$R/fsync_check.txt" <<'PY'
import sys
path, s, n, stored = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
calls = {}
try:
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[-1] != "total" and f[3].isdigit():
            calls[f[-1]] = int(f[3])
except OSError:
    pass
per = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(calls.items()))
print(f"{s}: {n} messages (-s 20), {stored} stored; syscalls per message: {per or 'none seen'}")
PY
  done
  [ -s "$R/fsync_check.txt" ] && sed 's/^/   /' "$R/fsync_check.txt"
fi

# ------------------------------------------------------------------ report
if has pigeonpost; then
  f=$(find "$PP/mail/example.com/john/new" -type f 2>/dev/null | head -1)
  [ -n "$f" ] && echo "sample pigeonpost message: $(stat -c '%s bytes, owner %u:%g, mode %a' "$f")" >> "$R/env.txt"
  n_warn=$(grep -c -iE 'WARN|ERROR' "$PP/pigeonpost.log" 2>/dev/null || true)
  [ "${n_warn:-0}" -gt 0 ] && { say "pigeonpost logged $n_warn warning/error lines ($PP/pigeonpost.log), last ones:"; grep -iE 'WARN|ERROR' "$PP/pigeonpost.log" | tail -5 | sed 's/^/   /'; }
fi
cleanup
trap - EXIT
python3 "$LIB/smtp_table.py" "$R" > "$R/table.md"
echo
echo "## SMTP -> Maildir, $(date '+%Y-%m-%d %H:%M'), $(nproc) CPUs"
echo
cat "$R/table.md"
echo
echo "raw results: $R (per-run *.jsonl, *.log, env.txt, table.md)"
if [ "$CLEAN_TRASH" = 1 ]; then
  say "removing the moved-aside mailboxes in $TRASH"
  timeout 600 rm -rf "$TRASH" 2>/dev/null
else
  say "moved-aside mailboxes kept in $TRASH ($(du -sh "$TRASH" 2>/dev/null | cut -f1)); remove them with rm -rf $TRASH at least 6 minutes before the next benchmark"
fi
exit 0
