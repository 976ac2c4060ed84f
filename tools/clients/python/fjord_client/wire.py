"""A minimal protobuf wire-format scanner, used where the raw bytes matter (CRC checks, credit)."""
from typing import Iterator, List, Optional, Tuple, Union

Buffer = Union[bytes, bytearray, memoryview]
FieldValue = Union[int, bytes, Tuple[int, int]]


class WireError(ValueError):
    pass


def read_varint(buf: Buffer, pos: int, end: int) -> Tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint too long")


def iter_fields(buf: Buffer, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, int, FieldValue]]:
    """Yields (field number, wire type, value) for each field of the message in buf[start:end].

    value is an int for varints, a (start, end) range of buf for length-delimited fields, and the
    raw bytes for fixed32/fixed64.
    """
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wt == 0:
            value: FieldValue
            value, pos = read_varint(buf, pos, end)
        elif wt == 1:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            value, pos = bytes(buf[pos:pos + 8]), pos + 8
        elif wt == 2:
            n, pos = read_varint(buf, pos, end)
            if pos + n > end:
                raise WireError("length-delimited field runs past the end")
            value, pos = (pos, pos + n), pos + n
        elif wt == 5:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            value, pos = bytes(buf[pos:pos + 4]), pos + 4
        else:
            raise WireError("unsupported wire type %d" % wt)
        yield field, wt, value


def submessages(buf: Buffer, field_number: int, start: int = 0, end: Optional[int] = None) -> List[Tuple[int, int]]:
    """The (start, end) ranges of every length-delimited occurrence of field_number."""
    return [v for f, wt, v in iter_fields(buf, start, end) if f == field_number and wt == 2 and isinstance(v, tuple)]
