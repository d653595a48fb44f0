#!/bin/bash
# bench/imap/run.sh -- IMAP benchmark: pigeonpost and Dovecot side by side in
# one run.
#
# Both servers get the HOWTO's virtual-user setup (one passwd-file with
# SHA512-CRYPT hashes, static userdb uid 5000, mail_location =
# maildir:<mail>/%d/%n, ssl on with a self-signed certificate) and
# byte-identical copies of the same generated Maildir (MSGS messages of about
# SIZE bytes, in new/ as delivered). Users: load@ (the session test, shared by
# every client), sync@ (mbsync), idle@ (the shared idle test) each get a copy;
# idle001..idleNNN@ (the distinct idle test) get an empty INBOX. Then:
#
#  1. prewarm: the first session of load@ and idle@ (LOGIN, SELECT, UID FETCH
#     1:* (FLAGS RFC822.SIZE), UID FETCH 1:* (BODY.PEEK[]), SEARCH UNSEEN,
#     LOGOUT) on each server, timed, and checked byte for byte against the
#     template; one short session for each idleNNN@;
#  2. sessions: for every concurrency in CONCS, clients loop for DURATION s over
#     LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS RFC822.SIZE), BODIES x UID FETCH
#     n (BODY.PEEK[]), UID STORE n +FLAGS (\Flagged), UID STORE n -FLAGS
#     (\Flagged), SEARCH UNSEEN, LOGOUT, all as load@ (IMAP allows concurrent
#     sessions), RUNS times per server, interleaved (which server goes first
#     alternates): commands/s, sessions/s, latencies, server CPU, memory
#     (pigeonpost: exact peak RSS; Dovecot: peak RSS and PSS summed over its
#     process tree). Every response is checked (see bench/lib/imap_load.py);
#  3. mbsync: a full download of sync@'s INBOX into a fresh local Maildir
#     (isync, plain IMAP, AuthMechs LOGIN), for every mode of MBSYNC_FSYNC
#     (mbsync's own FSync no / yes): the first pull of the fresh copy (cold,
#     reported apart; MBSYNC_FIRST_RUNS > 1 repeats it, each time on another
#     fresh copy with that server restarted, so nothing kept of the last copy
#     remains), then MBSYNC_RUNS timed pulls per server, interleaved;
#     every pull is checked against the template (all MSGS messages, content
#     identical but for line endings);
#  4. idle memory: for every mode of IDLE_MODES, IDLE_CLIENTS connections each
#     LOGIN, SELECT INBOX, IDLE; memory growth / IDLE_CLIENTS (pigeonpost: its
#     RSS; Dovecot: the PSS summed over its process tree). "shared": all as
#     idle@ (the MSGS-message INBOX); "distinct": idle001.. (empty INBOXes).
#     Both servers are restarted before every idle run (so heap left over from
#     the load tests does not hide the cost), and warmed with one session.
#  5. QRESYNC resync: resync@ gets its own copy of RESYNC_MSGS messages; per
#     round, a second session toggles \Flagged on RESYNC_PERCENT % of them and
#     the reader re-selects with SELECT INBOX (QRESYNC (uidvalidity modseq));
#     the server CPU per reselect (and, for context, per SELECT + UID FETCH
#     1:* (FLAGS), what a client without QRESYNC does), every answer checked
#     (bench/lib/imap_resync.py).
# Prints Markdown tables; raw results go to $STATE/results/<timestamp>/.
# The load tools are adapted copies of the project's reference harness
# (shared/bench/): bench/lib/imap_load.py from imap_load.py, bench/lib/idle_mem.py
# from idle_mem.py, and the mbsync step below from mbsync_bench.sh (same
# channel: Patterns INBOX, Sync Pull, Expunge None, AuthMechs LOGIN, a fresh
# store per pull, nothing deleted between pulls). What it shares with the other
# benchmarks (checks, layout, starting and stopping both servers, the session
# runs, the report) is in bench/lib/common.sh.
#
# Run as root (the Dovecot master drops privileges itself):  bench/imap/run.sh
# Quick smoke run (1 run, 5 s per point, 1,000 messages):  QUICK=1 bench/imap/run.sh
# Dovecot alone:  SERVERS=dovecot bench/imap/run.sh
#
# Env:
#   PIGEONPOST_BIN=path  use this binary instead of `cargo build --release`
#   STATE=/tmp/pp-bench-imap       all state (configs, mailboxes, logs, results)
#   SERVERS="dovecot pigeonpost"   either one alone is fine
#   CONCS="1 10 50" RUNS=3 DURATION=20 BODIES=20   session test; MAX_SESSIONS=1000000
#                                  bounds the sessions of one run as well
#   MSGS=5000 SIZE=5120 NAMES=sizes  the generated mailbox (NAMES=plain: file names
#                                  without ,S=,W=, as Postfix virtual(8) writes them)
#   MBSYNC_FSYNC="no yes"          mbsync's FSync setting per mode (empty = no mbsync test)
#   MBSYNC_RUNS=$RUNS              timed pulls per server and mode
#   MBSYNC_FIRST_RUNS=1            first pulls per server (first mode of MBSYNC_FSYNC only)
#   MBSYNC_COMPRESS=0              1 = let mbsync use COMPRESS=DEFLATE where offered
#                                  (pigeonpost offers it; the bench's Dovecot, without its
#                                  imap_zlib plugin, does not: 0 keeps the wire the same)
#   IDLE_CLIENTS=200 IDLE_MODES="shared distinct" IDLE_RUNS=$RUNS IDLE_HOLD=5
#                                  idle test (IDLE_MODES empty = no idle test)
#   IDLE_MANY=10000 IDLE_MANY_PARALLEL=50
#                                  pigeonpost alone: this many idle connections at once
#                                  (empty = no such test; needs a hard open files limit
#                                  above IDLE_MANY + 1000)
#   LARGE_MSGS=100000 LARGE_SIZE=300
#                                  step 6, a large INBOX (empty = none); QUICK=1: 10,000
#   NEW_MAIL=20                    step 6: messages delivered into the large INBOX's new/
#                                  one at a time while a session IDLEs on it (0 = none)
#   FOLDERS=1000                   step 6 then adds this many folders of 3 messages to
#                                  that user: LIST and STATUS of each (empty = none)
#   PIN_CPU=0                      mbsync pulls, and step 6's STATUS-again and NOOP passes,
#                                  with client and server on this CPU (-1: unpinned; see
#                                  set_tree_affinity in bench/lib/common.py)
#   RESYNC_MSGS=10000 RESYNC_PERCENT=1 RESYNC_ROUNDS=10 RESYNC_REPEAT=5
#                                  the resync test (RESYNC_MSGS empty = none)
#   PROCS=auto                     client processes for the session test (auto: 1 for
#                                  1 client, else 2)
#   DOVECOT_PORT=4143 PIGEONPOST_PORT=5143 PIGEONPOST_HTTP_PORT=5581
#   DOVECOT_MAX_USERIP=1000        Dovecot's mail_max_userip_connections (its default, 10,
#                                  refuses the 50-client and idle tests on one user)
#   PP_LOG_LEVEL=info              pigeonpost's log_level (info: logins/logouts, as Dovecot)
#   REST=2                         seconds of rest before every measured run
#   SETTLE=5                       seconds of rest after sync before every mbsync pull
#   TIMEOUT=300                    bound on one mbsync pull / prewarm / idle run, seconds
#   WAIT_OTHERS=1200               before every measured run, wait (polling every 30 s, at
#                                  most this many seconds) until no other benchmark runs
#                                  (processes matching OTHERS_RE); 0 = don't wait
#   OTHERS_RE='pop3_load.py|smtp-source|bench/pop3/run.sh|bench/relay/run.sh'
#   CLEAN_TRASH=0                  1 = delete the moved-aside mailboxes at the end
#                                  (default: keep them; deleting many files slows file
#                                  creation on this VM's ext4 for minutes, see bench/README.md)
# Every wait is bounded; both servers are stopped on exit (also on Ctrl-C).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then D_RUNS=1 D_DURATION=5 D_MSGS=1000 D_SETTLE=1; else D_RUNS=3 D_DURATION=20 D_MSGS=5000 D_SETTLE=5; fi
STATE=${STATE:-/tmp/pp-bench-imap}
SERVERS=${SERVERS:-"dovecot pigeonpost"}
CONCS=${CONCS:-"1 10 50"}; RUNS=${RUNS:-$D_RUNS}; DURATION=${DURATION:-$D_DURATION}; BODIES=${BODIES:-20}
MAX_SESSIONS=${MAX_SESSIONS:-1000000}
MSGS=${MSGS:-$D_MSGS}; SIZE=${SIZE:-5120}; NAMES=${NAMES:-sizes}
MBSYNC_FSYNC=${MBSYNC_FSYNC-"no yes"}; MBSYNC_RUNS=${MBSYNC_RUNS:-$RUNS}
MBSYNC_FIRST_RUNS=${MBSYNC_FIRST_RUNS:-1}
MBSYNC_COMPRESS=${MBSYNC_COMPRESS:-0}; MBSYNC_NOCOMPRESS=""; [ "$MBSYNC_COMPRESS" = 1 ] || MBSYNC_NOCOMPRESS=1
IDLE_CLIENTS=${IDLE_CLIENTS:-200}; IDLE_MODES=${IDLE_MODES-"shared distinct"}; IDLE_RUNS=${IDLE_RUNS:-$RUNS}
if [ "$QUICK" = 1 ]; then D_IDLE_MANY=2000; else D_IDLE_MANY=10000; fi
IDLE_MANY=${IDLE_MANY-$D_IDLE_MANY}; IDLE_MANY_PARALLEL=${IDLE_MANY_PARALLEL:-50}
IDLE_HOLD=${IDLE_HOLD:-5}
PROCS=${PROCS:-auto}
if [ "$QUICK" = 1 ]; then D_RESYNC_MSGS=2000 D_RESYNC_ROUNDS=3; else D_RESYNC_MSGS=10000 D_RESYNC_ROUNDS=10; fi
RESYNC_MSGS=${RESYNC_MSGS-$D_RESYNC_MSGS}; RESYNC_ROUNDS=${RESYNC_ROUNDS:-$D_RESYNC_ROUNDS}
RESYNC_PERCENT=${RESYNC_PERCENT:-1}; RESYNC_REPEAT=${RESYNC_REPEAT:-5}
if [ "$QUICK" = 1 ]; then D_LARGE_MSGS=10000; else D_LARGE_MSGS=100000; fi
LARGE_MSGS=${LARGE_MSGS-$D_LARGE_MSGS}; LARGE_SIZE=${LARGE_SIZE:-300}; FOLDERS=${FOLDERS-1000}
NEW_MAIL=${NEW_MAIL:-20}
DV_PORT=${DOVECOT_PORT:-4143}; PP_PORT=${PIGEONPOST_PORT:-5143}; PP_HTTP=${PIGEONPOST_HTTP_PORT:-5581}
DV_MAX_USERIP=${DOVECOT_MAX_USERIP:-1000}
PP_LOG_LEVEL=${PP_LOG_LEVEL:-info}
REST=${REST:-2}; SETTLE=${SETTLE:-$D_SETTLE}; TIMEOUT=${TIMEOUT:-300}; CLEAN_TRASH=${CLEAN_TRASH:-0}
WAIT_OTHERS=${WAIT_OTHERS:-1200}
OTHERS_RE=${OTHERS_RE:-'pop3_load.py|smtp-source|bench/pop3/run.sh|bench/relay/run.sh'}
LOAD_USER=load@example.com; LOAD_PASS=loadpass
SYNC_USER=sync@example.com; SYNC_PASS=syncpass
IDLE_USER=idle@example.com; IDLE_PASS=idlepass
RESYNC_USER=resync@example.com; RESYNC_PASS=resyncpass
LARGE_USER=large@example.com; LARGE_PASS=largepass
# what the shared steps (bench/lib/common.sh) need to know about this benchmark
PROTO=imap LOAD_PY=imap_load.py SESSION_LINE="cmds machine"
PP_GREETING="* OK" PP_BYE="a LOGOUT" PP_WHAT="the IMAP server"
DOVECOT_ENV=(PROTOCOLS=imap IMAP_PORT="$DV_PORT" MAX_USERIP="$DV_MAX_USERIP" INSTANCE_NAME=pp-bench-imap)

