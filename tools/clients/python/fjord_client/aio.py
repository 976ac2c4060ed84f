"""asyncio API: `AsyncClient`, `AsyncProducer`, `AsyncConsumer`.

    async with AsyncClient("127.0.0.1:7420", ca="ca.pem") as client:
        await client.create_topic("events", partitions=3)
        async with client.producer(acks="durable") as producer:
            md = await producer.send_and_wait("events", Record(b"hello", key=b"user-1"))
        async with client.consumer("events", offset=EARLIEST) as consumer:
            async for record in consumer:
                print(record.partition, record.offset, record.value)

It runs on the threaded client: the connection's I/O thread does the socket work, answers are
handed to the event loop with `call_soon_threadsafe`, and calls that may wait on the network
(connecting, admin and metadata calls, fetch, flush) run in the loop's default executor, so no
coroutine ever blocks the loop. Everything the threaded API does (TLS, idempotence, reconnects,
retries, subscriptions resuming from their next offset, CRC checks) applies unchanged.
"""
import asyncio
import functools
from typing import Any, AsyncIterator, Dict, Iterable, List, Optional, Sequence, Tuple

from .batch import ConsumedRecord, Record
from .client import EARLIEST, LATEST, Client, FetchResult, Subscription
from .producer import Producer, RecordFuture, RecordMetadata


class AsyncClient:
    """An asyncio client; the arguments are those of `Client`. Use `async with`, or `await
    connect()` and `await close()`."""

    def __init__(self, broker: str = "127.0.0.1:7420", **kwargs: Any) -> None:
        self._args = (broker,)
        self._kwargs = kwargs
        self._client: Optional[Client] = None

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    @property
    def client(self) -> Client:
        """The threaded Client underneath (after connect())."""
        if self._client is None:
            raise RuntimeError("AsyncClient is not connected: use `async with` or `await connect()`")
        return self._client

    async def connect(self) -> "AsyncClient":
        """Connect (TLS and handshake) without blocking the event loop."""
        if self._client is None:
            self._client = await self._run(Client, *self._args, **self._kwargs)
        return self

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self._run(client.close)

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ---- admin, metadata, offsets, fetch -------------------------------------------------------
    async def create_topic(self, name: str, partitions: int = 1, configs: Optional[Dict[str, str]] = None) -> Any:
        return await self._run(self.client.create_topic, name, partitions, configs)

    async def delete_topic(self, name: str) -> None:
        await self._run(self.client.delete_topic, name)

    async def list_topics(self) -> List[str]:
        names: List[str] = await self._run(self.client.list_topics)
        return names

    async def describe_topic(self, name: str) -> Any:
        return await self._run(self.client.describe_topic, name)

    async def partition_count(self, topic: str, refresh: bool = False) -> int:
        n: int = await self._run(self.client.partition_count, topic, refresh)
        return n

    async def list_offsets(self, requests: Sequence[Tuple[str, int, int]]) -> List[int]:
        offsets: List[int] = await self._run(self.client.list_offsets, requests)
        return offsets

    async def fetch(self, topic: str, partition: int, offset: int, **kwargs: Any) -> FetchResult:
        result: FetchResult = await self._run(self.client.fetch, topic, partition, offset, **kwargs)
        return result

    # ---- produce and consume -------------------------------------------------------------------
    def producer(self, acks: str = "leader", **kwargs: Any) -> "AsyncProducer":
        """An AsyncProducer (`async with client.producer(...) as p`); options as Producer's."""
        return AsyncProducer(self, acks=acks, **kwargs)

    async def produce(self, topic: str, records: Iterable[Record], partition: Optional[int] = None,
                      acks: str = "leader") -> List[RecordMetadata]:
        """Produce records and wait for every acknowledgement."""
        async with self.producer(acks=acks) as p:
            futures = [await p.send(topic, r, partition=partition) for r in records]
            return list(await asyncio.gather(*futures))

    def consumer(self, topic: str, partitions: Optional[Sequence[int]] = None, offset: int = LATEST,
                 **kwargs: Any) -> "AsyncConsumer":
        """An AsyncConsumer of `partitions` (default: all) from `offset` (EARLIEST, LATEST or an
        offset, applied to each); `async for record in consumer`. kwargs as Client.subscribe's."""
        return AsyncConsumer(self, topic, partitions, offset, **kwargs)


