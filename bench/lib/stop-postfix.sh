#!/bin/bash
# stop-postfix.sh -- stop the Postfix started by start-postfix.sh, by PID only
# (SIGTERM to the master, which stops its children; SIGKILL after 15 s if
# needed). It never kills processes by name. Idempotent.
#
# Adapted from the project's reference setup (shared/bench/stop-reference.sh),
# trimmed to Postfix only and parameterised by state dir and port.
# Env: PEERS=/tmp/pp-bench/postfix  SMTP_PORT=4525
set -uo pipefail
PEERS=${PEERS:-/tmp/pp-bench/postfix}
SMTP_PORT=${SMTP_PORT:-4525}
QUEUE=$PEERS/spool/postfix

stop_pid() { # name pid expected_comm
  local name=$1 pid=$2 comm=$3
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then echo "[stop-postfix] $name not running"; return 0; fi
  if [ "$(cat /proc/$pid/comm 2>/dev/null)" != "$comm" ]; then
    echo "[stop-postfix] pid $pid is not a $comm process; not touching it"; return 0
  fi
  echo "[stop-postfix] stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "[stop-postfix] $name still alive, SIGKILL $pid"; kill -KILL "$pid"; fi
}

PFX_PID=$(cat "$PEERS/run/postfix.pid" 2>/dev/null || sed -n '1{s/ //g;p}' "$QUEUE/pid/master.pid" 2>/dev/null || true)
stop_pid postfix "$PFX_PID" master
rm -f "$PEERS/run/postfix.pid"
for _ in $(seq 20); do
  ss -ltn 2>/dev/null | awk '{print $4}' | grep -qx "127.0.0.1:$SMTP_PORT" || break
  sleep 0.25
done
if ss -ltn 2>/dev/null | awk '{print $4}' | grep -qx "127.0.0.1:$SMTP_PORT"; then
  echo "[stop-postfix] WARNING still listening: 127.0.0.1:$SMTP_PORT"
else
  echo "[stop-postfix] port $SMTP_PORT closed"
fi
