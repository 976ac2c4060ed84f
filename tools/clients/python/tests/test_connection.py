"""Connection-level tests against a tiny in-process fake broker (plaintext, loopback): multiplexed
streams answered out of order, ERROR frames as typed exceptions, a connection error on stream 0,
produce answers matched by request_id, acks-none completion at END_STREAM, subscribe credit, and
a late answer to a cancelled stream. The real broker is exercised in test_e2e.py."""
import os
import socket
import sys
import threading
import time
import unittest

import pkgpath  # noqa: F401,E402 - the source tree or the installed package

from fjord_client import Client, Record, errors  # noqa: E402
from fjord_client import frames as fr  # noqa: E402
from fjord_client.batch import decode_batch, frame_batch  # noqa: E402
from fjord_client.fjord.v1 import connection_pb2 as C  # noqa: E402
from fjord_client.fjord.v1 import errors_pb2, log_pb2, topics_pb2  # noqa: E402


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class FakeBroker:
    """Accepts connections on 127.0.0.1; one thread per connection; scripted behaviour."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen()
        self.port = self.srv.getsockname()[1]
        self.log = []  # (partition, stored batch bytes)
        self.credit_log = []
        self.subscribe_messages = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.srv.close()

    def _accept(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        lock = threading.Lock()

        def send(sid, method, flags, msg=b""):
            payload = msg if isinstance(msg, bytes) else msg.SerializeToString()
            with lock:
                s.sendall(fr.encode_frame(sid, method, flags, payload))

        def error(sid, method, code, text):
            send(sid, method, fr.ERROR | fr.END_STREAM, errors_pb2.Error(code=code, message=text))

        dec = fr.FrameDecoder()
        subs = {}
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                for f in dec.feed(data):
                    self._frame(f, send, error, subs, s)
        except OSError:
            return

    def _frame(self, f, send, error, subs, sock):
        m = f.method
        if m == C.METHOD_HANDSHAKE:
            send(f.stream_id, m, fr.END_STREAM, C.HandshakeResponse(
                protocol_version=1, node_id=1, cluster_id="fake", max_frame_bytes=8 << 20,
                max_batch_bytes=4 << 20, max_in_flight_bytes=64 << 20))
        elif m == C.METHOD_DESCRIBE_TOPIC:
            req = topics_pb2.DescribeTopicRequest.FromString(f.payload)
            if req.name == "slow":  # answered after later requests: responses out of order
                threading.Timer(0.3, send, (f.stream_id, m, fr.END_STREAM, topics_pb2.DescribeTopicResponse(
                    topic=topics_pb2.TopicInfo(name="slow")))).start()
            elif req.name == "kill":
                send(0, 0, fr.ERROR | fr.END_STREAM, errors_pb2.Error(code=8, message="bye"))
                sock.shutdown(socket.SHUT_RDWR)
            elif req.name == "t":
                info = topics_pb2.TopicInfo(name="t")
                for p in range(3):
                    info.partitions.add(partition=p, leader_id=1)
                send(f.stream_id, m, fr.END_STREAM, topics_pb2.DescribeTopicResponse(topic=info))
            else:
                error(f.stream_id, m, 20, "unknown topic %s" % req.name)
        elif m == C.METHOD_GET_METADATA:
            req = topics_pb2.GetMetadataRequest.FromString(f.payload)
            resp = topics_pb2.GetMetadataResponse(cluster_id="fake")
            for name in req.topics:
                tm = resp.topics.add()
                tm.topic.name = name
                for p in range(3):
                    tm.topic.partitions.add(partition=p)
            send(f.stream_id, m, fr.END_STREAM, resp)
        elif m == C.METHOD_LIST_TOPICS:
            pass  # never answered: the client times out and cancels
        elif m == C.METHOD_INIT_PRODUCER_ID:  # a new id each time (the fake does not check sequences)
            send(f.stream_id, m, fr.END_STREAM, log_pb2.InitProducerIdResponse(
                producer_id=len(self.log) + 1, producer_epoch=0))
        elif m == C.METHOD_PRODUCE:
            if f.payload:
                req = log_pb2.ProduceRequest.FromString(f.payload)
                if req.partition == 7:
                    pass  # never answered (a broker that hangs while keeping the connection)
                elif req.partition == 2:
                    send(f.stream_id, m, 0, log_pb2.ProduceResponse(
                        request_id=req.request_id, error=errors_pb2.Error(code=41, message="too big")))
                else:
                    b = decode_batch(req.batch)
                    base = sum(decode_batch(x).record_count for p, x in self.log if p == req.partition)
                    stamped = bytearray(req.batch)
                    stamped[1:9] = base.to_bytes(8, "little")
                    self.log.append((req.partition, bytes(stamped)))
                    if req.acks != log_pb2.ACKS_NONE:
                        send(f.stream_id, m, 0, log_pb2.ProduceResponse(
                            request_id=req.request_id, base_offset=base, last_offset=base + b.record_count - 1))
            if f.flags & fr.END_STREAM:
                send(f.stream_id, m, fr.END_STREAM)
        elif m == C.METHOD_SUBSCRIBE:
            st = subs.get(f.stream_id)
            if f.flags & fr.CANCEL:
                subs.pop(f.stream_id, None)
                return
            if st is None:
                req = log_pb2.SubscribeRequest.FromString(f.payload)
                st = subs[f.stream_id] = {"credit": req.credit_bytes, "next": 0}
                # The first message starts at the batch holding the requested offset (protocol.md).
                for x in (x for p, x in self.log if p == 0):
                    b = decode_batch(x)
                    if b.base_offset + b.record_count > req.offset:
                        break
                    st["next"] += 1
            else:
                c = log_pb2.SubscribeCredit.FromString(f.payload).bytes
                self.credit_log.append(c)
                st["credit"] += c
            batches = [x for p, x in self.log if p == 0]
            while st["credit"] > 0 and st["next"] < len(batches):
                blob = frame_batch(batches[st["next"]])  # one batch per message
                st["next"] += 1
                st["credit"] -= len(blob)
                self.subscribe_messages += 1
                # Raw bytes, so the padded 5-byte length prefix survives (the credit counts it).
                raw = bytes([0x0A]) + _varint(len(blob)) + blob + \
                    log_pb2.SubscribeResponse(high_watermark=len(batches)).SerializeToString()
                send(f.stream_id, m, 0, raw)


class ConnectionTest(unittest.TestCase):
    def setUp(self):
        self.broker = FakeBroker()
        self.client = Client("127.0.0.1:%d" % self.broker.port, plaintext=True, timeout=5)

    def tearDown(self):
        self.client.close()
        self.broker.close()

    def test_handshake(self):
        self.assertEqual(self.client.cluster_id, "fake")
        self.assertEqual(self.client.handshake.max_batch_bytes, 4 << 20)

    def test_out_of_order_answers_and_typed_errors(self):
        results = {}

        def slow():
            results["slow"] = self.client.describe_topic("slow").name

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.05)
        started = time.monotonic()
        self.assertEqual(len(self.client.describe_topic("t").partitions), 3)  # answered before "slow"
        self.assertLess(time.monotonic() - started, 0.25)
        with self.assertRaises(errors.UnknownTopicOrPartitionError) as cm:
            self.client.describe_topic("nope")
        self.assertTrue(cm.exception.retriable)
        self.assertEqual(cm.exception.scope, "stream")
        t.join(5)
        self.assertEqual(results["slow"], "slow")
        self.assertEqual(self.client.describe_topic("t").name, "t")  # the connection stays

    def test_many_threads_many_calls(self):
        # Regression: a lost wake-up of the I/O thread stalled calls for its 5 s select timeout.
        errors_seen = []

        def worker():
            try:
                for _ in range(150):
                    self.assertEqual(self.client.describe_topic("t").name, "t")
            except Exception as exc:  # noqa: BLE001
                errors_seen.append(exc)

        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors_seen, [])
        self.assertLess(time.monotonic() - started, 4.5)

    def test_timeout_cancels_and_connection_stays(self):
        with self.assertRaises(errors.FjordTimeoutError):
            self.client.conn.call(C.METHOD_LIST_TOPICS, topics_pb2.ListTopicsRequest(),
                                  topics_pb2.ListTopicsResponse, timeout=0.2)
        self.assertEqual(self.client.describe_topic("t").name, "t")

    def test_connection_error_fails_everything(self):
        with self.assertRaises(errors.InvalidStreamError) as cm:
            self.client.describe_topic("kill")
        self.assertEqual(cm.exception.scope, "connection")
        old = self.client.conn
        self.assertTrue(old.closed)
        with self.assertRaises(errors.FjordError):
            old.call(C.METHOD_DESCRIBE_TOPIC, topics_pb2.DescribeTopicRequest(name="t"),
                     topics_pb2.DescribeTopicResponse, timeout=1)
        # The client connects again for the next call.
        self.assertEqual(self.client.describe_topic("t").name, "t")
        self.assertEqual(self.client.reconnects, 1)
        self.assertIsNot(self.client.conn, old)

    def test_produce_matches_answers_and_errors(self):
        # Not idempotent (the fake broker has no InitProducerId); no linger: f0 and f3 share a batch.
        with self.client.producer(acks="leader", idempotent=False, linger=None) as p:
            f0 = p.send("t", Record(b"a"), partition=0)
            f1 = p.send("t", Record(b"b"), partition=1)
            f2 = p.send("t", Record(b"c"), partition=2)
            f3 = p.send("t", Record(b"d"), partition=0)
            p.flush(5)
            self.assertEqual(f0.result().offset, 0)
            self.assertEqual(f3.result().offset, 1)  # same batch as f0
            self.assertEqual(f1.result().offset, 0)
            with self.assertRaises(errors.BatchTooLargeError):
                f2.result()
            p.send_batch("t", 0, [Record(b"e"), Record(b"f")]).result(5)
        self.assertEqual([decode_batch(b).base_offset for _, b in self.broker.log], [0, 0, 2])

    def test_acks_none_completes_at_end_of_stream(self):
        p = self.client.producer(acks="none", linger=None)
        futs = [p.send("t", Record(b"x%d" % i, key=b"k%d" % i)) for i in range(20)]
        p.close(5)
        # The fake answers partition 2 with an error even under acks none; the rest succeed silently.
        ok = 0
        for f in futs:
            if f.partition == 2:
                with self.assertRaises(errors.BatchTooLargeError):
                    f.result(0)
            else:
                self.assertEqual(f.result(0).offset, -1)
                ok += 1
        self.assertGreater(ok, 0)
        self.assertLess(ok, 20)
        self.assertEqual(sum(decode_batch(b).record_count for _, b in self.broker.log), ok)

    def test_delivery_timeout_when_the_broker_never_answers(self):
        for idempotent in (False, True):
            with self.subTest(idempotent=idempotent):
                p = self.client.producer(idempotent=idempotent, delivery_timeout=0.5, linger=None)
                started = time.monotonic()
                with self.assertRaises(errors.FjordTimeoutError):
                    p.send("t", Record(b"x"), partition=7).result(10)
                self.assertLess(time.monotonic() - started, 5)
                self.assertEqual(p.send("t", Record(b"y"), partition=0).result(5).partition, 0)  # still usable
                p.abort()

    def test_subscribe_credit(self):
        for i in range(10):
            self.client.produce("t", [Record(b"r%d" % i)], partition=0)
        one = len(frame_batch(self.broker.log[0][1]))
        sub = self.client.subscribe("t", 0, 3, credit_bytes=1)  # one batch per grant
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 7 and time.monotonic() < deadline:
            got += sub.poll(1)
        sub.close()
        self.assertEqual([r.offset for r in got], [3, 4, 5, 6, 7, 8, 9])  # offsets below 3 skipped
        self.assertEqual([r.value for r in got], [b"r%d" % i for i in range(3, 10)])
        self.assertTrue(self.broker.credit_log)
        self.assertTrue(all(c == one for c in self.broker.credit_log), self.broker.credit_log)


if __name__ == "__main__":
    unittest.main()
