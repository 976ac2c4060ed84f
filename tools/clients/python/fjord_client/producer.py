"""The producer: per-partition batching, the idempotent protocol and retries (protocol.md §6).

One sender thread per producer writes every ProduceRequest, in order, on one Log.Produce stream;
the connection's I/O thread hands the answers back (`_on_frame`). Application threads only add
records to the open batch of their partition (`send`) and wait on futures.

Idempotence (the default with acks leader/durable): the producer gets an id and epoch with
InitProducerId, numbers each partition's records from 0, keeps at most 5 batches per partition
unanswered, and on a retriable error or a lost connection sends the same batches again,
unchanged and in order, on a new stream (a new connection if needed). The broker answers a batch
it already appended with `duplicate = true` and the original offsets, so a retried batch is
never written twice. A batch that fails for good leaves a gap in its partition's sequences; the
producer then waits until nothing is in flight, bumps its epoch (InitProducerId with its id and
epoch) and numbers the batches still to send from 0 again.
"""
import collections
import itertools
import threading
import time
from concurrent.futures import Future
from typing import (Any, Callable, Deque, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple,
                    Union, cast)

from . import frames as fr
from .batch import Record, build_batch
from .errors import (BrokerError, ConnectionClosedError, FjordError, FjordTimeoutError, ProtocolError,
                     UnknownTopicOrPartitionError, error_from_proto)
from .fjord.v1 import connection_pb2, log_pb2
from .murmur2 import partition_for_key

NO_EPOCH = -1
# protocol.md §6: at most 5 batches per partition awaiting an answer (the broker remembers 5).
MAX_IN_FLIGHT_PER_PARTITION = 5
SEQUENCE_MODULUS = 1 << 31

ACKS = {
    "none": log_pb2.ACKS_NONE,
    "leader": log_pb2.ACKS_LEADER,
    "durable": log_pb2.ACKS_DURABLE,
}


class RecordMetadata(NamedTuple):
    """Where a produced record went. `offset` is -1 with acks none."""

    topic: str
    partition: int
    offset: int


def acks_value(acks: Union[str, int]) -> int:
    """"none" / "leader" / "durable" (or a fjord.v1.Acks value) -> the Acks value."""
    if isinstance(acks, int):
        return acks
    try:
        return ACKS[acks]
    except KeyError:
        raise ValueError("acks must be one of none, leader, durable") from None


def is_retriable(exc: BaseException, retry_unknown_topic: bool = False) -> bool:
    """Whether a produce that failed with `exc` may be sent again: a lost connection, a timeout,
    or a broker code the error table marks retriable (NOT_LEADER, BROKER_SHUTTING_DOWN, ...).
    UNKNOWN_TOPIC_OR_PARTITION is retriable in the table (a topic being created) but usually means
    the topic does not exist, so it is retried only when `retry_unknown_topic` is set."""
    if isinstance(exc, UnknownTopicOrPartitionError):
        return retry_unknown_topic
    if isinstance(exc, FjordError):
        return bool(exc.retriable)
    return isinstance(exc, (OSError, TimeoutError))


class _Batch:
    """A batch of one partition: open (taking records), queued, in flight, or done."""

    __slots__ = ("topic", "partition", "records", "size", "future", "created", "deadline", "seq", "epoch",
                 "data", "rid", "stream", "sealed")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.records: List[Record] = []
        self.size = 0
        self.future: "Future[Optional[int]]" = Future()  # the base offset (None with acks none)
        self.created = time.monotonic()
        self.deadline = 0.0
        self.seq: Optional[int] = None  # base sequence, fixed once assigned (until an epoch bump)
        self.epoch = NO_EPOCH
        self.data: Optional[bytes] = None  # the encoded batch, built once per (epoch, seq)
        self.rid = 0
        self.stream: Any = None
        self.sealed = False


class _Partition:
    __slots__ = ("queued", "inflight", "renumber", "next_seq")

    def __init__(self) -> None:
        self.queued: Deque[_Batch] = collections.deque()    # to send; retries go back to the front
        self.inflight: Deque[_Batch] = collections.deque()  # sent on the current stream, in order
        self.renumber: Deque[_Batch] = collections.deque()  # refused as out of order: not appended
        self.next_seq = 0


