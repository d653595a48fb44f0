#!/bin/bash
# bench/abuse/run.sh -- hostile-load benchmark (issue 16): legitimate SMTP,
# IMAP and POP3 load, alone and under attack, against pigeonpost and against
# Postfix + Dovecot, one after the other.
#
# Every server listens on 127.0.0.1 only, on all seven listeners (smtp,
# submission, submissions, imap, imaps, pop3, pop3s). The legitimate clients
# connect from 127.0.0.1 (bench/lib/abuse_legit.py):
#   - SMTP_CLIENTS senders on the smtp listener (port 25's role), one message
#     per connection to john@example.com, SMTP_RATE messages/s each;
#   - IMAP_CLIENTS sessions (imap01..): LOGIN, SELECT, UID FETCH 1:* (FLAGS),
#     IMAP_BODIES x UID FETCH n (BODY.PEEK[]), IDLE (IMAP_IDLE s), DONE, NOOP,
#     LOGOUT, IMAP_THINK s between commands, each on its own MSGS-message INBOX;
#   - POP3_CLIENTS pullers (pop01..): a whole pull of a MSGS-message maildrop
#     (RETR all, no DELE), then POP3_PAUSE s.
# The attackers connect from 127.0.1.x .. 127.0.5.x (bench/lib/abuse_attack.py):
# GUESSERS password guessers on submission, imaps and pop3s (wrong passwords
# for john@example.com and for random names), IDLE_CONNS idle connections,
# SLOWLORIS slow clients (one byte every SLOW_GAP s: in command lines, in the
# middle of DATA, inside an IMAP literal, after STARTTLS or over TLS),
# GARBAGE clients sending oversized literals ({999999999}), BDAT 999999999 and
# endless lines of random bytes, and TLS_FLOOD clients stalling TLS handshakes
# (half a ClientHello, a whole one and no answer, or a junk one). All on every
# listener, bounded in count and time; each reconnects when it loses its
# connection.
#
# Per server, two phases:
#   base    the legitimate load alone, DURATION s;
#   attack  the attackers start, ATTACK_LEAD s later the same legitimate load
#           runs DURATION s, then the attackers stop. The guessers' answers are
#           counted per source IP in the first GUESS_WINDOW s of the attack and
#           after it.
# Around each phase bench/lib/abuse_watch.py samples the server's process
# tree(s) (peak RSS/PSS summed, processes, CPU, connections); afterwards every
# message the legitimate senders got a 250 for must be a file in john's Maildir
# (waited for up to DRAIN s: Postfix delivers after the 250), and a short
# legitimate session of each protocol checks the server still serves.
# Prints a Markdown table (bench/lib/abuse_table.py); raw JSON under
# $STATE/results/<timestamp>/ (latest: a symlink).
#
# Settings the servers get (see bench/README.md, bench/abuse):
#   pigeonpost: the HOWTO keys as in bench/smtp and bench/imap, all listeners on,
#     mynetworks = 127.0.0.1/32 and otherwise its defaults (per-IP limit 50 per
#     listener, smtpd_client_event_limit_exceptions = $mynetworks, so 127.0.0.1 is
#     exempt and the attackers are not; max_connections 1000 per listener).
#   Postfix: bench/lib/start-postfix.sh with MYNETWORKS=127.0.0.1/32 and the
#     submission/submissions listeners (SASL through Dovecot); Dovecot:
#     bench/lib/start-dovecot.sh with imap pop3, imaps, pop3s and the SASL socket;
#     both otherwise at their defaults.
#
# Run as root (Postfix's and Dovecot's masters drop privileges themselves):
#   PIGEONPOST_BIN=target/release/pigeonpost bench/abuse/run.sh
#   QUICK=1 bench/abuse/run.sh        # smoke run: 15 s phases, a fifth of the attackers
#   SERVERS=pigeonpost bench/abuse/run.sh
#
# Env:
#   PIGEONPOST_BIN=path   use this binary instead of `cargo build --release`
#   STATE=/tmp/pp-bench-abuse   all state (configs, mailboxes, logs, results)
#   SERVERS="postfix pigeonpost"  postfix = Postfix + Dovecot
#   DURATION=60 ATTACK_LEAD=60 GUESS_WINDOW=60   (QUICK: 15 10 10)
#   SMTP_CLIENTS=20 SMTP_RATE=5 SMTP_SIZE=2048 IMAP_CLIENTS=20 IMAP_BODIES=5 IMAP_IDLE=1
#   IMAP_THINK=0.05 POP3_CLIENTS=5 POP3_PAUSE=1 MSGS=100 SIZE=5120   (SMTP_RATE=0: unpaced)
#   GUESSERS=100 GUESS_IPS=20 IDLE_CONNS=1000 IDLE_IPS=10 SLOWLORIS=200 SLOW_IPS=10
#   SLOW_GAP=4 GARBAGE=50 GARBAGE_IPS=5 GARBAGE_RATE=262144 GARBAGE_MAX=16777216
#   TLS_FLOOD=100 TLS_IPS=5 TLS_STALL=30   (QUICK: 20 200 40 10 20 attackers)
#   PP_PORT_BASE=6000 REF_PORT_BASE=7000  ports: base + 25, 587, 465, 143, 993, 110, 995
#                                (pigeonpost's http on PP_PORT_BASE + 80)
#   GARBAGE_MODES=      only these listener:mode pairs of the garbage attackers (abuse_attack.py
#                       --garbage-modes, e.g. imap:literal,smtp:bdat; default: all)
#   LEGIT_TIMEOUT=60    the legitimate clients' wait for any one reply (connect, greeting...), s
#   PP_LOG_LEVEL=info  MEM_ABORT_MB=4096 (stop the attack when the server tree's summed PSS passes it)
#   DRAIN=120 REST=3 NOFILE=65536 (ulimit -n for the clients and servers)
# Every wait is bounded; the servers are stopped on exit (also on Ctrl-C).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  D_DURATION=15 D_LEAD=10 D_WINDOW=10 D_GUESS=20 D_IDLE=200 D_SLOW=40 D_GARBAGE=10 D_TLS=20
else
  D_DURATION=60 D_LEAD=60 D_WINDOW=60 D_GUESS=100 D_IDLE=1000 D_SLOW=200 D_GARBAGE=50 D_TLS=100
