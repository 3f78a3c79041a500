# bench/lib.sh - helpers shared by the benchmark scripts (sourced, not run).
#
#   free_port            prints a free TCP port on 127.0.0.1
#   wait_greeting PORT   waits (30 s at most) until an SMTP server there greets
#                        with 220; non-zero otherwise
#   omx_build_if_missing OMX LOAD ROOT
#                        builds oceanmx and oceanmx-load in ROOT/build when
#                        either binary is missing

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

omx_build_if_missing() {
	if [[ ! -x $1 || ! -x $2 ]]; then
		echo "building oceanmx and oceanmx-load" >&2
		cmake -S "$3" -B "$3/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
		cmake --build "$3/build" -j"$(nproc)" --target oceanmx oceanmx-load >/dev/null
	fi
}
