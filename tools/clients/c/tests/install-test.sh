#!/usr/bin/env bash
# Installs libfjord the way a user does and tests the installed copy:
#   make install PREFIX=<temporary prefix>; only fjord_* symbols exported (shared and static);
#   the SONAME; the README's example built with one `cc ... $(pkg-config --cflags --libs fjord)`
#   line and run; restart-check built against the installed library; then, with FJORD_BIN set,
#   the example against a real broker, the end-to-end test with the installed programs and the
#   kill/restart test with the installed-library restart-check. FJORD_C_PREFIX=DIR installs there
#   (and keeps it) instead of a temporary prefix.
# Prints "ok - ..." / "not ok - ..." and "install: N passed, M failed" last.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# FJORD_C_PREFIX keeps the installation (CI runs the interop test with its programs afterwards).
prefix=${FJORD_C_PREFIX:-$tmp/prefix}

if make -s -C "$src" install PREFIX="$prefix" >"$tmp/install.log" 2>&1; then ok "make install PREFIX=$prefix"; else
    not_ok "make install"
    tail -20 "$tmp/install.log"
    echo "install: $pass passed, $fail failed"
    exit 1
fi
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

exported=$(nm -D --defined-only "$prefix/lib/libfjord.so" | awk '$2 == "T" {print $3}' | sed 's/@.*//')
others=$(grep -v '^fjord_[a-z]' <<<"$exported" | tr '\n' ' ')
if [[ -n "$exported" && -z "$others" ]]; then ok "libfjord.so exports only fjord_* ($(wc -l <<<"$exported") functions)"; else
    not_ok "libfjord.so exports only fjord_* (also: $others)"
fi
static_others=$(nm -g --defined-only "$prefix/lib/libfjord.a" | awk 'NF == 3 {print $3}' | grep -v '^fjord_[a-z]' | tr '\n' ' ')
if [[ -z "$static_others" ]]; then ok "libfjord.a has only fjord_* global symbols"; else
    not_ok "libfjord.a has only fjord_* global symbols (also: $static_others)"
fi
soname=$(objdump -p "$prefix/lib/libfjord.so" | awk '/SONAME/ {print $2}')
major=$(sed -n 's/^#define FJORD_VERSION_MAJOR \([0-9]*\).*/\1/p' "$prefix/include/fjord.h")
if [[ "$soname" == "libfjord.so.$major" && -e "$prefix/lib/$soname" ]]; then ok "SONAME $soname"; else
    not_ok "SONAME is libfjord.so.$major (got '$soname')"
fi
version=$(pkg-config --modversion fjord)

# The README's one line (plus an rpath, since the prefix is not in the loader's path).
if cc "$src/examples/hello.c" $(pkg-config --cflags --libs fjord) -Wl,-rpath,"$prefix/lib" -o "$tmp/hello" \
    2>"$tmp/cc.err"; then ok "example builds: cc hello.c \$(pkg-config --cflags --libs fjord)"; else
    not_ok "example builds"
    cat "$tmp/cc.err"
fi
if [[ "$("$tmp/hello" --version 2>&1)" == "libfjord $version (header $version)" ]]; then
    ok "example runs against the installed library ($version)"
else
    not_ok "example runs: $("$tmp/hello" --version 2>&1)"
fi
if cc "$here/restart_check.c" $(pkg-config --cflags --libs fjord) -Wl,-rpath,"$prefix/lib" -o "$tmp/restart-check" \
    2>"$tmp/cc2.err"; then ok "restart-check builds against the installed library"; else
    not_ok "restart-check builds against the installed library"
    cat "$tmp/cc2.err"
fi

if [[ -n "${FJORD_BIN:-}" ]]; then
    # The example against a broker (TLS, development CA).
    "$FJORD_BIN" serve --data-dir "$tmp/data" --listen 127.0.0.1:0 --operations-listen off >"$tmp/b.out" 2>"$tmp/b.err" &
    bpid=$!
    port=
    for _ in $(seq 1 600); do
        port=$(sed -n 's/.*listen\.tls=[^ ]*:\([0-9][0-9]*\).*/\1/p' "$tmp/b.err" | head -1)
        [[ -n "$port" && -s "$tmp/data/certs/ca.pem" ]] && break
        sleep 0.1
    done
    "$tmp/hello" "127.0.0.1:$port" "$tmp/data/certs/ca.pem" >"$tmp/hello.out" 2>&1
    rc=$?
    kill "$bpid" 2>/dev/null
    wait "$bpid" 2>/dev/null
    if [[ $rc -eq 0 ]] && grep -q '^offset 2: world$' "$tmp/hello.out"; then
        ok "example produces and reads back against a broker ($(grep '^produced' "$tmp/hello.out"))"
    else
        not_ok "example against a broker (exit $rc)"
        sed 's/^/    /' "$tmp/hello.out"
    fi
    FJORD_C_BIN_DIR="$prefix/bin" bash "$here/e2e.sh" >"$tmp/e2e.log" 2>&1
    rc=$?
    line=$(tail -1 "$tmp/e2e.log")
    if [[ $rc -eq 0 ]]; then ok "end-to-end test with the installed programs ($line)"; else
        not_ok "end-to-end test with the installed programs ($line)"
        grep '^not ok' -A8 "$tmp/e2e.log" | head -40
    fi
    RESTART_CHECK="$tmp/restart-check" bash "$here/restart.sh" >"$tmp/restart.log" 2>&1
    rc=$?
    if [[ $rc -eq 0 ]]; then ok "kill/restart test with the installed library: $(grep '^ok - restart-check' "$tmp/restart.log" | sed 's/^ok - //')"; else
        not_ok "kill/restart test with the installed library"
        cat "$tmp/restart.log"
    fi
else
    echo "# FJORD_BIN not set: the broker tests of the installed copy are skipped"
fi
echo "install: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
