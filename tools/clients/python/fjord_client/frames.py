"""The 12-byte frame header of docs/protocol.md §2 and an incremental frame decoder."""
import struct
from typing import List, NamedTuple, Optional, Tuple, Union

HEADER = struct.Struct(">IIHBB")  # payload length, stream id, method id, flags, reserved
HEADER_SIZE = HEADER.size  # 12

END_STREAM = 0x01
ERROR = 0x02
CANCEL = 0x04
KNOWN_FLAGS = END_STREAM | ERROR | CANCEL

class Frame(NamedTuple):
    """One received frame."""

    stream_id: int
    method: int
    flags: int
    payload: bytes


class FrameError(Exception):
    """A frame header that breaks the rules of protocol.md §2 (malformed or too large)."""


def encode_frame(stream_id: int, method: int, flags: int = 0,
                 payload: Union[bytes, bytearray, memoryview] = b"") -> bytes:
    """The 12 header bytes followed by the payload."""
    if not 0 <= stream_id <= 0xFFFFFFFF:
        raise ValueError("stream id out of range")
    if flags & ~KNOWN_FLAGS:
        raise ValueError("unknown flag bits")
    return HEADER.pack(len(payload), stream_id, method, flags, 0) + bytes(payload)


def decode_header(data: Union[bytes, bytearray], max_payload: Optional[int] = None) -> Tuple[int, int, int, int]:
    """(payload length, stream id, method, flags) from 12 header bytes; FrameError if malformed."""
    length, stream_id, method, flags, reserved = HEADER.unpack(bytes(data[:HEADER_SIZE]))
    if flags & ~KNOWN_FLAGS:
        raise FrameError("frame with unknown flag bits 0x%02x" % flags)
    if reserved:
        raise FrameError("frame with non-zero reserved byte 0x%02x" % reserved)
    if max_payload is not None and length > max_payload:
        raise FrameError("frame payload of %d bytes exceeds the limit of %d" % (length, max_payload))
    return length, stream_id, method, flags


class FrameDecoder:
    """Feed bytes in any chunking; get whole frames out. Checks each header as soon as it arrives."""

    def __init__(self, max_payload: Optional[int] = None) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._header: Optional[Tuple[int, int, int, int]] = None

    def feed(self, data: bytes) -> List[Frame]:
        """The frames completed by `data` (FrameError for a bad header)."""
        self._buf += data
        frames: List[Frame] = []
        while True:
            if self._header is None:
                if len(self._buf) < HEADER_SIZE:
                    break
                self._header = decode_header(self._buf, self.max_payload)
                del self._buf[:HEADER_SIZE]
            length = self._header[0]
            if len(self._buf) < length:
                break
            payload = bytes(self._buf[:length])
            del self._buf[:length]
            _, stream_id, method, flags = self._header
            self._header = None
            frames.append(Frame(stream_id, method, flags, payload))
        return frames

    @property
    def mid_frame(self) -> bool:
        """True when bytes of an incomplete frame are buffered (a connection ending now is malformed)."""
        return bool(self._buf) or self._header is not None
