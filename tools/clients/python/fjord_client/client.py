"""The Fjord client: topics, metadata, produce, fetch, subscribe, list offsets (protocol.md §5-6)."""
import collections
import itertools
import queue
import random
import ssl
import threading
import time
from concurrent.futures import Future
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, TypeVar, Union)

from . import frames as fr
from .batch import ConsumedRecord, Record, build_batch, records_from_batch_set
from .connection import Connection, make_ssl_context, parse_hostport
from .errors import (BrokerError, ConnectionClosedError, FjordError, FjordTimeoutError, ProtocolError,
                     error_from_proto)
from .fjord.v1 import connection_pb2, log_pb2, topics_pb2
from .producer import ACKS, Producer, RecordFuture, RecordMetadata, is_retriable
from .wire import WireError, iter_fields, submessages

M = connection_pb2  # method ids: M.METHOD_PRODUCE, ...

EARLIEST = -2
LATEST = -1
NO_EPOCH = -1

T = TypeVar("T")


class FetchResult(NamedTuple):
    """One partition's part of a fetch: its records (at or after the requested offset), where the
    next fetch continues (`next_offset`), and its error (None, or the BrokerError not raised)."""

    topic: str
    partition: int
    records: List[ConsumedRecord]
    high_watermark: int
    log_start_offset: int
    next_offset: int
    error: Optional[BrokerError]

# Unary calls that read only, so that sending them again is harmless: retried (with a new
# connection if the old one was lost) until the call's timeout.
_RETRY_METHODS = frozenset((M.METHOD_GET_METADATA, M.METHOD_LIST_TOPICS, M.METHOD_DESCRIBE_TOPIC,
                            M.METHOD_LIST_OFFSETS, M.METHOD_FETCH, M.METHOD_INIT_PRODUCER_ID))


