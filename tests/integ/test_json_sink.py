"""
test_json_sink - the json:DIR sink beside the maildir sink, end to end: for
an accepted message DIR/ID.eml holds the spooled message, DIR/ID.json the
document (docs/json.md) with the envelope of the SMTP transaction, decoded
bodies, and attachments inline (base64) below inline_max or as files in
DIR/ID.att/ above it, each with the SHA-256 of its decoded bytes. A message
with NUL bytes in its header fields and body keeps every value whole (NUL as
U+FFFD, defects header_nul/body_nul, an address holding one invalid) in the
sink's document and in `oceanmx parse` of the stored message alike.
"""

import base64
import hashlib
import json
import os
import subprocess
import time

from lib import Conn, Server, T_DELIVER, crlf, ehlo, omx_bin, run, send_message

FFFD = "\ufffd"


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


def nul_message():
    return crlf(
        "From: Ann\0X <ann@x.test>\nTo: t@x.test\0, u@y.test, =?utf-8?q?C=00D?= <cd@x.test>\n"
        "Subject: Invoice\0 tail\nMessage-ID: <id\0x@x.test>\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"BB\"\n\n"
        "--BB\nContent-Type: text/plain; charset=utf-8\n\nbody\0 tail\n"
        "--BB\nContent-Type: application/pdf\n"
        "Content-Disposition: attachment; filename*=utf-8''in%00voice.pdf\n\n%PDF\n--BB--\n")


def wait_doc(t, jdir, qid):
    path = os.path.join(jdir, qid + ".json")
    deadline = time.monotonic() + T_DELIVER
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    t.check(os.path.exists(path), "%s not written" % path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_nul_doc(t, doc, where):
    t.check(doc["subject"] == "Invoice" + FFFD + " tail", "%s: subject %r" % (where, doc["subject"]))
    hdr = {h["name"]: h["value"] for h in doc["headers"]}
    t.check(hdr.get("From") == "Ann" + FFFD + "X <ann@x.test>", "%s: From field %r" % (where, hdr.get("From")))
    t.check(hdr.get("To") == "t@x.test" + FFFD + ", u@y.test, C" + FFFD + "D <cd@x.test>",
            "%s: To field %r" % (where, hdr.get("To")))
    f = doc["from"]
    t.check(len(f) == 1 and f[0]["name"] == "Ann" + FFFD + "X" and f[0]["email"] == "ann@x.test"
            and "invalid" not in f[0], "%s: from %r" % (where, f))
    to = doc["to"]
    t.check([a["email"] for a in to] == ["t@x.test" + FFFD, "u@y.test", "cd@x.test"], "%s: to %r" % (where, to))
    t.check(to and to[0].get("invalid") is True and "invalid" not in to[1], "%s: to validity %r" % (where, to))
    t.check(len(to) == 3 and to[2]["name"] == "C" + FFFD + "D", "%s: encoded-word name %r" % (where, to))
    t.check(doc["message_id"] == "id" + FFFD + "x@x.test", "%s: message_id %r" % (where, doc["message_id"]))
    t.check(doc["text"] and doc["text"]["content"] == "body" + FFFD + " tail", "%s: text %r" % (where, doc["text"]))
    atts = doc["attachments"]
    t.check(len(atts) == 1 and atts[0]["filename"] == "in" + FFFD + "voice.pdf", "%s: attachments %r" % (where, atts))
    codes = {(d["code"], d["part_id"]) for d in doc["defects"]}
    for want in (("header_nul", "0"), ("header_nul", "2"), ("body_nul", "1"), ("address_invalid", "0")):
        t.check(want in codes, "%s: no defect %r in %r" % (where, want, doc["defects"]))


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
        nul_content = nul_message()
        _, nul_qid = send_message(t, c, "ann@x.test", ["bob@y.test"], nul_content)
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

        with t.case("nul_bytes_replaced_never_cut"):
            nul_doc = wait_doc(t, jdir, nul_qid)
            eml_path = os.path.join(jdir, nul_qid + ".eml")
            with open(eml_path, "rb") as f:
                t.check(f.read().endswith(nul_content), "ID.eml does not hold the NUL bytes as sent")
            check_nul_doc(t, nul_doc, "json sink")

        with t.case("nul_bytes_oceanmx_parse"):
            r = subprocess.run([omx_bin(), "parse", eml_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=60)
            t.check(r.returncode == 0, "oceanmx parse exit %d: %r" % (r.returncode, r.stderr[-500:]))
            parsed = json.loads(r.stdout.decode("utf-8"))
            t.check(parsed["envelope"] is None, "parse envelope %r" % parsed["envelope"])
            check_nul_doc(t, parsed, "oceanmx parse")
            for k in ("headers", "from", "to", "subject", "message_id", "text", "attachments", "parts", "defects"):
                t.check(parsed[k] == nul_doc[k], "%s differs: parse %r, sink %r" % (k, parsed[k], nul_doc[k]))


if __name__ == "__main__":
    run(main)
