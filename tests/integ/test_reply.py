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

# ---------------------------------------------------------------- real clients

# (name, text/plain or None, text/html or None, reply.text, reply.signature, in reply.html, not in reply.html)
CLIENTS = [
    ("gmail_en",
     "Sounds good, see you then.\n\nOn Tue, Apr 2, 2024 at 10:15\u202fAM Ann Example <ann@x.test> wrote:\n\n"
     "> Can we meet Thursday?\n>\n> Ann\n",
     '<div dir="ltr">Sounds good, see you then.</div><br><div class="gmail_quote gmail_quote_container">'
     '<div dir="ltr" class="gmail_attr">On Tue, Apr 2, 2024 at 10:15\u202fAM Ann Example &lt;<a href="mailto:ann@x.test">'
     'ann@x.test</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
     'border-left:1px solid rgb(204,204,204);padding-left:1ex"><div dir="ltr">Can we meet Thursday?<div><br></div>'
     '<div>Ann</div></div></blockquote></div>\n',
     "Sounds good, see you then.", None, "Sounds good", "Can we meet"),
    ("gmail_de",
     "Passt, bis dann.\n\nAm Di., 2. Apr. 2024 um 10:15 Uhr schrieb Ann Example <ann@x.test>:\n\n"
     "> Treffen wir uns am Donnerstag?\n>\n",
     '<div dir="ltr">Passt, bis dann.</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
     'Am Di., 2. Apr. 2024 um 10:15\u00a0Uhr schrieb Ann Example &lt;<a href="mailto:ann@x.test">ann@x.test</a>&gt;:<br>'
     '</div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex"><div dir="ltr">Treffen wir uns am '
     'Donnerstag?</div></blockquote></div>\n',
     "Passt, bis dann.", None, "Passt", "Treffen"),
    ("gmail_fr",
     "C'est not\u00e9.\n\nLe mar. 2 avr. 2024 \u00e0 10:15, Ann Example <ann@x.test> a \u00e9crit :\n\n> On se voit jeudi ?\n",
     None, "C'est not\u00e9.", None, None, None),
    ("gmail_es",
     "De acuerdo.\n\nEl mar, 2 abr 2024 a las 10:15, Ann Example (<ann@x.test>)\nescribi\u00f3:\n\n> \u00bfNos vemos el jueves?\n",
     None, "De acuerdo.", None, None, None),
    ("gmail_pt",
     "Combinado.\n\nEm ter., 2 de abr. de 2024 \u00e0s 10:15, Ann Example <ann@x.test> escreveu:\n\n> Quinta-feira?\n",
     None, "Combinado.", None, None, None),
    ("gmail_ja",
     "\u4e86\u89e3\u3067\u3059\u3002\n\n2024\u5e744\u67082\u65e5(\u706b) 10:15 Ann Example <ann@x.test>:\n\n"
     "> \u6728\u66dc\u65e5\u306f\u3069\u3046\uff1f\n",
     None, "\u4e86\u89e3\u3067\u3059\u3002", None, None, None),
    ("gmail_zh",
     "\u597d\u7684\u3002\n\nAnn Example <ann@x.test> \u4e8e2024\u5e744\u67082\u65e5\u5468\u4e8c 10:15\u5199\u9053\uff1a\n\n"
     "> \u5468\u56db\u89c1\uff1f\n",
     None, "\u597d\u7684\u3002", None, None, None),
    ("gmail_ru",
     "\u0414\u0430, \u043a\u043e\u043d\u0435\u0447\u043d\u043e.\n\n"
     "\u0432\u0442, 2 \u0430\u043f\u0440. 2024\u202f\u0433. \u0432 10:15, Ann Example <ann@x.test>:\n\n> \u0412 \u0447\u0435\u0442\u0432\u0435\u0440\u0433?\n",
     None, "\u0414\u0430, \u043a\u043e\u043d\u0435\u0447\u043d\u043e.", None, None, None),
    ("gmail_pl",
     "Jasne.\n\npon., 1 kwi 2024 o 10:15 Ann Example <ann@x.test> napisa\u0142(a):\n\n> W czwartek?\n",
     None, "Jasne.", None, None, None),
    ("outlook_web_en",
     "Thanks, I'll check.\n\n________________________________\nFrom: Ann Example <ann@x.test>\n"
     "Sent: Tuesday, April 2, 2024 10:15 AM\nTo: Bob <bob@y.test>\nSubject: Report\n\nCan you check the report?\n",
     '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"><style type="text/css" '
     'style="display:none;"> P {margin-top:0;margin-bottom:0;} </style></head><body dir="ltr">'
     '<div class="elementToProof" style="font-family: Aptos, sans-serif; font-size: 12pt;">Thanks, I\'ll check.</div>'
     '<div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">'
     '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000">'
     '<b>From:</b> Ann Example &lt;ann@x.test&gt;<br><b>Sent:</b> Tuesday, April 2, 2024 10:15 AM<br><b>To:</b> Bob '
     '&lt;bob@y.test&gt;<br><b>Subject:</b> Report</font><div>&nbsp;</div></div><div>Can you check the report?</div>'
     '</body></html>',
     "Thanks, I'll check.", None, "Thanks, I'll check.</div></body></html>", "divRplyFwdMsg"),
    ("outlook_desktop_de",
     "Danke, erledigt.\n\nMit freundlichen Gr\u00fc\u00dfen\nMax Muster\n\nVon: Ann Example <ann@x.test>\n"
     "Gesendet: Dienstag, 2. April 2024 10:15\nAn: Max Muster <max@y.test>\nBetreff: Bericht\n\n"
     "Kannst du den Bericht pr\u00fcfen?\n",
     "<html xmlns:o=\"urn:schemas-microsoft-com:office:office\"><head><style><!-- p.MsoNormal {margin:0cm;} --></style>"
     "</head><body lang=DE link=\"#0563C1\"><div class=WordSection1><p class=MsoNormal>Danke, erledigt.<o:p></o:p></p>"
     "<p class=MsoNormal><o:p>&nbsp;</o:p></p><p class=MsoNormal>Mit freundlichen Gr&uuml;&szlig;en<br>Max Muster<o:p></o:p></p>"
     "<div><div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'><p class=MsoNormal>"
     "<b>Von:</b> Ann Example &lt;ann@x.test&gt; <br><b>Gesendet:</b> Dienstag, 2. April 2024 10:15<br><b>An:</b> Max "
     "Muster<br><b>Betreff:</b> Bericht<o:p></o:p></p></div></div><p class=MsoNormal>Kannst du den Bericht pr&uuml;fen?"
     "<o:p></o:p></p></div></body></html>",
     "Danke, erledigt.\n\nMit freundlichen Gr\u00fc\u00dfen\nMax Muster", "Mit freundlichen Gr\u00fc\u00dfen\nMax Muster",
     "Max Muster", "Kannst du"),
    ("apple_mail_fr",
     "Parfait, merci !\n\n> Le 2 avr. 2024 \u00e0 10:15, Ann Example <ann@x.test> a \u00e9crit :\n> \n"
     "> Tu as vu le rapport ?\n> \n",
     '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
     '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">Parfait, merci !'
     '<br id="lineBreakAtBeginningOfMessage"><div><br><blockquote type="cite"><div>Le 2 avr. 2024 \u00e0 10:15, Ann '
     'Example &lt;ann@x.test&gt; a \u00e9crit :</div><br class="Apple-interchange-newline"><div><div>Tu as vu le '
     'rapport ?</div></div></blockquote></div><br></body></html>',
     "Parfait, merci !", None, "Parfait, merci !", "Tu as vu"),
    ("iphone_en",
     "Yes, works for me.\n\nSent from my iPhone\n\n> On Apr 2, 2024, at 10:15, Ann Example <ann@x.test> wrote:\n> \n"
     "> \ufeffDoes 3pm work?\n",
     '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body dir="auto">Yes, '
     'works for me.<br><br><div dir="ltr">Sent from my iPhone</div><div dir="ltr"><br><blockquote type="cite">On Apr 2, '
     '2024, at 10:15, Ann Example &lt;ann@x.test&gt; wrote:<br><br></blockquote></div><blockquote type="cite">'
     '<div dir="ltr">\ufeffDoes 3pm work?</div></blockquote></body></html>',
     "Yes, works for me.\n\nSent from my iPhone", "Sent from my iPhone", "Sent from my iPhone", "3pm"),
    ("android_samsung_en",
     "Ok\n\n\n\nSent from my Galaxy\n\n\n-------- Original message --------\nFrom: Ann Example <ann@x.test> \n"
     "Date: 4/2/24 10:15 (GMT+01:00) \nTo: bob@y.test \nSubject: Lunch \n\nLunch at noon?\n",
     '<html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head><body><div dir="auto">Ok'
     '</div><div dir="auto"><br></div><div id="composer_signature" dir="auto"><div style="font-size:85%;color:#575757" '
     'dir="auto">Sent from my Galaxy</div></div><div><br></div><div align="left" dir="auto" style="font-size:100%;'
     'color:#000000"><div>-------- Original message --------</div><div>From: Ann Example &lt;ann@x.test&gt; </div>'
     '<div>Date: 4/2/24 10:15 (GMT+01:00) </div><div>To: bob@y.test </div><div>Subject: Lunch </div><div><br></div>'
     '</div>Lunch at noon?</body></html>',
     "Ok\n\n\n\nSent from my Galaxy", "Sent from my Galaxy", "Ok", None),
    ("yahoo_es",
     "Claro que s\u00ed.\n\nEnviado desde Yahoo Mail para Android\n\n"
     "El mar., 2 abr. 2024 a las 10:15, Ann Example\n<ann@x.test> escribi\u00f3:\n> \u00bfVienes ma\u00f1ana?\n",
     '<html><head></head><body><div class="ydp3c1e8f2ayahoo-style-wrap"><div>Claro que s\u00ed.</div><div><br></div>'
     '<div id="ymail_android_signature"><a href="https://go.onelink.me/107872968?pid=InProduct">Enviado desde Yahoo '
     'Mail para Android</a></div></div><div id="yahoo_quoted_8210467711" class="yahoo_quoted"><div style="font-family:'
     'Helvetica;font-size:13px;color:#26282a;"><div>El mar., 2 abr. 2024 a las 10:15, Ann Example</div><div>&lt;'
     'ann@x.test&gt; escribi\u00f3:</div><div><br></div><blockquote style="margin:0 0 20px 0;"><div>\u00bfVienes '
     'ma\u00f1ana?</div></blockquote></div></div></body></html>',
     "Claro que s\u00ed.\n\nEnviado desde Yahoo Mail para Android", "Enviado desde Yahoo Mail para Android",
     "Claro que", "Vienes"),
    ("thunderbird_it",
     "Va bene, a domani.\n\n-- \nBob\n\nIl 02/04/24 10:15, Ann Example ha scritto:\n> Ci vediamo domani?\n",
     '<!DOCTYPE html>\n<html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head><body>'
     '<p>Va bene, a domani.</p><div class="moz-signature">-- <br>Bob</div><div class="moz-cite-prefix">Il 02/04/24 10:15, '
     'Ann Example ha scritto:<br></div><blockquote type="cite" cite="mid:m1@x.test">Ci vediamo domani?</blockquote>'
     '<br></body></html>\n',
     "Va bene, a domani.\n\n-- \nBob", "-- \nBob", "moz-signature", "Ci vediamo"),
    ("thunderbird_nl",
     "Prima.\n\nOp 02-04-2024 om 10:15 schreef Ann Example:\n> Donderdag?\n", None, "Prima.", None, None, None),
    ("outlook_sv",
     "Okej.\n\nFr\u00e5n: Ann Example <ann@x.test>\nSkickat: den 2 april 2024 10:15\nTill: Bob <bob@y.test>\n"
     "\u00c4mne: Rapport\n\nHar du sett rapporten?\n", None, "Okej.", None, None, None),
    ("outlook_web_nl_html_only", None,
     '<html><body><div>Prima, dank je.</div><div>Groeten,<br>Bob</div><hr style="display:inline-block;width:98%">'
     '<div id="divRplyFwdMsg" dir="ltr"><b>Van:</b> Ann Example &lt;ann@x.test&gt;<br><b>Verzonden:</b> dinsdag 2 '
     'april 2024 10:15<br><b>Aan:</b> Bob<br><b>Onderwerp:</b> Rapport</div><div>Heb je het rapport gezien?</div>'
     '</body></html>',
     "Prima, dank je.\nGroeten,\nBob", None, "Prima", "Heb je"),
    ("forward_kept_whole",
     "FYI\n\n---------- Forwarded message ---------\nFrom: Ann Example <ann@x.test>\nDate: Tue, Apr 2, 2024 at 10:15 AM\n"
     "Subject: Report\nTo: <bob@y.test>\n\nThe report is attached.\n", None,
     "FYI\n\n---------- Forwarded message ---------\nFrom: Ann Example <ann@x.test>\nDate: Tue, Apr 2, 2024 at 10:15 AM\n"
     "Subject: Report\nTo: <bob@y.test>\n\nThe report is attached.", None, None, None),
]


