#!/usr/bin/env python3
"""imap_resync.py -- what a QRESYNC reselect costs the server (RFC 7162 §3.2.5).

One client (the "reader") logs in, ENABLEs QRESYNC, SELECTs INBOX once and
remembers UIDVALIDITY and HIGHESTMODSEQ, then UNSELECTs. Every round, a
second session (the "changer", INBOX selected, idle while measured) toggles
\\Flagged on PERCENT % of the messages, chosen at random; after a short
rest the reader re-selects with

    SELECT INBOX (QRESYNC (uidvalidity highestmodseq))

and must get exactly one FETCH per changed message with the flags the
changer left (nothing else: no VANISHED, no other FETCH). The server's CPU
time (its process tree, sampled from /proc just before and just after) is
what the round costs it (each reselect repeated --repeat times with the
same arguments, per-reselect figures are the sum divided). For context the reader then does what a client
without QRESYNC must do to learn the same thing: SELECT INBOX and
UID FETCH 1:* (FLAGS); measured the same way.

Standard library only. One JSON object per round to --json-out:
  {"server", "round", "msgs", "changed", "qresync_cpu_ms", "qresync_wall_ms",
   "qresync_fetches", "plain_cpu_ms", "plain_wall_ms", "ok", "problems"}
"""
import argparse
import json
import os
import random
import re
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import proc_tree_stats  # noqa: E402


class Imap:
    """a blocking IMAP client that reads every response up to the tagged one"""

    def __init__(self, port, timeout):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.n = 0
        greeting = self._line()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting: {greeting!r}")

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 20)
            if not d:
                raise RuntimeError("connection closed by the server")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        """send one command; (untagged lines, tagged line); raises unless OK"""
        self.n += 1
        tag = b"r%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(f"{text!r}: {line!r}")
                return lines, line
            lines.append(line)

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (RuntimeError, OSError):
            pass
        self.s.close()


def server_cpu_s(pids):
    return proc_tree_stats(pids)["cpu_s"]


def uid_set(uids):
    """1,3:5,9 from sorted uids"""
    out, run = [], None
    for u in sorted(uids):
        if run and u == run[1] + 1:
            run[1] = u
        else:
            if run:
                out.append(run)
            run = [u, u]
    out.append(run)
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in out)


FETCH = re.compile(rb"^\* \d+ FETCH \((.*)\)$")


def fetched(lines):
    """uid -> flagged? from the FETCH lines; and the other untagged lines"""
    got, other = {}, []
    for line in lines:
        m = FETCH.match(line)
        if not m:
            other.append(line)
            continue
        body = m.group(1)
        uid = re.search(rb"UID (\d+)", body)
        flags = re.search(rb"FLAGS \(([^)]*)\)", body)
        if not uid or not flags:
            other.append(line)
            continue
        got[int(uid.group(1))] = b"\\Flagged" in flags.group(1).split()
    return got, other