class AsyncProducer:
    """The asyncio face of `Producer` (idempotent by default, batching, retries).

    `await send(...)` queues a record and returns an asyncio.Future of its RecordMetadata, so
    many records can be in flight (`await asyncio.gather(*futures)`); `await send_and_wait(...)`
    waits for the acknowledgement itself."""

    def __init__(self, client: AsyncClient, **kwargs: Any) -> None:
        self._client = client
        self._kwargs = kwargs
        self._producer: Optional[Producer] = None

    async def start(self) -> "AsyncProducer":
        if self._producer is None:
            self._producer = await self._client._run(self._client.client.producer, **self._kwargs)
        return self

    async def __aenter__(self) -> "AsyncProducer":
        return await self.start()

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        if self._producer is None:
            return
        if exc_type is None:
            await self.close()
        else:
            self._producer.abort()

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("AsyncProducer is not started: use `async with` or `await start()`")
        return self._producer

    async def send(self, topic: str, record: Record, partition: Optional[int] = None) -> "asyncio.Future[RecordMetadata]":
        """Queue `record`; returns a Future of its RecordMetadata (the error if it failed)."""
        p = self.producer
        client = self._client.client
        if partition is None and topic not in client._partition_counts:
            await self._client._run(client.partition_count, topic)  # metadata off the loop, once
        loop = asyncio.get_running_loop()
        done: "asyncio.Future[RecordMetadata]" = loop.create_future()
        rf = p.send(topic, record, partition=partition)

        def on_done(f: RecordFuture) -> None:
            loop.call_soon_threadsafe(_settle, done, f)

        rf.add_done_callback(on_done)
        return done

    async def send_and_wait(self, topic: str, record: Record, partition: Optional[int] = None) -> RecordMetadata:
        """Send one record now (its batch goes at once) and wait for its acknowledgement."""
        fut = await self.send(topic, record, partition)
        self.producer.send_pending()
        return await fut

    async def flush(self, timeout: Optional[float] = None) -> None:
        await self._client._run(self.producer.flush, timeout)

    async def close(self, timeout: Optional[float] = None) -> None:
        if self._producer is not None:
            await self._client._run(self._producer.close, timeout)


def _settle(done: "asyncio.Future[RecordMetadata]", rf: RecordFuture) -> None:
    if done.cancelled():
        return
    exc = rf.exception(0)
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(rf.result(0))


class _LoopSink:
    """The `sink` of threaded Subscriptions: messages go to an asyncio.Queue, thread-safely."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[Any]") -> None:
        self._loop, self._queue = loop, queue

    def put(self, item: Any) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)


class AsyncConsumer:
    """Subscriptions to some partitions of a topic, merged: `async for record in consumer`.

    Each partition's records come in offset order (partitions interleave). Credit is given back
    as records are handed out, so at most about `credit_bytes` per partition wait unread. A lost
    connection or a broker restart resumes each subscription from the next offset it has not
    handed out; other errors (a damaged batch, a deleted topic) are raised from the iteration.
    """

    def __init__(self, client: AsyncClient, topic: str, partitions: Optional[Sequence[int]], offset: int,
                 **kwargs: Any) -> None:
        self._client = client
        self.topic = topic
        self._partitions = partitions
        self._offset = offset
        self._kwargs = kwargs
        self._subs: List[Subscription] = []
        self._queue: "asyncio.Queue[Any]" = asyncio.Queue()
        self._ready: List[ConsumedRecord] = []
        self._started = False

    async def start(self) -> "AsyncConsumer":
        if self._started:
            return self
        c = self._client.client
        parts = list(self._partitions) if self._partitions is not None else \
            list(range(await self._client.partition_count(self.topic, refresh=True)))
        if self._offset in (EARLIEST, LATEST):
            offsets = await self._client.list_offsets([(self.topic, p, self._offset) for p in parts])
        else:
            offsets = [self._offset] * len(parts)
        sink = _LoopSink(asyncio.get_running_loop(), self._queue)
        for p, off in zip(parts, offsets):
            sub = await self._client._run(c.subscribe, self.topic, p, off, sink=sink, **self._kwargs)
            self._subs.append(sub)
        self._started = True
        return self

    async def __aenter__(self) -> "AsyncConsumer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Cancel every subscription."""
        for s in self._subs:
            s.close()
        self._subs = []

    def __aiter__(self) -> AsyncIterator[ConsumedRecord]:
        return self

    async def __anext__(self) -> ConsumedRecord:
        if not self._started:
            await self.start()
        while not self._ready:
            item = await self._queue.get()
            sub = item[1]
            if item[0] == "error":
                if sub.can_resume(item[2]):
                    await self._client._run(sub.resume)
                    continue
                raise item[2]
            _, _, records, spent = item
            sub.grant(spent)
            self._ready.extend(reversed(records))
        return self._ready.pop()

    async def getmany(self, timeout: float = 1.0) -> List[ConsumedRecord]:
        """The records available now, waiting up to `timeout` s for the first ([] if none)."""
        out: List[ConsumedRecord] = []
        try:
            out.append(await asyncio.wait_for(self.__anext__(), timeout))
        except asyncio.TimeoutError:
            return out
        out.extend(reversed(self._ready))
        self._ready.clear()
        return out


__all__ = ["AsyncClient", "AsyncProducer", "AsyncConsumer"]
