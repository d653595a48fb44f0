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
# What it shares with the other benchmarks (checks, starting and stopping both
# servers, the report) is in bench/lib/common.sh.
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
#   MAILAUTH=                      verify: pigeonpost checks SPF, DKIM, DMARC and ARC on
#                                  every message (DNS from a local server, bench/lib/fake_dns.py;
#                                  each message DKIM-signed beforehand with dkimpy and sent
#                                  with smtp-source -F); sign: pigeonpost DKIM-signs every
#                                  message (rsa-sha256, 2048 bits). Postfix stays as in the
#                                  HOWTO, without milters, and gets the same messages.
#   DKIM_ALG=rsa                   the key MAILAUTH=sign signs with: rsa (2048 bits) or ed25519
#   RESTRICTIONS=                  1: both servers evaluate the same 8-entry restriction list
#                                  (smtpd_recipient_restrictions: reject_non_fqdn_sender,
#                                  reject_non_fqdn_recipient, reject_unknown_sender_domain,
#                                  check_client_access hash:, check_sender_access hash: (each
#                                  table ACCESS_ENTRIES=3000 lines), reject_rbl_client,
#                                  reject_unauth_destination, permit), with the clients outside
#                                  mynetworks and DNS from bench/lib/fake_dns.py on
#                                  127.0.0.1:53 (Postfix reads it through a private
#                                  resolv.conf: start-postfix.sh RESOLV_CONF). CONCS
#                                  defaults to "1 20". Every run must store every message,
#                                  or the script fails.
#   RS_MAILAUTH=off                (RESTRICTIONS=1) off: pigeonpost's SPF and DMARC checks of
#                                  mail from outside mynetworks are turned off (spf_policy,
#                                  dmarc_policy), as Postfix has none; default: left at
#                                  pigeonpost's defaults (report)
#   MILTER=                        rspamd: ONE rspamd 3.x (its proxy worker in milter mode,
#                                  self_scan, RSPAMD_COUNT=1 process as the package's default
#                                  on 2 CPUs; private config, no redis, DNS to a dead port,
#                                  headers added for every client) on 127.0.0.1:RSPAMD_PORT=4532,
#                                  and both servers use it: smtpd_milters = inet:...,
#                                  milter_default_action = tempfail. rspamd's CPU per message
#                                  is recorded too. RSPAMD_SOCKET=unix: the milter on a unix
#                                  socket ($STATE/rspamd/run/milter.sock) instead. rspamd's DNS:
#                                  RSPAMD_DNS=nxdomain (default): bench/lib/fake_dns.py with an
#                                  empty zone, NXDOMAIN for every name at once; dead: a UDP port
#                                  nothing listens on (as tests/it/milter.rs), where rspamd
#                                  waits out its 1 s timeout on some lookups. Every run must store every message, each
#                                  with rspamd's "X-Spam-Status: No", or the script fails.
#   CEILING=1 CEILING_SECS=5       before each run of each concurrency c, the disk's ceiling
#                                  for c writers in the same file system as the Maildirs:
#                                  bench/lib/fsync_limit.c -t c -D (write + fsync + rename
#                                  into new/ + fsync new/ per 5 KiB file, what one durable
#                                  delivery costs at least); its files are moved aside, not
#                                  deleted (0 = no ceiling)
#   CLEAN_TRASH=0                  1 = delete the moved-aside mailboxes at the end
#                                  (default: keep them, as deleting them slows file
#                                  creation for the next ~6 minutes; see bench/README.md)
# Every wait is bounded; both servers are stopped on exit (also on Ctrl-C).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then D_COUNT=1000 D_RUNS=1 D_SETTLE=5; else D_COUNT=5000 D_RUNS=3 D_SETTLE=65; fi
STATE=${STATE:-/tmp/pp-bench}
COUNT=${COUNT:-$D_COUNT}; RUNS=${RUNS:-$D_RUNS}; SETTLE=${SETTLE:-$D_SETTLE}
MILTER=${MILTER:-}; RSPAMD_PORT=${RSPAMD_PORT:-4532}; RSPAMD_COUNT=${RSPAMD_COUNT:-1}; RSPAMD_SOCKET=${RSPAMD_SOCKET:-inet}; RSPAMD_DNS=${RSPAMD_DNS:-nxdomain}
RESTRICTIONS=${RESTRICTIONS:-0}; ACCESS_ENTRIES=${ACCESS_ENTRIES:-3000}; RS_MAILAUTH=${RS_MAILAUTH:-off}
if [ "$RESTRICTIONS" = 1 ] || [ -n "$MILTER" ]; then D_CONCS="1 20"; else D_CONCS="1 20 100"; fi
CONCS=${CONCS:-$D_CONCS}; SIZE=${SIZE:-5120}
SERVERS=${SERVERS:-"postfix pigeonpost"}
PROBES=${PROBES:-200}; PROBE_GAP=${PROBE_GAP:-0.05}
PF_PORT=${POSTFIX_PORT:-4525}; PP_PORT=${PIGEONPOST_PORT:-5525}; PP_HTTP=${PIGEONPOST_HTTP_PORT:-5580}
TIMEOUT=${TIMEOUT:-300}; FSYNC_CHECK=${FSYNC_CHECK:-1}; CLEAN_TRASH=${CLEAN_TRASH:-0}
CEILING=${CEILING:-1}; CEILING_SECS=${CEILING_SECS:-5}
PP_GREETING="220" PP_BYE="QUIT" PP_WHAT="SMTP receiving"

