"""
pymilter_stream - a libmilter milter (Debian's python3-milter binds
libmilter itself) for test_milter's streaming cases, which no packaged
milter produces on demand:

  - Subject "reject at header" or a field "X-Pymilter: reject": 550 at
    that HEADER (the body is still on its way to oceanmx), Subject "reject
    at eoh": 550 at EOH;
  - otherwise, at the end of message, a field X-Stream-Seen with what the
    milter was given: the number of header fields and a hash of them
    (name ":" value LF each), the body's length and hash, so the test can
    check fields that spanned the chunks the message streamed in;
  - every abort (SMFIC_ABORT, or the connection lost mid-message) and end
    of message is appended to the log file, one "event subject" a line.

Usage: /usr/bin/python3 pymilter_stream.py unix:/path/sock /path/log
"""

import hashlib
import sys

import Milter

LOG = sys.argv[2] if len(sys.argv) > 2 else "/dev/null"


def note(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


class StreamMilter(Milter.Base):
    def __init__(self):
        self.reset()

    def reset(self):
        self.subject = ""
        self.nhdr = 0
        self.hhash = hashlib.sha256()
        self.nbody = 0
        self.bhash = hashlib.sha256()

    def envfrom(self, mailfrom, *params):
        self.reset()
        return Milter.CONTINUE

    def header(self, name, value):
        self.nhdr += 1
        self.hhash.update(name.encode("utf-8", "surrogateescape") + b":" +
                          value.encode("utf-8", "surrogateescape") + b"\n")
        if name.lower() == "x-pymilter" and value == "reject":
            self.setreply("550", "5.7.1", "Rejected at header")
            note("reject-header x-pymilter")
            return Milter.REJECT
        if name.lower() == "subject":
            self.subject = value
            if value == "reject at header":
                self.setreply("550", "5.7.1", "Rejected at header")
                note("reject-header " + value)
                return Milter.REJECT
        return Milter.CONTINUE

    def eoh(self):
        if self.subject == "reject at eoh":
            self.setreply("550", "5.7.1", "Rejected at end of header")
            note("reject-eoh " + self.subject)
            return Milter.REJECT
        return Milter.CONTINUE

    def body(self, chunk):
        self.nbody += len(chunk)
        self.bhash.update(chunk)
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Stream-Seen", "hdrs=%d hsha=%s body=%d bsha=%s" % (
            self.nhdr, self.hhash.hexdigest()[:16], self.nbody, self.bhash.hexdigest()[:16]))
        note("eom " + self.subject)
        return Milter.ACCEPT

    def abort(self):
        note("abort " + self.subject)
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = StreamMilter
    Milter.set_flags(Milter.ADDHDRS)
    note("ready")
    Milter.runmilter("omx-stream", sys.argv[1], timeout=60)
