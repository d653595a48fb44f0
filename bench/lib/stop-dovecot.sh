#!/bin/bash
# stop-dovecot.sh -- stop the Dovecot started by start-dovecot.sh, by its
# master PID only (SIGTERM, which stops its children; SIGKILL after 15 s if
# needed). It never kills processes by name and never touches a system-wide
# Dovecot. Idempotent.
# Env: DOVECOT_DIR (as for start-dovecot.sh)  POP3_PORT=4110
#      PORTS="$POP3_PORT"  the ports that must be closed afterwards (e.g. "4143" for IMAP)
set -uo pipefail
: "${DOVECOT_DIR:?}"
POP3_PORT=${POP3_PORT:-4110}
PORTS=${PORTS:-$POP3_PORT}

PID=$(cat "$DOVECOT_DIR/dovecot.pid" 2>/dev/null || cat "$DOVECOT_DIR/run/master.pid" 2>/dev/null || true)
if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
  echo "[stop-dovecot] not running"
elif [ "$(cat "/proc/$PID/comm" 2>/dev/null)" != dovecot ]; then
  echo "[stop-dovecot] pid $PID is not a dovecot process; not touching it"
elif ! tr '\0' ' ' < "/proc/$PID/cmdline" 2>/dev/null | grep -qF -- "$DOVECOT_DIR/etc/dovecot.conf"; then
  echo "[stop-dovecot] pid $PID is a dovecot not started with $DOVECOT_DIR/etc/dovecot.conf; not touching it"
else
  echo "[stop-dovecot] stopping dovecot (master pid $PID)"
  kill -TERM "$PID"
  for _ in $(seq 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$PID" 2>/dev/null; then echo "[stop-dovecot] still alive after 15 s, SIGKILL $PID"; kill -KILL "$PID"; fi
fi
rm -f "$DOVECOT_DIR/dovecot.pid"
listening() { ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qx "127.0.0.1:$1"; }
for port in $PORTS; do
  for _ in $(seq 20); do
    listening "$port" || break
    sleep 0.25
  done
  if listening "$port"; then
    echo "[stop-dovecot] WARNING still listening: 127.0.0.1:$port"
  else
    echo "[stop-dovecot] port $port closed"
  fi
done