check_servers postfix pigeonpost
# shellcheck disable=SC2086  # CONCS: words
whole_numbers "COUNT/RUNS/SETTLE/PROBES/TIMEOUT/CEILING_SECS/CONCS" "$COUNT" "$RUNS" "$SETTLE" "$PROBES" "$TIMEOUT" "$CEILING_SECS" $CONCS
{ within "$RUNS" 1 20 && [ "$COUNT" -ge 1 ]; } || die "need 1 <= RUNS <= 20 and COUNT >= 1"

# ------------------------------------------------------------------ prerequisites
need python3 python3
SMTP_SOURCE=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}
[ -x "$SMTP_SOURCE" ] || { missing+=("smtp-source (in the postfix package)"); pkgs+=(postfix); }
if has postfix; then need postfix postfix; need postmap postfix; fi
need ss iproute2 "ss (iproute2)"
MAILAUTH=${MAILAUTH:-}
case "$MAILAUTH" in "" | verify | sign) ;; *) die "MAILAUTH is verify, sign or empty" ;; esac
if [ "$MAILAUTH" = verify ]; then
  python3 -c 'import dkim' 2>/dev/null || { missing+=("python3 dkimpy"); pkgs+=(python3-dkim); }
fi
case "$RESTRICTIONS" in 0 | 1) ;; *) die "RESTRICTIONS is 0 or 1" ;; esac
if [ "$RESTRICTIONS" = 1 ]; then
  [ -z "$MAILAUTH" ] || die "RESTRICTIONS=1 and MAILAUTH are separate runs: set one of them"
  whole_numbers ACCESS_ENTRIES "$ACCESS_ENTRIES"
  [ "$ACCESS_ENTRIES" -ge 3 ] || die "ACCESS_ENTRIES: at least 3"
  case "$RS_MAILAUTH" in off | default) ;; *) die "RS_MAILAUTH is off or default" ;; esac
  if has postfix; then need unshare util-linux "unshare (util-linux)"; need mount mount; fi
fi
case "$MILTER" in
  "") ;;
  rspamd)
    { [ -z "$MAILAUTH" ] && [ "$RESTRICTIONS" = 0 ]; } || die "MILTER=rspamd is a run of its own: unset MAILAUTH and RESTRICTIONS"
    whole_numbers "RSPAMD_PORT/RSPAMD_COUNT" "$RSPAMD_PORT" "$RSPAMD_COUNT"
    case "$RSPAMD_SOCKET" in inet | unix) ;; *) die "RSPAMD_SOCKET is inet or unix" ;; esac
    case "$RSPAMD_DNS" in nxdomain | dead) ;; *) die "RSPAMD_DNS is nxdomain or dead" ;; esac
    need rspamd rspamd ;;
  *) die "MILTER is rspamd or empty" ;;
esac
need_cargo
missing_exit "for postfix choose \"No configuration\", its own service is not used"
need_root postfix Postfix
pigeonpost_bin

# ------------------------------------------------------------------ layout, leftovers
PF=$STATE/postfix; PP=$STATE/pigeonpost; TRASH=$STATE/trash
mkdir -p "$STATE" "$PP/mail" "$PP/queue" "$TRASH" || die "cannot create $STATE"
results_dir
chmod 755 "$STATE"
vmail_ids
DNS_PID=""
RSPAMD_PID="" RSPAMD_PIDS=""
# rspamd: SIGTERM to the main process, which stops its workers (SIGKILL would
# leave a worker listening); bounded, then SIGKILL to every pid of its tree
# shellcheck disable=SC2317  # called from the exit trap
stop_rspamd() {
  [ -n "$RSPAMD_PID" ] || return 0
  if kill -0 "$RSPAMD_PID" 2>/dev/null; then
    say "stopping rspamd (pid $RSPAMD_PID)"
    kill -TERM "$RSPAMD_PID" 2>/dev/null
    for _ in $(seq 150); do kill -0 "$RSPAMD_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  for p in $RSPAMD_PIDS; do
    kill -0 "$p" 2>/dev/null && { say "rspamd pid $p still alive after 15 s: SIGKILL"; kill -KILL "$p" 2>/dev/null; }
  done
  wait "$RSPAMD_PID" 2>/dev/null; RSPAMD_PID=""
  [ "$RSPAMD_SOCKET" = inet ] && port_busy "$RSPAMD_PORT" && say "WARNING: $ADDR:$RSPAMD_PORT still listening after rspamd stopped"
  return 0
}
stop_all() { if [ -n "$DNS_PID" ]; then kill "$DNS_PID" 2>/dev/null; fi; stop_postfix; stop_rspamd; }
PP_MYNETWORKS=127.0.0.0/8 PF_ENV=()
on_exit stop_all
stop_stale_pigeonpost

# ------------------------------------------------------------------ mail authentication
# A signing key for sender.example, its DNS (SPF, DKIM, DMARC p=reject), and
# for `verify` one message signed beforehand that every connection sends.
FROM=a@example.org MA_CONFIG=""
if [ -n "$MAILAUTH" ]; then
  KEYS=$STATE/keys
  rm -rf "$KEYS"; mkdir -p "$KEYS"
  "$PIGEONPOST_BIN" dkim keygen --domain sender.example --selector s1 --algorithm "${DKIM_ALG:-rsa}" \
    --dir "$KEYS" > /dev/null 2>&1 || die "pigeonpost dkim keygen failed"
  python3 - "$KEYS" <<'PY' || die "cannot write the DNS zone"
