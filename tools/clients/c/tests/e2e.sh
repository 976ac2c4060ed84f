#!/usr/bin/env bash
# End-to-end test of fjord-produce / fjord-consume against a real broker.
#
#   FJORD_BIN=/path/to/fjord bash tools/clients/c/tests/e2e.sh
#
# Starts `fjord serve` on 127.0.0.1 with an ephemeral port and mutual TLS (tls.client.auth =
# required, the generated development CA), makes a client certificate signed by that CA with
# openssl, creates topics with build/fjord-admin, and runs fjord-produce and fjord-consume under
# valgrind (--leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1),
# checking their output with build/e2e-check. Set FJORD_E2E_VALGRIND=0 to run without valgrind.
# Prints "ok - NAME" / "not ok - NAME" per check and "e2e: N passed, M failed" last.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${FJORD_C_BUILD:-$here/../build}" && pwd)
# The programs under test: the build's, or installed ones (FJORD_C_BIN_DIR=PREFIX/bin).
bin=$(cd "${FJORD_C_BIN_DIR:-$build}" && pwd)
: "${FJORD_BIN:?set FJORD_BIN to the fjord broker executable}"

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; }
finish() {
    echo "e2e: $pass passed, $fail failed"
    [[ $fail -eq 0 ]]
    exit $?
}

