"""
test_dnsbl - DNS blocklists at connect (--dnsbl, RFC 5782) against a real
DNS server on loopback (dns_server.py): 127.0.0.2 is listed by bl.test
(answer 127.0.0.2), 127.0.0.3 by nothing, and slow.test never answers.
- annotate (default): the listed client is greeted, its message accepted,
  and the listing is in the JSON envelope (dnsbl {zone, address}) and the
  log; an unlisted client's envelope has dnsbl null;
- --dnsbl-reject on: the listed client gets 554 5.7.1 naming the list
  instead of the greeting, and the connection closes; others are greeted;
- a list that does not answer within --dns-timeout does not list: the
  greeting comes, and dnsbl.fail is logged;
- a client that talks while the lists are asked is an early talker (554).
"""

import json
import os
import sys
import time

from lib import Conn, Server, T_DELIVER, ehlo, run, send_message

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dns_server import DnsServer  # noqa: E402

RRSETS = {
    "2.0.0.127.bl.test": [("A", "127.0.0.2")],
    "2.0.0.127.other.test": [("A", "127.0.0.4")],
    # Spamhaus answers 127.255.255.x when it refuses the query: not a listing
    "3.0.0.127.refused.test": [("A", "127.255.255.254")],
}
VERIFY_OFF = ["--dkim", "off", "--spf", "off", "--dmarc", "off", "--arc", "off"]


def envelope(t, jdir, qid):
    path = os.path.join(jdir, qid + ".json")
    deadline = time.monotonic() + T_DELIVER
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    t.check(os.path.exists(path), "no %s" % path)
    return json.load(open(path))["envelope"]


def main(t):
    dns = DnsServer(rrsets=RRSETS, timeouts=["2.0.0.127.slow.test", "3.0.0.127.slow.test"]).start()
    try:
        jdir_base = None
        srv = Server(*VERIFY_OFF)
        jdir = os.path.join(srv.tmp, "json")
        srv.args += ["--dns", "127.0.0.1:%d" % dns.port, "--dnsbl", "bl.test, other.test,refused.test",
                     "--sink", "json:" + jdir, "--log-level", "info"]
        with srv:
            with t.case("listed_client_annotated"):
                c = Conn(srv.port, source="127.0.0.2")
                t.expect(c.greeting, 220, c, "greeting for a listed client (annotate only)")
                ehlo(t, c)
                _, qid = send_message(t, c, "a@x.test", ["b@y.test"], b"Subject: listed\r\n\r\nhi\r\n")
                c.cmd("QUIT")
                env = envelope(t, jdir, qid)
                # the first zone in --dnsbl order that lists it
                t.check(env.get("dnsbl") == {"zone": "bl.test", "address": "127.0.0.2"}, "dnsbl %r" % env.get("dnsbl"))
                t.check(srv.wait_log(r"dnsbl\.listed client=127\.0\.0\.2 zone=bl\.test address=127\.0\.0\.2"),
                        "no dnsbl.listed line")
            with t.case("unlisted_client_null"):
                c = Conn(srv.port, source="127.0.0.3")
                t.expect(c.greeting, 220, c)
                ehlo(t, c)
                _, qid = send_message(t, c, "a@x.test", ["b@y.test"], b"Subject: clean\r\n\r\nhi\r\n")
                c.cmd("QUIT")
                env = envelope(t, jdir, qid)
                t.check(env.get("dnsbl") is None, "dnsbl %r (127.255.255.x is no listing)" % env.get("dnsbl"))
        srv = Server(*VERIFY_OFF, "--dns", "127.0.0.1:%d" % dns.port, "--dnsbl", "bl.test", "--dnsbl-reject", "on")
        with srv:
            with t.case("listed_client_rejected_554"):
                c = Conn(srv.port, source="127.0.0.2")
                t.expect(c.greeting, 554, c, "listed client with --dnsbl-reject on", enhanced="5.7.1")
                t.check("bl.test" in c.greeting.text, "the reply does not name the list: %r" % c.greeting)
                t.check(c.wait_eof() == [], "not closed after the 554", c)
            with t.case("unlisted_client_greeted"):
                c = Conn(srv.port, source="127.0.0.3")
                t.expect(c.greeting, 220, c)
                t.expect(c.cmd("QUIT"), 221, c)
        srv = Server(*VERIFY_OFF, "--dns", "127.0.0.1:%d" % dns.port, "--dnsbl", "slow.test", "--dnsbl-reject", "on",
                     "--dns-timeout", "500", "--log-level", "info")
        with srv:
            with t.case("list_without_answer_does_not_list"):
                c = Conn(srv.port, source="127.0.0.2")
                t.expect(c.greeting, 220, c, "a list that times out must not block or reject")
                t.expect(c.cmd("QUIT"), 221, c)
                t.check(srv.wait_log(r"dnsbl\.fail zones=1"), "no dnsbl.fail line")
            with t.case("early_talker_while_asking"):
                c = Conn(srv.port, source="127.0.0.3", greet=False)
                c.send(b"EHLO early.test\r\n")
                r = c.reply()
                t.check(r.code == 554, "a client talking before the greeting: %r" % r, c)
    finally:
        dns.stop()


if __name__ == "__main__":
    run(main)
