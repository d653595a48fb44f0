#!/usr/bin/env python3
"""abuse_attack.py -- bounded hostile clients for bench/abuse/run.sh (standard library only).

Every attacker connects from a loopback address other than 127.0.0.1 (the
legitimate clients' address): 127.0.<kind>.<n>, n = 1..<ips of that kind>, so
the server sees many attacking IPs and one legitimate one. Each kind runs in
its own process (asyncio inside), from --start-at (a Unix time, so that the
run script can line them up with the legitimate load) for --duration seconds,
or until --stop-file exists (the run script's memory guard). Every attacker
that loses its connection opens a new one after a short pause, so the
pressure is constant; every wait is bounded by the end of the attack.

Kinds (counts are the number of simultaneous attacker connections):
  guess     127.0.1.x  password guessers on the --guess-listeners (submission: EHLO,
                       STARTTLS when offered, AUTH PLAIN; imaps: LOGIN; pop3s: USER/PASS),
                       alternating the real user name --guess-user and random names,
                       always with wrong passwords, as many guesses per connection as
                       the server answers. Every answer is timed per source IP.
  idle      127.0.2.x  connections opened on every listener and left idle (nothing sent;
                       the greeting is read, to see a refusal).
  slow      127.0.3.x  slowloris: one byte every --slow-gap seconds, on every listener:
                       inside a command line, in the middle of DATA (port 25, after MAIL
                       and RCPT), inside an IMAP literal (LOGIN {64}), after STARTTLS or
                       over implicit TLS (mode "line": in a command line; "deep":
                       in DATA, in a literal, after STARTTLS, where the listener has one).
  garbage   127.0.4.x  oversized literals (IMAP LOGIN {999999999} and {999999999+}),
                       SMTP BDAT 999999999 and DATA, and lines of random bytes without an
                       end (SMTP, POP3), sent at --garbage-rate bytes/s per connection,
                       at most --garbage-max bytes per connection.
  tls       127.0.5.x  TLS-handshake flood on the TLS listeners (and submission after
                       STARTTLS): half a ClientHello then a stall, a whole ClientHello and
                       no answer to the server's flight, or a junk ClientHello.

Output (--json-out, and the last line on stdout): per kind, connections tried, refused
at connect (refused, reset, timed out), refused by the server's first reply (421, BYE,
-ERR), closed by the server later (with the median and max time it held them), still
open at the end, and what kind-specific things happened; for the guessers the answers
per source IP per minute in the first --window seconds and after.

  abuse_attack.py --listeners smtp=5525,submission=5587,... --duration 120 --json-out a.json
"""
import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import random
import ssl
import statistics
import sys
import time

sys.dont_write_bytecode = True

PROTO = {"smtp": "smtp", "submission": "smtp", "submissions": "smtp", "imap": "imap", "imaps": "imap",
         "pop3": "pop3", "pop3s": "pop3"}
IMPLICIT_TLS = {"submissions", "imaps", "pop3s"}
KIND_NET = {"guess": 1, "idle": 2, "slow": 3, "garbage": 4, "tls": 5}
READ_MAX = 65536


def tls_ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


CTX = None


def client_hello():
    """the bytes of a fresh TLS ClientHello (what the first flight of a real client looks like)"""
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls_ctx().wrap_bio(i, o, server_hostname="mail.example.com")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return o.read()


class Stats:
    def __init__(self):
        self.c = {}               # counters
        self.hold = []            # seconds the server kept a connection before closing it
        self.first_lines = {}     # the server's refusals, a few samples
        self.by = {}              # "listener mode" -> closed_by_server, hold_max_s, open_at_end, conns

    def inc(self, k, n=1):
        self.c[k] = self.c.get(k, 0) + n

    def by_inc(self, where, k, n=1):
        d = self.by.setdefault(where, {})
        d[k] = d.get(k, 0) + n

    def sample(self, line):
        k = line[:60]
        if len(self.first_lines) < 12 or k in self.first_lines:
            self.first_lines[k] = self.first_lines.get(k, 0) + 1


class Closed(Exception):
    """the server closed the connection (EOF or reset)"""


