"""The Fjord client: topics, metadata, produce, fetch, subscribe, list offsets (protocol.md §5-6)."""
import collections
import itertools
import queue
import threading
import time
from concurrent.futures import Future

from . import frames as fr
from .batch import ConsumedRecord, Record, build_batch, records_from_batch_set
from .connection import Connection, make_ssl_context, parse_hostport
from .errors import (BrokerError, ConnectionClosedError, FjordError, FjordTimeoutError, ProtocolError,
                     error_from_proto)
from .fjord.v1 import connection_pb2, log_pb2, topics_pb2
from .murmur2 import partition_for_key
from .wire import WireError, iter_fields, submessages

M = connection_pb2  # method ids: M.METHOD_PRODUCE, ...

EARLIEST = -2
LATEST = -1
NO_EPOCH = -1

ACKS = {
    "none": log_pb2.ACKS_NONE,
    "leader": log_pb2.ACKS_LEADER,
    "durable": log_pb2.ACKS_DURABLE,
}

FetchResult = collections.namedtuple(
    "FetchResult", "topic partition records high_watermark log_start_offset next_offset error")
RecordMetadata = collections.namedtuple("RecordMetadata", "topic partition offset")


def _acks_value(acks):
    if isinstance(acks, int):
        return acks
    try:
        return ACKS[acks]
    except KeyError:
        raise ValueError("acks must be one of none, leader, durable") from None


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

    def __init__(self, broker="127.0.0.1:7420", ca=None, cert=None, key=None, plaintext=False,
                 server_hostname=None, client_id="fjord-python", timeout=30.0, ssl_context=None,
                 check_crcs=True):
        host, port = parse_hostport(broker)
        if plaintext:
            ctx = None
        else:
            ctx = ssl_context or make_ssl_context(ca=ca, cert=cert, key=key)
        self.timeout = timeout
        self.check_crcs = bool(check_crcs)
        self.conn = Connection(host, port, ssl_context=ctx, server_hostname=server_hostname,
                               client_id=client_id, connect_timeout=min(timeout, 30.0))
        self.handshake = self.conn.handshake
        self._partition_counts = {}

    # ---- lifecycle ----
    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def cluster_id(self):
        return self.handshake.cluster_id

    def _call(self, method, request, response_type, timeout=None):
        return self.conn.call(method, request, response_type, self.timeout if timeout is None else timeout)

    # ---- topics ----
    def create_topic(self, name, partitions=1, configs=None):
        """Create a topic; returns its TopicInfo. TopicAlreadyExistsError if it exists."""
        req = topics_pb2.CreateTopicRequest(name=name, partitions=partitions, configs=configs or {})
        info = self._call(M.METHOD_CREATE_TOPIC, req, topics_pb2.CreateTopicResponse).topic
        self._partition_counts[name] = len(info.partitions)
        return info

    def delete_topic(self, name):
        self._call(M.METHOD_DELETE_TOPIC, topics_pb2.DeleteTopicRequest(name=name), topics_pb2.DeleteTopicResponse)
        self._partition_counts.pop(name, None)

    def list_topics(self):
        """All topic names, sorted."""
        return list(self._call(M.METHOD_LIST_TOPICS, topics_pb2.ListTopicsRequest(), topics_pb2.ListTopicsResponse).names)

    def describe_topic(self, name):
        """The topic's TopicInfo (partitions with leader, epoch, log start, high watermark; configs)."""
        info = self._call(M.METHOD_DESCRIBE_TOPIC, topics_pb2.DescribeTopicRequest(name=name),
                          topics_pb2.DescribeTopicResponse).topic
        self._partition_counts[name] = len(info.partitions)
        return info

    def create_partitions(self, name, total_partitions):
        req = topics_pb2.CreatePartitionsRequest(name=name, total_partitions=total_partitions)
        info = self._call(M.METHOD_CREATE_PARTITIONS, req, topics_pb2.CreatePartitionsResponse).topic
        self._partition_counts[name] = len(info.partitions)
        return info

    def alter_topic_config(self, name, set=None, remove=()):  # noqa: A002 - mirrors the proto field
        req = topics_pb2.AlterTopicConfigRequest(name=name, set=set or {}, remove=list(remove))
        return self._call(M.METHOD_ALTER_TOPIC_CONFIG, req, topics_pb2.AlterTopicConfigResponse).topic

    def get_metadata(self, topics=()):
        """GetMetadataResponse; a missing topic has `error` set in its TopicMetadata (not raised)."""
        return self._call(M.METHOD_GET_METADATA, topics_pb2.GetMetadataRequest(topics=list(topics)),
                          topics_pb2.GetMetadataResponse)

    def partition_count(self, topic, refresh=False):
        if refresh or topic not in self._partition_counts:
            md = self.get_metadata([topic])
            tm = md.topics[0]
            if tm.HasField("error") and tm.error.code:
                raise error_from_proto(tm.error, scope="partition")
            self._partition_counts[topic] = len(tm.topic.partitions)
        return self._partition_counts[topic]

    # ---- offsets ----
    def list_offsets(self, requests):
        """requests: [(topic, partition, timestamp)] with timestamp EARLIEST (-2), LATEST (-1) or ms.
        Returns the offsets in order; -1 for a timestamp after every record. Raises a partition's error."""
        req = log_pb2.ListOffsetsRequest(partitions=[
            log_pb2.ListOffsetsPartition(topic=t, partition=p, timestamp=ts, leader_epoch=NO_EPOCH)
            for t, p, ts in requests])
        resp = self._call(M.METHOD_LIST_OFFSETS, req, log_pb2.ListOffsetsResponse)
        out = []
        for r in resp.partitions:
            if r.HasField("error") and r.error.code:
                raise error_from_proto(r.error, scope="partition")
            out.append(r.offset)
        return out

    def list_offset(self, topic, partition, timestamp):
        return self.list_offsets([(topic, partition, timestamp)])[0]

    def earliest_offset(self, topic, partition):
        return self.list_offset(topic, partition, EARLIEST)

    def latest_offset(self, topic, partition):
        return self.list_offset(topic, partition, LATEST)

    # ---- fetch ----
    def fetch_many(self, partitions, max_wait_ms=500, min_bytes=1, max_bytes=0, partition_max_bytes=0,
                   check_crcs=None, timeout=None):
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
        stream = self.conn.open_stream(M.METHOD_FETCH)
        stream.send(req, end_stream=True)
        wait = (timeout if timeout is not None else self.timeout) + max_wait_ms / 1000.0
        try:
            frame = stream.recv(wait)
        except FjordTimeoutError:
            stream.cancel()
            raise
        payload = frame.payload
        resp = log_pb2.FetchResponse()
        try:
            resp.ParseFromString(payload)
            raw_parts = submessages(payload, 1)
        except (WireError, Exception) as exc:  # noqa: BLE001
            raise ProtocolError("undecodable FetchResponse: %s" % exc) from None
        results = []
        for i, pr in enumerate(resp.partitions):
            want = partitions[i][2] if i < len(partitions) else 0
            err = error_from_proto(pr.error, scope="partition") if pr.HasField("error") and pr.error.code else None
            records, next_offset = [], None
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

    def fetch(self, topic, partition, offset, max_wait_ms=500, min_bytes=1, max_bytes=0, check_crcs=None):
        """Fetch one partition from `offset`; raises the partition's error (and BatchIntegrityError
        as fetch_many). Returns a FetchResult whose next_offset is where the next fetch should start."""
        r = self.fetch_many([(topic, partition, offset)], max_wait_ms, min_bytes, max_bytes, check_crcs=check_crcs)[0]
        if r.error is not None:
            raise r.error
        return r

    # ---- subscribe ----
    def subscribe(self, topic, partition, offset, credit_bytes=1 << 20, max_bytes=0, sink=None, check_crcs=None):
        """Open a Subscription: the broker pushes records from `offset` under byte credit. Batches
        are checked as in fetch_many (`check_crcs` default: the client's setting)."""
        return Subscription(self, topic, partition, offset, credit_bytes, max_bytes, sink,
                            self.check_crcs if check_crcs is None else check_crcs)

    # ---- produce ----
    def producer(self, acks="leader", **kwargs):
        return Producer(self, acks=acks, **kwargs)

    def produce(self, topic, records, partition=None, acks="leader", timeout=None):
        """Produce records and wait: returns one RecordMetadata per record (offset -1 with acks none).
        Keyed records without `partition` go to the murmur2 partition; unkeyed ones to one partition."""
        with self.producer(acks=acks) as p:
            futs = [p.send(topic, r, partition=partition) for r in records]
            p.flush(timeout)
        return [f.result() for f in futs]


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
    """

    def __init__(self, client, topic, partition, offset, credit_bytes, max_bytes, sink, check_crcs):
        if credit_bytes <= 0:
            raise ValueError("credit_bytes must be positive")
        self.client = client
        self.topic, self.partition = topic, partition
        self.next_offset = offset
        self.high_watermark = None
        self.log_start_offset = None
        self.check_crcs = check_crcs
        self._start_offset = offset
        self._continues = False  # a batch has arrived: the next must start at next_offset
        self._sink = sink
        self._queue = queue.Queue() if sink is None else None
        self._buffer = collections.deque()
        self.error = None
        self.stream = client.conn.open_stream(M.METHOD_SUBSCRIBE, on_frame=self._on_frame)
        self.stream.send(log_pb2.SubscribeRequest(topic=topic, partition=partition, offset=offset,
                                                  leader_epoch=NO_EPOCH, credit_bytes=credit_bytes,
                                                  max_bytes=max_bytes))

    def _on_frame(self, stream, item):  # I/O thread
        if isinstance(item, BaseException):
            self._emit(("error", self, item))
            return
        if item.flags & fr.ERROR:
            self._emit(("error", self, stream.error))
            return
        try:
            resp = log_pb2.SubscribeResponse.FromString(item.payload)
            spent = 0
            records = []
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
        self._emit(("records", self, records, spent))

    def _emit(self, item):
        (self._sink if self._sink is not None else self._queue).put(item)

    def grant(self, nbytes):
        """Add `nbytes` of credit (SubscribeCredit)."""
        if nbytes > 0 and not self.stream.closed:
            try:
                self.stream.send(log_pb2.SubscribeCredit(bytes=nbytes))
            except FjordError:
                pass

    def poll(self, timeout=None):
        """Records available within `timeout` s (possibly []), raising the stream's error if it ended."""
        if self._sink is not None:
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
                self.error = item[2]
                raise item[2]
            _, _, records, spent = item
            self.grant(spent)
            if records:
                return records
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def __iter__(self):
        while True:
            for r in self.poll():
                yield r

    def close(self):
        """CANCEL the stream."""
        self.stream.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RecordFuture:
    """The outcome of one record: result() -> RecordMetadata, or raises the batch's error."""

    def __init__(self, batch_future, topic, partition, index, producer=None):
        self._f = batch_future
        self.topic, self.partition, self.index = topic, partition, index
        self._producer = producer

    def _send_if_queued(self):
        if self._producer is not None and not self._f.done():
            if self._producer.acks == log_pb2.ACKS_NONE:
                self._producer.flush()  # acks none: known only once the broker ends the stream
            else:
                self._producer._send_if_queued(self.topic, self.partition, self._f)

    def result(self, timeout=None):
        """Waits for the answer; a record still queued in the producer is sent first."""
        self._send_if_queued()
        base = self._f.result(timeout)
        return RecordMetadata(self.topic, self.partition, -1 if base is None else base + self.index)

    def exception(self, timeout=None):
        self._send_if_queued()
        return self._f.exception(timeout)

    def done(self):
        return self._f.done()


