"""
test_mime_diff - differential test of the MIME parser against Python's email
package (Debian's /usr/bin/python3, compat32 policy, the parser most mail
tooling in Python uses) on every message of the MIME corpora:
corpora/mime-tools, mime-stalwart, mime-torture, mime-postal-mime,
mime-mailparser.

For each message, `oceanmx parse FILE` is compared with
email.message_from_bytes(FILE) part by part in document order:
  - the part tree (which part is a leaf, a multipart, an encapsulated message),
  - the content type of every part,
  - the filename of every leaf (Python's get_filename(), RFC 2047 words decoded),
  - the SHA-256 of every leaf's decoded payload (get_payload(decode=True)).
A difference fails the test unless the EXCEPTIONS table lists it, keyed by
(corpus-relative file, the kind of difference), with the reason our answer is
the right one (or the better one). Every listed exception must still occur, so
the table cannot silently rot.

Then the messages of SYNTHETIC, made here with Python's own encoders, for the
x-uuencode decoder and encoded composites (a multipart or message/rfc822 whose
body is base64 or quoted-printable). Python decodes x-uuencode, so those are
compared as above; it does not decode an encoded composite (RFC 2045 §6.4
forbids them: it keeps one leaf), so for those ("decoded" cases) our tree is
compared with Python's parse of the same message written with the body
decoded, which is what we claim to produce.
"""

import base64
import binascii
import email
import email.header
import hashlib
import json
import os
import quopri
import subprocess
import tempfile

from lib import Skip, corpora_dir, omx_bin, run

SUITES = ["mime-tools", "mime-stalwart", "mime-torture", "mime-postal-mime", "mime-mailparser"]
EXTS = (".msg", ".eml")

# (file relative to the corpora dir, what differs) -> why ours is right.
# "what differs" is one of: tree, type, filename, sha256.
EXCEPTIONS = {
    # message/delivery-status (RFC 3464) and message/feedback-report (RFC 5965) are text bodies made of
    # header-like groups, not encapsulated messages; Python turns each group into a Message. Ours keeps one
    # leaf with the decoded bytes (as GMime and mail-parser do), so consumers can read the report as text.
    ("mime-mailparser/delivery-status.eml", "tree"): "message/delivery-status is a leaf (RFC 3464 §2.1)",
    ("mime-postal-mime/bounce.eml", "tree"): "message/delivery-status is a leaf (RFC 3464 §2.1)",
    ("mime-postal-mime/arf.eml", "tree"): "message/feedback-report is a leaf (RFC 5965 §3)",
    # message/partial and message/external-body carry a fragment or a phantom header, not a message
    # (RFC 2046 §5.2.2, §5.2.3); Python parses them as messages.
    ("mime-stalwart/eml/thirdparty/009.eml", "tree"): "message/partial is a fragment, kept as a leaf (RFC 2046 §5.2.2)",
    ("mime-stalwart/eml/rfc/001.eml", "tree"): "message/external-body is a leaf (RFC 2046 §5.2.3)",
    # A base64-encoded message/rfc822 (forbidden by RFC 2046 §5.2.1): Python parses the still-encoded text as a
    # header block (garbage); ours decodes it and parses the decoded message (an encoded_composite defect).
    # ENCODED_CASES below checks that tree against Python's parse of the decoded bytes.
    ("mime-stalwart/eml/rfc/008.eml", "tree"): "base64 message/rfc822: decoded and parsed instead of parsing base64 text as headers",
    # Folded boundary parameter: RFC 5322 §2.2.3 unfolding removes the CRLF, so boundary="simple\n boundary" is
    # "simple boundary", which the delimiters use. Python keeps the line break in the parameter, finds no
    # delimiter and degrades the whole message to one leaf.
    ("mime-tools/testmsgs/multi-simple.msg", "tree"): "folded boundary parameter unfolded (RFC 5322 §2.2.3)",
    ("mime-tools/testmsgs/multi-clen.msg", "tree"): "folded boundary parameter unfolded (RFC 5322 §2.2.3)",
    ("mime-tools/testmsgs/multi-digest.msg", "tree"): "folded boundary parameter unfolded (RFC 5322 §2.2.3)",
    ("mime-stalwart/eml/thirdparty/012.eml", "tree"): "folded boundary parameter unfolded (RFC 5322 §2.2.3)",
    # A UTF-8 byte order mark before the first field (Windows tools): we skip it, as MIME-tools' own test
    # (t/test-utf8-bom.t) expects; Python sees a non-header first line and makes the message one leaf.
    ("mime-tools/testmsgs/utf8-bom-at-start.msg", "tree"): "UTF-8 BOM before the header is skipped (MIME-tools expectation)",
    # "Fro :uMmlti ...": RFC 5322 §4.5.3 obs-optional allows white space before the colon; Python's header
    # regex does not, so for Python the body starts at line 1.
    ("mime-stalwart/eml/malformed/019.eml", "tree"): "obsolete 'Name WSP :' field syntax accepted (RFC 5322 §4.5.3)",
    # Content-Type "multipart/mixed\n\tboundary=..." without ';': Python returns the whole unfolded value as
    # the type; ours returns the type/subtype token and still finds the boundary parameter.
    ("mime-stalwart/eml/malformed/017.eml", "type"): "type/subtype token taken; Python returns the raw value as type",
    # Content-Transfer-Encoding "quoted-printable" followed by trailing white space: Python compares the raw
    # value (with the spaces) and does not decode; ours takes the token and decodes.
    ("mime-stalwart/eml/thirdparty/003.eml", "sha256"): "CTE token with trailing white space decoded as quoted-printable",
    # Nested multiparts that reuse their parent's boundary (or one that is a prefix of it): ambiguous by RFC
    # 2046 §5.1.1 ("MUST NOT appear inside any of the encapsulated parts"). We match the innermost open
    # multipart first (as GMime does); Python checks the outer boundary first.
    ("mime-stalwart/eml/malformed/003.eml", "tree"): "ambiguous reused boundary: innermost multipart wins",
    ("mime-stalwart/eml/malformed/005.eml", "tree"): "ambiguous boundary 'a--' vs 'a----': innermost multipart wins",
    ("mime-stalwart/eml/malformed/013.eml", "tree"): "ambiguous reused boundary: innermost multipart wins",
}


