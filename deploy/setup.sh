#!/usr/bin/env bash
# deploy/setup.sh - set up a fresh Debian 12 machine for oceanmx, then build.
#
#   deploy/setup.sh            install packages (as root) and build build/oceanmx
#   deploy/setup.sh serve      ... then run the server with its embedded defaults
#   deploy/setup.sh test       ... then run every test (tests/run.sh)
#
# Packages are installed only when missing, so re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  # libraries (DESIGN.md "Dependencies")
  liburing-dev libsodium-dev android-libboringssl-dev libunbound-dev
  # webhook sink and rspamd client: libcurl, GnuTLS flavour (loaded at run time, see core/curl_loader.h)
  libcurl4-gnutls-dev
  # unit tests
  libcriterion-dev
  # integration tests and benchmarks: real clients and peers
  python3 swaks postfix
  # STARTTLS tests of oceanmx-load: a self-signed certificate for a private Postfix
  openssl
  # MIME parse benchmark peer (bench/mime)
  libgmime-3.0-dev
  # DKIM tests: a dnslib DNS server with failure modes; dkimpy as an independent verifier
  python3-dnslib python3-dkim
  # DMARC organizational domains
  publicsuffix
  # PROXY protocol tests: a real load balancer in front (tests/integ/test_proxy.py)
  haproxy
  # ss: test_hostile checks the server let go of a non-reading client's socket
  iproute2
  # deploy checks (tests/run.sh deploy, image): the container image built
  # from a debootstrapped base, getcap, manifest linting
  podman buildah debootstrap libcap2-bin yamllint
  # the lmtp: sink's tests and benchmark: a private Dovecot LMTP server
  dovecot-core dovecot-lmtpd
  # the example plugin (sinks/examples/sqlite_plugin.c)
  libsqlite3-dev
  # metrics tests: promtool check metrics and a real Prometheus scraping /metrics
  prometheus
  # fault injection: a FUSE passthrough that fails on demand (tests/integ/faultfs.py)
  python3-fusepy
  # spam verdicts: rspamd's HTTP protocol (tests/integ/test_rspamd.py, bench/rspamd.sh)
  rspamd
  # milters (tests/integ/test_milter.py): SpamAssassin's spamd behind spamass-milter,
  # OpenDKIM's milter with a key from opendkim-genkey; rspamd's proxy is the third
  spamassassin spamc spamass-milter opendkim opendkim-tools
  # libmilter's Python binding: tests/integ/pymilter_stream.py rejects at HEADER/EOH on demand
  python3-milter
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  # Postfix is only a test peer (smtp-source, smtp-sink): no mail system.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

case "${1:-}" in
  serve) shift; exec build/oceanmx "$@" ;;
  test)  shift; exec tests/run.sh "$@" ;;
  "")    echo "setup: built build/oceanmx" ;;
  *)     echo "setup: unknown action \"$1\" (serve or test)" >&2; exit 1 ;;
esac