class RecordFuture:
    """The outcome of one record: `result()` -> RecordMetadata, or raises the batch's error."""

    __slots__ = ("_batch", "topic", "partition", "index", "_producer")

    def __init__(self, batch: _Batch, index: int, producer: "Producer") -> None:
        self._batch = batch
        self.topic, self.partition, self.index = batch.topic, batch.partition, index
        self._producer = producer

    def _push(self) -> None:
        if not self._batch.future.done():
            if self._producer.acks == log_pb2.ACKS_NONE:
                self._producer.flush()  # acks none: known only once the broker ends the stream
            else:
                self._producer._seal_batch(self._batch)

    def result(self, timeout: Optional[float] = None) -> RecordMetadata:
        """Wait for the answer (a record still in an open batch is sent first)."""
        self._push()
        base = self._batch.future.result(timeout)
        return RecordMetadata(self.topic, self.partition, -1 if base is None else base + self.index)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        self._push()
        return self._batch.future.exception(timeout)

    def done(self) -> bool:
        return self._batch.future.done()

    def add_done_callback(self, fn: Callable[["RecordFuture"], None]) -> None:
        """Call fn(self) once the record's outcome is known (on the thread that learns it)."""
        self._batch.future.add_done_callback(lambda _f: fn(self))


class Producer:
    """Batches records per partition and produces them on one Log.Produce stream.

    `send()` adds a record to its partition's open batch and returns a RecordFuture. A batch goes
    out when it reaches `batch_bytes`, when it is `linger` seconds old, or on `flush()`,
    `send_pending()`, `close()` or a future's `result()`.

    `idempotent` (default: True unless acks is "none"): see the module docstring. Retriable
    failures (a lost connection, NOT_LEADER, BROKER_SHUTTING_DOWN, REQUEST_TIMED_OUT, ...) are
    retried with exponential backoff (`retry_backoff` up to `retry_backoff_max` seconds) until the
    batch is `delivery_timeout` seconds old; then its records fail with FjordTimeoutError. Without
    idempotence nothing is retried (a retry could write a batch twice): errors go to the futures,
    and a lost connection fails the batches in flight with ConnectionClosedError (their outcome is
    unknown); later sends use a new connection.

    At most `max_outstanding_bytes` of batches are unanswered (protocol.md §7), and `send()` blocks
    (up to `timeout`) while `buffer_bytes` of records wait to be acknowledged. With acks none the
    broker answers only failures, so those futures complete (offset -1) when the stream ends
    (`flush()` / `close()`). Every method may be called from any thread.
    """

    def __init__(self, client: Any, acks: Union[str, int] = "leader", batch_bytes: int = 256 * 1024,
                 max_outstanding_bytes: Optional[int] = None, timeout: Optional[float] = None,
                 idempotent: Optional[bool] = None, linger: Optional[float] = 0.005,
                 delivery_timeout: float = 120.0, retry_backoff: float = 0.05, retry_backoff_max: float = 1.0,
                 buffer_bytes: int = 64 << 20, retry_unknown_topic: bool = False) -> None:
        self.client = client
        self.acks = acks_value(acks)
        if idempotent is None:
            idempotent = self.acks != log_pb2.ACKS_NONE
        if idempotent and self.acks == log_pb2.ACKS_NONE:
            raise ValueError("an idempotent producer needs acks leader or durable (acks none is never answered)")
        self.idempotent = idempotent
        hs = client.handshake
        limit = hs.max_batch_bytes or (4 << 20)
        self.batch_bytes = max(1, min(batch_bytes, limit // 2))
        inflight = hs.max_in_flight_bytes or (64 << 20)
        self.max_outstanding = max_outstanding_bytes or max(1 << 20, min(inflight // 2, 32 << 20))
        self.buffer_bytes = max(buffer_bytes, self.max_outstanding)
        self.timeout = client.timeout if timeout is None else timeout
        self.linger = linger
        self.delivery_timeout = delivery_timeout
        self.retry_backoff, self.retry_backoff_max = retry_backoff, retry_backoff_max
        self.retry_unknown_topic = retry_unknown_topic
        self.producer_id, self.producer_epoch = -1, NO_EPOCH
        self.retries = 0      # times the unanswered batches were sent again
        self.duplicates = 0   # batches the broker answered as duplicates of ones it had

        # One lock: `_lock` on the per-record path (a C-level RLock enter), `_cv` to wait on it.
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._open: Dict[Tuple[str, int], _Batch] = {}        # open batches (taking records)
        self._parts: Dict[Tuple[str, int], _Partition] = {}
        self._by_rid: Dict[int, _Batch] = {}
        self._none_sent: List[_Batch] = []                    # acks none: sent on the current stream
        self._ids = itertools.count(1)
        self._stream: Any = None
        self._outstanding = 0    # bytes in flight
        self._buffered = 0       # bytes sealed and not yet done
        self._retry: Optional[BaseException] = None  # set: resend everything in flight (idempotent)
        self._attempt = 0        # consecutive retries (backoff)
        self._bump = False       # a batch failed for good: bump the epoch once nothing is in flight
        self._end_stream = False  # acks none flush: end the stream once everything queued is written
        self._closed = False
        self._sticky: Dict[str, int] = {}
        self._rr: Dict[str, int] = {}
        if self.idempotent:
            self._init_producer_id()
        self._thread = threading.Thread(target=self._run, name="fjord-producer", daemon=True)
        self._thread.start()

    # ---- partitioning -----------------------------------------------------------------------------

    def partition_for(self, topic: str, record: Record) -> int:
        """Kafka's default partitioner: murmur2 of the key; unkeyed records stick to one partition
        per batch, moving on when that batch is sent."""
        n = self.client.partition_count(topic)
        if record.key is not None:
            return partition_for_key(record.key, n)
        with self._cv:
            p = self._sticky.get(topic)
            if p is None or p >= n:
                p = (self._rr.get(topic, -1) + 1) % n
                self._rr[topic] = p
                self._sticky[topic] = p
            return p

    # ---- application side -------------------------------------------------------------------------

    def send(self, topic: str, record: Record, partition: Optional[int] = None) -> RecordFuture:
        """Queue `record` for `topic` (its partition chosen by `partition_for` unless given)."""
        if partition is None:
            partition = self.partition_for(topic, record)
        size = _estimate(record)
        key = (topic, partition)
        with self._lock:
            if self._closed:
                raise FjordError("producer is closed")
            if self._buffered and self._buffered + size > self.buffer_bytes:
                self._wait_for_buffer(size)
            batch = self._open.get(key)
            if batch is not None and batch.records and batch.size + size > self.batch_bytes:
                self._seal(key)
                batch = None
            if batch is None:
                batch = self._open[key] = _Batch(topic, partition)
                self._cv.notify_all()  # the sender times the linger
            batch.records.append(record)
            batch.size += size
            fut = RecordFuture(batch, len(batch.records) - 1, self)
            if batch.size >= self.batch_bytes:
                self._seal(key)
            return fut

    def send_batch(self, topic: str, partition: int, records: Iterable[Record]) -> "Future[Optional[int]]":
        """Produce `records` as one batch of their own; returns a Future of its base offset (None
        with acks none)."""
        batch = _Batch(topic, partition)
        batch.records = list(records)
        if not batch.records:
            raise ValueError("a batch needs at least one record")
        batch.size = sum(_estimate(r) for r in batch.records)
        with self._cv:
            self._check_open()
            self._wait_for_buffer(batch.size)
            self._enqueue(batch)
        return batch.future

    def send_pending(self) -> None:
        """Send every open batch now (without waiting for answers)."""
        with self._cv:
            for key in list(self._open):
                self._seal(key)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Send every open batch and wait until every record sent so far has its outcome. With acks
        none this ends the stream (the broker's end of it completes the futures); the next send
        opens a new one. FjordTimeoutError after `timeout` s (default: the producer's timeout)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cv:
            for key in list(self._open):
                self._seal(key)
            pending = [b.future for p in self._parts.values() for q in (p.renumber, p.inflight, p.queued) for b in q]
            pending += [b.future for b in self._none_sent]
            if self.acks == log_pb2.ACKS_NONE:
                self._end_stream = True
                self._cv.notify_all()
        for f in pending:
            try:
                f.exception(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - concurrent.futures.TimeoutError
                raise FjordTimeoutError("produce answers did not arrive within %.1f s" % timeout) from None

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush, end the stream (END_STREAM) and stop the sender thread."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()
            self._thread.join(self.timeout if timeout is None else timeout)

    def abort(self) -> None:
        """Stop at once: the stream is cancelled and records not yet acknowledged fail."""
        with self._cv:
            self._closed = True
            stream = self._stream
            self._stream = None
            self._fail_everything(ConnectionClosedError("producer aborted"))
            self._cv.notify_all()
        if stream is not None:
            stream.cancel()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ---- accumulating (callers hold self._cv) -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise FjordError("producer is closed")

    def _wait_for_buffer(self, size: int) -> None:
        deadline = time.monotonic() + self.timeout
        while self._buffered and self._buffered + size > self.buffer_bytes:
            if not self._cv.wait(max(0.0, deadline - time.monotonic())) and time.monotonic() >= deadline:
                raise FjordTimeoutError("producer buffer full (%d bytes unacknowledged) for %.1f s"
                                        % (self._buffered, self.timeout))
            self._check_open()

    def _seal_batch(self, batch: _Batch) -> None:
        with self._cv:
            if not batch.sealed and self._open.get((batch.topic, batch.partition)) is batch:
                self._seal((batch.topic, batch.partition))

    def _seal(self, key: Tuple[str, int]) -> None:
        batch = self._open.pop(key)
        if self._sticky.get(key[0]) == key[1]:
            self._sticky.pop(key[0], None)  # the next unkeyed batch goes to the next partition
        self._enqueue(batch)

    def _enqueue(self, batch: _Batch) -> None:
        batch.sealed = True
        batch.deadline = time.monotonic() + self.delivery_timeout
        self._part(batch.topic, batch.partition).queued.append(batch)
        self._buffered += batch.size
        self._cv.notify_all()

    def _part(self, topic: str, partition: int) -> _Partition:
        part = self._parts.get((topic, partition))
        if part is None:
            part = self._parts[(topic, partition)] = _Partition()
        return part

    # ---- completing (callers hold self._cv) --------------------------------------------------------

    def _done(self, batch: _Batch, base_offset: Optional[int] = None, error: Optional[BaseException] = None) -> None:
        if batch.future.done():
            return
        self._buffered -= batch.size
        self._cv.notify_all()
        if error is None:
            batch.future.set_result(base_offset)
        else:
            batch.future.set_exception(error)

    def _fail_everything(self, error: BaseException) -> None:
        for part in self._parts.values():
            for q in (part.renumber, part.inflight, part.queued):
                while q:
                    self._done(q.popleft(), error=error)
        for b in self._none_sent:
            self._done(b, error=error)
        self._none_sent = []
        self._by_rid.clear()
        self._outstanding = 0

    # ---- the sender thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            action, batches = self._next_action()
            try:
                if action == "exit":
                    self._finish_stream()
                    return
                if action == "retry":
                    self._prepare_retry()
                elif action == "bump":
                    self._bump_epoch()
                elif action == "end":
                    self._finish_stream()
                else:
                    self._write(batches)
            except Exception as exc:  # noqa: BLE001 - the sender must keep going
                self._sender_failed(exc)

    def _next_action(self) -> Tuple[str, List[_Batch]]:
        with self._cv:
            while True:
                now = time.monotonic()
                self._seal_lingering(now)
                self._expire(now)
                if self._retry is not None:
                    return "retry", []
                idle = not any(p.inflight for p in self._parts.values())
                # Bump only when no batch of the old epoch can still be appended: none in flight,
                # none waiting to be sent again with its old numbers.
                if self._bump and idle and not any(p.queued and p.queued[0].seq is not None
                                                   for p in self._parts.values()):
                    return "bump", []
                batches = self._sendable()
                if batches:
                    return "send", batches
                if self._end_stream and not any(p.queued for p in self._parts.values()):
                    self._end_stream = False
                    return "end", []
                if self._closed and not self._open and idle and not any(
                        p.queued or p.renumber for p in self._parts.values()):
                    return "exit", []
                self._cv.wait(self._wake_in(now))

    def _wake_in(self, now: float) -> Optional[float]:
        times = []
        if self.linger is not None and self._open:
            times.append(min(b.created for b in self._open.values()) + self.linger)
        times += [q[0].deadline for p in self._parts.values() for q in (p.queued, p.inflight) if q]
        if not times:
            return 1.0
        return min(1.0, max(0.0005, min(times) - now))

    def _seal_lingering(self, now: float) -> None:
        if self.linger is None:
            return
        for key in [k for k, b in self._open.items() if now - b.created >= self.linger]:
            self._seal(key)

    def _expire(self, now: float) -> None:
        """Fail waiting batches past their delivery deadline (the oldest are at the front of each
        queue); a batch in flight past it (a broker that keeps the connection but never answers)
        makes the idempotent producer send again, so that it expires from the queue."""
        for part in self._parts.values():
            for q in (part.queued, part.renumber):
                while q and q[0].deadline <= now:
                    b = q.popleft()
                    self._done(b, error=FjordTimeoutError(
                        "%s/%d: not acknowledged within the delivery timeout (%.1f s); if it was sent, "
                        "its outcome is unknown" % (b.topic, b.partition, self.delivery_timeout)))
                    if self.idempotent and b.seq is not None:
                        self._bump = True  # its sequences may be missing in the partition
            if part.inflight and part.inflight[0].deadline <= now:
                if self.idempotent:
                    if self._retry is None:
                        self._retry = FjordTimeoutError("no answer within the delivery timeout")
                else:
                    b = part.inflight.popleft()
                    self._by_rid.pop(b.rid, None)
                    self._outstanding -= b.size
                    self._done(b, error=FjordTimeoutError(
                        "%s/%d: no answer within the delivery timeout (%.1f s); its outcome is unknown"
                        % (b.topic, b.partition, self.delivery_timeout)))

    def _sendable(self) -> List[_Batch]:
        """Move the batches that may go now to in-flight, numbered (idempotent) and with request ids."""
        out: List[_Batch] = []
        for part in self._parts.values():
            while part.queued:
                if self.acks != log_pb2.ACKS_NONE and len(part.inflight) >= MAX_IN_FLIGHT_PER_PARTITION:
                    break
                b = part.queued[0]
                if self.idempotent and b.seq is None and self._bump:
                    break  # numbered after the epoch bump
                if self.acks != log_pb2.ACKS_NONE and self._outstanding and \
                        self._outstanding + b.size > self.max_outstanding:
                    return out
                part.queued.popleft()
                if self.idempotent and b.seq is None:
                    b.seq, b.epoch = part.next_seq, self.producer_epoch
                    part.next_seq = (part.next_seq + len(b.records)) % SEQUENCE_MODULUS
                    b.data = None
                b.rid = next(self._ids)
                if self.acks == log_pb2.ACKS_NONE:
                    self._none_sent.append(b)
                else:
                    part.inflight.append(b)
                    self._by_rid[b.rid] = b
                    self._outstanding += b.size
                out.append(b)
        return out

    def _write(self, batches: Sequence[_Batch]) -> None:
        stream = self._current_stream()
        for b in batches:
            if b.data is None:
                try:
                    if self.idempotent and b.seq is not None:
                        b.data = build_batch(b.records, self.producer_id, b.epoch, b.seq)
                    else:
                        b.data = build_batch(b.records)
                except Exception as exc:  # noqa: BLE001 - a record that cannot be encoded
                    self._refused(b, exc)
                    continue
            b.stream = stream
            req = log_pb2.ProduceRequest(topic=b.topic, partition=b.partition, leader_epoch=NO_EPOCH,
                                         acks=cast(Any, self.acks), request_id=b.rid, batch=b.data)
            stream.send(req)

    def _refused(self, b: _Batch, exc: BaseException) -> None:
        with self._cv:
            part = self._part(b.topic, b.partition)
            if b in part.inflight:
                part.inflight.remove(b)
                self._outstanding -= b.size
            self._by_rid.pop(b.rid, None)
            if b in self._none_sent:
                self._none_sent.remove(b)
            if self.idempotent and b.seq is not None:
                self._bump = True
            self._done(b, error=exc)

    def _current_stream(self) -> Any:
        with self._cv:
            stream = self._stream
        if stream is not None and not stream.closed:
            return stream
        conn = self.client._connection()  # reconnects if the connection was lost
        stream = conn.open_stream(connection_pb2.METHOD_PRODUCE, on_frame=self._on_frame)
        with self._cv:
            self._stream = stream
        return stream

    def _sender_failed(self, exc: BaseException) -> None:
        """Writing (or reconnecting) failed: retry if it is worth it, else fail what is in flight."""
        with self._cv:
            if self.client._closed:  # the client was closed under the producer: nothing can go out
                self._fail_everything(ConnectionClosedError("the client is closed"))
                self._cv.notify_all()
                return
            if self.idempotent and is_retriable(exc):
                if self._retry is None:
                    self._retry = exc
                self._cv.notify_all()
                return
            stream = self._stream
            self._stream = None
            for part in self._parts.values():
                while part.inflight:
                    self._done(part.inflight.popleft(), error=exc)
                if not is_retriable(exc):  # e.g. an untrusted certificate: nothing will get through
                    while part.queued:
                        self._done(part.queued.popleft(), error=exc)
            for b in self._none_sent:
                self._done(b, error=exc)
            self._none_sent = []
            self._by_rid.clear()
            self._outstanding = 0
        if stream is not None:
            stream.cancel()
        time.sleep(self._backoff())

    def _backoff(self) -> float:
        self._attempt += 1
        return float(min(self.retry_backoff_max, self.retry_backoff * (1 << min(self._attempt - 1, 16))))

    def _prepare_retry(self) -> None:
        """Every batch in flight goes back to the front of its partition's queue, unchanged (same
        sequence numbers); the old stream is cancelled; after a backoff they are sent again."""
        with self._cv:
            self._retry = None
            self.retries += 1
            stream = self._stream
            self._stream = None
            for part in self._parts.values():
                part.queued.extendleft(reversed(part.inflight))
                part.inflight.clear()
            self._by_rid.clear()
            self._outstanding = 0
        if stream is not None:
            stream.cancel()
        time.sleep(self._backoff())

    def _bump_epoch(self) -> None:
        """Nothing is in flight and some batch failed for good: a new epoch, sequences from 0."""
        self._init_producer_id(bump=True)
        with self._cv:
            self._bump = False
            for part in self._parts.values():
                part.next_seq = 0
                part.queued.extendleft(reversed(part.renumber))
                part.renumber.clear()
                for b in part.queued:
                    b.seq, b.data = None, None
            self._cv.notify_all()

    def _init_producer_id(self, bump: bool = False) -> None:
        req = log_pb2.InitProducerIdRequest(producer_id=self.producer_id if bump else -1,
                                            producer_epoch=self.producer_epoch if bump else -1)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                resp = self.client._call(connection_pb2.METHOD_INIT_PRODUCER_ID, req,
                                         log_pb2.InitProducerIdResponse, retry=True)
                break
            except FjordError as exc:
                if not is_retriable(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(self._backoff())
        self.producer_id, self.producer_epoch = resp.producer_id, resp.producer_epoch

    def _finish_stream(self) -> None:
        """END_STREAM on the current stream, which is detached (later sends open a new one). With
        acks none the broker's end of the stream completes the futures of the batches sent on it
        (or its failure fails them: `_on_frame`)."""
        with self._cv:
            stream = self._stream
            self._stream = None
        if stream is not None and not stream.closed:
            try:
                stream.send(b"", end_stream=True)
            except FjordError:
                pass  # the connection is gone: its streams' failure completes the futures

    # ---- answers (the connection's I/O thread) -----------------------------------------------------

    def _on_frame(self, stream: Any, item: Any) -> None:
        if isinstance(item, BaseException) or item.flags & fr.ERROR:
            self._stream_failed(stream, item if isinstance(item, BaseException) else stream.error)
            return
        if item.payload:
            try:
                resp = log_pb2.ProduceResponse.FromString(item.payload)
            except Exception as exc:  # noqa: BLE001
                self._stream_failed(stream, ProtocolError("undecodable ProduceResponse: %s" % exc))
                stream.cancel()
                return
            with self._cv:
                b = self._by_rid.get(resp.request_id)
                if b is not None and b.stream is stream:
                    self._answer(b, resp)
                elif self.acks == log_pb2.ACKS_NONE and resp.HasField("error") and resp.error.code:
                    for nb in self._none_sent:
                        if nb.rid == resp.request_id and nb.stream is stream:
                            self._none_sent.remove(nb)
                            self._done(nb, error=error_from_proto(resp.error, scope="partition"))
                            break
        if item.flags & fr.END_STREAM:
            with self._cv:
                # Every request was answered; acks-none batches not answered succeeded.
                for nb in [x for x in self._none_sent if x.stream is stream]:
                    self._none_sent.remove(nb)
                    self._done(nb, None)
                if self._stream is stream:
                    self._stream = None
                self._cv.notify_all()

    def _answer(self, b: _Batch, resp: Any) -> None:
        part = self._part(b.topic, b.partition)
        err = error_from_proto(resp.error, scope="partition") if resp.HasField("error") and resp.error.code else None
        if err is None:
            self._attempt = 0
            if resp.duplicate:
                self.duplicates += 1
            self._release(b, part)
            self._done(b, resp.base_offset)
            return
        if self.idempotent and is_retriable(err, self.retry_unknown_topic) and time.monotonic() < b.deadline:
            if self._retry is None:
                self._retry = err  # b stays in flight: the retry sends it (and its followers) again
            self._cv.notify_all()
            return
        if self._retry is not None and self.idempotent:
            return  # an earlier batch is being retried: this one goes again with it
        self._release(b, part)
        if self.idempotent and self._bump and err.code == 43:  # OUT_OF_ORDER_SEQUENCE
            part.renumber.append(b)  # behind a batch that failed for good: not appended, renumbered
            return
        if self.idempotent:
            self._bump = True  # this batch's sequences are now missing in the partition
        self._done(b, error=err)

    def _release(self, b: _Batch, part: _Partition) -> None:
        try:
            part.inflight.remove(b)
        except ValueError:
            pass
        self._by_rid.pop(b.rid, None)
        self._outstanding -= b.size
        self._cv.notify_all()

    def _stream_failed(self, stream: Any, err: BaseException) -> None:
        with self._cv:
            for nb in [x for x in self._none_sent if x.stream is stream]:
                self._none_sent.remove(nb)
                self._done(nb, error=err)
            if stream is not self._stream:
                return
            if self.idempotent and (is_retriable(err) or isinstance(err, BrokerError) and err.code == 4):
                # A lost connection, or a stream error: send what is in flight again, on a new stream.
                if self._retry is None:
                    self._retry = err
                self._cv.notify_all()
                return
            self._stream = None
            for part in self._parts.values():
                while part.inflight:
                    self._done(part.inflight.popleft(), error=err)
            self._by_rid.clear()
            self._outstanding = 0
            self._cv.notify_all()


def _estimate(record: Record) -> int:
    key, value = record.key, record.value
    n = 16 + (len(key) if key is not None else 0) + (len(value) if value is not None else 0)
    if not record.headers:
        return n
    for k, v in record.headers:
        n += 8 + len(k.encode("utf-8")) + (len(v) if v is not None else 0)
    return n


__all__ = ["Producer", "RecordFuture", "RecordMetadata", "ACKS", "acks_value", "is_retriable",
           "MAX_IN_FLIGHT_PER_PARTITION"]
