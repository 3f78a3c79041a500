#!/usr/bin/env bash
# deploy/check-units.sh - static checks of deploy/ (tests/run.sh step
# "deploy"); each part says SKIP when its tool is missing.
#
#   1. oceanmx.service: systemd-analyze verify, and the offline
#      systemd-analyze security score (fails above $OMX_MAX_EXPOSURE, 2.5)
#   2. deploy/k8s/*.yaml and compose.yaml: yamllint; every Kubernetes
#      document has apiVersion, kind and metadata.name; the ConfigMap's
#      config and deploy/oceanmx.conf pass `oceanmx check-config`
#   3. entrypoint.sh: OMX_* to options (lists, replacement of the file's
#      repeatable keys, unknown variables refused), and docs/operations.md's
#      table names every option of `oceanmx --help`
#
# Usage: deploy/check-units.sh [OCEANMX_BINARY]   (default build/oceanmx)
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build/oceanmx}")
[[ -x $bin ]] || { echo "check-units: $bin not built" >&2; exit 1; }
fails=0
ok() { echo "check-units: ok: $*"; }
bad() { echo "check-units: FAIL: $*" >&2; fails=$((fails + 1)); }
skip() { echo "check-units: SKIP: $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. systemd unit. verify checks that the programs exist, so the copy names
# the built binary instead of /usr/bin/oceanmx.
if command -v systemd-analyze >/dev/null; then
	sed "s|/usr/bin/oceanmx|$bin|g" deploy/oceanmx.service >"$tmp/oceanmx.service"
	if out=$(systemd-analyze verify "$tmp/oceanmx.service" 2>&1) && [[ -z $out ]]; then
		ok "systemd-analyze verify oceanmx.service"
	else
		bad "systemd-analyze verify oceanmx.service: $out"
	fi
	# --offline: no running systemd needed (this machine has none as PID 1).
	if sec=$(systemd-analyze security --offline=true "$tmp/oceanmx.service" 2>&1); then
		score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$sec")
		if [[ -n $score ]] && awk -v s="$score" -v m="${OMX_MAX_EXPOSURE:-2.5}" 'BEGIN { exit !(s <= m) }'; then
			ok "systemd-analyze security: exposure $score ($(grep -c '✗' <<<"$sec") items open)"
		else
			bad "systemd-analyze security: exposure ${score:-?} above ${OMX_MAX_EXPOSURE:-2.5}"
			grep '✗' <<<"$sec" >&2
		fi
	else
		skip "systemd-analyze security --offline: $(tail -1 <<<"$sec")"
	fi
else
	skip "systemd-analyze is not installed: oceanmx.service not verified"
fi

# 2. YAML.
if command -v yamllint >/dev/null; then
	conf='{extends: default, rules: {line-length: {max: 120}, document-start: disable}}'
	if out=$(yamllint -s -d "$conf" deploy/k8s deploy/compose.yaml 2>&1); then
		ok "yamllint deploy/k8s deploy/compose.yaml"
	else
		bad "yamllint: $out"
	fi
else
	skip "yamllint is not installed (Debian package yamllint)"
fi
if python3 -c 'import yaml' 2>/dev/null; then
	if out=$(python3 - "$tmp/k8s.conf" deploy/k8s/*.yaml <<-'PY' 2>&1
		import sys, yaml
		out, errs, n = sys.argv[1], [], 0
		for path in sys.argv[2:]:
		    for doc in yaml.safe_load_all(open(path)):
		        if doc is None:
		            continue
		        n += 1
		        name = (doc.get("metadata") or {}).get("name")
		        if "kind" not in doc or ("apiVersion" not in doc) or (not name and doc["kind"] != "Kustomization"):
		            errs.append(f"{path}: a document without apiVersion, kind or metadata.name")
		        if doc.get("kind") == "ConfigMap" and "oceanmx.conf" in doc.get("data", {}):
		            open(out, "w").write(doc["data"]["oceanmx.conf"])
		if errs:
		    sys.exit("\n".join(errs))
		print(f"{n} documents")
		PY
	); then
		ok "deploy/k8s: $out"
	else
		bad "deploy/k8s: $out"
	fi
	if [[ -s $tmp/k8s.conf ]]; then
		if out=$("$bin" check-config -c "$tmp/k8s.conf" 2>&1); then
			ok "k8s ConfigMap oceanmx.conf: $out"
		else
			bad "k8s ConfigMap oceanmx.conf: $out"
		fi
	else
		bad "deploy/k8s: no ConfigMap with oceanmx.conf"
	fi
else
	skip "python3-yaml is missing: Kubernetes documents not read"
fi
if out=$("$bin" check-config -c deploy/oceanmx.conf 2>&1); then
	ok "deploy/oceanmx.conf: $out"
else
	bad "deploy/oceanmx.conf: $out"
fi

# 3. Entry point, with a stand-in that prints the arguments it is given.
sh -n deploy/entrypoint.sh && bash -n deploy/healthcheck.sh || bad "shell syntax"
cat >"$tmp/fake" <<EOF
#!/bin/sh
[ "\$1" = --help ] && exec "$bin" --help
for a; do echo "[\$a]"; done
EOF
chmod +x "$tmp/fake"
ep() { env -i PATH="$PATH" TMPDIR="$tmp" OCEANMX_BIN="$tmp/fake" "$@" deploy/entrypoint.sh 2>/dev/null | tr -d '\n'; }
expect() { # NAME WANT GOT
	if [[ $3 == "$2" ]]; then ok "entrypoint: $1"; else bad "entrypoint: $1: got $3, want $2"; fi
}
# In a container the metrics listener must be reachable: without OMX_METRICS
# (or a metrics line in the file) the entry point adds it.
M="[--metrics=0.0.0.0:9025]"
expect "no variables" "[serve][-c][/etc/oceanmx/oceanmx.conf]$M" "$(ep)"
expect "list, comma" "[serve][--listen=127.0.0.1:25][--listen=[::1]:25]$M" \
	"$(ep OMX_CONFIG=none OMX_LISTEN=' 127.0.0.1:25, [::1]:25 ,')"
expect "list, newline; variables sorted; arguments last" "[check-config][--shards=2][--sink=json:/j?raw=no&a=1,2][--sink=maildir:/m]$M[--shards][3]" \
	"$(ep OMX_CONFIG=none OMX_SINK=$'json:/j?raw=no&a=1,2\nmaildir:/m' OMX_SHARDS=2 sh -c 'exec "$0" check-config --shards 3')"
expect "empty variable ignored" "[serve]$M" "$(ep OMX_CONFIG=none OMX_DOMAINS=)"
expect "OMX_METRICS wins" "[serve][--metrics=127.0.0.1:9100]" "$(ep OMX_CONFIG=none OMX_METRICS=127.0.0.1:9100)"
expect "other commands pass through" "[spool][ls]" "$(ep sh -c 'exec "$0" spool ls')"
if err=$(env -i PATH="$PATH" OCEANMX_BIN="$tmp/fake" OMX_LISTN=x OMX_hostname=y deploy/entrypoint.sh 2>&1 >/dev/null); then
	bad "entrypoint: unknown variables accepted"
elif grep -q "OMX_LISTN: unknown variable" <<<"$err" && grep -q "OMX_hostname: unknown variable" <<<"$err"; then
	ok "entrypoint: unknown variables refused"
else
	bad "entrypoint: unclear message for unknown variables: $err"
fi
env -i PATH="$PATH" TMPDIR="$tmp" OCEANMX_BIN="$tmp/fake" OMX_CONFIG="$PWD/deploy/oceanmx.conf" \
	OMX_LISTEN=127.0.0.1:2525 deploy/entrypoint.sh >"$tmp/args" 2>/dev/null
copy=$(grep -A1 '^\[-c\]$' "$tmp/args" | sed -n '2s/^\[\(.*\)\]$/\1/p')
if [[ -f $copy ]] && ! grep -Eq '^[[:space:]]*listen' "$copy" && grep -q '^sink ' "$copy" \
	&& [[ $(wc -l <"$copy") == $(wc -l <deploy/oceanmx.conf) ]]; then
	ok "entrypoint: OMX_LISTEN replaces the file's listen lines (same line numbers)"
else
	bad "entrypoint: config copy '$copy' still listens or lost lines"
fi

# docs/operations.md: one table row per option, as | `OMX_NAME` | `--name` ...
missing=""
for o in $("$bin" --help | awk '/^OPTIONS/ { on = 1; next } on && /^[A-Z]/ { on = 0 }
	on && /^    (-[A-Za-z], )?--[a-z0-9]/ { s = $0; sub(/^    (-[A-Za-z], )?--/, "", s); sub(/[ =].*/, "", s); print s }'); do
	v=OMX_$(tr 'a-z-' 'A-Z_' <<<"$o")
	grep -q "^| \`$v\` | \`--$o\`" docs/operations.md || missing="$missing $v"
done
if [[ -z $missing ]]; then
	ok "docs/operations.md documents an OMX_* variable for every option"
else
	bad "docs/operations.md: no table row for$missing"
fi

# docs/config.md: one table row per option, as | `name` | (default, reload)
missing=""
for o in $("$bin" --help | awk '/^OPTIONS/ { on = 1; next } on && /^[A-Z]/ { on = 0 }
	on && /^    (-[A-Za-z], )?--[a-z0-9]/ { s = $0; sub(/^    (-[A-Za-z], )?--/, "", s); sub(/[ =].*/, "", s); print s }'); do
	[[ $o == config || $o == help ]] && continue
	grep -q "^| \`$o\` |" docs/config.md || missing="$missing $o"
done
if [[ -z $missing ]]; then
	ok "docs/config.md documents every option (default, reload)"
else
	bad "docs/config.md: no table row for$missing"
fi

echo "check-units: $fails failed"
[[ $fails -eq 0 ]]
