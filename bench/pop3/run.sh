#!/bin/bash
# bench/pop3/run.sh -- POP3 benchmark: pigeonpost and Dovecot side by side in
# one run.
#
# Both servers get the HOWTO's virtual-user setup (one passwd-file with
# SHA512-CRYPT hashes, static userdb, mail_location = maildir:<mail>/%d/%n,
# pop3_uidl_format = %08Xu%08Xv, ssl on with a self-signed certificate) and
# byte-identical copies of the same generated Maildir (MSGS messages of about
# SIZE bytes, in new/ as delivered). Then:
#
#  1. prewarm: one full download (USER PASS STAT LIST UIDL RETR 1..n QUIT) per
#     user and server, timed (the first session on a fresh maildrop), and checked
#     byte for byte against the generated Maildir;
#  2. sessions: for every concurrency in CONCS, clients loop for DURATION s over
#     USER/PASS, STAT, UIDL, RETR x RETR (random), QUIT (no DELE), each client as
#     its own user (load001..), RUNS times per server, interleaved (Dovecot and
#     pigeonpost alternate, and which one goes first alternates too): sessions/s,
#     commands/s, latencies, server CPU, memory (pigeonpost: exact peak RSS of
#     the process; Dovecot: peak RSS and PSS summed over its process tree);
#  3. fetchmail: pulls the whole MSGS-message maildrop over plain POP3, RUNS
#     times per server and mode, interleaved. "keep" (--all --keep) re-reads a
#     warm maildrop (its first pull is reported apart); "delete" (--all, DELE +
#     QUIT) gets a fresh copy before every pull, so it is the cold pull of
#     freshly delivered mail, and checks that the maildrop is empty afterwards
#     ("keep": that all MSGS are still there). Every pull must deliver MSGS
#     messages, and (FETCH_SINK=bsmtp) fetchmail's output is checked message by
#     message against the template; server, fetchmail and whole-machine CPU are
#     recorded (the last shows interference from anything else running).
# Prints Markdown tables; raw results go to $STATE/results/<timestamp>/.
# What it shares with the other benchmarks (checks, layout, starting and
# stopping both servers, the session runs, the report) is in bench/lib/common.sh.
#
# Run as root (the Dovecot master drops privileges itself):  bench/pop3/run.sh
# Quick smoke run (1 run, 5 s per point, 1 pull per mode):  QUICK=1 bench/pop3/run.sh
# Dovecot alone:  SERVERS=dovecot bench/pop3/run.sh
#
# Env:
#   PIGEONPOST_BIN=path  use this binary instead of `cargo build --release`
#   STATE=/tmp/pp-bench-pop3       all state (configs, mailboxes, logs, results)
#   SERVERS="dovecot pigeonpost"   either one alone is fine
#   CONCS="1 10 50" RUNS=3 DURATION=20 RETR=20   session test; MAX_SESSIONS=1000000
#                                  bounds the sessions of one run as well
#   MSGS=1000 SIZE=5120            the generated maildrop (every user gets a copy)
#   NAMES=sizes                    Maildir file names with ,S=,W= (as pigeonpost's and
#                                  Dovecot's own delivery write them); NAMES=plain:
#                                  without (as Postfix virtual(8) writes them)
#   FETCH_MODES="keep delete"      fetchmail modes (empty = no fetchmail test)
#   FETCH_RUNS=$RUNS               timed pulls per server and mode
#   PIN_CPU=0                      each pull with fetchmail and the server on this CPU
#                                  (-1: unpinned; see set_tree_affinity in bench/lib/common.py)
#   FETCH_SINK=bsmtp               fetchmail writes a BSMTP file (no fork per message);
#                                  FETCH_SINK=mda: --mda "cat >/dev/null" (a shell per message)
#   PROCS=auto                     client processes for the session test (auto: 1 for
#                                  1 client, else 2)
#   DOVECOT_PORT=4110 PIGEONPOST_PORT=5110 PIGEONPOST_HTTP_PORT=5580
#   PP_LOG_LEVEL=info              pigeonpost's log_level: at info it logs each login and
#                                  logout, as Dovecot does by default (warn: no per-session lines)
#   REST=2                         seconds of rest before every measured run
#   SETTLE=5                       seconds of rest after a fresh copy + sync (delete pulls)
#   TIMEOUT=300                    bound on one fetchmail pull / prewarm, seconds
#   FLOOR=1 FLOOR_PORT=5995        after the servers, FETCH_RUNS pulls per mode from
#                                  bench/lib/pop3_floor.c (messages in memory, one read
#                                  and one write per command: the least a server spends),
#                                  and (delete) the pull's renames and unlinks alone
#   CLEAN_TRASH=0                  1 = delete the moved-aside mailboxes at the end
#                                  (default: keep them; deleting many files slows file
#                                  creation on this VM's ext4 for minutes, see bench/README.md)
# Every wait is bounded; both servers are stopped on exit (also on Ctrl-C).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then D_RUNS=1 D_DURATION=5 D_SETTLE=1; else D_RUNS=3 D_DURATION=20 D_SETTLE=5; fi
STATE=${STATE:-/tmp/pp-bench-pop3}
SERVERS=${SERVERS:-"dovecot pigeonpost"}
CONCS=${CONCS:-"1 10 50"}; RUNS=${RUNS:-$D_RUNS}; DURATION=${DURATION:-$D_DURATION}; RETR=${RETR:-20}
MAX_SESSIONS=${MAX_SESSIONS:-1000000}
MSGS=${MSGS:-1000}; SIZE=${SIZE:-5120}; NAMES=${NAMES:-sizes}
FETCH_MODES=${FETCH_MODES-"keep delete"}; FETCH_RUNS=${FETCH_RUNS:-$RUNS}; FETCH_SINK=${FETCH_SINK:-bsmtp}
PROCS=${PROCS:-auto}
DV_PORT=${DOVECOT_PORT:-4110}; PP_PORT=${PIGEONPOST_PORT:-5110}; PP_HTTP=${PIGEONPOST_HTTP_PORT:-5580}
PP_LOG_LEVEL=${PP_LOG_LEVEL:-info}
REST=${REST:-2}; SETTLE=${SETTLE:-$D_SETTLE}; TIMEOUT=${TIMEOUT:-300}; CLEAN_TRASH=${CLEAN_TRASH:-0}
FLOOR=${FLOOR:-1}; FLOOR_PORT=${FLOOR_PORT:-5995}
LOAD_PASS=loadpass; FETCH_USER=fetch@example.com; FETCH_PASS=fetchpass
# what the shared steps (bench/lib/common.sh) need to know about this benchmark;
# unlike bench/imap/run.sh, it does not wait for other benchmarks
PROTO=pop3 LOAD_PY=pop3_load.py SESSION_LINE="sessions" WAIT_OTHERS=0 OTHERS_RE=""
PP_GREETING="+OK" PP_BYE="QUIT" PP_WHAT="the POP3 server"
DOVECOT_ENV=(POP3_PORT="$DV_PORT")

