#!/usr/bin/env python3
"""Sends the same SMTP conversations to Postfix and to pigeonpost, both
configured with the same smtpd_*_restrictions block and tables (see
bench/restrictions/compare.sh), and compares the replies line by line.

    restrictions_compare.py POSTFIX_PORT PIGEONPOST_PORT

Exit 0 when every reply matches (after the known, documented differences
below are normalised), 1 otherwise; a table goes to stdout."""
import re
import socket
import sys

ADDR = "127.0.0.1"

# (name, client address, HELO, MAIL FROM, [RCPT TO...], send DATA?, pipelined?)
CASES = [
    ("clean message", "127.0.0.4", "client.example.org", "alice@example.com", ["john@example.com"], True, False),
    ("cidr: client REJECT with text", "127.0.0.3", "client.example.org", "alice@example.com", ["john@example.com"], False, False),
    ("regexp: sender REJECT", "127.0.0.4", "client.example.org", "spammer@example.com", ["john@example.com"], False, False),
    ("regexp: DISCARD", "127.0.0.4", "client.example.org", "discard@example.com", ["john@example.com"], True, False),
    ("hash: recipient 550 with code", "127.0.0.4", "client.example.org", "alice@example.com", ["bob@example.com"], False, False),
    ("hash: parent domain REJECT", "127.0.0.4", "client.example.org", "x@mail.blocked.example", ["john@example.com"], False, False),
    ("non-FQDN sender", "127.0.0.4", "client.example.org", "alice@localhost", ["john@example.com"], False, False),
    ("non-FQDN recipient", "127.0.0.4", "client.example.org", "alice@example.com", ["john@nodots"], False, False),
    ("invalid HELO", "127.0.0.4", "bad_host!name", "alice@example.com", ["john@example.com"], False, False),
    ("non-FQDN HELO", "127.0.0.4", "justahost", "alice@example.com", ["john@example.com"], False, False),
    ("relay denied", "127.0.0.4", "client.example.org", "alice@example.com", ["someone@remote.example.net"], False, False),
    ("unknown user", "127.0.0.4", "client.example.org", "alice@example.com", ["nobody@example.com"], False, False),
    ("unknown sender domain", "127.0.0.4", "client.example.org", "alice@nonexistent.invalid", ["john@example.com"], False, False),
    ("multi-recipient bounce", "127.0.0.4", "client.example.org", "", ["john@example.com", "postmaster@example.com"], False, False),
    ("class: defer_if_permit", "127.0.0.4", "client.example.org", "slow@example.com", ["john@example.com"], False, False),
    ("table value: reject", "127.0.0.4", "client.example.org", "rej@example.com", ["john@example.com"], False, False),
    ("table value: defer", "127.0.0.4", "client.example.org", "def@example.com", ["john@example.com"], False, False),
    ("table value: warn_if_reject", "127.0.0.4", "client.example.org", "warn@example.com", ["john@example.com"], True, False),
    ("unauth pipelining", "127.0.0.4", "client.example.org", "alice@example.com", ["john@example.com"], True, True),
]

# Known differences, normalised before comparing:
# - the queue id in "250 2.0.0 Ok: queued as X";
# - the 220 banner and EHLO keyword lists (different software);
NORMALISE = [
    (re.compile(r"^250 2\.0\.0 Ok: queued as \S+"), "250 2.0.0 Ok: queued as ID"),
]


class Conn:
    def __init__(self, port, source):
        self.s = socket.create_connection((ADDR, port), timeout=20, source_address=(source, 0))
        self.f = self.s.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline().decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines[-1] if lines else ""

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply()


def conversation(port, case):
    name, source, helo, sender, rcpts, data, pipelined = case
    c = Conn(port, source)
    out = []
    c.reply()  # banner
    if pipelined:
        # HELO offers no PIPELINING; then everything in one write.
        c.cmd("HELO " + helo)
        burst = "MAIL FROM:<%s>\r\n" % sender + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n"
        c.s.sendall(burst.encode())
        for _ in range(2 + len(rcpts)):
            out.append(c.reply())
        c.s.close()
        return out
    c.cmd("EHLO " + helo)
    out.append(c.cmd("MAIL FROM:<%s>" % sender))
    ok_rcpt = False
    for r in rcpts:
        rr = c.cmd("RCPT TO:<%s>" % r)
        out.append(rr)
        ok_rcpt = ok_rcpt or rr.startswith("250")
    if data and ok_rcpt:
        d = c.cmd("DATA")
        out.append(d)
        if d.startswith("354"):
            out.append(c.cmd("Subject: compare\r\n\r\nhello\r\n."))
    c.cmd("QUIT")
    c.s.close()
    return out


def norm(line):
    for rx, rep in NORMALISE:
        line = rx.sub(rep, line)
    return line


def main():
    pf, pp = int(sys.argv[1]), int(sys.argv[2])
    bad = 0
    for case in CASES:
        a = [norm(x) for x in conversation(pf, case)]
        b = [norm(x) for x in conversation(pp, case)]
        same = a == b
        bad += not same
        print("%-32s %s" % (case[0], "same" if same else "DIFFERENT"))
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else ""
            y = b[i] if i < len(b) else ""
            mark = "  " if x == y else "!="
            print("   %s postfix:    %s" % (mark, x))
            if x != y:
                print("      pigeonpost: %s" % y)
    print("\n%d of %d conversations differ" % (bad, len(CASES)))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
