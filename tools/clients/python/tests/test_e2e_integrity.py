"""A batch damaged on the broker's disk never reaches the application (issue 11, "clients check too").

A real `fjord serve` (mutual TLS, 127.0.0.1) stores three batches; it is stopped cleanly (so it does
not rescan the log at start), one bit of the middle batch's record value is flipped in the segment
file, and the broker is started again. Fetching or subscribing over the damaged batch must fail
with a non-retriable error and return none of its records: the client's CrcMismatchError, or the
broker's own CORRUPT_LOG (62) where the broker verifies what it reads. Skipped without a broker
binary, like test_e2e.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))
sys.path.insert(0, HERE)

from broker_harness import Broker, find_fjord  # noqa: E402

from fjord_client import Client, Record, errors  # noqa: E402

CORRUPT_LOG = 62
MARKER = b"MARKER-to-damage-2"
BROKER = None


def setUpModule():
    global BROKER
    fjord = find_fjord()
    if fjord is None:
        raise unittest.SkipTest("no fjord broker binary (set FJORD_BIN, or build it to /tmp/fjord-bin/fjord "
                                "or .build/debug/fjord): end-to-end tests skipped")
    BROKER = Broker(fjord, mutual_tls=True)


def tearDownModule():
    if BROKER is not None:
        BROKER.cleanup()


def connect(**kw):
    return Client(BROKER.addr, ca=BROKER.ca, cert=BROKER.cert, key=BROKER.key, timeout=30, **kw)


def flip_marker_bit():
    """Flips the lowest bit of the first byte of MARKER in the one segment file that holds it."""
    hits = []
    for root, _, files in os.walk(BROKER.data):
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
        with connect() as c:
            c.create_topic("damaged", 1)
            c.produce("damaged", [Record(b"good-%d" % i, timestamp=1000 + i) for i in range(10)], partition=0)
            c.produce("damaged", [Record(b"MARKER-to-damage-%d" % i, timestamp=2000 + i) for i in range(5)],
                      partition=0)
            c.produce("damaged", [Record(b"after-%d" % i, timestamp=3000 + i) for i in range(5)], partition=0)
            before = c.fetch("damaged", 0, 10).records
            self.assertEqual([r.value for r in before][:5], [b"MARKER-to-damage-%d" % i for i in range(5)])
        BROKER.restart(while_stopped=flip_marker_bit)
        with connect() as c:
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