# ------------------------------------------------------------------ arguments
check_servers dovecot pigeonpost
# shellcheck disable=SC2086  # CONCS: words
whole_numbers "RUNS/DURATION/BODIES/MAX_SESSIONS/MSGS/SIZE/MBSYNC_RUNS/IDLE_*/REST/SETTLE/TIMEOUT/WAIT_OTHERS/ports/CONCS" \
  "$RUNS" "$DURATION" "$BODIES" "$MAX_SESSIONS" "$MSGS" "$SIZE" "$MBSYNC_RUNS" "$IDLE_CLIENTS" "$IDLE_RUNS" \
  "$IDLE_HOLD" "$REST" "$SETTLE" "$TIMEOUT" "$WAIT_OTHERS" "$DV_PORT" "$PP_PORT" "$PP_HTTP" "$DV_MAX_USERIP" $CONCS
check_session_settings
{ within "$RUNS" 1 20 && within "$MBSYNC_RUNS" 1 20 && within "$MBSYNC_FIRST_RUNS" 1 20 && within "$IDLE_RUNS" 1 20; } \
  || die "need 1 <= RUNS, MBSYNC_RUNS, MBSYNC_FIRST_RUNS, IDLE_RUNS <= 20"
within "$BODIES" 0 "$MSGS" || die "need 0 <= BODIES <= MSGS"
{ [ -z "$LARGE_MSGS" ] || { within "$LARGE_MSGS" 1000 1000000 && within "$LARGE_SIZE" 200 100000 && within "$NEW_MAIL" 0 1000; }; } \
  || die "need 1000 <= LARGE_MSGS <= 1000000 (or empty), 200 <= LARGE_SIZE <= 100000, 0 <= NEW_MAIL <= 1000"
{ [ -z "$RESYNC_MSGS" ] || { within "$RESYNC_MSGS" 100 100000 && within "$RESYNC_ROUNDS" 1 100 && within "$RESYNC_REPEAT" 1 50; }; } \
  || die "need 100 <= RESYNC_MSGS <= 100000, 1 <= RESYNC_ROUNDS <= 100, 1 <= RESYNC_REPEAT <= 50"
