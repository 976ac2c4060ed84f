"""What checking CRC32Cs costs a consumer: fetches the same ~100 MB of stored batches with
check_crcs on (the `crc32c` package if installed, and the pure-Python table CRC) and off.

    FJORD_BIN=.build/debug/fjord python3 tools/clients/python/tests/bench_check_crcs.py [--mb 100]

Starts its own broker (broker_harness, mutual TLS on 127.0.0.1), produces the data once, then
reads it from offset 0 to the end with Log.Fetch (8 MiB per partition per response) for each mode
and prints records/s and MB/s of batch bytes. Not a unit test (it is not collected by unittest).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))
sys.path.insert(0, HERE)

from broker_harness import Broker, find_fjord  # noqa: E402

from fjord_client import Client, Record, batch  # noqa: E402
from fjord_client.crc32c import IMPLEMENTATION, crc32c_python  # noqa: E402


def read_all(client, topic, end, check_crcs):
    off, records, nbytes = 0, 0, 0
    t0 = time.perf_counter()
    while off < end:
        r = client.fetch_many([(topic, 0, off)], max_wait_ms=0, partition_max_bytes=8 << 20,
                              max_bytes=64 << 20, check_crcs=check_crcs)[0]
        if r.error is not None:
            raise r.error
        records += len(r.records)
        nbytes += sum(len(x.value) + (len(x.key) if x.key else 0) for x in r.records)
        off = r.next_offset
    return records, nbytes, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=100, help="payload megabytes to produce and read (default 100)")
    ap.add_argument("--value-bytes", type=int, default=1000)
    args = ap.parse_args()
    fjord = find_fjord()
    if fjord is None:
        sys.exit("no fjord binary: set FJORD_BIN")
    broker = Broker(fjord, mutual_tls=True)
    try:
        with Client(broker.addr, ca=broker.ca, cert=broker.cert, key=broker.key, timeout=120) as c:
            c.create_topic("bench", 1)
            n = args.mb * 1000 * 1000 // args.value_bytes
            filler = os.urandom(args.value_bytes)
            t0 = time.perf_counter()
            with c.producer(acks="leader", batch_bytes=256 * 1024) as p:
                for i in range(n):
                    p.send("bench", Record(b"%08d" % i + filler[8:], timestamp=1764230400000 + i), partition=0)
            end = c.latest_offset("bench", 0)
            print("produced %d records of %d bytes in %.1f s" % (end, args.value_bytes, time.perf_counter() - t0))
            modes = [("check_crcs=False", False, None)]
            if IMPLEMENTATION != "pure python":
                modes.append(("check_crcs=True (%s)" % IMPLEMENTATION, True, None))
            modes.append(("check_crcs=True (pure python)", True, crc32c_python))
            for name, check, impl in modes:
                saved = batch.crc32c
                if impl is not None:
                    batch.crc32c = impl
                try:
                    records, nbytes, dt = read_all(c, "bench", end, check)
                finally:
                    batch.crc32c = saved
                print("%-40s %8d records in %6.2f s: %9.0f records/s, %7.1f MB/s" %
                      (name, records, dt, records / dt, nbytes / 1e6 / dt))
    finally:
        broker.cleanup()


if __name__ == "__main__":
    main()
