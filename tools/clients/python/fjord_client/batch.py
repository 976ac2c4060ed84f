"""Record batches (docs/storage-format.md): building with CRC32C, parsing and checking fetched ones."""
import struct
import time
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from .crc32c import crc32c
from .errors import BatchIntegrityError, CrcMismatchError, OffsetGapError

# The name this module has always used; not the broker's code-40 class of the same name in errors.
CorruptBatchError = BatchIntegrityError
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
_U64 = struct.Struct("<Q")


BytesLike = Union[bytes, bytearray, memoryview]


class Header(NamedTuple):
    """An application header: `key` is a str, `value` bytes or None (null)."""

    key: str
    value: Optional[bytes]


class Record:
    """A record to produce. key/value: bytes or None; headers: [(str, bytes|None)]; timestamp: ms."""

    __slots__ = ("key", "value", "headers", "timestamp")

    def __init__(self, value: Optional[BytesLike], key: Optional[BytesLike] = None,
                 headers: Iterable[Tuple[str, Optional[BytesLike]]] = (), timestamp: Optional[int] = None) -> None:
        self.value = value if value is None or type(value) is bytes else bytes(value)
        self.key = key if key is None or type(key) is bytes else bytes(key)
        self.headers = [Header(k, None if v is None else bytes(v)) for k, v in headers] if headers else []
        self.timestamp = int(time.time() * 1000) if timestamp is None else int(timestamp)

    def __repr__(self) -> str:
        return "Record(key=%r, value=%r, headers=%r, timestamp=%r)" % (
            self.key, self.value, self.headers, self.timestamp)