class Client:
    """A connection to one Fjord broker with typed calls.

        with Client("127.0.0.1:7420", ca="ca.pem") as c:
            c.create_topic("events", partitions=3)
            c.produce("events", [Record(b"v", key=b"k")])
            for r in c.fetch("events", 0, 0).records: ...

    broker: "host:port". TLS with `ca` (PEM file to trust; None = system store) and optional `cert`
    and `key` for mutual TLS; `plaintext=True` for a plaintext listener. `server_hostname` overrides
    the name checked against the broker certificate (default: the host).

    `check_crcs` (default True, as Kafka consumers' `check.crcs`): fetch and subscribe verify every
    received batch's CRC32C and that offsets are contiguous, and raise CrcMismatchError /
    OffsetGapError (not retriable) instead of returning anything of a damaged batch. False skips
    the CRC32C (the offset checks stay); each fetch/subscribe call may override it.
    """

    def __init__(self, broker: str = "127.0.0.1:7420", ca: Optional[str] = None, cert: Optional[str] = None,
                 key: Optional[str] = None, plaintext: bool = False, server_hostname: Optional[str] = None,
                 client_id: str = "fjord-python", timeout: float = 30.0, ssl_context: Optional[ssl.SSLContext] = None,
                 check_crcs: bool = True, reconnect_backoff: float = 0.05, reconnect_backoff_max: float = 2.0) -> None:
        host, port = parse_hostport(broker)
        if plaintext:
            ctx = None
        else:
            ctx = ssl_context or make_ssl_context(ca=ca, cert=cert, key=key)
        self.timeout = timeout
        self.check_crcs = bool(check_crcs)
        self.reconnect_backoff, self.reconnect_backoff_max = reconnect_backoff, reconnect_backoff_max
        self._connect_args: Dict[str, Any] = dict(host=host, port=port, ssl_context=ctx, server_hostname=server_hostname,
                                  client_id=client_id, connect_timeout=min(timeout, 30.0))
        self._conn_lock = threading.Lock()
        self._closed = False
        self.reconnects = 0  # connections made after the first
        self.conn = Connection(**self._connect_args)
        self.handshake = self.conn.handshake
        self._partition_counts: Dict[str, int] = {}

    # ---- lifecycle ----
    def close(self) -> None:
        """Close the connection; calls in progress fail with ConnectionClosedError."""
        with self._conn_lock:
            self._closed = True
            conn = self.conn
        conn.close()

    def _connection(self) -> Connection:
        """The live connection: the current one, or a new one if it was lost (one attempt; callers
        retry with backoff). Streams of a lost connection have failed with ConnectionClosedError."""
        with self._conn_lock:
            if self._closed:
                raise ConnectionClosedError("the client is closed")
            if self.conn.closed:
                self.conn = Connection(**self._connect_args)
                self.handshake = self.conn.handshake
                self.reconnects += 1
            return self.conn

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, ...): exponential, capped, jittered."""
        base = min(self.reconnect_backoff_max, self.reconnect_backoff * (1 << min(attempt - 1, 16)))
        return float(base * (0.5 + random.random() / 2))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def cluster_id(self) -> str:
        """The cluster id the broker reported in the handshake."""
        return self.handshake.cluster_id

    @property
    def principal(self) -> str:
        """Who the broker takes this client to be, as its ACLs name it: `User:<name>` from the
        client certificate, or `User:ANONYMOUS` without one (a broker older than ACLs: empty)."""
        return str(self.handshake.principal)

    def _call(self, method: int, request: Any, response_type: Callable[[], T], timeout: Optional[float] = None,
              retry: Optional[bool] = None) -> T:
        """A unary call. Read-only methods (and `retry=True`) are retried after a lost connection
        or a retriable error (NOT_LEADER, BROKER_SHUTTING_DOWN, ...) until `timeout` has passed;
        UNKNOWN_TOPIC_OR_PARTITION is raised at once."""
        timeout = self.timeout if timeout is None else timeout
        if retry is None:
            retry = method in _RETRY_METHODS
        return self._retrying(lambda left: self._connection().call(method, request, response_type, left),
                              timeout, retry)

    def _retrying(self, attempt_fn: Callable[[float], T], timeout: float, retry: bool = True) -> T:
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            left = max(0.001, deadline - time.monotonic())
            try:
                return attempt_fn(left)
            except (FjordError, OSError) as exc:
                attempt += 1
                pause = self._backoff(attempt)
                if not retry or self._closed or not is_retriable(exc) or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)

    # ---- topics ----
    def create_topic(self, name: str, partitions: int = 1, configs: Optional[Mapping[str, str]] = None) -> Any:
        """Create a topic; returns its TopicInfo. TopicAlreadyExistsError if it exists."""
        req = topics_pb2.CreateTopicRequest(name=name, partitions=partitions, configs=configs or {})
        info = self._call(M.METHOD_CREATE_TOPIC, req, topics_pb2.CreateTopicResponse).topic
        self._partition_counts[name] = len(info.partitions)
        return info

    def delete_topic(self, name: str) -> None:
        """Delete the topic and its data."""
        self._call(M.METHOD_DELETE_TOPIC, topics_pb2.DeleteTopicRequest(name=name), topics_pb2.DeleteTopicResponse)
        self._partition_counts.pop(name, None)

    def list_topics(self) -> List[str]:
        """All topic names, sorted."""
        return list(self._call(M.METHOD_LIST_TOPICS, topics_pb2.ListTopicsRequest(), topics_pb2.ListTopicsResponse).names)

    def describe_topic(self, name: str) -> Any:
        """The topic's TopicInfo (partitions with leader, epoch, log start, high watermark; configs)."""
        info = self._call(M.METHOD_DESCRIBE_TOPIC, topics_pb2.DescribeTopicRequest(name=name),
                          topics_pb2.DescribeTopicResponse).topic
        self._partition_counts[name] = len(info.partitions)
        return info

    def create_partitions(self, name: str, total_partitions: int) -> Any:
        """Raise the topic's partition count to `total_partitions`; returns its TopicInfo."""
        req = topics_pb2.CreatePartitionsRequest(name=name, total_partitions=total_partitions)
        info = self._call(M.METHOD_CREATE_PARTITIONS, req, topics_pb2.CreatePartitionsResponse).topic
        self._partition_counts[name] = len(info.partitions)
        return info

    def alter_topic_config(self, name: str, set: Optional[Mapping[str, str]] = None,  # noqa: A002 - the proto field
                           remove: Iterable[str] = ()) -> Any:
        """Set and remove topic configuration keys; returns the TopicInfo."""
        req = topics_pb2.AlterTopicConfigRequest(name=name, set=set or {}, remove=list(remove))
        return self._call(M.METHOD_ALTER_TOPIC_CONFIG, req, topics_pb2.AlterTopicConfigResponse).topic

    def get_metadata(self, topics: Iterable[str] = ()) -> Any:
        """GetMetadataResponse; a missing topic has `error` set in its TopicMetadata (not raised)."""
        return self._call(M.METHOD_GET_METADATA, topics_pb2.GetMetadataRequest(topics=list(topics)),
                          topics_pb2.GetMetadataResponse)

    def partition_count(self, topic: str, refresh: bool = False) -> int:
        """The topic's partition count (cached; `refresh` asks the broker again)."""
        if refresh or topic not in self._partition_counts:
            md = self.get_metadata([topic])
            tm = md.topics[0]
            if tm.HasField("error") and tm.error.code:
                raise error_from_proto(tm.error, scope="partition")
            self._partition_counts[topic] = len(tm.topic.partitions)
        return self._partition_counts[topic]

    # ---- offsets ----
    def list_offsets(self, requests: Sequence[Tuple[str, int, int]]) -> List[int]:
        """requests: [(topic, partition, timestamp)] with timestamp EARLIEST (-2), LATEST (-1) or ms.
        Returns the offsets in order; -1 for a timestamp after every record. Raises a partition's error."""
        req = log_pb2.ListOffsetsRequest(partitions=[
            log_pb2.ListOffsetsPartition(topic=t, partition=p, timestamp=ts, leader_epoch=NO_EPOCH)
            for t, p, ts in requests])
        resp = self._call(M.METHOD_LIST_OFFSETS, req, log_pb2.ListOffsetsResponse)
        out: List[int] = []
        for r in resp.partitions:
            if r.HasField("error") and r.error.code:
                raise error_from_proto(r.error, scope="partition")
            out.append(r.offset)
        return out

    def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        """ListOffsets for one partition (EARLIEST, LATEST or a time in ms)."""
        return self.list_offsets([(topic, partition, timestamp)])[0]

    def earliest_offset(self, topic: str, partition: int) -> int:
        """The partition's log start offset."""
        return self.list_offset(topic, partition, EARLIEST)

    def latest_offset(self, topic: str, partition: int) -> int:
        """The partition's log end offset (the offset the next record gets)."""
        return self.list_offset(topic, partition, LATEST)

    # ---- fetch ----
    def fetch_many(self, partitions: Sequence[Tuple[str, int, int]], max_wait_ms: int = 500, min_bytes: int = 1,
                   max_bytes: int = 0, partition_max_bytes: int = 0, check_crcs: Optional[bool] = None,
                   timeout: Optional[float] = None) -> List[FetchResult]:
        """Long-poll fetch of several partitions: partitions = [(topic, partition, offset)].
        Returns one FetchResult per entry (error set rather than raised for a partition error);
        records below the requested offset are skipped.

        Every batch is checked (CRC32C unless `check_crcs` is false, default: the client's setting;
        the first batch holds the requested offset; offsets are contiguous). A batch that fails
        raises BatchIntegrityError (CrcMismatchError, OffsetGapError), and nothing of this response
        is returned."""
        check_crcs = self.check_crcs if check_crcs is None else check_crcs
        req = log_pb2.FetchRequest(max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=max_bytes)
        for t, p, off in partitions:
            req.partitions.add(topic=t, partition=p, offset=off, leader_epoch=NO_EPOCH, max_bytes=partition_max_bytes)
        wait = (timeout if timeout is not None else self.timeout) + max_wait_ms / 1000.0

        def attempt(left: float) -> fr.Frame:
            stream = self._connection().open_stream(M.METHOD_FETCH)
            stream.send(req, end_stream=True)
            try:
                return stream.recv(left)
            except FjordTimeoutError:
                stream.cancel()
                raise

        payload = self._retrying(attempt, wait).payload
        resp = log_pb2.FetchResponse()
        try:
            resp.ParseFromString(payload)
            raw_parts = submessages(payload, 1)
        except (WireError, Exception) as exc:  # noqa: BLE001
            raise ProtocolError("undecodable FetchResponse: %s" % exc) from None
        results: List[FetchResult] = []
        for i, pr in enumerate(resp.partitions):
            want = partitions[i][2] if i < len(partitions) else 0
            err = error_from_proto(pr.error, scope="partition") if pr.HasField("error") and pr.error.code else None
            records: List[ConsumedRecord] = []
            next_offset: Optional[int] = None
            if err is None and i < len(raw_parts):
                s, e = raw_parts[i]
                for rs, re_ in submessages(payload, 6, s, e):
                    recs, nxt = records_from_batch_set(
                        pr.topic, pr.partition, payload, rs, re_, want, check_crcs,
                        expected_offset=want if next_offset is None else next_offset, holding=next_offset is None)
                    records.extend(recs)
                    if nxt is not None:
                        next_offset = nxt
            results.append(FetchResult(pr.topic, pr.partition, records, pr.high_watermark, pr.log_start_offset,
                                       next_offset if next_offset is not None else want, err))
        return results

    def fetch(self, topic: str, partition: int, offset: int, max_wait_ms: int = 500, min_bytes: int = 1,
              max_bytes: int = 0, check_crcs: Optional[bool] = None) -> FetchResult:
        """Fetch one partition from `offset`; raises the partition's error (and BatchIntegrityError
        as fetch_many). Returns a FetchResult whose next_offset is where the next fetch should start."""
        r = self.fetch_many([(topic, partition, offset)], max_wait_ms, min_bytes, max_bytes, check_crcs=check_crcs)[0]
        if r.error is not None:
            raise r.error
        return r

    # ---- subscribe ----
    def subscribe(self, topic: str, partition: int, offset: int, credit_bytes: int = 1 << 20, max_bytes: int = 0,
                  sink: Any = None, check_crcs: Optional[bool] = None, resume_timeout: Optional[float] = None
                  ) -> "Subscription":
        """Open a Subscription: the broker pushes records from `offset` under byte credit. Batches
        are checked as in fetch_many (`check_crcs` default: the client's setting)."""
        return Subscription(self, topic, partition, offset, credit_bytes, max_bytes, sink,
                            self.check_crcs if check_crcs is None else check_crcs, resume_timeout)

    # ---- produce ----
    def producer(self, acks: Union[str, int] = "leader", **kwargs: Any) -> Producer:
        """A Producer (see its docstring for the options: idempotent, linger, delivery_timeout, ...)."""
        return Producer(self, acks=acks, **kwargs)

    def produce(self, topic: str, records: Iterable[Record], partition: Optional[int] = None,
                acks: Union[str, int] = "leader", timeout: Optional[float] = None) -> List[RecordMetadata]:
        """Produce records and wait: returns one RecordMetadata per record (offset -1 with acks none).
        Keyed records without `partition` go to the murmur2 partition; unkeyed ones to one partition."""
        with self.producer(acks=acks) as p:
            futs = [p.send(topic, r, partition=partition) for r in records]
            p.flush(timeout)
        return [f.result() for f in futs]