[[ $RESYNC_PERCENT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "RESYNC_PERCENT: a number (percent of RESYNC_MSGS)"
{ within "$IDLE_CLIENTS" 1 999 && within "$IDLE_HOLD" 0 600; } || die "need 1 <= IDLE_CLIENTS <= 999, IDLE_HOLD <= 600"
{ [ -z "$IDLE_MANY" ] || { within "$IDLE_MANY" 1 10000 && within "$IDLE_MANY_PARALLEL" 1 1000; }; } \
  || die "need 1 <= IDLE_MANY <= 10000 (or empty), 1 <= IDLE_MANY_PARALLEL <= 1000"
for m in $MBSYNC_FSYNC; do case $m in yes|no) ;; *) die "MBSYNC_FSYNC: yes and/or no";; esac; done
for m in $IDLE_MODES; do case $m in shared|distinct) ;; *) die "IDLE_MODES: shared and/or distinct";; esac; done

# ------------------------------------------------------------------ prerequisites
need pgrep procps "pgrep (procps)"
if [ -n "$MBSYNC_FSYNC" ]; then need mbsync isync "mbsync (isync)"; fi
dovecot_prepare

# ------------------------------------------------------------------ users, certificate
idle_name() { printf 'idle%03d@example.com' "$1"; }
printf '%s %s\n' "$LOAD_USER" "$LOAD_PASS" > "$ETC/load-client.txt"
printf '%s %s\n' "$IDLE_USER" "$IDLE_PASS" > "$ETC/idle-shared.txt"
for i in $(seq 1 "$IDLE_CLIENTS"); do printf '%s %s\n' "$(idle_name "$i")" "$IDLE_PASS"; done > "$ETC/idle-distinct.txt"
printf '%s %s\n%s %s\n' "$LOAD_USER" "$LOAD_PASS" "$IDLE_USER" "$IDLE_PASS" > "$ETC/verify-clients.txt"
write_passwd_file "$LOAD_USER, $SYNC_USER, $IDLE_USER, $RESYNC_USER, $LARGE_USER, $(idle_name 1)..$(idle_name "$IDLE_CLIENTS")" \
  < <(cat "$ETC/load-client.txt"; printf '%s %s\n%s %s\n%s %s\n' "$SYNC_USER" "$SYNC_PASS" "$RESYNC_USER" "$RESYNC_PASS" "$LARGE_USER" "$LARGE_PASS"
      cat "$ETC/idle-shared.txt" "$ETC/idle-distinct.txt")
