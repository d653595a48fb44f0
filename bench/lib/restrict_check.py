#!/usr/bin/env python3
"""restrict_check.py NAME=PORT... -- bench/smtp RESTRICTIONS=1: send the same
MAIL FROM / RCPT TO cases to each server (on 127.0.0.1) and print their
replies side by side as a Markdown table, one row per case, marking the rows
where the replies differ. No message is sent: each case ends with RSET.

Cases come from the restriction list and tables that bench/smtp/run.sh
writes (client 127.0.0.2 is listed in the DNS list, 127.0.0.3 in the client
access table, 127.0.0.4 is host1.dialup.bench.example by PTR and A, and
dialup.bench.example is in the client access table, listed.example and bulk@ in the sender access table, sender.example
and sub.listed.example resolve, nosuch.example does not).

On loopback one row differs for a reason outside pigeonpost's restriction
code: its resolver (hickory) answers every PTR question under
127.in-addr.arpa itself with "localhost" (RFC 6761) instead of asking the
DNS server, so 127.0.0.4 has no verified name there, while Postfix asks the
DNS server and gets host1.dialup.bench.example.

Exit status: 0 when the accepted case ("ok") is accepted by every server,
else 1. Differences alone do not fail: they are reported.
Standard library only.
"""
import smtplib
import sys

CASES = [
    # (name, client source address, MAIL FROM, RCPT TO)
    ("ok", "127.0.0.1", "a@sender.example", "john@example.com"),
    ("null sender", "127.0.0.1", "", "john@example.com"),
    ("non-FQDN sender", "127.0.0.1", "a@sender", "john@example.com"),
    ("non-FQDN recipient", "127.0.0.1", "a@sender.example", "john@example"),
    ("unknown sender domain", "127.0.0.1", "a@nosuch.example", "john@example.com"),
    ("client in access table", "127.0.0.3", "a@sender.example", "john@example.com"),
    ("client name's parent domain in access table", "127.0.0.4", "a@sender.example", "john@example.com"),
    ("sender domain in access table", "127.0.0.1", "a@listed.example", "john@example.com"),
    ("sender subdomain (parent match)", "127.0.0.1", "a@sub.listed.example", "john@example.com"),
    ("sender user@ in access table", "127.0.0.1", "bulk@sender.example", "john@example.com"),
    ("client in DNSBL", "127.0.0.2", "a@sender.example", "john@example.com"),
    ("relay attempt", "127.0.0.1", "a@sender.example", "x@remote.example"),
    ("unknown local user", "127.0.0.1", "a@sender.example", "nobody@example.com"),
]


def one(port, src, sender, rcpt):
    s = smtplib.SMTP(timeout=30, source_address=(src, 0))
    try:
        code, msg = s.connect("127.0.0.1", port)
        if code != 220:
            return f"connect: {code} {msg.decode(errors='replace')}"
        s.ehlo("client.bench.example")
        code, msg = s.mail(sender)
        if code >= 300:
            return f"MAIL: {code} {msg.decode(errors='replace')}"
        code, msg = s.rcpt(rcpt)
        out = f"{code} {msg.decode(errors='replace')}"
        s.rset()
        return out
    except (OSError, smtplib.SMTPException) as e:
        return f"error: {type(e).__name__}: {e}"
    finally:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            pass


def main():
    servers = [a.split("=", 1) for a in sys.argv[1:]]
    names = [n for n, _ in servers]
    print("| case | client | MAIL FROM → RCPT TO | " + " | ".join(names) + " | same |")
    print("|---|---|---|" + "---|" * len(names) + "---|")
    ok = True
    for name, src, sender, rcpt in CASES:
        replies = [one(int(p), src, sender, rcpt) for _, p in servers]
        same = "yes" if len(set(replies)) == 1 else "**no**"
        if name == "ok" and not all(r.startswith("250") for r in replies):
            ok = False
        cells = " | ".join("`" + r.replace("|", "\\|") + "`" for r in replies)
        print(f"| {name} | {src} | <{sender}> → <{rcpt}> | {cells} | {same} |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
