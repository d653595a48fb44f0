#!/usr/bin/env python3
"""Independent implementations the mail-authentication tests compare with:
dkimpy (DKIM signing and verification, ARC sealing) and pyspf (SPF), both
resolving through the test's DNS server, and an SMTP client that connects
from a chosen loopback address (SPF and DMARC depend on the client's IP).

  mailauth_tool.py sign --key K --selector S --domain D [--algo rsa|ed25519]
                        [--canon relaxed|simple] [--length]      < msg > signed
  mailauth_tool.py verify --dns HOST:PORT [--index N]             < msg
  mailauth_tool.py arcsign --key K --selector S --domain D --srv-id ID < msg
  mailauth_tool.py ed25519-keygen                   # prints: seed-b64 pub-b64
  mailauth_tool.py spf --dns HOST:PORT < cases.json  # [{ip, sender, helo}] -> results
  mailauth_tool.py send --port P < jobs.json         # [{ip, helo, sender, rcpt, file}]
"""
import argparse
import base64
import json
import smtplib
import sys


def use_dns(addr):
    import dns.resolver
    host, port = addr.rsplit(":", 1)
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [host]
    r.port = int(port)
    r.timeout = 3
    r.lifetime = 6
    dns.resolver.default_resolver = r


def read_key(path):
    with open(path, "rb") as f:
        return f.read().strip()


def cmd_sign(a):
    import dkim
    msg = sys.stdin.buffer.read()
    algo = b"ed25519-sha256" if a.algo == "ed25519" else b"rsa-sha256"
    canon = a.canon.encode()
    sig = dkim.sign(
        msg,
        a.selector.encode(),
        a.domain.encode(),
        read_key(a.key),
        canonicalize=(canon, canon),
        signature_algorithm=algo,
        include_headers=[b"from", b"to", b"subject", b"date"],
        length=a.length,
    )
    sys.stdout.buffer.write(sig + msg)


def cmd_verify(a):
    import dkim
    use_dns(a.dns)
    msg = sys.stdin.buffer.read()
    d = dkim.DKIM(msg)
    ok = d.verify(idx=a.index)
    print("pass" if ok else "fail")


def cmd_arcsign(a):
    import dkim
    msg = sys.stdin.buffer.read()
    headers = dkim.arc_sign(
        msg,
        a.selector.encode(),
        a.domain.encode(),
        read_key(a.key),
        a.srv_id.encode(),
        include_headers=[b"from", b"to", b"subject", b"date"],
    )
    sys.stdout.buffer.write(b"".join(headers) + msg)


def cmd_ed25519_keygen(_a):
    import nacl.signing
    k = nacl.signing.SigningKey.generate()
    print(base64.b64encode(bytes(k)).decode(), base64.b64encode(bytes(k.verify_key)).decode())


def cmd_spf(a):
    import spf
    use_dns(a.dns)
    out = []
    for c in json.load(sys.stdin):
        result, _explanation = spf.check2(i=c["ip"], s=c["sender"], h=c["helo"], querytime=20)
        out.append(result)
    json.dump(out, sys.stdout)


def cmd_send(a):
    """Each job: one SMTP transaction from its own source address. Prints
    one line per job: the final reply code and text."""
    for job in json.load(sys.stdin):
        with open(job["file"], "rb") as f:
            data = f.read()
        s = smtplib.SMTP("127.0.0.1", a.port, local_hostname=job["helo"],
                         source_address=(job["ip"], 0), timeout=60)
        try:
            s.ehlo(job["helo"])
            code, text = s.mail(job["sender"])
            if code == 250:
                code, text = s.rcpt(job["rcpt"])
            if code == 250:
                code, text = s.data(data)
            print(code, text.decode(errors="replace"), flush=True)
        except smtplib.SMTPResponseException as e:
            print(e.smtp_code, e.smtp_error.decode(errors="replace"), flush=True)
        finally:
            try:
                s.quit()
            except Exception:
                pass


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--key", required=True)
    s.add_argument("--selector", required=True)
    s.add_argument("--domain", required=True)
    s.add_argument("--algo", default="rsa")
    s.add_argument("--canon", default="relaxed")
    s.add_argument("--length", action="store_true")
    v = sub.add_parser("verify")
    v.add_argument("--dns", required=True)
    v.add_argument("--index", type=int, default=0)
    r = sub.add_parser("arcsign")
    r.add_argument("--key", required=True)
    r.add_argument("--selector", required=True)
    r.add_argument("--domain", required=True)
    r.add_argument("--srv-id", required=True)
    sub.add_parser("ed25519-keygen")
    f = sub.add_parser("spf")
    f.add_argument("--dns", required=True)
    m = sub.add_parser("send")
    m.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    {
        "sign": cmd_sign,
        "verify": cmd_verify,
        "arcsign": cmd_arcsign,
        "ed25519-keygen": cmd_ed25519_keygen,
        "spf": cmd_spf,
        "send": cmd_send,
    }[a.cmd](a)


if __name__ == "__main__":
    main()
