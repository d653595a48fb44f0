# shellcheck shell=bash
# bench/lib/common.sh -- what the benchmark scripts share. Sourced, not run:
#
#   . "$(dirname "$0")/../lib/common.sh"
#
# by bench/smtp, pop3, imap and relay/run.sh (and by lib/start-postfix.sh, for
# write_vmail_maps). Sourcing only defines functions and sets LIB (this
# directory), ROOT (the checkout), BENCH_NAME (bench/<the script's directory>,
# for messages), ADDR, unset_pp, PP_PID, DV_PID, OVERLAP and the missing/pkgs
# lists; nothing runs.
#
# What the functions read, besides their arguments: SERVERS, STATE, R (the
# results directory), PP (pigeonpost's state directory), PP_PORT, PP_HTTP, BIN
# and, for the Dovecot side (pop3, imap), DV, DV_PORT, DV_PID, ETC, WORK, TPL,
# TRASH, MSGS, SIZE, NAMES, LOAD_PY (the load generator in bench/lib) and the
# session test's settings; each function says which.

LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LIB/../.." && pwd)
BENCH_NAME=bench/$(basename "$(cd "$(dirname "$0")" && pwd)")
ADDR=127.0.0.1

# ------------------------------------------------------------------ messages and checks
say() { echo "[$BENCH_NAME $(date +%T)] $*"; }
die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
has() { case " $SERVERS " in *" $1 "*) return 0;; *) return 1;; esac; }
within() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }   # n min max

check_servers() { # known servers...: SERVERS is not empty and names only these
  local s known="$*"
  [ -n "$SERVERS" ] || die "SERVERS is empty"
  for s in $SERVERS; do
    case " $known " in *" $s "*) ;; *) die "SERVERS: unknown server '$s' (${known// /, })";; esac
  done
}
whole_numbers() { # what values...: die unless every value is a whole number
  local what=$1 n; shift
  for n; do [[ $n =~ ^[0-9]+$ ]] || die "$what must be whole numbers"; done
}

# ------------------------------------------------------------------ prerequisites
# Nothing is installed here: need/need_file collect what is missing, and
# missing_exit says what and how to get it.
missing=() pkgs=()
need() { # command package [name in the message]
  command -v "$1" >/dev/null || { missing+=("${3:-$1}"); pkgs+=("$2"); }
}
need_file() { # path package name
  [ -e "$1" ] || { missing+=("$3"); pkgs+=("$2"); }
}
need_cargo() { # unless PIGEONPOST_BIN is given, the pigeonpost side is built with cargo
  if has pigeonpost && [ -z "${PIGEONPOST_BIN:-}" ]; then
    command -v cargo >/dev/null || missing+=("cargo (https://rustup.rs), or set PIGEONPOST_BIN")
  fi
}
missing_exit() { # note on the packages: exit 1 if anything is missing, with the apt-get line
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "$BENCH_NAME: missing: ${missing[*]}" >&2
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "install with (Debian/Ubuntu; $1):" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')" >&2
  fi
  exit 1
}
need_root() { # server Name: the reference server's master starts as root and drops privileges itself
  if has "$1" && [ "$(id -u)" != 0 ]; then
    die "the $2 side needs root (its master drops privileges itself): run with sudo, or SERVERS=pigeonpost for pigeonpost alone"
  fi
}

# ------------------------------------------------------------------ the pigeonpost binary
# pigeonpost_bin: BIN = $PIGEONPOST_BIN, else a release build of this checkout,
# as an absolute path (pigeonpost is started in its state directory)
pigeonpost_bin() {
  BIN=""
  has pigeonpost || return 0
  if [ -n "${PIGEONPOST_BIN:-}" ]; then
    BIN=$PIGEONPOST_BIN
  else
    say "building pigeonpost (cargo build --release in $ROOT)"
    (cd "$ROOT" && timeout 3600 cargo build --release) || die "cargo build --release failed"
    BIN=$ROOT/target/release/pigeonpost
  fi
  [ -x "$BIN" ] || die "pigeonpost binary not found or not executable: $BIN"
  BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
}
# PIGEONPOST_* variables in our environment (PIGEONPOST_BIN included) would be
# read as settings by pigeonpost: run it without them.
unset_pp=(); for v in $(compgen -e | grep '^PIGEONPOST_' || true); do unset_pp+=(-u "$v"); done; unset v
pp() { env "${unset_pp[@]}" "$BIN" "$@"; }