def code(lines, name):
    for line in lines:
        m = re.search(rb"\[" + name + rb" (\d+)\]", line)
        if m:
            return int(m.group(1))
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--server-pids", required=True, help="comma-separated roots of the server's process tree")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--percent", type=float, default=1.0)
    ap.add_argument("--rest", type=float, default=0.3, help="seconds between the change and the measured reselect")
    ap.add_argument("--repeat", type=int, default=5, help="reselects per measurement (CPU is summed, then divided)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--tag", default="server")
    ap.add_argument("--json-out")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    pids = [int(p) for p in a.server_pids.split(",") if p]
    rnd = random.Random(a.seed)

    reader = Imap(a.port, a.timeout)
    reader.cmd(f'LOGIN "{a.user}" "{a.password}"')
    reader.cmd("ENABLE QRESYNC")
    lines, _ = reader.cmd("SELECT INBOX")
    validity, modseq = code(lines, b"UIDVALIDITY"), code(lines, b"HIGHESTMODSEQ")
    if validity is None or modseq is None:
        sys.exit(f"imap_resync: {a.tag}: SELECT gave no UIDVALIDITY/HIGHESTMODSEQ")
    lines, _ = reader.cmd("UID FETCH 1:* (FLAGS)")
    flagged, _ = fetched(lines)
    reader.cmd("UNSELECT")
    uids = sorted(flagged)
    k = max(1, round(len(uids) * a.percent / 100))

    changer = Imap(a.port, a.timeout)
    changer.cmd(f'LOGIN "{a.user}" "{a.password}"')
    changer.cmd("SELECT INBOX")

    out = open(a.json_out, "a") if a.json_out else None
    failures = 0
    for rnd_no in range(1, a.rounds + 1):
        chosen = rnd.sample(uids, k)
        on = [u for u in chosen if not flagged[u]]
        off = [u for u in chosen if flagged[u]]
        if on:
            changer.cmd(f"UID STORE {uid_set(on)} +FLAGS.SILENT (\\Flagged)")
        if off:
            changer.cmd(f"UID STORE {uid_set(off)} -FLAGS.SILENT (\\Flagged)")
        for u in chosen:
            flagged[u] = not flagged[u]
        time.sleep(a.rest)

        # Each measurement repeats the reselect (same UIDVALIDITY and MODSEQ:
        # the same answer, the same work) so that /proc's 10 ms clock ticks
        # add up to something that can be divided.
        problems = []
        c0, t0 = server_cpu_s(pids), time.monotonic()
        answers = []
        for _ in range(a.repeat):
            lines, _ = reader.cmd(f"SELECT INBOX (QRESYNC ({validity} {modseq}))")
            reader.cmd("UNSELECT")
            answers.append(lines)
        t1, c1 = time.monotonic(), server_cpu_s(pids)
        for lines in answers:
            got, other = fetched(lines)
            if set(got) != set(chosen):
                problems.append(f"FETCH for {len(got)} UIDs, {len(set(got) ^ set(chosen))} differ from the {k} changed")
            wrong = [u for u, f in got.items() if u in flagged and f != flagged[u]]
            if wrong:
                problems.append(f"{len(wrong)} FETCHes with the wrong \\Flagged, e.g. UID {wrong[0]}")
            if any(line.startswith(b"* VANISHED") for line in other):
                problems.append("VANISHED though nothing was expunged")
        new_modseq = code(answers[0], b"HIGHESTMODSEQ")
        if new_modseq is None or new_modseq <= modseq:
            problems.append(f"HIGHESTMODSEQ {new_modseq} not above {modseq}")
        else:
            modseq = new_modseq

        time.sleep(a.rest)
        c2, t2 = server_cpu_s(pids), time.monotonic()
        plains = []
        for _ in range(a.repeat):
            reader.cmd("SELECT INBOX")
            plain, _ = reader.cmd("UID FETCH 1:* (FLAGS)")
            reader.cmd("UNSELECT")
            plains.append(plain)
        t3, c3 = time.monotonic(), server_cpu_s(pids)
        if any(fetched(p)[0] != flagged for p in plains):
            problems.append("UID FETCH 1:* (FLAGS) disagrees with the changes made")
        problems = sorted(set(problems))

        rec = {"server": a.tag, "round": rnd_no, "msgs": len(uids), "changed": k,
               "repeat": a.repeat,
               "qresync_cpu_ms": round((c1 - c0) * 1000 / a.repeat, 2),
               "qresync_wall_ms": round((t1 - t0) * 1000 / a.repeat, 2),
               "qresync_fetches": len(fetched(answers[0])[0]), "plain_cpu_ms": round((c3 - c2) * 1000 / a.repeat, 2),
               "plain_wall_ms": round((t3 - t2) * 1000 / a.repeat, 2), "ok": not problems, "problems": problems}
        failures += bool(problems)
        if out:
            out.write(json.dumps(rec) + "\n")
            out.flush()
        print(f"imap_resync: {a.tag} round {rnd_no}: {k} of {len(uids)} changed; QRESYNC reselect "
              f"{rec['qresync_cpu_ms']} ms CPU ({rec['qresync_wall_ms']} ms wall, {rec['qresync_fetches']} FETCH); "
              f"SELECT + UID FETCH 1:* (FLAGS) {rec['plain_cpu_ms']} ms CPU ({rec['plain_wall_ms']} ms wall)"
              + ("" if not problems else "; PROBLEMS: " + "; ".join(problems)))
    changer.close()
    reader.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