class _Spent(int):
    """A message's byte count, remembering the stream it came on (see Subscription.grant)."""

    stream: Any

    def __new__(cls, value: int, stream: Any) -> "_Spent":
        obj = super().__new__(cls, value)
        obj.stream = stream
        return obj


class Subscription:
    """A Log.Subscribe stream. Iterate it, or call poll(), to get ConsumedRecords in offset order.

    Credit: the request grants `credit_bytes`; every pushed message's RecordBatchSet size is given
    back (SubscribeCredit) once the application has taken its records from poll(), so the broker
    never has more than about `credit_bytes` (+ one batch) unread in flight.

    With `sink` (a queue.Queue), messages are put there as ("records", subscription, [records],
    spent bytes) or ("error", subscription, exception) instead, so one thread can merge several
    subscriptions; the sink's reader must call `grant(spent)` after consuming a message.

    Every batch is checked (CRC32C unless `check_crcs` is false; the first holds `offset`; each
    starts where the previous one, in this message or an earlier one, ended). A message with a
    batch that fails ends the subscription with BatchIntegrityError (CrcMismatchError,
    OffsetGapError) and none of its records is delivered; records of earlier messages were.

    Resuming: when the connection is lost or the broker ends the stream with a retriable error
    (BROKER_SHUTTING_DOWN, NOT_LEADER, ...), `poll()` subscribes again, on a new connection if
    needed, from `next_offset`, the first offset it has not received (records received before
    the loss are still handed out, in order: nothing is skipped or repeated). It keeps trying with
    backoff for `resume_timeout` seconds (default: the client's timeout), then raises the error.
    A sink's reader does the same by calling `resume()` when `can_resume(error)` is true.
    """

    def __init__(self, client: Client, topic: str, partition: int, offset: int, credit_bytes: int, max_bytes: int,
                 sink: Any, check_crcs: bool, resume_timeout: Optional[float] = None) -> None:
        if credit_bytes <= 0:
            raise ValueError("credit_bytes must be positive")
        self.client = client
        self.topic, self.partition = topic, partition
        self.next_offset = offset
        self.high_watermark: Optional[int] = None
        self.log_start_offset: Optional[int] = None
        self.check_crcs = check_crcs
        self.credit_bytes, self.max_bytes = credit_bytes, max_bytes
        self.resume_timeout = client.timeout if resume_timeout is None else resume_timeout
        self.resumes = 0  # times the subscription was opened again
        self._start_offset = offset
        self._continues = False  # a batch has arrived: the next must start at next_offset
        self._sink = sink
        self._queue: Optional["queue.Queue[Any]"] = queue.Queue() if sink is None else None
        self._buffer: "collections.deque[ConsumedRecord]" = collections.deque()
        self._closed = False
        self.error: Optional[BaseException] = None
        self.stream: Any = None
        self._open(client._connection())

    def _open(self, conn: Connection) -> None:
        """Subscribe from next_offset on `conn` (the first time: the requested offset)."""
        self._start_offset = self.next_offset
        self._continues = False
        stream = conn.open_stream(M.METHOD_SUBSCRIBE, on_frame=self._on_frame)
        self.stream = stream
        stream.send(log_pb2.SubscribeRequest(topic=self.topic, partition=self.partition, offset=self.next_offset,
                                             leader_epoch=NO_EPOCH, credit_bytes=self.credit_bytes,
                                             max_bytes=self.max_bytes))

    def can_resume(self, error: BaseException) -> bool:
        """Whether a subscription that ended with `error` may be opened again (a lost connection or
        a retriable broker error other than UNKNOWN_TOPIC_OR_PARTITION)."""
        return not self._closed and is_retriable(error)

    def resume(self) -> None:
        """Subscribe again from next_offset, reconnecting if needed, retrying with backoff for
        `resume_timeout` s (then the last error is raised)."""
        self.client._retrying(lambda _left: self._open(self.client._connection()), self.resume_timeout)
        self.resumes += 1

    def _on_frame(self, stream: Any, item: Any) -> None:  # I/O thread
        if stream is not self.stream:
            return  # a stream this subscription replaced
        if isinstance(item, BaseException):
            self._emit(("error", self, item))
            return
        if item.flags & fr.ERROR:
            self._emit(("error", self, stream.error))
            return
        try:
            resp = log_pb2.SubscribeResponse.FromString(item.payload)
            spent = 0
            records: List[ConsumedRecord] = []
            next_offset, continues = self.next_offset, self._continues
            for s, e in submessages(item.payload, 1):
                spent += e - s
                recs, nxt = records_from_batch_set(self.topic, self.partition, item.payload, s, e,
                                                   self._start_offset, self.check_crcs,
                                                   expected_offset=next_offset, holding=not continues)
                records.extend(recs)
                if nxt is not None:
                    next_offset, continues = nxt, True
            self.next_offset, self._continues = next_offset, continues
            self.high_watermark = resp.high_watermark
            self.log_start_offset = resp.log_start_offset
        except Exception as exc:  # noqa: BLE001 - corrupt batch or bad message: end the subscription
            stream.cancel()
            self._emit(("error", self, exc if isinstance(exc, ValueError) else ProtocolError(str(exc))))
            return
        self._emit(("records", self, records, _Spent(spent, stream)))

    def _emit(self, item: Any) -> None:
        target = self._sink if self._sink is not None else self._queue
        assert target is not None
        target.put(item)

    def grant(self, nbytes: int) -> None:
        """Add `nbytes` of credit (SubscribeCredit). The byte counts of messages from a stream the
        subscription has since replaced (resume) are not granted to the new one."""
        if getattr(nbytes, "stream", self.stream) is not self.stream:
            return
        if nbytes > 0 and not self.stream.closed:
            try:
                self.stream.send(log_pb2.SubscribeCredit(bytes=nbytes))
            except FjordError:
                pass

    def poll(self, timeout: Optional[float] = None) -> List[ConsumedRecord]:
        """Records available within `timeout` s (possibly []), raising the stream's error if it ended."""
        if self._queue is None:
            raise RuntimeError("this subscription delivers to its sink")
        if self._buffer:
            out = list(self._buffer)
            self._buffer.clear()
            return out
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return []
            if item[0] == "error":
                if self.can_resume(item[2]):
                    self.resume()
                    continue
                self.error = item[2]
                raise item[2]
            _, _, records, spent = item
            self.grant(spent)
            if records:
                out = list(records)
                return out
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def __iter__(self) -> Iterator[ConsumedRecord]:
        while True:
            for r in self.poll():
                yield r

    def close(self) -> None:
        """CANCEL the stream."""
        self._closed = True
        self.stream.cancel()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Client", "Producer", "Subscription", "Record", "ConsumedRecord", "FetchResult", "RecordMetadata",
           "RecordFuture", "EARLIEST", "LATEST", "ACKS", "BrokerError", "iter_fields"]