# ------------------------------------------------------------------ arguments
check_servers dovecot pigeonpost
# shellcheck disable=SC2086  # CONCS: words
whole_numbers "RUNS/DURATION/RETR/MAX_SESSIONS/MSGS/SIZE/FETCH_RUNS/REST/SETTLE/TIMEOUT/ports/CONCS" \
  "$RUNS" "$DURATION" "$RETR" "$MAX_SESSIONS" "$MSGS" "$SIZE" "$FETCH_RUNS" "$REST" "$SETTLE" "$TIMEOUT" \
  "$DV_PORT" "$PP_PORT" "$PP_HTTP" "$FLOOR_PORT" $CONCS
check_session_settings
{ within "$RUNS" 1 20 && within "$FETCH_RUNS" 1 20; } || die "need 1 <= RUNS, FETCH_RUNS <= 20"
for m in $FETCH_MODES; do case $m in keep|delete) ;; *) die "FETCH_MODES: unknown mode '$m' (keep, delete)";; esac; done
case $FETCH_SINK in bsmtp|mda) ;; *) die "FETCH_SINK must be bsmtp or mda";; esac
NUSERS=0; for c in $CONCS; do [ "$c" -gt "$NUSERS" ] && NUSERS=$c; done

# ------------------------------------------------------------------ prerequisites
if [ -n "$FETCH_MODES" ]; then need fetchmail fetchmail; fi
dovecot_prepare

