"""
test_soak - the 2-minute version of bench/soak.sh: mixed traffic (1 KB to
10 MB, DKIM-signed and not, churn, bad clients) with kill -9 every 40 s;
every acknowledged message delivered with the SHA-256 it was sent with, and
memory flat within each server life. Skipped under OMX_SANITIZED (too slow
to mean anything there). OMX_SOAK_SECONDS changes the length.
"""

import os
import subprocess

from lib import REPO, SANITIZED, Skip, omx_bin, run


def main(t):
    if SANITIZED:
        raise Skip("OMX_SANITIZED is set: the soak measures the optimised build")
    secs = os.environ.get("OMX_SOAK_SECONDS", "120")
    with t.case("soak_%ss" % secs):
        env = dict(os.environ, SOAK_OUT="-", SOAK_KILL_EVERY="40", OMX_BIN=omx_bin())
        r = subprocess.run(["bash", os.path.join(REPO, "bench", "soak.sh"), secs], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=int(secs) + 420)
        out = r.stdout.decode("utf-8", "replace")
        print("\n".join("  | " + l for l in out.splitlines()[-20:]))
        t.check(r.returncode == 0, "bench/soak.sh %s exited %d" % (secs, r.returncode))


if __name__ == "__main__":
    run(main)
