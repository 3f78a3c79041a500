#!/usr/bin/python3
"""stream_consumer.py ADDR DIR - a consumer for oceanmx's stream sink (docs/sinks.md).
ADDR is unix:PATH or tcp:HOST:PORT (as in --sink). Each message is made durable as DIR/ID.json
and DIR/ID.eml (the .eml last: it marks the message complete), then answered OK; a message seen
before (redelivered after a lost answer) is only answered. DIR "-" stores nothing (benchmarks)."""
import os, re, socketserver, sys

def store(d, mid, doc, raw):
    if d == "-" or os.path.exists(os.path.join(d, mid + ".eml")):
        return                                   # null consumer, or a duplicate: already durable
    for ext, data in ((".json", doc), (".eml", raw)):
        with open(os.path.join(d, mid + ext + ".tmp"), "wb") as f:
            f.write(data); f.flush(); os.fsync(f.fileno())
        os.rename(os.path.join(d, mid + ext + ".tmp"), os.path.join(d, mid + ext))
    fd = os.open(d, os.O_RDONLY); os.fsync(fd); os.close(fd)   # the renames are durable too

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            while (head := self.rfile.readline()):
                verb, mid, jlen, rlen = head.split()
                doc, raw = self.rfile.read(int(jlen)), self.rfile.read(int(rlen))
                if verb != b"MSG" or not re.fullmatch(rb"[A-Za-z0-9_-]+", mid) or self.rfile.read(1) != b"\n":
                    return                       # out of step: hang up; oceanmx sends it again
                store(self.server.dir, mid.decode(), doc, raw)
                self.wfile.write(b"OK " + mid + b"\n")
        except (OSError, ValueError):
            return                               # oceanmx went away, or garbage: it sends again

kind, _, where = sys.argv[1].partition(":")
if kind == "unix":
    if os.path.exists(where): os.unlink(where)
    srv = socketserver.ThreadingUnixStreamServer(where, Handler)
else:
    host, _, port = where.rpartition(":")                    # IPv4 or a host name
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer((host, int(port)), Handler)
srv.daemon_threads, srv.dir = True, sys.argv[2]
srv.serve_forever()