def client_message(name, text, html):
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    if text is not None and html is not None:
        m = MIMEMultipart("alternative")
        m.attach(MIMEText(text, "plain", "utf-8"))
        m.attach(MIMEText(html, "html", "utf-8"))
    elif text is not None:
        m = MIMEText(text, "plain", "utf-8")
    else:
        m = MIMEText(html, "html", "utf-8")
    m["From"] = "Bob <bob@y.test>"
    m["To"] = "Ann Example <ann@x.test>"
    m["Subject"] = "Re: %s" % name
    m["Message-ID"] = "<%s@y.test>" % name
    import email.policy
    return m.as_bytes(policy=email.policy.SMTP)


def clients(t):
    srv = Server()
    jdir = os.path.join(srv.tmp, "json")
    srv.args = ["--sink", "json:%s" % jdir]
    with srv:
        s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=60)
        s.ehlo()
        ids = {}
        for name, text, html, *_ in CLIENTS:
            s.mail("bob@y.test")
            s.rcpt("ann@x.test")
            code, resp = s.data(client_message(name, text, html))
            m = re.search(r"queued as <?([A-Za-z0-9._+-]+)>?", resp.decode())
            ids[name] = m.group(1) if code == 250 and m else None
            if ids[name] is None:
                print("data reply for %s: %d %r" % (name, code, resp))
        s.quit()
        for name, text, html, want_text, want_sig, html_in, html_out in CLIENTS:
            with t.case("client_%s" % name):
                qid = ids[name]
                t.check(qid, "not accepted")
                path = os.path.join(jdir, qid + ".json")
                deadline = time.monotonic() + T_DELIVER
                while not os.path.exists(path) and time.monotonic() < deadline:
                    time.sleep(0.05)
                t.check(os.path.exists(path), "%s not written" % path)
                with open(path, encoding="utf-8") as f:
                    r = json.load(f)["reply"]
                t.check(r["text"] == want_text, "reply.text %r, want %r" % (r["text"], want_text))
                t.check(r["signature"] == want_sig, "reply.signature %r, want %r" % (r["signature"], want_sig))
                forward = name.startswith("forward")
                t.check(r["quoted"] is (not forward), "reply.quoted %r" % r["quoted"])
                if html is None:
                    t.check(r["html"] is None, "reply.html %r with no HTML body" % r["html"])
                else:
                    t.check(isinstance(r["html"], str), "reply.html %r" % r["html"])
                    if html_in:
                        t.check(html_in in r["html"], "reply.html lacks %r: %r" % (html_in, r["html"]))
                    if html_out:
                        t.check(html_out not in r["html"], "reply.html keeps %r: %r" % (html_out, r["html"]))


def main(t):
    talon_cases(t)
    github_cases(t)
    clients(t)


if __name__ == "__main__":
    run(main)