import json, sys
keys = sys.argv[1]
txt = open(keys + "/s1.txt").read()
zone = {
    "sender.example": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
    "s1._domainkey.sender.example": {"TXT": ["".join(txt.split('"')[1::2])]},
    "_dmarc.sender.example": {"TXT": ["v=DMARC1; p=reject"]},
}
json.dump(zone, open(keys + "/zone.json", "w"))
PY
  python3 "$LIB/fake_dns.py" --port 0 --zone "$KEYS/zone.json" > "$KEYS/dns.out" 2>&1 &
  DNS_PID=$!
  for _ in $(seq 1 50); do grep -q READY "$KEYS/dns.out" && break; sleep 0.1; done
  DNS_PORT=$(awk '/READY/{print $2}' "$KEYS/dns.out")
  [ -n "$DNS_PORT" ] || die "the DNS server did not start: $(cat "$KEYS/dns.out")"
  FROM=a@sender.example
  if [ "$MAILAUTH" = verify ]; then
    python3 - "$KEYS" "$SIZE" <<'PY' || die "cannot sign the benchmark message"
import dkim, sys
keys, size = sys.argv[1], int(sys.argv[2])
# Signed with CRLF line ends, as it goes over the wire (smtp-source -F
# sends each line of the file with CRLF); stored with LF for smtp-source.
lines = ["line %05d of the benchmark message, signed beforehand" % i for i in range(size // 53 + 1)]
msg = ("From: <a@sender.example>\r\nTo: <john@example.com>\r\nSubject: benchmark\r\n"
       "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench@sender.example>\r\n\r\n"
       + "".join(l + "\r\n" for l in lines)).encode()
sig = dkim.sign(msg, b"s1", b"sender.example", open(keys + "/s1.private", "rb").read(),
                canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
open(keys + "/signed.eml", "wb").write((sig + msg).replace(b"\r\n", b"\n"))
PY
    # smtp-source with the signed message: -F FILE, which refuses -l SIZE.
    cat > "$KEYS/smtp-source" <<EOS
#!/bin/bash
args=()
while [ \$# -gt 0 ]; do
  if [ "\$1" = -l ]; then shift 2; continue; fi
  args+=("\$1"); shift
done
exec $SMTP_SOURCE -F $KEYS/signed.eml "\${args[@]}"
EOS
    chmod +x "$KEYS/smtp-source"; SMTP_SOURCE=$KEYS/smtp-source
    MA_CONFIG="dns_servers = \"127.0.0.1:$DNS_PORT\"
# The benchmark clients are on 127.0.0.1, inside mynetworks: check them anyway.
mail_auth_mynetworks = true"
  else
    printf 's1._domainkey.sender.example sender.example:s1:%s/s1.private\n' "$KEYS" > "$KEYS/KeyTable"
    SIGN_CHECK="a=$( [ "${DKIM_ALG:-rsa}" = ed25519 ] && echo ed25519 || echo rsa)-sha256"
    printf '*@sender.example s1._domainkey.sender.example\n' > "$KEYS/SigningTable"
    MA_CONFIG="dkim_key_table = \"$KEYS/KeyTable\"
dkim_signing_table = \"refile:$KEYS/SigningTable\""
  fi
  say "mail authentication: $MAILAUTH (DNS on 127.0.0.1:$DNS_PORT, key $KEYS/s1.private)"
fi

# ------------------------------------------------------------------ restrictions (RESTRICTIONS=1)
# The same 8-entry smtpd_recipient_restrictions for both servers, two hash:
# access tables of ACCESS_ENTRIES lines, and a DNS list, with DNS from
# fake_dns.py on 127.0.0.1:53: pigeonpost gets dns_servers, Postfix (which
# has no such setting) a private resolv.conf in its own mount namespace. The
# clients (127.0.0.1) are outside mynetworks, so nothing short-circuits.
RS_CONFIG=""
if [ "$RESTRICTIONS" = 1 ]; then
  RS=$STATE/restrict
  rm -rf "$RS"; mkdir -p "$RS"; chmod 755 "$RS"
  RS_DNS_PORT=0; [ "$(id -u)" = 0 ] && RS_DNS_PORT=53   # resolv.conf cannot name a port
  if has postfix; then
    [ "$RS_DNS_PORT" = 53 ] || die "RESTRICTIONS=1 with Postfix needs root (DNS on port 53)"
    ss -lunH 2>/dev/null | awk '{print $4}' | grep -qx "$ADDR:53" && die "$ADDR:53 (udp) is in use: the DNS server for RESTRICTIONS=1 needs it"
  fi
  python3 - "$RS" "$ACCESS_ENTRIES" <<'PY' || die "cannot write the restriction tables"
import json, sys
rs, n = sys.argv[1], int(sys.argv[2])
mx = {"MX": ["10 mx.sender.example"]}
zone = {
    "sender.example": mx, "listed.example": mx, "sub.listed.example": mx,
    "mx.sender.example": {"A": ["127.0.0.1"]},
    # the client's names, as Postfix finds them in /etc/hosts
    "1.0.0.127.in-addr.arpa": {"PTR": ["localhost"]},
    "localhost": {"A": ["127.0.0.1"]},
    # a client whose verified name's parent domain is in the client table
    "4.0.0.127.in-addr.arpa": {"PTR": ["host1.dialup.bench.example"]},
    "host1.dialup.bench.example": {"A": ["127.0.0.4"]},
    # the DNS list: 127.0.0.2 is listed, the benchmark's client 127.0.0.1 is not
    "2.0.0.127.rbl.bench.example": {"A": ["127.0.0.2"], "TXT": ["listed by the benchmark's DNS list"]},
}
json.dump(zone, open(rs + "/zone.json", "w"), indent=1)
# Neither table matches the load (client localhost[127.0.0.1], sender
# a@sender.example): every lookup is a miss, as for most mail.
with open(rs + "/client_access", "w") as f:
    f.write("127.0.0.3 REJECT blocked by the benchmark's client table\n")
    f.write("dialup.bench.example REJECT dynamic address by name\n")
    for i in range(n - 2):
        if i % 3 == 2:
            f.write(f"host{i}.dialup.example REJECT dynamic address\n")
        else:
            f.write(f"10.{i // 250 % 256}.{i % 250} 554 5.7.1 network {i} refused\n")
with open(rs + "/sender_access", "w") as f:
    f.write("listed.example REJECT sender domain listed by the benchmark\n")
    f.write("bulk@ 550 5.7.1 no bulk senders\n")
    for i in range(n - 2):
        if i % 2:
            f.write(f"spammer{i}.example REJECT\n")
        else:
            f.write(f"user{i}@freemail{i % 97}.example 550 5.7.1 address {i} refused\n")
PY
  if has postfix; then   # before Postfix starts: an smtpd keeps a table it could not open
    mkdir -p "$RS/postmap"; printf 'compatibility_level = 3.6\n' > "$RS/postmap/main.cf"
    { postmap -c "$RS/postmap" "hash:$RS/client_access" && postmap -c "$RS/postmap" "hash:$RS/sender_access"; } \
      || die "postmap failed on $RS"
  fi
  printf 'nameserver %s\n' "$ADDR" > "$RS/resolv.conf"
  python3 "$LIB/fake_dns.py" --addr "$ADDR" --port "$RS_DNS_PORT" --zone "$RS/zone.json" --stats "$RS/dns-stats.json" \
    > "$RS/dns.out" 2>&1 &
  DNS_PID=$!
  for _ in $(seq 1 50); do grep -q READY "$RS/dns.out" && break; sleep 0.1; done
  RS_DNS_PORT=$(awk '/READY/{print $2}' "$RS/dns.out")
  [ -n "$RS_DNS_PORT" ] || die "the DNS server did not start: $(cat "$RS/dns.out")"
  FROM=a@sender.example PP_MYNETWORKS=192.0.2.0/24
  RS_LIST="reject_non_fqdn_sender, reject_non_fqdn_recipient, reject_unknown_sender_domain, check_client_access hash:$RS/client_access, check_sender_access hash:$RS/sender_access, reject_rbl_client rbl.bench.example, reject_unauth_destination, permit"
  RS_RELAY="permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
  cat > "$RS/postfix-main.cf" <<EOF
# bench/smtp RESTRICTIONS=1. The 127.0.0.1 clients are outside mynetworks.
# Postfix exempts \$mynetworks from the connection count limit, and the
# default run's clients are in it: no limit here either (as for pigeonpost).
smtpd_client_connection_count_limit = 0
smtpd_relay_restrictions = $RS_RELAY
smtpd_recipient_restrictions = $RS_LIST
EOF
  PF_ENV=(MYNETWORKS="$PP_MYNETWORKS" MAIN_CF_EXTRA="$RS/postfix-main.cf" RESOLV_CONF="$RS/resolv.conf")
  RS_CONFIG="# RESTRICTIONS=1: the same lists as Postfix gets ($RS/postfix-main.cf)
dns_servers = \"$ADDR:$RS_DNS_PORT\"
smtpd_relay_restrictions = \"$RS_RELAY\"
smtpd_recipient_restrictions = \"$RS_LIST\""
  if [ "$RS_MAILAUTH" = off ]; then
    # Outside mynetworks pigeonpost checks SPF and DMARC by default (report
    # mode: 3 TXT lookups and an Authentication-Results header per message);
    # Postfix without milters does not. Off, so both do the same work.
    RS_CONFIG="$RS_CONFIG
spf_policy = \"off\"
dmarc_policy = \"off\""
  fi
  say "restrictions: 8-entry smtpd_recipient_restrictions, access tables of $ACCESS_ENTRIES lines, DNS on $ADDR:$RS_DNS_PORT, mynetworks $PP_MYNETWORKS, sender $FROM, pigeonpost SPF/DMARC: $RS_MAILAUTH"
fi
# ------------------------------------------------------------------ rspamd as a milter (MILTER=rspamd)
# One rspamd for both servers, as tests/it/milter.rs runs it: the proxy worker
# in milter mode scanning itself (self_scan; RSPAMD_COUNT processes, 1 = what
# the package's normal worker count comes to on 2 CPUs), a private config
# (the package's modules and scores, $CONFDIR/common.conf), db/run/log dirs
# under $STATE/rspamd, no redis (the modules that need it stay off), DNS to a
# dead port (no lookup leaves the machine), milter_headers for every client
# (skip_local off) so that each stored copy carries rspamd's verdict.
MILTER_CONFIG=""
# rspamd_cpu: CPU ticks of rspamd's process tree so far (workers and the main process)
rspamd_cpu() {
  local p t=0 f
  [ -n "$RSPAMD_PID" ] || { echo 0; return; }
  for p in $(python3 "$LIB/common.py" tree-pids "$RSPAMD_PID"); do
    f=$(awk -v root="$([ "$p" = "$RSPAMD_PID" ] && echo 1)" '{sub(/.*\) /, ""); print $12 + $13 + (root ? $14 + $15 : 0)}' "/proc/$p/stat" 2>/dev/null)
    t=$((t + ${f:-0}))
  done
  echo "$t"
}
if [ "$MILTER" = rspamd ]; then
  RSP=$STATE/rspamd
  rm -rf "$RSP"; mkdir -p "$RSP/db" "$RSP/run" "$RSP/log" "$RSP/local.d"
  if [ "$RSPAMD_SOCKET" = unix ]; then
    RSPAMD_BIND="$RSP/run/milter.sock mode=0666" RSPAMD_MILTER="unix:$RSP/run/milter.sock"
    rspamd_up() { [ -S "$RSP/run/milter.sock" ]; }
  else
    port_busy "$RSPAMD_PORT" && die "$ADDR:$RSPAMD_PORT is in use (set RSPAMD_PORT=)"
    RSPAMD_BIND="$ADDR:$RSPAMD_PORT" RSPAMD_MILTER="inet:$ADDR:$RSPAMD_PORT"
    rspamd_up() { port_busy "$RSPAMD_PORT"; }
  fi
  if [ "$RSPAMD_DNS" = dead ]; then   # a UDP port nothing listens on
    RSPAMD_DNS_PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  else   # NXDOMAIN for everything, at once: no lookup leaves the machine, none waits
    echo '{}' > "$RSP/zone.json"
    python3 "$LIB/fake_dns.py" --port 0 --zone "$RSP/zone.json" --stats "$RSP/dns-stats.json" > "$RSP/dns.out" 2>&1 &
    DNS_PID=$!
    for _ in $(seq 50); do grep -q READY "$RSP/dns.out" && break; sleep 0.1; done
    RSPAMD_DNS_PORT=$(awk '/READY/{print $2}' "$RSP/dns.out")
    [ -n "$RSPAMD_DNS_PORT" ] || die "the DNS server did not start: $(cat "$RSP/dns.out")"
  fi
  cat > "$RSP/local.d/milter_headers.conf" <<'EOF'
# headers for every client, loopback included (milter_headers skips local
# and authenticated clients by default)
skip_local = false;
skip_authenticated = false;
use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "x-spam-status", "authentication-results"];
EOF
  cat > "$RSP/rspamd.conf" <<EOF
# Generated by bench/smtp/run.sh MILTER=rspamd
.include "\$CONFDIR/common.conf"
options {
    pidfile = "\$RUNDIR/rspamd.pid";
    .include "\$CONFDIR/options.inc"
    dns { nameserver = ["127.0.0.1:$RSPAMD_DNS_PORT"]; timeout = 1s; retransmits = 1; }
}
logging { type = "file"; filename = "$RSP/log/rspamd.log"; level = "error"; }
worker "rspamd_proxy" {
    bind_socket = "$RSPAMD_BIND";
    milter = yes;
    timeout = 120s;
    upstream "local" { default = yes; self_scan = yes; }
    count = $RSPAMD_COUNT;
    spam_header = "X-Spam";
    reject_message = "Spam message rejected";
}
EOF
  ( exec rspamd -f -i -c "$RSP/rspamd.conf" --var=DBDIR="$RSP/db" --var=RUNDIR="$RSP/run" \
      --var=LOGDIR="$RSP/log" --var=LOCAL_CONFDIR="$RSP" ) </dev/null > "$RSP/log/stdout.log" 2>&1 &
  RSPAMD_PID=$!
  for _ in $(seq 900); do   # bounded: 90 s (it compiles its regexps at start)
    kill -0 "$RSPAMD_PID" 2>/dev/null || { tail -20 "$RSP/log/stdout.log" "$RSP/log/rspamd.log" >&2; RSPAMD_PID=""; die "rspamd exited at start"; }
    rspamd_up && break
    sleep 0.1
  done
  rspamd_up || die "rspamd does not listen on $RSPAMD_MILTER after 90 s (log: $RSP/log/)"
  RSPAMD_PIDS=$(python3 "$LIB/common.py" tree-pids "$RSPAMD_PID" | tr '\n' ' ')
  say "rspamd $(rspamd --version 2>/dev/null | awk '{print $NF}') running, pid $RSPAMD_PID (tree: $RSPAMD_PIDS), milter on $RSPAMD_MILTER, DNS: $RSPAMD_DNS on 127.0.0.1:$RSPAMD_DNS_PORT"
  cat > "$RSP/postfix-main.cf" <<EOF
# bench/smtp MILTER=rspamd
smtpd_milters = $RSPAMD_MILTER
milter_default_action = tempfail
EOF
  PF_ENV=(MAIN_CF_EXTRA="$RSP/postfix-main.cf")
  MILTER_CONFIG="# MILTER=rspamd: the same keys as Postfix gets ($RSP/postfix-main.cf)
smtpd_milters = \"$RSPAMD_MILTER\"
milter_default_action = \"tempfail\""
fi
# dns_stats: "queries cpu-ticks" of the restriction DNS server so far
dns_stats() {
  local q=0 t=0
  local st=""
  [ "$RESTRICTIONS" = 1 ] && st=$RS/dns-stats.json
  [ "$MILTER" = rspamd ] && [ "$RSPAMD_DNS" = nxdomain ] && st=$RSP/dns-stats.json
  if [ -n "$st" ] && kill -0 "$DNS_PID" 2>/dev/null; then
    rm -f "$st"; kill -USR1 "$DNS_PID"
    for _ in $(seq 50); do [ -s "$st" ] && break; sleep 0.02; done
    q=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1])).values()))' "$st" 2>/dev/null || echo 0)
    t=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$DNS_PID/stat")
  fi
  echo "$q $t"
}