make_cert

# ------------------------------------------------------------------ the mailbox template
make_template
idle_distinct=0; case " $IDLE_MODES " in *" distinct "*) idle_distinct=1;; esac
for s in $SERVERS; do
  say "$s: copying the template ($MSGS messages, $((TPL_BYTES / 1024)) KiB) for ${LOAD_USER%@*}, ${SYNC_USER%@*}, ${IDLE_USER%@*}$([ $idle_distinct = 1 ] && echo ", and $IDLE_CLIENTS empty INBOXes")"
  for u in "$LOAD_USER" "$SYNC_USER" "$IDLE_USER"; do fresh_copy "$s" "${u%@*}"; done
  if [ $idle_distinct = 1 ]; then
    for i in $(seq 1 "$IDLE_CLIENTS"); do u=$(idle_name "$i"); fresh_copy "$s" "${u%@*}" empty; done
  fi
done
# A user's own template, generated again only when its parameters change:
# own_template NAME "PARAMS" mkmaildir.py-arguments...  ($STATE/template-NAME)
own_template() {
  local name=$1 t=$STATE/template-$1 params=$2; shift 2
  [ "$(cat "$t/params" 2>/dev/null)" = "$params" ] && return 0
  [ -e "$t" ] && mv "$t" "$TRASH/template-$name.$(date +%s%N)"
  mkdir -p "$t"
  say "generating $t ($params)"
  python3 "$LIB/mkmaildir.py" "$t/Maildir" "$@" > /dev/null || die "mkmaildir failed"
  chown -R "$VUID:$VGID" "$t"; chmod -R go-rwx "$t/Maildir"
  echo "$params" > "$t/params"
}
# place_template NAME SERVER USER: a fresh copy of it as USER's Maildir
# (the previous one moved to the trash)
place_template() {
  local dst
  dst=$(mailroot "$2")/example.com/${3%@*}
  [ -e "$dst" ] && { mv "$dst" "$TRASH/$2-$1.$(date +%s%N)" || die "cannot move $dst aside"; }
  cp -a "$STATE/template-$1/Maildir" "$dst" || die "cp -a of the $1 template failed"
}
# resync@'s INBOX: its own template of RESYNC_MSGS messages (step 5)
if [ -n "$RESYNC_MSGS" ]; then
  noszs=(); [ "$NAMES" = plain ] && noszs=(--no-sizes)
  own_template resync "msgs=$RESYNC_MSGS size=$SIZE names=$NAMES seed=1 v=1" --count "$RESYNC_MSGS" --size "$SIZE" "${noszs[@]}"
  for s in $SERVERS; do
    say "$s: copying the resync template ($RESYNC_MSGS messages) for ${RESYNC_USER%@*}"
    place_template resync "$s" "$RESYNC_USER"
  done
