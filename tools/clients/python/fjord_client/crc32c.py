"""CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by Fjord record batches.

Uses the `crc32c` PyPI package when it is installed (C speed), else a table-driven pure-Python
implementation (slicing-by-8 over 8-byte words). Both give crc32c(b"123456789") == 0xE3069283.
"""
import sys
from typing import Callable, List, Union

BytesLike = Union[bytes, bytearray, memoryview]

_POLY = 0x82F63B78


def _make_tables() -> List[List[int]]:
    t0: List[int] = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t0.append(c)
    tables = [t0]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(prev[n] >> 8) ^ t0[prev[n] & 0xFF] for n in range(256)])
    return tables


_T = _make_tables()
_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7 = _T
_LITTLE_ENDIAN = sys.byteorder == "little"


def crc32c_python(data: BytesLike, crc: int = 0) -> int:
    """Pure-Python CRC32C of `data` (bytes-like), continuing from `crc`."""
    mv = memoryview(data).cast("B")
    crc ^= 0xFFFFFFFF
    head = len(mv) & ~7 if _LITTLE_ENDIAN else 0
    if head:
        t0, t1, t2, t3, t4, t5, t6, t7 = _T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7
        for w in memoryview(bytes(mv[:head])).cast("Q"):  # 8 bytes at a time, little-endian words
            lo = (w & 0xFFFFFFFF) ^ crc
            hi = w >> 32
            crc = (t7[lo & 0xFF] ^ t6[(lo >> 8) & 0xFF] ^ t5[(lo >> 16) & 0xFF] ^ t4[lo >> 24]
                   ^ t3[hi & 0xFF] ^ t2[(hi >> 8) & 0xFF] ^ t1[(hi >> 16) & 0xFF] ^ t0[hi >> 24])
    t0 = _T0
    for b in mv[head:]:
        crc = (crc >> 8) ^ t0[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def crc32c_bytewise(data: BytesLike, crc: int = 0) -> int:
    """The plain one-table CRC32C (reference for tests)."""
    crc ^= 0xFFFFFFFF
    t0 = _T0
    for b in bytes(data):
        crc = (crc >> 8) ^ t0[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


crc32c: Callable[..., int]
try:  # optional accelerator: `pip install crc32c` (hardware CRC32C where the CPU has it)
    import crc32c as _ext

    def _crc32c_ext(data: BytesLike, crc: int = 0) -> int:
        """CRC32C of `data` (any contiguous bytes-like object, read in place), continuing from `crc`."""
        return int(_ext.crc32c(data, crc))

    crc32c = _crc32c_ext
    IMPLEMENTATION = "crc32c package"
except Exception:  # pragma: no cover - depends on the environment
    crc32c = crc32c_python
    IMPLEMENTATION = "pure python"