def uu(data, name="f.bin", strip=False, end=True, checksum=False):
    """uuencode(1) output; strip: trailing spaces eaten in transit; checksum: an extra character a line."""
    out = [b"begin 644 " + name.encode()]
    for i in range(0, len(data), 45):
        line = binascii.b2a_uu(data[i:i + 45], backtick=not strip).rstrip(b"\n")
        if strip:
            line = line.rstrip(b" ")
        if checksum:
            line += b"X"
        out.append(line)
    out.append(b"`" if not strip else b" ")
    if end:
        out.append(b"end")
    return b"\r\n".join(out) + b"\r\n"


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def b64(b):
    return crlf(base64.encodebytes(b))


def qp(b):
    return crlf(quopri.encodestring(crlf(b)))


BIN = bytes(range(256)) * 3 + b"\x00" * 90  # zero runs: lines of spaces (or backticks)
INNER = crlf(b"""preamble
--=_in
Content-Type: text/plain; charset=utf-8

caf\xc3\xa9 =3D, a line long enough that quoted-printable has to break it somewhere in the middle of it
--=_in
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64

""") + b64(BIN) + b"--=_in--\r\n"
INNER_CT = b'Content-Type: multipart/mixed; boundary="=_in"\r\n'
MESSAGE = crlf(b"""Subject: inner
Content-Type: multipart/alternative; boundary=alt

--alt
Content-Type: text/plain

inner text
--alt
Content-Type: text/html

<p>inner</p>
--alt--
""")


