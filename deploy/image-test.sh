#!/usr/bin/env bash
# deploy/image-test.sh - build the container image from deploy/Containerfile
# and smoke-test it, on a machine with no image registry and no container
# runtime that works (the sandbox refuses the runtime's setrlimit calls).
#
#   1. base: debootstrap --variant=minbase bookworm from the machine's Debian
#      mirror into $CACHE/rootfs (kept; only the first run downloads),
#      trimmed like debian:bookworm-slim, imported as
#      localhost/debian:bookworm-slim into podman storage of our own
#      ($CACHE/storage, vfs driver, so no other podman user is disturbed).
#   2. build: podman build --isolation chroot --storage-driver vfs
#      --build-arg BASE=localhost/debian:bookworm-slim -> localhost/oceanmx:test
#      (--format docker keeps the HEALTHCHECK). The layers are cached, so a
#      rebuild after a source change recompiles only.
#   3. smoke: podman image mount, then in new mount, PID and network
#      namespaces: the image root read-only, fresh directories on its two
#      volumes and /tmp, /proc, /dev, /sys; the image's own entry point runs
#      as the image's user (uid 2525) with chroot, listening on 127.0.0.1:25
#      of the private network (so port 25 is free and the file capability is
#      what lets it bind). swaks sends a message; it must land in the maildir
#      sink, owned by the image user; the image's HEALTHCHECK command must
#      pass (/healthz when the server has --metrics, else the greeting);
#      SIGTERM must stop it with status 0; an unknown OMX_* variable must be
#      refused.
#
# Exit status: 0 pass, 1 fail, 77 skipped (a tool is missing or not root).
# Environment: OMX_IMAGE_CACHE (default ~/.cache/oceanmx-image),
# OMX_IMAGE_KEEP=1 keeps the smoke test's directories.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

skip() {
	echo "image-test: SKIP: $*"
	exit 77
}
fail() {
	echo "image-test: FAIL: $*" >&2
	exit 1
}
note() { echo "image-test: $*"; }

[[ $(id -u) -eq 0 ]] || skip "needs root (debootstrap, chroot, namespaces)"
for t in podman buildah debootstrap swaks unshare chroot ip; do
	command -v "$t" >/dev/null || skip "$t is not installed (deploy/setup.sh installs podman, buildah, debootstrap, swaks)"
done

cache=${OMX_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oceanmx-image}
mkdir -p "$cache"
pm=(podman --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs)
base=localhost/debian:bookworm-slim
image=localhost/oceanmx:test

# The machine's Debian mirror (deb822 sources first, then one-line sources).
mirror() { # SUITE-PATH-SUFFIX ("" or "-security")
	local want=debian$1 u
	for u in $(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null) \
		$(awk '$1 == "deb" { print ($2 ~ /^\[/ ? $3 : $2) }' /etc/apt/sources.list 2>/dev/null); do
		[[ ${u%/} == */"$want" ]] && { echo "${u%/}"; return; }
	done
	[[ -z $1 ]] && echo http://deb.debian.org/debian || echo http://deb.debian.org/debian-security
}