class Ctx:
    """one attacker connection: reader, writer, the time it was opened, the attack's end"""

    def __init__(self, a, st, listener, ip):
        self.a, self.st, self.listener, self.ip = a, st, listener, ip
        self.port = a.listeners[listener]
        self.r = self.w = None
        self.t_open = None
        self.buf = b""
        self.hold = True
        self.mode = None

    def left(self):
        return self.a.end - time.time()

    async def open(self, tls=None):
        """connect from self.ip; False (and counted) if the server refused or did not accept in 10 s"""
        self.st.inc("conns")
        if os.path.exists(self.a.stop_file):
            return False
        try:
            self.r, self.w = await asyncio.wait_for(
                asyncio.open_connection(self.a.host, self.port, local_addr=(self.ip, 0), ssl=tls,
                                        server_hostname="mail.example.com" if tls else None,
                                        ssl_handshake_timeout=max(1.0, min(30.0, self.left())) if tls else None),
                max(0.5, min(10.0, self.left())))
        except asyncio.TimeoutError:
            self.st.inc("connect_timeout" if not tls else "tls_handshake_timeout")
            return False
        except ssl.SSLError:
            self.st.inc("tls_handshake_failed")
            return False
        except ConnectionRefusedError:
            self.st.inc("connect_refused")
            return False
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.st.inc("connect_reset")
            return False
        except OSError as e:
            self.st.inc("connect_error")
            self.st.sample("connect: %s" % e)
            return False
        self.t_open = time.time()
        self.st.by_inc(self.where(), "conns")
        return True

    async def read_some(self, limit=None):
        t = self.left() if limit is None else min(limit, self.left())
        if t <= 0:
            raise asyncio.TimeoutError
        try:
            d = await asyncio.wait_for(self.r.read(READ_MAX), t)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLError):
            raise Closed()
        if not d:
            raise Closed()
        return d

    async def line(self, limit=None):
        while b"\n" not in self.buf:
            self.buf += await self.read_some(limit)
            if len(self.buf) > 1 << 20:
                self.buf = self.buf[-4096:]
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out.decode("latin-1").rstrip("\r\n")

    async def smtp_reply(self, limit=None):
        """the last line of a (multi-line) SMTP reply, and all its lines"""
        lines = []
        while True:
            l = await self.line(limit)
            lines.append(l)
            if len(l) < 4 or l[3] != "-":
                return l, lines

    async def send(self, data):
        try:
            self.w.write(data)
            await asyncio.wait_for(self.w.drain(), max(0.1, self.left()))
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLError):
            raise Closed()
        except RuntimeError:          # writing to a transport that is closing
            raise Closed()

    async def starttls(self):
        try:
            await asyncio.wait_for(self.w.start_tls(CTX, server_hostname="mail.example.com"),
                                   max(0.5, min(30.0, self.left())))
        except asyncio.TimeoutError:
            self.st.inc("tls_handshake_timeout")
            raise
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError):
            raise Closed()

    async def greeting(self):
        """the server's greeting (first line): None if it is a refusal (counted)"""
        p = PROTO[self.listener]
        if p == "smtp":
            l, _ = await self.smtp_reply(30)
            ok = l.startswith("220")
        else:
            l = await self.line(30)
            ok = l.startswith("* OK") if p == "imap" else l.startswith("+OK")
        if not ok:
            self.st.inc("refused_at_greeting")
            self.st.sample(l)
            return None
        return l

    def where(self):
        return "%s %s" % (self.listener, self.mode) if self.mode is not None else self.listener

    def closed_by_server(self):
        held = time.time() - self.t_open
        self.st.inc("closed_by_server")
        self.st.hold.append(held)
        self.st.by_inc(self.where(), "closed_by_server")
        d = self.st.by[self.where()]
        d["hold_max_s"] = round(max(d.get("hold_max_s", 0), held), 1)
        d["hold_sum_s"] = round(d.get("hold_sum_s", 0) + held, 1)

    def open_at_end(self):
        self.st.inc("open_at_end")
        self.st.by_inc(self.where(), "open_at_end")

    async def close(self):
        if self.w is not None:
            try:
                self.w.close()
                await asyncio.wait_for(self.w.wait_closed(), 1)
            except Exception:
                pass
        self.w = None
        self.buf = b""