tmp=$(mktemp -d)
broker_pid=
cleanup() {
    if [[ -n "$broker_pid" ]]; then
        kill -TERM "$broker_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$broker_pid" 2>/dev/null
        wait "$broker_pid" 2>/dev/null
    fi
    if [[ -n "${FJORD_E2E_KEEP:-}" ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# ----- valgrind -------------------------------------------------------------------------------
vg=()
vg_runs=0
if [[ "${FJORD_E2E_VALGRIND:-1}" != 0 ]]; then
    if ! command -v valgrind >/dev/null; then
        not_ok "valgrind is installed (apt-get install valgrind, or FJORD_E2E_VALGRIND=0)"
        finish
    fi
    vg=(valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1
        --track-fds=no --num-callers=30)
fi
# run NAME STDIN STDOUT STDERR PROGRAM ARGS...: runs under valgrind (log in $tmp/vg-NAME.log) and
# returns the program's exit status; a valgrind error makes the check "valgrind: NAME" fail.
run() {
    local name=$1 in=$2 out=$3 err=$4
    shift 4
    local rc
    "${vg[@]}" ${vg:+--log-file="$tmp/vg-$name.log"} "$@" <"$in" >"$out" 2>"$err"
    rc=$?
    vg_check "$name"
    return $rc
}
vg_check() { # vg_check NAME: the valgrind log of run NAME shows no error
    ((${#vg[@]})) || return 0
    local name=$1 summary
    vg_runs=$((vg_runs + 1))
    summary=$(grep -h "ERROR SUMMARY" "$tmp/vg-$name.log" | sed 's/^==[0-9]*== //')
    if grep -q "ERROR SUMMARY: 0 errors" "$tmp/vg-$name.log"; then
        ok "valgrind clean: $name ($summary)"
    else
        not_ok "valgrind clean: $name ($summary)"
        sed 's/^/    /' "$tmp/vg-$name.log" | head -60
    fi
}
show() { sed 's/^/    /' "$1" | head -"${2:-20}"; }

# ----- broker ---------------------------------------------------------------------------------
data="$tmp/data"
mkdir -p "$data"
stdbuf_cmd=()
command -v stdbuf >/dev/null && stdbuf_cmd=(stdbuf -oL) # the broker's stdout is block-buffered in a pipe
start_broker() { # starts the broker on $data; sets broker_pid and port (empty if it did not start)
    "${stdbuf_cmd[@]}" "$FJORD_BIN" serve --data-dir "$data" --listen 127.0.0.1:0 --operations-listen off \
        --set tls.client.auth=required >"$tmp/broker.out" 2>"$tmp/broker.err" &
    broker_pid=$!
    port=
    for _ in $(seq 1 600); do
        port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\) (TLS).*/\1/p' "$tmp/broker.out" | head -1)
        [[ -z "$port" ]] && port=$(sed -n 's/.*listen\.tls=[^ ]*:\([0-9][0-9]*\).*/\1/p' "$tmp/broker.err" | head -1)
        [[ -n "$port" && -s "$data/certs/ca.pem" ]] && break
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
}
start_broker
if [[ -z "$port" ]]; then
    not_ok "broker starts and reports its port"
    show "$tmp/broker.out"
    show "$tmp/broker.err"
    finish
fi
ok "broker listening on 127.0.0.1:$port with mutual TLS"

# ----- client certificate, signed by the development CA ---------------------------------------
ca="$data/certs/ca.pem"
ca_key="$data/certs/ca-key.pem"
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$tmp/ext.cnf"
if openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/client-key.pem" 2>"$tmp/openssl.err" &&
    openssl req -new -key "$tmp/client-key.pem" -subj "/CN=fjord-c-e2e" -out "$tmp/client.csr" 2>>"$tmp/openssl.err" &&
    openssl x509 -req -in "$tmp/client.csr" -CA "$ca" -CAkey "$ca_key" -CAcreateserial -days 1 -sha256 \
        -extfile "$tmp/ext.cnf" -out "$tmp/client.pem" 2>>"$tmp/openssl.err"; then
    ok "client certificate signed by the development CA"
else
    not_ok "client certificate signed by the development CA"
    show "$tmp/openssl.err"
    finish
fi
conn=(--broker "127.0.0.1:$port" --ca "$ca" --cert "$tmp/client.pem" --key "$tmp/client-key.pem")

admin() { "$bin/fjord-admin" "${conn[@]}" "$@"; }
if admin create-topic e2e 3 >"$tmp/admin.out" 2>&1 && admin create-topic e2e-durable 2 >>"$tmp/admin.out" 2>&1 &&
    admin create-topic e2e-none 2 >>"$tmp/admin.out" 2>&1 && admin create-topic e2e-big 1 >>"$tmp/admin.out" 2>&1 &&
    [[ "$(admin partitions e2e 2>&1)" == 3 ]]; then
    ok "create topics (fjord-admin create-topic) and read their partition count"
else
    not_ok "create topics"
    show "$tmp/admin.out"
    finish
fi

produce() { run "$1" "$2" "$3" "$4" "$bin/fjord-produce" "$5" --format json "${@:6}" "${conn[@]}"; }
consume() { run "$1" /dev/null "$2" "$3" "$bin/fjord-consume" "$4" --format json "${@:5}" "${conn[@]}"; }
check() { # check NAME e2e-check-args...
    local name=$1
    shift
    if "$build/e2e-check" "$@" >"$tmp/check.out" 2>&1; then ok "$name"; else
        not_ok "$name"
        show "$tmp/check.out"
    fi
}
expect_rc() { # expect_rc NAME WANT GOT STDERR-FILE
    if [[ "$3" == "$2" ]]; then ok "$1 (exit $3)"; else
        not_ok "$1 (exit $3, expected $2)"
        show "$4"
    fi
}

base_ts=1764230400000
now_min=$(($(date +%s) * 1000 - 5000))

# ----- acks leader: 300 records, 3 partitions --------------------------------------------------
"$build/e2e-check" gen 300 3 "$base_ts" >"$tmp/in.jsonl"
produce produce-leader "$tmp/in.jsonl" "$tmp/prod.jsonl" "$tmp/prod.err" e2e --acks leader
expect_rc "fjord-produce --acks leader" 0 $? "$tmp/prod.err"
check "producer output: one line per record, murmur2/explicit partitions, contiguous offsets from 0" \
    produced "$tmp/in.jsonl" "$tmp/prod.jsonl" 3 --fresh

consume consume-all "$tmp/cons.jsonl" "$tmp/cons.err" e2e --from-beginning --timeout-ms 3000
expect_rc "fjord-consume --from-beginning" 0 $? "$tmp/cons.err"
check "consumer output: all 300 records byte for byte, each partition in offset order" \
    consumed "$tmp/in.jsonl" "$tmp/prod.jsonl" "$tmp/cons.jsonl" e2e --now-min "$now_min"

consume consume-offset "$tmp/cons-off.jsonl" "$tmp/cons-off.err" e2e --partition 1 --offset 3 --max-records 5 --timeout-ms 5000
expect_rc "fjord-consume --partition 1 --offset 3 --max-records 5" 0 $? "$tmp/cons-off.err"
check "consumer output: partition 1, offsets 3..7 (starting inside a batch)" \
    consumed "$tmp/in.jsonl" "$tmp/prod.jsonl" "$tmp/cons-off.jsonl" e2e --partition 1 --min-offset 3 --max 5 \
    --now-min "$now_min"

from_time=$((base_ts + 1500))
consume consume-time "$tmp/cons-time.jsonl" "$tmp/cons-time.err" e2e --from-time "$from_time" --timeout-ms 3000
expect_rc "fjord-consume --from-time" 0 $? "$tmp/cons-time.err"
check "consumer output: from the first offset at or after the time, per partition" \
    consumed "$tmp/in.jsonl" "$tmp/prod.jsonl" "$tmp/cons-time.jsonl" e2e --from-time "$from_time" --now-min "$now_min"

consume consume-latest "$tmp/cons-latest.jsonl" "$tmp/cons-latest.err" e2e --timeout-ms 1000
rc=$?
if [[ $rc -eq 0 && ! -s "$tmp/cons-latest.jsonl" ]]; then ok "fjord-consume without a start flag waits at the end: no records, exit 0"; else
    not_ok "fjord-consume without a start flag (exit $rc)"
    show "$tmp/cons-latest.jsonl"
fi

# ----- acks durable ---------------------------------------------------------------------------
"$build/e2e-check" gen 50 2 "$base_ts" >"$tmp/in-d.jsonl"
produce produce-durable "$tmp/in-d.jsonl" "$tmp/prod-d.jsonl" "$tmp/prod-d.err" e2e-durable --acks durable
expect_rc "fjord-produce --acks durable" 0 $? "$tmp/prod-d.err"
check "producer output (durable)" produced "$tmp/in-d.jsonl" "$tmp/prod-d.jsonl" 2 --fresh
consume consume-durable "$tmp/cons-d.jsonl" "$tmp/cons-d.err" e2e-durable --from-beginning --timeout-ms 2000
expect_rc "fjord-consume (durable topic)" 0 $? "$tmp/cons-d.err"
check "consumer output (durable topic)" consumed "$tmp/in-d.jsonl" "$tmp/prod-d.jsonl" "$tmp/cons-d.jsonl" e2e-durable \
    --now-min "$now_min"

# ----- acks none --------------------------------------------------------------------------------
"$build/e2e-check" gen 40 2 "$base_ts" >"$tmp/in-n.jsonl"
produce produce-none "$tmp/in-n.jsonl" "$tmp/prod-n.jsonl" "$tmp/prod-n.err" e2e-none --acks none
expect_rc "fjord-produce --acks none" 0 $? "$tmp/prod-n.err"
check "producer output (acks none): offset -1, right partitions" produced "$tmp/in-n.jsonl" "$tmp/prod-n.jsonl" 2 --acks-none
consume consume-none "$tmp/cons-n.jsonl" "$tmp/cons-n.err" e2e-none --from-beginning --timeout-ms 2000
n=$(wc -l <"$tmp/cons-n.jsonl")
if [[ $n -eq 40 ]]; then ok "all 40 records sent with --acks none arrived"; else not_ok "records sent with --acks none: $n of 40 arrived"; fi

# ----- a 2 MiB record (above the 1 MiB batch target and the subscribe max_bytes) ---------------
"$build/e2e-check" gen 3 1 "$base_ts" --big 2097152 >"$tmp/in-b.jsonl"
produce produce-big "$tmp/in-b.jsonl" "$tmp/prod-b.jsonl" "$tmp/prod-b.err" e2e-big
expect_rc "fjord-produce with a 2 MiB record" 0 $? "$tmp/prod-b.err"
check "producer output (big)" produced "$tmp/in-b.jsonl" "$tmp/prod-b.jsonl" 1 --fresh
consume consume-big "$tmp/cons-b.jsonl" "$tmp/cons-b.err" e2e-big --from-beginning --timeout-ms 3000
expect_rc "fjord-consume with a 2 MiB record" 0 $? "$tmp/cons-b.err"
check "consumer output (big)" consumed "$tmp/in-b.jsonl" "$tmp/prod-b.jsonl" "$tmp/cons-b.jsonl" e2e-big --now-min "$now_min"

# ----- many records: several batches per partition, subscribe credit topped up many times ------
if run admin-create /dev/null "$tmp/admin2.out" "$tmp/admin2.err" "$bin/fjord-admin" "${conn[@]}" create-topic e2e-many 2; then
    ok "fjord-admin create-topic e2e-many 2"
else
    not_ok "fjord-admin create-topic e2e-many 2"
    show "$tmp/admin2.err"
fi
"$build/e2e-check" gen 20000 2 "$base_ts" >"$tmp/in-m.jsonl"
produce produce-many "$tmp/in-m.jsonl" "$tmp/prod-m.jsonl" "$tmp/prod-m.err" e2e-many
expect_rc "fjord-produce 20000 records ($(($(wc -c <"$tmp/in-m.jsonl") / 1024)) KiB of JSON)" 0 $? "$tmp/prod-m.err"
check "producer output (20000 records)" produced "$tmp/in-m.jsonl" "$tmp/prod-m.jsonl" 2 --fresh
consume consume-many "$tmp/cons-m.jsonl" "$tmp/cons-m.err" e2e-many --from-beginning --timeout-ms 3000
expect_rc "fjord-consume 20000 records" 0 $? "$tmp/cons-m.err"
check "consumer output (20000 records, both partitions in offset order)" \
    consumed "$tmp/in-m.jsonl" "$tmp/prod-m.jsonl" "$tmp/cons-m.jsonl" e2e-many --now-min "$now_min"

# The same at native speed (timing differs a lot from valgrind's).
admin create-topic e2e-many-native 2 >/dev/null 2>&1
"$bin/fjord-produce" e2e-many-native --format json "${conn[@]}" <"$tmp/in-m.jsonl" >"$tmp/prod-mn.jsonl" 2>"$tmp/prod-mn.err"
expect_rc "fjord-produce 20000 records without valgrind" 0 $? "$tmp/prod-mn.err"
check "producer output (20000 records, native)" produced "$tmp/in-m.jsonl" "$tmp/prod-mn.jsonl" 2 --fresh
"$bin/fjord-consume" e2e-many-native --format json --from-beginning --timeout-ms 2000 "${conn[@]}" \
    >"$tmp/cons-mn.jsonl" 2>"$tmp/cons-mn.err"
expect_rc "fjord-consume 20000 records without valgrind" 0 $? "$tmp/cons-mn.err"
check "consumer output (20000 records, native)" \
    consumed "$tmp/in-m.jsonl" "$tmp/prod-mn.jsonl" "$tmp/cons-mn.jsonl" e2e-many-native --now-min "$now_min"

# ----- a live subscription: records appended after the consumer started are pushed to it -------
end0=$(admin list-offset e2e 0 latest 2>&1)
"${vg[@]}" ${vg:+--log-file="$tmp/vg-consume-live.log"} "$bin/fjord-consume" e2e --format json "${conn[@]}" \
    --partition 0 --offset "$end0" --max-records 5 --timeout-ms 30000 </dev/null >"$tmp/cons-live.jsonl" \
    2>"$tmp/cons-live.err" &
live=$!
sleep 3
for i in $(seq 1 8); do printf '{"value": "%s", "partition": 0, "timestamp": %d}\n' "$(printf 'live-%d' "$i" | base64)" \
    $((base_ts + i)); done >"$tmp/in-live.jsonl"
"$bin/fjord-produce" e2e --format json "${conn[@]}" <"$tmp/in-live.jsonl" >"$tmp/prod-live.jsonl" 2>"$tmp/prod-live.err"
wait "$live"
rc=$?
vg_check consume-live
if [[ $rc -eq 0 ]] && [[ $(wc -l <"$tmp/cons-live.jsonl") -eq 5 ]] &&
    "$build/e2e-check" consumed "$tmp/in-live.jsonl" "$tmp/prod-live.jsonl" "$tmp/cons-live.jsonl" e2e --partition 0 \
        --max 5 >"$tmp/check.out" 2>&1; then
    ok "a waiting subscription receives records appended later (5 of 8, --max-records 5)"
else
    not_ok "live subscription (exit $rc)"
    show "$tmp/cons-live.jsonl"
    show "$tmp/cons-live.err"
    show "$tmp/check.out"
fi

# ----- input arriving slowly: one request per line, answers printed as they come -------------------
head -6 "$tmp/in.jsonl" >"$tmp/in-s.jsonl"
mkfifo "$tmp/slow.fifo"
(while IFS= read -r l; do printf '%s\n' "$l"; sleep 0.3; done <"$tmp/in-s.jsonl") >"$tmp/slow.fifo" &
writer=$!
run produce-slow "$tmp/slow.fifo" "$tmp/prod-s.jsonl" "$tmp/prod-s.err" "$bin/fjord-produce" e2e --format json "${conn[@]}"
expect_rc "fjord-produce with input arriving line by line" 0 $? "$tmp/prod-s.err"
wait "$writer"
if [[ $(wc -l <"$tmp/prod-s.jsonl") -eq 6 ]] && ! grep -q '"offset": -1' "$tmp/prod-s.jsonl"; then
    ok "six acknowledgements for six slow lines"
else
    not_ok "slow input"
    show "$tmp/prod-s.jsonl"
fi

# ----- failures -----------------------------------------------------------------------------------
echo '{"value": "aGVsbG8="}' >"$tmp/one.jsonl"
produce produce-unknown "$tmp/one.jsonl" "$tmp/unk.out" "$tmp/unk.err" no-such-topic
rc=$?
if [[ $rc -ne 0 ]] && grep -q "no-such-topic" "$tmp/unk.err" && [[ ! -s "$tmp/unk.out" ]]; then
    ok "fjord-produce to an unknown topic fails naming it: $(head -1 "$tmp/unk.err")"
else
    not_ok "fjord-produce to an unknown topic (exit $rc)"
    show "$tmp/unk.err"
fi

printf '%s\n' '{"value": "YQ=="}' '{"value": "Yg==", "partition": 1}' '{"value": "Yw==", "key": 12}' '{"value": "ZA=="}' \
    >"$tmp/bad.jsonl"
produce produce-malformed "$tmp/bad.jsonl" "$tmp/bad.out" "$tmp/bad.err" e2e
rc=$?
if [[ $rc -ne 0 ]] && grep -q "line 3" "$tmp/bad.err" && [[ $(wc -l <"$tmp/bad.out") -eq 2 ]]; then
    ok "a malformed line fails with its line number; earlier records are still acknowledged: $(head -1 "$tmp/bad.err")"
else
    not_ok "malformed line (exit $rc)"
    show "$tmp/bad.out"
    show "$tmp/bad.err"
fi

printf '%s\n' '{"value": "YQ==", "key": "not base64!"}' >"$tmp/bad64.jsonl"
produce produce-bad64 "$tmp/bad64.jsonl" "$tmp/bad64.out" "$tmp/bad64.err" e2e
rc=$?
if [[ $rc -ne 0 ]] && grep -q "base64" "$tmp/bad64.err"; then ok "invalid base64 is rejected: $(head -1 "$tmp/bad64.err")"; else
    not_ok "invalid base64 (exit $rc)"
    show "$tmp/bad64.err"
fi

consume consume-bad-partition "$tmp/bp.out" "$tmp/bp.err" e2e --partition 7 --from-beginning --timeout-ms 500
rc=$?
if [[ $rc -ne 0 ]]; then ok "fjord-consume --partition 7 of 3 fails: $(head -1 "$tmp/bp.err")"; else not_ok "--partition 7 of 3 succeeded"; fi

consume consume-out-of-range "$tmp/oor.out" "$tmp/oor.err" e2e --partition 0 --offset 100000 --timeout-ms 500
rc=$?
if [[ $rc -ne 0 ]] && grep -q OFFSET_OUT_OF_RANGE "$tmp/oor.err"; then ok "an offset past the log end fails with OFFSET_OUT_OF_RANGE"; else
    not_ok "offset out of range (exit $rc)"
    show "$tmp/oor.err"
fi

run no-client-cert /dev/null "$tmp/nc.out" "$tmp/nc.err" "$bin/fjord-consume" e2e --broker "127.0.0.1:$port" --ca "$ca" \
    --from-beginning --timeout-ms 500
rc=$?
if [[ $rc -ne 0 ]] && grep -q TLS "$tmp/nc.err"; then ok "without a client certificate the broker refuses the connection: $(head -1 "$tmp/nc.err")"; else
    not_ok "without a client certificate (exit $rc)"
    show "$tmp/nc.err"
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/other-key.pem" -out "$tmp/other-ca.pem" \
    -subj "/CN=other CA" -days 1 2>/dev/null
run wrong-ca /dev/null "$tmp/wc.out" "$tmp/wc.err" "$bin/fjord-consume" e2e --broker "127.0.0.1:$port" --ca "$tmp/other-ca.pem" \
    --cert "$tmp/client.pem" --key "$tmp/client-key.pem" --from-beginning --timeout-ms 500
rc=$?
if [[ $rc -ne 0 ]] && grep -q "certificate verification" "$tmp/wc.err"; then ok "a broker certificate from another CA is refused: $(head -1 "$tmp/wc.err")"; else
    not_ok "wrong CA (exit $rc)"
    show "$tmp/wc.err"
fi

"$bin/fjord-admin" --broker "localhost:$port" --ca "$ca" --cert "$tmp/client.pem" --key "$tmp/client-key.pem" partitions e2e \
    >"$tmp/host.out" 2>&1
if [[ "$(cat "$tmp/host.out")" == 3 ]]; then ok "host name verification (localhost)"; else
    not_ok "host name verification (localhost)"
    show "$tmp/host.out"
fi

kill -0 "$broker_pid" 2>/dev/null && ok "broker still running" || not_ok "broker still running"

# ----- a batch damaged on disk never reaches the application ------------------------------------
# Three batches (offsets 0-9, 10-14, 15-19); the broker is stopped cleanly (no rescan at start),
# one bit of the middle batch's record value is flipped in the segment file, and the broker is
# started again. fjord-consume must fail, not retriably, with the client's CRC_MISMATCH (or the
# broker's CORRUPT_LOG where the broker verifies what it reads), and print none of that batch.
admin create-topic e2e-damaged 1 >/dev/null 2>&1
for part in good:0:10 MARKER-to-damage:10:5 after:15:5; do
    IFS=: read -r word first count <<<"$part"
    for i in $(seq 0 $((count - 1))); do
        printf '{"value": "%s", "partition": 0, "timestamp": %d}\n' "$(printf '%s-%d' "$word" "$i" | base64)" $((base_ts + first + i))
    done >"$tmp/in-dmg.jsonl"
    "$bin/fjord-produce" e2e-damaged --format json "${conn[@]}" <"$tmp/in-dmg.jsonl" >>"$tmp/prod-dmg.jsonl" 2>"$tmp/prod-dmg.err"
done
kill -TERM "$broker_pid"
wait "$broker_pid"
broker_pid=
segment=$(grep -rl --include='*.log' 'MARKER-to-damage-2' "$data" | head -1)
pos=$(grep -obUa 'MARKER-to-damage-2' "$segment" 2>/dev/null | head -1 | cut -d: -f1)
if [[ $(wc -l <"$tmp/prod-dmg.jsonl") -eq 20 && -n "$pos" ]]; then
    printf 'L' | dd of="$segment" bs=1 seek="$pos" conv=notrunc status=none # 'M' (0x4d) -> 'L' (0x4c): one bit
    ok "20 records in 3 batches stored; one bit of the middle batch flipped on disk (byte $pos of $(basename "$segment"))"
else
    not_ok "store 3 batches and find the one to damage"
    show "$tmp/prod-dmg.err"
fi
start_broker
conn=(--broker "127.0.0.1:$port" --ca "$ca" --cert "$tmp/client.pem" --key "$tmp/client-key.pem")
if [[ -z "$port" ]]; then
    not_ok "broker restarts on the damaged log"
    show "$tmp/broker.err"
    finish
fi
consume consume-damaged "$tmp/cons-dmg.jsonl" "$tmp/cons-dmg.err" e2e-damaged --from-beginning --timeout-ms 3000
rc=$?
if [[ $rc -eq 1 ]] && grep -qE 'CRC_MISMATCH|CORRUPT_LOG' "$tmp/cons-dmg.err" &&
    ! grep -qE '"offset": ?1[0-4][,}]' "$tmp/cons-dmg.jsonl"; then
    ok "fjord-consume refuses the damaged batch and prints none of it: $(head -1 "$tmp/cons-dmg.err")"
else
    not_ok "fjord-consume over a damaged batch (exit $rc)"
    show "$tmp/cons-dmg.err"
    show "$tmp/cons-dmg.jsonl"
fi

if ((${#vg[@]})); then echo "valgrind: $vg_runs runs"; fi
finish
