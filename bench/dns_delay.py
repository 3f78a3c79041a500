#!/usr/bin/env python3
"""
dns_delay.py - a loopback DNS responder that answers every query after a
fixed delay, for the DNS-latency benchmark (bench/dns_delay.sh, issue 6).

It stands in for the remote authoritative servers of many sender domains,
each as far away as --delay-ms: every name gets an answer, so a run whose
messages all come from different domains (oceanmx-load --sender-domains)
makes the server's resolver miss its cache on every message.

Answers (authoritative, UDP only; the answers are small):
    TXT   _dmarc.NAME   "v=DMARC1; p=none"
    TXT   any other     "v=spf1 ip4:127.0.0.0/8 ip6:::1 -all"
    other types         NOERROR with no records (NODATA)
The delay is a timer per answer on one asyncio loop, so thousands of
answers can wait at once without a thread each. Queries are parsed by hand
(header, one question) because dnslib costs more CPU per query than the
server under test spends on a message; a query that does not parse is
dropped, as a real server drops garbage.

Usage: dns_delay.py [--port N] [--delay-ms MS] [--ttl S]
Prints "PORT n" when ready; on SIGTERM/SIGINT prints "queries n answered n"
to stderr and exits.
"""

import argparse
import asyncio
import signal
import struct
import sys

SPF = b"v=spf1 ip4:127.0.0.0/8 ip6:::1 -all"
DMARC = b"v=DMARC1; p=none"
QTYPE_TXT = 16


def question_end(q):
    """question_end returns the offset after the question's QNAME, or -1."""
    i = 12
    while i < len(q):
        n = q[i]
        if n == 0:
            return i + 1
        if n & 0xC0 or n > 63:
            return -1  # queries carry no compression pointers
        i += 1 + n
    return -1


def answer(q, ttl):
    """answer returns the reply to query bytes q, or None to drop it."""
    if len(q) < 17:
        return None
    qid, flags, qd = struct.unpack_from("!HHH", q, 0)
    if flags & 0x8000 or qd != 1 or (flags >> 11) & 0xF != 0:
        return None  # a reply, several questions, or not a standard query
    end = question_end(q)
    if end < 0 or end + 4 > len(q):
        return None
    qtype, qclass = struct.unpack_from("!HH", q, end)
    question = q[12:end + 4]
    # QR, AA, RD copied; RA clear (we are authoritative, not recursive).
    rflags = 0x8000 | 0x0400 | (flags & 0x0100)
    if qtype != QTYPE_TXT or qclass != 1:
        return struct.pack("!HHHHHH", qid, rflags, 1, 0, 0, 0) + question
    first = q[13:13 + q[12]].lower()
    text = DMARC if first == b"_dmarc" else SPF
    rdata = bytes([len(text)]) + text
    rr = struct.pack("!HHHIH", 0xC00C, QTYPE_TXT, 1, ttl, len(rdata)) + rdata
    return struct.pack("!HHHHHH", qid, rflags, 1, 1, 0, 0) + question + rr


class Responder(asyncio.DatagramProtocol):
    def __init__(self, delay, ttl):
        self.delay = delay
        self.ttl = ttl
        self.queries = 0
        self.answered = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.queries += 1
        r = answer(data, self.ttl)
        if r is None:
            return
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, self._send, r, addr)
        else:
            self._send(r, addr)

    def _send(self, r, addr):
        self.transport.sendto(r, addr)
        self.answered += 1


async def serve(a):
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Responder(a.delay_ms / 1000.0, a.ttl), local_addr=("127.0.0.1", a.port))
    print("PORT %d" % transport.get_extra_info("sockname")[1], flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    transport.close()
    print("queries %d answered %d" % (proto.queries, proto.answered), file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="UDP port on 127.0.0.1 (0: any free port)")
    p.add_argument("--delay-ms", type=float, default=20.0, help="delay before every answer (default 20)")
    p.add_argument("--ttl", type=int, default=300, help="TTL of the answers (default 300)")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
