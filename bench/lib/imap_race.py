#!/usr/bin/env python3
"""imap_race.py -- does a concurrent flag change make messages vanish from SELECT? (stdlib only)

One session flips \\Flagged on random messages (UID STORE n +FLAGS.SILENT,
then -FLAGS.SILENT; nothing is ever expunged) while a second session loops:
SELECT INBOX; if EXISTS is not --expect, it finds the missing UID(s) with UID
FETCH 1:* (UID), then NOOPs until the server reports a change and shows how the
message comes back (FETCH <exists>:* (UID)). Found with bench/imap/run.sh
(pigeonpost, 10 clients on one 5,000-message INBOX: "SEARCH UNSEEN found 5000
of 4999 messages"). Bounded by --seconds.

  imap_race.py --port 5143 --user load@example.com --password loadpass --expect 5000 --seconds 30
Final line: "imap_race: selects=N short=M ..." (exit 1 if any SELECT was short).
"""
import argparse
import re
import socket
import sys
import threading
import time


class Conn:
    def __init__(self, a):
        self.s = socket.create_connection((a.host, a.port), timeout=30)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.n = 0

    def cmd(self, c):
        self.n += 1
        tag = b"T%d" % self.n
        self.s.sendall(tag + b" " + c + b"\r\n")
        out = []
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("closed by server")
            out.append(line)
            if line.startswith(tag + b" "):
                return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--expect", type=int, required=True, help="messages in the INBOX")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--show", type=int, default=3, help="short SELECTs to show in detail")
    a = ap.parse_args()
    if not (0 < a.seconds <= 600):
        ap.error("--seconds 0..600")
    stop = time.time() + a.seconds
    login = b"LOGIN \"%s\" \"%s\"" % (a.user.encode(), a.password.encode())

    def flipper():
        c = Conn(a)
        c.cmd(login)
        c.cmd(b"SELECT INBOX")
        k = 0
        while time.time() < stop:
            u = (k * 7919) % a.expect + 1
            k += 1
            c.cmd(b"UID STORE %d +FLAGS.SILENT (\\Flagged)" % u)
            c.cmd(b"UID STORE %d -FLAGS.SILENT (\\Flagged)" % u)
        c.cmd(b"LOGOUT")

    t = threading.Thread(target=flipper, daemon=True)
    t.start()
    c = Conn(a)
    c.cmd(login)
    selects = short = shown = 0
    while time.time() < stop:
        out = c.cmd(b"SELECT INBOX")
        selects += 1
        ex = [int(l.split()[1]) for l in out if l.endswith(b" EXISTS\r\n")]
        if not ex or ex[-1] == a.expect:
            continue
        short += 1
        if shown >= a.show:
            continue
        shown += 1
        uids = {int(x) for x in re.findall(rb"UID (\d+)", b"".join(c.cmd(b"UID FETCH 1:* (UID)")))}
        print("SELECT %d: EXISTS %d, UIDs not listed: %s" % (selects, ex[-1], sorted(set(range(1, a.expect + 1)) - uids)[:5]))
        for _ in range(20):
            un = [l.strip().decode(errors="replace") for l in c.cmd(b"NOOP") if l.startswith(b"* ")]
            if un:
                print("  NOOP: %s" % un[:4])
                back = [l.strip().decode(errors="replace") for l in c.cmd(b"FETCH %d:* (UID)" % ex[-1])]
                print("  FETCH %d:* (UID): %s" % (ex[-1], back[:4]))
                break
            time.sleep(0.2)
    c.cmd(b"LOGOUT")
    t.join(35)
    print("imap_race: %s:%d selects=%d short=%d (SELECTs whose EXISTS was not %d)" % (a.host, a.port, selects, short, a.expect))
    sys.exit(1 if short else 0)


if __name__ == "__main__":
    main()
