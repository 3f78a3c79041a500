# bench/lib.sh - helpers shared by the benchmark scripts (sourced, not run).
#
#   free_port            prints a free TCP port on 127.0.0.1
#   wait_greeting PORT   waits (30 s at most) until an SMTP server there greets
#                        with 220; non-zero otherwise
#   omx_build_if_missing OMX LOAD ROOT
#                        builds oceanmx and oceanmx-load in ROOT/build when
#                        either binary is missing
#   maildir_floor_us SYNC_BENCH DIR
#                        the Maildir protocol alone in DIR (omx-sync-bench maildir
#                        DIR 8 4096 1, syncfs variant): process CPU per file, µs
#   rspamd_start DIR NORMAL PROXY
#                        starts Debian's rspamd in the background (see below)

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_greeting() {
	python3 - "$1" <<'PY'
import socket, sys, time
port = int(sys.argv[1]); end = time.time() + 30
while time.time() < end:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if s.recv(512).startswith(b"220"):
            s.sendall(b"QUIT\r\n"); s.close(); sys.exit(0)
        s.close()
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

cpu_us() { # cpu_us PID: user+system CPU of the process so far, in µs
	local u s
	read -r u s < <(awk '{print $14, $15}' "/proc/$1/stat")
	echo $(((u + s) * 1000000 / $(getconf CLK_TCK)))
}

maildir_floor_us() {
	local out
	out=$("$1" maildir "$2" 8 4096 1) || return 1
	awk '$1 == "maildir" && $2 == "syncfs" {print $7}' <<<"$out"
}

omx_build_if_missing() {
	if [[ ! -x $1 || ! -x $2 ]]; then
		echo "building oceanmx and oceanmx-load" >&2
		cmake -S "$3" -B "$3/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
		cmake --build "$3/build" -j"$(nproc)" --target oceanmx oceanmx-load >/dev/null
	fi
}

# rspamd_start DIR NORMAL PROXY: writes a minimal local rspamd config under DIR
# (the stock /etc/rspamd rules, every module that needs Redis or the network
# off, DNS at a dead loopback port so lookups fail fast, errors only on the
# console, the controller on a free port) with NORMAL and PROXY as the text of
# worker-normal.inc and worker-proxy.inc, and starts rspamd -f on it in a
# session of its own, output in DIR/out.log. Sets RS_PID, the session leader
# (stop it with kill -TERM -- -$RS_PID). Does not wait: loading the rules takes
# seconds to minutes, so the caller polls its own worker.
rspamd_start() {
	local dir=$1 m args=(-f -c /etc/rspamd/rspamd.conf)
	mkdir -p "$dir/local/local.d" "$dir/local/override.d" "$dir/db" "$dir/run" "$dir/log"
	printf '%s\n' "$2" >"$dir/local/override.d/worker-normal.inc"
	printf 'bind_socket = "127.0.0.1:%s";\n' "$(free_port)" >"$dir/local/override.d/worker-controller.inc"
	printf '%s\n' "$3" >"$dir/local/override.d/worker-proxy.inc"
	printf 'type = "console";\nlevel = "error";\n' >"$dir/local/override.d/logging.inc"
	for m in rbl spf dkim dmarc arc fuzzy_check asn phishing neural ratelimit greylist replies history_redis \
		url_reputation reputation dcc classifier-bayes emails multimap mx_check whitelist maillist trie; do
		echo "enabled = false;" >"$dir/local/override.d/$m.conf"
	done
	printf 'dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }\n' >"$dir/local/local.d/options.inc"
	if [[ $(id -u) == 0 ]]; then args+=(-i); fi # root: rspamd refuses to run its workers so without -i
	setsid rspamd "${args[@]}" --var="LOCAL_CONFDIR=$dir/local" --var="DBDIR=$dir/db" --var="RUNDIR=$dir/run" \
		--var="LOGDIR=$dir/log" >"$dir/out.log" 2>&1 &
	# shellcheck disable=SC2034 # the caller's
	RS_PID=$!
}
