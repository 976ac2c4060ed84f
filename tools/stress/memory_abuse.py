#!/usr/bin/env python3
"""Memory abuse stress test for a real `fjord serve` (issue 11, section 3).

Runs each abuse against a fresh broker on loopback, with N connections or streams, and prints the
broker's RSS growth (RssAnon and VmRSS, peak during the abuse, against the value after set-up) and
a bystander client's produce-then-fetch round trip p50/p99 measured while the abuse goes on.

    swift build -c release --product fjord
    python3 tools/stress/memory_abuse.py --fjord .build/release/fjord            # every abuse, 1,000 each
    python3 tools/stress/memory_abuse.py --fjord ... --abuse fetch --connections 200 --seconds 5

Abuses (all on loopback, bounded in count and time; the script stops the broker at the end):
  fetch      each connection sends one fetch for 8 MiB and never reads
  subscribe  each connection opens a subscription with unlimited credit and never reads
  credit     --connections streams granting 1 byte of credit each (20 per connection), never read
  partial    after the handshake each connection sends a header announcing 8 MiB, --partial-burst
             bytes of it at once, then a trickle (1 KiB every 500 ms)
  metrics    each connection pipelines 12 `GET /metrics` to the operations port and never reads
  idle       (not in `all`) connections that only do the handshake: what the connections themselves cost
"""
import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))

from fjord_client import Client, Record  # noqa: E402
from fjord_client.fjord.v1 import connection_pb2, log_pb2  # noqa: E402

METHOD_HANDSHAKE, METHOD_FETCH, METHOD_SUBSCRIBE = 1, 21, 22
FLAG_END_STREAM = 0x01


def frame(stream, method, payload=b"", flags=0):
    return struct.pack(">IIHBB", len(payload), stream, method, flags, 0) + payload


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def memory_of(pid):
    values = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("RssAnon:", "VmRSS:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0]) * 1024
    return values.get("RssAnon", 0), values.get("VmRSS", 0)


class Broker:
    def __init__(self, fjord, extra):
        self.dir = tempfile.mkdtemp(prefix="fjord-memory-abuse-")
        self.port, self.ops_port = free_port(), free_port()
        args = [fjord, "serve", "--data-dir", self.dir, "--listen", "127.0.0.1:%d" % self.port,
                "--operations-listen", "127.0.0.1:%d" % self.ops_port]
        for item in extra:
            args += ["--set", item]
        self.log = open(os.path.join(self.dir, "broker.log"), "w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)
        self.ca = os.path.join(self.dir, "certs", "ca.pem")
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("fjord serve exited; see %s/broker.log" % self.dir)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    if os.path.exists(self.ca):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("the broker did not start")

    def client(self):
        return Client("127.0.0.1:%d" % self.port, ca=self.ca, client_id="stress")

    def memory(self):
        return memory_of(self.process.pid)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def fill(broker, megabytes):
    """Topic `big`: about `megabytes` MB in batches of about 1 MB."""
    with broker.client() as c:
        c.create_topic("big")
        c.create_topic("bystander")
        value = b"v" * 1000
        with c.producer(batch_bytes=1 << 20) as p:
            for _ in range(megabytes * 1000):
                p.send("big", Record(value), partition=0)
            p.flush()


def _bystander_loop(port, ca, stop, results):
    samples, errors, index = [], 0, 0
    with Client("127.0.0.1:%d" % port, ca=ca, client_id="bystander") as c:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                meta = c.produce("bystander", [Record(b"ping-%d" % index)], partition=0)
                fetched = c.fetch("bystander", 0, meta[0].offset, max_wait_ms=0, min_bytes=0)
                assert fetched.records, "the bystander's record did not come back"
                samples.append(time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - counted and reported
                errors += 1
            index += 1
            time.sleep(0.02)
    results.put((samples, errors))


class Bystander:
    """Produce one record, fetch it back, repeatedly, on its own connection, in its own process
    (so the abusers' TLS work in this process does not delay it)."""

    def __init__(self, broker):
        self.stop_event = multiprocessing.Event()
        self.results = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=_bystander_loop, args=(broker.port, broker.ca, self.stop_event, self.results), daemon=True)
        self.samples, self.errors = [], 0

    def start(self):
        self.process.start()

    def stop(self):
        self.stop_event.set()
        self.samples, self.errors = self.results.get(timeout=60)
        self.process.join(10)

    def summary(self):
        if not self.samples:
            return "no samples (%d errors)" % self.errors
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return "p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d round trips, %d errors" % (
            statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000, len(ordered), self.errors)


async def open_fjord(broker, context):
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port, ssl=context, server_hostname="localhost")
    hs = connection_pb2.HandshakeRequest(protocol_version=1, client_id="abuser")
    writer.write(frame(1, METHOD_HANDSHAKE, hs.SerializeToString(), FLAG_END_STREAM))
    header = await reader.readexactly(12)
    await reader.readexactly(struct.unpack(">I", header[:4])[0])
    return reader, writer


async def abuse(kind, broker, count, seconds, burst):
    context = ssl.create_default_context(cafile=broker.ca)
    writers = []
    trickles = []

    async def one(index):
        if kind == "metrics":
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.ops_port)
            writer.transport.pause_reading()
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 12)
            writers.append(writer)
            return
        reader, writer = await open_fjord(broker, context)
        writer.transport.pause_reading()
        if kind == "fetch":
            wanted = log_pb2.FetchPartition(topic="big", partition=0, offset=0, leader_epoch=-1, max_bytes=8 << 20)
            request = log_pb2.FetchRequest(partitions=[wanted], max_bytes=8 << 20)
            writer.write(frame(3, METHOD_FETCH, request.SerializeToString()))
        elif kind == "subscribe":
            request = log_pb2.SubscribeRequest(topic="big", offset=0, leader_epoch=-1, credit_bytes=1 << 40,
                                               max_bytes=4 << 20)
            writer.write(frame(3, METHOD_SUBSCRIBE, request.SerializeToString()))
        elif kind == "credit":
            request = log_pb2.SubscribeRequest(topic="big", offset=0, leader_epoch=-1, credit_bytes=1)
            for stream in range(20):
                writer.write(frame(3 + 2 * stream, METHOD_SUBSCRIBE, request.SerializeToString()))
        elif kind == "idle":
            pass  # the cost of the connections themselves, for reference
        elif kind == "partial":
            writer.write(struct.pack(">IIHBB", 8 << 20, 3, 20, 0, 0) + b"\0" * burst)

            async def trickle():
                for _ in range(int(seconds * 2) + 2):
                    await asyncio.sleep(0.5)
                    writer.write(b"\0" * 1024)
            trickles.append(asyncio.ensure_future(trickle()))
        writers.append(writer)

    connections = count // 20 if kind == "credit" else count
    # Open in waves, so the accept backlog and handshakes keep up.
    for start in range(0, connections, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(connections, start + 50))))
    await asyncio.sleep(seconds)
    for task in trickles:
        task.cancel()
    for writer in writers:
        writer.transport.abort()
    return connections