# ------------------------------------------------------------------ layout
results_dir() { # R = $STATE/results/<timestamp> (latest: a symlink to it)
  STAMP=$(date +%Y%m%d-%H%M%S); R=$STATE/results/$STAMP
  mkdir -p "$R" || die "cannot create $R"
  ln -sfn "$STAMP" "$STATE/results/latest"
}
vmail_ids() { # VUID, VGID: the mailboxes' owner, 5000:5000 as in the HOWTO (as root), else the invoking user
  if [ "$(id -u)" = 0 ]; then VUID=5000 VGID=5000; else VUID=$(id -u) VGID=$(id -g); fi
}
port_busy() { ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qx "$ADDR:$1"; }
# server order for run i: alternate which server goes first
order() { # run-number
  if [ "$(echo "$SERVERS" | wc -w)" -eq 1 ] || [ $(($1 % 2)) -eq 1 ]; then echo "$SERVERS"
  else echo "$SERVERS" | awk '{for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "\n")}'; fi
}

# ------------------------------------------------------------------ the pigeonpost process ($PP, $PP_PORT, $PP_HTTP)
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
# a pigeonpost left over from an aborted run of this script (same state dir)
stop_stale_pigeonpost() {
  local old
  [ -s "$PP/pid" ] || return 0
  old=$(cat "$PP/pid")
  if [ "$(cat /proc/"$old"/comm 2>/dev/null)" = pigeonpost ]; then
    say "stopping pigeonpost left from an earlier run (pid $old)"; kill -TERM "$old"
    for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$old" 2>/dev/null && kill -KILL "$old"
  fi
  rm -f "$PP/pid"
}
# on_exit stop-the-reference: at exit, also on Ctrl-C or die, stop pigeonpost
# and the reference server
on_exit() {
  STOP_REF=$1
  trap cleanup EXIT
  trap 'echo; say "interrupted"; exit 130' INT TERM
}
cleanup() {
  trap - EXIT INT TERM
  stop_pigeonpost
  $STOP_REF
}
pp_listen() { # name=address...: pigeonpost's [listen] table, only these listeners on (and http on $PP_HTTP)
  local l a v
  echo "[listen]"
  for l in smtp submission submissions imap imaps pop3 pop3s lmtp; do
    v=""; for a; do [ "${a%%=*}" = "$l" ] && v=${a#*=}; done
    printf '%s = "%s"\n' "$l" "$v"
  done
  printf 'http = "%s"\n' "$ADDR:$PP_HTTP"
}
check_pp_config() { # pigeonpost must accept $PP/pigeonpost.toml; what it makes of it goes to $R
  pp --config "$PP/pigeonpost.toml" config > "$R/pigeonpost-config.toml" 2>&1 \
    || { cat "$R/pigeonpost-config.toml" >&2; die "pigeonpost rejects the generated config"; }
}
# start_pigeonpost: serve $PP/pigeonpost.toml (log: $PP/pigeonpost.log), and
# wait until it greets on $PP_PORT with $PP_GREETING (said goodbye to with
# $PP_BYE); $PP_WHAT names the server in the error, e.g. "the IMAP server"
start_pigeonpost() {
  local banner="" p
  for p in "$PP_PORT" "$PP_HTTP"; do port_busy "$p" && die "$ADDR:$p is in use (set PIGEONPOST_PORT= / PIGEONPOST_HTTP_PORT=)"; done
  ( cd "$PP" && exec env "${unset_pp[@]}" "$BIN" --config "$PP/pigeonpost.toml" serve ) \
    </dev/null >> "$PP/pigeonpost.log" 2>&1 &
  PP_PID=$!; echo "$PP_PID" > "$PP/pid"
  for _ in $(seq 100); do   # bounded: 10 s
    kill -0 "$PP_PID" 2>/dev/null || { tail -20 "$PP/pigeonpost.log" >&2; PP_PID=""; die "pigeonpost exited at start (log: $PP/pigeonpost.log)"; }
    banner=$(timeout 3 bash -c "exec 3<>/dev/tcp/$ADDR/$PP_PORT && IFS= read -r -t 2 l <&3 && printf '%s' \"\$l\" && printf '$PP_BYE\r\n' >&3" 2>/dev/null | tr -d '\r')
    [ -n "$banner" ] && break
    sleep 0.1
  done
  case "$banner" in
    "$PP_GREETING"*) ;;
    "") die "pigeonpost does not answer on $ADDR:$PP_PORT after 10 s (log: $PP/pigeonpost.log)";;
    *) die "pigeonpost greets with '$banner' instead of $PP_GREETING on $ADDR:$PP_PORT: is $PP_WHAT in this build?";;
  esac
}
say_pigeonpost_running() {
  say "pigeonpost $(pp --version 2>/dev/null | awk '{print $2}') running, pid $PP_PID, $ADDR:$PP_PORT, mail in $PP/mail ($BIN)"
}

