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
#     reported apart), then MBSYNC_RUNS timed pulls per server, interleaved;
#     every pull is checked against the template (all MSGS messages, content
#     identical but for line endings);
#  4. idle memory: for every mode of IDLE_MODES, IDLE_CLIENTS connections each
#     LOGIN, SELECT INBOX, IDLE; memory growth / IDLE_CLIENTS (pigeonpost: its
#     RSS; Dovecot: the PSS summed over its process tree). "shared": all as
#     idle@ (the MSGS-message INBOX); "distinct": idle001.. (empty INBOXes).
#     Both servers are restarted before every idle run (so heap left over from
#     the load tests does not hide the cost), and warmed with one session.
# Prints Markdown tables; raw results go to $STATE/results/<timestamp>/.
# The load tools are adapted copies of the project's reference harness
# (shared/bench/): bench/lib/imap_load.py from imap_load.py, bench/lib/idle_mem.py
# from idle_mem.py, and the mbsync step below from mbsync_bench.sh (same
# channel: Patterns INBOX, Sync Pull, Expunge None, AuthMechs LOGIN, a fresh
# store per pull, nothing deleted between pulls).
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
#   IDLE_CLIENTS=200 IDLE_MODES="shared distinct" IDLE_RUNS=$RUNS IDLE_HOLD=5
#                                  idle test (IDLE_MODES empty = no idle test)
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

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=$ROOT/bench/lib
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then D_RUNS=1 D_DURATION=5 D_MSGS=1000 D_SETTLE=1; else D_RUNS=3 D_DURATION=20 D_MSGS=5000 D_SETTLE=5; fi
STATE=${STATE:-/tmp/pp-bench-imap}
SERVERS=${SERVERS:-"dovecot pigeonpost"}
CONCS=${CONCS:-"1 10 50"}; RUNS=${RUNS:-$D_RUNS}; DURATION=${DURATION:-$D_DURATION}; BODIES=${BODIES:-20}
MAX_SESSIONS=${MAX_SESSIONS:-1000000}
MSGS=${MSGS:-$D_MSGS}; SIZE=${SIZE:-5120}; NAMES=${NAMES:-sizes}
MBSYNC_FSYNC=${MBSYNC_FSYNC-"no yes"}; MBSYNC_RUNS=${MBSYNC_RUNS:-$RUNS}
IDLE_CLIENTS=${IDLE_CLIENTS:-200}; IDLE_MODES=${IDLE_MODES-"shared distinct"}; IDLE_RUNS=${IDLE_RUNS:-$RUNS}
IDLE_HOLD=${IDLE_HOLD:-5}
PROCS=${PROCS:-auto}
DV_PORT=${DOVECOT_PORT:-4143}; PP_PORT=${PIGEONPOST_PORT:-5143}; PP_HTTP=${PIGEONPOST_HTTP_PORT:-5581}
DV_MAX_USERIP=${DOVECOT_MAX_USERIP:-1000}
PP_LOG_LEVEL=${PP_LOG_LEVEL:-info}
REST=${REST:-2}; SETTLE=${SETTLE:-$D_SETTLE}; TIMEOUT=${TIMEOUT:-300}; CLEAN_TRASH=${CLEAN_TRASH:-0}
WAIT_OTHERS=${WAIT_OTHERS:-1200}
OTHERS_RE=${OTHERS_RE:-'pop3_load.py|smtp-source|bench/pop3/run.sh|bench/relay/run.sh'}
ADDR=127.0.0.1
LOAD_USER=load@example.com; LOAD_PASS=loadpass
SYNC_USER=sync@example.com; SYNC_PASS=syncpass
IDLE_USER=idle@example.com; IDLE_PASS=idlepass

say() { echo "[bench/imap $(date +%T)] $*"; }
die() { echo "bench/imap: $*" >&2; exit 1; }
has() { case " $SERVERS " in *" $1 "*) return 0;; *) return 1;; esac; }

# ------------------------------------------------------------------ arguments
[ -n "$SERVERS" ] || die "SERVERS is empty"
for s in $SERVERS; do case $s in dovecot|pigeonpost) ;; *) die "SERVERS: unknown server '$s' (dovecot, pigeonpost)";; esac; done
for n in "$RUNS" "$DURATION" "$BODIES" "$MAX_SESSIONS" "$MSGS" "$SIZE" "$MBSYNC_RUNS" "$IDLE_CLIENTS" "$IDLE_RUNS" \
         "$IDLE_HOLD" "$REST" "$SETTLE" "$TIMEOUT" "$WAIT_OTHERS" "$DV_PORT" "$PP_PORT" "$PP_HTTP" "$DV_MAX_USERIP" $CONCS; do
  [[ $n =~ ^[0-9]+$ ]] || die "RUNS/DURATION/BODIES/MAX_SESSIONS/MSGS/SIZE/MBSYNC_RUNS/IDLE_*/REST/SETTLE/TIMEOUT/WAIT_OTHERS/ports/CONCS must be whole numbers"