class ConsumedRecord(NamedTuple):
    """A record read back from the broker. headers is a list of Header."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Header]


DecodedRecord = Tuple[int, int, Optional[bytes], Optional[bytes], List[Header]]


class DecodedBatch(NamedTuple):
    """A checked, decoded batch; `records` are (offset, timestamp, key, value, headers)."""

    base_offset: int
    partition_leader_epoch: int
    log_append_time: int
    crc: int
    record_count: int
    first_timestamp: int
    max_timestamp: int
    records: List[DecodedRecord]
    size: int


def build_batch(records: Iterable[Record], producer_id: int = -1, producer_epoch: int = -1,
                base_sequence: int = -1) -> bytes:
    """Serialize `records` (a non-empty sequence of Record) into one RecordBatch with its CRC32C set.

    Built with the generated `RecordBatch` (every header field set, so all 12 are written in field
    order), then the CRC32C of bytes [28, end) is written little-endian at bytes [24, 28).
    An idempotent producer passes its `producer_id`, `producer_epoch` and the batch's
    `base_sequence` (protocol.md §6); the defaults (-1) make a batch that is not idempotent.
    """
    records = list(records)
    if not records:
        raise ValueError("a batch needs at least one record")
    first = records[0].timestamp
    pb = records_pb2.RecordBatch(
        base_offset=0, partition_leader_epoch=0, log_append_time=-1, crc32c=0, magic=MAGIC,
        compression=records_pb2.COMPRESSION_CODEC_NONE, record_count=len(records),
        first_timestamp=first, max_timestamp=max(r.timestamp for r in records),
        producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence)
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


def check_header_layout(data: BytesLike) -> None:
    """Raise CorruptBatchError unless the 12 header tags sit at their fixed positions."""
    if len(data) < HEADER_BYTES:
        raise CorruptBatchError("batch of %d bytes is shorter than the %d-byte header" % (len(data), HEADER_BYTES))
    for pos, tag in HEADER_TAGS:
        if data[pos] != tag:
            raise CorruptBatchError("byte %d is 0x%02x, expected tag 0x%02x" % (pos, data[pos], tag))


def batch_crc_ok(data: BytesLike) -> bool:
    return bool(_U32.unpack_from(data, 24)[0] == crc32c(memoryview(data)[CRC_START:]))


def check_batch_crc(data: BytesLike, topic: Optional[str] = None, partition: Optional[int] = None) -> None:
    """Raise CrcMismatchError unless the CRC32C of bytes [28, end) equals the one at [24, 28).

    `data` must hold at least the 80-byte header."""
    expected = _U32.unpack_from(data, 24)[0]
    actual = crc32c(memoryview(data)[CRC_START:])
    if actual != expected:
        raise CrcMismatchError(topic, partition, _U64.unpack_from(data, 1)[0], expected, actual)


def decode_batch(data: BytesLike, check_crc: bool = True, topic: Optional[str] = None,
                 partition: Optional[int] = None) -> DecodedBatch:
    """Parse one stored batch (bytes) into a DecodedBatch whose records are
    (offset, timestamp, key, value, headers) tuples.

    Checks, in order: length, CRC32C (unless `check_crc` is false; first, so that any damaged bit
    of bytes [28, end) is reported as a CrcMismatchError), the 12 header tags, magic, compression
    and record count. `topic` and `partition` only name the batch in errors."""
    data = bytes(data)
    pb, stored_crc = _checked_batch(data, check_crc, topic, partition)
    out: List[DecodedRecord] = [(c.offset, c.timestamp, c.key, c.value, c.headers)
                                for c in _consumed(pb, topic or "", partition or 0, None)]
    return DecodedBatch(pb.base_offset, pb.partition_leader_epoch, pb.log_append_time, stored_crc,
                        pb.record_count, pb.first_timestamp, pb.max_timestamp, out, len(data))


def _checked_batch(data: bytes, check_crc: bool, topic: Optional[str], partition: Optional[int]) -> Tuple[Any, int]:
    """(the parsed RecordBatch, its stored CRC) after every check of decode_batch."""
    if len(data) < HEADER_BYTES:
        raise CorruptBatchError("batch of %d bytes is shorter than the %d-byte header" % (len(data), HEADER_BYTES),
                                topic=topic, partition=partition)
    if check_crc:
        check_batch_crc(data, topic, partition)
    base_offset = _U64.unpack_from(data, 1)[0]
    where = "%s/%s, batch at offset %d: " % (topic, partition, base_offset)

    def corrupt(message: str) -> BatchIntegrityError:
        return CorruptBatchError(where + message, topic=topic, partition=partition, offset=base_offset)

    try:
        check_header_layout(data)
    except CorruptBatchError as exc:
        raise corrupt(exc.message) from None
    stored_crc = _U32.unpack_from(data, 24)[0]
    try:
        pb = records_pb2.RecordBatch.FromString(data)
    except Exception as exc:  # noqa: BLE001
        raise corrupt("batch does not decode: %s" % exc) from None
    if pb.magic != MAGIC:
        raise corrupt("magic %d, expected %d" % (pb.magic, MAGIC))
    if pb.compression != records_pb2.COMPRESSION_CODEC_NONE:
        raise corrupt("compression codec %d is not supported" % pb.compression)
    if pb.record_count < 1 or len(pb.records) != pb.record_count:
        raise corrupt("record_count %d but %d records" % (pb.record_count, len(pb.records)))
    return pb, stored_crc


def _consumed(pb: Any, topic: str, partition: int, min_offset: Optional[int]) -> List[ConsumedRecord]:
    """The records of a parsed batch at or after min_offset (None: all). ListFields() gives only
    the fields present, in one call per record: a field absent is a null key or value."""
    out: List[ConsumedRecord] = []
    append = out.append
    new = tuple.__new__  # ConsumedRecord's generated __new__ costs more than the rest of the loop
    offset = pb.base_offset
    first = pb.first_timestamp
    skip = 0 if min_offset is None else max(0, min_offset - offset)
    records = pb.records
    for i in range(skip, len(records)):
        ts, key, value, headers = first, None, None, []
        for fd, v in records[i].ListFields():
            n = fd.number
            if n == 3:
                value = v
            elif n == 1:
                ts += v
            elif n == 2:
                key = v
            elif n == 4:
                headers = [Header(h.key, h.value if h.HasField("value") else None) for h in v]
        append(new(ConsumedRecord, (topic, partition, offset + i, ts, key, value, headers)))
    return out


def split_batch_set(buf: BytesLike, start: int = 0, end: Optional[int] = None) -> List[bytes]:
    """The raw bytes of every batch in a serialized RecordBatchSet (field 1, repeated)."""
    try:
        return [bytes(buf[v[0]:v[1]]) for f, wt, v in iter_fields(buf, start, end)
                if f == 1 and wt == 2 and isinstance(v, tuple)]
    except WireError as exc:
        raise CorruptBatchError("RecordBatchSet does not decode: %s" % exc) from None


def frame_batch(batch: BytesLike) -> bytes:
    """One batch as a RecordBatchSet entry with the 5-byte padded length varint the broker writes."""
    n = len(batch)
    if n >= 1 << 35:
        raise ValueError("batch too long")
    prefix = bytes([0x0A, (n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80,
                    ((n >> 21) & 0x7F) | 0x80, (n >> 28) & 0x7F])
    return prefix + bytes(batch)


def records_from_batch_set(topic: str, partition: int, buf: BytesLike, start: int = 0, end: Optional[int] = None,
                           min_offset: int = 0, check_crcs: bool = True, expected_offset: Optional[int] = None,
                           holding: bool = False) -> Tuple[List[ConsumedRecord], Optional[int]]:
    """(records >= min_offset, next offset or None) from a RecordBatchSet's bytes.

    Every batch is checked (decode_batch; its CRC32C unless `check_crcs` is false) and must start
    where the previous one ended (base_offset + record_count). The first batch must start at
    `expected_offset` or, with `holding=True`, hold it (protocol.md: a fetch's first batch is the
    one holding the requested offset); None (or a negative offset) leaves the first batch
    unchecked. A batch that fails raises BatchIntegrityError (CrcMismatchError, OffsetGapError)
    and no record of the set is returned. The next offset is the last batch's base_offset + record_count (protocol.md, Fetch)."""
    batches: List[Any] = []
    next_offset: Optional[int] = None
    for raw in split_batch_set(buf, start, end):
        b, _ = _checked_batch(raw, check_crcs, topic, partition)
        if next_offset is not None:
            if b.base_offset != next_offset:
                raise OffsetGapError(
                    "%s/%s: batch at offset %d follows one that ended at %d; offsets must be contiguous"
                    % (topic, partition, b.base_offset, next_offset),
                    topic=topic, partition=partition, offset=b.base_offset, expected_offset=next_offset)
        elif expected_offset is not None and expected_offset >= 0:
            if holding and not b.base_offset <= expected_offset < b.base_offset + b.record_count:
                raise OffsetGapError(
                    "%s/%s: the first batch holds offsets %d..%d, not the requested offset %d"
                    % (topic, partition, b.base_offset, b.base_offset + b.record_count - 1, expected_offset),
                    topic=topic, partition=partition, offset=b.base_offset, expected_offset=expected_offset)
            if not holding and b.base_offset != expected_offset:
                raise OffsetGapError(
                    "%s/%s: batch at offset %d, expected the next batch at %d"
                    % (topic, partition, b.base_offset, expected_offset),
                    topic=topic, partition=partition, offset=b.base_offset, expected_offset=expected_offset)
        next_offset = b.base_offset + b.record_count
        batches.append(b)
    records: List[ConsumedRecord] = []
    for b in batches:
        records += _consumed(b, topic, partition, min_offset)
    return records, next_offset


__all__ = ["Record", "Header", "ConsumedRecord", "CorruptBatchError", "BatchIntegrityError", "CrcMismatchError",
           "OffsetGapError",
           "DecodedBatch", "build_batch", "check_batch_crc",
           "decode_batch", "split_batch_set", "frame_batch", "records_from_batch_set",
           "check_header_layout", "batch_crc_ok", "read_varint"]
