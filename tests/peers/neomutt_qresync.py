#!/usr/bin/env python3
"""neomutt_qresync.py -- a real client's QRESYNC resync, counted on the wire (stdlib only).

NeoMutt (Debian's 20220429, `imap_condstore`/`imap_qresync` with a header
cache) opens INBOX through a small TCP relay that counts what the server
sends: every `* n FETCH` line and every `VANISHED`. Then another session
(imaplib) flags two messages and expunges one, and NeoMutt opens INBOX again
from its header cache: with QRESYNC it must get only the two changed
messages' FETCHes and the expunged UID; the same resync without
CONDSTORE/QRESYNC re-reads the flags of every message.

  neomutt_qresync.py --port 143 --user john@example.com --password john123
  neomutt_qresync.py --dovecot 'CMD' ...   # the same against Dovecot's imap
                                           # binary (preauthenticated, on stdio)
Prints one line per run: "run NAME: fetch=N vanished=[...] commands=[...]".
"""
import argparse
import imaplib
import os
import re
import socket
import subprocess
import tempfile
import threading


class Relay:
    """127.0.0.1:<port> -> the server; records each connection's traffic."""

    def __init__(self, port, dovecot=None):
        self.port = port
        self.dovecot = dovecot
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.local = self.sock.getsockname()[1]
        self.down = bytearray()  # server -> client, all connections
        self.up = bytearray()  # client -> server
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.sock.accept()
            if self.dovecot:
                p = subprocess.Popen(self.dovecot, shell=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0)
                threading.Thread(target=self.pipe_up, args=(c, p), daemon=True).start()
                threading.Thread(target=self.pipe_down, args=(p, c), daemon=True).start()
                continue
            s = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self.pump, args=(c, s, self.up), daemon=True).start()
            threading.Thread(target=self.pump, args=(s, c, self.down), daemon=True).start()

    def pipe_up(self, c, p):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.up.extend(data)
                p.stdin.write(data)
        except OSError:
            pass
        finally:
            p.stdin.close()

    def pipe_down(self, p, c):
        try:
            while True:
                data = p.stdout.read(65536)
                if not data:
                    break
                with self.lock:
                    self.down.extend(data)
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def pump(self, a, b, log):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with self.lock:
                    log.extend(data)
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self):
        with self.lock:
            d, u = bytes(self.down), bytes(self.up)
            self.down.clear()
            self.up.clear()
        return d, u


def neomutt(a, relay, home, qresync):
    rc = os.path.join(home, "rc")
    os.makedirs(os.path.join(home, "Mail"), exist_ok=True)
    os.makedirs(os.path.join(home, "hcache"), exist_ok=True)
    with open(rc, "w") as f:
        f.write(
            'set imap_user = "%s"\n'
            'set imap_pass = "%s"\n'
            "set ssl_starttls = no\n"
            "set ssl_force_tls = no\n"
            'set header_cache = "%s/hcache/"\n'
            "set imap_condstore = %s\n"
            "set imap_qresync = %s\n"
            "set quit = yes\nset move = no\nset delete = no\nset mark_old = no\n"
            "set imap_check_subscribed = no\nset mail_check_stats = no\n"
            "set imap_keepalive = 300\nset timeout = 60\n"
            % (a.user, a.password, home, "yes" if qresync else "no", "yes" if qresync else "no")
        )
    url = "imap://%s@127.0.0.1:%d/INBOX" % (a.user.replace("@", "%40"), relay.local)
    cmd = "neomutt -n -F %s -f %s -e 'push <quit>'" % (rc, url)
    env = dict(os.environ, TERM="xterm", HOME=home, COLUMNS="120", LINES="40")
    # NeoMutt wants a terminal: script(1) gives it one.
    try:
        subprocess.run(["script", "-qec", cmd, "/dev/null"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30, check=True)
    except subprocess.TimeoutExpired as e:
        down, up = relay.take()
        screen = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b" ", e.stdout or b"")
        raise SystemExit("neomutt hung; screen: %r\nsent: %r\nreceived: %r"
                         % (screen[-1500:], up[-1500:], down[-1500:]))


def report(name, relay):
    down, up = relay.take()
    fetch = len(re.findall(rb"(?m)^\* \d+ FETCH ", down))
    vanished = [v.decode() for v in re.findall(rb"(?m)^\* VANISHED ([^\r\n]*)", down)]
    cmds = re.findall(rb"(?m)^\S+ ((?:UID )?(?:SELECT|EXAMINE|FETCH|ENABLE)[^\r\n]*)", up)
    cmds = [re.sub(r"BODY.PEEK\[HEADER.FIELDS \([^)]*\)\]", "BODY.PEEK[HEADER.FIELDS (...)]", c.decode())
            for c in cmds]
    cmds = [re.sub(r"CHANGEDSINCE \d+", "CHANGEDSINCE n", c) for c in cmds]
    print("run %s: fetch=%d vanished=%s commands=%s" % (name, fetch, vanished, cmds), flush=True)


def change(a, expunge):
    """Another session flags two messages (and expunges a third)."""
    if a.dovecot:
        m = imaplib.IMAP4_stream(a.dovecot)
    else:
        m = imaplib.IMAP4("127.0.0.1", a.port)
        m.login(a.user, a.password)
    m.select("INBOX")
    typ, dat = m.search(None, "ALL")
    seqs = dat[0].split()
    m.store(seqs[1], "+FLAGS", "\\Flagged")
    m.store(seqs[4], "+FLAGS", "\\Answered")
    if expunge:
        m.store(seqs[6], "+FLAGS", "\\Deleted")
        m.expunge()
    m.logout()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--dovecot", help="a command running Dovecot's imap preauthenticated on stdio")
    a = ap.parse_args()
    relay = Relay(a.port, a.dovecot)
    # (name, CONDSTORE/QRESYNC on, expunge one)
    for name, qresync, expunge in (("qresync-flags", True, False), ("qresync-expunge", True, True),
                                   ("plain-flags", False, False)):
        with tempfile.TemporaryDirectory() as home:
            neomutt(a, relay, home, qresync)
            report(name + "-first", relay)
            change(a, expunge)
            relay.take()
            neomutt(a, relay, home, qresync)
            report(name + "-resync", relay)


if __name__ == "__main__":
    main()
