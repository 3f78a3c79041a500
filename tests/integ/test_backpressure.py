"""
test_backpressure - a receive pool far smaller than the traffic (2 buffers of
1 KiB per shard) against many concurrent senders of large messages: receives
run out of buffers (-ENOBUFS), reading pauses and resumes, and still every
message arrives byte for byte. The server's stop line must show that the
pool really ran dry, or the test proved nothing.
"""

import os
import re
import threading

from lib import Conn, Server, check_delivered, crlf, ehlo, run, scale, send_message

SENDERS = 12


def body(n, k):
    # Varied lines, including dot-stuffed ones, so a mis-joined buffer shows.
    lines = []
    for i in range(scale(1500, 600)):
        lines.append(("." if i % 7 == 0 else "") + "sender %d message %d line %d %s" % (n, k, i, os.urandom(8).hex()))
    return crlf("Subject: bp %d/%d\n\n" % (n, k) + "\n".join(lines) + "\n")


def main(t):
    with Server("--recv-buffers", "2", "--recv-buffer-size", "1024") as srv:
        sent = []
        errors = []
        lock = threading.Lock()

        def sender(n):
            try:
                c = Conn(srv.port)
                ehlo(t, c)
                for k in range(scale(4, 2)):
                    content = body(n, k)
                    _, qid = send_message(t, c, "s%d@x.test" % n, ["r@y.test"], content)
                    with lock:
                        sent.append((qid, "s%d@x.test" % n, content))
                c.cmd("QUIT")
                c.close()
            except Exception as e:  # reported below, with the others
                with lock:
                    errors.append("sender %d: %r" % (n, e))

        with t.case("tiny_pool_many_senders_all_byte_exact"):
            ths = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            t.check(not errors, "senders failed: %s" % "; ".join(errors))
            t.check(len(sent) == SENDERS * scale(4, 2), "only %d messages acknowledged" % len(sent))
            for qid, frm, content in sent:
                check_delivered(t, srv.maildir, qid, frm, ["r@y.test"], content)

        with t.case("pool_really_ran_dry"):
            srv.stop()
            n = sum(int(m) for m in re.findall(r"enobufs=(\d+)", srv.stderr_text()))
            t.check(n > 0, "no -ENOBUFS seen with a 2 x 1 KiB pool; the test exercised nothing:\n%s"
                    % srv.stderr_tail())


if __name__ == "__main__":
    run(main)
