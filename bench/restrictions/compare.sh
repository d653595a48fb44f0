#!/bin/bash
# compare.sh -- the same smtpd_*_restrictions block, tables and SMTP
# conversations against Postfix (Debian's package) and pigeonpost, side by
# side; every reply must be the same. Needs root (Postfix's master) and
# network DNS for the two DNS cases (.invalid names, answered NXDOMAIN by
# any resolver).
#
#   sudo bench/restrictions/compare.sh             # release build of this checkout
#   sudo PIGEONPOST_BIN=target/debug/pigeonpost bench/restrictions/compare.sh
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=$ROOT/bench/lib
STATE=${STATE:-/tmp/pp-restrictions}
PF_PORT=${POSTFIX_PORT:-4735}
PP_PORT=${PIGEONPOST_PORT:-4736}
PP_HTTP=${PIGEONPOST_HTTP_PORT:-4737}
PF=$STATE/postfix
PP=$STATE/pigeonpost
SERVERS="postfix pigeonpost"
# shellcheck source=../lib/common.sh
. "$LIB/common.sh"

[ "$(id -u)" = 0 ] || die "run as root (Postfix's master drops privileges itself)"
pigeonpost_bin
results_dir
vmail_ids
trap 'PEERS=$PF SMTP_PORT=$PF_PORT "$LIB/stop-postfix.sh" >/dev/null 2>&1; stop_pigeonpost' EXIT

# The restriction block, in main.cf syntax, for both servers. The load's
# clients come from 127.0.0.3 and .4: mynetworks is 127.0.0.1/32 only.
RESTRICTIONS=(
  "smtpd_restriction_classes = slow_senders"
  "slow_senders = defer_if_permit"
  "smtpd_client_restrictions = permit_mynetworks, check_client_access cidr:TABLES/access.cidr"
  "smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname"
  "smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access regexp:TABLES/sender.re, check_sender_access hash:TABLES/sender_access, reject_unknown_sender_domain, reject_multi_recipient_bounce"
  "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
  "smtpd_recipient_restrictions = reject_non_fqdn_recipient, check_recipient_access hash:TABLES/rcpt_access"
  "smtpd_data_restrictions = reject_unauth_pipelining"
)
tables() { # dir
  mkdir -p "$1"
  printf '127.0.0.3 REJECT go away\n127.0.0.0/8 DUNNO\n' > "$1/access.cidr"
  printf '/^spammer@/ REJECT no spammers here\n/^discard@/ DISCARD\n' > "$1/sender.re"
  printf 'blocked.example REJECT\nslow@example.com slow_senders\nrej@example.com reject\ndef@example.com defer\nwarn@example.com warn_if_reject reject\nhold@example.com HOLD\n' > "$1/sender_access"
  printf 'bob@example.com 550 5.7.1 Bob takes no mail today\n' > "$1/rcpt_access"
}

# Postfix: the bench's private instance (accept-only: mail goes to HOLD), then the block.
start_postfix DELIVERY=hold MYNETWORKS=127.0.0.1/32
PFX_CONF=$PF/etc/postfix
tables "$PFX_CONF/tables"
postmap -c "$PFX_CONF" "$PFX_CONF/tables/sender_access" "$PFX_CONF/tables/rcpt_access"
for line in "${RESTRICTIONS[@]}"; do
  postconf -c "$PFX_CONF" -e "${line//TABLES/$PFX_CONF/tables}"
done
# The hold mode's end-of-data restriction stays; it does not change replies.
postfix -c "$PFX_CONF" reload >/dev/null 2>&1
sleep 1

# pigeonpost: the same keys.
rm -rf "$PP"; mkdir -p "$PP/mail" "$PP/queue"
tables "$PP/tables"
write_vmail_maps "$PP"
chown -R "$VUID:$VGID" "$PP/mail"
{
  cat <<EOC
myhostname = "mail.example.com"
mydomain = "example.com"
myorigin = "\$mydomain"
mydestination = "\$myhostname, localhost.\$mydomain, localhost"
mynetworks = "127.0.0.1/32"
virtual_mailbox_domains = "example.com"
virtual_mailbox_base = "$PP/mail"
virtual_mailbox_maps = "hash:$PP/vmailbox"
virtual_alias_maps = "hash:$PP/virtual"
virtual_uid_maps = "static:$VUID"
virtual_gid_maps = "static:$VGID"
alias_maps = ""
recipient_delimiter = "+"
queue_directory = "$PP/queue"
spf_policy = "off"
dmarc_policy = "off"
EOC
  for line in "${RESTRICTIONS[@]}"; do
    key=${line%% = *}; value=${line#* = }
    printf '%s = "%s"\n' "$key" "${value//TABLES/$PP/tables}"
  done
  pp_listen "smtp=$ADDR:$PP_PORT"
} > "$PP/pigeonpost.toml"
check_pp_config
PP_GREETING="220 " PP_BYE="QUIT" PP_WHAT="the SMTP server" start_pigeonpost

say "comparing replies: Postfix on $PF_PORT, pigeonpost on $PP_PORT (results in $R)"
python3 "$LIB/restrictions_compare.py" "$PF_PORT" "$PP_PORT" | tee "$R/compare.txt"