# ------------------------------------------------------------------ start Postfix
if has postfix; then
  start_postfix DELIVERY=virtual "${PF_ENV[@]}"
  say "Postfix $(postconf -d -h mail_version 2>/dev/null) running, master pid $PF_PID, $ADDR:$PF_PORT, mail in $PF/mail"
fi

# ------------------------------------------------------------------ start pigeonpost
if has pigeonpost; then
  write_vmail_maps "$PP"
  cat > "$PP/pigeonpost.toml" <<EOF
# Generated by bench/smtp/run.sh -- the HOWTO's virtual delivery, as Postfix
# gets it in bench/lib/start-postfix.sh. Loopback only, SMTP only.
myhostname = "mail.example.com"
mydomain = "example.com"
myorigin = "\$mydomain"
inet_interfaces = "$ADDR"
mydestination = "\$myhostname, localhost.\$mydomain, localhost"
mynetworks = "$PP_MYNETWORKS"
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
$MA_CONFIG
$RS_CONFIG
$MILTER_CONFIG

$(pp_listen smtp="$ADDR:$PP_PORT")
EOF
  check_pp_config
  start_pigeonpost
  say_pigeonpost_running
fi

# ------------------------------------------------------------------ one measured run
# mv (never rm) the mailboxes aside: on a journal-less ext4, mass deletion
# slows every file create for the next 60-360 s (see bench/README.md).
clear_cmd() { # server mailroot
  # shellcheck disable=SC2016  # $u and $d are the command's own variables
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
  local dns0 dns1 rsp0 rsp1
  dns0=$(dns_stats); rsp0=$(rspamd_cpu)
  HOST=$ADDR SMTP_PORT=$port COUNT=$COUNT SIZE=$SIZE CONC=$c RUNS=1 SETTLE=$SETTLE TIMEOUT=$TIMEOUT \
    FROM=$FROM TO=john@example.com MAILDIR=$mail/example.com/john/new CLEAR_CMD="$(clear_cmd "$s" "$mail")$extra" \
    SERVER_PIDS="$pids" SAMPLE_EVERY=0.25 PROBES=$PROBES PROBE_GAP=$PROBE_GAP \
    PROBE_TO=bob@example.com PROBE_MAILDIR=$mail/example.com/bob/new SMTP_SOURCE=$SMTP_SOURCE \
    JSON_OUT=$one "$LIB/smtp_load.sh" >> "$R/${s}_c$c.log" 2>&1
  rsp1=$(rspamd_cpu); dns1=$(dns_stats)
  local dns_fields=()
  { [ "$RESTRICTIONS" = 1 ] || { [ "$MILTER" = rspamd ] && [ "$RSPAMD_DNS" = nxdomain ]; }; } && dns_fields=(dns_queries:int="$(( ${dns1% *} - ${dns0% *} ))"
    dns_cpu_s:float="$(awk -v a="${dns0#* }" -v b="${dns1#* }" -v hz="$(getconf CLK_TCK)" 'BEGIN{print (b - a) / hz}')")
  if [ "$MILTER" = rspamd ]; then
    # rspamd's CPU in this run, and how many stored copies carry its verdict (not timed)
    local scanned clean
    scanned=$(grep -l -s '^X-Spamd-Result: ' "$mail/example.com/john/new/"* | wc -l)
    clean=$(grep -l -s '^X-Spam-Status: No' "$mail/example.com/john/new/"* | wc -l)
    dns_fields+=(rspamd_cpu_s:float="$(awk -v a="$rsp0" -v b="$rsp1" -v hz="$(getconf CLK_TCK)" 'BEGIN{print (b - a) / hz}')"
      rspamd_scanned:int="$scanned" rspamd_clean:int="$clean")
  fi
  local hwm=null rss=null
  if [ "$s" = pigeonpost ] && [ -r "/proc/$PP_PID/status" ]; then
    hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$PP_PID/status"); rss=$(awk '/^VmRSS:/{print $2}' "/proc/$PP_PID/status")
  fi
  if [ -s "$one" ]; then
    python3 "$LIB/common.py" fields "$one" server="$s" conc:int="$c" run:int="$i" count:int="$COUNT" \
      pp_vmhwm_kb:int="$hwm" pp_rss_after_kb:int="$rss" "${dns_fields[@]}" >> "$R/${s}_c$c.jsonl"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1].splitlines()[-1]); print("   stored %s/%s, e2e %s msg/s, accept %s msg/s, probe accept p50 %s ms, server cpu %s s" % (r.get("stored"), sys.argv[2], r.get("e2e_rate"), r.get("accept_rate"), r.get("probe_accept_p50_ms"), r.get("server_cpu_s")))' "$(cat "$one")" "$COUNT"
    [ "$hwm" != null ] && echo "   pigeonpost peak RSS $((hwm / 1024)) MB"
    [ "${#dns_fields[@]}" -gt 0 ] && echo "   DNS server: $(( ${dns1% *} - ${dns0% *} )) queries"
    [ "$MILTER" = rspamd ] && echo "   rspamd: cpu $(awk -v a="$rsp0" -v b="$rsp1" -v hz="$(getconf CLK_TCK)" 'BEGIN{print (b - a) / hz}') s; stored copies with its verdict $scanned, of them X-Spam-Status: No $clean"
  else
    say "  no result (see $R/${s}_c$c.log)"; tail -3 "$R/${s}_c$c.log" | sed 's/^/   /'
  fi
  if [ "$RESTRICTIONS" = 1 ] || [ -n "$MILTER" ]; then
    # every message must have passed the restrictions (or the milter): fail loudly otherwise
    local got what=restrictions
    [ -n "$MILTER" ] && what=$MILTER
    got=$(python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(r.get("stored") if r.get("smtp_source_rc") == 0 else -1)' "$one" 2>/dev/null || echo -1)
    if [ "$MILTER" = rspamd ] && [ "$got" = "$COUNT" ] && { [ "$scanned" -lt "$COUNT" ] || [ "$clean" -lt "$COUNT" ]; }; then
      grep -h '^X-Spamd-Result: ' -A3 "$mail/example.com/john/new/"* 2>/dev/null | head -8 | sed 's/^/   /'
      die "rspamd: $s stored $COUNT messages, $scanned with rspamd's X-Spamd-Result header and $clean with X-Spam-Status: No (want $COUNT each)"
    fi
    if [ "$got" != "$COUNT" ]; then
      say "${what^^} FAILED: $s stored ${got/#-1/?} of $COUNT messages (or smtp-source failed); its log:"
      tail -5 "$R/${s}_c$c.log" | sed 's/^/   /'
      if [ "$s" = postfix ]; then grep -E 'reject|warning' "$PF/log/postfix.log" | tail -5 | sed 's/^/   /'
      else grep -iE 'WARN|ERROR|reject' "$PP/pigeonpost.log" | tail -5 | sed 's/^/   /'; fi
      [ "$MILTER" = rspamd ] && tail -5 "$RSP/log/rspamd.log" 2>/dev/null | sed 's/^/   rspamd: /'
      die "$what rejected or lost mail: $s stored ${got/#-1/?} of $COUNT"
    fi
  fi
  rm -f "$one"
}

python3 "$LIB/common.py" meta "$R/meta.json" count:int="$COUNT" size:int="$SIZE" runs:int="$RUNS" settle:int="$SETTLE" \
  concs="$CONCS" servers="$SERVERS"
{ env_txt; echo "COUNT=$COUNT SIZE=$SIZE RUNS=$RUNS SETTLE=$SETTLE CONCS=$CONCS PROBES=$PROBES RESTRICTIONS=$RESTRICTIONS${RS+ ACCESS_ENTRIES=$ACCESS_ENTRIES RS_MAILAUTH=$RS_MAILAUTH} MILTER=$MILTER${RSP+ RSPAMD_COUNT=$RSPAMD_COUNT RSPAMD_SOCKET=$RSPAMD_SOCKET RSPAMD_DNS=$RSPAMD_DNS}"; [ "$MILTER" = rspamd ] && echo "rspamd: $(rspamd --version 2>/dev/null | head -1)"; } > "$R/env.txt"

if [ "$RESTRICTIONS" = 1 ]; then
  rc_args=(); has postfix && rc_args+=("postfix=$PF_PORT"); has pigeonpost && rc_args+=("pigeonpost=$PP_PORT")
  say "restriction replies, the same cases to each server (no mail sent):"
  python3 "$LIB/restrict_check.py" "${rc_args[@]}" > "$R/restrict_check.md"; rc=$?
  sed 's/^/   /' "$R/restrict_check.md"
  [ "$rc" = 0 ] || die "the load's MAIL FROM/RCPT TO is not accepted by every server (see above)"
fi

if [ "$MILTER" = rspamd ]; then
  # rspamd's verdict on one message of the load, through each server, before the runs
  say "rspamd's verdict on one message of the load (smtp-source -m 1), through each server:"
  for s in $SERVERS; do
    if [ "$s" = postfix ]; then port=$PF_PORT; mail=$PF/mail; else port=$PP_PORT; mail=$PP/mail; fi
    eval "$(clear_cmd "$s" "$mail")"
    timeout 60 "$SMTP_SOURCE" -l "$SIZE" -m 1 -s 1 -f "$FROM" -t john@example.com "$ADDR:$port" > "$R/sample_$s.out" 2>&1 \
      || { cat "$R/sample_$s.out"; die "$s did not accept the sample message (rspamd refusing it?)"; }
    f=""
    for _ in $(seq 100); do f=$(find "$mail/example.com/john/new" -type f 2>/dev/null | head -1); [ -n "$f" ] && break; sleep 0.1; done
    [ -n "$f" ] || die "$s: the sample message was not stored within 10 s"
    cp "$f" "$R/sample_$s.eml"
    echo "   $s:"; grep -E -A4 '^X-Spamd-Result:' "$f" | grep -E '^(X-Spamd-Result|[[:space:]])' | sed 's/^/     /'
    grep -E '^X-Spam-Status:' "$f" | sed 's/^/     /'
    grep -q '^X-Spam-Status: No' "$f" || die "$s: rspamd's verdict on the load's message is not 'No' (see $R/sample_$s.eml)"
  done
fi

# ------------------------------------------------------------------ the disk's ceiling
# fsync_limit -t c -D in the Maildirs' file system, right before each run's
# servers: what c writers that each make one 5 KiB file durable at a time can
# do at most. Its files go to the trash like the mailboxes (deleting them
# would slow the next run's file creation).
FSYNC_LIMIT=""
if [ "$CEILING" = 1 ]; then
  FSYNC_LIMIT=$STATE/fsync_limit
  cc -O2 -pthread -o "$FSYNC_LIMIT" "$LIB/fsync_limit.c" 2>"$R/fsync_limit.build" \
    || die "cannot build bench/lib/fsync_limit.c (need cc): $(cat "$R/fsync_limit.build")"
fi
ceiling() {
  local c=$1 i=$2 d=$STATE/fsync_test out
  rm -rf "$d"
  say "disk ceiling: fsync_limit -t $c -D, ${CEILING_SECS}s, run $i/$RUNS"
  out=$(timeout $((CEILING_SECS + 60)) "$FSYNC_LIMIT" -d "$d" -t "$c" -s "$CEILING_SECS" -n 100000 -b "$SIZE" -D -k 2>&1)
  echo "   $out"
  [ -d "$d" ] && mv "$d" "$TRASH/fsync_test.$(date +%s%N)"
  python3 - "$out" "$c" "$i" >> "$R/ceiling_c$c.jsonl" <<'PY' || say "  no ceiling figure (see above)"
import json, re, sys
out, c, i = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = re.search(r"rate=([0-9.]+) ops/s p50=([0-9.]+) ms p99=([0-9.]+) ms", out)
if not m:
    sys.exit(1)
print(json.dumps({"conc": c, "run": i, "rate": float(m[1]), "p50_ms": float(m[2]), "p99_ms": float(m[3])}))
PY
  sleep 2   # let the journal settle before the servers' run
}

T0=$(date +%s)
for c in $CONCS; do
  for i in $(seq 1 "$RUNS"); do
    [ -n "$FSYNC_LIMIT" ] && ceiling "$c" "$i"
    for s in $SERVERS; do measure "$s" "$c" "$i"; done
  done
done
say "measured runs done in $(( $(date +%s) - T0 )) s"
if [ -n "$MAILAUTH" ] && has pigeonpost; then
  # The last run's copies: did pigeonpost really verify (or sign) them?
  f=$(find "$PP/mail/example.com/john/new" -type f | head -1)
  if [ "$MAILAUTH" = verify ]; then want="dkim=pass"; else want="$SIGN_CHECK"; fi
  if [ -n "$f" ] && grep -q "$want" "$f"; then
    say "mail authentication check: stored copies carry '$want'"
  else
    say "mail authentication check FAILED: no '$want' in ${f:-(no file)}"
  fi
  [ "$MAILAUTH" = verify ] && [ -n "$f" ] && grep -A3 '^Authentication-Results:' "$f" | sed 's/^/   /'
fi

# ------------------------------------------------------------------ durability check (strace)
# Not timed: counts the syscalls that make a message durable, per message.
if [ "$FSYNC_CHECK" = 1 ] && command -v strace >/dev/null; then
  N=300
  for s in $SERVERS; do
    if [ "$s" = postfix ]; then
      # every process of the Postfix tree now, plus (-f) every child forked later
      port=$PF_PORT; mail=$PF/mail; pids=$(python3 "$LIB/common.py" tree-pids "$PF_PID")
    else
      port=$PP_PORT; mail=$PP/mail; pids=$PP_PID
    fi
    sopts=(); for p in $pids; do sopts+=(-p "$p"); done
    eval "$(clear_cmd "$s" "$mail")"
    timeout 120 strace -f -c -o "$R/strace_$s.txt" -e trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2,link,linkat,unlink,unlinkat "${sopts[@]}" 2>/dev/null &
    spid=$!; sleep 1.5
    timeout 120 "$SMTP_SOURCE" -l "$SIZE" -m "$N" -s 20 -f "$FROM" -t john@example.com "$ADDR:$port" >/dev/null 2>&1
    # shellcheck disable=SC2012  # Maildir file names are plain
    for _ in $(seq 300); do [ "$(ls "$mail/example.com/john/new" 2>/dev/null | wc -l)" -ge "$N" ] && break; sleep 0.1; done
    # shellcheck disable=SC2012
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
  sample=$(find "$PP/mail/example.com/john/new" -type f 2>/dev/null | head -1)
  [ -n "$sample" ] && echo "sample pigeonpost message: $(stat -c '%s bytes, owner %u:%g, mode %a' "$sample")" >> "$R/env.txt"
fi
PP_LOG0=0   # pigeonpost's warnings of the whole log, not only of this run
report_log_warnings
report smtp_table.py "SMTP -> Maildir"
exit 0
