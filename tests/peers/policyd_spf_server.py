#!/usr/bin/python3
"""Serves Debian's policyd-spf (postfix-policyd-spf-python) on a unix socket,
the way Postfix's spawn(8) would: one policyd-spf process per connection,
speaking the policy protocol on its stdin/stdout. Its DNS questions go to
the test DNS server (pydns, pointed at 127.0.0.1:DNS_PORT).

    policyd_spf_server.py SOCKET CONFIG DNS_PORT

Run with Debian's /usr/bin/python3, where python3-spf-engine lives."""
import os
import socket
import subprocess
import sys

INNER = r"""
import os, sys
import DNS
# spf.py asks pydns to read /etc/resolv.conf when imported: use the test DNS.
DNS.DiscoverNameServers = lambda: None
DNS.defaults['server'] = ['127.0.0.1']
DNS.defaults['port'] = int(os.environ['DNS_PORT'])
from spf_engine.policyd_spf import main
sys.argv = ['policyd-spf', os.environ['SPF_CONFIG']]
sys.exit(main())
"""


def serve(path, config, dns_port):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    env = dict(os.environ, DNS_PORT=dns_port, SPF_CONFIG=config)
    while True:
        conn, _ = srv.accept()
        subprocess.Popen([sys.executable, "-c", INNER], stdin=conn.fileno(),
                         stdout=conn.fileno(), env=env)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3])
