#!/usr/bin/env python3
"""mkmaildir.py DIR [--count 1000] [--size 5120] [--seed 1] [--no-sizes]

Writes a Maildir (DIR/{cur,new,tmp}) of --count plain-text messages of about
--size bytes each (LF line endings, as an MTA stores them), all in new/ as
freshly delivered mail. Deterministic for a given seed, so two runs give
byte-identical messages (file names differ only by the fixed base time).

File names are the Maildir convention pigeonpost's and Dovecot's own delivery
use: <time>.M<usec>P<pid>Q<n>.<host>,S=<bytes>,W=<bytes with CRLF>. With
--no-sizes they carry no S=/W= (as Postfix virtual(8) writes them), so the
POP3 servers must stat/read every file to learn its size.

Every message has the headers a delivered message carries (Return-Path,
Received, Date, From, To, Subject, Message-ID, MIME) and a body of 72-column
text lines; about one message in ten has body lines starting with "." so the
POP3 servers' dot-stuffing is exercised. Standard library only.
"""
import argparse
import email.utils
import os
import random
import sys

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her all she there would their we him been has when who will more no if out so said what up "
         "its about into than them can only other new some could time these two may then do first any my now such "
         "like our over man me even most made after also did many before must through back years where much your "
         "way well down should because each just those people mr how too little state good very make world still "
         "mailbox server message delivery queue relay header body transfer protocol postmaster domain").split()


def body_lines(rnd, target):
    out, n = [], 0
    while n < target:
        words, w = [], 0
        while w < 66:
            x = rnd.choice(WORDS)
            words.append(x)
            w += len(x) + 1
        line = " ".join(words)
        if rnd.random() < 0.02:
            line = "." + line          # needs dot-stuffing on the wire
        out.append(line)
        n += len(line) + 1
    return out


def message(rnd, i, size, base_t):
    t = base_t + i
    date = email.utils.formatdate(t, localtime=False)
    sender = "sender%03d@example.org" % rnd.randrange(1, 500)
    hdr = [
        "Return-Path: <%s>" % sender,
        "Delivered-To: user@example.com",
        "Received: from client.example.org (client.example.org [192.0.2.%d])" % rnd.randrange(1, 255),
        "\tby mail.example.com with ESMTP id %016X" % rnd.getrandbits(64),
        "\tfor <user@example.com>; %s" % date,
        "Date: %s" % date,
        "From: Sender %d <%s>" % (i, sender),
        "To: User <user@example.com>",
        "Subject: benchmark message %d of the POP3 test mailbox" % (i + 1),
        "Message-ID: <%d.%016x@example.org>" % (t, rnd.getrandbits(64)),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
    ]
    head = "\n".join(hdr) + "\n"
    lines = body_lines(rnd, max(0, size - len(head)))
    if rnd.random() < 0.1:
        lines.insert(len(lines) // 2, ".")             # a lone dot line
        lines.insert(len(lines) // 3, "..two dots")
    text = head + "\n".join(lines) + "\n"
    return text.encode("ascii")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-sizes", action="store_true", help="no ,S=,W= in the file names")
    ap.add_argument("--host", default="mail.example.com")
    a = ap.parse_args()
    if not (1 <= a.count <= 1_000_000 and 200 <= a.size <= 50_000_000):
        ap.error("count 1..1000000, size 200..50000000")
    if os.path.exists(os.path.join(a.dir, "new")) and os.listdir(os.path.join(a.dir, "new")):
        sys.exit("mkmaildir: %s/new is not empty" % a.dir)
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(a.dir, d), exist_ok=True)
    rnd = random.Random(a.seed)
    base_t = 1767225600           # 2026-01-01 00:00:00 UTC, fixed for reproducibility
    total = 0
    for i in range(a.count):
        data = message(rnd, i, a.size, base_t)
        name = "%d.M%06dP%dQ%d.%s" % (base_t + i, (i * 7919) % 1_000_000, 4242, i + 1, a.host)
        if not a.no_sizes:
            name += ",S=%d,W=%d" % (len(data), len(data) + data.count(b"\n"))
        p = os.path.join(a.dir, "new", name)
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (base_t + i, base_t + i))
        total += len(data)
    print("mkmaildir: %s: %d messages, %d bytes (%.0f B average)" % (a.dir, a.count, total, total / a.count))


if __name__ == "__main__":
    main()
