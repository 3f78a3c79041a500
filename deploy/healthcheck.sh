#!/bin/bash
# deploy/healthcheck.sh - the image's HEALTHCHECK, with no HTTP client in the
# image: bash's /dev/tcp asks the metrics listener for /healthz and wants a
# 200. The address is OMX_METRICS, else the entry point's container default
# 0.0.0.0:9025 (asked on 127.0.0.1). A server built before the metrics
# endpoint (no --metrics in `oceanmx --help`) is checked by its SMTP greeting
# instead: a 220 on the first OMX_LISTEN address, else port 25.
#
#   healthcheck.sh        exit 0 healthy, 1 not
set -u
bin=${OCEANMX_BIN:-oceanmx}

hostport() { # ADDR:PORT -> "HOST PORT", wildcard addresses as loopback
	local a=${1%:*} p=${1##*:}
	a=${a#[}; a=${a%]}
	case "$a" in 0.0.0.0 | "") a=127.0.0.1 ;; ::) a=::1 ;; esac
	echo "$a $p"
}

if "$bin" --help 2>/dev/null | grep -q -- '--metrics'; then
	read -r host port <<<"$(hostport "${OMX_METRICS:-0.0.0.0:9025}")"
	exec 3<>"/dev/tcp/$host/$port" || exit 1
	printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
	IFS= read -r -t 5 status <&3 || exit 1
	[[ $status == HTTP/1.[01]\ 200* ]] || { echo "healthz: $status"; exit 1; }
else
	first=${OMX_LISTEN:-0.0.0.0:25}
	first=${first%%[,$'\n']*}
	read -r host port <<<"$(hostport "$first")"
	exec 3<>"/dev/tcp/$host/$port" || exit 1
	IFS= read -r -t 5 greeting <&3 || exit 1
	printf 'QUIT\r\n' >&3
	[[ $greeting == 220* ]] || { echo "smtp: $greeting"; exit 1; }
fi
exit 0