# ------------------------------------------------------------------ the Postfix side (smtp, relay: $PF, $PF_PORT)
# the virtual mailboxes (john@ and bob@example.com) and the postmaster alias:
# the same maps for Postfix (start-postfix.sh) and pigeonpost (smtp/run.sh)
write_vmail_maps() { # directory
  cat > "$1/vmailbox" <<EOF
# user@domain -> maildir relative to virtual_mailbox_base (trailing / = Maildir)
john@example.com  example.com/john/
bob@example.com   example.com/bob/
EOF
  cat > "$1/virtual" <<EOF
# virtual_alias_maps: alias -> real mailbox(es)
postmaster@example.com  john@example.com
EOF
}
start_postfix() { # [VAR=value for start-postfix.sh...]: a fresh private Postfix; PF_PID
  PEERS=$PF SMTP_PORT=$PF_PORT "$LIB/stop-postfix.sh" >/dev/null 2>&1
  port_busy "$PF_PORT" && die "$ADDR:$PF_PORT is in use by something else (set POSTFIX_PORT=)"
  env PEERS="$PF" SMTP_PORT="$PF_PORT" VMAIL_UID="$VUID" VMAIL_GID="$VGID" "$@" "$LIB/start-postfix.sh" \
    > "$R/postfix-start.log" 2>&1 || { cat "$R/postfix-start.log" >&2; die "Postfix did not start"; }
  # shellcheck disable=SC2034  # for the caller
  PF_PID=$(cat "$PF/run/postfix.pid")
}
stop_postfix() {
  if has postfix; then PEERS=$PF SMTP_PORT=$PF_PORT "$LIB/stop-postfix.sh" 2>&1 | sed 's/^/  /'; fi
}