# ------------------------------------------------------------------ users, certificate
CLIENTS=$ETC/clients.txt  # "user password" lines for pop3_load.py
for i in $(seq 1 "$NUSERS"); do printf 'load%03d@example.com %s\n' "$i" "$LOAD_PASS"; done > "$CLIENTS"
printf '%s %s\n' "$FETCH_USER" "$FETCH_PASS" > "$ETC/fetch-client.txt"
write_passwd_file "load001..load$(printf %03d "$NUSERS")@example.com and $FETCH_USER" < <(cat "$CLIENTS" "$ETC/fetch-client.txt")
make_cert

# ------------------------------------------------------------------ the maildrop template
make_template
for s in $SERVERS; do
  say "$s: copying the template ($MSGS messages, $((TPL_BYTES / 1024)) KiB) for $NUSERS load users and $FETCH_USER"
  for i in $(seq 1 "$NUSERS"); do fresh_copy "$s" "$(printf 'load%03d' "$i")"; done
  fresh_copy "$s" "${FETCH_USER%@*}"
done
timeout 300 sync

# ------------------------------------------------------------------ servers, metadata
start_servers
python3 "$LIB/common.py" meta "$R/meta.json" servers="$SERVERS" concs="$CONCS" runs:int="$RUNS" duration:int="$DURATION" \
  retr:int="$RETR" msgs:int="$MSGS" size:int="$SIZE" names="$NAMES" fetch_modes="$FETCH_MODES" \
  fetch_runs:int="$FETCH_RUNS" fetch_sink="$FETCH_SINK" maildrop_bytes:int="$TPL_BYTES" procs="$PROCS" \
  pp_log_level="$PP_LOG_LEVEL"
{ env_txt "$([ -n "$FETCH_MODES" ] && echo "fetchmail: $(fetchmail --version 2>/dev/null | grep -m1 release)")"
  echo "SERVERS=$SERVERS CONCS=$CONCS RUNS=$RUNS DURATION=$DURATION RETR=$RETR MAX_SESSIONS=$MAX_SESSIONS PROCS=$PROCS"
  echo "FETCH_MODES=$FETCH_MODES FETCH_RUNS=$FETCH_RUNS FETCH_SINK=$FETCH_SINK REST=$REST SETTLE=$SETTLE PP_LOG_LEVEL=$PP_LOG_LEVEL PIN_CPU=${PIN_CPU:-0}"; } > "$R/env.txt"

# ------------------------------------------------------------------ 1. prewarm + verify
for s in $SERVERS; do
  alive "$s"
  say "$s: first session of every maildrop ($NUSERS users x $MSGS messages, full download), checked against the template"
  prewarm_verify "$s" "$CLIENTS" 60 maildrop
done

# ------------------------------------------------------------------ 2. sessions
SESSION_ARGS=(--userfile "$CLIENTS" --retr "$RETR")
run_sessions