def outer(parts):
    """A multipart/mixed message around (header bytes, body bytes) parts."""
    out = [b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=out\r\n\r\n"]
    for h, body in parts:
        out.append(b"--out\r\n" + h + b"\r\n" + body + b"\r\n")
    out.append(b"--out--\r\n")
    return b"".join(out)


def uu_part(cte, data, **kw):
    return (b"Content-Type: application/octet-stream; name=\"h.bin\"\r\nContent-Transfer-Encoding: " + cte + b"\r\n",
            uu(data, **kw))


# name -> (message, reference or None). With a reference ("decoded" case) our tree of the message is compared
# with Python's tree of the reference, else with Python's tree of the message itself.
SYNTHETIC = {
    "uu-aliases": (outer([uu_part(c, BIN) for c in (b"x-uuencode", b"uuencode", b"x-uue", b"uue")]), None),
    "uu-stripped-spaces-no-end-checksum": (outer([uu_part(b"x-uuencode", BIN, strip=True),
                                                  uu_part(b"x-uuencode", BIN, end=False),
                                                  uu_part(b"x-uuencode", BIN, checksum=True)]), None),
    "uu-root": (b"Content-Type: image/gif; name=z.gif\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" + uu(BIN), None),
    "uu-begin-names-the-part": (outer([(b"Content-Transfer-Encoding: x-uuencode\r\n", uu(BIN, name="n.bin"))]), None),
    "uu-junk-line": (outer([(b"Content-Type: application/octet-stream; name=j.bin\r\n"
                             b"Content-Transfer-Encoding: x-uuencode\r\n",
                             uu(BIN, end=False) + b"-- \r\nsent from my phone\r\n")]), None),
    "uu-inline-in-text": (outer([(b"Content-Type: text/plain\r\n", b"see below\r\n\r\n" + uu(BIN))]), None),
    # headers the sender did not mean: Python ignores them, so do we
    "not-encoded-base64-multipart": (outer([(INNER_CT + b"Content-Transfer-Encoding: base64\r\n", INNER)]), None),
    "not-encoded-qp-multipart": (crlf(b"Content-Type: multipart/mixed; boundary=b\r\n"
                                      b"Content-Transfer-Encoding: quoted-printable\r\n\r\n--b\r\n\r\nx\r\n"
                                      b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n") + b64(b"pad!") +
                                 b"--b--\r\n", None),
    "base64-multipart-without-boundary": (b"Content-Type: multipart/mixed\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                                          b64(BIN), None),
    "not-encoded-base64-message": (outer([(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n",
                                           MESSAGE)]), None),
    # encoded composites, against the same message written plainly
    "decoded-base64-root-multipart": (INNER_CT + b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(INNER),
                                      INNER_CT + b"\r\n" + INNER),
    "decoded-base64-multipart-part": (outer([(INNER_CT + b"Content-Transfer-Encoding: base64\r\n", b64(INNER)),
                                             (b"Content-Type: text/plain\r\n", b"after")]),
                                      outer([(INNER_CT, INNER), (b"Content-Type: text/plain\r\n", b"after")])),
    "decoded-qp-multipart-part": (outer([(INNER_CT + b"Content-Transfer-Encoding: quoted-printable\r\n", qp(INNER))]),
                                  outer([(INNER_CT, INNER)])),
    "decoded-base64-message": (outer([(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n",
                                       b64(MESSAGE))]),
                               outer([(b"Content-Type: message/rfc822\r\n", MESSAGE)])),
    "decoded-qp-message": (outer([(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n",
                                   qp(MESSAGE.replace(b"inner text", b"inn\xc3\xa9r =text")))]),
                           outer([(b"Content-Type: message/rfc822\r\n",
                                   MESSAGE.replace(b"inner text", b"inn\xc3\xa9r =text"))])),
}

# (synthetic name, what differs) -> why ours is right; as EXCEPTIONS.
SYNTHETIC_EXCEPTIONS = {
    ("uu-begin-names-the-part", "filename"): "the begin line names a part whose header does not (Python ignores it)",
    ("uu-junk-line", "sha256"): "junk lines after the data are skipped (uuencode_invalid); Python returns the body undecoded",
}


def decode_filename(fn):
    """RFC 2047 words in a filename, as mainstream readers decode them."""
    try:
        parts = email.header.decode_header(fn)
        out = []
        for b, cs in parts:
            if isinstance(b, str):
                out.append(b)
                continue
            cs = (cs or "ascii").split("*")[0]  # RFC 2231 §5 language suffix
            try:
                out.append(b.decode(cs, "replace"))
            except LookupError:
                out.append(b.decode("utf-8", "replace"))
        return "".join(out)
    except Exception:
        return fn


def py_tree(msg, out, path="r"):
    """Flatten Python's view: (path, kind, type, filename, sha256)."""
    ctype = msg.get_content_type()
    payload = msg.get_payload()
    if msg.is_multipart():
        kind = "message" if msg.get_content_maintype() == "message" else "multipart"
        out.append((path, kind, ctype, None, None))
        for i, sub in enumerate(payload):
            py_tree(sub, out, "%s.%d" % (path, i))
        return
    fn = msg.get_filename()
    if fn is not None:
        fn = decode_filename(fn)
    data = msg.get_payload(decode=True)
    if data is None:
        data = b""
    out.append((path, "leaf", ctype, fn, hashlib.sha256(data).hexdigest()))


def our_tree(node, out, path="r"):
    kind = node["kind"]
    out.append((path, kind, node["content_type"],
                node.get("filename") if kind == "leaf" else None,
                node.get("sha256") if kind == "leaf" else None))
    for i, sub in enumerate(node.get("parts") or []):
        our_tree(sub, out, "%s.%d" % (path, i))


def compare(ours, theirs):
    """Return {kind of difference: first detail}."""
    diffs = {}
    if [(p, k) for p, k, *_ in ours] != [(p, k) for p, k, *_ in theirs]:
        diffs["tree"] = "ours %s / python %s" % ([(p, k) for p, k, *_ in ours][:12], [(p, k) for p, k, *_ in theirs][:12])
        return diffs
    for o, t in zip(ours, theirs):
        if o[2] != t[2] and "type" not in diffs:
            diffs["type"] = "%s: ours %s, python %s" % (o[0], o[2], t[2])
        if o[1] == "leaf":
            if o[3] != t[3] and "filename" not in diffs:
                diffs["filename"] = "%s: ours %r, python %r" % (o[0], o[3], t[3])
            if o[4] != t[4] and "sha256" not in diffs:
                diffs["sha256"] = "%s: ours %s, python %s" % (o[0], o[4][:12], t[4][:12])
    return diffs


def check_diffs(t, key, ours, theirs, table, seen_exc, counts):
    """Fail on every difference that `table` does not list for `key`; count what it does."""
    counts["messages"] += 1
    counts["parts"] += len(ours)
    bad = []
    for what, detail in sorted(compare(ours, theirs).items()):
        if (key, what) in table:
            seen_exc.add((key, what))
            counts["excepted"] += 1
            continue
        bad.append("%s differs: %s" % (what, detail))
    t.check(not bad, "; ".join(bad))


def main(t):
    corpora = corpora_dir()
    if not os.path.isdir(os.path.join(corpora, "mime-tools")):
        raise Skip("MIME corpora not found at %s (set OMX_CORPORA)" % corpora)
    binary = omx_bin()
    files = []
    for s in SUITES:
        for root, _, names in os.walk(os.path.join(corpora, s)):
            for n in sorted(names):
                if n.endswith(EXTS):
                    files.append(os.path.relpath(os.path.join(root, n), corpora))
    files.sort()
    seen_exc = set()
    counts = {"messages": 0, "parts": 0, "excepted": 0}
    for rel in files:
        with t.case(rel):
            path = os.path.join(corpora, rel)
            with open(path, "rb") as f:
                raw = f.read()
            r = subprocess.run([binary, "parse", path], capture_output=True, timeout=120)
            t.check(r.returncode == 0, "oceanmx parse exit %d: %s" % (r.returncode, r.stderr[-500:]))
            doc = json.loads(r.stdout)
            ours, theirs = [], []
            our_tree(doc["parts"], ours)
            py_tree(email.message_from_bytes(raw), theirs)
            check_diffs(t, rel, ours, theirs, EXCEPTIONS, seen_exc, counts)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (msg, ref) in sorted(SYNTHETIC.items()):
            with t.case("synthetic/" + name):
                path = os.path.join(tmp, name + ".eml")
                with open(path, "wb") as f:
                    f.write(msg)
                r = subprocess.run([binary, "parse", path], capture_output=True, timeout=120)
                t.check(r.returncode == 0, "oceanmx parse exit %d: %s" % (r.returncode, r.stderr[-500:]))
                doc = json.loads(r.stdout)
                ours, theirs = [], []
                our_tree(doc["parts"], ours)
                py_tree(email.message_from_bytes(ref if ref is not None else msg), theirs)
                codes = [d["code"] for d in doc["defects"]]
                if ref is not None:
                    t.check("encoded_composite" in codes, "no encoded_composite defect: %s" % codes)
                elif name.startswith("not-encoded"):
                    t.check("transfer_encoding_on_composite" in codes and "encoded_composite" not in codes,
                            "defects %s" % codes)
                check_diffs(t, name, ours, theirs, SYNTHETIC_EXCEPTIONS, seen_exc, counts)
    with t.case("exceptions table is current"):
        stale = sorted((set(EXCEPTIONS) | set(SYNTHETIC_EXCEPTIONS)) - seen_exc)
        t.check(not stale, "listed but no longer different: %s" % stale)
    print("RESULT: %d messages, %d parts compared with Python's email; %d listed exceptions"
          % (counts["messages"], counts["parts"], counts["excepted"]), flush=True)


if __name__ == "__main__":
    run(main)
