"""fjord_client: a Python client for the Fjord commit-log broker.

Written from docs/protocol.md, docs/storage-format.md and proto/fjord/v1 alone. Needs only the
standard library (ssl, socket, threading) and the `protobuf` runtime. Generated code lives in
fjord_client/fjord/v1 (tools/clients/python/codegen.sh).
"""
from .aio import AsyncClient, AsyncConsumer, AsyncProducer
from .batch import ConsumedRecord, Header, Record, build_batch, decode_batch
from .client import (ACKS, EARLIEST, LATEST, Client, FetchResult, Producer, RecordFuture, RecordMetadata,
                     Subscription)
from .connection import Connection, make_ssl_context
from .crc32c import crc32c
from .errors import *  # noqa: F401,F403 - one exception class per error code
from .errors import __all__ as _errors_all
from .murmur2 import murmur2, partition_for_key

from ._version import __version__
__all__ = ["Client", "AsyncClient", "AsyncProducer", "AsyncConsumer", "Producer", "Subscription", "Connection", "make_ssl_context", "Record", "Header",
           "ConsumedRecord", "FetchResult", "RecordMetadata", "RecordFuture",
           "build_batch", "decode_batch", "crc32c", "murmur2", "partition_for_key", "ACKS", "EARLIEST",
           "LATEST"] + list(_errors_all)
