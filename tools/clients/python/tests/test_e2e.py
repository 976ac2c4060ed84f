"""End-to-end tests against a real `fjord serve` (mutual TLS on 127.0.0.1, ephemeral port).

The broker binary is taken from $FJORD_BIN, /tmp/fjord-bin/fjord, or the repository's
.build/{debug,release}/fjord; without one every test here is skipped with a message saying so.
"""
import base64
import json
import os
import ssl
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pkgpath  # noqa: E402 - the source tree or the installed package

PKG_ROOT = pkgpath.SUBPROCESS_CWD  # cwd of `python -m fjord_client` runs

from broker_harness import client_for, require_broker  # noqa: E402

from fjord_client import Client, Record, errors, partition_for_key  # noqa: E402
from fjord_client.client import EARLIEST, LATEST  # noqa: E402

BROKER = None


def setUpModule():
    global BROKER
    BROKER = require_broker(mutual_tls=True)


def tearDownModule():
    if BROKER is not None:
        BROKER.cleanup()


def connect(**kw):
    return client_for(BROKER, **kw)


def sample_records(n, t0=1764230400000):
    out = []
    for i in range(n):
        key = None if i % 4 == 0 else b"key-%d" % (i % 13)
        value = b"" if i % 10 == 3 else bytes([i % 256]) * (i % 50) + b"value-%d" % i
        headers = [("h%d" % j, bytes([j, i % 256, 0])) for j in range(i % 4)]
        if i % 7 == 5:
            headers.append(("null-value", None))
        out.append(Record(value, key=key, headers=headers, timestamp=t0 + i * 1000 - (i % 3) * 1500))
    return out


def same(test, got, want):
    test.assertEqual((got.key, got.value, list(got.headers), got.timestamp),
                     (want.key, want.value, list(want.headers), want.timestamp))


class EndToEndTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = connect(client_id="py-e2e")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def topic(self, partitions=1, name=None, **configs):
        name = name or "py-%s-%d" % (self._testMethodName.replace("_", "-"), int(time.time() * 1000) % 100000)
        self.c.create_topic(name, partitions, configs)
        return name

    def read_all(self, topic, partition, start=0, until=None):
        out, off = [], start
        until = self.c.latest_offset(topic, partition) if until is None else until
        while off < until:
            r = self.c.fetch(topic, partition, off, max_wait_ms=100)
            out += r.records
            off = r.next_offset
        return out

    def test_handshake(self):
        hs = self.c.handshake
        self.assertEqual(hs.protocol_version, 1)
        self.assertEqual(len(hs.cluster_id), 36)
        self.assertGreater(hs.max_frame_bytes, 0)
        self.assertGreater(hs.max_batch_bytes, 0)
        # The principal ACLs would name this client by (docs/security.md): from its certificate, if any.
        self.assertEqual(self.c.principal, "User:fjord-python-test")

    def test_admin(self):
        name = self.topic(3)
        self.assertIn(name, self.c.list_topics())
        info = self.c.describe_topic(name)
        self.assertEqual(len(info.partitions), 3)
        self.assertEqual([p.leader_epoch for p in info.partitions], [0, 0, 0])
        md = self.c.get_metadata([name, "py-no-such-topic"])
        self.assertEqual(md.cluster_id, self.c.cluster_id)
        self.assertEqual(md.brokers[0].port, int(BROKER.addr.rsplit(":", 1)[1]))
        self.assertEqual(len(md.topics[0].topic.partitions), 3)
        self.assertEqual(md.topics[1].error.code, errors.UnknownTopicOrPartitionError.code)
        with self.assertRaises(errors.TopicAlreadyExistsError):
            self.c.create_topic(name, 1)
        with self.assertRaises(errors.UnknownTopicError) as cm:
            self.c.describe_topic("py-no-such-topic")
        self.assertTrue(cm.exception.retriable)
        with self.assertRaises(errors.InvalidTopicError):
            self.c.create_topic("bad name!", 1)
        with self.assertRaises(errors.InvalidPartitionsError):
            self.c.create_topic(name + "-zero", 0)
        with self.assertRaises(errors.InvalidConfigError):
            self.c.create_topic(name + "-cfg", 1, {"no.such.key": "1"})
        self.assertEqual(len(self.c.create_partitions(name, 5).partitions), 5)
        with self.assertRaises(errors.InvalidPartitionsError):
            self.c.create_partitions(name, 2)
        info = self.c.alter_topic_config(name, {"retention.ms": "86400000"})
        self.assertEqual(dict(info.configs), {"retention.ms": "86400000"})
        self.c.delete_topic(name)
        self.assertNotIn(name, self.c.list_topics())

    def test_produce_fetch_round_trip_every_acks(self):
        for acks in ("leader", "durable", "none"):
            with self.subTest(acks=acks):
                name = self.topic(1, name="py-roundtrip-%s-%d" % (acks, time.time_ns() % 10**6))
                recs = sample_records(120)
                with self.c.producer(acks=acks, batch_bytes=2000) as p:  # several batches
                    futs = [p.send(name, r, partition=0) for r in recs]
                offsets = [f.result(5).offset for f in futs]
                if acks == "none":
                    self.assertEqual(offsets, [-1] * 120)
                else:
                    self.assertEqual(offsets, list(range(120)))
                got = self.read_all(name, 0)
                self.assertEqual([g.offset for g in got], list(range(120)))
                for g, w in zip(got, recs):
                    same(self, g, w)

    def test_keyed_records_land_on_murmur2_partition(self):
        name = self.topic(5)
        recs = [Record(b"v%d" % i, key=b"user-%d" % i, timestamp=1700000000000 + i) for i in range(200)]
        res = self.c.produce(name, recs)
        for r, md in zip(recs, res):
            self.assertEqual(md.partition, partition_for_key(r.key, 5))
        total = 0
        for p in range(5):
            for g in self.read_all(name, p):
                self.assertEqual(partition_for_key(g.key, 5), p)
                total += 1
        self.assertEqual(total, 200)

    def test_fetch_skips_records_before_offset_inside_a_batch(self):
        name = self.topic()
        self.c.produce(name, [Record(b"r%d" % i, timestamp=1000 + i) for i in range(5)], partition=0)
        r = self.c.fetch(name, 0, 2)
        self.assertEqual([x.offset for x in r.records], [2, 3, 4])
        self.assertEqual((r.next_offset, r.high_watermark), (5, 5))
        r = self.c.fetch(name, 0, 5, max_wait_ms=50)  # at the log end: nothing, after the wait
        self.assertEqual(r.records, [])
        with self.assertRaises(errors.OffsetOutOfRangeError):
            self.c.fetch(name, 0, 6)

    def test_list_offsets(self):
        name = self.topic()
        self.assertEqual((self.c.earliest_offset(name, 0), self.c.latest_offset(name, 0)), (0, 0))
        self.c.produce(name, [Record(b"a", timestamp=1000), Record(b"b", timestamp=2000)], partition=0)
        self.c.produce(name, [Record(b"c", timestamp=3000)], partition=0)
        self.assertEqual(self.c.list_offsets([(name, 0, EARLIEST), (name, 0, LATEST), (name, 0, 1500),
                                              (name, 0, 3000), (name, 0, 3001)]), [0, 3, 1, 2, -1])
        with self.assertRaises(errors.InvalidRequestError):
            self.c.list_offset(name, 0, -3)
        with self.assertRaises(errors.UnknownTopicOrPartitionError):
            self.c.list_offset(name, 7, LATEST)

    def test_produce_errors(self):
        name = self.topic()
        with self.assertRaises(errors.UnknownTopicOrPartitionError):
            self.c.produce(name, [Record(b"x")], partition=3)
        with self.assertRaises(errors.UnknownTopicOrPartitionError):
            self.c.produce("py-missing-topic", [Record(b"x")], partition=0)
        small = self.topic(name=name + "-small", **{"max.message.bytes": "1024"})
        with self.assertRaises(errors.BatchTooLargeError):
            self.c.produce(small, [Record(b"x" * 5000)], partition=0)
        self.c.produce(small, [Record(b"ok")], partition=0)  # the stream and connection stay usable

    def test_producer_recovers_from_a_failed_stream(self):
        name = self.topic()
        with self.c.producer() as p:
            self.assertEqual(p.send(name, Record(b"one"), partition=0).result(10).offset, 0)
            bad = p._current_stream()
            # field 1 (topic) as a varint: wrong wire type -> the whole stream fails MALFORMED_MESSAGE
            bad.send(b"\x08\x01")
            deadline = time.monotonic() + 10
            while not bad.closed and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertIsInstance(bad.error, errors.MalformedMessageError)
            self.assertEqual(p.send(name, Record(b"two"), partition=0).result(10).offset, 1)  # a new stream
        p = self.c.producer(acks="none")
        self.assertEqual(p.send(name, Record(b"three"), partition=0).result(10).offset, -1)  # ends the stream
        self.assertEqual([r.value for r in self.read_all(name, 0)], [b"one", b"two", b"three"])

    def test_subscribe_with_credit_and_live_tail(self):
        name = self.topic()
        with self.c.producer() as p:
            for i in range(30):
                p.send_batch(name, 0, [Record(b"batch-%d-%d" % (i, j), timestamp=5000 + i) for j in range(3)])
        # credit of 1 byte: the broker sends one batch per message, and only after each grant
        sub = self.c.subscribe(name, 0, 4, credit_bytes=1)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 86 and time.monotonic() < deadline:
            got += sub.poll(1)
        self.assertEqual([r.offset for r in got], list(range(4, 90)))
        self.c.produce(name, [Record(b"live", timestamp=9)], partition=0)
        live = []
        while not live and time.monotonic() < deadline:
            live = sub.poll(1)
        self.assertEqual([(r.offset, r.value) for r in live], [(90, b"live")])
        self.assertEqual(sub.high_watermark, 91)
        sub.close()
        with self.assertRaises(errors.OffsetOutOfRangeError):
            self.c.subscribe(name, 0, 500).poll(10)
        with self.assertRaises(errors.UnknownTopicOrPartitionError):
            self.c.subscribe("py-missing-topic", 0, 0).poll(10)

    def test_large_values_and_many_batches(self):
        name = self.topic(2)
        big = Record(os.urandom(1_500_000), key=b"big", timestamp=1)
        self.c.produce(name, [big], partition=1)
        with self.c.producer(batch_bytes=16384, max_outstanding_bytes=200_000) as p:
            futs = [p.send(name, Record(os.urandom(300), timestamp=i), partition=0) for i in range(3000)]
        self.assertEqual([f.result().offset for f in futs], list(range(3000)))
        r = self.c.fetch(name, 1, 0)
        self.assertEqual(r.records[0].value, big.value)
        self.assertEqual(len(self.read_all(name, 0)), 3000)

    def test_mutual_tls_rejects_a_client_without_certificate(self):
        with self.assertRaises((errors.FjordError, ssl.SSLError, OSError)):
            with Client(BROKER.addr, ca=BROKER.ca, timeout=5) as c:
                c.list_topics()

    def test_untrusted_broker_certificate(self):
        with self.assertRaises(ssl.SSLError):
            Client(BROKER.addr, timeout=5)  # the system store does not trust the dev CA