async def run_conn(ctx, body):
    """one attacker connection: body(ctx) until the server closes it or the attack ends"""
    try:
        await body(ctx)
        # the body has nothing more to do: hold the connection until the server closes it
        # (a guesser that got no further closes it and starts again)
        while ctx.hold and ctx.left() > 0:
            await ctx.read_some()
        if ctx.hold:
            ctx.open_at_end()
    except Closed:
        ctx.closed_by_server()
    except asyncio.TimeoutError:
        if ctx.left() <= 0.05:
            ctx.open_at_end()
        else:
            ctx.st.inc("client_timeout")
    except (OSError, ValueError, IndexError, UnicodeError) as e:
        ctx.st.inc("client_error")
        ctx.st.sample("%s: %s" % (type(e).__name__, e))
    finally:
        await ctx.close()


async def loop_slot(a, st, listener, ip, body, gap, tls_first=None, handle=run_conn, mode=None, hold=True):
    """keep one attacker connection going until the end: reconnect gap s after every loss"""
    while time.time() < a.end - 0.2 and not os.path.exists(a.stop_file):
        ctx = Ctx(a, st, listener, ip)
        ctx.mode, ctx.hold = mode, hold
        if await ctx.open(tls_first(listener) if tls_first else None):
            await handle(ctx, body)
        else:
            await asyncio.sleep(min(1.0, max(0.0, a.end - time.time())))
        await asyncio.sleep(min(gap, max(0.0, a.end - time.time())))


def implicit(listener):
    return CTX if listener in IMPLICIT_TLS else None


# ------------------------------------------------------------------ guessers
GUESS = {"t": [], "ip": [], "listener": [], "verdict": []}


async def smtp_login_ready(ctx):
    """EHLO, STARTTLS when offered (then EHLO again): True when AUTH may be tried"""
    if await ctx.greeting() is None:
        return False
    await ctx.send(b"EHLO guesser.example\r\n")
    l, lines = await ctx.smtp_reply(60)
    if not l.startswith("250"):
        ctx.st.sample(l)
        return False
    if ctx.listener != "submissions" and any("STARTTLS" in x.upper() for x in lines):
        await ctx.send(b"STARTTLS\r\n")
        l, _ = await ctx.smtp_reply(60)
        if not l.startswith("220"):
            ctx.st.sample(l)
            return False
        await ctx.starttls()
        ctx.buf = b""
        await ctx.send(b"EHLO guesser.example\r\n")
        l, _ = await ctx.smtp_reply(60)
        if not l.startswith("250"):
            ctx.st.sample(l)
            return False
    return True


def guess_creds(a, rnd):
    user = a.guess_user if rnd.random() < 0.5 else "%s%d@example.com" % (
        rnd.choice(["admin", "info", "sales", "test", "office", "support", "user"]), rnd.randrange(10000))
    return user, "wrong-%08x" % rnd.getrandbits(32)


def record_guess(ctx, verdict):
    GUESS["t"].append(round(time.time() - ctx.a.start_at, 3))
    GUESS["ip"].append(ctx.ip)
    GUESS["listener"].append(ctx.listener)
    GUESS["verdict"].append(verdict)
    ctx.st.inc("answers_" + verdict)


async def guess_body(ctx):
    a, p = ctx.a, PROTO[ctx.listener]
    rnd = random.Random()
    if p == "smtp":
        if not await smtp_login_ready(ctx):
            return
    elif await ctx.greeting() is None:
        return
    n = 0
    while ctx.left() > 0:
        user, pw = guess_creds(a, rnd)
        n += 1
        ctx.st.inc("guesses_sent")
        if p == "smtp":
            tok = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode())
            await ctx.send(b"AUTH PLAIN " + tok + b"\r\n")
            l, _ = await ctx.smtp_reply()
            if l.startswith("535"):
                record_guess(ctx, "fail")
            elif l.startswith("235"):
                record_guess(ctx, "success")
                return
            else:
                record_guess(ctx, "refused")
                ctx.st.sample(l)
                if l[:1] == "5" or l.startswith("421"):
                    return
        elif p == "imap":
            tag = "g%d" % n
            await ctx.send(('%s LOGIN "%s" "%s"\r\n' % (tag, user, pw)).encode())
            while True:
                l = await ctx.line()
                if l.startswith(tag + " "):
                    break
                if l.startswith("* BYE"):
                    ctx.st.sample(l)
            rest = l[len(tag) + 1:]
            if rest.startswith("OK"):
                record_guess(ctx, "success")
                return
            if rest.startswith("NO") and not any(c in rest for c in ("[UNAVAILABLE]", "[LIMIT]", "[INUSE]")):
                record_guess(ctx, "fail")
            else:
                record_guess(ctx, "refused")
                ctx.st.sample(l)
        else:
            await ctx.send(("USER %s\r\n" % user).encode())
            l = await ctx.line()
            if not l.startswith("+OK"):
                record_guess(ctx, "refused")
                ctx.st.sample(l)
                continue
            await ctx.send(("PASS %s\r\n" % pw).encode())
            l = await ctx.line()
            if l.startswith("+OK"):
                record_guess(ctx, "success")
                return
            if any(c in l for c in ("[SYS/", "[IN-USE]", "[LOGIN-DELAY]")):
                record_guess(ctx, "refused")
                ctx.st.sample(l)
            else:
                record_guess(ctx, "fail")


