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

Besides TXT it serves any-type record sets (`rrsets`, for SPF: A, AAAA,
MX, PTR, TXT, CNAME, SPF) with the OpenSPF suite's rules: a CNAME is
answered and chased; a name in `timeouts` never answers a query for a
type it has no records of; a name with records, but none of the asked
type, is NODATA; TXT values are lists of strings (bytes or str, UTF-8).

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

from dnslib import AAAA, CNAME, DNSRecord, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, RD

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


class RawTXT(RD):
    """A TXT rdata packed exactly from its strings, even none (dnslib's TXT would too,
    but this keeps zero strings and any bytes explicit)."""

    def __init__(self, strings):
        self.strings = strings

    def pack(self, buffer):
        for s in self.strings:
            buffer.append(bytes([len(s)]))
            buffer.append(s)

    def __repr__(self):
        return " ".join('"%s"' % s.decode("utf-8", "replace") for s in self.strings)


def _rdata(rtype, value):
    if rtype == "A":
        return QTYPE.A, A(value)
    if rtype == "AAAA":
        return QTYPE.AAAA, AAAA(value)
    if rtype == "MX":
        return QTYPE.MX, MX(value[1], value[0])
    if rtype == "PTR":
        return QTYPE.PTR, PTR(value)
    if rtype == "CNAME":
        return QTYPE.CNAME, CNAME(value)
    if rtype in ("TXT", "SPF"):
        strings = [x.encode("utf-8") if isinstance(x, str) else x for x in value]
        if not strings:
            strings = [b""]  # RFC 1035 §3.3.14: a TXT rdata holds at least one string
        return (QTYPE.TXT if rtype == "TXT" else 99), RawTXT(strings)
    raise ValueError(rtype)


class DnsServer:
    def __init__(self, records=None, specials=None, host="127.0.0.1", rrsets=None, timeouts=None):
        self.rrsets = {}
        for k, v in (rrsets or {}).items():
            self.rrsets.setdefault(k.rstrip(".").lower(), []).extend(v)
        self.timeouts = {k.rstrip(".").lower() for k in (timeouts or ())}
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
        raw = ".".join(l.decode("utf-8", "replace") for l in q.q.qname.label).lower()
        if raw in self.rrsets or raw in self.timeouts:
            return self._rrset_answer(q, raw, r, tcp)
        if q.q.qtype == QTYPE.TXT and qname in self.records:
            for ttl, strings in self.records[qname]:
                r.add_answer(RR(q.q.qname, QTYPE.TXT, rdata=TXT(strings), ttl=ttl))
            if not tcp and len(r.pack()) > 1232:
                r = q.reply()
                r.header.tc = 1
            return r.pack()
        exists = (qname in self.records or any(n.endswith("." + qname) for n in self.records)
                  or any(n.endswith("." + qname) for n in self.rrsets))
        if not exists:
            r.header.rcode = RCODE.NXDOMAIN
        self._soa(r)
        return r.pack()

    def _rrset_answer(self, q, qname, r, tcp):
        """_rrset_answer answers from self.rrsets (CNAME chased), or None for a timeout."""
        name, qt, seen = qname, q.q.qtype, 0
        owner = q.q.qname
        while True:
            rrs = self.rrsets.get(name, [])
            cn = [v for t, v in rrs if t == "CNAME"]
            if cn and qt != QTYPE.CNAME and seen < 8:
                target = cn[0].rstrip(".").lower()
                r.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(cn[0]), ttl=60))
                owner, name, seen = DNSLabel(target), target, seen + 1
                continue
            match = [(t, v) for t, v in rrs if _rdata(t, v)[0] == qt]
            if match:
                for t, v in match:
                    rt, rd = _rdata(t, v)
                    r.add_answer(RR(owner, rt, rdata=rd, ttl=60))
                if not tcp and len(r.pack()) > 1232:
                    r = q.reply()
                    r.header.tc = 1
                return r.pack()
            if name in self.timeouts:
                return None
            if seen and name not in self.rrsets and not any(n.endswith("." + name) for n in self.rrsets):
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
