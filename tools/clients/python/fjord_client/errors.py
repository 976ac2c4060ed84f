"""Fjord errors: one exception class per fjord.v1.ErrorCode, made from the generated table.

Every code NAME in errors.proto becomes `<CamelCaseName>Error`, a subclass of `BrokerError` with the
class attributes `code`, `code_name` and `retriable` from the table (for example
`UnknownTopicOrPartitionError.code == 20`, `.retriable is True`). `error_from_proto` maps a
`fjord.v1.Error` to an instance of the right class; a code this client does not know becomes a plain
`BrokerError` that is not retriable (protocol.md §8).
"""
from typing import Any, Dict, List, Optional, Type

from .fjord.v1.error_codes import ERROR_CODES

__all__: List[str] = [
    "FjordError", "BrokerError", "ConnectionClosedError", "ProtocolError", "FjordTimeoutError",
    "BatchIntegrityError", "CrcMismatchError", "OffsetGapError",
    "ERROR_CLASSES", "error_class", "error_from_proto", "error_from_payload",
    "UnknownTopicError", "AuthorizationError",
]


class FjordError(Exception):
    """Base class of every error this client raises."""

    retriable = False


class ConnectionClosedError(FjordError):
    """The connection ended (by the broker, the network, or close()) before the call completed."""

    retriable = True


class ProtocolError(FjordError):
    """The broker sent something this client cannot make sense of (malformed frame, bad message)."""


class FjordTimeoutError(FjordError, TimeoutError):
    """A call did not complete in the time the caller allowed."""

    retriable = True


class BatchIntegrityError(FjordError, ValueError):
    """A batch received from the broker fails the checks of storage-format.md (layout, CRC32C,
    records, offsets). Not retriable: the same bytes come back on a retry.

    Attributes (None when not known): `topic`, `partition`, `offset` (the batch's base offset as
    received). Nothing of a batch that fails is returned to the application.

    Client-side, unlike `CorruptBatchError`, the broker's code 40 (a batch the broker refused). The
    module `fjord_client.batch` keeps the name `CorruptBatchError` for this class.
    """

    retriable = False

    def __init__(self, message: str, *, topic: Optional[str] = None, partition: Optional[int] = None,
                 offset: Optional[int] = None) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.message = message
        super().__init__(message)


class CrcMismatchError(BatchIntegrityError):
    """A fetched batch's CRC32C (bytes [28, end)) differs from the one stored in it (bytes [24, 28)).

    Attributes: `topic`, `partition`, `offset` (base offset), `expected` (the CRC32C the batch
    carries, as its producer computed it) and `actual` (the CRC32C of the bytes received).
    """

    def __init__(self, topic: Optional[str], partition: Optional[int], offset: Optional[int], expected: int,
                 actual: int) -> None:
        self.expected, self.actual = expected, actual
        super().__init__("CRC32C mismatch in %s/%s, batch at offset %s: expected 0x%08x (stored in the batch), "
                         "actual 0x%08x (computed)" % (topic, partition, offset, expected, actual),
                         topic=topic, partition=partition, offset=offset)


class OffsetGapError(BatchIntegrityError):
    """A fetched batch does not start where the previous one ended (protocol.md: offsets are
    contiguous), or the first batch of a response does not hold the requested offset.

    Attributes: `topic`, `partition`, `offset` (the base offset received) and `expected_offset`
    (the offset the batch had to start at, or hold when it is the first of a fetch).
    """

    def __init__(self, message: str, *, topic: Optional[str], partition: Optional[int], offset: Optional[int],
                 expected_offset: int) -> None:
        self.expected_offset = expected_offset
        super().__init__(message, topic=topic, partition=partition, offset=offset)


class BrokerError(FjordError):
    """An error sent by the broker as a `fjord.v1.Error`.

    Attributes: `code` (int), `code_name` (e.g. "UNKNOWN_TOPIC_OR_PARTITION"), `message` (the
    broker's text), `retriable` (from the error-code table; for a code not in the table, False),
    `broker_retriable` (the flag the broker set), `scope` ("connection", "stream" or "partition").
    """

    code: Optional[int] = None
    code_name = "UNKNOWN_CODE"
    retriable = False

    def __init__(self, message: str = "", *, code: Optional[int] = None, broker_retriable: Optional[bool] = None,
                 scope: Optional[str] = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.broker_retriable = broker_retriable
        self.scope = scope
        super().__init__("%s (%s): %s" % (self.code_name, self.code, message) if message
                         else "%s (%s)" % (self.code_name, self.code))


class AuthorizationError(BrokerError):
    """The broker's authorizer refused the request: the connection's principal (from its client
    certificate; see the broker's docs/security.md) may not perform the operation on the topic,
    group or cluster the message names. The base of `TopicAuthorizationFailedError`,
    `GroupAuthorizationFailedError` and `ClusterAuthorizationFailedError`; never retriable.

    ```python
    try:
        producer.send("orders", b"paid")
    except AuthorizationError as e:
        print("not allowed:", e.message)   # User:billing is not allowed to write topic "orders"
    ```
    """


# Codes whose classes derive from a category base rather than BrokerError directly.
_BASES: Dict[int, Type[BrokerError]] = {70: AuthorizationError, 71: AuthorizationError, 72: AuthorizationError}


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Error"


ERROR_CLASSES: Dict[int, Type[BrokerError]] = {}
for _code, _name, _retriable, _doc in ERROR_CODES:
    if _code == 0:
        continue
    _cls = type(_class_name(_name), (_BASES.get(_code, BrokerError),), {
        "code": _code, "code_name": _name, "retriable": _retriable,
        "__doc__": "ERROR_CODE_%s (%d): %s" % (_name, _code, _doc), "__module__": __name__,
    })
    ERROR_CLASSES[_code] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)
del _code, _name, _retriable, _doc, _cls

# A shorter alias for the most common one.
UnknownTopicError = ERROR_CLASSES[20]  # UnknownTopicOrPartitionError


def error_class(code: int) -> Type[BrokerError]:
    """The exception class for an error code (BrokerError for an unknown code)."""
    return ERROR_CLASSES.get(code, BrokerError)


def error_from_proto(err: Any, scope: Optional[str] = None) -> BrokerError:
    """An exception instance for a `fjord.v1.Error` message."""
    code = int(err.code)
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return BrokerError(err.message, code=code, broker_retriable=err.retriable, scope=scope)
    return cls(err.message, broker_retriable=err.retriable, scope=scope)


def error_from_payload(payload: bytes, scope: Optional[str] = None) -> FjordError:
    """An exception for the payload of an ERROR frame (a serialized `fjord.v1.Error`)."""
    from .fjord.v1 import errors_pb2
    err = errors_pb2.Error()
    try:
        err.ParseFromString(payload)
    except Exception as exc:  # noqa: BLE001 - any decode failure
        return ProtocolError("undecodable Error payload in an ERROR frame: %s" % exc)
    return error_from_proto(err, scope=scope)


def __getattr__(name: str) -> Type[BrokerError]:
    """For type checkers: the per-code classes (`errors.NotLeaderError`, ...) are made at import
    time from the generated table, so a checker sees them through this hook as BrokerError
    subclasses. At run time every one of them is a real module attribute."""
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