# ------------------------------------------------------------------ idle
async def idle_body(ctx):
    if implicit(ctx.listener) is None:
        await ctx.greeting()    # read it (a refusal is counted), then say nothing
    # implicit TLS: nothing sent at all, not even a ClientHello


# ------------------------------------------------------------------ slowloris
async def trickle(ctx, data):
    """data one byte every slow-gap seconds (then NOOP-like filler, until the end)"""
    nxt = time.time()
    for i in range(len(data)):
        await ctx.send(data[i:i + 1])
        ctx.st.inc("bytes_trickled")
        nxt += ctx.a.slow_gap
        # until the next byte is due, replies (e.g. to a line that finally ends) are read and dropped
        while time.time() < nxt:
            if ctx.left() <= 0:
                raise asyncio.TimeoutError
            try:
                d = await asyncio.wait_for(ctx.r.read(READ_MAX), min(nxt - time.time(), ctx.left()) + 0.001)
            except asyncio.TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                raise Closed()
            if not d:
                raise Closed()


async def slow_body(ctx):
    p, mode = PROTO[ctx.listener], ctx.mode
    if await ctx.greeting() is None:
        return
    filler = {"smtp": b"NOOP\r\n", "imap": b"n NOOP\r\n", "pop3": b"NOOP\r\n"}[p]
    if p == "smtp":
        if ctx.listener == "submission" and mode == "deep":
            ctx.st.inc("mode_after_starttls")
            await ctx.send(b"EHLO slow.example\r\n")
            l, lines = await ctx.smtp_reply(60)
            if any("STARTTLS" in x.upper() for x in lines):
                await ctx.send(b"STARTTLS\r\n")
                l, _ = await ctx.smtp_reply(60)
                if l.startswith("220"):
                    await ctx.starttls()
                    ctx.buf = b""
        if ctx.listener == "smtp" and mode == "deep":
            # in the middle of DATA: a real transaction to a real local user, then a trickle
            await ctx.send(b"EHLO slow.example\r\n")
            await ctx.smtp_reply(60)
            for cmd in (b"MAIL FROM:<slow@attacker.example>\r\n", b"RCPT TO:<%s>\r\n" % ctx.a.data_rcpt.encode(),
                        b"DATA\r\n"):
                await ctx.send(cmd)
                l, _ = await ctx.smtp_reply(60)
                if l[:1] not in ("2", "3"):
                    ctx.st.sample(l)
                    break
            else:
                ctx.st.inc("mode_in_data")
                await trickle(ctx, b"Subject: slow\r\n\r\n" + b"x" * 100000)
                return
        else:
            ctx.st.inc("mode_command_line")
        await trickle(ctx, b"EHLO slowloris.example\r\n" + filler * 100000)
    elif p == "imap":
        if mode == "deep":
            await ctx.send(b"s1 LOGIN {64}\r\n")
            l = await ctx.line(60)
            if l.startswith("+"):
                ctx.st.inc("mode_in_literal")
                await trickle(ctx, b"x" * 64 + b" y\r\n" + filler * 100000)
                return
            ctx.st.sample(l)
        ctx.st.inc("mode_command_line")
        await trickle(ctx, b"s2 LOGIN slowloris@example.com password\r\n" + filler * 100000)
    else:
        ctx.st.inc("mode_command_line")
        await trickle(ctx, b"USER slowloris@example.com\r\n" + filler * 100000)


