"""Throughput of the Python client against a real broker over TLS: 100-byte records produced
(idempotent producer, acks leader, batched) and consumed (Log.Subscribe, CRC32C checked).

    FJORD_BIN=/work/bin/fjord-release python3 tools/clients/python/tests/bench_throughput.py \\
        [--records 500000] [--runs 5] [--value-bytes 100] [--partitions 1]

Each run produces --records records to a new topic, then consumes them from the start; prints
records/s per run and the median of the runs. Not a unit test (not named test_*).
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pkgpath  # noqa: F401,E402 - the source tree or the installed package

from broker_harness import Broker, client_for, find_fjord  # noqa: E402

from fjord_client import Record  # noqa: E402
from fjord_client.crc32c import IMPLEMENTATION  # noqa: E402


def produce(client, topic, n, value, partitions):
    start = time.perf_counter()
    with client.producer(acks="leader") as p:
        for i in range(n):
            p.send(topic, Record(value, timestamp=1764230400000), partition=i % partitions)
        p.flush(600)
    return n / (time.perf_counter() - start)


def consume(client, topic, n, partitions):
    start = time.perf_counter()
    subs = [client.subscribe(topic, p, 0, credit_bytes=8 << 20) for p in range(partitions)]
    got = 0
    while got < n:
        for s in subs:
            got += len(s.poll(0.05 if len(subs) > 1 else 10))
    elapsed = time.perf_counter() - start
    for s in subs:
        s.close()
    return got / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=1)
    args = ap.parse_args()
    fjord = find_fjord()
    if fjord is None:
        sys.exit("set FJORD_BIN to a fjord broker executable")
    broker = Broker(fjord, mutual_tls=False)
    try:
        client = client_for(broker, check_crcs=True)
        value = b"v" * args.value_bytes
        prod, cons = [], []
        for run in range(args.runs):
            topic = "bench-%d" % run
            client.create_topic(topic, partitions=args.partitions)
            prod.append(produce(client, topic, args.records, value, args.partitions))
            cons.append(consume(client, topic, args.records, args.partitions))
            print("run %d: produce %9.0f records/s   consume %9.0f records/s" % (run + 1, prod[-1], cons[-1]),
                  flush=True)
        print("median of %d runs (%d records of %d bytes, TLS, CRC32C: %s, broker %s):"
              % (args.runs, args.records, args.value_bytes, IMPLEMENTATION, os.path.basename(fjord)))
        print("  produce %.0f records/s, consume %.0f records/s" % (statistics.median(prod), statistics.median(cons)))
        client.close()
    finally:
        broker.cleanup()


if __name__ == "__main__":
    main()
