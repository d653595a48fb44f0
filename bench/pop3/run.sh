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
#   CLEAN_TRASH=0                  1 = delete the moved-aside mailboxes at the end
#                                  (default: keep them; deleting many files slows file
#                                  creation on this VM's ext4 for minutes, see bench/README.md)
# Every wait is bounded; both servers are stopped on exit (also on Ctrl-C).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=$ROOT/bench/lib
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
ADDR=127.0.0.1
LOAD_PASS=loadpass; FETCH_USER=fetch@example.com; FETCH_PASS=fetchpass

say() { echo "[bench/pop3 $(date +%T)] $*"; }
die() { echo "bench/pop3: $*" >&2; exit 1; }
has() { case " $SERVERS " in *" $1 "*) return 0;; *) return 1;; esac; }

# ------------------------------------------------------------------ arguments
[ -n "$SERVERS" ] || die "SERVERS is empty"
for s in $SERVERS; do case $s in dovecot|pigeonpost) ;; *) die "SERVERS: unknown server '$s' (dovecot, pigeonpost)";; esac; done
for n in "$RUNS" "$DURATION" "$RETR" "$MAX_SESSIONS" "$MSGS" "$SIZE" "$FETCH_RUNS" "$REST" "$SETTLE" "$TIMEOUT" \
         "$DV_PORT" "$PP_PORT" "$PP_HTTP" $CONCS; do
  [[ $n =~ ^[0-9]+$ ]] || die "RUNS/DURATION/RETR/MAX_SESSIONS/MSGS/SIZE/FETCH_RUNS/REST/SETTLE/TIMEOUT/ports/CONCS must be whole numbers"
