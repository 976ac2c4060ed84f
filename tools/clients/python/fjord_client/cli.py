"""`python3 -m fjord_client ...`: the interop producer/consumer of tools/clients/README.md, plus a few
admin commands (create-topic, delete-topic, list-topics, describe-topic, list-offsets)."""
import argparse
import base64
import binascii
import json
import queue
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple, Union

from ._version import __version__
from .batch import ConsumedRecord, Record
from .client import EARLIEST, LATEST, Client
from .producer import RecordFuture
from .errors import BrokerError, FjordError

PROG = "python3 -m fjord_client"


def _b64(data: Optional[bytes]) -> Optional[str]:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("%s must be a base64 string" % what)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("%s is not valid base64: %s" % (what, exc)) from None


def record_to_json(r: ConsumedRecord) -> Dict[str, Any]:
    return {"topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
            "key": _b64(r.key), "value": _b64(r.value),
            "headers": [{"key": h.key, "value": _b64(h.value)} for h in r.headers]}


def record_from_json(line: Union[str, bytes]) -> Tuple[Record, Optional[int]]:
    """(Record, explicit partition or None) from one producer input line."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    if "value" not in obj:
        raise ValueError("'value' is required")
    value = None if obj["value"] is None else _unb64(obj["value"], "value")
    key = None if obj.get("key") is None else _unb64(obj["key"], "key")
    ts = obj.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise ValueError("'timestamp' must be an integer (ms since the epoch)")
    headers = []
    for h in obj.get("headers") or []:
        if not isinstance(h, dict) or not isinstance(h.get("key"), str):
            raise ValueError("each header needs a string 'key'")
        hv = h.get("value")
        headers.append((h["key"], None if hv is None else _unb64(hv, "header value")))
    part = obj.get("partition")
    if part is not None and (not isinstance(part, int) or isinstance(part, bool) or part < 0):
        raise ValueError("'partition' must be a non-negative integer")
    return Record(value, key=key, headers=headers, timestamp=ts), part


def _connect(args: argparse.Namespace) -> Client:
    return Client(args.broker, ca=args.ca, cert=args.cert, key=args.key, plaintext=args.plaintext,
                  server_hostname=args.server_name, client_id=args.client_id,
                  timeout=args.request_timeout_ms / 1000.0, check_crcs=not getattr(args, "no_check_crcs", False))


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")


def _fail(msg: str, code: int = 1) -> int:
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    return code


# ---- produce -------------------------------------------------------------------------------------

def cmd_produce(args: argparse.Namespace) -> int:
    client = _connect(args)
    try:
        client.partition_count(args.topic, refresh=True)  # fails early for an unknown topic
        producer = client.producer(acks=args.acks)
        lines: "queue.Queue[Optional[bytes]]" = queue.Queue(maxsize=10000)

        def read_stdin() -> None:
            for raw in sys.stdin.buffer:
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=read_stdin, daemon=True, name="stdin").start()
        results: "queue.Queue[Optional[Tuple[int, Optional[int], Union[RecordFuture, Exception]]]]" = queue.Queue()
        state = {"failed": 0}

        def print_results() -> None:
            while True:
                item = results.get()
                if item is None:
                    return
                lineno, part, fut = item
                try:
                    if isinstance(fut, Exception):
                        raise fut
                    md = fut.result()
                    _emit({"partition": md.partition, "offset": md.offset})
                except Exception as exc:  # noqa: BLE001
                    state["failed"] += 1
                    _emit({"partition": part if part is not None else -1, "offset": -1, "error": str(exc)})
                    sys.stderr.write("%s: line %d: %s\n" % (PROG, lineno, exc))
                sys.stdout.flush()

        printer = threading.Thread(target=print_results, daemon=True, name="printer")
        printer.start()
        lineno = 0
        unsent = False
        while True:
            try:
                raw = lines.get_nowait()
            except queue.Empty:
                if unsent:  # no more input ready: send what we have
                    producer.send_pending()
                    unsent = False
                raw = lines.get()
            if raw is None:
                break
            lineno += 1
            if not raw.strip():
                continue
            part = None
            try:
                rec, part = record_from_json(raw)
                if part is None:
                    part = producer.partition_for(args.topic, rec)
                fut: Union[RecordFuture, Exception] = producer.send(args.topic, rec, partition=part)
                unsent = True
            except (ValueError, UnicodeDecodeError) as exc:
                fut = ValueError("bad input: %s" % exc)
            results.put((lineno, part, fut))
        try:
            producer.close()
        finally:
            results.put(None)
            printer.join()
        sys.stdout.flush()
        return 1 if state["failed"] else 0
    finally:
        client.close()


# ---- consume -------------------------------------------------------------------------------------

def _start_offsets(client: Client, args: argparse.Namespace, partitions: List[int]) -> Dict[int, int]:
    if args.from_beginning:
        return dict(zip(partitions, client.list_offsets([(args.topic, p, EARLIEST) for p in partitions])))
    if args.offset is not None:
        return {p: args.offset for p in partitions}
    if args.from_time is not None:
        found = client.list_offsets([(args.topic, p, args.from_time) for p in partitions])
        latest = client.list_offsets([(args.topic, p, LATEST) for p in partitions])
        return {p: (f if f >= 0 else l) for p, f, l in zip(partitions, found, latest)}
    return dict(zip(partitions, client.list_offsets([(args.topic, p, LATEST) for p in partitions])))


def cmd_consume(args: argparse.Namespace) -> int:
    client = _connect(args)
    try:
        n = client.partition_count(args.topic, refresh=True)
        if args.partition is not None:
            if not 0 <= args.partition < n:
                return _fail("topic %s has no partition %d (%d partitions)" % (args.topic, args.partition, n))
            partitions = [args.partition]
        else:
            partitions = list(range(n))
        starts = _start_offsets(client, args, partitions)
        timeout = args.timeout_ms / 1000.0
        limit = args.max_records
        if limit is not None and limit <= 0:
            return 0
        if args.mode == "fetch":
            return _consume_fetch(client, args, starts, timeout, limit)
        return _consume_subscribe(client, args, starts, timeout, limit)
    finally:
        client.close()


def _consume_subscribe(client: Client, args: argparse.Namespace, starts: Dict[int, int], timeout: float,
                       limit: Optional[int]) -> int:
    sink: "queue.Queue[Any]" = queue.Queue()
    subs = [client.subscribe(args.topic, p, off, credit_bytes=args.credit_bytes, sink=sink)
            for p, off in starts.items()]
    count = 0
    last = time.monotonic()
    try:
        while limit is None or count < limit:
            remaining = timeout - (time.monotonic() - last)
            if remaining <= 0:
                break
            try:
                item = sink.get(timeout=remaining)
            except queue.Empty:
                break
            if item[0] == "error":
                if item[1].can_resume(item[2]):
                    item[1].resume()  # the connection was lost or the broker restarts: go on where it stopped
                    continue
                return _fail("partition %d: %s" % (item[1].partition, item[2]))
            _, sub, records, spent = item
            for r in records:
                if limit is not None and count >= limit:
                    break
                _emit(record_to_json(r))
                count += 1
            if records:
                sys.stdout.flush()
                last = time.monotonic()
            sub.grant(spent)
    finally:
        for s in subs:
            s.close()
    return 0


def _consume_fetch(client: Client, args: argparse.Namespace, starts: Dict[int, int], timeout: float,
                   limit: Optional[int]) -> int:
    positions = dict(starts)
    count = 0
    last = time.monotonic()
    while limit is None or count < limit:
        remaining = timeout - (time.monotonic() - last)
        if remaining <= 0:
            break
        wait_ms = max(0, min(int(remaining * 1000), 500))
        results = client.fetch_many([(args.topic, p, o) for p, o in positions.items()], max_wait_ms=wait_ms)
        got = False
        for r in results:
            if r.error is not None:
                return _fail("partition %d: %s" % (r.partition, r.error))
            for rec in r.records:
                if limit is not None and count >= limit:
                    break
                _emit(record_to_json(rec))
                count += 1
                got = True
            positions[r.partition] = r.next_offset
        if got:
            sys.stdout.flush()
            last = time.monotonic()
    return 0


# ---- admin ---------------------------------------------------------------------------------------

def _topic_json(info: Any) -> Dict[str, Any]:
    return {"name": info.name, "topic_id": info.topic_id, "configs": dict(info.configs),
            "partitions": [{"partition": p.partition, "leader_id": p.leader_id, "leader_epoch": p.leader_epoch,
                            "log_start_offset": p.log_start_offset, "high_watermark": p.high_watermark}
                           for p in info.partitions]}


def cmd_create_topic(args: argparse.Namespace) -> int:
    configs = {}
    for kv in args.config or []:
        k, sep, v = kv.partition("=")
        if not sep:
            return _fail("--config wants KEY=VALUE, got %r" % kv, 2)
        configs[k] = v
    with _connect(args) as c:
        _emit(_topic_json(c.create_topic(args.name, args.partitions, configs)))
    return 0


def cmd_delete_topic(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        c.delete_topic(args.name)
    return 0


def cmd_list_topics(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        for name in c.list_topics():
            print(name)
    return 0


def cmd_describe_topic(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        _emit(_topic_json(c.describe_topic(args.name)))
    return 0


def cmd_list_offsets(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        n = c.partition_count(args.topic, refresh=True)
        parts = [args.partition] if args.partition is not None else list(range(n))
        early = c.list_offsets([(args.topic, p, EARLIEST) for p in parts])
        late = c.list_offsets([(args.topic, p, LATEST) for p in parts])
        for p, e, l in zip(parts, early, late):
            _emit({"partition": p, "earliest": e, "latest": l})
    return 0


# ---- argument parsing ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection")
    g.add_argument("--broker", default="127.0.0.1:7420", help="HOST:PORT (default 127.0.0.1:7420)")
    g.add_argument("--ca", help="PEM CA file to trust (default: the system store)")
    g.add_argument("--cert", help="PEM client certificate, for mutual TLS")
    g.add_argument("--key", help="PEM client key, for mutual TLS")
    g.add_argument("--plaintext", action="store_true", help="no TLS (a broker plaintext.listen port)")
    g.add_argument("--server-name", help="name to check the broker certificate against (default: the host)")
    g.add_argument("--client-id", default="fjord-python", help="client_id sent in the handshake")
    g.add_argument("--request-timeout-ms", type=int, default=30000, help="per-request timeout (default 30000)")

    p = argparse.ArgumentParser(prog=PROG, description="Fjord Python client")
    p.add_argument("--version", action="version", version="%(prog)s " + __version__)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("produce", parents=[common], help="produce JSON-lines records from stdin")
    pr.add_argument("topic")
    pr.add_argument("--format", choices=["json"], default="json")
    pr.add_argument("--acks", choices=["none", "leader", "durable"], default="leader")
    pr.set_defaults(func=cmd_produce)

    co = sub.add_parser("consume", parents=[common], help="print records as JSON lines")
    co.add_argument("topic")
    co.add_argument("--format", choices=["json"], default="json")
    start = co.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at each partition's log start")
    start.add_argument("--offset", type=int, help="start at this offset (in every partition read)")
    start.add_argument("--from-time", type=int, metavar="MS", help="start at the first record at or after MS")
    co.add_argument("--partition", type=int, help="read only this partition (default: all)")
    co.add_argument("--max-records", type=int, help="stop after N records")
    co.add_argument("--timeout-ms", type=int, default=10000,
                    help="exit once no record arrived for this long (default 10000)")
    co.add_argument("--mode", choices=["subscribe", "fetch"], default="subscribe",
                    help="Log.Subscribe streams with credit (default) or Log.Fetch long-polls")
    co.add_argument("--credit-bytes", type=int, default=1 << 20, help="subscribe credit per partition")
    co.add_argument("--no-check-crcs", action="store_true",
                    help="do not verify each batch's CRC32C (offsets are still checked)")
    co.set_defaults(func=cmd_consume)

    ct = sub.add_parser("create-topic", parents=[common], help="create a topic")
    ct.add_argument("name")
    ct.add_argument("--partitions", type=int, default=1)
    ct.add_argument("--config", action="append", metavar="KEY=VALUE")
    ct.set_defaults(func=cmd_create_topic)

    dt = sub.add_parser("delete-topic", parents=[common], help="delete a topic")
    dt.add_argument("name")
    dt.set_defaults(func=cmd_delete_topic)

    lt = sub.add_parser("list-topics", parents=[common], help="list topic names")
    lt.set_defaults(func=cmd_list_topics)

    de = sub.add_parser("describe-topic", parents=[common], help="describe a topic (JSON)")
    de.add_argument("name")
    de.set_defaults(func=cmd_describe_topic)

    lo = sub.add_parser("list-offsets", parents=[common], help="earliest and latest offsets per partition")
    lo.add_argument("topic")
    lo.add_argument("--partition", type=int)
    lo.set_defaults(func=cmd_list_offsets)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (`fjord-py`, `python3 -m fjord_client`); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except BrokerError as exc:
        return _fail(str(exc))
    except FjordError as exc:
        return _fail("%s: %s" % (type(exc).__name__, exc))
    except OSError as exc:
        return _fail("connection to %s failed: %s" % (args.broker, exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
