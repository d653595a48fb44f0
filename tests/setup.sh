#!/usr/bin/env bash
# Installs the real clients and peers the tests talk to, so that `tests/run.sh`
# passes on a fresh Debian machine. Safe to run again: it installs only what
# is missing. Used by the README's test command and by .ci/run.
#
#   dovecot-core        `doveadm pw` cross-checks our password hashes (tests/it/auth.rs);
#                       `doveconf -n` checks the dovecot.conf reader (tests/it/import.rs)
#   postfix             `postconf -n` checks the main.cf reader (tests/it/import.rs)
#   swaks               a real SMTP client (tests/it/smtp.rs)
#   fetchmail           a real POP3 client (tests/it/pop3.rs)
#   isync, curl         real IMAP clients (tests/it/imap.rs); curl also fetches
#                       the client autoconfiguration (tests/it/autoconfig.rs)
#   libxml2-utils       xmllint: Thunderbird's autoconfig format check (tests/it/autoconfig.rs)
#   neomutt             a real CONDSTORE/QRESYNC client (tests/it/imap.rs)
#   python3 + aiosmtpd  the receiving SMTP server of the queue tests (tests/peers)
#   dkimpy, pyspf, dnspython, PyNaCl, authres
#                       DKIM/ARC and SPF oracles of the mail-authentication tests
#   opendkim-tools      opendkim-genkey, for keys made the OpenDKIM way
#   opendkim            a real signing milter (tests/it/milter.rs)
#   postgrey, postfix-policyd-spf-python
#                       real policy services (tests/it/restrict.rs)
#   rspamd              a real milter (its proxy worker in milter mode, tests/it/milter.rs)
#   pebble              the ACME test server of the certificate tests (tests/it/acme.rs)
#   python3-milter      pymilter for /usr/bin/python3: the test milter (tests/peers/test_milter.py)
#   nix-bin, systemd, openssl, kubectl, yamllint, kubernetes-validate
#                       offline checks of the deployment files (tests/deploy/check.sh)
#   g++                 the fuzz step of .ci/run (fuzz/run-ci.sh; g++ builds libFuzzer)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# command -> Debian package
declare -A PKG=(
  [doveadm]=dovecot-core [swaks]=swaks [fetchmail]=fetchmail [mbsync]=isync [neomutt]=neomutt
  [curl]=curl [python3]=python3 [nix-instantiate]=nix-bin [systemd-analyze]=systemd
  [openssl]=openssl [opendkim-genkey]=opendkim-tools [g++]=g++ [postgrey]=postgrey
  [policyd-spf]=postfix-policyd-spf-python [opendkim]=opendkim [rspamd]=rspamd
  [xmllint]=libxml2-utils [pebble]=pebble [postconf]=postfix [doveconf]=dovecot-core
)
missing=()
for cmd in "${!PKG[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${PKG[$cmd]}")
done
# The test milter runs on Debian's own Python (pymilter is a C extension
# packaged for it), not on whatever python3 comes first on PATH.
/usr/bin/python3 -c 'import Milter' 2>/dev/null || missing+=(python3-milter)
# swaks needs these Perl modules for STARTTLS.
perl -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libio-socket-ssl-perl libnet-ssleay-perl)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)

if [ ${#missing[@]} -gt 0 ] || ! command -v kubectl >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "tests/setup.sh: please install: ${missing[*]} kubectl (no apt-get here)" >&2
    exit 1
  fi
  # policy-rc.d stops packages from starting their services (containers, CI).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  echo "tests/setup.sh: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v kubectl >/dev/null || $SUDO apt-get install -y -qq kubectl >/dev/null 2>&1 \
    || $SUDO apt-get install -y -qq kubernetes-client >/dev/null
fi

# Python peers: pip where it may install (a venv, pyenv, CI's Python), else
# Debian's packages (a system Python marked externally managed).
py_missing=()
python3 -c 'import aiosmtpd' 2>/dev/null || py_missing+=(aiosmtpd)
python3 -c 'import dkim' 2>/dev/null || py_missing+=(dkimpy)
python3 -c 'import spf' 2>/dev/null || py_missing+=(pyspf)
python3 -c 'import dns.resolver' 2>/dev/null || py_missing+=(dnspython)
python3 -c 'import nacl.signing' 2>/dev/null || py_missing+=(pynacl)
python3 -c 'import authres' 2>/dev/null || py_missing+=(authres)
command -v yamllint >/dev/null || py_missing+=(yamllint)
command -v kubernetes-validate >/dev/null || py_missing+=(kubernetes-validate)
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "tests/setup.sh: installing Python packages ${py_missing[*]}" >&2
  if ! python3 -m pip install -q "${py_missing[@]}" 2>/dev/null; then
    python3 -m pip install -q --user --break-system-packages "${py_missing[@]}"
  fi
fi

