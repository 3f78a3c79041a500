"""
test_json_sink - the json:DIR sink beside the maildir sink, end to end: for
an accepted message DIR/ID.eml holds the spooled message, DIR/ID.json the
document (docs/json.md) with the envelope of the SMTP transaction, decoded
bodies, and attachments inline (base64) below inline_max or as files in
DIR/ID.att/ above it, each with the SHA-256 of its decoded bytes.
"""

import base64
import hashlib
import json
import os
import time

from lib import Conn, Server, T_DELIVER, crlf, ehlo, run, send_message


def mime_message(small, big):
    b64 = lambda b: "\n".join(base64.b64encode(b).decode()[i:i + 76] for i in range(0, len(base64.b64encode(b)), 76))
    return crlf(
        "From: Ann Example <ann+news@x.test>\nTo: bob@y.test, \"Carl, C.\" <carl@y.test>\n"
        "Subject: =?utf-8?q?caf=C3=A9?= report\nMessage-ID: <m1@x.test>\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"BB\"\n\n"
        "--BB\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
        "Gr=FC=DFe\n"
        "--BB\nContent-Type: application/octet-stream; name=\"small.bin\"\n"
        "Content-Disposition: attachment; filename=\"small.bin\"\nContent-Transfer-Encoding: base64\n\n"
        + b64(small) + "\n"
        "--BB\nContent-Type: application/octet-stream\n"
        "Content-Disposition: attachment; filename*=utf-8''gro%C3%9F.bin\nContent-Transfer-Encoding: base64\n\n"
        + b64(big) + "\n--BB--\n")


def main(t):
    small = os.urandom(300)
    big = os.urandom(5000)
    srv = Server()
    jdir = os.path.join(srv.tmp, "json")
    srv.args = ["--sink", "json:%s?inline_max=1024" % jdir]
    with srv:
        c = Conn(srv.port)
        ehlo(t, c)
        content = mime_message(small, big)
        _, qid = send_message(t, c, "ann+news@x.test", ["bob@y.test", "carl@y.test"], content)
        c.cmd("QUIT")

        with t.case("document_written"):
            path = os.path.join(jdir, qid + ".json")
            deadline = time.monotonic() + T_DELIVER
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            t.check(os.path.exists(path), "%s not written; dir has %r" % (path, os.listdir(jdir) if os.path.isdir(jdir) else None))
            with open(os.path.join(jdir, qid + ".eml"), "rb") as f:
                eml = f.read()
            t.check(eml.endswith(content), "ID.eml does not end with the bytes the client sent")
            t.check(eml.startswith(b"Authentication-Results: mx.test;"),
                    "ID.eml does not start with our Authentication-Results: field: %r" % eml[:80])
            t.check(b"\r\nReceived: from client.test" in eml[:400], "our Received: field is not next: %r" % eml[:300])
            with open(path) as f:
                doc = json.load(f)

        with t.case("envelope"):
            env = doc["envelope"]
            t.check(doc["schema"] == "oceanmx.message" and doc["version"] == 1, "schema/version %r" % doc.get("schema"))
            t.check(env["id"] == qid, "envelope id %r, want %s" % (env["id"], qid))
            t.check(env["mail_from"]["email"] == "ann+news@x.test" and env["mail_from"]["detail"] == "news",
                    "mail_from %r" % env["mail_from"])
            t.check([r["email"] for r in env["rcpt_to"]] == ["bob@y.test", "carl@y.test"], "rcpt_to %r" % env["rcpt_to"])
            t.check(env["client"]["ip"] == "127.0.0.1", "client %r" % env["client"])
            t.check(env["helo"] == "client.test", "helo %r" % env["helo"])

        with t.case("headers_bodies_addresses"):
            t.check(doc["subject"] == "caf\u00e9 report", "subject %r" % doc["subject"])
            t.check(doc["from"][0]["name"] == "Ann Example" and doc["from"][0]["domain"] == "x.test", "from %r" % doc["from"])
            t.check([a["email"] for a in doc["to"]] == ["bob@y.test", "carl@y.test"], "to %r" % doc["to"])
            t.check(doc["to"][1]["name"] == "Carl, C.", "quoted display name %r" % doc["to"][1])
            t.check(doc["text"]["content"].replace("\r\n", "\n").strip() == "Gr\u00fc\u00dfe",
                    "text body %r" % doc["text"])
            t.check(doc["text"]["charset"].lower() == "iso-8859-1", "charset %r" % doc["text"]["charset"])

        with t.case("attachments_inline_and_as_files"):
            atts = doc["attachments"]
            t.check(len(atts) == 2, "%d attachments: %r" % (len(atts), atts))
            a, b = atts
            t.check(a["filename"] == "small.bin" and a["size"] == len(small), "small %r" % {k: a[k] for k in a if k != "content"})
            t.check(base64.b64decode(a["content"]) == small, "inline content differs")
            t.check(a["sha256"] == hashlib.sha256(small).hexdigest(), "small sha256")
            t.check(b["filename"] == "gro\u00df.bin", "RFC 2231 filename %r" % b["filename"])
            t.check(b.get("content") is None and b["path"], "big attachment not a file: %r" % b)
            with open(os.path.join(jdir, b["path"]), "rb") as f:
                t.check(f.read() == big, "attachment file differs")
            t.check(b["sha256"] == hashlib.sha256(big).hexdigest(), "big sha256")


if __name__ == "__main__":
    run(main)