class Producer:
    """Batches records per partition and produces them on one Log.Produce stream.

    send() queues a record and returns a RecordFuture; a partition's batch goes out when it reaches
    `batch_bytes`, on send_pending(), flush() or close(). Answers are matched by request_id. With
    acks none the broker answers only failures, so those futures complete (offset -1) when the
    stream ends (close()). At most `max_outstanding_bytes` of unanswered batches are in flight
    (send blocks), as protocol.md §7 asks.
    """

    def __init__(self, client, acks="leader", batch_bytes=256 * 1024, max_outstanding_bytes=None,
                 timeout=None):
        self.client = client
        self.acks = _acks_value(acks)
        hs = client.handshake
        limit = hs.max_batch_bytes or (4 << 20)
        self.batch_bytes = max(1, min(batch_bytes, limit // 2))
        inflight = hs.max_in_flight_bytes or (64 << 20)
        self.max_outstanding = max_outstanding_bytes or max(1 << 20, min(inflight // 2, 32 << 20))
        self.timeout = client.timeout if timeout is None else timeout
        self._lock = threading.Condition()  # pending answers and outstanding bytes (shared with the I/O thread)
        self._op = threading.RLock()  # serializes send/flush/close between application threads
        self._stream = None
        self._ids = itertools.count(1)
        self._pending = {}  # request_id -> (Future, nbytes, stream)
        self._outstanding = 0
        self._acc = collections.OrderedDict()  # (topic, partition) -> [records, est bytes, [Future]]
        self._sticky = {}
        self._rr = {}
        self._ended = None  # Future completed when the broker ends the stream
        self._closed = False

    # ---- partitioning ----
    def partition_for(self, topic, record):
        with self._op:
            return self._partition_for(topic, record)

    def _partition_for(self, topic, record):
        n = self.client.partition_count(topic)
        if record.key is not None:
            return partition_for_key(record.key, n)
        p = self._sticky.get(topic)
        if p is None or p >= n:
            p = self._rr.get(topic, -1) + 1
            p %= n
            self._rr[topic] = p
            self._sticky[topic] = p
        return p

    # ---- sending ----
    def send(self, topic, record, partition=None):
        """Queue `record` (a Record) for `topic`; returns a RecordFuture."""
        with self._op:
            return self._send(topic, record, partition)

    def _send(self, topic, record, partition):
        if self._closed:
            raise FjordError("producer is closed")
        if partition is None:
            partition = self._partition_for(topic, record)
        k = (topic, partition)
        size = _estimate(record)
        acc = self._acc.get(k)
        if acc is not None and acc[1] + size > self.batch_bytes:
            self._send_acc(k)
            acc = None
        if acc is None:
            acc = self._acc[k] = [[], 0, Future()]
        acc[0].append(record)
        acc[1] += size
        fut = RecordFuture(acc[2], topic, partition, len(acc[0]) - 1, self)
        if acc[1] >= self.batch_bytes:
            self._send_acc(k)
        return fut

    def send_batch(self, topic, partition, records):
        """Produce `records` as one batch now; returns a Future of the batch's base offset (None with
        acks none)."""
        fut = Future()
        with self._op:
            self._send_request(topic, partition, list(records), fut)
        return fut

    def send_pending(self):
        """Send every partly filled batch now (without waiting for answers)."""
        with self._op:
            for k in list(self._acc):
                self._send_acc(k)

    def _send_if_queued(self, topic, partition, batch_future):
        with self._op:
            acc = self._acc.get((topic, partition))
            if acc is not None and acc[2] is batch_future:
                self._send_acc((topic, partition))

    def _send_acc(self, k):
        records, _, fut = self._acc.pop(k)
        if self._sticky.get(k[0]) == k[1]:
            self._sticky.pop(k[0], None)  # next unkeyed batch goes to the next partition
        self._send_request(k[0], k[1], records, fut)

    def _ensure_stream(self):
        # A stream that ended with an error cannot take more requests; a new one can.
        if self._stream is None or self._stream.closed:
            self._ended = Future()
            self._stream = self.client.conn.open_stream(M.METHOD_PRODUCE, on_frame=self._on_frame)
            self._stream._fjord_ended = self._ended
        return self._stream

    def _send_request(self, topic, partition, records, fut):
        try:
            batch = build_batch(records)
        except Exception as exc:  # noqa: BLE001
            fut.set_exception(exc)
            return
        n = len(batch)
        with self._lock:
            stream = self._ensure_stream()
            if self.acks != log_pb2.ACKS_NONE:
                deadline = time.monotonic() + self.timeout
                while self._outstanding and self._outstanding + n > self.max_outstanding and not stream.closed:
                    if not self._lock.wait(max(0.0, deadline - time.monotonic())):
                        if time.monotonic() >= deadline:
                            raise FjordTimeoutError("produce answers outstanding for %.1f s" % self.timeout)
            if stream.closed:
                err = stream.error or ConnectionClosedError("produce stream ended")
                fut.set_exception(err)
                return
            rid = next(self._ids)
            self._pending[rid] = (fut, n if self.acks != log_pb2.ACKS_NONE else 0, stream)
            if self.acks != log_pb2.ACKS_NONE:
                self._outstanding += n
        req = log_pb2.ProduceRequest(topic=topic, partition=partition, leader_epoch=NO_EPOCH, acks=self.acks,
                                     request_id=rid, batch=batch)
        try:
            stream.send(req)
        except FjordError as exc:
            with self._lock:
                self._pending.pop(rid, None)
            fut.set_exception(exc)

    def _on_frame(self, stream, item):  # I/O thread
        if isinstance(item, BaseException) or item.flags & fr.ERROR:
            err = item if isinstance(item, BaseException) else stream.error
            self._finish_all(err, stream)
            return
        if item.payload:
            try:
                resp = log_pb2.ProduceResponse.FromString(item.payload)
            except Exception as exc:  # noqa: BLE001
                self._finish_all(ProtocolError("undecodable ProduceResponse: %s" % exc), stream)
                stream.cancel()
                return
            with self._lock:
                entry = self._pending.pop(resp.request_id, None)
                if entry is not None:
                    self._outstanding -= entry[1]
                    self._lock.notify_all()
            if entry is not None:
                if resp.HasField("error") and resp.error.code:
                    entry[0].set_exception(error_from_proto(resp.error, scope="partition"))
                else:
                    entry[0].set_result(resp.base_offset)
        if item.flags & fr.END_STREAM:
            # Every request was answered; those still pending were acks-none successes.
            self._finish_all(None, stream)

    def _finish_all(self, err, stream):
        """Complete every request still pending on `stream` (with `err`, or as acks-none successes)."""
        with self._lock:
            rids = [rid for rid, (_, _, s) in self._pending.items() if s is stream]
            pending = [self._pending.pop(rid) for rid in rids]
            self._outstanding -= sum(n for _, n, _ in pending)
            self._lock.notify_all()
            ended = getattr(stream, "_fjord_ended", None)
        for fut, _, _ in pending:
            if not fut.done():
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)
        if ended is not None and not ended.done():
            ended.set_result(err)

    def flush(self, timeout=None):
        """Send pending batches and wait for the answers to every request sent so far (with acks none
        this ends the stream; a later send opens a new one)."""
        self.send_pending()
        timeout = self.timeout if timeout is None else timeout
        if self.acks == log_pb2.ACKS_NONE:
            self._end_stream(timeout)
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            futs = [f for f, _, _ in self._pending.values()]
        for f in futs:
            try:
                f.exception(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - concurrent TimeoutError
                raise FjordTimeoutError("produce answers did not arrive within %.1f s" % timeout) from None

    def _end_stream(self, timeout):
        with self._op:  # detach first: requests sent from now on go to a new stream
            stream, ended = self._stream, self._ended
            self._stream = None
            if stream is None:
                return
            if not stream.closed:
                try:
                    stream.send(b"", end_stream=True)
                except FjordError as exc:
                    self._finish_all(exc, stream)
        try:
            ended.result(timeout)
        except Exception:  # noqa: BLE001
            raise FjordTimeoutError("the broker did not end the produce stream within %.1f s" % timeout) from None

    def close(self, timeout=None):
        """Send everything, end the stream (END_STREAM) and wait until the broker ends it."""
        if self._closed:
            return
        self.send_pending()
        self._end_stream(self.timeout if timeout is None else timeout)
        with self._op:
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            if self._stream is not None:
                self._stream.cancel()


def _estimate(record):
    n = 16 + (len(record.key) if record.key is not None else 0) + (len(record.value) if record.value is not None else 0)
    for k, v in record.headers:
        n += 8 + len(k.encode("utf-8")) + (len(v) if v is not None else 0)
    return n


__all__ = ["Client", "Producer", "Subscription", "Record", "ConsumedRecord", "FetchResult", "RecordMetadata",
           "RecordFuture", "EARLIEST", "LATEST", "ACKS", "BrokerError", "iter_fields"]
