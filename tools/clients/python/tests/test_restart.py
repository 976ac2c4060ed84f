"""The broker is killed (SIGKILL) and restarted on the same port in the middle of a produce run:
an idempotent producer with acks=durable reconnects, sends what was unanswered again, and every
record it acknowledged is in the log exactly once, at the offset it was told, and no record is
written twice.

Then the records are read back with subscriptions while the broker is killed and restarted once
more: they resume from the next offset, handing out every record exactly once.

A real broker (`fjord serve`, mutual TLS, ephemeral port; see broker_harness). Knobs:
FJORD_RESTART_RECORDS (records, default 20000), FJORD_RESTART_CYCLES (kill/restart cycles,
default 2).
"""
import collections
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pkgpath  # noqa: F401,E402 - the source tree or the installed package

from broker_harness import client_for, require_broker  # noqa: E402

from fjord_client import Record  # noqa: E402

RECORDS = int(os.environ.get("FJORD_RESTART_RECORDS", "20000"))
CYCLES = int(os.environ.get("FJORD_RESTART_CYCLES", "2"))
PARTITIONS = 3


class KillRestartTest(unittest.TestCase):
    def setUp(self):
        self.broker = require_broker(mutual_tls=True)
        self.addCleanup(self.broker.cleanup)

    def test_every_acknowledged_record_exactly_once(self):
        client = client_for(self.broker, reconnect_backoff=0.05, reconnect_backoff_max=0.5)
        self.addCleanup(client.close)
        client.create_topic("restart", partitions=PARTITIONS)
        producer = client.producer(acks="durable", batch_bytes=16 * 1024, delivery_timeout=120)
        self.assertTrue(producer.idempotent)
        futures = []
        acked = [0]
        lock = threading.Lock()

        def on_done(f):
            if f.exception(0) is None:
                with lock:
                    acked[0] += 1

        def produce():
            for i in range(RECORDS):
                fut = producer.send("restart", Record(b"value-%07d" % i, key=b"key-%d" % (i % 97)))
                fut.add_done_callback(on_done)
                futures.append(fut)
                if i % 500 == 499:
                    time.sleep(0.01)  # a steady stream rather than one burst, so kills land mid-run
            producer.flush(180)

        thread = threading.Thread(target=produce)
        thread.start()
        for cycle in range(CYCLES):
            target = RECORDS * (cycle + 1) // (CYCLES + 1)
            deadline = time.monotonic() + 120
            while acked[0] < target and time.monotonic() < deadline and thread.is_alive():
                time.sleep(0.01)
            self.broker.crash()
            time.sleep(0.3)
            self.broker.start_same_port()
        thread.join(300)
        self.assertFalse(thread.is_alive(), "the producer did not finish")
        producer.close(60)

        # Every record was acknowledged (the delivery timeout is far longer than a restart).
        results = [f.result(0) for f in futures]
        self.assertEqual(len(results), RECORDS)
        self.assertGreaterEqual(client.reconnects, CYCLES, "the kills did not interrupt the run")
        sys.stderr.write("\n  %d records, %d reconnects, %d resends of unanswered batches, %d answered as duplicates\n"
                         % (RECORDS, client.reconnects, producer.retries, producer.duplicates))

        # Read everything back with subscriptions, killing the broker once more meanwhile: they
        # resume from the next offset, so each record is handed out exactly once.
        subs = [client.subscribe("restart", p, 0, credit_bytes=64 * 1024) for p in range(PARTITIONS)]
        handed_out = []
        killed = False
        deadline = time.monotonic() + 120
        while len(handed_out) < RECORDS and time.monotonic() < deadline:
            for sub in subs:
                handed_out += [(sub.partition, r.offset, r.value) for r in sub.poll(0.05)]
            if not killed and len(handed_out) >= RECORDS // 3:
                self.broker.crash()
                time.sleep(0.3)
                self.broker.start_same_port()
                killed = True
        for sub in subs:
            sub.close()
        self.assertTrue(killed, "the broker was not killed while the subscriptions read")
        self.assertGreaterEqual(sum(s.resumes for s in subs), 1, "no subscription resumed")
        sys.stderr.write("  subscriptions resumed %d times\n" % sum(s.resumes for s in subs))
        self.assertEqual(len({(p, o) for p, o, _ in handed_out}), len(handed_out), "an offset handed out twice")
        stored = {(p, o): v for p, o, v in handed_out}
        counts = collections.Counter(stored.values())
        duplicates = [v for v, n in counts.items() if n > 1]
        self.assertEqual(duplicates, [], "records written twice")
        self.assertEqual(len(stored), RECORDS)
        for i, md in enumerate(results):
            self.assertEqual(stored.get((md.partition, md.offset)), b"value-%07d" % i,
                             "record %d acknowledged at %s/%d" % (i, md.partition, md.offset))


if __name__ == "__main__":
    unittest.main()
