#!/usr/bin/env python3
"""A minimal authoritative DNS server for the benchmarks (standard library
only): answers A and TXT queries from a JSON zone, NXDOMAIN otherwise.

  fake_dns.py --port 5353 --zone zone.json
  zone.json: {"name.example": {"TXT": ["v=spf1 ..."], "A": ["127.0.0.1"]}}

Prints "READY <port>" once it listens on 127.0.0.1. Long TXT values are
split into 255-byte strings (RFC 1035 §3.3.14).
"""
import argparse
import json
import socket
import struct


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
    text = value.encode()
    return b"".join(bytes([len(c)]) + c for c in [text[i : i + 255] for i in range(0, len(text), 255)] or [b""])


def answer(data, zone):
    qid, flags, qname, qtype, end = parse_question(data)
    types = {1: "A", 16: "TXT"}
    entry = zone.get(qname)
    values = (entry or {}).get(types.get(qtype, ""), [])
    rcode = 0 if entry is not None else 3
    header = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, len(values), 0, 0)
    out = header + data[12:end]
    for v in values:
        rd = rdata(qtype, v)
        out += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(rd)) + rd
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=5353)
    p.add_argument("--zone", required=True)
    a = p.parse_args()
    with open(a.zone) as f:
        zone = {k.lower().rstrip("."): v for k, v in json.load(f).items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", a.port))
    print("READY", s.getsockname()[1], flush=True)
    while True:
        data, peer = s.recvfrom(1500)
        try:
            s.sendto(answer(data, zone), peer)
        except Exception:  # a malformed query gets no answer
            pass


if __name__ == "__main__":
    main()