fi
# large@'s INBOX: LARGE_MSGS small messages, fresh in new/ (step 6); copied
# only right before step 6, so that the other steps run beside a small store
if [ -n "$LARGE_MSGS" ]; then
  own_template large "msgs=$LARGE_MSGS size=$LARGE_SIZE seed=1 v=1" --count "$LARGE_MSGS" --size "$LARGE_SIZE"
fi
# the mbsync stores of an earlier run go to the trash as well
[ -e "$WORK/mbsync" ] && mv "$WORK/mbsync" "$TRASH/mbsync.$(date +%s%N)"
mkdir -p "$WORK/mbsync"
timeout 300 sync

# ------------------------------------------------------------------ servers, metadata
start_servers
python3 "$LIB/common.py" meta "$R/meta.json" servers="$SERVERS" concs="$CONCS" runs:int="$RUNS" duration:int="$DURATION" \
  bodies:int="$BODIES" msgs:int="$MSGS" size:int="$SIZE" names="$NAMES" mbsync_fsync="$MBSYNC_FSYNC" \
  mbsync_runs:int="$MBSYNC_RUNS" mbsync_first_runs:int="$MBSYNC_FIRST_RUNS" idle_clients:int="$IDLE_CLIENTS" idle_modes="$IDLE_MODES" idle_runs:int="$IDLE_RUNS" \
  idle_hold:int="$IDLE_HOLD" idle_many="$IDLE_MANY" idle_many_parallel="$IDLE_MANY_PARALLEL" resync_msgs="$RESYNC_MSGS" resync_percent="$RESYNC_PERCENT" \
  resync_rounds:int="$RESYNC_ROUNDS" resync_repeat:int="$RESYNC_REPEAT" mailbox_bytes:int="$TPL_BYTES" procs="$PROCS" pp_log_level="$PP_LOG_LEVEL" \
  dovecot_max_userip:int="$DV_MAX_USERIP"
{ env_txt "$([ -n "$MBSYNC_FSYNC" ] && echo "mbsync: $(mbsync --version 2>/dev/null | head -1)")"
  echo "SERVERS=$SERVERS CONCS=$CONCS RUNS=$RUNS DURATION=$DURATION BODIES=$BODIES MAX_SESSIONS=$MAX_SESSIONS PROCS=$PROCS"
  echo "MBSYNC_FSYNC=$MBSYNC_FSYNC MBSYNC_RUNS=$MBSYNC_RUNS MBSYNC_FIRST_RUNS=$MBSYNC_FIRST_RUNS MBSYNC_COMPRESS=$MBSYNC_COMPRESS IDLE_CLIENTS=$IDLE_CLIENTS IDLE_MODES=$IDLE_MODES IDLE_RUNS=$IDLE_RUNS IDLE_HOLD=$IDLE_HOLD"
  echo "REST=$REST SETTLE=$SETTLE PP_LOG_LEVEL=$PP_LOG_LEVEL DOVECOT_MAX_USERIP=$DV_MAX_USERIP WAIT_OTHERS=$WAIT_OTHERS PIN_CPU=${PIN_CPU:-0}"; } > "$R/env.txt"

# ------------------------------------------------------------------ 1. prewarm + verify
for s in $SERVERS; do
  alive "$s"
  say "$s: first session of ${LOAD_USER%@*} and ${IDLE_USER%@*} ($MSGS messages, every body fetched), checked against the template"
  prewarm_verify "$s" "$ETC/verify-clients.txt" 120 mailbox
  if [ $idle_distinct = 1 ]; then
    timeout $((TIMEOUT + 60)) python3 "$LIB/imap_load.py" --port "$(port_of "$s")" --userfile "$ETC/idle-distinct.txt" --prewarm \
      --io-timeout 60 --tag "$s-idle-distinct" > "$R/prewarm_${s}_idle_distinct.log" 2>&1 \
      || { say "WARNING: $s: first sessions of the $IDLE_CLIENTS empty INBOXes failed:"; tail -3 "$R/prewarm_${s}_idle_distinct.log" | sed 's/^/   /'; }
  fi