# ------------------------------------------------------------------ the Dovecot side (pop3, imap)
# dovecot_layout: the state directories of both servers ($STATE/dovecot,
# $STATE/pigeonpost, etc, work, trash, the template) and the results directory;
# as root also the mailbox owner, vmail 5000:5000, if it does not exist
dovecot_layout() {
  DV=$STATE/dovecot; PP=$STATE/pigeonpost; TRASH=$STATE/trash; ETC=$STATE/etc; WORK=$STATE/work
  TPL=$STATE/template/Maildir
  mkdir -p "$STATE" "$ETC" "$TRASH" "$WORK" "$DV/mail/example.com" "$PP/mail/example.com" "$PP/queue" \
    || die "cannot create $STATE"
  results_dir
  chmod 755 "$STATE" "$DV" "$PP" "$DV/mail" "$PP/mail"
  vmail_ids
  if [ "$(id -u)" = 0 ]; then   # the mailbox owner, as in the HOWTO (vmail 5000:5000)
    getent group "$VGID" >/dev/null || groupadd -g "$VGID" vmail || die "cannot create group $VGID"
    getent passwd "$VUID" >/dev/null || useradd -u "$VUID" -g "$VGID" -d /nonexistent -M -s /usr/sbin/nologin -c "virtual mail" vmail \
      || die "cannot create user $VUID"
  fi
  chown "$VUID:$VGID" "$DV/mail/example.com" "$PP/mail/example.com"
}
# check_session_settings: the settings both Dovecot-side benchmarks have
# shellcheck disable=SC2153  # PROCS: the script's setting
check_session_settings() {
  local c
  [ -n "$CONCS" ] || die "CONCS is empty"
  for c in $CONCS; do within "$c" 1 500 || die "CONCS: 1..500 clients"; done
  within "$DURATION" 1 600 || die "need 1 <= DURATION <= 600"
  { within "$MSGS" 1 100000 && within "$SIZE" 200 10000000; } || die "need 1 <= MSGS <= 100000, 200 <= SIZE <= 10000000"
  [[ $PP_LOG_LEVEL =~ ^[A-Za-z0-9_:=,.]+$ ]] || die "PP_LOG_LEVEL: a log filter such as info or warn"
  case $NAMES in sizes|plain) ;; *) die "NAMES must be sizes or plain";; esac
  case $PROCS in auto) ;; *) { [[ $PROCS =~ ^[0-9]+$ ]] && within "$PROCS" 1 16; } || die "PROCS: auto or 1..16";; esac
  case "$STATE" in /*) ;; *) die "STATE must be an absolute path";; esac
}
# dovecot_prepare: after the client's own prerequisites (need ...), the
# others, the pigeonpost binary, the layout, the exit trap, and what an aborted
# run of this benchmark may have left running
dovecot_prepare() {
  local t
  need python3 python3
  need ss iproute2 "ss (iproute2)"
  need openssl openssl
  if has dovecot; then
    for t in dovecot doveconf doveadm; do need $t dovecot-core "$t (dovecot-core)"; done
    need_file "/usr/lib/dovecot/$PROTO" "dovecot-${PROTO}d" "dovecot's $PROTO (dovecot-${PROTO}d)"
  fi
  need_cargo
  missing_exit "the packaged dovecot service is not used"
  need_root dovecot Dovecot
  pigeonpost_bin
  dovecot_layout
  on_exit stop_dovecot
  stop_stale_pigeonpost
  has dovecot && stop_dovecot >/dev/null
  USERS=$ETC/users          # the passwd-file both servers read
}
mailroot() { if [ "$1" = dovecot ]; then echo "$DV/mail"; else echo "$PP/mail"; fi; }
port_of() { if [ "$1" = dovecot ]; then echo "$DV_PORT"; else echo "$PP_PORT"; fi; }
pids_of() { if [ "$1" = dovecot ]; then echo "$DV_PID"; else echo "$PP_PID"; fi; }
alive() { # server
  if [ "$1" = pigeonpost ]; then kill -0 "$PP_PID" 2>/dev/null || die "pigeonpost (pid $PP_PID) has exited: see $PP/pigeonpost.log"
  else kill -0 "$DV_PID" 2>/dev/null || die "Dovecot (pid $DV_PID) has exited: see $DV/log/dovecot.log"; fi
}

DV_PID=""
# stop_dovecot: the Dovecot of this state dir (stop-dovecot.sh only stops the
# one started with our config)
stop_dovecot() {
  if has dovecot; then DOVECOT_DIR=$DV PORTS=$DV_PORT "$LIB/stop-dovecot.sh" 2>&1 | sed 's/^/  /'; fi
  DV_PID=""
}
# start_dovecot: start-dovecot.sh with this benchmark's settings (DOVECOT_ENV:
# VAR=value words, e.g. PROTOCOLS=imap IMAP_PORT=4143); DV_PID
start_dovecot() {
  port_busy "$DV_PORT" && die "$ADDR:$DV_PORT is in use by something else (set DOVECOT_PORT=)"
  env DOVECOT_DIR="$DV" MAIL_ROOT="$DV/mail" USERS_FILE="$USERS" SSL_CERT="$ETC/cert.pem" SSL_KEY="$ETC/key.pem" \
    VMAIL_UID="$VUID" VMAIL_GID="$VGID" "${DOVECOT_ENV[@]}" "$LIB/start-dovecot.sh" >> "$R/dovecot-start.log" 2>&1 \
    || { tail -20 "$R/dovecot-start.log" >&2; die "Dovecot did not start"; }
  DV_PID=$(awk '/^dovecot-pid /{p=$2} END{print p}' "$R/dovecot-start.log")
  [ -n "$DV_PID" ] || die "no Dovecot PID (see $R/dovecot-start.log)"
}
# write_pp_config protocol: pigeonpost's config, the HOWTO's Dovecot keys as
# Dovecot gets them in bench/lib/start-dovecot.sh; loopback, that protocol only
write_pp_config() {
  local uidl=""
  [ "$1" = pop3 ] && uidl='pop3_uidl_format = "%08Xu%08Xv"'
  cat > "$PP/pigeonpost.toml" <<EOF
# Generated by $BENCH_NAME/run.sh -- the HOWTO's Dovecot keys, as Dovecot gets
# them in bench/lib/start-dovecot.sh. Loopback only, ${1^^} only.
myhostname = "mail.example.com"
mydomain = "example.com"
inet_interfaces = "$ADDR"
mynetworks = "127.0.0.0/8"
alias_maps = ""
queue_directory = "$PP/queue"
protocols = "$1"
mail_location = "maildir:$PP/mail/%d/%n"
${uidl:+$uidl
}auth_mechanisms = "plain login"
passdb = "passwd-file:$USERS"
userdb = "static:uid=$VUID gid=$VGID home=$PP/mail/%d/%n"
disable_plaintext_auth = "yes"
ssl_cert = "<$ETC/cert.pem"
ssl_key = "<$ETC/key.pem"
log_level = "$PP_LOG_LEVEL"
shutdown_timeout = "5s"
# The same deviation Dovecot gets (DOVECOT_MAX_USERIP): every bench client
# is one user from 127.0.0.1, which the default of 10 would refuse.
mail_max_userip_connections = ${DV_MAX_USERIP:-1000}

$(pp_listen "$1=$ADDR:$PP_PORT")
EOF
}
# start_servers: Dovecot and pigeonpost, each if in SERVERS; their configs go
# to $R; log lines before this run (the logs are kept across runs) are counted
# in DV_LOG0 and PP_LOG0, so that only newer ones are reported
start_servers() {
  DV_LOG0=$( { wc -l < "$DV/log/dovecot.log"; } 2>/dev/null || echo 0)
  PP_LOG0=$( { wc -l < "$PP/pigeonpost.log"; } 2>/dev/null || echo 0)
  if has dovecot; then
    start_dovecot
    cp "$DV/etc/dovecot.conf" "$R/dovecot.conf"
    say "Dovecot $(dovecot --version | awk '{print $1}') running, master pid $DV_PID, $ADDR:$DV_PORT, mail in $DV/mail"
  fi
  if has pigeonpost; then
    write_pp_config "$PROTO"
    check_pp_config
    start_pigeonpost
    cp "$PP/pigeonpost.toml" "$R/pigeonpost.toml"
    say_pigeonpost_running
  fi
}

hash_pw() { # password: its SHA512-CRYPT hash, by doveadm, or pigeonpost without Dovecot
  if command -v doveadm >/dev/null; then doveadm pw -s SHA512-CRYPT -p "$1"; else pp pw -s SHA512-CRYPT -p "$1"; fi
}
# write_passwd_file description < "user password" lines: the passwd-file both
# servers read ($USERS), SHA512-CRYPT hashes with one salt each; hashing is
# slow, so a file with as many users is kept
write_passwd_file() {
  local lines u p
  lines=$(cat)
  if [ ! -s "$USERS" ] || [ "$(grep -c . "$USERS")" != "$(grep -c . <<< "$lines")" ]; then
    say "writing the passwd-file: $1 (SHA512-CRYPT, one salt each)"
    while read -r u p; do printf '%s:%s\n' "$u" "$(hash_pw "$p")"; done <<< "$lines" > "$USERS.tmp" \
      || die "cannot hash passwords"
    mv "$USERS.tmp" "$USERS"
  fi
  chmod 640 "$USERS"
}
make_cert() { # $ETC/cert.pem and key.pem, self-signed, for both servers
  if [ ! -s "$ETC/cert.pem" ] || [ ! -s "$ETC/key.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=mail.example.com" \
      -addext "subjectAltName=DNS:mail.example.com,DNS:localhost,IP:127.0.0.1" \
      -keyout "$ETC/key.pem" -out "$ETC/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
  fi
  chmod 644 "$ETC/cert.pem"; chmod 600 "$ETC/key.pem"
}
# make_template: the template Maildir $TPL (bench/lib/mkmaildir.py: MSGS
# messages of about SIZE bytes, file names NAMES), made again only when these
# change; TPL_SUM (a digest of its content) and TPL_BYTES
make_template() {
  local noszs=()
  tpl_params="msgs=$MSGS size=$SIZE names=$NAMES seed=1 v=1"
  if [ "$(cat "$STATE/template/params" 2>/dev/null)" != "$tpl_params" ]; then
    [ -e "$STATE/template" ] && mv "$STATE/template" "$TRASH/template.$(date +%s%N)"
    mkdir -p "$STATE/template"
    [ "$NAMES" = plain ] && noszs=(--no-sizes)
    python3 "$LIB/mkmaildir.py" "$TPL" --count "$MSGS" --size "$SIZE" "${noszs[@]}" || die "mkmaildir failed"
    chown -R "$VUID:$VGID" "$TPL"; chmod -R go-rwx "$TPL"
    echo "$tpl_params" > "$STATE/template/params"
  fi
  TPL_SUM=$(cd "$TPL" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  TPL_BYTES=$(du -sb "$TPL/new" | cut -f1)
}
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

# env_txt [client version line]: the head of env.txt (machine, servers,
# commit, template); the settings follow
# shellcheck disable=SC2120  # the argument is optional
env_txt() {
  echo "date: $(date -Is)"; echo "host: $(uname -r) cpus=$(nproc) fs=$(df -T "$STATE" | awk 'NR==2{print $2" on "$1}')"
  echo "mount: $(findmnt -no OPTIONS -T "$STATE" 2>/dev/null)"
  has dovecot && echo "dovecot: $(dovecot --version)"
  has postfix && echo "postfix: $(postconf -d -h mail_version 2>/dev/null)"
  has pigeonpost && echo "pigeonpost: $BIN ($(pp --version 2>/dev/null), modified $(date -r "$BIN" -Is), sha256 $(sha256sum "$BIN" | cut -c1-16))"
  [ -n "${1:-}" ] && echo "$1"
  if [ -e "$ROOT/.git" ]; then
    echo "checkout commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$([ -n "${PIGEONPOST_BIN:-}" ] && echo " (PIGEONPOST_BIN given: the binary may be from another commit)")"
  fi
  [ -n "${TPL_SUM:-}" ] && echo "template: $TPL ($tpl_params, $TPL_BYTES bytes, content digest $TPL_SUM)"
  return 0
}

# ------------------------------------------------------------------ measured runs
# prewarm_verify server userfile io-timeout noun: the first session of every
# user of userfile ($LOAD_PY --prewarm), timed, and checked against the
# template; noun: what a user has, "mailbox" or "maildrop"
prewarm_verify() {
  local s=$1
  timeout $((TIMEOUT + 60)) python3 "$LIB/$LOAD_PY" --port "$(port_of "$s")" --userfile "$2" --prewarm \
    --verify-dir "$TPL" --io-timeout "$3" --tag "$s" --json-out "$R/prewarm.jsonl" 2>&1 | tee -a "$R/prewarm_$s.log" | sed 's/^/   /'
  [ "${PIPESTATUS[0]}" = 0 ] || say "WARNING: $s did not serve every $4 exactly as generated (see $R/prewarm_$s.log)"
}
# wait_others: before a measured run, wait (bounded by WAIT_OTHERS s, polling
# every 30 s) until no other benchmark runs (processes matching OTHERS_RE);
# OVERLAP=1 if one still does. WAIT_OTHERS=0: no waiting.
OVERLAP=0
wait_others() {
  local t0 others
  OVERLAP=0
  [ "${WAIT_OTHERS:-0}" -gt 0 ] || return 0
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

# measure_sessions server clients run: one run of the session test, $LOAD_PY
# with SESSION_ARGS (the protocol's own), appended to
# $R/sessions_<server>_c<clients>.jsonl with pigeonpost's exact peak RSS (and,
# with OTHERS_RE, whether another benchmark overlapped); SESSION_LINE: the
# arguments of `common.py session-line` for the progress line
# shellcheck disable=SC2153  # PROCS: the script's setting
measure_sessions() {
  local s=$1 c=$2 i=$3 procs=$PROCS one=$R/.one.jsonl hwm=null overlap=()
  alive "$s"
  [ "$procs" = auto ] && { if [ "$c" = 1 ]; then procs=1; else procs=2; fi; }
  wait_others
  sleep "$REST"
  [ "$s" = pigeonpost ] && echo 5 > "/proc/$PP_PID/clear_refs" 2>/dev/null   # reset VmHWM: exact peak of this run
  say "$s: $c client(s), ${DURATION}s, run $i/$RUNS"
  rm -f "$one"
  timeout $((DURATION + 200)) python3 "$LIB/$LOAD_PY" --port "$(port_of "$s")" "${SESSION_ARGS[@]}" \
    --clients "$c" --procs "$procs" --duration "$DURATION" --max-sessions "$MAX_SESSIONS" \
    --server-pids "$(pids_of "$s")" --sample-every 0.25 --seed "$i" --tag "$s" --json-out "$one" --quiet \
    >> "$R/sessions_${s}_c$c.log" 2>&1
  if [ "$s" = pigeonpost ] && [ -r "/proc/$PP_PID/status" ]; then hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$PP_PID/status"); fi
  if [ -s "$one" ]; then
    [ -n "${OTHERS_RE:-}" ] && overlap=(overlap:bool="$OVERLAP")
    python3 "$LIB/common.py" fields "$one" run:int="$i" pp_vmhwm_kb:int="$hwm" "${overlap[@]}" >> "$R/sessions_${s}_c$c.jsonl"
    # shellcheck disable=SC2086  # SESSION_LINE: words
    python3 "$LIB/common.py" session-line $SESSION_LINE < "$one"
    [ "$hwm" != null ] && echo "   pigeonpost exact peak RSS (VmHWM) $((hwm / 1024)) MB"
  else
    say "  no result (see $R/sessions_${s}_c$c.log)"; tail -3 "$R/sessions_${s}_c$c.log" | sed 's/^/   /'
  fi
  rm -f "$one"
}
run_sessions() { # every concurrency of CONCS, RUNS times, the servers' order alternating
  local c i s t0
  t0=$(date +%s)
  for c in $CONCS; do
    for i in $(seq 1 "$RUNS"); do
      for s in $(order "$i"); do measure_sessions "$s" "$c" "$i"; done
    done
  done
  say "session runs done in $(( $(date +%s) - t0 )) s"
}

# busy_jiffies: the machine's busy CPU time so far (all of /proc/stat's cpu line but
# idle and iowait), in clock ticks, into BUSY (no fork, so it can sit right around a pull)
busy_jiffies() {
  local f x i=0 sum=0 idle=0
  read -r -a f < /proc/stat
  for x in "${f[@]:1}"; do i=$((i + 1)); sum=$((sum + x)); case $i in 4|5) idle=$((idle + x));; esac; done
  BUSY=$((sum - idle))
}
# pull_measured server command...: run a client's pull (mbsync, fetchmail) from
# a server; PULL_RC is its exit code, PULL_FIELDS what `common.py pull-record`
# needs to work out the time and CPU it took: its start and end, the server
# tree's CPU (its cgroup's where it can have one), this shell's children's CPU (bash `times`; the client is the only
# child in between) and the machine's busy CPU time around it
pull_measured() {
  local s=$1 tree0 tree1 t0 t1 b0 b1 pin=() cpu=${PIN_CPU:-0}; shift
  # PIN_CPU >= 0: the client and the server's tree on that CPU for the pull
  # (see set_tree_affinity in common.py); afterwards the server on all again
  if [ "$cpu" -ge 0 ]; then
    # shellcheck disable=SC2046  # one argument per PID
    python3 "$LIB/common.py" pin "$cpu" $(pids_of "$s")
    pin=(taskset -c "$cpu")
  fi
  # the server's tree into a cpuacct cgroup: its CPU in ns, per-connection
  # processes that exit at QUIT included (see cg_join in common.py)
  # shellcheck disable=SC2046
  python3 "$LIB/common.py" cg-join "$s" $(pids_of "$s")
  tree0=$(python3 "$LIB/$LOAD_PY" --tree-stats --server-pids "$(pids_of "$s")")
  times > "$WORK/.times0"
  busy_jiffies; b0=$BUSY
  t0=$(date +%s.%N)
  "${pin[@]}" "$@"
  # shellcheck disable=SC2034  # PULL_RC, PULL_FIELDS: for the caller
  PULL_RC=$?
  t1=$(date +%s.%N)
  busy_jiffies; b1=$BUSY
  times > "$WORK/.times1"
  tree1=$(python3 "$LIB/$LOAD_PY" --tree-stats --server-pids "$(pids_of "$s")")
  # shellcheck disable=SC2046
  [ ${#pin[@]} -eq 0 ] || python3 "$LIB/common.py" pin all $(pids_of "$s")
  # shellcheck disable=SC2034
  PULL_FIELDS=(t0="$t0" t1="$t1" tree0:json="$tree0" tree1:json="$tree1" times0="$(cat "$WORK/.times0")"
               times1="$(cat "$WORK/.times1")" busy0="$b0" busy1="$b1" clk="$(getconf CLK_TCK)")
}

# ------------------------------------------------------------------ the report
# report_log_warnings [save]: the warning and error lines pigeonpost and Dovecot
# logged in this run (after PP_LOG0 / DV_LOG0 lines); with save, also into
# $R/<server>-warnings.log
# shellcheck disable=SC2120  # the argument is optional
report_log_warnings() {
  local n_warn
  if has pigeonpost; then
    n_warn=$(tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" 2>/dev/null | grep -c -iE 'WARN|ERROR' || true)
    [ "${n_warn:-0}" -gt 0 ] && { say "pigeonpost logged $n_warn warning/error lines ($PP/pigeonpost.log), last ones:"
      tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" | grep -iE 'WARN|ERROR' | tail -5 | sed 's/^/   /'; }
    [ "${1:-}" = save ] && tail -n +$((PP_LOG0 + 1)) "$PP/pigeonpost.log" 2>/dev/null | grep -iE 'WARN|ERROR' > "$R/pigeonpost-warnings.log"
  fi
  if has dovecot; then
    # the master's "Killed with signal 15" is a shutdown of ours (a restart, or the previous run's)
    n_warn=$(tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" 2>/dev/null | grep -iE 'warning|error|fatal|panic' | grep -vc 'Killed with signal 15' || true)
    [ "${n_warn:-0}" -gt 0 ] && { say "Dovecot logged $n_warn warning/error lines ($DV/log/dovecot.log), last ones:"
      tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" | grep -iE 'warning|error|fatal|panic' | grep -v 'Killed with signal 15' | tail -5 | sed 's/^/   /'; }
    [ "${1:-}" = save ] && tail -n +$((DV_LOG0 + 1)) "$DV/log/dovecot.log" 2>/dev/null | grep -iE 'warning|error|fatal|panic' | grep -v 'Killed with signal 15' > "$R/dovecot-warnings.log"
  fi
  return 0
}
# report table.py title: stop both servers, print the tables (kept in
# $R/table.md), and remove the moved-aside mailboxes (CLEAN_TRASH=1) or say
# where they are
report() {
  cleanup
  trap - EXIT
  python3 "$LIB/$1" "$R" > "$R/table.md"
  echo
  echo "## $2, $(date '+%Y-%m-%d %H:%M'), $(nproc) CPUs"
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
}
