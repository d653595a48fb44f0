#!/usr/bin/python3
"""A milter for the tests, written with pymilter (Debian python3-milter,
for /usr/bin/python3). Listens on inet:PORT@127.0.0.1 and does what the
message asks for in its Subject ("action=NAME"), or, at RCPT, what the
recipient's +extension says (reject-rcpt, tempfail-rcpt, replycode-rcpt;
reject-data refuses the DATA command).

Every action of the milter protocol is covered: add/insert/change/delete
header, add/delete recipient, change sender, replace body, quarantine,
discard, reject, tempfail, a multi-line reply code; "macros" adds a header
with the macros pigeonpost sent.

Usage: test_milter.py PORT
"""
import sys

import Milter


class TestMilter(Milter.Base):
    def __init__(self):
        self.subject = ""
        self.headers = []
        self.bodydata = b""

    def connect(self, hostname, family, hostaddr):
        return Milter.CONTINUE

    def hello(self, name):
        return Milter.CONTINUE

    def envfrom(self, sender, *params):
        # A new message on the same connection.
        self.subject = ""
        self.headers = []
        self.bodydata = b""
        self.reject_data = False
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        local = to.strip("<>").split("@")[0].split("+")[-1]
        if local == "reject-rcpt":
            return Milter.REJECT
        if local == "tempfail-rcpt":
            return Milter.TEMPFAIL
        if local == "reject-data":
            self.reject_data = True
        if local == "replycode-rcpt":
            self.setreply("553", "5.7.2", "recipient says no")
            return Milter.REJECT
        return Milter.CONTINUE

    def data(self):
        if self.reject_data:
            self.setreply("550", "5.7.1", "no data today")
            return Milter.REJECT
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append((name, value))
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def body(self, chunk):
        self.bodydata += chunk
        return Milter.CONTINUE

    def eom(self):
        action = ""
        if "action=" in self.subject:
            action = self.subject.split("action=", 1)[1].split()[0]
        if action == "addheader":
            self.addheader("X-Added", "yes")
        elif action == "insheader":
            self.addheader("X-Inserted", "first", 0)
        elif action == "chgheader":
            self.chgheader("Subject", 1, "changed by the milter")
        elif action == "delheader":
            self.chgheader("X-Remove-Me", 1, "")
        elif action == "addrcpt":
            self.addrcpt("<jane@example.com>")
        elif action == "delrcpt":
            self.delrcpt("<jane@example.com>")
        elif action == "chgfrom":
            self.chgfrom("<changed@example.org>")
        elif action == "replbody":
            self.replacebody(b"replaced by the milter\r\n")
        elif action == "quarantine":
            self.quarantine("held by the test milter")
        elif action == "discard":
            return Milter.DISCARD
        elif action == "reject":
            return Milter.REJECT
        elif action == "tempfail":
            return Milter.TEMPFAIL
        elif action == "replycode":
            self.setreply("550", "5.7.0", "first line", "second line")
            return Milter.REJECT
        elif action == "macros":
            names = ["i", "j", "{client_addr}", "{daemon_addr}", "{mail_addr}", "{rcpt_addr}", "v", "_"]
            seen = " ".join("%s=%s" % (n, self.getsymval(n)) for n in names)
            self.addheader("X-Macros", seen)
            self.addheader("X-Body-Bytes", str(len(self.bodydata)))
            self.addheader("X-Header-Count", str(len(self.headers)))
        return Milter.ACCEPT


def main():
    port = int(sys.argv[1])
    Milter.factory = TestMilter
    Milter.set_flags(
        Milter.ADDHDRS | Milter.CHGHDRS | Milter.ADDRCPT | Milter.DELRCPT
        | Milter.CHGFROM | Milter.CHGBODY | Milter.QUARANTINE
    )
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    Milter.runmilter("pigeonpost-test", "inet:%d@127.0.0.1" % port, 60)


if __name__ == "__main__":
    main()
