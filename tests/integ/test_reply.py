"""
test_reply - the message document's `reply` object (docs/json.md; issue 16):
the first text body without its quoted history, its signature, and the HTML
body without the quoted part.

Conformance, through `oceanmx parse` of a message around each body (base64,
so every byte of the body is kept):
  - ../shared/corpora/reply-talon/cases.json (talon's plain-text quotation
    tests): reply.text == expected, both stripped of outer white space;
  - ../shared/corpora/reply-github/ (github/email_reply_parser): reply.text
    minus reply.signature == the parser's visible text, as its Ruby test
    states it (EXPECTED_GITHUB below, taken from email_reply_parser_test.rb:
    parse_reply strings where it has them, else the visible fragments of its
    fragment assertions), compared with white space runs collapsed: that
    parser joins a wrapped "On ... wrote:" into one line and joins fragments
    with "\\n", which changes only white space.
Each corpus is skipped (said so on a SKIP-like line, the case is counted as
skipped) when ../shared/corpora (OMX_CORPORA) does not have it.

Real clients: whole replies as Gmail, Outlook (web and desktop), Apple Mail,
iPhone, Android, Yahoo and Thunderbird write them (multipart/alternative
with their HTML structure), in several languages, sent through the server
with smtplib and read back from the json sink.
"""

import base64
import json
import os
import re
import smtplib
import subprocess
import time

from lib import Server, T_DELIVER, corpora_dir, omx_bin, run

# ---------------------------------------------------------------- corpora

# email_reply_parser's visible text per fixture, from email_reply_parser_test.rb.
EXPECTED_GITHUB = {
    # test_reads_simple_body: fragment 0 visible; "-Abhishek Kona" and the list footer are signatures.
    "email_1_1": "Hi folks\n\nWhat is the best way to clear a Riak bucket of all key, values after\nrunning a test?\n"
                 "I am currently using the Java HTTP API.",
    # test_reads_bottom_post / test_parse_reply: fragments 0-2 visible (the quote between is not hidden).
    "email_1_2": None,  # computed below from the file: everything above the last quoted block
    # test_reads_top_post: only fragment 0 is visible; fragment 1 "-A..." is a signature.
    "email_1_3": "Oh thanks.\n\nHaving the function would be great.",
    # test_recognizes_date_string_above_quote
    "email_1_4": "Awesome! I haven't had another problem with it.",
    # test_a_complex_body_with_only_one_fragment: the whole body
    "email_1_5": None,
    # test_deals_with_multiline_reply_headers: "Sent from a magnificent torch of pixels" is not a signature
    "email_1_6": "I get proper rendering as well.\n\nSent from a magnificent torch of pixels",
    # test_deals_with_windows_line_endings
    "email_1_7": ":+1:",
    # test_reads_inline_replies: fragments 0-3 visible (quote, answer, quote, answer)
    "email_1_8": None,
    "email_2_1": "Outlook with a reply",
    "email_2_2": "Outlook with a reply directly above line",
    "email_2_3": "Outlook with a reply directly above line",
    "email_iPhone": "Here is another email",
    "email_BlackBerry": "Here is another email",
    "email_multi_word_sent_from_my_mobile_device": "Here is another email",
    "email_sent_from_my_not_signature": "Here is another email\n\nSent from my desk, is much easier then my mobile phone.",
    "email_bullets": "test 2 this should list second\n\nand have spaces\n\nand retain this formatting\n\n\n"
                     "   - how about bullets\n   - and another",
    # test_one_is_not_on: fragment 0 visible, "On Oct 1, 2012 ..." starts the quote
    "email_one_is_not_on": "Thank, this is really helpful.\n\nOne outstanding question I had:\n\n"
                           "Locally (on development), when I run...",
    # test_mulitple_on: fragment 0 visible, the rest hidden
    "greedy_on": None,
    # test_reads_email_with_correct_signature: fragment 0 visible, "-- \nrick" the signature
    "correct_sig": "this is an email with a correct -- signature.",
    # test_doesnt_remove_signature_delimiter_in_mid_line: one fragment, the whole body
    "email_sig_delimiter_in_middle_of_line": None,
    # test_long_quote_processing_completes: 5 fragments; visible: the text, the one quoted line, the
    # text after it; the signature "-Abhishek Kona" and the list footer hidden
    "email_long_quote": None,
    # test_pathological_emails: only timed there; visible is the reply above "On Dec 8, 2013 ..."
    "pathological": "I think you're onto something. I will try to fix the problem as soon as I\nget back to a computer.",
}


