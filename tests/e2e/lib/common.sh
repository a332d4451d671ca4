# Shared helpers of the end-to-end harness (sourced by tests/e2e/run).
# shellcheck shell=bash

say() { printf 'e2e: %s\n' "$*"; }
warn() { printf 'e2e: warning: %s\n' "$*" >&2; }
die() {
    printf 'e2e: error: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch with milliseconds, and a difference of two of them.
now() { date +%s.%N | cut -c1-14; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Timing lines, printed together at the end of the run.
TIMINGS=()
timing() { TIMINGS+=("$(printf '%-46s %7s s%s' "$1" "$2" "${3:+  ($3)}")"); }

# sudo only when not root (and only when sudo exists).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root for: $* (install sudo or run as root)"; fi
}

# A case name turned into a module name: [a-z0-9_], prefixed with klp_, at most 55 characters
# (MODULE_NAME_LEN - 1).
module_name_for() {
    local n
    n=$(printf '%s' "$1" | LC_ALL=C tr '[:upper:]' '[:lower:]' | LC_ALL=C tr -c 'a-z0-9_' '_')
    n="klp_${n#klp_}"
    printf '%s' "${n:0:55}"
}