# ------------------------------------------------------------------ oversized literals, garbage
GARBAGE_MODES = [("imap", "literal"), ("imaps", "literal_nonsync"), ("smtp", "bdat"), ("pop3", "garbage"),
                 ("smtp", "garbage"), ("imap", "literal_nonsync"), ("imaps", "literal"), ("smtp", "data"),
                 ("pop3s", "garbage"), ("submission", "garbage")]


async def pour(ctx, limit):
    """random bytes at garbage-rate bytes/s until limit bytes (no CR/LF, so never a line end)"""
    a = ctx.a
    chunk = os.urandom(8192).replace(b"\n", b"_").replace(b"\r", b"_")
    sent, t0 = 0, time.time()
    while sent < limit and ctx.left() > 0:
        await ctx.send(chunk)
        sent += len(chunk)
        ctx.st.inc("bytes_sent", len(chunk))
        ahead = sent / a.garbage_rate - (time.time() - t0)
        if ahead > 0:
            try:       # watch for the server's reply or close meanwhile
                d = await asyncio.wait_for(ctx.r.read(READ_MAX), min(ahead, max(0.01, ctx.left())))
                if not d:
                    raise Closed()
                ctx.st.inc("server_replied_meanwhile")
            except asyncio.TimeoutError:
                pass
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                raise Closed()
    if sent >= limit:
        ctx.st.inc("sent_whole_limit")


async def garbage_body(ctx):
    mode = ctx.mode
    if await ctx.greeting() is None:
        return
    ctx.st.inc("mode_" + mode)
    lim = ctx.a.garbage_max
    if mode in ("literal", "literal_nonsync"):
        if mode == "literal":
            await ctx.send(b"x1 LOGIN {999999999}\r\n")
            l = await ctx.line(60)
            if not l.startswith("+"):
                ctx.st.inc("literal_refused")
                ctx.st.sample(l)
                await pour(ctx, lim)      # and garbage anyway
                return
            ctx.st.inc("literal_accepted")
        else:
            await ctx.send(b"x1 LOGIN {999999999+}\r\n")
        await pour(ctx, lim)
    elif mode in ("bdat", "data"):
        await ctx.send(b"EHLO garbage.example\r\n")
        await ctx.smtp_reply(60)
        for cmd in (b"MAIL FROM:<g@attacker.example>\r\n", b"RCPT TO:<%s>\r\n" % ctx.a.data_rcpt.encode()):
            await ctx.send(cmd)
            l, _ = await ctx.smtp_reply(60)
            if not l.startswith("2"):
                ctx.st.sample(l)
        if mode == "bdat":
            await ctx.send(b"BDAT 999999999\r\n")
        else:
            await ctx.send(b"DATA\r\n")
            l, _ = await ctx.smtp_reply(60)
            if not l.startswith("354"):
                ctx.st.sample(l)
        await pour(ctx, lim)
    else:
        await pour(ctx, lim)


async def garbage_slot(a, st, i, ip):
    usable = [m for m in GARBAGE_MODES if m[0] in a.listeners
              and (not a.garbage_modes or "%s:%s" % m in a.garbage_modes)]
    listener, mode = usable[i % len(usable)]
    await loop_slot(a, st, listener, ip, garbage_body, 1.0, tls_first=implicit, mode=mode)


