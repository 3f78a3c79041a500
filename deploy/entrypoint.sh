#!/bin/sh
# deploy/entrypoint.sh - the container's entry point: `oceanmx serve` with the
# image's config file plus one environment variable per option.
#
#   (no arguments) | -OPTION...    oceanmx serve -c $CONFIG [env options] [OPTIONS]
#   serve|check-config [ARGS]      that subcommand, with the same config and env options
#   parse|verify|spool [ARGS]      oceanmx ARGS (no config, no env options)
#   anything else                  run it as given (a shell, say)
#
# OMX_<OPTION> sets --<option>: the option's name upper-cased, '-' as '_'
# (OMX_LISTEN, OMX_MAX_MESSAGE_SIZE, OMX_CONFIG for -c). The options are read
# from `oceanmx --help` at start, so a new option needs no change here. A
# repeatable option (listen, sink, ...) takes a list: newline-separated when
# the value holds a newline, else comma-separated; it replaces that key's
# lines in the config file (they are commented out in a copy under $TMPDIR,
# line numbers unchanged), where the file would otherwise add to them. Other
# variables override the file; arguments given to the container override both.
# An empty variable is ignored. Any other OMX_* variable is an error, because
# a misspelt setting must not be silently dropped. Docs: docs/operations.md.
set -eu

bin=${OCEANMX_BIN:-oceanmx}
me=oceanmx-entrypoint
default_config=/etc/oceanmx/oceanmx.conf

die() {
	echo "$me: $*" >&2
	exit 1
}

cmd=serve
case "${1-}" in
"" | -*) ;;
serve | check-config) cmd=$1; shift ;;
parse | verify | spool) exec "$bin" "$@" ;;
*) exec "$@" ;;
esac

# One line per option of `oceanmx --help` (section OPTIONS): "name r" when
# its description says it is repeatable, "name -" otherwise.
help=$("$bin" --help) || die "$bin --help failed"
optlist=$(printf '%s\n' "$help" | awk '
	/^OPTIONS/ { on = 1; next }
	on && /^[A-Z]/ { on = 0 }
	!on { next }
	/^    (-[A-Za-z], )?--[a-z0-9]/ {
		if (name != "") print name, rep
		s = $0; sub(/^    (-[A-Za-z], )?--/, "", s); sub(/[ =].*/, "", s)
		name = s; rep = "-"
	}
	/repeatable/ && name != "" { rep = "r" }
	END { if (name != "") print name, rep }')
[ -n "$optlist" ] || die "no options found in \`$bin --help\`"

opt_kind() { # NAME -> r, - or nothing
	printf '%s\n' "$optlist" | awk -v n="$1" '$1 == n { print $2 }'
}
# Options that take several values even if --help does not say "repeatable".
for n in listen sink listen-proxy tls-cert tls-key; do
	if [ "$(opt_kind "$n")" = "-" ]; then
		optlist=$(printf '%s\n' "$optlist" | awk -v n="$n" '$1 == n { $2 = "r" } { print }')
	fi
done

# The OMX_* variables that are set (a line of a multi-line value that looks
# like NAME=... is not a variable unless NAME is really set).
vars=$(env | sed -n 's/^\(OMX_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u)

config=$default_config
nuser=$#
bad=""
used=""
replace=""
nl='
'
for v in $vars; do
	eval "isset=\${$v+x}"
	[ -n "$isset" ] || continue
	eval "val=\$$v"
	name=$(printf '%s' "${v#OMX_}" | tr 'A-Z_' 'a-z-')
	kind=$(opt_kind "$name")
	case "$v" in *[a-z]*) kind="" ;; esac # OMX_listen is not OMX_LISTEN
	if [ -z "$kind" ]; then
		bad="$bad $v"
		continue
	fi
	[ -n "$val" ] || continue
	used="$used $v"
	if [ "$name" = config ]; then
		config=$val
		continue
	fi
	if [ "$kind" = r ]; then
		replace="$replace $name"
		case "$val" in
		*"$nl"*) sep=$nl ;;
		*) sep=, ;;
		esac
		oldifs=$IFS
		IFS=$sep
		set -f
		for item in $val; do
			IFS=$oldifs
			item=$(printf '%s' "$item" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
			[ -n "$item" ] && set -- "$@" "--$name=$item"
		done
		set +f
		IFS=$oldifs
	else
		set -- "$@" "--$name=$val"
	fi
done
if [ -n "$bad" ]; then
	for v in $bad; do
		case "$v" in
		*[a-z]*) echo "$me: $v: unknown variable: option variables are upper case" >&2 ;;
		*) echo "$me: $v: unknown variable: \`$bin --help\` has no option --$(printf '%s' "${v#OMX_}" | tr 'A-Z_' 'a-z-')" >&2 ;;
		esac
	done
	die "OMX_* variables name options: OMX_ + the option upper-cased with '-' as '_' (OMX_LISTEN, OMX_MAX_MESSAGE_SIZE); see docs/operations.md"
fi

# In a container the metrics listener must be reachable from outside the
# container's own loopback (EXPOSE 9025, probes): 0.0.0.0:9025 unless the
# variable or the config file says otherwise.
if [ -n "$(opt_kind metrics)" ] && [ -z "${OMX_METRICS-}" ] &&
	! { [ "$config" != none ] && grep -Eq '^[[:space:]]*metrics([[:space:]]|=)' "$config" 2>/dev/null; }; then
	set -- "$@" --metrics=0.0.0.0:9025
	used="$used (metrics=0.0.0.0:9025)"
fi

# A repeatable key set from the environment replaces the file's lines for it.
if [ "$config" != none ] && [ -n "$replace" ]; then
	[ -r "$config" ] || die "$config: cannot read the config file (OMX_CONFIG)"
	keys=$(printf '%s\n' $replace | sort -u | paste -sd'|')
	copy=$(mktemp "${TMPDIR:-/tmp}/oceanmx.conf.XXXXXX") || die "cannot create a copy of $config in ${TMPDIR:-/tmp}"
	sed -E "s/^([[:space:]]*($keys)([[:space:]]|=))/#(entrypoint: set by OMX_*) \\1/" "$config" >"$copy"
	chmod 0644 "$copy"
	echo "$me: $config with the keys $(echo "$keys" | tr '|' ' ') from the environment: $copy" >&2
	config=$copy
fi

# The user's arguments were first in "$@": move them after the env options.
i=0
while [ "$i" -lt "$nuser" ]; do
	set -- "$@" "$1"
	shift
	i=$((i + 1))
done
if [ "$config" != none ]; then
	set -- -c "$config" "$@"
fi
echo "$me: $cmd${used:+ with}$used" >&2
exec "$bin" "$cmd" "$@"