done
[ -n "$CONCS" ] || die "CONCS is empty"
within() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }   # n min max
{ within "$RUNS" 1 20 && within "$FETCH_RUNS" 1 20; } || die "need 1 <= RUNS, FETCH_RUNS <= 20"
within "$DURATION" 1 600 || die "need 1 <= DURATION <= 600"
{ within "$MSGS" 1 100000 && within "$SIZE" 200 10000000; } || die "need 1 <= MSGS <= 100000, 200 <= SIZE <= 10000000"
for c in $CONCS; do within "$c" 1 500 || die "CONCS: 1..500 clients"; done
for m in $FETCH_MODES; do case $m in keep|delete) ;; *) die "FETCH_MODES: unknown mode '$m' (keep, delete)";; esac; done
case $FETCH_SINK in bsmtp|mda) ;; *) die "FETCH_SINK must be bsmtp or mda";; esac
[[ $PP_LOG_LEVEL =~ ^[A-Za-z0-9_:=,.]+$ ]] || die "PP_LOG_LEVEL: a log filter such as info or warn"
case $NAMES in sizes|plain) ;; *) die "NAMES must be sizes or plain";; esac
case $PROCS in auto) ;; *) { [[ $PROCS =~ ^[0-9]+$ ]] && within "$PROCS" 1 16; } || die "PROCS: auto or 1..16";; esac
NUSERS=0; for c in $CONCS; do [ "$c" -gt "$NUSERS" ] && NUSERS=$c; done
case "$STATE" in /*) ;; *) die "STATE must be an absolute path";; esac

# ------------------------------------------------------------------ prerequisites
# Nothing is installed here: say what is missing and how to get it.
missing=() pkgs=()
command -v python3 >/dev/null || { missing+=(python3); pkgs+=(python3); }
command -v ss >/dev/null || { missing+=("ss (iproute2)"); pkgs+=(iproute2); }
command -v openssl >/dev/null || { missing+=(openssl); pkgs+=(openssl); }
if [ -n "$FETCH_MODES" ]; then command -v fetchmail >/dev/null || { missing+=(fetchmail); pkgs+=(fetchmail); }; fi
if has dovecot; then
  for t in dovecot doveconf doveadm; do command -v $t >/dev/null || { missing+=("$t (dovecot-core)"); pkgs+=(dovecot-core); }; done
  [ -e /usr/lib/dovecot/pop3 ] || { missing+=("dovecot's pop3 (dovecot-pop3d)"); pkgs+=(dovecot-pop3d); }
fi
if has pigeonpost && [ -z "${PIGEONPOST_BIN:-}" ]; then command -v cargo >/dev/null || missing+=("cargo (https://rustup.rs), or set PIGEONPOST_BIN"); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/pop3: missing: ${missing[*]}" >&2
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
  if has dovecot; then DOVECOT_DIR=$DV POP3_PORT=$DV_PORT "$LIB/stop-dovecot.sh" 2>&1 | sed 's/^/  /'; fi
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
has dovecot && DOVECOT_DIR=$DV POP3_PORT=$DV_PORT "$LIB/stop-dovecot.sh" >/dev/null 2>&1

# ------------------------------------------------------------------ users, certificate
USERS=$ETC/users          # the passwd-file both servers read
CLIENTS=$ETC/clients.txt  # "user password" lines for pop3_load.py
hash_pw() {
  if command -v doveadm >/dev/null; then doveadm pw -s SHA512-CRYPT -p "$1"; else pp pw -s SHA512-CRYPT -p "$1"; fi
}
want_users=$((NUSERS + 1))
if [ ! -s "$USERS" ] || [ "$(grep -c . "$USERS")" != "$want_users" ]; then
  say "writing the passwd-file: load001..load$(printf %03d "$NUSERS")@example.com and $FETCH_USER (SHA512-CRYPT, one salt each)"
  {
    for i in $(seq 1 "$NUSERS"); do printf 'load%03d@example.com:%s\n' "$i" "$(hash_pw "$LOAD_PASS")"; done
    printf '%s:%s\n' "$FETCH_USER" "$(hash_pw "$FETCH_PASS")"
  } > "$USERS.tmp" || die "cannot hash passwords"
  mv "$USERS.tmp" "$USERS"
fi
chmod 640 "$USERS"
for i in $(seq 1 "$NUSERS"); do printf 'load%03d@example.com %s\n' "$i" "$LOAD_PASS"; done > "$CLIENTS"
printf '%s %s\n' "$FETCH_USER" "$FETCH_PASS" > "$ETC/fetch-client.txt"

if [ ! -s "$ETC/cert.pem" ] || [ ! -s "$ETC/key.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=mail.example.com" \
    -addext "subjectAltName=DNS:mail.example.com,DNS:localhost,IP:127.0.0.1" \
    -keyout "$ETC/key.pem" -out "$ETC/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
fi
chmod 644 "$ETC/cert.pem"; chmod 600 "$ETC/key.pem"

# ------------------------------------------------------------------ the maildrop template
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

# fresh_copy server user: move the user's maildir aside (never rm: see the
# caveats in bench/README.md) and cp -a the template in its place
fresh_copy() {
  local dst
  dst=$(mailroot "$1")/example.com/$2
  [ -e "$dst" ] && { mv "$dst" "$TRASH/$1-$2.$(date +%s%N)" || die "cannot move $dst aside"; }
  cp -a "$TPL" "$dst" || die "cp -a $TPL $dst failed"
}
for s in $SERVERS; do
  say "$s: copying the template ($MSGS messages, $((TPL_BYTES / 1024)) KiB) for $NUSERS load users and $FETCH_USER"
  for i in $(seq 1 "$NUSERS"); do fresh_copy "$s" "$(printf 'load%03d' "$i")"; done
  fresh_copy "$s" "${FETCH_USER%@*}"
done
timeout 300 sync

# ------------------------------------------------------------------ start Dovecot
# log lines before this run (the logs are kept across runs): only newer ones are reported
DV_LOG0=$( { wc -l < "$DV/log/dovecot.log"; } 2>/dev/null || echo 0)
PP_LOG0=$( { wc -l < "$PP/pigeonpost.log"; } 2>/dev/null || echo 0)
if has dovecot; then
  port_busy "$DV_PORT" && die "$ADDR:$DV_PORT is in use by something else (set DOVECOT_PORT=)"
  DOVECOT_DIR=$DV MAIL_ROOT=$DV/mail USERS_FILE=$USERS SSL_CERT=$ETC/cert.pem SSL_KEY=$ETC/key.pem \
    POP3_PORT=$DV_PORT VMAIL_UID=$VUID VMAIL_GID=$VGID "$LIB/start-dovecot.sh" > "$R/dovecot-start.log" 2>&1 \
    || { cat "$R/dovecot-start.log" >&2; die "Dovecot did not start"; }
  DV_PID=$(awk '/^dovecot-pid /{print $2}' "$R/dovecot-start.log")
  [ -n "$DV_PID" ] || die "no Dovecot PID (see $R/dovecot-start.log)"
  cp "$DV/etc/dovecot.conf" "$R/dovecot.conf"
  say "Dovecot $(dovecot --version | awk '{print $1}') running, master pid $DV_PID, $ADDR:$DV_PORT, mail in $DV/mail"
fi

# ------------------------------------------------------------------ start pigeonpost
if has pigeonpost; then
  for p in "$PP_PORT" "$PP_HTTP"; do port_busy "$p" && die "$ADDR:$p is in use (set PIGEONPOST_PORT= / PIGEONPOST_HTTP_PORT=)"; done
  cat > "$PP/pigeonpost.toml" <<EOF
# Generated by bench/pop3/run.sh -- the HOWTO's Dovecot keys, as Dovecot gets
# them in bench/lib/start-dovecot.sh. Loopback only, POP3 only.
myhostname = "mail.example.com"
mydomain = "example.com"
inet_interfaces = "$ADDR"
mynetworks = "127.0.0.0/8"
alias_maps = ""
queue_directory = "$PP/queue"
protocols = "pop3"
mail_location = "maildir:$PP/mail/%d/%n"
pop3_uidl_format = "%08Xu%08Xv"
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
imap = ""
imaps = ""
pop3 = "$ADDR:$PP_PORT"
pop3s = ""
lmtp = ""
http = "$ADDR:$PP_HTTP"
EOF
  pp --config "$PP/pigeonpost.toml" config > "$R/pigeonpost-config.toml" 2>&1 \
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
    "+OK"*) ;;
    "") die "pigeonpost does not answer on $ADDR:$PP_PORT after 10 s (log: $PP/pigeonpost.log)";;
    *) die "pigeonpost greets with '$banner' instead of +OK on $ADDR:$PP_PORT: is the POP3 server in this build?";;
  esac
  say "pigeonpost $(pp --version 2>/dev/null | awk '{print $2}') running, pid $PP_PID, $ADDR:$PP_PORT, mail in $PP/mail ($BIN)"
fi

# ------------------------------------------------------------------ metadata
python3 - "$R/meta.json" "$SERVERS" "$CONCS" "$RUNS" "$DURATION" "$RETR" "$MSGS" "$SIZE" "$NAMES" \
  "$FETCH_MODES" "$FETCH_RUNS" "$FETCH_SINK" "$TPL_BYTES" "$PROCS" "$PP_LOG_LEVEL" <<'PY'
import json, os, sys, platform
a = sys.argv
json.dump(dict(servers=a[2], concs=a[3], runs=int(a[4]), duration=int(a[5]), retr=int(a[6]), msgs=int(a[7]),
               size=int(a[8]), names=a[9], fetch_modes=a[10], fetch_runs=int(a[11]), fetch_sink=a[12],
               maildrop_bytes=int(a[13]), procs=a[14], pp_log_level=a[15],
               host=f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}"), open(a[1], "w"))
PY
{ echo "date: $(date -Is)"; echo "host: $(uname -r) cpus=$(nproc) fs=$(df -T "$STATE" | awk 'NR==2{print $2" on "$1}')"
  echo "mount: $(findmnt -no OPTIONS -T "$STATE" 2>/dev/null)"
  has dovecot && echo "dovecot: $(dovecot --version)"
  has pigeonpost && echo "pigeonpost: $BIN ($(pp --version 2>/dev/null), modified $(date -r "$BIN" -Is), sha256 $(sha256sum "$BIN" | cut -c1-16))"
  [ -n "$FETCH_MODES" ] && echo "fetchmail: $(fetchmail --version 2>/dev/null | grep -m1 release)"
  if [ -e "$ROOT/.git" ]; then
    echo "checkout commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$([ -n "${PIGEONPOST_BIN:-}" ] && echo " (PIGEONPOST_BIN given: the binary may be from another commit)")"
  fi
  echo "template: $TPL ($tpl_params, $TPL_BYTES bytes, content digest $TPL_SUM)"
  echo "SERVERS=$SERVERS CONCS=$CONCS RUNS=$RUNS DURATION=$DURATION RETR=$RETR MAX_SESSIONS=$MAX_SESSIONS PROCS=$PROCS"
  echo "FETCH_MODES=$FETCH_MODES FETCH_RUNS=$FETCH_RUNS FETCH_SINK=$FETCH_SINK REST=$REST SETTLE=$SETTLE PP_LOG_LEVEL=$PP_LOG_LEVEL"; } > "$R/env.txt"

# server order for run i: alternate which server goes first
order() { # run-number
  if [ "$(echo "$SERVERS" | wc -w)" -eq 1 ] || [ $(($1 % 2)) -eq 1 ]; then echo "$SERVERS"
  else echo "$SERVERS" | awk '{for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "\n")}'; fi
}
alive() { # server
  if [ "$1" = pigeonpost ]; then kill -0 "$PP_PID" 2>/dev/null || die "pigeonpost (pid $PP_PID) has exited: see $PP/pigeonpost.log"
  else kill -0 "$DV_PID" 2>/dev/null || die "Dovecot (pid $DV_PID) has exited: see $DV/log/dovecot.log"; fi
}

# ------------------------------------------------------------------ 1. prewarm + verify
for s in $SERVERS; do
  alive "$s"
  say "$s: first session of every maildrop ($NUSERS users x $MSGS messages, full download), checked against the template"
  timeout $((TIMEOUT + 60)) python3 "$LIB/pop3_load.py" --port "$(port_of "$s")" --userfile "$CLIENTS" --prewarm \
    --verify-dir "$TPL" --io-timeout 60 --tag "$s" --json-out "$R/prewarm.jsonl" 2>&1 | tee -a "$R/prewarm_$s.log" | sed 's/^/   /'
  [ "${PIPESTATUS[0]}" = 0 ] || say "WARNING: $s did not serve every maildrop exactly as generated (see $R/prewarm_$s.log)"
done

# ------------------------------------------------------------------ 2. sessions
measure_sessions() { # server conc run
  local s=$1 c=$2 i=$3 procs=$PROCS one=$R/.one.jsonl hwm=null
  alive "$s"
  [ "$procs" = auto ] && { if [ "$c" = 1 ]; then procs=1; else procs=2; fi; }
  [ "$s" = pigeonpost ] && echo 5 > "/proc/$PP_PID/clear_refs" 2>/dev/null   # reset VmHWM: exact peak of this run
  sleep "$REST"
  say "$s: $c client(s), ${DURATION}s, run $i/$RUNS"
  rm -f "$one"
  timeout $((DURATION + 200)) python3 "$LIB/pop3_load.py" --port "$(port_of "$s")" --userfile "$CLIENTS" \
    --clients "$c" --procs "$procs" --duration "$DURATION" --max-sessions "$MAX_SESSIONS" --retr "$RETR" \
    --server-pids "$(pids_of "$s")" --sample-every 0.25 --seed "$i" --tag "$s" --json-out "$one" --quiet \
    >> "$R/sessions_${s}_c$c.log" 2>&1
  if [ "$s" = pigeonpost ] && [ -r "/proc/$PP_PID/status" ]; then hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$PP_PID/status"); fi
  if [ -s "$one" ]; then
    python3 - "$one" "$i" "$hwm" >> "$R/sessions_${s}_c$c.jsonl" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
r.update(run=int(sys.argv[2]), pp_vmhwm_kb=None if sys.argv[3] == "null" else int(sys.argv[3]))
print(json.dumps(r))
PY
    python3 -c '
import json, sys
r = json.loads(sys.argv[1].splitlines()[-1])
print("   %s sessions/s, %s cmds/s, session p50/p99 %s/%s ms, errors %s, server cpu %s s, client cpu %s s, peak RSS %s MB (PSS %s MB, %s procs)" % (
  r["sessions_per_s"], r["cmds_per_s"], r["session_p50_ms"], r["session_p99_ms"], r["errors"], r.get("server_cpu_s"),
  r["client_cpu_s"], r.get("server_peak_rss_mb"), r.get("server_peak_pss_mb"), r.get("server_peak_nproc")))
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

# ------------------------------------------------------------------ 3. fetchmail
# count_msgs server user: messages left in the maildrop (new/ + cur/)
count_msgs() {
  local d
  d=$(mailroot "$1")/example.com/$2
  find "$d/new" "$d/cur" -maxdepth 1 -type f 2>/dev/null | wc -l
}
# busy_jiffies: the machine's busy CPU time so far (all of /proc/stat's cpu line but
# idle and iowait), in clock ticks, into BUSY (no fork, so it can sit right around fetchmail)
busy_jiffies() {
  local f x i=0 sum=0 idle=0
  read -r -a f < /proc/stat
  for x in "${f[@]:1}"; do i=$((i + 1)); sum=$((sum + x)); case $i in 4|5) idle=$((idle + x));; esac; done
  BUSY=$((sum - idle))
}
fetch_once() { # server mode label run
  local s=$1 mode=$2 label=$3 i=$4 port rc t0 t1 n c0 c1 left keep_kw="no keep" sink=()
  port=$(port_of "$s"); alive "$s"
  [ "$mode" = keep ] && keep_kw="keep"
  local w=$WORK/$s; mkdir -p "$w"; rm -f "$w/out.bsmtp" "$w/fetchids" "$w/err.log"
  cat > "$w/fetchmailrc" <<EOF
set no syslog
poll $ADDR protocol pop3 port $port auth password timeout 60
  user "$FETCH_USER" password "$FETCH_PASS" is "root" here
  fetchall $keep_kw no rewrite sslproto ''
EOF
  chmod 600 "$w/fetchmailrc"
  # count what reached the sink: MAIL FROM lines of the BSMTP file, or one line per MDA run
  rm -f "$w/mda.count"
  if [ "$FETCH_SINK" = bsmtp ]; then sink=(--bsmtp "$w/out.bsmtp"); else sink=(--mda "cat >/dev/null && echo >> $w/mda.count"); fi
  c0=$(python3 "$LIB/pop3_load.py" --tree-stats --server-pids "$(pids_of "$s")")
  times > "$w/times0"   # this shell's children's CPU (fetchmail is the only child in between)
  busy_jiffies; local b0=$BUSY
  t0=$(date +%s.%N)
  HOME=$w timeout "$TIMEOUT" fetchmail -f "$w/fetchmailrc" -i "$w/fetchids" --pidfile "$w/fetchmail.pid" \
    --nodetach --silent "${sink[@]}" > "$w/fetchmail.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  busy_jiffies; local b1=$BUSY
  times > "$w/times1"
  c1=$(python3 "$LIB/pop3_load.py" --tree-stats --server-pids "$(pids_of "$s")")
  if [ "$FETCH_SINK" = bsmtp ]; then n=$(grep -c '^MAIL FROM:' "$w/out.bsmtp" 2>/dev/null); else n=$(grep -c '' "$w/mda.count" 2>/dev/null); fi
  n=${n:-0}
  left=$(count_msgs "$s" "${FETCH_USER%@*}")
  # what fetchmail received, message by message, against the template (BSMTP sink only)
  check=null
  [ "$FETCH_SINK" = bsmtp ] && check=$(timeout 120 python3 "$LIB/pop3_load.py" --check-bsmtp "$w/out.bsmtp" --verify-dir "$TPL")
  python3 - "$s" "$label" "$i" "$rc" "$n" "$t0" "$t1" "$left" "$MSGS" "$c0" "$c1" "$FETCH_SINK" \
    "$(stat -c %s "$w/out.bsmtp" 2>/dev/null || echo 0)" "$(cat "$w/times0")" "$(cat "$w/times1")" "${check:-null}" "$b0" "$b1" "$(getconf CLK_TCK)" \
    >> "$R/fetchmail.jsonl" <<'PY'
import json, re, sys
a = sys.argv
secs = float(a[7]) - float(a[6]); n = int(a[5])
c0, c1 = json.loads(a[10] or "null"), json.loads(a[11] or "null")
def children_cpu(t):   # bash `times`, second line: children's user and system time, e.g. "0m1.234s 0m0.567s"
    lines = t.strip().splitlines()
    v = re.findall(r"(\d+)m([\d.]+)s", lines[1]) if len(lines) > 1 else []
    return sum(int(m) * 60 + float(x) for m, x in v) if v else None
f0, f1 = children_cpu(a[14]), children_cpu(a[15])
chk = json.loads(a[16])
r = dict(server=a[1], mode=a[2], run=int(a[3]), rc=int(a[4]), msgs=n, expected=int(a[9]),
         secs=round(secs, 3), rate=round(n / secs, 1) if secs > 0 else None, left_on_server=int(a[8]),
         server_cpu_s=round(c1["cpu_s"] - c0["cpu_s"], 2) if c0 and c1 else None,
         fetchmail_cpu_s=round(f1 - f0, 2) if f0 is not None and f1 is not None else None,
         sys_busy_cpu_s=round((int(a[18]) - int(a[17])) / int(a[19]), 2),
         sink=a[12], bsmtp_bytes=int(a[13]),
         content_ok=chk["content_ok"] if chk else None, content_problems=chk["problems"] if chk else [])
print(json.dumps(r))
PY
  tail -1 "$R/fetchmail.jsonl" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("   rc %s, %s messages in %.2f s = %s msg/s, %s left on the server, content %s, cpu: server %s s, fetchmail %s s, machine %s s" % (
  r["rc"], r["msgs"], r["secs"], r["rate"], r["left_on_server"],
  {True: "identical to the template", False: "DIFFERS: " + "; ".join(r["content_problems"]), None: "not checked"}[r["content_ok"]],
  r["server_cpu_s"], r["fetchmail_cpu_s"], r["sys_busy_cpu_s"]))'
  case $rc in 0|1) ;; *) say "  fetchmail exited $rc:"; grep -v -e 'reading message' -e 'Running as root' "$w/fetchmail.log" | tail -3 | sed 's/^/     /';; esac
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

# ------------------------------------------------------------------ report
if has pigeonpost; then
  n_warn=$(tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" 2>/dev/null | grep -c -iE 'WARN|ERROR' || true)
  [ "${n_warn:-0}" -gt 0 ] && { say "pigeonpost logged $n_warn warning/error lines ($PP/pigeonpost.log), last ones:"
    tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" | grep -iE 'WARN|ERROR' | tail -5 | sed 's/^/   /'; }
  cp "$PP/pigeonpost.toml" "$R/pigeonpost.toml"
fi
if has dovecot; then
  # the master's "Killed with signal 15" is the previous run's shutdown
  n_warn=$(tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" 2>/dev/null | grep -iE 'warning|error|fatal|panic' | grep -vc 'Killed with signal 15' || true)
  [ "${n_warn:-0}" -gt 0 ] && { say "Dovecot logged $n_warn warning/error lines ($DV/log/dovecot.log), last ones:"
    tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" | grep -iE 'warning|error|fatal|panic' | grep -v 'Killed with signal 15' | tail -5 | sed 's/^/   /'; }
fi
cleanup
trap - EXIT
python3 "$LIB/pop3_table.py" "$R" > "$R/table.md"
echo
echo "## POP3, $(date '+%Y-%m-%d %H:%M'), $(nproc) CPUs"
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