done

# ------------------------------------------------------------------ 2. sessions
SESSION_ARGS=(--userfile "$ETC/load-client.txt" --bodies "$BODIES")
run_sessions

# ------------------------------------------------------------------ 3. mbsync
restart_server() { # server
  case $1 in
    pigeonpost) stop_pigeonpost; start_pigeonpost;;
    dovecot) stop_dovecot > /dev/null; start_dovecot;;
  esac
}
restart_servers() {
  for s in $SERVERS; do restart_server "$s"; done
}
mbsync_once() { # server fsync label run
  local s=$1 fs=$2 label=$3 i=$4 store cfg check
  alive "$s"
  store=$WORK/mbsync/$s-fsync$fs-$label-$i; cfg=$WORK/mbsync/$s-fsync$fs-$label-$i.rc
  [ -e "$store" ] && mv "$store" "$TRASH/mbsync-store.$(date +%s%N)"
  mkdir -p "$store"
  cat > "$cfg" <<EOF
FSync $fs

IMAPAccount bench
Host $ADDR
Port $(port_of "$s")
User $SYNC_USER
Pass "$SYNC_PASS"
AuthMechs LOGIN
SSLType None
${MBSYNC_NOCOMPRESS:+DisableExtensions COMPRESS=DEFLATE
}
IMAPStore bench-remote
Account bench

MaildirStore bench-local
Path $store/
Inbox $store/INBOX

Channel bench
Far :bench-remote:
Near :bench-local:
Patterns INBOX
Create Near
Sync Pull
Expunge None
SyncState *
EOF
  chmod 600 "$cfg"
  timeout 300 sync; sleep "$SETTLE"
  wait_others
  pull_measured "$s" env HOME="$WORK" timeout "$TIMEOUT" mbsync -q -c "$cfg" bench > "$R/mbsync_${s}_fsync${fs}_${label}_$i.log" 2>&1
  check=$(timeout 300 python3 "$LIB/imap_load.py" --check-maildir "$store/INBOX" --verify-dir "$TPL")
  python3 "$LIB/common.py" pull-record server="$s" fsync="$fs" mode="$label" run:int="$i" rc:int="$PULL_RC" \
    expected:int="$MSGS" overlap:bool="$OVERLAP" "${PULL_FIELDS[@]}" client=mbsync check:json="${check:-null}" \
    no_check:json='["no check"]' >> "$R/mbsync.jsonl"
  tail -1 "$R/mbsync.jsonl" | python3 "$LIB/common.py" pull-line mbsync
  [ "$PULL_RC" = 0 ] || { say "  mbsync exited $PULL_RC:"; tail -3 "$R/mbsync_${s}_fsync${fs}_${label}_$i.log" | sed 's/^/     /'; }
}
first_mode=1
for fs in $MBSYNC_FSYNC; do
  if [ $first_mode = 1 ]; then
    # sync@ is still the untouched copy made at the start: its first pull is the cold one, reported apart;
    # later first pulls get another fresh copy, and their server a restart (pigeonpost keeps what it
    # learnt of a folder in memory, Dovecot in the folder's own index files)
    for i in $(seq 1 "$MBSYNC_FIRST_RUNS"); do
      for s in $(order "$i"); do
        if [ "$i" -gt 1 ]; then
          fresh_copy "$s" "${SYNC_USER%@*}"; restart_server "$s"
        fi
        say "$s: mbsync (FSync $fs), first pull of the fresh copy ($MSGS messages), run $i/$MBSYNC_FIRST_RUNS"
        mbsync_once "$s" "$fs" first "$i"
      done
    done
    first_mode=0
  fi
  for i in $(seq 1 "$MBSYNC_RUNS"); do
    for s in $(order "$i"); do
      say "$s: mbsync (FSync $fs), full download into a fresh store ($MSGS messages), run $i/$MBSYNC_RUNS"
      mbsync_once "$s" "$fs" warm "$i"
    done
  done
done

