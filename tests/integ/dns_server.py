"""
dns_server.py - a small authoritative DNS server for the integration tests
(Debian's python3-dnslib for the wire format), on 127.0.0.1, UDP and TCP on
the same port.

It serves TXT records from master-file lines (`name TTL IN TXT "..." ...`,
as in the corpora's keys.zone) and can misbehave per name, to test the
resolver's failure modes:
    timeout    never answer
    servfail   rcode SERVFAIL
    refused    rcode REFUSED
    nxdomain   rcode NXDOMAIN
    malformed  a reply whose answer section is cut short (not parseable)
    oversized  one TXT record of 40 x 255 octets (over UDP: TC=1, so the
               resolver must retry over TCP and then finds it too big)
    badtxt     a TXT rdata whose first string length overruns it
Other names: NOERROR/NODATA when the name is an ancestor of a served name
(an empty non-terminal), else NXDOMAIN, with an SOA in the authority
section so negative answers can be cached (RFC 2308).

Use from a test:  srv = DnsServer(records, specials); srv.start(); srv.port;
srv.stop(). Or run it: dns_server.py ZONEFILE [NAME=MODE...] prints
"PORT n" and serves until killed.
"""

import re
import socket
import socketserver
import struct
import sys
import threading

from dnslib import DNSRecord, QTYPE, RCODE, RR, SOA, TXT, DNSLabel

MODES = ("timeout", "servfail", "refused", "nxdomain", "malformed", "oversized", "badtxt")


def parse_zone(text):
    """parse_zone returns {lower-case name without dot: [(ttl, [bytes strings])]}."""
    recs = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        m = re.match(r'(\S+)\s+(\d+)\s+IN\s+TXT\s+(.*)$', line)
        if not m:
            continue
        name = m.group(1).rstrip(".").lower()
        strings = [s.encode("latin-1") for s in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(3))]
        strings = [re.sub(rb'\\(.)', rb'\1', s) for s in strings]
        recs.setdefault(name, []).append((int(m.group(2)), strings))
    return recs


class DnsServer:
    def __init__(self, records=None, specials=None, host="127.0.0.1"):
        self.records = {k.lower(): v for k, v in (records or {}).items()}
        self.specials = {k.rstrip(".").lower(): v for k, v in (specials or {}).items()}
        for v in self.specials.values():
            assert v in MODES, v
        self.host = host
        self.port = None
        self.queries = []  # (name, qtype) in arrival order
        self._servers = []

    # ------------------------------------------------------------ answers
    def _answer(self, data, tcp):
        try:
            q = DNSRecord.parse(data)
        except Exception:
            return None
        qname = str(q.q.qname).rstrip(".").lower()
        self.queries.append((qname, QTYPE.get(q.q.qtype)))
        mode = self.specials.get(qname)
        r = q.reply()
        r.header.ra = 0
        if mode == "timeout":
            return None
        if mode == "servfail":
            r.header.rcode = RCODE.SERVFAIL
            return r.pack()
        if mode == "refused":
            r.header.rcode = RCODE.REFUSED
            return r.pack()
        if mode == "nxdomain":
            r.header.rcode = RCODE.NXDOMAIN
            self._soa(r)
            return r.pack()
        if mode == "malformed":
            r.add_answer(RR(q.q.qname, QTYPE.TXT, rdata=TXT(["v=DKIM1; p=AAAA"]), ttl=60))
            b = r.pack()
            return b[:len(b) - 9]  # answer RR cut inside its rdata
        if mode == "oversized":
            if not tcp:
                r.header.tc = 1  # does not fit: retry over TCP
                return r.pack()
            r.add_answer(RR(q.q.qname, QTYPE.TXT, rdata=TXT([b"p" * 255] * 40), ttl=60))
            return r.pack()
        if mode == "badtxt":
            r.add_answer(RR(q.q.qname, QTYPE.TXT, rdata=TXT(["x"]), ttl=60))
            b = bytearray(r.pack())
            b[-2] = 200  # the string length byte: 200 octets in a 2-octet rdata
            return bytes(b)
        if q.q.qtype == QTYPE.TXT and qname in self.records:
            for ttl, strings in self.records[qname]:
                r.add_answer(RR(q.q.qname, QTYPE.TXT, rdata=TXT(strings), ttl=ttl))
            if not tcp and len(r.pack()) > 1232:
                r = q.reply()
                r.header.tc = 1
            return r.pack()
        exists = qname in self.records or any(n.endswith("." + qname) for n in self.records)
        if not exists:
            r.header.rcode = RCODE.NXDOMAIN
        self._soa(r)
        return r.pack()

    @staticmethod
    def _soa(r):
        r.add_auth(RR("test.", QTYPE.SOA, ttl=60,
                      rdata=SOA("ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, 60))))

    # ------------------------------------------------------------ sockets
    def start(self):
        srv = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                out = srv._answer(data, False)
                if out is not None:
                    sock.sendto(out, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    while True:
                        hdr = self._read(2)
                        if hdr is None:
                            return
                        data = self._read(struct.unpack("!H", hdr)[0])
                        if data is None:
                            return
                        out = srv._answer(data, True)
                        if out is None:
                            continue
                        self.request.sendall(struct.pack("!H", len(out)) + out)
                except OSError:
                    return

            def _read(self, n):
                buf = b""
                while len(buf) < n:
                    c = self.request.recv(n - len(buf))
                    if not c:
                        return None
                    buf += c
                return buf

        class UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
            daemon_threads = True
            allow_reuse_address = True

        class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        # Same port for both: bind UDP to an ephemeral port, then TCP to it.
        for _ in range(50):
            u = UdpServer((self.host, 0), Udp)
            port = u.server_address[1]
            try:
                t = TcpServer((self.host, port), Tcp)
            except OSError:
                u.server_close()
                continue
            break
        else:
            raise RuntimeError("no free port for UDP+TCP")
        self.port = port
        self._servers = [u, t]
        for s in self._servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return self

    def stop(self):
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self._servers = []


def main():
    if len(sys.argv) < 2:
        print("usage: dns_server.py ZONEFILE [NAME=MODE...]", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="latin-1") as f:
        recs = parse_zone(f.read())
    specials = dict(a.split("=", 1) for a in sys.argv[2:])
    s = DnsServer(recs, specials).start()
    print("PORT %d" % s.port, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