class CommandLineTest(unittest.TestCase):
    def run_cli(self, *args, stdin=b"", timeout=60):
        conn = ["--broker", BROKER.addr, "--ca", BROKER.ca, "--cert", BROKER.cert, "--key", BROKER.key]
        return subprocess.run([sys.executable, "-m", "fjord_client", *args, *conn], input=stdin, cwd=PKG_ROOT,
                              capture_output=True, timeout=timeout)

    def test_produce_then_consume(self):
        name = "py-cli-%d" % (time.time_ns() % 10**6)
        r = self.run_cli("create-topic", name, "--partitions", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = []
        for i in range(60):
            obj = {"value": base64.b64encode(b"v%d" % i).decode(), "timestamp": 1764230400000 + i}
            if i % 3:
                obj["key"] = base64.b64encode(b"k%d" % i).decode()
            if i % 5 == 0:
                obj["headers"] = [{"key": "trace-id", "value": "AQID"}]
            if i == 7:
                obj["partition"] = 2
                obj.pop("key")
            lines.append(json.dumps(obj))
        r = self.run_cli("produce", name, "--format", "json", "--acks", "durable",
                         stdin=("\n".join(lines) + "\n").encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        acks = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual(len(acks), 60)
        for i, (line, ack) in enumerate(zip(lines, acks)):
            obj = json.loads(line)
            if "key" in obj:
                self.assertEqual(ack["partition"], partition_for_key(base64.b64decode(obj["key"]), 3))
        self.assertEqual(acks[7]["partition"], 2)
        for mode in ("subscribe", "fetch"):
            r = self.run_cli("consume", name, "--format", "json", "--from-beginning", "--timeout-ms", "1500",
                             "--mode", mode)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = [json.loads(x) for x in r.stdout.decode().splitlines()]
            self.assertEqual(len(out), 60, mode)
            seen = {(o["partition"], o["offset"]): o for o in out}
            for line, ack in zip(lines, acks):
                obj = json.loads(line)
                o = seen[(ack["partition"], ack["offset"])]
                self.assertEqual((o["value"], o.get("key"), o["timestamp"], o["headers"], o["topic"]),
                                 (obj["value"], obj.get("key"), obj["timestamp"], obj.get("headers", []), name))
        r = self.run_cli("consume", name, "--partition", "2", "--offset", "1", "--max-records", "2",
                         "--timeout-ms", "5000")
        out = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual([(o["partition"], o["offset"]) for o in out], [(2, 1), (2, 2)])

    def test_bad_input_line_fails_the_exit_status(self):
        name = "py-cli-bad-%d" % (time.time_ns() % 10**6)
        self.assertEqual(self.run_cli("create-topic", name).returncode, 0)
        r = self.run_cli("produce", name, stdin=b'{"value": "aGk="}\nnot json\n{"value": "aGk="}\n')
        self.assertEqual(r.returncode, 1)
        out = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual([o["offset"] for o in out], [0, -1, 1])
        r = self.run_cli("produce", "py-no-such-topic", stdin=b'{"value": "aGk="}\n')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"UNKNOWN_TOPIC_OR_PARTITION", r.stderr)


CORRUPT_LOG = 62
MARKER = b"MARKER-to-damage-2"


def flip_marker_bit(broker):
    """Flips the lowest bit of the first byte of MARKER in the one segment file of `broker` that holds it."""
    hits = []
    for root, _, files in os.walk(broker.data):
        for name in files:
            if name.endswith(".log"):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    data = f.read()
                if MARKER in data:
                    hits.append((path, data.index(MARKER)))
    if len(hits) != 1:
        raise AssertionError("expected the marker in exactly one segment, found %r" % hits)
    path, pos = hits[0]
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 1]))


