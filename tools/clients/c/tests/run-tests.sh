#!/usr/bin/env bash
# make test: the unit tests, then the end-to-end test if FJORD_BIN names a broker executable.
# The last line is "N passed, M failed" over both; the exit status is non-zero on any failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build="${FJORD_C_BUILD:-$here/../build}"
pass=0
fail=0

count() { # add the counts of a "... N passed, M failed" line from the file $1
    local line
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    if [[ -z "$line" ]]; then
        fail=$((fail + 1))
        return
    fi
    pass=$((pass + $(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')))
    fail=$((fail + $(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')))
}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

if [[ "${FJORD_E2E_VALGRIND:-1}" != 0 ]] && command -v valgrind >/dev/null; then
    valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
        "$build/unit-tests" >"$tmp" 2>&1
else
    "$build/unit-tests" >"$tmp" 2>&1
fi
rc=$?
cat "$tmp"
count "$tmp"
[[ $rc -ne 0 && $fail -eq 0 ]] && fail=$((fail + 1))

if [[ -n "${FJORD_BIN:-}" ]]; then
    before=$fail
    bash "$here/e2e.sh" 2>&1 | tee "$tmp"
    rc=${PIPESTATUS[0]}
    count "$tmp"
    [[ $rc -ne 0 && $fail -eq $before ]] && fail=$((fail + 1))
    before=$fail
    bash "$here/restart.sh" 2>&1 | tee "$tmp"
    rc=${PIPESTATUS[0]}
    count "$tmp"
    [[ $rc -ne 0 && $fail -eq $before ]] && fail=$((fail + 1))
else
    echo "e2e: skipped (set FJORD_BIN to a fjord broker executable to run it)"
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
