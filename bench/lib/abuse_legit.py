#!/usr/bin/env python3
"""abuse_legit.py -- the legitimate load of bench/abuse/run.sh (standard library only).

All clients connect from 127.0.0.1 (the attackers use other 127.x addresses)
over the plain listeners, as the other benchmarks' clients do (both servers
allow a password without TLS from this host). From --start-at, for --duration
seconds, each protocol in its own process (asyncio inside):

  SMTP  --smtp-clients senders on --smtp-port, one message per connection
        (EHLO, MAIL, RCPT TO --smtp-rcpt, DATA, QUIT), --smtp-size bytes, each
        sender paced to --smtp-rate messages/s (0: as fast as it can). Every
        message carries "X-Bench-Id: <tag>-<client>-<n>"; the ids of the messages
        the server answered 250 go to --accepted-out, for --check-maildir.
  IMAP  --imap-clients sessions (the users of --imap-userfile, one each) looping over
        connect, LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS), --imap-bodies x
        UID FETCH n (BODY.PEEK[]), IDLE (held --imap-idle s; timed until the "+"),
        DONE, NOOP, LOGOUT, with --imap-think s between commands.
  POP3  --pop3-clients pullers (the users of --pop3-userfile), each looping over a
        whole pull: connect, USER, PASS, STAT, UIDL, RETR 1..n, QUIT (no DELE), then
        --pop3-pause s.

Reports per protocol: operations done (messages accepted, commands, pulls), the
rate, p50/p99 latency (SMTP: connect until the 250 after the data; IMAP: every
command and the connect+greeting; POP3: the whole pull), and errors (refused or
failed connections, timeouts, unexpected replies) with samples.

--check-maildir DIR --accepted FILE: which accepted messages are files in DIR
(new/ and cur/): accepted, found, lost, duplicated, and found but not accepted.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time

sys.dont_write_bytecode = True
ERRS = (OSError, asyncio.TimeoutError, ValueError, IndexError, EOFError)


class ProtoError(Exception):
    pass


class C:
    def __init__(self, r, w, to):
        self.r, self.w, self.to, self.buf = r, w, to, bytearray()

    async def fill(self):
        d = await asyncio.wait_for(self.r.read(262144), self.to)
        if not d:
            raise ProtoError("connection closed by the server")
        self.buf += d

    async def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                l = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return l.decode("latin-1")
            await self.fill()

    async def smtp(self, cmd=None, want="2"):
        if cmd is not None:
            self.w.write(cmd)
            await self.w.drain()
        while True:
            l = await self.line()
            if len(l) < 4 or l[3] != "-":
                break
        if not l.startswith(want):
            raise ProtoError("%s -> %s" % ((cmd or b"greeting")[:20].decode(errors="replace").strip(), l[:100]))
        return l

    async def imap(self, tag, cmd):
        self.w.write(tag + b" " + cmd + b"\r\n")
        await self.w.drain()
        t = tag.decode() + " "
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                await self.fill()
                continue
            l = bytes(self.buf[:i]).decode("latin-1")
            if l.endswith("}") and "{" in l:      # a literal: skip its bytes
                n = int(l[l.rindex("{") + 1:-1].rstrip("+"))
                while len(self.buf) < i + 2 + n:
                    await self.fill()
                del self.buf[:i + 2 + n]
                continue
            del self.buf[:i + 2]
            if l.startswith(t):
                if not l[len(t):].startswith("OK"):
                    raise ProtoError("%s -> %s" % (cmd.split(b" ")[0].decode(), l[:100]))
                return

    async def pop(self, cmd, multi=False):
        self.w.write(cmd + b"\r\n")
        await self.w.drain()
        l = await self.line()
        if not l.startswith("+OK"):
            raise ProtoError("%s -> %s" % (cmd.split(b" ")[0].decode(), l[:100]))
        if multi:
            while True:
                i = self.buf.find(b"\r\n.\r\n")
                if i >= 0:
                    del self.buf[:i + 5]
                    return
                if self.buf.startswith(b".\r\n"):
                    del self.buf[:3]
                    return
                await self.fill()


async def opener(a):
    r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port, local_addr=("127.0.0.1", 0),
                                                          limit=1 << 22), a.io_timeout)
    return C(r, w, a.io_timeout), w


async def close(w):
    try:
        w.close()
        await asyncio.wait_for(w.wait_closed(), 2)
    except Exception:
        pass


class St:
    def __init__(self):
        self.lat, self.ops, self.errors, self.samples, self.extra = [], 0, 0, {}, {}
        self.accepted = []

    def err(self, e):
        self.errors += 1
        k = "%s: %s" % (type(e).__name__, str(e)[:100])
        if len(self.samples) < 8 or k in self.samples:
            self.samples[k] = self.samples.get(k, 0) + 1


# ------------------------------------------------------------------ SMTP
async def smtp_client(a, i, st, deadline):
    body = ("From: <load%d@example.org>\r\nTo: <%s>\r\nSubject: abuse bench\r\n" % (i, a.smtp_rcpt)).encode()
    filler = (b"x" * 76 + b"\r\n") * max(1, a.smtp_size // 78)
    n, nxt = 0, time.time()
    while time.time() < deadline:
        if a.smtp_rate > 0:
            now = time.time()
            if nxt > now:
                await asyncio.sleep(min(nxt - now, deadline - now))
                if time.time() >= deadline:
                    break
            nxt = max(nxt, time.time() - 1.0 / a.smtp_rate) + 1.0 / a.smtp_rate
        n += 1
        mid = "%s-%d-%d" % (a.tag, i, n)
        t0, w = time.perf_counter(), None
        try:
            c, w = await opener(a)
            await c.smtp(None)
            await c.smtp(b"EHLO legit.example\r\n")
            await c.smtp(b"MAIL FROM:<load%d@example.org>\r\n" % i)
            await c.smtp(b"RCPT TO:<%s>\r\n" % a.smtp_rcpt.encode())
            await c.smtp(b"DATA\r\n", "354")
            c.w.write(body + b"X-Bench-Id: " + mid.encode() + b"\r\nMessage-ID: <" + mid.encode()
                      + b"@legit.example>\r\n\r\n" + filler + b".\r\n")
            await c.smtp(b"", "250")
            st.accepted.append(mid)
            st.lat.append(time.perf_counter() - t0)
            st.ops += 1
            try:
                await asyncio.wait_for(c.smtp(b"QUIT\r\n"), 5)
            except ERRS + (ProtoError,):
                pass
        except ERRS + (ProtoError,) as e:
            st.err(e)
            await asyncio.sleep(0.1)
        finally:
            if w is not None:
                await close(w)


# ------------------------------------------------------------------ IMAP
async def imap_client(a, i, st, deadline):
    user, pw = a.imap_users[i % len(a.imap_users)]
    rnd = random.Random(i)
    while time.time() < deadline:
        w = None
        try:
            t0 = time.perf_counter()
            c, w = await opener(a)
            l = await c.line()
            if not l.startswith("* OK"):
                raise ProtoError("greeting -> %s" % l[:100])
            st.lat.append(time.perf_counter() - t0)
            n = 0

            async def cmd(line, check=None):
                nonlocal n
                await asyncio.sleep(a.imap_think)
                n += 1
                t = time.perf_counter()
                await c.imap(b"a%d" % n, line)
                st.lat.append(time.perf_counter() - t)
                st.ops += 1
            await cmd(b'LOGIN "%s" "%s"' % (user.encode(), pw.encode()))
            await cmd(b"SELECT INBOX")
            await cmd(b"UID FETCH 1:* (FLAGS)")
            for _ in range(a.imap_bodies):
                await cmd(b"UID FETCH %d (BODY.PEEK[])" % rnd.randint(1, a.imap_msgs))
            # IDLE: timed until the continuation; held; DONE timed until the tagged OK
            await asyncio.sleep(a.imap_think)
            n += 1
            t = time.perf_counter()
            c.w.write(b"a%d IDLE\r\n" % n)
            await c.w.drain()
            while True:
                l = await c.line()
                if l.startswith("+"):
                    break
                if l.startswith("a%d " % n):
                    raise ProtoError("IDLE -> %s" % l[:100])
            st.lat.append(time.perf_counter() - t)
            st.ops += 1
            await asyncio.sleep(a.imap_idle)
            t = time.perf_counter()
            c.w.write(b"DONE\r\n")
            await c.w.drain()
            while True:
                l = await c.line()
                if l.startswith("a%d " % n):
                    if not l[len("a%d " % n):].startswith("OK"):
                        raise ProtoError("DONE -> %s" % l[:100])
                    break
            st.lat.append(time.perf_counter() - t)
            st.ops += 1
            await cmd(b"NOOP")
            await cmd(b"LOGOUT")
            st.extra["sessions"] = st.extra.get("sessions", 0) + 1
        except ERRS + (ProtoError,) as e:
            st.err(e)
            await asyncio.sleep(0.1)
        finally:
            if w is not None:
                await close(w)


# ------------------------------------------------------------------ POP3
async def pop3_client(a, i, st, deadline):
    user, pw = a.pop3_users[i % len(a.pop3_users)]
    while time.time() < deadline:
        w = None
        try:
            t0 = time.perf_counter()
            c, w = await opener(a)
            l = await c.line()
            if not l.startswith("+OK"):
                raise ProtoError("greeting -> %s" % l[:100])
            await c.pop(b"USER " + user.encode())
            await c.pop(b"PASS " + pw.encode())
            w.write(b"STAT\r\n")
            await w.drain()
            l = await c.line()
            if not l.startswith("+OK"):
                raise ProtoError("STAT -> %s" % l[:100])
            nmsg = int(l.split()[1])
            await c.pop(b"UIDL", multi=True)
            for k in range(1, nmsg + 1):
                await c.pop(b"RETR %d" % k, multi=True)
            await c.pop(b"QUIT")
            st.lat.append(time.perf_counter() - t0)
            st.ops += 1
            st.extra["messages"] = st.extra.get("messages", 0) + nmsg
        except ERRS + (ProtoError,) as e:
            st.err(e)
        finally:
            if w is not None:
                await close(w)
        await asyncio.sleep(max(0.0, min(a.pop3_pause, deadline - time.time())))


# ------------------------------------------------------------------ frame
def pct(v, f):
    v = sorted(v)
    return v[min(len(v) - 1, int(f * len(v)))] if v else None


def ms(x):
    return None if x is None else round(x * 1e3, 1)


async def proto_main(a, proto):
    fn, n = {"smtp": (smtp_client, a.smtp_clients), "imap": (imap_client, a.imap_clients),
             "pop3": (pop3_client, a.pop3_clients)}[proto]
    a.port = getattr(a, proto + "_port")
    delay = a.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    st = St()
    t0 = time.time()
    deadline = t0 + a.duration
    tasks = [asyncio.create_task(fn(a, i, st, deadline)) for i in range(n)]
    hard = deadline + a.io_timeout + 10
    while not all(t.done() for t in tasks) and time.time() < hard:
        await asyncio.sleep(0.1)
    for t in tasks:
        if not t.done():
            t.cancel()
            st.err(RuntimeError("client still busy %.0f s after the end: cancelled" % (a.io_timeout + 10)))
    await asyncio.gather(*tasks, return_exceptions=True)
    el = time.time() - t0
    return dict(proto=proto, clients=n, elapsed_s=round(el, 2), ops=st.ops,
                rate=round(st.ops / min(el, a.duration + 1e-9) if el > 0 else 0, 2),
                p50_ms=ms(pct(st.lat, .5)), p99_ms=ms(pct(st.lat, .99)), max_ms=ms(max(st.lat) if st.lat else None),
                errors=st.errors, error_samples=st.samples, accepted=st.accepted, **st.extra)


def proto_proc(a, proto, conn):
    try:
        res = asyncio.run(proto_main(a, proto))
    except BaseException as e:
        res = dict(proto=proto, error=repr(e), ops=0, errors=1)
    conn.send(res)
    conn.close()


def users(path):
    return [tuple(l.split()[:2]) for l in open(path) if l.strip()] if path else []


def check_maildir(d, accepted_file):
    acc = [l.strip() for l in open(accepted_file) if l.strip()]
    want = set(acc)
    found = {}
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        for name in (os.listdir(p) if os.path.isdir(p) else []):
            try:
                with open(os.path.join(p, name), "rb") as f:
                    head = f.read(4096)
            except OSError:
                continue
            i = head.find(b"X-Bench-Id: ")
            mid = head[i + 12:head.index(b"\n", i)].strip().decode() if i >= 0 else "(none)"
            found[mid] = found.get(mid, 0) + 1
    lost = sorted(want - set(found))
    return dict(maildir=d, accepted=len(acc), files=sum(found.values()), found=len(want & set(found)),
                lost=len(lost), lost_samples=lost[:5], duplicated=sum(v - 1 for k, v in found.items() if k in want and v > 1),
                not_accepted=sum(v for k, v in found.items() if k not in want))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--start-at", type=float, default=0)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--io-timeout", type=float, default=60)
    ap.add_argument("--tag", default="run")
    ap.add_argument("--smtp-port", type=int)
    ap.add_argument("--smtp-clients", type=int, default=20)
    ap.add_argument("--smtp-rate", type=float, default=5)
    ap.add_argument("--smtp-size", type=int, default=2048)
    ap.add_argument("--smtp-rcpt", default="sink@example.com")
    ap.add_argument("--imap-port", type=int)
    ap.add_argument("--imap-clients", type=int, default=20)
    ap.add_argument("--imap-userfile")
    ap.add_argument("--imap-bodies", type=int, default=5)
    ap.add_argument("--imap-msgs", type=int, default=100, help="messages in each IMAP INBOX (UIDs 1..n)")
    ap.add_argument("--imap-idle", type=float, default=1.0)
    ap.add_argument("--imap-think", type=float, default=0.05)
    ap.add_argument("--pop3-port", type=int)
    ap.add_argument("--pop3-clients", type=int, default=5)
    ap.add_argument("--pop3-userfile")
    ap.add_argument("--pop3-pause", type=float, default=1.0)
    ap.add_argument("--accepted-out")
    ap.add_argument("--json-out")
    ap.add_argument("--check-maildir")
    ap.add_argument("--accepted")
    a = ap.parse_args()
    if a.check_maildir:
        print(json.dumps(check_maildir(a.check_maildir, a.accepted)))
        return
    a.imap_users, a.pop3_users = users(a.imap_userfile), users(a.pop3_userfile)
    if not a.start_at:
        a.start_at = time.time()
    protos = [p for p in ("smtp", "imap", "pop3") if getattr(a, p + "_port") and getattr(a, p + "_clients") > 0]
    ctx = multiprocessing.get_context("fork")
    procs = []
    for p in protos:
        rd, wr = ctx.Pipe(duplex=False)
        pr = ctx.Process(target=proto_proc, args=(a, p, wr), daemon=True)
        pr.start()
        wr.close()
        procs.append((p, pr, rd))
    out = {"tag": a.tag, "start_at": a.start_at, "duration_s": a.duration}
    hard = a.start_at + a.duration + a.io_timeout + 30
    for p, pr, rd in procs:
        res = None
        while time.time() < hard:
            if rd.poll(0.5):
                try:
                    res = rd.recv()
                except EOFError:
                    res = dict(proto=p, error="process died", ops=0, errors=1)
                break
        pr.join(5)
        if pr.is_alive():
            pr.kill()
        out[p] = res or dict(proto=p, error="no result", ops=0, errors=1)
    acc = out.get("smtp", {}).pop("accepted", [])
    for p in ("imap", "pop3"):
        out.get(p, {}).pop("accepted", None)
    if a.accepted_out:
        with open(a.accepted_out, "w") as f:
            f.write("".join(x + "\n" for x in acc))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(out, f)
    print("abuse_legit: " + " ".join("%s: %s ops, %s/s, p50/p99 %s/%s ms, errors %s" % (
        p, out[p].get("ops"), out[p].get("rate"), out[p].get("p50_ms"), out[p].get("p99_ms"), out[p].get("errors"))
        for p in protos), flush=True)


if __name__ == "__main__":
    main()
