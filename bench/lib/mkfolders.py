#!/usr/bin/env python3
"""mkfolders.py MAILDIR [--count 1000] [--msgs 3] [--size 300]

Adds --count Maildir++ folders (MAILDIR/.Folder0001 ... with cur/ new/ tmp/
and the maildirfolder marker) of --msgs unseen messages each, already in
cur/ (as after a first look), named with S= and W= like mkmaildir.py's.
For bench/imap step 6's STATUS-over-many-folders case. Standard library only.
"""
import argparse
import os
import random
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mkmaildir import message  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("maildir")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--msgs", type=int, default=3)
    ap.add_argument("--size", type=int, default=300)
    a = ap.parse_args()
    if not (1 <= a.count <= 100_000 and 0 <= a.msgs <= 1000):
        ap.error("count 1..100000, msgs 0..1000")
    rnd = random.Random(2)
    base_t = 1767225600
    for f in range(1, a.count + 1):
        d = os.path.join(a.maildir, ".Folder%04d" % f)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        open(os.path.join(d, "maildirfolder"), "w").close()
        for i in range(a.msgs):
            data = message(rnd, i, a.size, base_t)
            name = "%d.M%06dP4243Q%d.mail.example.com,S=%d,W=%d:2," % (
                base_t + i, f, i + 1, len(data), len(data) + data.count(b"\n"))
            p = os.path.join(d, "cur", name)
            with open(p, "wb") as fh:
                fh.write(data)
            os.utime(p, (base_t + i, base_t + i))
    print("mkfolders: %s: %d folders of %d messages" % (a.maildir, a.count, a.msgs))


if __name__ == "__main__":
    main()