def run(kind, args):
    extra = list(args.set or [])
    broker = Broker(args.fjord, extra)
    try:
        if kind in ("fetch", "subscribe", "credit"):
            fill(broker, args.megabytes)
        else:
            with broker.client() as c:
                c.create_topic("bystander")
        warm = Bystander(broker)
        warm.start()
        time.sleep(1)
        warm.stop()
        base_anon, base_rss = broker.memory()
        peak = [base_anon, base_rss]
        bystander = Bystander(broker)
        sampling = [True]

        def sample():
            while sampling[0]:
                anon, rss = broker.memory()
                peak[0], peak[1] = max(peak[0], anon), max(peak[1], rss)
                time.sleep(0.1)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        bystander.start()
        started = time.time()
        connections = asyncio.run(abuse(kind, broker, args.connections, args.seconds, args.partial_burst))
        elapsed = time.time() - started
        bystander.stop()
        sampling[0] = False
        sampler.join()
        alive = broker.process.poll() is None
        print("%-9s %5d %s  RssAnon +%6.1f MiB  VmRSS +%6.1f MiB  (%.0f s)  bystander: %s%s" % (
            kind, args.connections, "streams    " if kind == "credit" else "connections",
            (peak[0] - base_anon) / 1048576, (peak[1] - base_rss) / 1048576, elapsed, bystander.summary(),
            "" if alive else "  BROKER DIED"), flush=True)
    finally:
        broker.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fjord", required=True, help="path to a (release) fjord executable")
    parser.add_argument("--abuse", default="all", choices=["all", "idle", "fetch", "subscribe", "credit", "partial", "metrics"])
    parser.add_argument("--connections", type=int, default=1000, help="connections (streams for credit)")
    parser.add_argument("--seconds", type=float, default=10, help="how long each abuse holds")
    parser.add_argument("--megabytes", type=int, default=64, help="MB in the topic the abusers read")
    parser.add_argument("--partial-burst", type=int, default=256 << 10, help="bytes of the 8 MiB frame sent at once")
    parser.add_argument("--set", action="append", help="broker setting key=value (repeatable)")
    args = parser.parse_args()
    raise_fd_limit()
    kinds = ["fetch", "subscribe", "credit", "partial", "metrics"] if args.abuse == "all" else [args.abuse]
    for kind in kinds:
        run(kind, args)


if __name__ == "__main__":
    main()