# ------------------------------------------------------------------ TLS handshake flood
async def tls_flood_body(ctx):
    mode = ctx.mode
    if ctx.listener == "submission":
        if await ctx.greeting() is None:
            return
        await ctx.send(b"EHLO tls.example\r\n")
        await ctx.smtp_reply(60)
        await ctx.send(b"STARTTLS\r\n")
        l, _ = await ctx.smtp_reply(60)
        if not l.startswith("220"):
            ctx.st.sample(l)
            return
    ctx.st.inc("mode_" + mode)
    if mode == "junk":
        junk = os.urandom(300)
        await ctx.send(b"\x16\x03\x01\x01\x2c" + junk)
    else:
        hello = client_hello()
        await ctx.send(hello[:len(hello) // 2] if mode == "half" else hello)
    # then never another byte: wait (at most tls-stall s) for the server to give up
    t_end = time.time() + ctx.a.tls_stall
    while time.time() < t_end:
        await ctx.read_some(t_end - time.time())
    ctx.st.inc("we_gave_up")
    ctx.st.by_inc(ctx.where(), "we_gave_up")


async def tls_handle(ctx, body):
    try:
        await body(ctx)
    except Closed:
        ctx.closed_by_server()
    except asyncio.TimeoutError:
        if ctx.left() <= 0.05:
            ctx.open_at_end()
        else:
            ctx.st.inc("we_gave_up")
            ctx.st.by_inc(ctx.where(), "we_gave_up")
    except (OSError, ValueError, IndexError, UnicodeError) as e:
        ctx.st.inc("client_error")
        ctx.st.sample("%s: %s" % (type(e).__name__, e))
    finally:
        await ctx.close()


async def tls_slot(a, st, i, ip):
    usable = [l for l in ("submissions", "imaps", "pop3s", "submission") if l in a.listeners]
    listener = usable[i % len(usable)]
    mode = ("half", "hello", "junk")[(i // len(usable)) % 3]
    await loop_slot(a, st, listener, ip, tls_flood_body, a.tls_gap, handle=tls_handle, mode=mode)


# ------------------------------------------------------------------ the processes
def ip_of(kind, i, nips):
    return "127.0.%d.%d" % (KIND_NET[kind], 1 + i % max(1, nips))


async def kind_main(a, kind):
    global CTX
    CTX = tls_ctx()
    st = Stats()
    n, nips = getattr(a, kind), getattr(a, kind + "_ips")
    listeners = list(a.listeners)
    delay = a.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    tasks = []
    for i in range(n):
        ip = ip_of(kind, i, nips)
        if kind == "guess":
            gl = [l for l in a.guess_listeners if l in a.listeners]
            coro = loop_slot(a, st, gl[i % len(gl)], ip, guess_body, 0.1, tls_first=implicit, hold=False)
        elif kind == "idle":    # plain TCP, even on the implicit-TLS listeners: not even a ClientHello
            coro = loop_slot(a, st, listeners[i % len(listeners)], ip, idle_body, 1.0)
        elif kind == "slow":    # every listener gets both of its modes
            coro = loop_slot(a, st, listeners[i % len(listeners)], ip, slow_body, 1.0, tls_first=implicit,
                             mode=("line", "deep")[(i // len(listeners)) % 2])
        elif kind == "garbage":
            coro = garbage_slot(a, st, i, ip)
        else:
            coro = tls_slot(a, st, i, ip)
        tasks.append(asyncio.create_task(coro))
        if i % 50 == 49:
            await asyncio.sleep(0.05)   # ramp up: 1,000 connections in about 1 s
    hard = a.end + 15
    while not all(t.done() for t in tasks) and time.time() < hard:
        if time.time() < a.end and os.path.exists(a.stop_file):
            a.end = time.time()          # the memory guard: every attacker ends now
            hard = a.end + 15
        await asyncio.sleep(0.2)
    for t in tasks:
        if not t.done():
            t.cancel()
            st.inc("cancelled_at_end")
    await asyncio.gather(*tasks, return_exceptions=True)
    hold = sorted(st.hold)
    res = dict(kind=kind, clients=n, ips=nips, counters=st.c, server_replies=st.first_lines,
               hold_p50_s=round(statistics.median(hold), 2) if hold else None,
               hold_max_s=round(hold[-1], 2) if hold else None, hold_n=len(hold), by=st.by)
    if kind == "guess":
        res["guesses"] = GUESS
    return res


def kind_proc(a, kind, conn):
    try:
        res = asyncio.run(kind_main(a, kind))
    except BaseException as e:   # report, never hang the parent
        res = dict(kind=kind, error=repr(e))
    conn.send(res)
    conn.close()


def guess_summary(g, window, t_end):
    """answers per source IP per minute: in [0, window) and [window, t_end), median and max over IPs"""
    ips = sorted(set(g["ip"]))
    out = {"ips": len(ips), "answers": len(g["t"]), "window_s": window}
    for name, lo, hi in (("first", 0.0, window), ("after", window, t_end)):
        span = hi - lo
        if span <= 1:
            out[name] = None
            continue
        per = {ip: 0 for ip in ips}
        fails = 0
        for t, ip, v in zip(g["t"], g["ip"], g["verdict"]):
            if lo <= t < hi:
                if v != "refused":
                    per[ip] += 1
                    fails += 1
        rates = [c * 60.0 / span for c in per.values()] or [0.0]
        out[name] = {"span_s": round(span, 1), "answers": fails,
                     "per_ip_per_min_median": round(statistics.median(rates), 1),
                     "per_ip_per_min_max": round(max(rates), 1),
                     "per_ip_per_min_mean": round(sum(rates) / len(rates), 1)}
    by = {}
    for l, v in zip(g["listener"], g["verdict"]):
        by.setdefault(l, {}).setdefault(v, 0)
        by[l][v] += 1
    out["by_listener"] = by
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--listeners", required=True, help="name=port,... (smtp submission submissions imap imaps pop3 pop3s)")
    ap.add_argument("--start-at", type=float, default=0, help="Unix time to start (default: now)")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--stop-file", default="/nonexistent/stop")
    ap.add_argument("--kinds", default="guess idle slow garbage tls")
    ap.add_argument("--guess", type=int, default=100)
    ap.add_argument("--guess-ips", type=int, default=20)
    ap.add_argument("--guess-listeners", default="submission,imaps,pop3s")
    ap.add_argument("--guess-user", default="victim@example.com")
    ap.add_argument("--window", type=float, default=60, help="the guessers' first window, seconds")
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--idle-ips", type=int, default=10)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--slow-ips", type=int, default=10)
    ap.add_argument("--slow-gap", type=float, default=4)
    ap.add_argument("--garbage", type=int, default=50)
    ap.add_argument("--garbage-ips", type=int, default=5)
    ap.add_argument("--garbage-rate", type=int, default=262144, help="bytes/s per connection")
    ap.add_argument("--garbage-max", type=int, default=16 << 20, help="bytes per connection")
    ap.add_argument("--garbage-modes", default="",
                    help="only these listener:mode pairs, e.g. smtp:bdat,imap:literal (default: all of GARBAGE_MODES)")
    ap.add_argument("--tls", type=int, default=100)
    ap.add_argument("--tls-ips", type=int, default=5)
    ap.add_argument("--tls-stall", type=float, default=30, help="the longest a flood connection waits")
    ap.add_argument("--tls-gap", type=float, default=0.2, help="pause before a flood connection's next one")
    ap.add_argument("--data-rcpt", default="victim@example.com", help="the local recipient of DATA/BDAT attacks")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    a.listeners = {k: int(v) for k, v in (x.split("=") for x in a.listeners.split(",") if x)}
    for k in a.listeners:
        if k not in PROTO:
            ap.error("unknown listener %s" % k)
    a.guess_listeners = a.guess_listeners.split(",")
    a.garbage_modes = [x for x in a.garbage_modes.split(",") if x]
    if not a.start_at:
        a.start_at = time.time()
    a.end = a.start_at + a.duration
    kinds = [k for k in a.kinds.split() if getattr(a, k) > 0]
    ctx = multiprocessing.get_context("fork")
    procs = []
    for k in kinds:
        rd, wr = ctx.Pipe(duplex=False)
        p = ctx.Process(target=kind_proc, args=(a, k, wr), daemon=True)
        p.start()
        wr.close()
        procs.append((k, p, rd))
    out = {"start_at": a.start_at, "duration_s": a.duration, "kinds": {}}
    hard = a.end + 40
    for k, p, rd in procs:
        res = None
        while time.time() < hard:
            if rd.poll(0.5):
                try:
                    res = rd.recv()
                except EOFError:
                    res = dict(kind=k, error="process died")
                break
        p.join(5)
        if p.is_alive():
            p.kill()
        out["kinds"][k] = res or dict(kind=k, error="no result")
    g = out["kinds"].get("guess", {}).pop("guesses", None)
    if g is not None:
        out["guess_rates"] = guess_summary(g, a.window, min(time.time(), a.end) - a.start_at)
    out["stopped_early"] = os.path.exists(a.stop_file)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(out, f)
    tot = {}
    for k, r in out["kinds"].items():
        for c, v in r.get("counters", {}).items():
            tot[c] = tot.get(c, 0) + v
    print("abuse_attack: " + json.dumps({k: (r.get("counters"), r.get("error")) for k, r in out["kinds"].items()})
          + (" guess_rates=" + json.dumps({k: out["guess_rates"][k] for k in ("first", "after")}) if g is not None else ""),
          flush=True)


if __name__ == "__main__":
    main()
