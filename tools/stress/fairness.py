#!/usr/bin/env python3
"""Fair-service stress scenarios against a running `fjord serve` (issue 11, section 4).

  python3 tools/stress/fairness.py --broker 127.0.0.1:7420 --ca DATA_DIR/certs/ca.pem [--scenario all]

Scenarios:
  flood    8 producer processes blast pipelined single-record batches (100-byte values, 64 frames
           per write) on their own connections; half read their acks, half never do. Meanwhile a
           bystander times single-record produce round trips (acks=leader) and fresh connections
           (TLS + Handshake + ListTopics). Prints p50/p99/max.
  bare     1 process opens bare TCP connections to the TLS port (same address) and never starts
           TLS, as fast as it can, while valid clients connect (TLS + Handshake + ListTopics).
           Prints the connect success rate and connect latency percentiles.

Targets (issue 11): flood: bystander p99 < 100 ms and a new connection served within 200 ms;
bare: >= 99 % of valid clients connect.

Uses the Python client in tools/clients/python (needs the `protobuf` runtime).
"""
import argparse
import multiprocessing
import os
import socket
import ssl
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "clients", "python"))

from fjord_client import Client, Record  # noqa: E402
from fjord_client import frames as fr  # noqa: E402
from fjord_client.batch import build_batch  # noqa: E402
from fjord_client.connection import make_ssl_context, parse_hostport  # noqa: E402
from fjord_client.fjord.v1 import connection_pb2, log_pb2  # noqa: E402

METHOD_HANDSHAKE = 1
METHOD_PRODUCE = 20


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(-(-len(ordered) * p // 1)) - 1))
    return ordered[index]


def summary(name, values):
    return "%s: n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms" % (
        name, len(values), percentile(values, 0.50), percentile(values, 0.99), max(values) if values else float("nan"))


def flooder(broker, ca, topic, index, read_acks, stop, counter):
    """One flooding connection: raw frames over TLS, 64 produce requests per write."""
    host, port = parse_hostport(broker)
    context = make_ssl_context(ca=ca)
    sock = context.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
    hello = connection_pb2.HandshakeRequest(protocol_version=1, client_id="flooder-%d" % index)
    sock.sendall(fr.encode_frame(1, METHOD_HANDSHAKE, fr.END_STREAM, hello.SerializeToString()))
    decoder = fr.FrameDecoder()
    while not decoder.feed(sock.recv(65536)):
        pass
    batch = build_batch([Record(b"f" * 100)])
    block = b"".join(
        fr.encode_frame(3, METHOD_PRODUCE, 0, log_pb2.ProduceRequest(
            topic=topic, partition=0, leader_epoch=-1, acks=log_pb2.ACKS_LEADER, request_id=i,
            batch=batch).SerializeToString())
        for i in range(64))
    sock.setblocking(False)
    sent = 0
    pending = memoryview(block)
    while not stop.is_set():
        try:
            written = sock.send(pending)
            pending = pending[written:]
            if not pending:
                pending = memoryview(block)
                sent += 64
        except (ssl.SSLWantWriteError, BlockingIOError, ssl.SSLWantReadError):
            time.sleep(0.0005)
        if read_acks:
            try:
                while sock.recv(1 << 20):
                    pass
            except (ssl.SSLWantReadError, BlockingIOError, ssl.SSLWantWriteError):
                pass
    with counter.get_lock():
        counter.value += sent
    sock.close()


def scenario_flood(args):
    with Client(args.broker, ca=args.ca) as admin:
        topic = "fairness-%d" % int(time.time())
        admin.create_topic(topic, partitions=1)
    stop = multiprocessing.Event()
    counter = multiprocessing.Value("q", 0)
    processes = [multiprocessing.Process(target=flooder, args=(args.broker, args.ca, topic, i, i % 2 == 0, stop, counter))
                 for i in range(args.flooders)]
    for process in processes:
        process.start()
    time.sleep(args.warmup)
    round_trips, connects, failures = [], [], 0
    with Client(args.broker, ca=args.ca, client_id="bystander") as bystander:
        deadline = time.monotonic() + args.duration
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            bystander.produce(topic, [Record(b"b%d" % n)], partition=0)
            round_trips.append((time.perf_counter() - started) * 1000)
            n += 1
            if n % 20 == 0:
                started = time.perf_counter()
                try:
                    with Client(args.broker, ca=args.ca, client_id="newcomer", timeout=10) as newcomer:
                        newcomer.list_topics()
                    connects.append((time.perf_counter() - started) * 1000)
                except Exception as error:  # noqa: BLE001 - reported, counted
                    failures += 1
                    print("newcomer failed: %s" % error)
    stop.set()
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.terminate()
    print("flood: %d flooders (half never read acks) sent %d batches in %.0f s"
          % (args.flooders, counter.value, args.duration + args.warmup))
    print(summary("flood: bystander produce round trip", round_trips))
    print(summary("flood: new connection + list_topics", connects) + " failures=%d" % failures)


def bare_opener(broker, stop, opened, hold):
    host, port = parse_hostport(broker)
    sockets = []
    while not stop.is_set():
        try:
            sockets.append(socket.create_connection((host, port), timeout=2))
            with opened.get_lock():
                opened.value += 1
        except OSError:
            time.sleep(0.001)
        if len(sockets) >= hold:
            sockets.pop(0).close()  # keep `hold` open, churn the rest


def scenario_bare(args):
    stop = multiprocessing.Event()
    opened = multiprocessing.Value("q", 0)
    process = multiprocessing.Process(target=bare_opener, args=(args.broker, stop, opened, args.bare_hold))
    process.start()
    while opened.value < min(args.bare_hold, 200):
        time.sleep(0.01)
    successes, connects = 0, []
    for _ in range(args.attempts):
        started = time.perf_counter()
        try:
            with Client(args.broker, ca=args.ca, client_id="valid", timeout=10) as client:
                client.list_topics()
            successes += 1
            connects.append((time.perf_counter() - started) * 1000)
        except Exception as error:  # noqa: BLE001 - reported, counted
            print("valid client failed: %s" % error)
    stop.set()
    process.join(10)
    if process.is_alive():
        process.terminate()
    print("bare: %d bare TCP connections opened (at most %d held at once)" % (opened.value, args.bare_hold))
    print("bare: %d of %d valid clients connected (%.1f %%)" % (successes, args.attempts, 100.0 * successes / args.attempts))
    print(summary("bare: valid connect + list_topics", connects))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="127.0.0.1:7420")
    parser.add_argument("--ca", required=True, help="the CA that signed the broker's certificate")
    parser.add_argument("--scenario", choices=["flood", "bare", "all"], default="all")
    parser.add_argument("--flooders", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--bare-hold", type=int, default=1000)
    args = parser.parse_args()
    if args.scenario in ("flood", "all"):
        scenario_flood(args)
    if args.scenario in ("bare", "all"):
        scenario_bare(args)


if __name__ == "__main__":
    main()
