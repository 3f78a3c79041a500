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
"""

import email
import email.header
import hashlib
import json
import os
import subprocess

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
    # header block (garbage); ours decodes it and keeps the decoded message as a leaf, with a
    # transfer_encoding_on_composite defect.
    ("mime-stalwart/eml/rfc/008.eml", "tree"): "base64 message/rfc822: decoded leaf instead of parsing base64 text as headers",
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
    # x-uuencode is not a MIME transfer encoding (RFC 2045 §6.1); we pass the bytes through undecoded and
    # record transfer_encoding_unknown. Python runs uudecode. (Known gap: a uudecoder may be added later.)
    ("mime-stalwart/eml/legacy/017.eml", "sha256"): "x-uuencode passed through undecoded (not an RFC 2045 encoding)",
    ("mime-stalwart/eml/legacy/026.eml", "sha256"): "x-uuencode passed through undecoded (not an RFC 2045 encoding)",
    ("mime-stalwart/eml/legacy/048.eml", "sha256"): "x-uuencode passed through undecoded (not an RFC 2045 encoding)",
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
            counts["messages"] += 1
            counts["parts"] += len(ours)
            bad = []
            for what, detail in sorted(compare(ours, theirs).items()):
                if (rel, what) in EXCEPTIONS:
                    seen_exc.add((rel, what))
                    counts["excepted"] += 1
                    continue
                bad.append("%s differs: %s" % (what, detail))
            t.check(not bad, "; ".join(bad))
    with t.case("exceptions table is current"):
        stale = sorted(set(EXCEPTIONS) - seen_exc)
        t.check(not stale, "listed but no longer different: %s" % stale)
    print("RESULT: %d messages, %d parts compared with Python's email; %d listed exceptions"
          % (counts["messages"], counts["parts"], counts["excepted"]), flush=True)


if __name__ == "__main__":
    run(main)