# ------------------------------------------------------------------ 3. fetchmail
# count_msgs server user: messages left in the maildrop (new/ + cur/)
count_msgs() {
  local d
  d=$(mailroot "$1")/example.com/$2
  find "$d/new" "$d/cur" -maxdepth 1 -type f 2>/dev/null | wc -l
}
# write_fetchmailrc file port keep|"no keep": fetch@'s whole maildrop over plain POP3
write_fetchmailrc() {
  cat > "$1" <<EOF
set no syslog
poll $ADDR protocol pop3 port $2 auth password timeout 60
  user "$FETCH_USER" password "$FETCH_PASS" is "root" here
  fetchall $3 no rewrite sslproto ''
EOF
  chmod 600 "$1"
}
fetch_once() { # server mode label run
  local s=$1 mode=$2 label=$3 i=$4 n left check=null keep_kw="no keep" sink=()
  alive "$s"
  [ "$mode" = keep ] && keep_kw="keep"
  local w=$WORK/$s; mkdir -p "$w"; rm -f "$w/out.bsmtp" "$w/fetchids" "$w/err.log"
  write_fetchmailrc "$w/fetchmailrc" "$(port_of "$s")" "$keep_kw"
  # count what reached the sink: MAIL FROM lines of the BSMTP file, or one line per MDA run
  rm -f "$w/mda.count"
  if [ "$FETCH_SINK" = bsmtp ]; then sink=(--bsmtp "$w/out.bsmtp"); else sink=(--mda "cat >/dev/null && echo >> $w/mda.count"); fi
  pull_measured "$s" env HOME="$w" timeout "$TIMEOUT" fetchmail -f "$w/fetchmailrc" -i "$w/fetchids" \
    --pidfile "$w/fetchmail.pid" --nodetach --silent "${sink[@]}" > "$w/fetchmail.log" 2>&1
  if [ "$FETCH_SINK" = bsmtp ]; then n=$(grep -c '^MAIL FROM:' "$w/out.bsmtp" 2>/dev/null); else n=$(grep -c '' "$w/mda.count" 2>/dev/null); fi
  left=$(count_msgs "$s" "${FETCH_USER%@*}")
  # what fetchmail received, message by message, against the template (BSMTP sink only)
  [ "$FETCH_SINK" = bsmtp ] && check=$(timeout 120 python3 "$LIB/pop3_load.py" --check-bsmtp "$w/out.bsmtp" --verify-dir "$TPL")
  python3 "$LIB/common.py" pull-record server="$s" mode="$label" run:int="$i" rc:int="$PULL_RC" msgs:int="${n:-0}" \
    expected:int="$MSGS" left_on_server:int="$left" sink="$FETCH_SINK" \
    bsmtp_bytes:int="$(stat -c %s "$w/out.bsmtp" 2>/dev/null || echo 0)" "${PULL_FIELDS[@]}" client=fetchmail \
    check:json="${check:-null}" >> "$R/fetchmail.jsonl"
  tail -1 "$R/fetchmail.jsonl" | python3 "$LIB/common.py" pull-line fetchmail
  case $PULL_RC in 0|1) ;; *) say "  fetchmail exited $PULL_RC:"; grep -v -e 'reading message' -e 'Running as root' "$w/fetchmail.log" | tail -3 | sed 's/^/     /';; esac
  cp "$w/fetchmail.log" "$R/fetchmail_${s}_${label}_$i.log" 2>/dev/null
  rm -f "$w/out.bsmtp"
}
for mode in $FETCH_MODES; do
  if [ "$mode" = keep ]; then
    # the fetch maildrop is still the untouched copy made at the start: its
    # first pull is the cold one, reported apart; the timed runs re-read it
    for s in $SERVERS; do
      sleep "$REST"
      say "$s: fetchmail --all --keep, first pull of the fresh copy ($MSGS messages)"
      fetch_once "$s" keep keep-first 1
    done
    for i in $(seq 1 "$FETCH_RUNS"); do
      for s in $(order "$i"); do
        sleep "$REST"
        say "$s: fetchmail --all --keep ($MSGS messages), run $i/$FETCH_RUNS"
        fetch_once "$s" keep keep "$i"
      done
    done
  else
    for i in $(seq 1 "$FETCH_RUNS"); do
      for s in $(order "$i"); do
        fresh_copy "$s" "${FETCH_USER%@*}"; timeout 300 sync; sleep "$SETTLE"
        say "$s: fetchmail --all (delete) of a fresh copy ($MSGS messages), run $i/$FETCH_RUNS"
        fetch_once "$s" delete delete "$i"
      done
    done
  fi
done

