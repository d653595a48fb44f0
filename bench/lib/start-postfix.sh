#!/bin/bash
# start-postfix.sh -- build (from scratch) and start a loopback-only Postfix
# configured like the CentOS virtual-mailbox HOWTO (virtual(8) writes Maildirs),
# with all state under $PEERS.
#
# Adapted from the project's reference setup (shared/bench/start-reference.sh,
# "build and start the loopback-only Postfix + Dovecot reference deployment"),
# reused here with permission of its authors (this project). Trimmed for the
# SMTP benchmark: Postfix only, no Dovecot (so no SASL / submission port; the
# benchmark only uses port $SMTP_PORT), state dir and port parameterised.
#
# Idempotent: (re)generates all config under $PEERS/etc every time, creates
# missing users/dirs/certs, starts Postfix if it is not running, otherwise
# reloads it.
#
# Env:
#   PEERS=/tmp/pp-bench/postfix   root of everything
#   SMTP_PORT=4525                the smtpd listener (127.0.0.1 only)
#   DELIVERY=virtual  (default) Postfix virtual(8) writes the Maildir (the HOWTO setup)
#   DELIVERY=hold     accept-only: everything arriving is put on the HOLD queue
#   DELIVERY=relay    outbound: everything goes to relayhost [127.0.0.1]:$RELAY_PORT
#   RELAY_PORT=4625   (DELIVERY=relay) where the smtp(8) client delivers
#   VMAIL_UID=5000 VMAIL_GID=5000   owner of the virtual mailboxes
#   MYNETWORKS=127.0.0.0/8        mynetworks (bench/abuse: 127.0.0.1/32, so that its
#                                 attackers on other 127.x addresses are outsiders)
#   SUBMISSION_PORT= SUBMISSIONS_PORT=  when set, also submission (STARTTLS required)
#                                 and submissions (implicit TLS) listeners on 127.0.0.1
#                                 with SASL AUTH through Dovecot (smtpd_sasl_type =
#                                 dovecot, smtpd_sasl_path = private/auth: the Dovecot
#                                 of start-dovecot.sh with SASL_SOCKET=$QUEUE/private/auth),
#                                 as in Debian's master.cf; off by default
#   MAIN_CF_EXTRA=file            "name = value" lines set in the generated main.cf with
#                                 postconf -e (one line each, # comments skipped), e.g.
#                                 bench/smtp's RESTRICTIONS=1 restriction lists
#   RESOLV_CONF=file              the master (and so every smtpd) runs in a private
#                                 mount namespace where this file is bind-mounted over
#                                 /etc/resolv.conf (unshare -m): Postfix has no DNS
#                                 server setting of its own, and the host's resolv.conf
#                                 stays untouched. Needs unshare(1) and mount(8).
set -euo pipefail

PEERS=${PEERS:-/tmp/pp-bench/postfix}
DELIVERY=${DELIVERY:-virtual}
SMTP_PORT=${SMTP_PORT:-4525}
VMAIL_UID=${VMAIL_UID:-5000}
VMAIL_GID=${VMAIL_GID:-5000}
ADDR=127.0.0.1

ETC=$PEERS/etc
PFX_CONF=$ETC/postfix
SSL=$ETC/ssl
QUEUE=$PEERS/spool/postfix
PFX_DATA=$PEERS/lib/postfix
MAIL=$PEERS/mail
PIDS=$PEERS/run
LOG=$PEERS/log

RELAY_PORT=${RELAY_PORT:-4625}
MYNETWORKS=${MYNETWORKS:-127.0.0.0/8}
SUBMISSION_PORT=${SUBMISSION_PORT:-}
SUBMISSIONS_PORT=${SUBMISSIONS_PORT:-}
MAIN_CF_EXTRA=${MAIN_CF_EXTRA:-}
RESOLV_CONF=${RESOLV_CONF:-}
case "$DELIVERY" in virtual|hold|relay) ;; *) echo "DELIVERY must be virtual|hold|relay" >&2; exit 2;; esac
[ "$(id -u)" = 0 ] || { echo "start-postfix: must run as root (the Postfix master drops privileges itself)" >&2; exit 1; }
command -v postfix >/dev/null || { echo "start-postfix: postfix not installed (apt-get install postfix)" >&2; exit 1; }

log() { echo "[start-postfix] $*"; }