# ------------------------------------------------------------------ 4. idle memory
for mode in $IDLE_MODES; do
  if [ "$mode" = shared ]; then uf=$ETC/idle-shared.txt; else uf=$ETC/idle-distinct.txt; fi
  for i in $(seq 1 "$IDLE_RUNS"); do
    for s in $(order "$i"); do
      say "$s: $IDLE_CLIENTS idle clients (LOGIN, SELECT, IDLE), $mode, run $i/$IDLE_RUNS (both servers restarted first)"
      restart_servers
      alive "$s"
      # warm the fresh server with one short session of the same kind
      timeout 120 python3 "$LIB/imap_load.py" --port "$(port_of "$s")" --userfile "$uf" --clients 1 --procs 1 --duration 1 \
        --max-sessions 1 --bodies 0 --warmup 0 --tag warm > /dev/null 2>&1 || say "  WARNING: the warm-up session failed"
      wait_others
      sleep "$REST"
      timeout $((TIMEOUT + 30)) python3 "$LIB/idle_mem.py" --port "$(port_of "$s")" --userfile "$uf" --clients "$IDLE_CLIENTS" \
        --hold "$IDLE_HOLD" --server-pids "$(pids_of "$s")" --timeout "$TIMEOUT" --tag "$s" --json-out "$R/idle.jsonl" \
        --extra-json "{\"mode\": \"$mode\", \"run\": $i, \"overlap\": $([ "$OVERLAP" = 1 ] && echo true || echo false)}" \
        > "$R/.idle.log" 2>&1
      rc=$?
      cat "$R/.idle.log" >> "$R/idle_${s}_$mode.log"
      grep -E '^(idle_mem:|  error)' "$R/.idle.log" | sed 's/^/   /'
      [ "$rc" = 0 ] || { say "  idle_mem.py exited $rc:"; tail -3 "$R/.idle.log" | sed 's/^/     /'; }
      rm -f "$R/.idle.log"
    done
  done
done

# ------------------------------------------------------------------ 4b. many idle connections
# pigeonpost only (Dovecot runs one imap process per connection, at most
# 1,024 by default): IDLE_MANY connections of idle@ (the MSGS-message INBOX)
# LOGIN, SELECT and IDLE, IDLE_MANY_PARALLEL at a time; the server's RSS with
# all of them idle, its CPU meanwhile, and that all still answer DONE. The
# server runs with its per-listener and per-user-and-IP limits lifted for
# this step only (both 1,000 in the generated config).
if [ -n "$IDLE_MANY" ] && has pigeonpost; then
  say "pigeonpost: $IDLE_MANY idle clients (LOGIN, SELECT, IDLE) on ${IDLE_USER%@*}'s INBOX, server restarted with the connection limits lifted"
  cp "$PP/pigeonpost.toml" "$PP/pigeonpost.toml.normal"
  sed -i "s/^mail_max_userip_connections = .*/mail_max_userip_connections = 0\nmax_connections = $((IDLE_MANY + 100))/" "$PP/pigeonpost.toml"
  stop_pigeonpost; start_pigeonpost; alive pigeonpost
  timeout 120 python3 "$LIB/imap_load.py" --port "$PP_PORT" --userfile "$ETC/idle-shared.txt" --clients 1 --procs 1 --duration 1 \
    --max-sessions 1 --bodies 0 --warmup 0 --tag warm > /dev/null 2>&1 || say "  WARNING: the warm-up session failed"
  wait_others
  sleep "$REST"
  # one descriptor per connection on the client side too
  ( ulimit -n $((IDLE_MANY + 1000)) 2>/dev/null || { say "  cannot raise the client's open files limit to $((IDLE_MANY + 1000)) (hard limit $(ulimit -Hn))"; exit 3; }
    exec timeout $((TIMEOUT + 60)) python3 "$LIB/idle_mem.py" --port "$PP_PORT" --userfile "$ETC/idle-shared.txt" --clients "$IDLE_MANY" \
      --parallel "$IDLE_MANY_PARALLEL" --hold "$IDLE_HOLD" --server-pids "$(pids_of pigeonpost)" --timeout "$TIMEOUT" --tag pigeonpost \
      --json-out "$R/idle.jsonl" --extra-json "{\"mode\": \"many\", \"run\": 1}" ) > "$R/.idle.log" 2>&1
  rc=$?
  cat "$R/.idle.log" >> "$R/idle_pigeonpost_many.log"
  grep -E '^(idle_mem:|  error)' "$R/.idle.log" | sed 's/^/   /'
  [ "$rc" = 0 ] || { say "  idle_mem.py exited $rc:"; tail -3 "$R/.idle.log" | sed 's/^/     /'; }
  rm -f "$R/.idle.log"
  mv "$PP/pigeonpost.toml.normal" "$PP/pigeonpost.toml"
  stop_pigeonpost; start_pigeonpost
fi