done
[ -n "$CONCS" ] || die "CONCS is empty"
within() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }   # n min max
{ within "$RUNS" 1 20 && within "$MBSYNC_RUNS" 1 20 && within "$IDLE_RUNS" 1 20; } || die "need 1 <= RUNS, MBSYNC_RUNS, IDLE_RUNS <= 20"
within "$DURATION" 1 600 || die "need 1 <= DURATION <= 600"
{ within "$MSGS" 1 100000 && within "$SIZE" 200 10000000; } || die "need 1 <= MSGS <= 100000, 200 <= SIZE <= 10000000"
within "$BODIES" 0 "$MSGS" || die "need 0 <= BODIES <= MSGS"
{ within "$IDLE_CLIENTS" 1 999 && within "$IDLE_HOLD" 0 600; } || die "need 1 <= IDLE_CLIENTS <= 999, IDLE_HOLD <= 600"
for c in $CONCS; do within "$c" 1 500 || die "CONCS: 1..500 clients"; done
for m in $MBSYNC_FSYNC; do case $m in yes|no) ;; *) die "MBSYNC_FSYNC: yes and/or no";; esac; done
for m in $IDLE_MODES; do case $m in shared|distinct) ;; *) die "IDLE_MODES: shared and/or distinct";; esac; done
[[ $PP_LOG_LEVEL =~ ^[A-Za-z0-9_:=,.]+$ ]] || die "PP_LOG_LEVEL: a log filter such as info or warn"
case $NAMES in sizes|plain) ;; *) die "NAMES must be sizes or plain";; esac
case $PROCS in auto) ;; *) { [[ $PROCS =~ ^[0-9]+$ ]] && within "$PROCS" 1 16; } || die "PROCS: auto or 1..16";; esac
case "$STATE" in /*) ;; *) die "STATE must be an absolute path";; esac

# ------------------------------------------------------------------ prerequisites
# Nothing is installed here: say what is missing and how to get it.
missing=() pkgs=()
command -v python3 >/dev/null || { missing+=(python3); pkgs+=(python3); }
command -v ss >/dev/null || { missing+=("ss (iproute2)"); pkgs+=(iproute2); }
command -v openssl >/dev/null || { missing+=(openssl); pkgs+=(openssl); }
command -v pgrep >/dev/null || { missing+=("pgrep (procps)"); pkgs+=(procps); }
if [ -n "$MBSYNC_FSYNC" ]; then command -v mbsync >/dev/null || { missing+=("mbsync (isync)"); pkgs+=(isync); }; fi
if has dovecot; then
  for t in dovecot doveconf doveadm; do command -v $t >/dev/null || { missing+=("$t (dovecot-core)"); pkgs+=(dovecot-core); }; done
  [ -e /usr/lib/dovecot/imap ] || { missing+=("dovecot's imap (dovecot-imapd)"); pkgs+=(dovecot-imapd); }
fi
if has pigeonpost && [ -z "${PIGEONPOST_BIN:-}" ]; then command -v cargo >/dev/null || missing+=("cargo (https://rustup.rs), or set PIGEONPOST_BIN"); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/imap: missing: ${missing[*]}" >&2
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "install with (Debian/Ubuntu; the packaged dovecot service is not used):" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')" >&2
  fi
  exit 1
fi
if has dovecot && [ "$(id -u)" != 0 ]; then
  die "the Dovecot side needs root (its master drops privileges itself): run with sudo, or SERVERS=pigeonpost for pigeonpost alone"
fi

# ------------------------------------------------------------------ pigeonpost binary
BIN=""
if has pigeonpost; then
  if [ -n "${PIGEONPOST_BIN:-}" ]; then
    BIN=$PIGEONPOST_BIN
  else
    say "building pigeonpost (cargo build --release in $ROOT)"
    (cd "$ROOT" && timeout 3600 cargo build --release) || die "cargo build --release failed"
    BIN=$ROOT/target/release/pigeonpost
  fi
  [ -x "$BIN" ] || die "pigeonpost binary not found or not executable: $BIN"
  BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
fi
# PIGEONPOST_* variables in our environment (PIGEONPOST_BIN included) would be
# read as settings by pigeonpost: run it without them.
unset_pp=(); for v in $(compgen -e | grep '^PIGEONPOST_' || true); do unset_pp+=(-u "$v"); done
pp() { env "${unset_pp[@]}" "$BIN" "$@"; }

# ------------------------------------------------------------------ layout
DV=$STATE/dovecot; PP=$STATE/pigeonpost; TRASH=$STATE/trash; ETC=$STATE/etc; WORK=$STATE/work
TPL=$STATE/template/Maildir
STAMP=$(date +%Y%m%d-%H%M%S); R=$STATE/results/$STAMP
mkdir -p "$STATE" "$ETC" "$TRASH" "$WORK" "$R" "$DV/mail/example.com" "$PP/mail/example.com" "$PP/queue" \
  || die "cannot create $STATE"
chmod 755 "$STATE" "$DV" "$PP" "$DV/mail" "$PP/mail"
ln -sfn "$STAMP" "$STATE/results/latest"
if [ "$(id -u)" = 0 ]; then VUID=5000 VGID=5000; else VUID=$(id -u) VGID=$(id -g); fi
if [ "$(id -u)" = 0 ]; then   # the mailbox owner, as in the HOWTO (vmail 5000:5000)
  getent group "$VGID" >/dev/null || groupadd -g "$VGID" vmail || die "cannot create group $VGID"
  getent passwd "$VUID" >/dev/null || useradd -u "$VUID" -g "$VGID" -d /nonexistent -M -s /usr/sbin/nologin -c "virtual mail" vmail \
    || die "cannot create user $VUID"
fi
chown "$VUID:$VGID" "$DV/mail/example.com" "$PP/mail/example.com"

port_busy() { ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qx "$ADDR:$1"; }
mailroot() { if [ "$1" = dovecot ]; then echo "$DV/mail"; else echo "$PP/mail"; fi; }
port_of() { if [ "$1" = dovecot ]; then echo "$DV_PORT"; else echo "$PP_PORT"; fi; }
pids_of() { if [ "$1" = dovecot ]; then echo "$DV_PID"; else echo "$PP_PID"; fi; }

# ------------------------------------------------------------------ cleanup (trap)
PP_PID="" DV_PID=""
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
stop_dovecot() {
  if has dovecot; then DOVECOT_DIR=$DV PORTS=$DV_PORT "$LIB/stop-dovecot.sh" 2>&1 | sed 's/^/  /'; fi
  DV_PID=""
}
cleanup() {
  trap - EXIT INT TERM
  stop_pigeonpost
  stop_dovecot
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 130' INT TERM

# a pigeonpost left over from an aborted run of this script (same state dir)
if [ -s "$PP/pid" ]; then
  old=$(cat "$PP/pid")
  if [ "$(cat /proc/"$old"/comm 2>/dev/null)" = pigeonpost ]; then
    say "stopping pigeonpost left from an earlier run (pid $old)"; kill -TERM "$old"
    for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$old" 2>/dev/null && kill -KILL "$old"
  fi
  rm -f "$PP/pid"
fi
# ... and a Dovecot (stop-dovecot.sh only stops the one started with our config)
has dovecot && DOVECOT_DIR=$DV PORTS=$DV_PORT "$LIB/stop-dovecot.sh" >/dev/null 2>&1

# ------------------------------------------------------------------ users, certificate
USERS=$ETC/users          # the passwd-file both servers read
hash_pw() {
  if command -v doveadm >/dev/null; then doveadm pw -s SHA512-CRYPT -p "$1"; else pp pw -s SHA512-CRYPT -p "$1"; fi
}
idle_name() { printf 'idle%03d@example.com' "$1"; }
want_users=$((IDLE_CLIENTS + 3))
if [ ! -s "$USERS" ] || [ "$(grep -c . "$USERS")" != "$want_users" ]; then
  say "writing the passwd-file: $LOAD_USER, $SYNC_USER, $IDLE_USER, $(idle_name 1)..$(idle_name "$IDLE_CLIENTS") (SHA512-CRYPT, one salt each)"
  {
    printf '%s:%s\n' "$LOAD_USER" "$(hash_pw "$LOAD_PASS")"
    printf '%s:%s\n' "$SYNC_USER" "$(hash_pw "$SYNC_PASS")"
    printf '%s:%s\n' "$IDLE_USER" "$(hash_pw "$IDLE_PASS")"
    for i in $(seq 1 "$IDLE_CLIENTS"); do printf '%s:%s\n' "$(idle_name "$i")" "$(hash_pw "$IDLE_PASS")"; done
  } > "$USERS.tmp" || die "cannot hash passwords"
  mv "$USERS.tmp" "$USERS"
fi
chmod 640 "$USERS"
printf '%s %s\n' "$LOAD_USER" "$LOAD_PASS" > "$ETC/load-client.txt"
printf '%s %s\n' "$IDLE_USER" "$IDLE_PASS" > "$ETC/idle-shared.txt"
for i in $(seq 1 "$IDLE_CLIENTS"); do printf '%s %s\n' "$(idle_name "$i")" "$IDLE_PASS"; done > "$ETC/idle-distinct.txt"
printf '%s %s\n%s %s\n' "$LOAD_USER" "$LOAD_PASS" "$IDLE_USER" "$IDLE_PASS" > "$ETC/verify-clients.txt"

if [ ! -s "$ETC/cert.pem" ] || [ ! -s "$ETC/key.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=mail.example.com" \
    -addext "subjectAltName=DNS:mail.example.com,DNS:localhost,IP:127.0.0.1" \
    -keyout "$ETC/key.pem" -out "$ETC/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
fi
chmod 644 "$ETC/cert.pem"; chmod 600 "$ETC/key.pem"

# ------------------------------------------------------------------ the mailbox template
tpl_params="msgs=$MSGS size=$SIZE names=$NAMES seed=1 v=1"
if [ "$(cat "$STATE/template/params" 2>/dev/null)" != "$tpl_params" ]; then
  [ -e "$STATE/template" ] && mv "$STATE/template" "$TRASH/template.$(date +%s%N)"
  mkdir -p "$STATE/template"
  noszs=(); [ "$NAMES" = plain ] && noszs=(--no-sizes)
  python3 "$LIB/mkmaildir.py" "$TPL" --count "$MSGS" --size "$SIZE" "${noszs[@]}" || die "mkmaildir failed"
  chown -R "$VUID:$VGID" "$TPL"; chmod -R go-rwx "$TPL"
  echo "$tpl_params" > "$STATE/template/params"
fi
TPL_SUM=$(cd "$TPL" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
TPL_BYTES=$(du -sb "$TPL/new" | cut -f1)

# fresh_copy server user [empty]: move the user's maildir aside (never rm: see
# the caveats in bench/README.md) and cp -a the template (or an empty Maildir)
fresh_copy() {
  local dst
  dst=$(mailroot "$1")/example.com/$2
  [ -e "$dst" ] && { mv "$dst" "$TRASH/$1-$2.$(date +%s%N)" || die "cannot move $dst aside"; }
  if [ "${3:-}" = empty ]; then
    { mkdir -p "$dst/cur" "$dst/new" "$dst/tmp" && chown -R "$VUID:$VGID" "$dst" && chmod -R go-rwx "$dst"; } \
      || die "cannot create $dst"
  else
    cp -a "$TPL" "$dst" || die "cp -a $TPL $dst failed"
  fi
}
idle_distinct=0; case " $IDLE_MODES " in *" distinct "*) idle_distinct=1;; esac
for s in $SERVERS; do
  say "$s: copying the template ($MSGS messages, $((TPL_BYTES / 1024)) KiB) for ${LOAD_USER%@*}, ${SYNC_USER%@*}, ${IDLE_USER%@*}$([ $idle_distinct = 1 ] && echo ", and $IDLE_CLIENTS empty INBOXes")"
  for u in "$LOAD_USER" "$SYNC_USER" "$IDLE_USER"; do fresh_copy "$s" "${u%@*}"; done
  if [ $idle_distinct = 1 ]; then
    for i in $(seq 1 "$IDLE_CLIENTS"); do u=$(idle_name "$i"); fresh_copy "$s" "${u%@*}" empty; done
  fi
done
# the mbsync stores of an earlier run go to the trash as well
[ -e "$WORK/mbsync" ] && mv "$WORK/mbsync" "$TRASH/mbsync.$(date +%s%N)"
mkdir -p "$WORK/mbsync"
timeout 300 sync

# ------------------------------------------------------------------ servers
# log lines before this run (the logs are kept across runs): only newer ones are reported
DV_LOG0=$( { wc -l < "$DV/log/dovecot.log"; } 2>/dev/null || echo 0)
PP_LOG0=$( { wc -l < "$PP/pigeonpost.log"; } 2>/dev/null || echo 0)
start_dovecot() {
  port_busy "$DV_PORT" && die "$ADDR:$DV_PORT is in use by something else (set DOVECOT_PORT=)"
  DOVECOT_DIR=$DV MAIL_ROOT=$DV/mail USERS_FILE=$USERS SSL_CERT=$ETC/cert.pem SSL_KEY=$ETC/key.pem \
    PROTOCOLS=imap IMAP_PORT=$DV_PORT MAX_USERIP=$DV_MAX_USERIP INSTANCE_NAME=pp-bench-imap \
    VMAIL_UID=$VUID VMAIL_GID=$VGID "$LIB/start-dovecot.sh" >> "$R/dovecot-start.log" 2>&1 \
    || { tail -20 "$R/dovecot-start.log" >&2; die "Dovecot did not start"; }
  DV_PID=$(awk '/^dovecot-pid /{p=$2} END{print p}' "$R/dovecot-start.log")
  [ -n "$DV_PID" ] || die "no Dovecot PID (see $R/dovecot-start.log)"
}
write_pp_config() {
  cat > "$PP/pigeonpost.toml" <<EOF
# Generated by bench/imap/run.sh -- the HOWTO's Dovecot keys, as Dovecot gets
# them in bench/lib/start-dovecot.sh. Loopback only, IMAP only.
myhostname = "mail.example.com"
mydomain = "example.com"
inet_interfaces = "$ADDR"
mynetworks = "127.0.0.0/8"
alias_maps = ""
queue_directory = "$PP/queue"
protocols = "imap"
mail_location = "maildir:$PP/mail/%d/%n"
auth_mechanisms = "plain login"
passdb = "passwd-file:$USERS"
userdb = "static:uid=$VUID gid=$VGID home=$PP/mail/%d/%n"
disable_plaintext_auth = "yes"
ssl_cert = "<$ETC/cert.pem"
ssl_key = "<$ETC/key.pem"
log_level = "$PP_LOG_LEVEL"
shutdown_timeout = "5s"

[listen]
smtp = ""
submission = ""
submissions = ""
imap = "$ADDR:$PP_PORT"
imaps = ""
pop3 = ""
pop3s = ""
lmtp = ""
http = "$ADDR:$PP_HTTP"
EOF
  pp --config "$PP/pigeonpost.toml" config > "$R/pigeonpost-config.toml" 2>&1 \
    || { cat "$R/pigeonpost-config.toml" >&2; die "pigeonpost rejects the generated config"; }
}
start_pigeonpost() {
  local banner=""
  for p in "$PP_PORT" "$PP_HTTP"; do port_busy "$p" && die "$ADDR:$p is in use (set PIGEONPOST_PORT= / PIGEONPOST_HTTP_PORT=)"; done
  ( cd "$PP" && exec env "${unset_pp[@]}" "$BIN" --config "$PP/pigeonpost.toml" serve ) \
    </dev/null >> "$PP/pigeonpost.log" 2>&1 &
  PP_PID=$!; echo "$PP_PID" > "$PP/pid"
  for _ in $(seq 100); do   # bounded: 10 s
    kill -0 "$PP_PID" 2>/dev/null || { tail -20 "$PP/pigeonpost.log" >&2; PP_PID=""; die "pigeonpost exited at start (log: $PP/pigeonpost.log)"; }
    banner=$(timeout 3 bash -c "exec 3<>/dev/tcp/$ADDR/$PP_PORT && IFS= read -r -t 2 l <&3 && printf '%s' \"\$l\" && printf 'a LOGOUT\r\n' >&3" 2>/dev/null | tr -d '\r')
    [ -n "$banner" ] && break
    sleep 0.1
  done
  case "$banner" in
    "* OK"*) ;;
    "") die "pigeonpost does not answer on $ADDR:$PP_PORT after 10 s (log: $PP/pigeonpost.log)";;
    *) die "pigeonpost greets with '$banner' instead of * OK on $ADDR:$PP_PORT: is the IMAP server in this build?";;
  esac
}
if has dovecot; then
  start_dovecot
  cp "$DV/etc/dovecot.conf" "$R/dovecot.conf"
  say "Dovecot $(dovecot --version | awk '{print $1}') running, master pid $DV_PID, $ADDR:$DV_PORT, mail in $DV/mail"
fi
if has pigeonpost; then
  write_pp_config
  start_pigeonpost
  cp "$PP/pigeonpost.toml" "$R/pigeonpost.toml"
  say "pigeonpost $(pp --version 2>/dev/null | awk '{print $2}') running, pid $PP_PID, $ADDR:$PP_PORT, mail in $PP/mail ($BIN)"
fi

# ------------------------------------------------------------------ metadata
python3 - "$R/meta.json" "$SERVERS" "$CONCS" "$RUNS" "$DURATION" "$BODIES" "$MSGS" "$SIZE" "$NAMES" \
  "$MBSYNC_FSYNC" "$MBSYNC_RUNS" "$IDLE_CLIENTS" "$IDLE_MODES" "$IDLE_RUNS" "$IDLE_HOLD" "$TPL_BYTES" "$PROCS" \
  "$PP_LOG_LEVEL" "$DV_MAX_USERIP" <<'PY'
import json, os, sys, platform
a = sys.argv
json.dump(dict(servers=a[2], concs=a[3], runs=int(a[4]), duration=int(a[5]), bodies=int(a[6]), msgs=int(a[7]),
               size=int(a[8]), names=a[9], mbsync_fsync=a[10], mbsync_runs=int(a[11]), idle_clients=int(a[12]),
               idle_modes=a[13], idle_runs=int(a[14]), idle_hold=int(a[15]), mailbox_bytes=int(a[16]), procs=a[17],
               pp_log_level=a[18], dovecot_max_userip=int(a[19]),
               host=f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}"), open(a[1], "w"))
PY
{ echo "date: $(date -Is)"; echo "host: $(uname -r) cpus=$(nproc) fs=$(df -T "$STATE" | awk 'NR==2{print $2" on "$1}')"
  echo "mount: $(findmnt -no OPTIONS -T "$STATE" 2>/dev/null)"
  has dovecot && echo "dovecot: $(dovecot --version)"
  has pigeonpost && echo "pigeonpost: $BIN ($(pp --version 2>/dev/null), modified $(date -r "$BIN" -Is), sha256 $(sha256sum "$BIN" | cut -c1-16))"
  [ -n "$MBSYNC_FSYNC" ] && echo "mbsync: $(mbsync --version 2>/dev/null | head -1)"
  if [ -e "$ROOT/.git" ]; then
    echo "checkout commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$([ -n "${PIGEONPOST_BIN:-}" ] && echo " (PIGEONPOST_BIN given: the binary may be from another commit)")"
  fi
  echo "template: $TPL ($tpl_params, $TPL_BYTES bytes, content digest $TPL_SUM)"
  echo "SERVERS=$SERVERS CONCS=$CONCS RUNS=$RUNS DURATION=$DURATION BODIES=$BODIES MAX_SESSIONS=$MAX_SESSIONS PROCS=$PROCS"
  echo "MBSYNC_FSYNC=$MBSYNC_FSYNC MBSYNC_RUNS=$MBSYNC_RUNS IDLE_CLIENTS=$IDLE_CLIENTS IDLE_MODES=$IDLE_MODES IDLE_RUNS=$IDLE_RUNS IDLE_HOLD=$IDLE_HOLD"
  echo "REST=$REST SETTLE=$SETTLE PP_LOG_LEVEL=$PP_LOG_LEVEL DOVECOT_MAX_USERIP=$DV_MAX_USERIP WAIT_OTHERS=$WAIT_OTHERS"; } > "$R/env.txt"

# server order for run i: alternate which server goes first
order() { # run-number
  if [ "$(echo "$SERVERS" | wc -w)" -eq 1 ] || [ $(($1 % 2)) -eq 1 ]; then echo "$SERVERS"
  else echo "$SERVERS" | awk '{for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "\n")}'; fi
}
alive() { # server
  if [ "$1" = pigeonpost ]; then kill -0 "$PP_PID" 2>/dev/null || die "pigeonpost (pid $PP_PID) has exited: see $PP/pigeonpost.log"
  else kill -0 "$DV_PID" 2>/dev/null || die "Dovecot (pid $DV_PID) has exited: see $DV/log/dovecot.log"; fi
}
# wait_others: before a measured run, wait (bounded by WAIT_OTHERS s, polling
# every 30 s) until no other benchmark runs; OVERLAP=1 if one still does
OVERLAP=0
wait_others() {
  local t0 others
  OVERLAP=0
  [ "$WAIT_OTHERS" -gt 0 ] || return 0
  t0=$(date +%s)
  while others=$(pgrep -af -- "$OTHERS_RE" | grep -v -e "^$$ " | cut -c1-100); [ -n "$others" ]; do
    if [ $(( $(date +%s) - t0 )) -ge "$WAIT_OTHERS" ]; then
      say "WARNING: another benchmark still runs after ${WAIT_OTHERS}s of waiting: measuring anyway (marked in the results)"
      echo "$(date -Is) overlap: $others" >> "$R/waits.log"; OVERLAP=1; return 0
    fi
    say "waiting for another benchmark to finish (polling every 30 s, at most ${WAIT_OTHERS}s): $(echo "$others" | head -1)"
    echo "$(date -Is) waiting: $others" >> "$R/waits.log"
    sleep 30
  done
}

# ------------------------------------------------------------------ 1. prewarm + verify
for s in $SERVERS; do
  alive "$s"
  say "$s: first session of ${LOAD_USER%@*} and ${IDLE_USER%@*} ($MSGS messages, every body fetched), checked against the template"
  timeout $((TIMEOUT + 60)) python3 "$LIB/imap_load.py" --port "$(port_of "$s")" --userfile "$ETC/verify-clients.txt" --prewarm \
    --verify-dir "$TPL" --io-timeout 120 --tag "$s" --json-out "$R/prewarm.jsonl" 2>&1 | tee -a "$R/prewarm_$s.log" | sed 's/^/   /'
  [ "${PIPESTATUS[0]}" = 0 ] || say "WARNING: $s did not serve every mailbox exactly as generated (see $R/prewarm_$s.log)"
  if [ $idle_distinct = 1 ]; then
    timeout $((TIMEOUT + 60)) python3 "$LIB/imap_load.py" --port "$(port_of "$s")" --userfile "$ETC/idle-distinct.txt" --prewarm \
      --io-timeout 60 --tag "$s-idle-distinct" > "$R/prewarm_${s}_idle_distinct.log" 2>&1 \
      || { say "WARNING: $s: first sessions of the $IDLE_CLIENTS empty INBOXes failed:"; tail -3 "$R/prewarm_${s}_idle_distinct.log" | sed 's/^/   /'; }
  fi
done

# ------------------------------------------------------------------ 2. sessions
measure_sessions() { # server conc run
  local s=$1 c=$2 i=$3 procs=$PROCS one=$R/.one.jsonl hwm=null
  alive "$s"
  [ "$procs" = auto ] && { if [ "$c" = 1 ]; then procs=1; else procs=2; fi; }
  wait_others
  sleep "$REST"
  [ "$s" = pigeonpost ] && echo 5 > "/proc/$PP_PID/clear_refs" 2>/dev/null   # reset VmHWM: exact peak of this run
  say "$s: $c client(s), ${DURATION}s, run $i/$RUNS"
  rm -f "$one"
  timeout $((DURATION + 200)) python3 "$LIB/imap_load.py" --port "$(port_of "$s")" --userfile "$ETC/load-client.txt" \
    --clients "$c" --procs "$procs" --duration "$DURATION" --max-sessions "$MAX_SESSIONS" --bodies "$BODIES" \
    --server-pids "$(pids_of "$s")" --sample-every 0.25 --seed "$i" --tag "$s" --json-out "$one" --quiet \
    >> "$R/sessions_${s}_c$c.log" 2>&1
  if [ "$s" = pigeonpost ] && [ -r "/proc/$PP_PID/status" ]; then hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$PP_PID/status"); fi
  if [ -s "$one" ]; then
    python3 - "$one" "$i" "$hwm" "$OVERLAP" >> "$R/sessions_${s}_c$c.jsonl" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
r.update(run=int(sys.argv[2]), pp_vmhwm_kb=None if sys.argv[3] == "null" else int(sys.argv[3]),
         overlap=sys.argv[4] == "1")
print(json.dumps(r))
PY
    python3 -c '
import json, sys
r = json.loads(sys.argv[1].splitlines()[-1])
print("   %s cmds/s, %s sessions/s, session p50/p99 %s/%s ms, errors %s, server cpu %s s, client cpu %s s, machine %s s, peak RSS %s MB (PSS %s MB, %s procs)" % (
  r["cmds_per_s"], r["sessions_per_s"], r["session_p50_ms"], r["session_p99_ms"], r["errors"], r.get("server_cpu_s"),
  r["client_cpu_s"], r["sys_busy_cpu_s"], r.get("server_peak_rss_mb"), r.get("server_peak_pss_mb"), r.get("server_peak_nproc")))
for e in r.get("error_samples", []): print("     error: " + e)' "$(cat "$one")"
    [ "$hwm" != null ] && echo "   pigeonpost exact peak RSS (VmHWM) $((hwm / 1024)) MB"
  else
    say "  no result (see $R/sessions_${s}_c$c.log)"; tail -3 "$R/sessions_${s}_c$c.log" | sed 's/^/   /'
  fi
  rm -f "$one"
}
T0=$(date +%s)
for c in $CONCS; do
  for i in $(seq 1 "$RUNS"); do
    for s in $(order "$i"); do measure_sessions "$s" "$c" "$i"; done
  done
done
say "session runs done in $(( $(date +%s) - T0 )) s"

# ------------------------------------------------------------------ 3. mbsync
# busy_jiffies: the machine's busy CPU time so far (all of /proc/stat's cpu line but
# idle and iowait), in clock ticks, into BUSY (no fork, so it can sit right around mbsync)
busy_jiffies() {
  local f x i=0 sum=0 idle=0
  read -r -a f < /proc/stat
  for x in "${f[@]:1}"; do i=$((i + 1)); sum=$((sum + x)); case $i in 4|5) idle=$((idle + x));; esac; done
  BUSY=$((sum - idle))
}
mbsync_once() { # server fsync label run
  local s=$1 fs=$2 label=$3 i=$4 port rc t0 t1 c0 c1 store cfg check
  port=$(port_of "$s"); alive "$s"
  store=$WORK/mbsync/$s-fsync$fs-$label-$i; cfg=$WORK/mbsync/$s-fsync$fs-$label-$i.rc
  [ -e "$store" ] && mv "$store" "$TRASH/mbsync-store.$(date +%s%N)"
  mkdir -p "$store"
  cat > "$cfg" <<EOF
FSync $fs

IMAPAccount bench
Host $ADDR
Port $port
User $SYNC_USER
Pass "$SYNC_PASS"
AuthMechs LOGIN
SSLType None

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
  c0=$(python3 "$LIB/imap_load.py" --tree-stats --server-pids "$(pids_of "$s")")
  times > "$WORK/times0"   # this shell's children's CPU (mbsync is the only child in between)
  busy_jiffies; local b0=$BUSY
  t0=$(date +%s.%N)
  HOME=$WORK timeout "$TIMEOUT" mbsync -q -c "$cfg" bench > "$R/mbsync_${s}_fsync${fs}_${label}_$i.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  busy_jiffies; local b1=$BUSY
  times > "$WORK/times1"
  c1=$(python3 "$LIB/imap_load.py" --tree-stats --server-pids "$(pids_of "$s")")
  check=$(timeout 300 python3 "$LIB/imap_load.py" --check-maildir "$store/INBOX" --verify-dir "$TPL")
  python3 - "$s" "$fs" "$label" "$i" "$rc" "$t0" "$t1" "$MSGS" "$c0" "$c1" "$(cat "$WORK/times0")" "$(cat "$WORK/times1")" \
    "${check:-null}" "$b0" "$b1" "$(getconf CLK_TCK)" "$OVERLAP" >> "$R/mbsync.jsonl" <<'PY'
import json, re, sys
a = sys.argv
secs = float(a[7]) - float(a[6])
c0, c1 = json.loads(a[9] or "null"), json.loads(a[10] or "null")
def children_cpu(t):   # bash `times`, second line: children's user and system time, e.g. "0m1.234s 0m0.567s"
    lines = t.strip().splitlines()
    v = re.findall(r"(\d+)m([\d.]+)s", lines[1]) if len(lines) > 1 else []
    return sum(int(m) * 60 + float(x) for m, x in v) if v else None
f0, f1 = children_cpu(a[11]), children_cpu(a[12])
chk = json.loads(a[13])
n = chk["msgs"] if chk else 0
r = dict(server=a[1], fsync=a[2], mode=a[3], run=int(a[4]), rc=int(a[5]), msgs=n, expected=int(a[8]),
         secs=round(secs, 3), rate=round(n / secs, 1) if secs > 0 else None,
         server_cpu_s=round(c1["cpu_s"] - c0["cpu_s"], 2) if c0 and c1 else None,
         mbsync_cpu_s=round(f1 - f0, 2) if f0 is not None and f1 is not None else None,
         sys_busy_cpu_s=round((int(a[15]) - int(a[14])) / int(a[16]), 2),
         content_ok=chk["content_ok"] if chk else None, content_problems=chk["problems"] if chk else ["no check"],
         overlap=a[17] == "1")
print(json.dumps(r))
PY
  tail -1 "$R/mbsync.jsonl" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("   rc %s, %s messages in %.2f s = %s msg/s, content %s, cpu: server %s s, mbsync %s s, machine %s s" % (
  r["rc"], r["msgs"], r["secs"], r["rate"],
  {True: "identical to the template", False: "DIFFERS: " + "; ".join(r["content_problems"]), None: "not checked"}[r["content_ok"]],
  r["server_cpu_s"], r["mbsync_cpu_s"], r["sys_busy_cpu_s"]))'
  [ "$rc" = 0 ] || { say "  mbsync exited $rc:"; tail -3 "$R/mbsync_${s}_fsync${fs}_${label}_$i.log" | sed 's/^/     /'; }
}
first_mode=1
for fs in $MBSYNC_FSYNC; do
  if [ $first_mode = 1 ]; then
    # sync@ is still the untouched copy made at the start: its first pull is the cold one, reported apart
    for s in $SERVERS; do
      say "$s: mbsync (FSync $fs), first pull of the fresh copy ($MSGS messages)"
      mbsync_once "$s" "$fs" first 1
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
restart_servers() {
  if has pigeonpost; then stop_pigeonpost; start_pigeonpost; fi
  if has dovecot; then stop_dovecot > /dev/null; start_dovecot; fi
}
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

# ------------------------------------------------------------------ report
if has pigeonpost; then
  n_warn=$(tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" 2>/dev/null | grep -c -iE 'WARN|ERROR' || true)
  [ "${n_warn:-0}" -gt 0 ] && { say "pigeonpost logged $n_warn warning/error lines ($PP/pigeonpost.log), last ones:"
    tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" | grep -iE 'WARN|ERROR' | tail -5 | sed 's/^/   /'; }
  tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" 2>/dev/null | grep -iE 'WARN|ERROR' > "$R/pigeonpost-warnings.log"
fi
if has dovecot; then
  # the master's "Killed with signal 15" is a shutdown of ours
  n_warn=$(tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" 2>/dev/null | grep -iE 'warning|error|fatal|panic' | grep -vc 'Killed with signal 15' || true)
  [ "${n_warn:-0}" -gt 0 ] && { say "Dovecot logged $n_warn warning/error lines ($DV/log/dovecot.log), last ones:"
    tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" | grep -iE 'warning|error|fatal|panic' | grep -v 'Killed with signal 15' | tail -5 | sed 's/^/   /'; }
  tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" 2>/dev/null | grep -iE 'warning|error|fatal|panic' | grep -v 'Killed with signal 15' > "$R/dovecot-warnings.log"
fi
cleanup
trap - EXIT
python3 "$LIB/imap_table.py" "$R" > "$R/table.md"
echo
echo "## IMAP, $(date '+%Y-%m-%d %H:%M'), $(nproc) CPUs"
echo
cat "$R/table.md"
echo
echo "raw results: $R (per-run *.jsonl, *.log, env.txt, table.md)"
if [ "$CLEAN_TRASH" = 1 ]; then
  say "removing the moved-aside mailboxes in $TRASH"
  timeout 600 rm -rf "$TRASH" 2>/dev/null; mkdir -p "$TRASH"
else
  say "moved-aside mailboxes kept in $TRASH ($(du -sh "$TRASH" 2>/dev/null | cut -f1)); remove them with rm -rf $TRASH at least 6 minutes before the next benchmark"
fi
exit 0