# ---------------------------------------------------------------- vmail user
if ! getent group "$VMAIL_GID" >/dev/null; then groupadd -g "$VMAIL_GID" vmail; fi
if ! getent passwd "$VMAIL_UID" >/dev/null; then
  useradd -u "$VMAIL_UID" -g "$VMAIL_GID" -d "$MAIL" -M -s /usr/sbin/nologin -c "virtual mail" vmail
fi

# ---------------------------------------------------------------- dirs
mkdir -p "$PFX_CONF" "$SSL" "$QUEUE" "$PFX_DATA" "$MAIL" "$PIDS" "$LOG"
chmod 755 "$PEERS" "$(dirname "$PEERS")" "$ETC" "$PEERS/spool" "$PEERS/lib" "$PIDS" "$LOG"
chown root:root "$QUEUE" && chmod 755 "$QUEUE"
chown postfix:postfix "$PFX_DATA" && chmod 700 "$PFX_DATA"
chown "$VMAIL_UID:$VMAIL_GID" "$MAIL" && chmod 770 "$MAIL"

# ---------------------------------------------------------------- TLS cert (self-signed; STARTTLS is offered, smtp-source does not use it)
if [ ! -s "$SSL/cert.pem" ] || [ ! -s "$SSL/key.pem" ]; then
  if command -v openssl >/dev/null; then
    log "creating self-signed certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
      -subj "/CN=mail.example.com" -addext "subjectAltName=DNS:mail.example.com,DNS:localhost,IP:127.0.0.1" \
      -keyout "$SSL/key.pem" -out "$SSL/cert.pem" 2>/dev/null
  fi
