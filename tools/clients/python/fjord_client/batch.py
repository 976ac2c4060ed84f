"""Record batches (docs/storage-format.md): building with CRC32C, parsing and checking fetched ones."""
import struct
import time
from collections import namedtuple

from .crc32c import crc32c
from .fjord.v1 import records_pb2
from .wire import WireError, iter_fields, read_varint

HEADER_BYTES = 80
CRC_START = 28
MAGIC = 1
# (byte position, tag) of header fields 1..12 and of the first record.
HEADER_TAGS = ((0, 0x09), (9, 0x15), (14, 0x19), (23, 0x25), (28, 0x2D), (33, 0x35), (38, 0x3D),
               (43, 0x41), (52, 0x49), (61, 0x51), (70, 0x5D), (75, 0x65))
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")


class Header(namedtuple("Header", "key value")):
    """An application header: `key` is a str, `value` bytes or None (null)."""


class Record:
    """A record to produce. key/value: bytes or None; headers: [(str, bytes|None)]; timestamp: ms."""

    __slots__ = ("key", "value", "headers", "timestamp")

    def __init__(self, value, key=None, headers=(), timestamp=None):
        self.value = None if value is None else bytes(value)
        self.key = None if key is None else bytes(key)
        self.headers = [Header(k, None if v is None else bytes(v)) for k, v in headers]
        self.timestamp = int(time.time() * 1000) if timestamp is None else int(timestamp)

    def __repr__(self):
        return "Record(key=%r, value=%r, headers=%r, timestamp=%r)" % (
            self.key, self.value, self.headers, self.timestamp)


class ConsumedRecord(namedtuple("ConsumedRecord", "topic partition offset timestamp key value headers")):
    """A record read back from the broker. headers is a list of Header."""


class CorruptBatchError(ValueError):
    """A batch received from the broker fails the checks of storage-format.md (tags, CRC, records)."""


DecodedBatch = namedtuple("DecodedBatch", "base_offset partition_leader_epoch log_append_time crc "
                                          "record_count first_timestamp max_timestamp records size")


def build_batch(records):
    """Serialize `records` (a non-empty sequence of Record) into one RecordBatch with its CRC32C set.

    Built with the generated `RecordBatch` (every header field set, so all 12 are written in field
    order), then the CRC32C of bytes [28, end) is written little-endian at bytes [24, 28).
    """
    records = list(records)
    if not records:
        raise ValueError("a batch needs at least one record")
    first = records[0].timestamp
    pb = records_pb2.RecordBatch(
        base_offset=0, partition_leader_epoch=0, log_append_time=-1, crc32c=0, magic=MAGIC,
        compression=records_pb2.COMPRESSION_CODEC_NONE, record_count=len(records),
        first_timestamp=first, max_timestamp=max(r.timestamp for r in records),
        producer_id=-1, producer_epoch=-1, base_sequence=-1)
    for r in records:
        rec = pb.records.add()
        rec.timestamp_delta = r.timestamp - first
        if r.key is not None:
            rec.key = r.key
        if r.value is not None:
            rec.value = r.value
        for hk, hv in r.headers:
            h = rec.headers.add()
            h.key = hk
            if hv is not None:
                h.value = hv
    data = bytearray(pb.SerializeToString())
    check_header_layout(data)
    _U32.pack_into(data, 24, crc32c(memoryview(data)[CRC_START:]))
    return bytes(data)


def check_header_layout(data):
    """Raise CorruptBatchError unless the 12 header tags sit at their fixed positions."""
    if len(data) < HEADER_BYTES:
        raise CorruptBatchError("batch of %d bytes is shorter than the %d-byte header" % (len(data), HEADER_BYTES))
    for pos, tag in HEADER_TAGS:
        if data[pos] != tag:
            raise CorruptBatchError("byte %d is 0x%02x, expected tag 0x%02x" % (pos, data[pos], tag))


def batch_crc_ok(data):
    return _U32.unpack_from(data, 24)[0] == crc32c(memoryview(data)[CRC_START:])


def decode_batch(data, verify_crc=True):
    """Parse one stored batch (bytes) into a DecodedBatch whose records are
    (offset, timestamp, key, value, headers) tuples; checks tags, magic, CRC and record count."""
    data = bytes(data)
    check_header_layout(data)
    stored_crc = _U32.unpack_from(data, 24)[0]
    if verify_crc and stored_crc != crc32c(memoryview(data)[CRC_START:]):
        raise CorruptBatchError("CRC32C mismatch (stored 0x%08x)" % stored_crc)
    try:
        pb = records_pb2.RecordBatch.FromString(data)
    except Exception as exc:  # noqa: BLE001
        raise CorruptBatchError("batch does not decode: %s" % exc) from None
    if pb.magic != MAGIC:
        raise CorruptBatchError("magic %d, expected %d" % (pb.magic, MAGIC))
    if pb.compression != records_pb2.COMPRESSION_CODEC_NONE:
        raise CorruptBatchError("compression codec %d is not supported" % pb.compression)
    if len(pb.records) != pb.record_count:
        raise CorruptBatchError("record_count %d but %d records" % (pb.record_count, len(pb.records)))
    out = []
    for i, r in enumerate(pb.records):
        out.append((pb.base_offset + i, pb.first_timestamp + r.timestamp_delta,
                    r.key if r.HasField("key") else None,
                    r.value if r.HasField("value") else None,
                    [Header(h.key, h.value if h.HasField("value") else None) for h in r.headers]))
    return DecodedBatch(pb.base_offset, pb.partition_leader_epoch, pb.log_append_time, stored_crc,
                        pb.record_count, pb.first_timestamp, pb.max_timestamp, out, len(data))


def split_batch_set(buf, start=0, end=None):
    """The raw bytes of every batch in a serialized RecordBatchSet (field 1, repeated)."""
    try:
        return [bytes(buf[s:e]) for f, wt, (s, e) in
                ((f, wt, v) for f, wt, v in iter_fields(buf, start, end) if f == 1 and wt == 2)]
    except WireError as exc:
        raise CorruptBatchError("RecordBatchSet does not decode: %s" % exc) from None


def frame_batch(batch):
    """One batch as a RecordBatchSet entry with the 5-byte padded length varint the broker writes."""
    n = len(batch)
    if n >= 1 << 35:
        raise ValueError("batch too long")
    prefix = bytes([0x0A, (n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80,
                    ((n >> 21) & 0x7F) | 0x80, (n >> 28) & 0x7F])
    return prefix + bytes(batch)


def records_from_batch_set(topic, partition, buf, start=0, end=None, min_offset=0, verify_crc=True):
    """(records >= min_offset, next offset or None) from a RecordBatchSet's bytes.

    The next offset is the last batch's base_offset + record_count (protocol.md, Fetch)."""
    records = []
    next_offset = None
    for raw in split_batch_set(buf, start, end):
        b = decode_batch(raw, verify_crc)
        next_offset = b.base_offset + b.record_count
        for off, ts, key, value, headers in b.records:
            if off >= min_offset:
                records.append(ConsumedRecord(topic, partition, off, ts, key, value, headers))
    return records, next_offset


__all__ = ["Record", "Header", "ConsumedRecord", "CorruptBatchError", "DecodedBatch", "build_batch",
           "decode_batch", "split_batch_set", "frame_batch", "records_from_batch_set",
           "check_header_layout", "batch_crc_ok", "read_varint"]
