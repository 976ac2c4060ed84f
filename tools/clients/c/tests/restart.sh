#!/usr/bin/env bash
# Kill/restart test of the C client's idempotent producer against a real broker.
#
#   FJORD_BIN=/path/to/fjord bash tools/clients/c/tests/restart.sh
#
# Starts `fjord serve` (mutual TLS, development CA, 127.0.0.1), runs restart-check (RESTART_CHECK,
# default build/restart-check: it may be one built against an installed libfjord), and while it
# produces with acks=durable kills the broker with SIGKILL and starts it again on the same port and
# data directory, FJORD_RESTART_CYCLES times (default 2). restart-check then reads everything back
# with subscriptions, and the broker is killed and restarted once more meanwhile: each of
# FJORD_RESTART_RECORDS records (default 20000) handed out exactly once, at its acknowledged offset.
# Prints "ok - ..." / "not ok - ..." and "restart: N passed, M failed" last.
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${FJORD_BIN:?set FJORD_BIN to the fjord broker executable}"
check_bin=${RESTART_CHECK:-${FJORD_C_BUILD:-$here/../build}/restart-check}
records=${FJORD_RESTART_RECORDS:-20000}
cycles=${FJORD_RESTART_CYCLES:-2}
partitions=3

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; }
show() { sed 's/^/    /' "$1" | tail -"${2:-20}"; }

tmp=$(mktemp -d)
broker_pid=
check_pid=
cleanup() {
    [[ -n "$check_pid" ]] && kill -KILL "$check_pid" 2>/dev/null
    if [[ -n "$broker_pid" ]]; then
        kill -TERM "$broker_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$broker_pid" 2>/dev/null
        wait "$broker_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

data="$tmp/data"
mkdir -p "$data"
stdbuf_cmd=()
command -v stdbuf >/dev/null && stdbuf_cmd=(stdbuf -oL)
start_broker() { # start_broker LISTEN: sets broker_pid and port (empty if it did not start)
    : >"$tmp/broker.out"
    "${stdbuf_cmd[@]}" "$FJORD_BIN" serve --data-dir "$data" --listen "$1" --operations-listen off \
        --set tls.client.auth=required >>"$tmp/broker.out" 2>>"$tmp/broker.err" &
    broker_pid=$!
    port=
    for _ in $(seq 1 600); do
        port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\) (TLS).*/\1/p' "$tmp/broker.out" | tail -1)
        [[ -n "$port" && -s "$data/certs/ca.pem" ]] && break
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
}

start_broker 127.0.0.1:0
if [[ -z "$port" ]]; then
    # stdout may be block-buffered: the log line on stderr names the port too
    port=$(sed -n 's/.*listen\.tls=[^ ]*:\([0-9][0-9]*\).*/\1/p' "$tmp/broker.err" | tail -1)
fi
if [[ -z "$port" ]]; then
    not_ok "broker starts"
    show "$tmp/broker.err"
    echo "restart: $pass passed, $((fail)) failed"
    exit 1
fi
ca="$data/certs/ca.pem"
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$tmp/ext.cnf"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/client-key.pem" 2>/dev/null &&
    openssl req -new -key "$tmp/client-key.pem" -subj "/CN=fjord-c-restart" -out "$tmp/client.csr" 2>/dev/null &&
    openssl x509 -req -in "$tmp/client.csr" -CA "$ca" -CAkey "$data/certs/ca-key.pem" -CAcreateserial -days 1 \
        -sha256 -extfile "$tmp/ext.cnf" -out "$tmp/client.pem" 2>/dev/null || { not_ok "client certificate"; exit 1; }

"$check_bin" 127.0.0.1 "$port" "$ca" "$tmp/client.pem" "$tmp/client-key.pem" restart "$partitions" "$records" \
    >"$tmp/check.out" 2>"$tmp/check.err" &
