"""Offline tests: CRC32C, murmur2, frames, record batches, errors, and the worked example of
docs/protocol.md §9 byte for byte."""
import os
import sys
import unittest

import pkgpath  # noqa: F401,E402 - the source tree or the installed package

from fjord_client import errors  # noqa: E402
from fjord_client import frames as fr  # noqa: E402
from fjord_client.batch import (ConsumedRecord, CorruptBatchError, Header, Record, build_batch,  # noqa: E402
                                decode_batch, frame_batch, records_from_batch_set, split_batch_set)
from fjord_client.crc32c import crc32c, crc32c_bytewise, crc32c_python  # noqa: E402
from fjord_client.fjord.v1 import (connection_pb2, errors_pb2, log_pb2, records_pb2,  # noqa: E402
                                   topics_pb2)
from fjord_client.murmur2 import murmur2, partition_for_key  # noqa: E402
from fjord_client.wire import WireError, iter_fields, submessages  # noqa: E402


def h(text):
    """Hex with spaces/newlines -> bytes."""
    return bytes.fromhex("".join(text.split()))


# docs/protocol.md §9: one record, no key, value "hello", timestamp 1700000000000.
EXAMPLE_BATCH = h("""
09 00 00 00 00 00 00 00 00 15 00 00 00 00 19 ff
ff ff ff ff ff ff ff 25 53 71 39 18 2d 01 00 00
00 35 00 00 00 00 3d 01 00 00 00 41 00 68 e5 cf
8b 01 00 00 49 00 68 e5 cf 8b 01 00 00 51 ff ff
ff ff ff ff ff ff 5d ff ff ff ff 65 ff ff ff ff
7a 07 1a 05 68 65 6c 6c 6f""")