# 1. The base image.
if ! "${pm[@]}" image exists "$base"; then
	t0=$(date +%s)
	if [[ ! -e $cache/rootfs/.omx-complete ]]; then
		m=$(mirror "")
		note "debootstrap minbase bookworm from $m into $cache/rootfs (first run: downloads)"
		rm -rf "$cache/rootfs.tmp"
		debootstrap --variant=minbase bookworm "$cache/rootfs.tmp" "$m" >"$cache/debootstrap.log" 2>&1 \
			|| { tail -20 "$cache/debootstrap.log"; fail "debootstrap failed (log: $cache/debootstrap.log)"; }
		r=$cache/rootfs.tmp
		# Trim as debian:bookworm-slim does: no package cache, lists,
		# documentation or locales, and dpkg told to leave them out.
		rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* \
			"$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/*.log
		find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
		cat >"$r"/etc/dpkg/dpkg.cfg.d/slim <<-'EOF'
			path-exclude /usr/share/doc/*
			path-include /usr/share/doc/*/copyright
			path-exclude /usr/share/man/*
			path-exclude /usr/share/info/*
			path-exclude /usr/share/locale/*
			path-include /usr/share/locale/locale.alias
		EOF
		cat >"$r"/etc/apt/apt.conf.d/docker-clean <<-'EOF'
			DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
			APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
			Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
		EOF
		rm -f "$r"/etc/apt/sources.list
		cat >"$r"/etc/apt/sources.list.d/debian.sources <<-EOF
			Types: deb
			URIs: $m
			Suites: bookworm bookworm-updates
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

			Types: deb
			URIs: $(mirror -security)
			Suites: bookworm-security
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
		: >"$r"/etc/hostname
		touch "$r"/.omx-complete
		rm -rf "$cache/rootfs"
		mv "$r" "$cache/rootfs"
	fi
	note "importing $cache/rootfs as $base"
	tar -C "$cache/rootfs" --numeric-owner --xattrs --exclude=./.omx-complete -cf - . \
		| "${pm[@]}" import --change 'CMD ["bash"]' - "$base" >"$cache/import.log" 2>&1 \
		|| fail "podman import failed"
	note "base ready in $(($(date +%s) - t0))s"
fi

# 2. The image.
t0=$(date +%s)
: >"$cache/build.log"
note "podman build -> $image"
# The build stage gets a tag of its own, so that pruning the images a
# rebuild left behind keeps its cached layers (the -dev packages).
for target in "--target build -t localhost/oceanmx:build-stage" "-t $image"; do
	# shellcheck disable=SC2086 # $target is two options
	if ! "${pm[@]}" build --isolation chroot --format docker --build-arg BASE="$base" \
		$target -f deploy/Containerfile . >>"$cache/build.log" 2>&1; then
		tail -40 "$cache/build.log"
		fail "podman build failed (log: $cache/build.log)"
	fi
done
build_secs=$(($(date +%s) - t0))
size=$("${pm[@]}" image inspect --format '{{.Size}}' "$image")
note "built in ${build_secs}s; image size $((size / 1000000)) MB ($size bytes)"
"${pm[@]}" image prune -f >/dev/null 2>&1 || true

# 3. Smoke test from the mounted image.
root=$("${pm[@]}" image mount "$image")
work=$(mktemp -d /tmp/omx-image-test.XXXXXX)
cleanup() {
	"${pm[@]}" image unmount "$image" >/dev/null 2>&1 || true
	if [[ ${OMX_IMAGE_KEEP:-0} == 1 ]]; then
		note "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
mkdir -p "$work/spool" "$work/data"
chown 2525:2525 "$work/spool" "$work/data"

caps=$(getcap "$root/usr/bin/oceanmx" 2>/dev/null || true)
[[ $caps == *cap_net_bind_service* ]] || fail "no cap_net_bind_service on /usr/bin/oceanmx in the image ($caps)"
uid=$(chroot "$root" id -u oceanmx) || fail "no oceanmx user in the image"
[[ $uid == 2525 ]] || fail "oceanmx user has uid $uid, not 2525"
has_metrics=0
chroot "$root" /usr/bin/oceanmx --help | grep -q -- '--metrics' && has_metrics=1

token=omx-image-$$-$RANDOM
export root work token has_metrics
timeout 180 unshare --mount --propagation private --pid --fork --net -- bash -euo pipefail -c '
	say() { echo "image-test: $*"; }
	ip link set lo up
	# The image read-only, as a container root; the volumes and /tmp
	# writable, like a container runtime gives them.
	mount --bind "$root" "$root"
	mount -o remount,bind,ro "$root"
	mount --bind "$work/spool" "$root/var/spool/oceanmx"
	mount --bind "$work/data" "$root/var/lib/oceanmx"
	mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
	mount -t proc proc "$root/proc"
	mount --rbind /dev "$root/dev"
	mount --rbind /sys "$root/sys"
	# resolv.conf: the private network has no DNS; lookups fail fast.
	env_img=(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/oceanmx)
	run_img() { chroot --userspec=2525:2525 "$root" "${env_img[@]}" "$@"; }

	# An unknown OMX_* variable is refused with a message, before any start.
	if out=$(run_img OMX_LISTN=127.0.0.1:25 /usr/bin/oceanmx-entrypoint 2>&1); then
		say "FAIL: OMX_LISTN was accepted"; exit 1
	fi
	grep -q "OMX_LISTN: unknown variable" <<<"$out" || { say "FAIL: no clear message for OMX_LISTN: $out"; exit 1; }
	say "unknown variable refused: $(head -1 <<<"$out")"

	# exec all the way down (chroot, env, the entry point), so $srv is the
	# server itself.
	(exec chroot --userspec=2525:2525 "$root" "${env_img[@]}" \
		OMX_LISTEN=127.0.0.1:25 OMX_HOSTNAME=mx.image.test OMX_DNS=127.0.0.1:53 OMX_DNS_TIMEOUT=500 \
		OMX_SHARDS=2 OMX_VERIFY_WORKERS=1 OMX_LOG_LEVEL=info \
		/usr/bin/oceanmx-entrypoint >"$work/server.log" 2>&1) &
	srv=$!
	for i in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/25) 2>/dev/null && break
		kill -0 $srv 2>/dev/null || { cat "$work/server.log"; say "FAIL: the server exited"; exit 1; }
		sleep 0.1
	done
	[[ $(cat "$root/proc/$srv/comm") == oceanmx ]] || { say "FAIL: process $srv is $(cat "$root/proc/$srv/comm"), not oceanmx"; exit 1; }
	suid=$(sed -n "s/^Uid:[[:space:]]*\([0-9]*\).*/\1/p" "$root/proc/$srv/status")
	[[ $suid == 2525 ]] || { say "FAIL: the server runs as uid $suid, not 2525"; exit 1; }
	say "listening on 127.0.0.1:25 as uid 2525 (port 25 bound through the file capability)"

	# The HEALTHCHECK command of the image, as the image runs it.
	if [[ $has_metrics == 1 ]]; then what="/healthz on 127.0.0.1:9025"; else what="SMTP greeting (no --metrics in this build: /healthz not checked)"; fi
	for i in $(seq 30); do
		if run_img OMX_LISTEN=127.0.0.1:25 /usr/bin/oceanmx-healthcheck >"$work/health.out" 2>&1; then ok=1; break; fi
		ok=0; sleep 0.2
	done
	[[ $ok == 1 ]] || { cat "$work/health.out" "$work/server.log"; say "FAIL: health check ($what)"; exit 1; }
	say "health check passed: $what"

	swaks --server 127.0.0.1:25 --from sender@example.org --to user@example.com \
		--header "Subject: $token" --body "image smoke test $token" >"$work/swaks.log" 2>&1 \
		|| { cat "$work/swaks.log"; say "FAIL: swaks"; exit 1; }
	grep -q "^<-  250 2.0.0" "$work/swaks.log" || { cat "$work/swaks.log"; say "FAIL: no 250 2.0.0 to the message"; exit 1; }
	f=""
	for i in $(seq 100); do
		f=$(grep -l "$token" "$work/data/maildir/new/"* 2>/dev/null | head -1 || true)
		[[ -n $f ]] && break
		sleep 0.1
	done
	[[ -n $f ]] || { cat "$work/server.log"; say "FAIL: the message is not in the maildir sink"; exit 1; }
	grep -q "^Delivered-To: <user@example.com>" "$f" || { say "FAIL: no Delivered-To in $f"; exit 1; }
	grep -q "^Authentication-Results: mx.image.test" "$f" || { say "FAIL: no Authentication-Results in $f"; exit 1; }
	[[ $(stat -c %u "$f") == 2525 ]] || { say "FAIL: $f is not owned by uid 2525"; exit 1; }
	say "message stored: maildir/new/${f##*/} ($(stat -c %s "$f") bytes, uid 2525)"

	kill -TERM $srv
	rc=0; wait $srv || rc=$?
	[[ $rc == 0 ]] || { cat "$work/server.log"; say "FAIL: exit status $rc after SIGTERM"; exit 1; }
	say "SIGTERM: clean exit"
' || fail "smoke test (server log: $work/server.log; OMX_IMAGE_KEEP=1 keeps it)"
note "PASS (image $image, $((size / 1000000)) MB, built in ${build_secs}s)"
