"""The asyncio API against a real broker (mutual TLS, ephemeral port): AsyncClient admin calls,
AsyncProducer (idempotent by default) with many records in flight, AsyncConsumer over every
partition from the earliest offset, and a live record arriving while the consumer waits."""
import asyncio
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pkgpath  # noqa: F401,E402 - the source tree or the installed package

from broker_harness import require_broker  # noqa: E402

from fjord_client import AsyncClient, Record, errors  # noqa: E402
from fjord_client.client import EARLIEST  # noqa: E402

BROKER = None


def setUpModule():
    global BROKER
    BROKER = require_broker(mutual_tls=True)


def tearDownModule():
    if BROKER is not None:
        BROKER.cleanup()


def connect():
    return AsyncClient(BROKER.addr, ca=BROKER.ca, cert=BROKER.cert, key=BROKER.key, timeout=30)


class AsyncApiTest(unittest.TestCase):
    def test_produce_and_consume(self):
        async def main():
            async with connect() as client:
                await client.create_topic("aio", partitions=3)
                self.assertIn("aio", await client.list_topics())
                async with client.producer(acks="durable") as producer:
                    self.assertTrue(producer.producer.idempotent)
                    futures = [await producer.send("aio", Record(b"v%d" % i, key=b"k%d" % (i % 7)))
                               for i in range(300)]
                    acks = await asyncio.gather(*futures)
                self.assertEqual(len({(a.partition, a.offset) for a in acks}), 300)
                got = {}
                async with client.consumer("aio", offset=EARLIEST) as consumer:
                    async for rec in consumer:
                        got[(rec.partition, rec.offset)] = rec.value
                        if len(got) == 300:
                            break
                    # A record produced now reaches the waiting consumer.
                    async with client.producer() as producer:
                        live = await producer.send_and_wait("aio", Record(b"live", key=b"k0"))
                    rec = await asyncio.wait_for(consumer.__anext__(), 30)
                    self.assertEqual((rec.partition, rec.offset, rec.value), (live.partition, live.offset, b"live"))
                for i, a in enumerate(acks):
                    self.assertEqual(got[(a.partition, a.offset)], b"v%d" % i)
                with self.assertRaises(errors.UnknownTopicOrPartitionError):
                    await client.describe_topic("aio-missing")

        asyncio.run(asyncio.wait_for(main(), 120))


if __name__ == "__main__":
    unittest.main()