class CRC32CTest(unittest.TestCase):
    def test_standard_vector(self):
        self.assertEqual(crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(crc32c_python(b"123456789"), 0xE3069283)
        self.assertEqual(crc32c_bytewise(b"123456789"), 0xE3069283)

    def test_known_vectors(self):
        # RFC 3720 (iSCSI) B.4 test patterns.
        self.assertEqual(crc32c_python(bytes(32)), 0x8A9136AA)
        self.assertEqual(crc32c_python(b"\xff" * 32), 0x62A8AB43)
        self.assertEqual(crc32c_python(bytes(range(32))), 0x46DD794E)
        self.assertEqual(crc32c_python(bytes(range(31, -1, -1))), 0x113FDB5C)
        self.assertEqual(crc32c_python(b""), 0)

    def test_slicing_matches_bytewise_at_every_length_and_alignment(self):
        data = os.urandom(300)
        for start in range(9):
            for n in list(range(0, 40)) + [255, 291 - start]:
                chunk = data[start:start + n]
                self.assertEqual(crc32c_python(chunk), crc32c_bytewise(chunk), (start, n))

    def test_incremental(self):
        data = os.urandom(1001)
        self.assertEqual(crc32c_python(data[333:], crc32c_python(data[:333])), crc32c_python(data))

    def test_example_batch_crc(self):
        self.assertEqual(crc32c(EXAMPLE_BATCH[28:]), 0x18397153)


class Murmur2Test(unittest.TestCase):
    # Kafka's UtilsTest.testMurmur2 and other published vectors of Utils.murmur2.
    VECTORS = [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
        (b"", 275646681),
        (b"1", -1993445489),
        (b"12", 126087238),
        (b"123", -267702483),
        (b"1234", -1614185708),
        (b"12345", -1188365604),
    ]

    def test_kafka_vectors(self):
        for data, want in self.VECTORS:
            self.assertEqual(murmur2(data), want, data)

    def test_partitioner(self):
        # toPositive(-790332482) = 1357151166; % 50 = 16
        self.assertEqual(partition_for_key(b"foobar", 50), 16)
        for data, want in self.VECTORS:
            self.assertEqual(partition_for_key(data, 3), (want & 0x7FFFFFFF) % 3)
        with self.assertRaises(ValueError):
            partition_for_key(b"x", 0)


class FrameTest(unittest.TestCase):
    EXAMPLE = h("00 00 00 05  00 00 00 01  00 07  01  00  68 65 6c 6c 6f")  # protocol.md §2

    def test_encode_example(self):
        self.assertEqual(fr.encode_frame(1, 7, fr.END_STREAM, b"hello"), self.EXAMPLE)

    def test_decode_byte_by_byte(self):
        dec = fr.FrameDecoder()
        out = []
        data = self.EXAMPLE + fr.encode_frame(2, 1, 0, b"") + fr.encode_frame(0xFFFFFFFF, 65535, 7, b"xy")
        for i in range(len(data)):
            out += dec.feed(data[i:i + 1])
        self.assertEqual(out, [fr.Frame(1, 7, 1, b"hello"), fr.Frame(2, 1, 0, b""),
                               fr.Frame(0xFFFFFFFF, 65535, 7, b"xy")])
        self.assertFalse(dec.mid_frame)
        dec.feed(self.EXAMPLE[:13])
        self.assertTrue(dec.mid_frame)

    def test_malformed_headers(self):
        with self.assertRaises(fr.FrameError):
            fr.decode_header(h("00000000 00000001 0001 08 00"))  # unknown flag bit
        with self.assertRaises(fr.FrameError):
            fr.decode_header(h("00000000 00000001 0001 00 01"))  # reserved byte
        dec = fr.FrameDecoder(max_payload=100)
        with self.assertRaises(fr.FrameError):  # rejected on the 12 header bytes alone
            dec.feed(h("00000065 00000001 0014 00 00"))
        with self.assertRaises(ValueError):
            fr.encode_frame(1, 1, 0x08)


class WorkedExampleTest(unittest.TestCase):
    """protocol.md §9, encoded with the generated code and this client's framing."""

    def test_handshake_request(self):
        req = connection_pb2.HandshakeRequest(protocol_version=1, client_id="demo")
        self.assertEqual(fr.encode_frame(1, connection_pb2.METHOD_HANDSHAKE, fr.END_STREAM, req.SerializeToString()),
                         h("00 00 00 08  00 00 00 01  00 01  01  00  08 01  12 04 64 65 6d 6f"))

    def test_handshake_response(self):
        frame = h("""00 00 00 39  00 00 00 01  00 01  01  00  08 01  10 01
            1a 24 35 66 30 63 36 61 31 65 2d 32 62 37 64 2d 34 63 33 39 2d 39 61 38 65 2d
            30 64 34 66 37 62 32 63 31 65 39 33  20 80 80 80 04  28 80 80 80 02  30 80 80 80 20""")
        (f,) = fr.FrameDecoder().feed(frame)
        resp = connection_pb2.HandshakeResponse.FromString(f.payload)
        self.assertEqual((resp.protocol_version, resp.node_id, resp.cluster_id, resp.max_frame_bytes,
                          resp.max_batch_bytes, resp.max_in_flight_bytes),
                         (1, 1, "5f0c6a1e-2b7d-4c39-9a8e-0d4f7b2c1e93", 8388608, 4194304, 67108864))

    def test_create_topic(self):
        req = topics_pb2.CreateTopicRequest(name="events", partitions=1, configs={"retention.ms": "86400000"})
        self.assertEqual(fr.encode_frame(3, connection_pb2.METHOD_CREATE_TOPIC, fr.END_STREAM, req.SerializeToString()),
                         h("""00 00 00 24  00 00 00 03  00 0a  01  00  0a 06 65 76 65 6e 74 73  10 01  1a 18
                              0a 0c 72 65 74 65 6e 74 69 6f 6e 2e 6d 73  12 08 38 36 34 30 30 30 30 30"""))

    def test_batch(self):
        self.assertEqual(build_batch([Record(b"hello", timestamp=1700000000000)]), EXAMPLE_BATCH)

    def test_produce_request(self):
        req = log_pb2.ProduceRequest(topic="events", partition=0, leader_epoch=-1, acks=log_pb2.ACKS_LEADER,
                                     request_id=1, batch=EXAMPLE_BATCH)
        frame = fr.encode_frame(5, connection_pb2.METHOD_PRODUCE, fr.END_STREAM, req.SerializeToString())
        self.assertEqual(frame[:12], h("00 00 00 72  00 00 00 05  00 14  01  00"))
        self.assertEqual(frame[12:12 + 25], h("0a 06 65 76 65 6e 74 73  18 ff ff ff ff ff ff ff ff ff 01"
                                              "  20 02  28 01  32 59"))
        self.assertEqual(frame[12 + 25:], EXAMPLE_BATCH)

    def test_produce_response(self):
        data = h("00 00 00 09  00 00 00 05  00 14  00  00  08 01  28 fb d0 95 ff bc 31"
                 "00 00 00 00  00 00 00 05  00 14  01  00")
        f1, f2 = fr.FrameDecoder().feed(data)
        resp = log_pb2.ProduceResponse.FromString(f1.payload)
        self.assertEqual((resp.request_id, resp.base_offset, resp.log_append_time), (1, 0, 1700000000123))
        self.assertEqual((f2.flags, f2.payload), (fr.END_STREAM, b""))

    def test_fetch_request(self):
        req = log_pb2.FetchRequest(max_wait_ms=500, min_bytes=1)
        req.partitions.add(topic="events", partition=0, offset=0, leader_epoch=-1)
        self.assertEqual(fr.encode_frame(7, connection_pb2.METHOD_FETCH, fr.END_STREAM, req.SerializeToString()),
                         h("""00 00 00 1a  00 00 00 07  00 15  01  00  0a 13  0a 06 65 76 65 6e 74 73
                              20 ff ff ff ff ff ff ff ff ff 01  10 f4 03  18 01"""))

    def test_fetch_response(self):
        stamped = bytearray(EXAMPLE_BATCH)
        stamped[15:23] = (1700000000123).to_bytes(8, "little")
        payload = h("0a 6b  0a 06 65 76 65 6e 74 73  20 01  32 5f  0a d9 80 80 80 00") + bytes(stamped)
        self.assertEqual(len(payload), 0x6d)
        resp = log_pb2.FetchResponse.FromString(payload)  # generated code accepts the padded varint
        self.assertEqual(resp.partitions[0].records.batches[0].log_append_time, 1700000000123)
        (part,) = submessages(payload, 1)
        (recs,) = submessages(payload, 6, *part)
        records, nxt = records_from_batch_set("events", 0, payload, *recs)
        self.assertEqual(nxt, 1)
        self.assertEqual(records, [ConsumedRecord("events", 0, 0, 1700000000000, None, b"hello", [])])


class BatchTest(unittest.TestCase):
    def sample(self):
        return [
            Record(b"v0", key=b"k0", timestamp=1764230400000),
            Record(b"", key=None, timestamp=1764230399000),  # empty value, null key, earlier time
            Record(b"\x00\xff" * 100, key=b"", headers=[("trace-id", b"\x01\x02\x03"), ("empty", b""),
                                                       ("null", None), ("trace-id", b"again")],
                   timestamp=1764230405000),
            Record(None, key=b"tomb", timestamp=1764230400001),  # tombstone
        ]

    def test_round_trip(self):
        recs = self.sample()
        data = build_batch(recs)
        b = decode_batch(data)
        self.assertEqual(b.record_count, 4)
        self.assertEqual(b.first_timestamp, 1764230400000)
        self.assertEqual(b.max_timestamp, 1764230405000)
        self.assertEqual(b.log_append_time, -1)
        for (off, ts, key, value, headers), r in zip(b.records, recs):
            self.assertEqual((ts, key, value, headers), (r.timestamp, r.key, r.value, r.headers))
        self.assertEqual([r[0] for r in b.records], [0, 1, 2, 3])
        self.assertEqual(b.records[2][4][2], Header("null", None))

    def test_generated_decoder_agrees(self):
        data = build_batch(self.sample())
        pb = records_pb2.RecordBatch.FromString(data)
        self.assertEqual((pb.magic, pb.compression, pb.producer_id, pb.producer_epoch, pb.base_sequence),
                         (1, 0, -1, -1, -1))
        self.assertFalse(pb.records[1].HasField("key"))
        self.assertTrue(pb.records[2].HasField("key"))
        self.assertFalse(pb.records[3].HasField("value"))
        self.assertEqual(pb.records[1].timestamp_delta, -1000)

    def test_broker_stamping_keeps_crc(self):
        data = bytearray(build_batch(self.sample()))
        data[1:9] = (1234).to_bytes(8, "little")
        data[10:14] = (7).to_bytes(4, "little")
        data[15:23] = (1764230409999).to_bytes(8, "little", signed=True)
        b = decode_batch(bytes(data))
        self.assertEqual((b.base_offset, b.partition_leader_epoch, b.log_append_time), (1234, 7, 1764230409999))
        self.assertEqual([r[0] for r in b.records], [1234, 1235, 1236, 1237])

    def test_crc_mismatch_detected(self):
        data = bytearray(build_batch(self.sample()))
        data[-1] ^= 1
        with self.assertRaises(CorruptBatchError):
            decode_batch(bytes(data))
        decode_batch(bytes(data), check_crc=False)  # still parses
        data = bytearray(build_batch(self.sample()))
        data[33] = 0x34  # a header tag
        with self.assertRaises(CorruptBatchError):
            decode_batch(bytes(data))

    def test_batch_set(self):
        b1 = bytearray(build_batch(self.sample()))
        b1[1:9] = (10).to_bytes(8, "little")
        b2 = bytearray(build_batch([Record(b"x", timestamp=1)]))
        b2[1:9] = (14).to_bytes(8, "little")
        blob = frame_batch(b1) + frame_batch(b2)
        self.assertEqual(blob[:6], bytes([0x0A, (len(b1) & 0x7F) | 0x80, (len(b1) >> 7) | 0x80, 0x80, 0x80, 0]))
        self.assertEqual(split_batch_set(blob), [bytes(b1), bytes(b2)])
        self.assertEqual(len(records_pb2.RecordBatchSet.FromString(blob).batches), 2)
        records, nxt = records_from_batch_set("t", 2, blob, min_offset=12)
        self.assertEqual([r.offset for r in records], [12, 13, 14])
        self.assertEqual(nxt, 15)
        self.assertEqual(records[0].partition, 2)

    def test_empty_batch_rejected(self):
        with self.assertRaises(ValueError):
            build_batch([])

    def test_wire_scanner(self):
        msg = log_pb2.ListOffsetsResult(topic="t", partition=3, offset=-1, leader_epoch=5)
        fields = list(iter_fields(msg.SerializeToString()))
        self.assertEqual([(f, wt) for f, wt, _ in fields], [(1, 2), (2, 0), (4, 0), (5, 0)])
        with self.assertRaises(WireError):
            list(iter_fields(b"\x0a\x05ab"))


class ErrorsTest(unittest.TestCase):
    def test_table_matches_generated_enum(self):
        enum = errors_pb2.ErrorCode
        names = {v.number: v.name for v in enum.DESCRIPTOR.values}
        from fjord_client.fjord.v1.error_codes import ERROR_CODES
        self.assertEqual({c: "ERROR_CODE_" + n for c, n, _, _ in ERROR_CODES}, names)
        self.assertEqual(set(errors.ERROR_CLASSES), set(names) - {0})

    def test_classes(self):
        self.assertIs(errors.UnknownTopicError, errors.UnknownTopicOrPartitionError)
        self.assertEqual(errors.UnknownTopicOrPartitionError.code, 20)
        # protocol.md §8 retriable column
        retriable = {10, 11, 12, 20, 30, 31, 32, 60, 61}
        for code, cls in errors.ERROR_CLASSES.items():
            self.assertEqual(cls.retriable, code in retriable, cls.__name__)
            self.assertTrue(issubclass(cls, errors.BrokerError))
        self.assertEqual(errors.OffsetOutOfRangeError.__name__, "OffsetOutOfRangeError")
        self.assertEqual(errors.TopicAlreadyExistsError.code_name, "TOPIC_ALREADY_EXISTS")

    def test_from_payload(self):
        payload = errors_pb2.Error(code=errors_pb2.ERROR_CODE_NOT_LEADER, message="closed", retriable=True)
        e = errors.error_from_payload(payload.SerializeToString(), scope="stream")
        self.assertIsInstance(e, errors.NotLeaderError)
        self.assertEqual((e.message, e.retriable, e.broker_retriable, e.scope), ("closed", True, True, "stream"))
        unknown = errors.error_from_proto(errors_pb2.Error(code=999, message="new", retriable=True))
        self.assertIs(type(unknown), errors.BrokerError)
        self.assertEqual((unknown.code, unknown.retriable), (999, False))
        self.assertIsInstance(errors.error_from_payload(b"\xff"), errors.ProtocolError)

    def test_authorization_errors(self):
        for code, name in [(70, "TopicAuthorizationFailedError"), (71, "GroupAuthorizationFailedError"),
                           (72, "ClusterAuthorizationFailedError")]:
            e = errors.error_from_proto(errors_pb2.Error(code=code, message="User:billing is not allowed to read topic \"orders\""))
            self.assertIsInstance(e, errors.AuthorizationError)
            self.assertEqual(type(e).__name__, name)
            self.assertFalse(e.retriable)
        failed = errors.error_from_proto(errors_pb2.Error(code=73, message="no principal"))
        self.assertEqual(type(failed).__name__, "AuthenticationFailedError")
        self.assertNotIsInstance(failed, errors.AuthorizationError)


if __name__ == "__main__":
    unittest.main()
