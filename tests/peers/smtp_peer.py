#!/usr/bin/env python3
"""A receiving SMTP server for the outbound-queue tests, on aiosmtpd.

Binds 127.0.0.1:PORT (0 = any), prints "READY <port>" and serves until
killed. Every accepted message is written to OUT/<n>.eml (as received, CRLF)
with OUT/<n>.json holding the envelope ({"mail_from", "rcpt_tos",
"mail_options", "rcpt_options", "tls"}), then OUT/<n>.done, so a test can
poll for .done files.

  --fail-data N        answer the first N DATA commands with 451 4.3.0
  --reject-rcpt ADDR   answer RCPT TO:<ADDR> with 550 5.1.1 (repeatable)
  --hostname NAME      the name in the greeting and EHLO reply
  --tls CERT KEY       offer STARTTLS with this certificate
  --auth USER:PASS     require AUTH PLAIN/LOGIN with these credentials
  --no-8bitmime        do not offer 8BITMIME (nor SMTPUTF8)
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.out = args.out
        self.fail_left = args.fail_data
        self.reject = {a.lower() for a in args.reject_rcpt}
        self.n = 0
        self.no_8bitmime = args.no_8bitmime

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.no_8bitmime:
            responses = [r for r in responses if "8BITMIME" not in r and "SMTPUTF8" not in r]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0:
            self.fail_left -= 1
            print("DATA deferred (451)", flush=True)
            return "451 4.3.0 Try again later"
        self.n += 1
        base = os.path.join(self.out, str(self.n))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json", "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "mail_options": envelope.mail_options,
                    "rcpt_options": envelope.rcpt_options,
                    "tls": session.ssl is not None,
                    "auth": session.login_data.decode() if session.login_data else None,
                },
                f,
            )
        open(base + ".done", "w").close()
        print(f"accepted {self.n} from <{envelope.mail_from}> to {envelope.rcpt_tos}", flush=True)
        return f"250 2.0.0 Ok: queued as PEER{self.n}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--fail-data", type=int, default=0)
    p.add_argument("--reject-rcpt", action="append", default=[])
    p.add_argument("--hostname", default="peer.test")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth")
    p.add_argument("--no-8bitmime", action="store_true")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    handler = Handler(args)

    tls_context = None
    if args.tls:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(*args.tls)

    auth_kwargs = {}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            return AuthResult(success=ok, auth_data=auth_data if ok else None)

        auth_kwargs = dict(
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
        )

    def factory():
        return SMTP(
            handler,
            hostname=args.hostname,
            ident="peer ESMTP",
            tls_context=tls_context,
            require_starttls=False,
            decode_data=False,
            enable_SMTPUTF8=True,
            **auth_kwargs,
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", args.port)
        print("READY", server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