fi
TLS_LEVEL=none
if [ -s "$SSL/cert.pem" ]; then
  TLS_LEVEL=may
  chmod 644 "$SSL/cert.pem"; chmod 600 "$SSL/key.pem"; chown root:root "$SSL"/*.pem
fi

# ---------------------------------------------------------------- Postfix
cat > "$PFX_CONF/main.cf" <<EOC
# Benchmark Postfix config (CentOS virtual-mailbox HOWTO style), loopback only.
# Generated by bench/lib/start-postfix.sh (DELIVERY=$DELIVERY) -- do not edit.
compatibility_level = 3.6
queue_directory = $QUEUE
data_directory = $PFX_DATA
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = /var, /dev/stdout, $LOG
maillog_file = $LOG/postfix.log

myhostname = mail.example.com
mydomain = example.com
myorigin = \$mydomain
mydestination = \$myhostname, localhost.\$mydomain, localhost
inet_interfaces = $ADDR
inet_protocols = ipv4
mynetworks_style = host
mynetworks = $MYNETWORKS
relay_domains =
alias_maps = hash:$PFX_CONF/aliases
alias_database = hash:$PFX_CONF/aliases
biff = no
append_dot_mydomain = no
recipient_delimiter = +
smtpd_banner = \$myhostname ESMTP

# --- virtual mailbox domain (the HOWTO part)
virtual_mailbox_domains = example.com
virtual_mailbox_base = $MAIL
virtual_mailbox_maps = hash:$PFX_CONF/vmailbox
virtual_alias_maps = hash:$PFX_CONF/virtual
virtual_minimum_uid = 100
virtual_uid_maps = static:$VMAIL_UID
virtual_gid_maps = static:$VMAIL_GID
virtual_transport = virtual

# --- loopback-only safety: nothing ever leaves this host.
relayhost = [127.0.0.1]:9
defer_transports = smtp, relay
smtp_dns_support_level = disabled

# --- TLS (self-signed)
smtpd_tls_cert_file = $SSL/cert.pem
smtpd_tls_key_file = $SSL/key.pem
smtpd_tls_security_level = $TLS_LEVEL
smtpd_tls_loglevel = 0
smtp_tls_security_level = none

smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
EOC
if [ "$DELIVERY" = relay ]; then
  # Later settings win in main.cf: relay everything to the local sink.
  cat >> "$PFX_CONF/main.cf" <<EOC

# --- DELIVERY=relay: outbound benchmark (mail for remote domains goes to a local sink)
relayhost = [127.0.0.1]:$RELAY_PORT
defer_transports =
EOC
fi
if [ "$DELIVERY" = hold ]; then
  cat >> "$PFX_CONF/main.cf" <<EOC

# --- DELIVERY=hold: accept-only benchmark mode (everything goes to the HOLD queue)
smtpd_end_of_data_restrictions = check_client_access static:HOLD
EOC
fi

if [ -n "$MAIN_CF_EXTRA" ]; then
  # postconf -e: replaced in place (a second entry would be warned about by every process)
  grep -vE '^[[:space:]]*(#|$)' "$MAIN_CF_EXTRA" | while IFS= read -r line; do
    postconf -c "$PFX_CONF" -e "$line"
  done
fi

if [ -n "$SUBMISSION_PORT$SUBMISSIONS_PORT" ]; then
  cat >> "$PFX_CONF/main.cf" <<EOC

# --- SUBMISSION_PORT / SUBMISSIONS_PORT: SASL AUTH through Dovecot (enabled per listener in master.cf)
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
EOC
fi

cat > "$PFX_CONF/master.cf" <<EOC
# Generated by bench/lib/start-postfix.sh -- do not edit.
# service type  private unpriv  chroot  wakeup  maxproc command + args
$ADDR:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOC
# submission listeners as in Debian's master.cf (commented out there)
if [ -n "$SUBMISSION_PORT" ]; then
  cat >> "$PFX_CONF/master.cf" <<EOC
$ADDR:$SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
EOC
fi
if [ -n "$SUBMISSIONS_PORT" ]; then
  cat >> "$PFX_CONF/master.cf" <<EOC
$ADDR:$SUBMISSIONS_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
EOC
fi

# maps (the same mailboxes pigeonpost gets in bench/smtp/run.sh: common.sh)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
write_vmail_maps "$PFX_CONF"
cat > "$PFX_CONF/aliases" <<EOC
postmaster: root
MAILER-DAEMON: postmaster
EOC
postmap -c "$PFX_CONF" "hash:$PFX_CONF/vmailbox"
postmap -c "$PFX_CONF" "hash:$PFX_CONF/virtual"
postalias -c "$PFX_CONF" "hash:$PFX_CONF/aliases"
postfix -c "$PFX_CONF" check

# ---------------------------------------------------------------- start / reload
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

PFX_PID=$(sed -n '1{s/ //g;p}' "$QUEUE/pid/master.pid" 2>/dev/null || true)
if pid_alive "$PFX_PID" && [ "$(cat /proc/$PFX_PID/comm 2>/dev/null)" = master ]; then
  log "postfix already running (pid $PFX_PID): reload"
  postfix -c "$PFX_CONF" reload </dev/null >>"$LOG/start.log" 2>&1
else
  log "starting postfix"
  # daemons must not inherit our stdout/stderr (callers may be reading a pipe)
  if [ -n "$RESOLV_CONF" ]; then
    [ -r "$RESOLV_CONF" ] || { echo "start-postfix: RESOLV_CONF=$RESOLV_CONF is not readable" >&2; exit 1; }
    log "master in a private mount namespace with $RESOLV_CONF as /etc/resolv.conf"
    # shellcheck disable=SC2016  # expanded by the inner shell
    unshare --mount --propagation private sh -c 'mount --bind "$1" /etc/resolv.conf && exec postfix -c "$2" start' \
      sh "$RESOLV_CONF" "$PFX_CONF" </dev/null >>"$LOG/start.log" 2>&1 || { tail -5 "$LOG/start.log" >&2; exit 1; }
  else
    postfix -c "$PFX_CONF" start </dev/null >>"$LOG/start.log" 2>&1 || { tail -5 "$LOG/start.log" >&2; exit 1; }
  fi
  PFX_PID=$(sed -n '1{s/ //g;p}' "$QUEUE/pid/master.pid")
fi
echo "$PFX_PID" > "$PIDS/postfix.pid"

# wait until the port answers (bounded: 10 s)
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/$ADDR/$SMTP_PORT) 2>/dev/null && break
  sleep 0.1
done
(exec 3<>/dev/tcp/$ADDR/$SMTP_PORT) 2>/dev/null || { echo "start-postfix: nothing listening on $ADDR:$SMTP_PORT after 10 s (see $LOG)" >&2; exit 1; }
log "running: postfix master pid $PFX_PID on $ADDR:$SMTP_PORT, DELIVERY=$DELIVERY, state $PEERS"