# ------------------------------------------------------------------ 4. the floor
# the same pulls from bench/lib/pop3_floor.c: every message in memory, one
# read and one write per command, no files: the least any server spends on
# them (the kernel's per-command cost); its CPU comes from its own report
if [ "$FLOOR" = 1 ] && [ -n "$FETCH_MODES" ]; then
  FLOOR_BIN=$STATE/pop3_floor
  cc -O2 -o "$FLOOR_BIN" "$LIB/pop3_floor.c" 2>"$R/pop3_floor.build" \
    || die "cannot build bench/lib/pop3_floor.c (need cc): $(cat "$R/pop3_floor.build")"
  fcpu=${PIN_CPU:-0}; [ "$fcpu" -lt 0 ] && fcpu=0
  taskset -c "$fcpu" "$FLOOR_BIN" "$FLOOR_PORT" "$TPL" 1000 > "$R/pop3_floor.out" 2> "$R/pop3_floor.err" &
  FLOOR_PID=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/$ADDR/$FLOOR_PORT") 2>/dev/null && break; sleep 0.1; done
  w=$WORK/floor; mkdir -p "$w"
  for mode in $FETCH_MODES; do
    keep_kw="no keep"; what="--all (delete)"; [ "$mode" = keep ] && { keep_kw=keep; what="--all --keep"; }
    write_fetchmailrc "$w/fetchmailrc" "$FLOOR_PORT" "$keep_kw"
    for i in $(seq 1 "$FETCH_RUNS"); do
      sleep "$REST"; rm -f "$w/out.bsmtp" "$w/fetchids"
      say "floor: fetchmail $what ($MSGS messages), run $i/$FETCH_RUNS"
      n0=$(grep -c '' "$R/pop3_floor.out")
      env HOME="$w" timeout "$TIMEOUT" taskset -c "$fcpu" fetchmail -f "$w/fetchmailrc" -i "$w/fetchids" \
        --pidfile "$w/fetchmail.pid" --nodetach --silent --bsmtp "$w/out.bsmtp" > "$w/fetchmail.log" 2>&1
      rc=$?
      for _ in $(seq 50); do [ "$(grep -c '' "$R/pop3_floor.out")" -gt "$n0" ] && break; sleep 0.1; done
      check=$(timeout 120 python3 "$LIB/pop3_load.py" --check-bsmtp "$w/out.bsmtp" --verify-dir "$TPL")
      cpu=$(tail -1 "$R/pop3_floor.out" | sed -n 's/.*cpu_ns=\([0-9]*\).*/\1/p')
      python3 "$LIB/common.py" fields <(echo '{}') server=floor mode="$mode" run:int="$i" rc:int="$rc" \
        floor_cpu_ns:int="${cpu:-null}" check:json="${check:-null}" >> "$R/floor.jsonl"
      echo "   rc $rc, floor CPU $(( ${cpu:-0} / 1000 )) µs, content $(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); print("identical to the template" if c and c.get("content_ok") else "DIFFERS")' "${check:-null}")"
    done
  done
  kill "$FLOOR_PID" 2>/dev/null; wait "$FLOOR_PID" 2>/dev/null
  # the file operations both servers make in a delete pull of a fresh copy
  # (1,000 renames new/ -> cur/, 1,000 unlinks), alone, prepared as the
  # delete pulls are (fresh copy, sync, SETTLE)
  if [[ " $FETCH_MODES " == *" delete "* ]]; then
    for i in $(seq 1 "$FETCH_RUNS"); do
      fo=$STATE/fileops
      [ -e "$fo" ] && { mv "$fo" "$TRASH/fileops.$(date +%s%N)" || die "cannot move $fo aside"; }
      cp -a "$TPL" "$fo" || die "cp -a $TPL $fo failed"
      timeout 300 sync; sleep "$SETTLE"
      say "floor: the delete pull's file operations alone, run $i/$FETCH_RUNS"
      line=$(taskset -c "$fcpu" "$FLOOR_BIN" --fileops "$fo")
      echo "   $line"
      python3 "$LIB/common.py" fields <(echo '{}') server=floor mode=fileops run:int="$i" \
        renames_ns:int="$(sed -n 's/.*renames_ns=\([0-9]*\).*/\1/p' <<< "$line")" \
        unlinks_ns:int="$(sed -n 's/.*unlinks_ns=\([0-9]*\).*/\1/p' <<< "$line")" >> "$R/floor.jsonl"
    done
  fi
fi

# ------------------------------------------------------------------ report
report_log_warnings
report pop3_table.py POP3
exit 0