class DamagedLogTest(unittest.TestCase):
    """A batch damaged on the broker's disk never reaches the application (issue 11, "clients check
    too"). Its own broker (it is restarted): three batches stored, the broker stopped cleanly (so it
    does not rescan the log at start), one bit of the middle batch's record value flipped in the
    segment file, the broker started again. Fetching or subscribing over the damaged batch fails
    with a non-retriable error and returns none of its records: the client's CrcMismatchError, or
    the broker's own CORRUPT_LOG (62) where the broker verifies what it reads."""

    @classmethod
    def setUpClass(cls):
        cls.broker = require_broker(mutual_tls=True)

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def assert_damage_refused(self, exc):
        """The error a read over the damaged batch gets: never retriable, and names the batch."""
        if isinstance(exc, errors.CrcMismatchError):
            self.assertEqual((exc.topic, exc.partition, exc.offset), ("damaged", 0, 10))
            self.assertNotEqual(exc.expected, exc.actual)
            self.assertFalse(exc.retriable)
        else:
            self.assertIsInstance(exc, errors.BrokerError)
            self.assertEqual(exc.code, CORRUPT_LOG, str(exc))
            self.assertFalse(exc.retriable)

    def test_a_damaged_stored_batch_is_never_returned(self):
        with client_for(self.broker) as c:
            c.create_topic("damaged", 1)
            c.produce("damaged", [Record(b"good-%d" % i, timestamp=1000 + i) for i in range(10)], partition=0)
            c.produce("damaged", [Record(b"MARKER-to-damage-%d" % i, timestamp=2000 + i) for i in range(5)],
                      partition=0)
            c.produce("damaged", [Record(b"after-%d" % i, timestamp=3000 + i) for i in range(5)], partition=0)
            before = c.fetch("damaged", 0, 10).records
            self.assertEqual([r.value for r in before][:5], [b"MARKER-to-damage-%d" % i for i in range(5)])
        self.broker.restart(while_stopped=lambda: flip_marker_bit(self.broker))
        with client_for(self.broker) as c:
            self.assertEqual(c.latest_offset("damaged", 0), 20)
            # Fetch: from the start (the damaged batch follows a good one) and at the batch itself.
            for start in (0, 12):
                with self.assertRaises((errors.CrcMismatchError, errors.BrokerError)) as ctx:
                    got = []
                    off = start
                    while off < 20:
                        r = c.fetch("damaged", 0, off, max_wait_ms=100)
                        self.assertFalse(any(x.value.startswith(b"LARKER") for x in r.records))
                        got += r.records
                        off = r.next_offset
                self.assert_damage_refused(ctx.exception)
                self.assertTrue(all(10 > x.offset or x.offset >= 15 for x in got))
            # Subscribe from the start: records before the damaged batch may come, none of it.
            sub = c.subscribe("damaged", 0, 0, credit_bytes=1 << 20)
            got = []
            with self.assertRaises((errors.CrcMismatchError, errors.BrokerError)) as ctx:
                for _ in range(50):
                    got += sub.poll(0.2)
            sub.close()
            self.assert_damage_refused(ctx.exception)
            self.assertTrue(all(x.offset < 10 for x in got), [x.offset for x in got])


if __name__ == "__main__":
    unittest.main()