def github_expected(name, body):
    e = EXPECTED_GITHUB[name]
    if e is not None:
        return e
    lines = body.replace("\r\n", "\n").split("\n")
    if name in ("email_1_5", "email_sig_delimiter_in_middle_of_line"):
        return body
    if name == "greedy_on":
        return "\n".join(lines[:lines.index("On 9 Jan 2014, at 2:47, George Plymale wrote:")])
    if name in ("email_1_2", "email_1_8"):
        # everything above the last quoted block (fragments up to the last visible one)
        last_text = max(i for i, l in enumerate(lines)
                        if l.strip() and not l.startswith(">") and not l.startswith("_") and not l.startswith("--")
                        and i < max(j for j, x in enumerate(lines) if x.startswith(">")))
        return "\n".join(lines[:last_text + 1])
    if name == "email_long_quote":
        return "\n".join(lines[:lines.index("-Abhishek Kona")])
    raise KeyError(name)


def squash(s):
    return re.sub(r"\s+", " ", s).strip()


def parse_body(body, html=None):
    """parse_body runs `oceanmx parse` on a message around body (text/plain, base64) and returns its document."""
    hdr = "From: a@x.test\r\nTo: b@y.test\r\nSubject: Re: t\r\nMIME-Version: 1.0\r\n"
    enc = lambda b: "\r\n".join(base64.b64encode(b).decode()[i:i + 76] for i in range(0, len(base64.b64encode(b)), 76))
    if html is None:
        msg = hdr + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + \
            enc(body.encode("utf-8")) + "\r\n"
    else:
        msg = hdr + "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + \
            enc(html.encode("utf-8")) + "\r\n"
    r = subprocess.run([omx_bin(), "parse", "-"], input=msg.encode(), capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("oceanmx parse exit %d: %r" % (r.returncode, r.stderr[-400:]))
    return json.loads(r.stdout.decode("utf-8"))


def visible(reply):
    t = reply["text"]
    if reply["signature"]:
        assert t.endswith(reply["signature"]), "signature is not a suffix of text"
        t = t[:len(t) - len(reply["signature"])]
    return t


def talon_cases(t):
    path = os.path.join(corpora_dir(), "reply-talon", "cases.json")
    if not os.path.exists(path):
        print("SKIP-CORPUS: reply-talon not found at %s (set OMX_CORPORA)" % path)
        return
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    passed = 0
    for i, c in enumerate(cases):
        with t.case("talon_%02d_%s" % (i, c["name"])):
            doc = parse_body(c["body"])
            got = doc["reply"]["text"].strip()
            t.check(got == c["expected"].strip(), "reply.text %r, want %r" % (got, c["expected"].strip()))
            passed += 1
    print("FIGURE: reply-talon %d/%d cases pass" % (passed, len(cases)))


def github_cases(t):
    d = os.path.join(corpora_dir(), "reply-github", "emails")
    if not os.path.isdir(d):
        print("SKIP-CORPUS: reply-github not found at %s (set OMX_CORPORA)" % d)
        return
    passed = 0
    names = sorted(EXPECTED_GITHUB)
    for name in names:
        with t.case("github_%s" % name):
            with open(os.path.join(d, name + ".txt"), encoding="utf-8", newline="") as f:
                body = f.read()
            doc = parse_body(body)
            got = visible(doc["reply"])
            want = github_expected(name, body)
            t.check(squash(got) == squash(want), "visible %r,\n want %r" % (got[:600], want[:600]))
            passed += 1
    # test_handles_non_ascii_characters
    with t.case("github_non_ascii"):
        doc = parse_body("Here\u2019s a test.")
        t.check(visible(doc["reply"]) == "Here\u2019s a test.", "reply %r" % doc["reply"])
        passed += 1
    print("FIGURE: reply-github %d/%d cases pass" % (passed, len(names) + 1))


def main(t):
    talon_cases(t)
    github_cases(t)


if __name__ == "__main__":
    run(main)