fi
STATE=${STATE:-/tmp/pp-bench-abuse}
SERVERS=${SERVERS:-"postfix pigeonpost"}
DURATION=${DURATION:-$D_DURATION}; ATTACK_LEAD=${ATTACK_LEAD:-$D_LEAD}; GUESS_WINDOW=${GUESS_WINDOW:-$D_WINDOW}
SMTP_CLIENTS=${SMTP_CLIENTS:-20}; SMTP_RATE=${SMTP_RATE:-5}; SMTP_SIZE=${SMTP_SIZE:-2048}
IMAP_CLIENTS=${IMAP_CLIENTS:-20}; IMAP_BODIES=${IMAP_BODIES:-5}; IMAP_IDLE=${IMAP_IDLE:-1}; IMAP_THINK=${IMAP_THINK:-0.05}
POP3_CLIENTS=${POP3_CLIENTS:-5}; POP3_PAUSE=${POP3_PAUSE:-1}
MSGS=${MSGS:-100}; SIZE=${SIZE:-5120}; NAMES=sizes
GUESSERS=${GUESSERS:-$D_GUESS}; GUESS_IPS=${GUESS_IPS:-20}
IDLE_CONNS=${IDLE_CONNS:-$D_IDLE}; IDLE_IPS=${IDLE_IPS:-10}
SLOWLORIS=${SLOWLORIS:-$D_SLOW}; SLOW_IPS=${SLOW_IPS:-10}; SLOW_GAP=${SLOW_GAP:-4}
GARBAGE=${GARBAGE:-$D_GARBAGE}; GARBAGE_IPS=${GARBAGE_IPS:-5}; GARBAGE_RATE=${GARBAGE_RATE:-262144}
GARBAGE_MAX=${GARBAGE_MAX:-16777216}; GARBAGE_MODES=${GARBAGE_MODES:-}; LEGIT_TIMEOUT=${LEGIT_TIMEOUT:-60}
TLS_FLOOD=${TLS_FLOOD:-$D_TLS}; TLS_IPS=${TLS_IPS:-5}; TLS_STALL=${TLS_STALL:-30}
PP_PORT_BASE=${PP_PORT_BASE:-6000}; REF_PORT_BASE=${REF_PORT_BASE:-7000}
PP_LOG_LEVEL=${PP_LOG_LEVEL:-info}; MEM_ABORT_MB=${MEM_ABORT_MB:-4096}
DRAIN=${DRAIN:-120}; REST=${REST:-3}; NOFILE=${NOFILE:-65536}
GUESS_USER=john@example.com; GUESS_PASS=johnpass