# ------------------------------------------------------------------ 5. QRESYNC resync
# resync@ (RESYNC_MSGS messages): one first session builds each server's index
# (not measured); then bench/lib/imap_resync.py changes \Flagged on
# RESYNC_PERCENT % of the messages per round and measures the server CPU of a
# QRESYNC reselect, and of SELECT + UID FETCH 1:* (FLAGS) for context.
if [ -n "$RESYNC_MSGS" ]; then
  printf '%s %s\n' "$RESYNC_USER" "$RESYNC_PASS" > "$ETC/resync-client.txt"
  for s in $(order 1); do
    alive "$s"
    say "$s: QRESYNC reselect after $RESYNC_PERCENT % of $RESYNC_MSGS messages changed flags, $RESYNC_ROUNDS rounds × $RESYNC_REPEAT reselects"
    timeout $((TIMEOUT + 60)) python3 "$LIB/imap_load.py" --port "$(port_of "$s")" --userfile "$ETC/resync-client.txt" --prewarm \
      --io-timeout "$TIMEOUT" --tag "$s-resync" > "$R/prewarm_${s}_resync.log" 2>&1 \
      || say "WARNING: $s: the first session of ${RESYNC_USER%@*} failed (see $R/prewarm_${s}_resync.log)"
    wait_others
    sleep "$REST"
    timeout $((TIMEOUT * 4)) python3 "$LIB/imap_resync.py" --port "$(port_of "$s")" --user "$RESYNC_USER" \
      --password "$RESYNC_PASS" --server-pids "$(pids_of "$s" | tr ' ' ',')" --rounds "$RESYNC_ROUNDS" \
      --percent "$RESYNC_PERCENT" --repeat "$RESYNC_REPEAT" --timeout "$TIMEOUT" --tag "$s" --json-out "$R/resync.jsonl" \
      > "$R/resync_$s.log" 2>&1
    rc=$?
    sed 's/^/   /' "$R/resync_$s.log" | tail -3
    [ "$rc" = 0 ] || say "WARNING: $s: the resync check failed (see $R/resync_$s.log)"
  done
fi

# ------------------------------------------------------------------ 6. a large mailbox
# large@ (LARGE_MSGS messages): per server, a fresh copy; the first SELECT
# (bench/lib/imap_large.py --phase first), a restart of that server, then
# the later operations and the memory one session holding it costs
# (--phase later), another restart, then SELECT and SORT (DATE) with
# nothing cached in the server (--phase cold). Every answer is checked.
if [ -n "$LARGE_MSGS" ]; then
  printf '%s %s\n' "$LARGE_USER" "$LARGE_PASS" > "$ETC/large-client.txt"
  for s in $(order 1); do
    say "$s: a fresh copy of the large template ($LARGE_MSGS messages) for ${LARGE_USER%@*}"
    place_template large "$s" "$LARGE_USER"
    timeout 300 sync; sleep "$SETTLE"
    alive "$s"; wait_others
    for phase in first later cold folders; do
      if [ "$phase" = folders ]; then
        [ -n "$FOLDERS" ] || continue
        python3 "$LIB/mkfolders.py" "$(mailroot "$s")/example.com/${LARGE_USER%@*}" --count "$FOLDERS" \
          --msgs 3 > /dev/null || die "mkfolders.py failed"
        chown -R "$VUID:$VGID" "$(mailroot "$s")/example.com/${LARGE_USER%@*}"
        timeout 300 sync; sleep "$REST"
      elif [ "$phase" != first ]; then
        if [ "$s" = pigeonpost ]; then stop_pigeonpost; start_pigeonpost; else stop_dovecot > /dev/null; start_dovecot; fi
        alive "$s"; sleep "$REST"
      fi
      timeout $((TIMEOUT * 4)) python3 "$LIB/imap_large.py" --port "$(port_of "$s")" --user "$LARGE_USER" \
        --password "$LARGE_PASS" --server-pids "$(pids_of "$s" | tr ' ' ',')" \
        --msgs "$(if [ "$phase" = cold ] || [ "$phase" = folders ]; then echo $((LARGE_MSGS + NEW_MAIL)); else echo "$LARGE_MSGS"; fi)" \
        --subject "message 777 of" --phase "$phase" --folders "${FOLDERS:-0}" --pin-cpu "${PIN_CPU:-0}" --timeout "$TIMEOUT" --tag "$s" \
        --maildir "$(mailroot "$s")/example.com/${LARGE_USER%@*}" --owner "$VUID:$VGID" --new-mail "$NEW_MAIL" \
        --json-out "$R/large.jsonl" \
        > "$R/large_${s}_$phase.log" 2>&1 || say "WARNING: $s: the large-mailbox check failed (see $R/large_${s}_$phase.log)"
      sed 's/^/   /' "$R/large_${s}_$phase.log" | tail -12
    done
  done
fi

# ------------------------------------------------------------------ report
report_log_warnings save
report imap_table.py IMAP
exit 0
