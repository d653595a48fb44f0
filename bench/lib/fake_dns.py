#!/usr/bin/env python3
"""A minimal authoritative DNS server for the benchmarks (standard library
only): answers A, TXT, MX and PTR queries from a JSON zone, NXDOMAIN for
names not in it (NOERROR without answers for a name that has other types).

  fake_dns.py --port 5353 --zone zone.json [--addr 127.0.0.1] [--stats FILE]
  zone.json: {"name.example": {"TXT": ["v=spf1 ..."], "A": ["127.0.0.1"],
              "MX": ["10 mx.name.example"]},
              "1.0.0.127.in-addr.arpa": {"PTR": ["localhost"]}}

Prints "READY <port>" once it listens on ADDR (127.0.0.1). Long TXT values
are split into 255-byte strings (RFC 1035 §3.3.14). With --stats, SIGUSR1
writes the number of queries answered so far, by type, as JSON to FILE
(written to FILE.tmp, then renamed).
"""
import argparse
import json
import os
import signal
import socket
import struct

TYPES = {1: "A", 12: "PTR", 15: "MX", 16: "TXT"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_question(data):
    """(id, flags, qname, qtype, end of question)."""
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    pos, labels = 12, []
    while data[pos] != 0:
        n = data[pos]
        labels.append(data[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    pos += 1
    qtype, _qclass = struct.unpack("!HH", data[pos : pos + 4])
    return qid, flags, ".".join(labels).lower(), qtype, pos + 4


def rdata(qtype, value):
    if qtype == 1:  # A
        return socket.inet_aton(value)
    if qtype == 12:  # PTR
        return encode_name(value)
    if qtype == 15:  # MX: "preference exchange"
        pref, host = value.split()
        return struct.pack("!H", int(pref)) + encode_name(host)
    text = value.encode()
    return b"".join(bytes([len(c)]) + c for c in [text[i : i + 255] for i in range(0, len(text), 255)] or [b""])


def answer(data, zone):
    qid, flags, qname, qtype, end = parse_question(data)
    entry = zone.get(qname)
    values = (entry or {}).get(TYPES.get(qtype, ""), [])
    rcode = 0 if entry is not None else 3
    header = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, len(values), 0, 0)
    out = header + data[12:end]
    for v in values:
        rd = rdata(qtype, v)
        out += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(rd)) + rd
    return out, qtype


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=5353)
    p.add_argument("--zone", required=True)
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--stats", default="")
    a = p.parse_args()
    with open(a.zone) as f:
        zone = {k.lower().rstrip("."): v for k, v in json.load(f).items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.addr, a.port))
    counts = {}

    def write_stats(_sig, _frame):
        with open(a.stats + ".tmp", "w") as f:
            json.dump(counts, f)
        os.replace(a.stats + ".tmp", a.stats)

    if a.stats:
        signal.signal(signal.SIGUSR1, write_stats)
    print("READY", s.getsockname()[1], flush=True)
    while True:
        data, peer = s.recvfrom(1500)
        try:
            out, qtype = answer(data, zone)
            s.sendto(out, peer)
            t = TYPES.get(qtype, str(qtype))
            counts[t] = counts.get(t, 0) + 1
        except Exception:  # a malformed query gets no answer
            pass


if __name__ == "__main__":
    main()
