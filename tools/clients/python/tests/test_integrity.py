"""Fetched batches are checked before anything of them is returned: CRC32C over bytes [28, end) and
contiguous base offsets (protocol.md, Fetch and Subscribe; storage-format.md, Record batch).

The batches are real ones, built by the client's own `build_batch` and stamped as the broker stamps
them (base offset in bytes 1-8), then damaged one bit at a time.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pkgpath  # noqa: F401,E402 - the source tree or the installed package

from fjord_client import batch, errors  # noqa: E402
from fjord_client.batch import (CRC_START, Record, build_batch, decode_batch, frame_batch,  # noqa: E402
                                records_from_batch_set)
from fjord_client.crc32c import crc32c, crc32c_bytewise, crc32c_python  # noqa: E402


def stamped(records, base_offset):
    """A batch as the broker stores it: built by the client, base offset stamped outside the CRC."""
    data = bytearray(build_batch(records))
    data[1:9] = base_offset.to_bytes(8, "little")
    return data


def sample(n, tag):
    return [Record(b"%s-value-%d" % (tag, i), key=b"k%d" % i, headers=[("h", b"\x00\x01")], timestamp=1000 + i)
            for i in range(n)]


class CrcCheckTest(unittest.TestCase):
    def test_every_bit_of_the_covered_region_is_checked(self):
        good = stamped(sample(2, b"a"), 40)
        stored = int.from_bytes(good[24:28], "little")
        self.assertEqual(stored, crc32c(bytes(good[CRC_START:])))
        for byte in range(CRC_START, len(good)):
            for bit in range(8):
                bad = bytearray(good)
                bad[byte] ^= 1 << bit
                with self.assertRaises(errors.CrcMismatchError) as ctx:
                    records_from_batch_set("events", 3, frame_batch(bad), expected_offset=40, holding=True)
                e = ctx.exception
                self.assertEqual((e.topic, e.partition, e.offset), ("events", 3, 40))
                self.assertEqual(e.expected, stored)
                self.assertEqual(e.actual, crc32c_bytewise(bytes(bad[CRC_START:])))
                self.assertNotEqual(e.actual, e.expected)
                self.assertFalse(e.retriable)
        msg = str(e)
        for part in ("events/3", "offset 40", "0x%08x" % e.expected, "0x%08x" % e.actual):
            self.assertIn(part, msg)

    def test_error_types(self):
        self.assertTrue(issubclass(errors.CrcMismatchError, errors.BatchIntegrityError))
        self.assertTrue(issubclass(errors.OffsetGapError, errors.BatchIntegrityError))
        self.assertTrue(issubclass(errors.BatchIntegrityError, errors.FjordError))
        self.assertTrue(issubclass(errors.BatchIntegrityError, ValueError))  # as before: ValueError
        self.assertIs(batch.CorruptBatchError, errors.BatchIntegrityError)  # the name batch.py always had
        self.assertEqual(errors.CorruptBatchError.code, 40)  # the broker's CORRUPT_BATCH is another class
        self.assertFalse(errors.BatchIntegrityError.retriable)

    def test_a_damaged_batch_yields_nothing_of_its_set(self):
        b1 = stamped(sample(3, b"first"), 0)
        b2 = stamped(sample(3, b"second"), 3)
        b2[-3] ^= 0x10  # inside the last record's value
        with self.assertRaises(errors.CrcMismatchError) as ctx:
            records_from_batch_set("t", 0, frame_batch(b1) + frame_batch(b2), expected_offset=0, holding=True)
        self.assertEqual(ctx.exception.offset, 3)

    def test_stamped_fields_are_outside_the_crc(self):
        good = stamped(sample(2, b"s"), 7)
        good[10:14] = (9).to_bytes(4, "little")  # leader epoch
        good[15:23] = (1764230409999).to_bytes(8, "little")  # log append time
        records, nxt = records_from_batch_set("t", 0, frame_batch(good), expected_offset=7, holding=True)
        self.assertEqual([r.offset for r in records], [7, 8])
        self.assertEqual(nxt, 9)

    def test_check_crcs_false_skips_the_crc_only(self):
        bad = stamped(sample(2, b"x"), 0)
        bad[bad.index(b"x-value-1") + 8] ^= 0x01  # the last byte of the last value
        records, nxt = records_from_batch_set("t", 0, frame_batch(bad), check_crcs=False,
                                              expected_offset=0, holding=True)
        self.assertEqual(nxt, 2)
        self.assertEqual(records[1].value, b"x-value-0")  # the damage comes through, as asked
        with self.assertRaises(errors.OffsetGapError):  # the offset checks stay on
            records_from_batch_set("t", 0, frame_batch(bad), check_crcs=False, expected_offset=5, holding=True)

    def test_decode_batch_reports_crc_before_layout(self):
        good = stamped(sample(1, b"d"), 12)
        bad = bytearray(good)
        bad[28] ^= 0x01  # the tag of `magic`: covered by the CRC
        with self.assertRaises(errors.CrcMismatchError):
            decode_batch(bytes(bad), topic="t", partition=1)
        with self.assertRaises(errors.BatchIntegrityError) as ctx:
            decode_batch(bytes(bad), check_crc=False, topic="t", partition=1)
        self.assertNotIsInstance(ctx.exception, errors.CrcMismatchError)
        self.assertIn("t/1, batch at offset 12", str(ctx.exception))

    def test_pure_python_crc_matches_the_reference(self):
        data = bytes(stamped(sample(20, b"p"), 0))
        for start in range(0, 9):
            self.assertEqual(crc32c_python(data[start:]), crc32c_bytewise(data[start:]))
        self.assertEqual(crc32c_python(data[28:]), int.from_bytes(data[24:28], "little"))
        self.assertEqual(crc32c_python(b"456789", crc32c_python(b"123")), 0xE3069283)


class OffsetContinuityTest(unittest.TestCase):
    def batch_set(self):
        b1 = stamped(sample(4, b"one"), 10)
        b2 = stamped(sample(2, b"two"), 14)
        b3 = stamped(sample(3, b"three"), 16)
        return [b1, b2, b3]

    def test_contiguous_set_passes(self):
        blob = b"".join(frame_batch(b) for b in self.batch_set())
        records, nxt = records_from_batch_set("t", 0, blob, min_offset=12, expected_offset=12, holding=True)
        self.assertEqual([r.offset for r in records], list(range(12, 19)))
        self.assertEqual(nxt, 19)

    def test_every_bit_of_a_later_base_offset_is_checked(self):
        for bit in range(64):
            batches = self.batch_set()
            value = int.from_bytes(batches[1][1:9], "little") ^ (1 << bit)
            batches[1][1:9] = value.to_bytes(8, "little")
            blob = b"".join(frame_batch(b) for b in batches)
            with self.assertRaises(errors.OffsetGapError) as ctx:
                records_from_batch_set("t", 5, blob, min_offset=10, expected_offset=10, holding=True)
            e = ctx.exception
            self.assertEqual((e.topic, e.partition, e.offset, e.expected_offset), ("t", 5, value, 14))
            self.assertFalse(e.retriable)
            self.assertIn("ended at 14", str(e))

    def test_first_batch_must_hold_the_requested_offset(self):
        batches = self.batch_set()
        batches[0][1:9] = (10 ^ (1 << 40)).to_bytes(8, "little")  # first batch's base offset damaged
        blob = frame_batch(batches[0])
        with self.assertRaises(errors.OffsetGapError) as ctx:
            records_from_batch_set("t", 0, blob, min_offset=11, expected_offset=11, holding=True)
        self.assertEqual(ctx.exception.expected_offset, 11)
        # A batch that starts before the requested offset and holds it is fine (protocol.md, Fetch).
        records, _ = records_from_batch_set("t", 0, frame_batch(self.batch_set()[0]), min_offset=11,
                                            expected_offset=11, holding=True)
        self.assertEqual([r.offset for r in records], [11, 12, 13])

    def test_a_continuing_message_must_start_exactly_at_the_next_offset(self):
        b2 = self.batch_set()[1]  # base 14
        records, nxt = records_from_batch_set("t", 0, frame_batch(b2), expected_offset=14)
        self.assertEqual((len(records), nxt), (2, 16))
        for expected in (13, 15):  # 13..15 would hold 14 but must start exactly there
            with self.assertRaises(errors.OffsetGapError):
                records_from_batch_set("t", 0, frame_batch(b2), expected_offset=expected)


if __name__ == "__main__":
    unittest.main()
