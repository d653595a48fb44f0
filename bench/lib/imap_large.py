#!/usr/bin/env python3
"""imap_large.py -- what a large mailbox costs the server, operation by operation.

One user's INBOX of many messages (bench/imap/run.sh step 6 makes it with
mkmaildir.py: every message fresh in new/). The server's CPU (its process
tree, just before and after: every thread's schedstat in ns, or /proc's 10 ms
ticks if a thread ended meanwhile; "cpu_source" says which) and the wall
time of:

  first_select   (--phase first) SELECT INBOX on the fresh Maildir (moves
                 new/ to cur/, numbers every message, builds the index)
  select         (--phase later, on a restarted server) SELECT INBOX again,
                 --repeat times, a new connection each (LOGIN not measured)
  fetch_flags    UID FETCH 1:* (FLAGS UID)
  search_unseen  UID SEARCH UNSEEN
  search_subject SEARCH SUBJECT "<a word from one subject>" (twice: the
                 first may build a header cache, the second uses it)
  sort_date      UID SORT (DATE) UTF-8 ALL, if the server offers SORT (after
                 the searches, so it may use what they cached)
  new_mail       (with --maildir) while that session IDLEs, --new-mail messages
                 dropped into the INBOX's new/ one at a time, as another
                 process (an LDA) delivers: each waited for until the server
                 announces it (* n EXISTS); CPU per delivery
  select_cold    (--phase cold, on a server restarted again) one SELECT: the
                 first look at the mailbox after a restart
  sort_date_cold then UID SORT (DATE) with nothing searched before
  list_folders   (--phase folders, --folders N folders added by mkfolders.py)
                 LIST "" "*"
  status_first   STATUS (MESSAGES UNSEEN UIDNEXT) of every folder, one
                 connection, the first time (the server numbers each folder)
  status         the same again (median of --rounds passes)
  noop           as many NOOPs, alternated with those passes: the round
                 trip alone, the floor under status (both also with their
                 user-space CPU summed over the passes; client and server
                 on one CPU, --pin-cpu, see set_affinity; CPU from each
                 thread's schedstat, in ns, not 10 ms ticks)

and the growth of the server tree's memory from before the later sessions
to while one of them holds the mailbox selected, per message (RSS and PSS
summed over the tree). Every answer is checked (the message count, one UID per message,
every message unseen, the SEARCH hit). Standard library only. One JSON line
to --json-out:
  {"server", "msgs", "ops": {name: {"cpu_ms", "wall_ms", "runs"}},
   "rss_growth_b_per_msg", "pss_growth_b_per_msg", "ok", "problems"}
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_ns_between, proc_tree_stats, set_tree_affinity, thread_cpu_ns, tree_cpu_ns  # noqa: E402
from imap_resync import Imap  # noqa: E402


def set_affinity(pids, cpus):
    """the server trees and this client on `cpus` (see common.set_tree_affinity);
    the old set of this process, to put back"""
    old = os.sched_getaffinity(0)
    set_tree_affinity(pids, cpus)
    os.sched_setaffinity(0, cpus)
    return old


def measure(pids, fn, runs=1):
    """(cpu ms, wall ms) per run of fn(), over `runs` runs. CPU from every
    thread's schedstat (ns) when no thread of the server ended meanwhile,
    else from /proc's 10 ms ticks (which count reaped children too); the
    source used is kept in CPU_SOURCES, by the caller's label"""
    s0, c0, t0 = thread_cpu_ns(pids), proc_tree_stats(pids)["cpu_s"], time.monotonic()
    out = None
    for _ in range(runs):
        out = fn()
    t1, c1, s1 = time.monotonic(), proc_tree_stats(pids)["cpu_s"], thread_cpu_ns(pids)
    ns = cpu_ns_between(s0, s1)
    measure.source = "schedstat" if ns is not None else "ticks"
    cpu_ms = ns / 1e6 if ns is not None else (c1 - c0) * 1000
    return cpu_ms / runs, (t1 - t0) * 1000 / runs, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--server-pids", required=True, help="comma-separated root pids of the server's tree")
    ap.add_argument("--msgs", type=int, required=True, help="messages the INBOX holds")
    ap.add_argument("--subject", required=True, help="a word only some subjects have")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folders", type=int, default=0, help="folders mkfolders.py added (--phase folders)")
    ap.add_argument("--folder-msgs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5, help="passes of `status` and `noop` (--phase folders)")
    ap.add_argument("--pin-cpu", type=int, default=0,
                    help="run those passes with client and server on this CPU (-1: wherever the scheduler puts them)")
    ap.add_argument("--phase", choices=("first", "later", "cold", "folders"), default="later",
                    help="first: only the first SELECT of the fresh Maildir; later: the rest (restart the server "
                         "between); cold: SELECT and SORT (DATE) on a server restarted again")
    ap.add_argument("--maildir", help="the user's Maildir (INBOX), for new_mail")
    ap.add_argument("--owner", help="uid:gid the delivered files get")
    ap.add_argument("--new-mail", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--tag", default="")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    pids = [int(p) for p in a.server_pids.split(",") if p]
    problems, ops = [], {}

    def session():
        c = Imap(a.port, a.timeout)
        c.cmd(f'LOGIN "{a.user}" "{a.password}"')
        return c

    def select(c):
        lines, _ = c.cmd("SELECT INBOX")
        n = next((int(m.group(1)) for m in (re.match(rb"^\* (\d+) EXISTS", x) for x in lines) if m), None)
        if n != a.msgs:
            problems.append(f"SELECT: {n} EXISTS, want {a.msgs}")
        return lines

    def record(name, cpu, wall, runs, source=None):
        ops[name] = {"cpu_ms": round(cpu, 1), "wall_ms": round(wall, 1), "runs": runs,
                     "cpu_source": source or getattr(measure, "source", "ticks")}
        print(f"   {a.tag} {name}: {cpu:.1f} ms CPU, {wall:.1f} ms wall (x{runs})", flush=True)

    def sort_date(c, label):
        """UID SORT (DATE) ALL as `label`, if the server offers SORT"""
        caps, _ = c.cmd("CAPABILITY")
        if not any(b" SORT" in x for x in caps):
            return
        cpu, wall, lines = measure(pids, lambda: c.cmd("UID SORT (DATE) UTF-8 ALL")[0])
        record(label, cpu, wall, 1)
        n = sum(len(x.split()) - 2 for x in lines if x.startswith(b"* SORT"))
        if n != a.msgs:
            problems.append(f"SORT: {n} UIDs, want {a.msgs}")

    if a.phase == "first":
        c = session()
        cpu, wall, _ = measure(pids, lambda: select(c))
        record("first_select", cpu, wall, 1)
        c.close()
        return finish(a, ops, problems, {})

    if a.phase == "folders":
        c = session()
        cpu, wall, lines = measure(pids, lambda: c.cmd('LIST "" "*"')[0])
        record("list_folders", cpu, wall, 1)
        names = [x for x in lines if x.startswith(b"* LIST") and b"Folder" in x]
        if len(names) != a.folders:
            problems.append(f"LIST: {len(names)} folders, want {a.folders}")

        def status_all():
            bad = 0
            for f in range(1, a.folders + 1):
                got, _ = c.cmd(f"STATUS Folder{f:04d} (MESSAGES UNSEEN UIDNEXT)")
                items = {k: int(v) for x in got if x.startswith(b"* STATUS")
                         for k, v in re.findall(rb"(MESSAGES|UNSEEN|UIDNEXT) (\d+)", x)}
                n = a.folder_msgs
                if items != {b"MESSAGES": n, b"UNSEEN": n, b"UIDNEXT": n + 1}:
                    bad += 1
            return bad
        cpu, wall, bad = measure(pids, status_all)
        record("status_first", cpu, wall, 1)
        bad_again = 0
        # Again, and as many NOOPs (round trips that do nothing; cmd()
        # checks each is OK): the floor under `status`. Alternated, the
        # median of --rounds each: on a shared machine one pass of ~0.1 s
        # CPU moves by half.
        # User-space CPU, summed over the passes (10 ms ticks): the
        # servers' own code; the rest is the kernel's socket and file work.
        again, noops, user = [], [], {"status": 0.0, "noop": 0.0}
        everywhere = set_affinity(pids, {a.pin_cpu}) if a.pin_cpu >= 0 else None

        def timed(label, fn):
            """(ms CPU from schedstat, ms wall, fn's result)"""
            u0, c0, t0 = proc_tree_stats(pids)["user_s"], tree_cpu_ns(pids), time.monotonic()
            out = fn()
            t1, c1 = time.monotonic(), tree_cpu_ns(pids)
            user[label] += (proc_tree_stats(pids)["user_s"] - u0) * 1000
            return (c1 - c0) / 1e6, (t1 - t0) * 1000, out
        for _ in range(a.rounds):
            cpu, wall, b = timed("status", status_all)
            again.append((cpu, wall))
            bad_again += b
            noops.append(timed("noop", lambda: [c.cmd("NOOP") for _ in range(a.folders)])[:2])
        if everywhere:
            set_affinity(pids, everywhere)
        for label, runs in (("status", again), ("noop", noops)):
            record(label, statistics.median(x[0] for x in runs), statistics.median(x[1] for x in runs), len(runs),
                   "schedstat")
            ops[label]["user_ms_total"] = round(user[label], 1)
            ops[label]["pinned_cpu"] = a.pin_cpu if a.pin_cpu >= 0 else None
        if bad:
            problems.append(f"status_first: {bad} of {a.folders} STATUS answers wrong")
        if bad_again:
            problems.append(f"status: {bad_again} of {a.folders * a.rounds} STATUS answers wrong")
        c.close()
        return finish(a, ops, problems, {})

    if a.phase == "cold":
        c = session()
        cpu, wall, _ = measure(pids, lambda: select(c))
        record("select_cold", cpu, wall, 1)
        sort_date(c, "sort_date_cold")
        c.close()
        return finish(a, ops, problems, {})

    # later sessions, on a server restarted since the first one: its
    # memory before any session, and while one holds the mailbox
    time.sleep(0.5)
    m0 = proc_tree_stats(pids)
    conns = [session() for _ in range(a.repeat)]
    it = iter(conns)
    cpu, wall, _ = measure(pids, lambda: select(next(it)), a.repeat)
    record("select", cpu, wall, a.repeat)
    for x in conns[1:]:
        x.close()
    c = conns[0]
    time.sleep(1)
    m1 = proc_tree_stats(pids)
    mem = {"rss_growth_b_per_msg": round((m1["rss_kb"] - m0["rss_kb"]) * 1024 / a.msgs),
           "pss_growth_b_per_msg": round((m1["pss_kb"] - m0["pss_kb"]) * 1024 / a.msgs)}
    print(f"   {a.tag} memory while one session holds it: RSS +{mem['rss_growth_b_per_msg']} B, "
          f"PSS +{mem['pss_growth_b_per_msg']} B per message", flush=True)

    def uids_of(lines):
        return [int(m.group(1)) for m in (re.search(rb"UID (\d+)", x) for x in lines) if m]
    cpu, wall, lines = measure(pids, lambda: c.cmd("UID FETCH 1:* (FLAGS UID)")[0], a.repeat)
    record("fetch_flags", cpu, wall, a.repeat)
    if len(set(uids_of(lines))) != a.msgs:
        problems.append(f"FETCH 1:*: {len(set(uids_of(lines)))} UIDs, want {a.msgs}")
    cpu, wall, lines = measure(pids, lambda: c.cmd("UID SEARCH UNSEEN")[0], a.repeat)
    record("search_unseen", cpu, wall, a.repeat)
    hits = sum(len(x.split()) - 2 for x in lines if x.startswith(b"* SEARCH"))
    if hits != a.msgs:
        problems.append(f"SEARCH UNSEEN: {hits} hits, want {a.msgs} (all unseen)")
    for label in ("search_subject_first", "search_subject"):
        cpu, wall, lines = measure(pids, lambda: c.cmd(f'SEARCH SUBJECT "{a.subject}"')[0])
        record(label, cpu, wall, 1)
        hits = sum(len(x.split()) - 2 for x in lines if x.startswith(b"* SEARCH"))
        if hits < 1:
            problems.append(f"SEARCH SUBJECT {a.subject!r}: no hit")
    sort_date(c, "sort_date")
    if a.maildir and a.new_mail > 0:
        new_mail(a, c, pids, record, problems)
    c.close()
    return finish(a, ops, problems, mem)


def new_mail(a, c, pids, record, problems):
    """--new-mail deliveries into new/ while `c` IDLEs; each waited for"""
    uid, gid = (int(x) for x in (a.owner or f"{os.getuid()}:{os.getgid()}").split(":"))
    c.n += 1
    tag = b"r%d" % c.n
    c.s.sendall(tag + b" IDLE\r\n")
    if not c._line().startswith(b"+"):
        problems.append("IDLE: no continuation")
        return
    want = a.msgs

    def deliver_all():
        nonlocal want
        for i in range(a.new_mail):
            name = f"{int(time.time())}.M{i:06d}P{os.getpid()}.bench-lda"
            tmp = os.path.join(a.maildir, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(b"Subject: new %d\r\n\r\nbody\r\n" % i)
            os.chown(tmp, uid, gid)
            os.rename(tmp, os.path.join(a.maildir, "new", name))
            want += 1
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                m = re.match(rb"^\* (\d+) EXISTS", c._line())
                if m and int(m.group(1)) >= want:
                    break
            else:
                problems.append(f"new_mail: message {i + 1} not announced within 60 s")
                return
    cpu, wall, _ = measure(pids, deliver_all)
    record("new_mail", cpu / a.new_mail, wall / a.new_mail, a.new_mail)
    c.s.sendall(b"DONE\r\n")
    while not c._line().startswith(tag + b" "):
        pass


def finish(a, ops, problems, extra):
    res = dict({"server": a.tag, "phase": a.phase, "msgs": a.msgs, "ops": ops, "ok": not problems,
                "problems": problems[:5]}, **extra)
    if a.json_out:
        with open(a.json_out, "a") as f:
            f.write(json.dumps(res) + "\n")
    print(f"imap_large: {a.tag} {a.phase}: {a.msgs} messages, problems {len(problems)}"
          + ("".join(f"\n  problem: {p}" for p in problems[:5])))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