check_servers postfix pigeonpost
whole_numbers "DURATION/ATTACK_LEAD/GUESS_WINDOW/counts/ports/MSGS/SIZE/DRAIN/REST/NOFILE/MEM_ABORT_MB" \
  "$DURATION" "$ATTACK_LEAD" "$GUESS_WINDOW" "$SMTP_CLIENTS" "$SMTP_SIZE" "$IMAP_CLIENTS" "$IMAP_BODIES" \
  "$POP3_CLIENTS" "$MSGS" "$SIZE" "$GUESSERS" "$GUESS_IPS" "$IDLE_CONNS" "$IDLE_IPS" "$SLOWLORIS" "$SLOW_IPS" \
  "$GARBAGE" "$GARBAGE_IPS" "$GARBAGE_RATE" "$GARBAGE_MAX" "$TLS_FLOOD" "$TLS_IPS" "$TLS_STALL" \
  "$PP_PORT_BASE" "$REF_PORT_BASE" "$DRAIN" "$REST" "$NOFILE" "$MEM_ABORT_MB" "$LEGIT_TIMEOUT"
for v in "$SMTP_RATE" "$IMAP_IDLE" "$IMAP_THINK" "$POP3_PAUSE" "$SLOW_GAP"; do
  [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SMTP_RATE, IMAP_IDLE, IMAP_THINK, POP3_PAUSE, SLOW_GAP: numbers"
done
{ within "$DURATION" 5 900 && within "$ATTACK_LEAD" 0 900 && within "$GUESS_WINDOW" 1 900; } \
  || die "need 5 <= DURATION <= 900, ATTACK_LEAD <= 900, 1 <= GUESS_WINDOW <= 900"
{ within "$IMAP_CLIENTS" 0 99 && within "$POP3_CLIENTS" 0 99 && within "$SMTP_CLIENTS" 0 1000; } \
  || die "need IMAP_CLIENTS, POP3_CLIENTS <= 99 (one user each), SMTP_CLIENTS <= 1000"
for v in "$GUESS_IPS" "$IDLE_IPS" "$SLOW_IPS" "$GARBAGE_IPS" "$TLS_IPS"; do within "$v" 1 254 || die "*_IPS: 1..254"; done
{ [ $((GUESSERS + IDLE_CONNS + SLOWLORIS + GARBAGE + TLS_FLOOD)) -le 20000 ]; } || die "at most 20,000 attackers in all"
within "$MSGS" 1 100000 || die "need 1 <= MSGS <= 100000"
case "$STATE" in /*) ;; *) die "STATE must be an absolute path";; esac

# ------------------------------------------------------------------ prerequisites
need python3 python3
need ss iproute2 "ss (iproute2)"
need openssl openssl
if has postfix; then
  need postfix postfix; need postmap postfix
  for t in dovecot doveconf doveadm; do need $t dovecot-core "$t (dovecot-core)"; done
  need_file /usr/lib/dovecot/imap dovecot-imapd "dovecot's imap (dovecot-imapd)"
  need_file /usr/lib/dovecot/pop3 dovecot-pop3d "dovecot's pop3 (dovecot-pop3d)"
fi
need_cargo
missing_exit "for postfix choose \"No configuration\"; the packaged services are not used"
need_root postfix "Postfix + Dovecot"
pigeonpost_bin
# file descriptors: 1,000+ attacker connections, and the servers inherit the limit
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" -ge $((GUESSERS + IDLE_CONNS + SLOWLORIS + GARBAGE + TLS_FLOOD + 500)) ] \
  || say "WARNING: ulimit -n is $(ulimit -n): too few file descriptors for the attackers"

# ------------------------------------------------------------------ layout
PP=$STATE/pigeonpost; PF=$STATE/postfix; DV=$STATE/dovecot; ETC=$STATE/etc; TRASH=$STATE/trash; WORK=$STATE/work
TPL=$STATE/template/Maildir; USERS=$ETC/users
mkdir -p "$STATE" "$ETC" "$TRASH" "$WORK" "$PP/mail/example.com" "$PP/queue" "$DV/mail/example.com" || die "cannot create $STATE"
results_dir
chmod 755 "$STATE" "$PP" "$DV" "$PP/mail" "$DV/mail"
vmail_ids
if [ "$(id -u)" = 0 ]; then
  getent group "$VGID" >/dev/null || groupadd -g "$VGID" vmail || die "cannot create group $VGID"
  getent passwd "$VUID" >/dev/null || useradd -u "$VUID" -g "$VGID" -d /nonexistent -M -s /usr/sbin/nologin -c "virtual mail" vmail \
    || die "cannot create user $VUID"
fi
chown "$VUID:$VGID" "$PP/mail/example.com" "$DV/mail/example.com"

ports() { # base: "smtp=B+25,submission=...": the listeners of a server
  local b=$1
  echo "smtp=$((b + 25)),submission=$((b + 587)),submissions=$((b + 465)),imap=$((b + 143)),imaps=$((b + 993)),pop3=$((b + 110)),pop3s=$((b + 995))"
}
port_list() { echo "$1" | tr ',' '\n' | cut -d= -f2 | tr '\n' ' '; }
PF_PORT=$((REF_PORT_BASE + 25)); DV_PORT=$((REF_PORT_BASE + 143))
PP_PORT=$((PP_PORT_BASE + 143)); PP_HTTP=$((PP_PORT_BASE + 80))
PP_GREETING="* OK" PP_BYE="a LOGOUT" PP_WHAT="the IMAP server"
DOVECOT_ENV=(PROTOCOLS="imap pop3" IMAP_PORT="$((REF_PORT_BASE + 143))" IMAPS_PORT="$((REF_PORT_BASE + 993))"
             POP3_PORT="$((REF_PORT_BASE + 110))" POP3S_PORT="$((REF_PORT_BASE + 995))"
             SASL_SOCKET="$PF/spool/postfix/private/auth" INSTANCE_NAME=pp-bench-abuse)

stop_ref() {
  if has postfix && [ -n "${PF_PID:-}${DV_PID:-}" ]; then
    PEERS=$PF SMTP_PORT=$PF_PORT "$LIB/stop-postfix.sh" 2>&1 | sed 's/^/  /'
    DOVECOT_DIR=$DV PORTS="$(port_list "$(ports "$REF_PORT_BASE")" | cut -d' ' -f4-7)" "$LIB/stop-dovecot.sh" 2>&1 | sed 's/^/  /'
  fi
  DV_PID=""; PF_PID=""
}
ATT_PID="" LEG_PID="" WAT_PID=""
# shellcheck disable=SC2317  # called by the exit trap (common.sh: cleanup)
stop_all() {
  local p
  for p in $ATT_PID $LEG_PID $WAT_PID; do kill "$p" 2>/dev/null; done
  stop_ref
}
on_exit stop_all
stop_stale_pigeonpost

# ------------------------------------------------------------------ users, certificate, mailboxes
imap_user() { printf 'imap%02d@example.com' "$1"; }
pop3_user() { printf 'pop%02d@example.com' "$1"; }
for i in $(seq 1 "$IMAP_CLIENTS"); do printf '%s imappass%02d\n' "$(imap_user "$i")" "$i"; done > "$ETC/imap-users.txt"
for i in $(seq 1 "$POP3_CLIENTS"); do printf '%s poppass%02d\n' "$(pop3_user "$i")" "$i"; done > "$ETC/pop3-users.txt"
write_passwd_file "imap01.. ($IMAP_CLIENTS), pop01.. ($POP3_CLIENTS) and $GUESS_USER (the guessers' real user)" \
  < <(cat "$ETC/imap-users.txt" "$ETC/pop3-users.txt"; printf '%s %s\n' "$GUESS_USER" "$GUESS_PASS")
make_cert
make_template
copy_mailboxes() { # mail root: a fresh template copy for every IMAP and POP3 user
  local root=$1 u dst
  # shellcheck disable=SC2013  # user names: words
  for u in $(cut -d' ' -f1 "$ETC/imap-users.txt" "$ETC/pop3-users.txt"); do
    dst=$root/example.com/${u%@example.com}
    [ -e "$dst" ] && { mv "$dst" "$TRASH/$(basename "$dst").$(date +%s%N)" || die "cannot move $dst aside"; }
    cp -a "$TPL" "$dst" || die "cp -a $TPL $dst failed"
  done
}
fresh_sink() { # mail root: john's Maildir (where the legitimate SMTP load goes), empty
  local d=$1/example.com/john
  [ -e "$d" ] && { mv "$d" "$TRASH/john.$(date +%s%N)" || die "cannot move $d aside"; }
  { mkdir -p "$d/new" "$d/cur" "$d/tmp" && chown -R "$VUID:$VGID" "$d" && chmod -R go-rwx "$d"; } || die "cannot create $d"
}

# ------------------------------------------------------------------ the servers
start_ref() {
  mkdir -p "$PF/mail/example.com"
  start_postfix DELIVERY=virtual MYNETWORKS=127.0.0.1/32 SUBMISSION_PORT=$((REF_PORT_BASE + 587)) \
    SUBMISSIONS_PORT=$((REF_PORT_BASE + 465))
  chown "$VUID:$VGID" "$PF/mail/example.com"
  start_dovecot
  cp "$PF/etc/postfix/main.cf" "$R/postfix-main.cf"; cp "$PF/etc/postfix/master.cf" "$R/postfix-master.cf"
  cp "$DV/etc/dovecot.conf" "$R/dovecot.conf"
  say "Postfix $(postconf -d -h mail_version 2>/dev/null) (master $PF_PID) + Dovecot $(dovecot --version | awk '{print $1}') (master $DV_PID) on $(ports "$REF_PORT_BASE")"
}
write_pp_abuse_config() {
  write_vmail_maps "$PP"
  cat > "$PP/pigeonpost.toml" <<EOF
# Generated by bench/abuse/run.sh -- the HOWTO keys of bench/smtp and bench/imap,
# every listener on, loopback only. mynetworks is 127.0.0.1/32: the legitimate
# clients' address. The attackers (other 127.x addresses) are outsiders, and
# the per-IP connection limit (default 50) applies to them, while 127.0.0.1 is
# exempt (smtpd_client_event_limit_exceptions defaults to \$mynetworks). All
# other limits are pigeonpost's defaults.
myhostname = "mail.example.com"
mydomain = "example.com"
myorigin = "\$mydomain"
inet_interfaces = "$ADDR"
mydestination = "\$myhostname, localhost.\$mydomain, localhost"
mynetworks = "127.0.0.1/32"
relay_domains = ""
alias_maps = ""
virtual_mailbox_domains = "example.com"
virtual_mailbox_base = "$PP/mail"
virtual_mailbox_maps = "hash:$PP/vmailbox"
virtual_alias_maps = "hash:$PP/virtual"
virtual_uid_maps = "static:$VUID"
virtual_gid_maps = "static:$VGID"
queue_directory = "$PP/queue"
protocols = "imap pop3"
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

$(pp_listen smtp="$ADDR:$((PP_PORT_BASE + 25))" submission="$ADDR:$((PP_PORT_BASE + 587))" \
  submissions="$ADDR:$((PP_PORT_BASE + 465))" imap="$ADDR:$((PP_PORT_BASE + 143))" imaps="$ADDR:$((PP_PORT_BASE + 993))" \
  pop3="$ADDR:$((PP_PORT_BASE + 110))" pop3s="$ADDR:$((PP_PORT_BASE + 995))")
EOF
}
start_pp() {
  for p in $(port_list "$(ports "$PP_PORT_BASE")"); do port_busy "$p" && die "$ADDR:$p is in use (set PP_PORT_BASE=)"; done
  write_pp_abuse_config
  check_pp_config
  cp "$PP/pigeonpost.toml" "$R/pigeonpost.toml"
  start_pigeonpost
  say_pigeonpost_running
}
mail_of() { if [ "$1" = postfix ]; then echo "$DV/mail"; else echo "$PP/mail"; fi; }     # IMAP/POP3 mailboxes
sink_of() { if [ "$1" = postfix ]; then echo "$PF/mail"; else echo "$PP/mail"; fi; }     # where SMTP delivers
base_of() { if [ "$1" = postfix ]; then echo "$REF_PORT_BASE"; else echo "$PP_PORT_BASE"; fi; }
roots_of() { if [ "$1" = postfix ]; then echo "$PF_PID $DV_PID"; else echo "$PP_PID"; fi; }
server_alive() { # server: every root process still there
  local p
  for p in $(roots_of "$1"); do kill -0 "$p" 2>/dev/null || return 1; done
}

# ------------------------------------------------------------------ one phase
legit_args() { # server tag duration start-at
  local b
  b=$(base_of "$1")
  echo --smtp-port $((b + 25)) --imap-port $((b + 143)) --pop3-port $((b + 110)) --tag "$2" --duration "$3" \
    --start-at "$4" --smtp-clients "$SMTP_CLIENTS" --smtp-rate "$SMTP_RATE" --smtp-size "$SMTP_SIZE" \
    --smtp-rcpt john@example.com --imap-clients "$IMAP_CLIENTS" --imap-userfile "$ETC/imap-users.txt" \
    --imap-bodies "$IMAP_BODIES" --imap-msgs "$MSGS" --imap-idle "$IMAP_IDLE" --imap-think "$IMAP_THINK" \
    --pop3-clients "$POP3_CLIENTS" --pop3-userfile "$ETC/pop3-users.txt" --pop3-pause "$POP3_PAUSE" \
    --io-timeout "$LEGIT_TIMEOUT"
}
# phase server base|attack: the legitimate load (with the attackers), the
# watcher around it, then the lost-message check and the check that it still serves
phase() {
  local s=$1 ph=$2 t0 lead=0 wdur out=$R/${1}_$2 n acc sink stop
  server_alive "$s" || die "$s is not running before the $ph phase"
  sink=$(sink_of "$s")
  fresh_sink "$sink"
  timeout 120 sync
  sleep "$REST"
  [ "$s" = pigeonpost ] && echo 5 > "/proc/$PP_PID/clear_refs" 2>/dev/null   # VmHWM: this phase's exact peak
  [ "$ph" = attack ] && lead=$ATTACK_LEAD
  t0=$(python3 -c 'import time; print(round(time.time() + 2, 3))')
  wdur=$((lead + DURATION + 12))
  stop=$WORK/stop-$s-$ph; rm -f "$stop"
  python3 "$LIB/abuse_watch.py" --server-pids "$(roots_of "$s")" --duration "$wdur" \
    --ports "$(port_list "$(ports "$(base_of "$s")")")" --mem-abort-mb "$MEM_ABORT_MB" --stop-file "$stop" \
    ${PP_METRICS:+--metrics-url "$PP_METRICS"} --json-out "$out.watch.json" > "$out.watch.log" 2>&1 &
  WAT_PID=$!
  if [ "$ph" = attack ]; then
    say "$s: attack phase: attackers from $(date -d "@${t0%.*}" +%T) for $((lead + DURATION)) s, legitimate load after ${lead} s for ${DURATION} s"
    timeout $((lead + DURATION + 120)) python3 "$LIB/abuse_attack.py" --listeners "$(ports "$(base_of "$s")")" \
      --start-at "$t0" --duration $((lead + DURATION)) --stop-file "$stop" --window "$GUESS_WINDOW" \
      --guess "$GUESSERS" --guess-ips "$GUESS_IPS" --guess-user "$GUESS_USER" --idle "$IDLE_CONNS" --idle-ips "$IDLE_IPS" \
      --slow "$SLOWLORIS" --slow-ips "$SLOW_IPS" --slow-gap "$SLOW_GAP" --garbage "$GARBAGE" --garbage-ips "$GARBAGE_IPS" \
      --garbage-rate "$GARBAGE_RATE" --garbage-max "$GARBAGE_MAX" --garbage-modes "$GARBAGE_MODES" --tls "$TLS_FLOOD" --tls-ips "$TLS_IPS" \
      --tls-stall "$TLS_STALL" --data-rcpt bob@example.com --json-out "$out.attack.json" > "$out.attack.log" 2>&1 &
    ATT_PID=$!
  else
    say "$s: base phase: legitimate load alone for ${DURATION} s"
  fi
  # shellcheck disable=SC2046  # legit_args: words
  timeout $((lead + DURATION + 200)) python3 "$LIB/abuse_legit.py" $(legit_args "$s" "$s-$ph" "$DURATION" "$(python3 -c "print($t0 + $lead)")") \
    --accepted-out "$out.accepted" --json-out "$out.legit.json" > "$out.legit.log" 2>&1
  sed 's/^/   /' "$out.legit.log" | tail -3
  LEG_PID=""
  if [ -n "$ATT_PID" ]; then
    wait "$ATT_PID"; ATT_PID=""
    tail -1 "$out.attack.log" | cut -c1-600 | sed 's/^/   /'
  fi
  wait "$WAT_PID"; WAT_PID=""
  sed 's/^/   /' "$out.watch.log"
  [ -e "$stop" ] && say "WARNING: the memory guard stopped the attack: $(cat "$stop")"
  # every 250 must become a file in john's Maildir (Postfix delivers after the 250): wait up to DRAIN s
  acc=$( { grep -c . < "$out.accepted"; } 2>/dev/null); acc=${acc:-0}
  for _ in $(seq $((DRAIN * 2))); do
    n=$(find "$sink/example.com/john/new" "$sink/example.com/john/cur" -maxdepth 1 -type f 2>/dev/null | wc -l)
    [ "$n" -ge "$acc" ] && break
    sleep 0.5
  done
  python3 "$LIB/abuse_legit.py" --check-maildir "$sink/example.com/john" --accepted "$out.accepted" > "$out.lost.json"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   %(accepted)s accepted (250), %(files)s files in the Maildir: %(lost)s lost, %(duplicated)s duplicated, %(not_accepted)s not accepted" % r)' "$out.lost.json"
  # does it still serve? a short legitimate session of each protocol
  local alive_now=1
  server_alive "$s" || { alive_now=0; say "WARNING: $s: a server process is gone after the $ph phase"; }
  sleep 2
  # shellcheck disable=SC2046
  timeout 120 python3 "$LIB/abuse_legit.py" $(legit_args "$s" "$s-$ph-after" 3 0) --smtp-clients 2 --imap-clients 2 \
    --pop3-clients 1 --imap-idle 0.1 --io-timeout 20 --accepted-out "$out.after.accepted" --json-out "$out.after.json" \
    > "$out.after.log" 2>&1
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["alive"]=sys.argv[2]=="1"; json.dump(r, open(sys.argv[1],"w"))' \
    "$out.after.json" "$alive_now" 2>/dev/null
  sed 's/^abuse_legit:/   afterwards:/' "$out.after.log" | tail -1
  if [ "$s" = pigeonpost ] && [ -r "/proc/$PP_PID/status" ]; then
    awk '/^VmHWM:/{printf "   pigeonpost VmHWM (exact peak RSS) %.1f MB\n", $2/1024}' "/proc/$PP_PID/status"
    awk '/^VmHWM:/{print $2}' "/proc/$PP_PID/status" > "$out.vmhwm_kb"
  fi
}

warm() { # server: the first session of every mailbox (SELECT moves new/ to cur/), not measured
  # shellcheck disable=SC2046
  timeout 200 python3 "$LIB/abuse_legit.py" $(legit_args "$1" "$1-warm" 3 0) --smtp-clients 1 --imap-idle 0.1 \
    --io-timeout 60 --accepted-out "$WORK/warm.accepted" --json-out "$R/${1}_warm.json" > "$R/${1}_warm.log" 2>&1
  sed 's/^abuse_legit:/   warm-up:/' "$R/${1}_warm.log" | tail -1
}

python3 "$LIB/common.py" meta "$R/meta.json" servers="$SERVERS" duration:int="$DURATION" attack_lead:int="$ATTACK_LEAD" \
  guess_window:int="$GUESS_WINDOW" smtp_clients:int="$SMTP_CLIENTS" smtp_rate:float="$SMTP_RATE" \
  smtp_size:int="$SMTP_SIZE" imap_clients:int="$IMAP_CLIENTS" imap_bodies:int="$IMAP_BODIES" imap_idle:float="$IMAP_IDLE" \
  imap_think:float="$IMAP_THINK" pop3_clients:int="$POP3_CLIENTS" pop3_pause:float="$POP3_PAUSE" msgs:int="$MSGS" \
  size:int="$SIZE" guessers:int="$GUESSERS" guess_ips:int="$GUESS_IPS" idle_conns:int="$IDLE_CONNS" \
  idle_ips:int="$IDLE_IPS" slowloris:int="$SLOWLORIS" slow_ips:int="$SLOW_IPS" slow_gap:float="$SLOW_GAP" \
  garbage:int="$GARBAGE" garbage_ips:int="$GARBAGE_IPS" garbage_rate:int="$GARBAGE_RATE" garbage_max:int="$GARBAGE_MAX" \
  tls_flood:int="$TLS_FLOOD" tls_ips:int="$TLS_IPS" tls_stall:int="$TLS_STALL" quick:int="$QUICK" \
  garbage_modes="$GARBAGE_MODES" legit_timeout:int="$LEGIT_TIMEOUT"
{ env_txt; echo "SERVERS=$SERVERS DURATION=$DURATION ATTACK_LEAD=$ATTACK_LEAD GUESS_WINDOW=$GUESS_WINDOW QUICK=$QUICK"
  echo "legit: SMTP_CLIENTS=$SMTP_CLIENTS SMTP_RATE=$SMTP_RATE SMTP_SIZE=$SMTP_SIZE IMAP_CLIENTS=$IMAP_CLIENTS IMAP_BODIES=$IMAP_BODIES IMAP_IDLE=$IMAP_IDLE IMAP_THINK=$IMAP_THINK POP3_CLIENTS=$POP3_CLIENTS POP3_PAUSE=$POP3_PAUSE MSGS=$MSGS SIZE=$SIZE"
  echo "attack: GUESSERS=$GUESSERS/$GUESS_IPS IPs IDLE_CONNS=$IDLE_CONNS/$IDLE_IPS SLOWLORIS=$SLOWLORIS/$SLOW_IPS gap $SLOW_GAP GARBAGE=$GARBAGE/$GARBAGE_IPS rate $GARBAGE_RATE max $GARBAGE_MAX TLS_FLOOD=$TLS_FLOOD/$TLS_IPS stall $TLS_STALL"
  echo "ulimit -n: $(ulimit -n)"; } > "$R/env.txt"

T0=$(date +%s)
PP_LOG0=$( { wc -l < "$PP/pigeonpost.log"; } 2>/dev/null || echo 0)
for s in $SERVERS; do
  copy_mailboxes "$(mail_of "$s")"
  timeout 300 sync
  PP_METRICS=""
  if [ "$s" = postfix ]; then start_ref; else start_pp; PP_METRICS="http://$ADDR:$PP_HTTP/metrics"; fi
  warm "$s"
  phase "$s" base
  phase "$s" attack
  if [ "$s" = postfix ]; then stop_ref; else stop_pigeonpost; fi
done
say "all phases done in $(( $(date +%s) - T0 )) s"

# ------------------------------------------------------------------ report
if has pigeonpost; then
  tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" > "$R/pigeonpost.log" 2>/dev/null
  n=$(grep -c -E 'WARN|ERROR' "$R/pigeonpost.log" 2>/dev/null || true)
  say "pigeonpost log of this run: ${n:-0} WARN/ERROR lines ($R/pigeonpost.log); the most frequent:"
  grep -E 'WARN|ERROR' "$R/pigeonpost.log" 2>/dev/null | sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' | cut -c1-150 | sort | uniq -c \
    | sort -rn | head -5 | sed 's/^/   /'
fi
python3 "$LIB/abuse_table.py" "$R" | tee "$R/table.md"
say "results: $R"
exit 0