check_pid=$!
acked() { sed -n 's/^acked \([0-9]*\)$/\1/p' "$tmp/check.out" | tail -1; }
killed=0
for cycle in $(seq 1 "$cycles"); do
    target=$((records * cycle / (cycles + 1)))
    for _ in $(seq 1 2400); do
        a=$(acked)
        [[ -n "$a" && "$a" -ge "$target" ]] && break
        kill -0 "$check_pid" 2>/dev/null || break
        sleep 0.02
    done
    # Only while it produces (not while it reads back), and only once.
    kill -0 "$check_pid" 2>/dev/null || break
    grep -q '^produced$' "$tmp/check.out" && break
    kill -KILL "$broker_pid"
    wait "$broker_pid" 2>/dev/null
    killed=$((killed + 1))
    echo "# cycle $cycle: broker killed (SIGKILL) after $(acked) acknowledged records; restarting on port $port"
    sleep 0.3
    start_broker "127.0.0.1:$port"
    [[ -n "$port" ]] || { not_ok "broker restarts on the same port"; show "$tmp/broker.err"; break; }
done
# Once more while it reads everything back with subscriptions: they must resume where they were.
consumed() { sed -n 's/^consumed \([0-9]*\)$/\1/p' "$tmp/check.out" | tail -1; }
for _ in $(seq 1 3000); do
    c=$(consumed)
    [[ -n "$c" && "$c" -ge $((records / 3)) ]] && break
    kill -0 "$check_pid" 2>/dev/null || break
    sleep 0.02
done
consume_killed=0
c=$(consumed)
if kill -0 "$check_pid" 2>/dev/null && [[ -n "$c" && "$c" -lt "$records" ]]; then
    kill -KILL "$broker_pid"
    wait "$broker_pid" 2>/dev/null
    echo "# broker killed (SIGKILL) after $c consumed records; restarting on port $port"
    sleep 0.3
    start_broker "127.0.0.1:$port"
    consume_killed=1
fi
wait "$check_pid"
rc=$?
check_pid=
if [[ $killed -eq $cycles ]]; then ok "broker killed and restarted $killed times during the run"; else
    not_ok "broker killed and restarted $cycles times during the run (only $killed: the producer finished first)"
fi
if [[ $consume_killed -eq 1 ]]; then ok "broker killed and restarted while the subscriptions read"; else
    not_ok "broker killed and restarted while the subscriptions read (the reading was over first)"
fi
if [[ $rc -eq 0 ]]; then ok "$(tail -1 "$tmp/check.out")"; else
    not_ok "restart-check (exit $rc)"
    show "$tmp/check.out" 5
    show "$tmp/check.err"
fi
# The program too: fjord-produce (idempotent, acks durable) with input trickling in while the
# broker is killed and restarted; every line acknowledged, every record stored once.
bin=${FJORD_C_BIN_DIR:-${FJORD_C_BUILD:-$here/../build}}
conn=(--broker "127.0.0.1:$port" --ca "$ca" --cert "$tmp/client.pem" --key "$tmp/client-key.pem")
if "$bin/fjord-admin" "${conn[@]}" create-topic restart-cli 2 >/dev/null 2>"$tmp/admin.err"; then
    (for i in $(seq 1 400); do
        printf '{"key":"%s","value":"%s"}\n' "$(printf 'k%d' $((i % 7)) | base64)" "$(printf 'line-%d' "$i" | base64)"
        sleep 0.005
    done) | "$bin/fjord-produce" restart-cli --format json --acks durable "${conn[@]}" >"$tmp/cli-acks" 2>"$tmp/cli-err" &
    cli_pid=$!
    sleep 1
    kill -KILL "$broker_pid"
    wait "$broker_pid" 2>/dev/null
    sleep 0.3
    start_broker "127.0.0.1:$port"
    wait "$cli_pid"
    cli_rc=$?
    "$bin/fjord-consume" restart-cli --format json --from-beginning --timeout-ms 3000 "${conn[@]}" >"$tmp/cli-cons" 2>>"$tmp/cli-err"
    acks=$(grep -c '"offset": *[0-9]' "$tmp/cli-acks")
    stored=$(wc -l <"$tmp/cli-cons")
    distinct=$(sed 's/.*"value": *"\([^"]*\)".*/\1/' "$tmp/cli-cons" | sort -u | wc -l)
    if [[ $cli_rc -eq 0 && $acks -eq 400 && $stored -eq 400 && $distinct -eq 400 ]]; then
        ok "fjord-produce through a broker kill: 400 lines acknowledged, 400 records stored once"
    else
        not_ok "fjord-produce through a broker kill (exit $cli_rc, $acks acknowledged, $stored stored, $distinct distinct)"
        show "$tmp/cli-err"
    fi
else
    not_ok "create topic restart-cli"
    show "$tmp/admin.err"
fi
echo "restart: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
