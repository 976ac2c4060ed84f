"""One Fjord connection: TLS (or plaintext), handshake, multiplexed streams (docs/protocol.md §1-4).

Design: one I/O thread owns the socket, which is non-blocking after the TLS handshake. It is the
only thread that ever calls recv/send on it (an OpenSSL connection must not be read and written
from two threads at once). Other threads queue outgoing frames in a buffer and wake the I/O thread
through a socketpair. Incoming frames are dispatched by stream id to `Stream` objects, which
either queue them (for `recv`) or hand them to a callback (the producer).
"""
import itertools
import queue
import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Type, TypeVar, Union

from . import frames as fr
from .errors import (ConnectionClosedError, FjordError, FjordTimeoutError, ProtocolError,
                     error_from_payload)
from .fjord.v1 import connection_pb2

PROTOCOL_VERSION = 1
DEFAULT_PORT = 7420
# Incoming payloads we accept. We advertise 0 ("the broker's maximum") in the handshake and then
# allow what the broker says it may send, with room for non-size-checked responses.
DEFAULT_MAX_INCOMING = 64 * 1024 * 1024
# Senders block while more than this many bytes are queued for the socket.
OUTBUF_HIGH_WATER = 8 * 1024 * 1024
_CHUNK = 256 * 1024

M = TypeVar("M")
OnFrame = Callable[["Stream", Union[fr.Frame, BaseException]], None]


def parse_hostport(text: str, default_port: int = DEFAULT_PORT) -> Tuple[str, int]:
    """'host:port', '[v6]:port' or 'host' -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    return host, int(port) if port else default_port


def make_ssl_context(ca: Optional[str] = None, cert: Optional[str] = None, key: Optional[str] = None,
                     verify: bool = True) -> ssl.SSLContext:
    """An SSLContext for Fjord: TLS 1.2 minimum, trusting `ca` (a PEM file) or the system store,
    presenting `cert`/`key` (PEM) for mutual TLS when given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    elif key:
        raise ValueError("a client key needs a client certificate (--cert)")
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Stream:
    """One stream of a connection. Frames for it arrive in `recv()` order, or go to `on_frame`."""

    def __init__(self, conn: "Connection", stream_id: int, method: int, on_frame: Optional[OnFrame] = None) -> None:
        self.conn = conn
        self.id = stream_id
        self.method = method
        self.closed = False  # by the broker (END_STREAM/ERROR), by cancel(), or with the connection
        self.error: Optional[BaseException] = None
        self._queue: "queue.Queue[Union[fr.Frame, BaseException]]" = queue.Queue()
        self._on_frame = on_frame

    # Called by the I/O thread.
    def _deliver(self, frame: fr.Frame) -> None:
        if frame.flags & (fr.END_STREAM | fr.ERROR):
            self.closed = True
        if frame.flags & fr.ERROR:
            self.error = error_from_payload(frame.payload, scope="stream")
        if self._on_frame is not None:
            self._on_frame(self, frame)
        else:
            self._queue.put(frame)

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if self.error is None:
            self.error = exc
        if self._on_frame is not None:
            self._on_frame(self, exc)
        else:
            self._queue.put(exc)

    def send(self, message: Any = b"", end_stream: bool = False, flags: int = 0) -> None:
        """Send a frame with a protobuf message (or raw bytes) on this stream."""
        payload = message if isinstance(message, (bytes, bytearray, memoryview)) else message.SerializeToString()
        self.conn._send_frame(self.id, self.method, flags | (fr.END_STREAM if end_stream else 0), payload)

    def cancel(self) -> None:
        """Abandon the stream (CANCEL frame). The broker sends nothing in reply."""
        if not self.closed:
            self.closed = True
            self.conn._forget(self.id)
            try:
                self.conn._send_frame(self.id, self.method, fr.CANCEL, b"")
            except FjordError:
                pass

    def recv(self, timeout: Optional[float] = None) -> fr.Frame:
        """The next frame on this stream. Raises the broker's error for an ERROR frame,
        ConnectionClosedError if the connection ended, FjordTimeoutError after `timeout` s."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise FjordTimeoutError("no frame on stream %d within %.3f s" % (self.id, timeout or 0.0)) from None
        if isinstance(item, BaseException):
            raise item
        if item.flags & fr.ERROR:
            raise error_from_payload(item.payload, scope="stream")
        return item

    def recv_nowait(self) -> Optional[fr.Frame]:
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        if item.flags & fr.ERROR:
            raise error_from_payload(item.payload, scope="stream")
        return item


class Connection:
    """A handshaken connection to one broker.

    Connection(host, port, ssl_context=ctx) for TLS (see make_ssl_context), ssl_context=None for a
    plaintext listener. `handshake` holds the broker's HandshakeResponse.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, ssl_context: Optional[ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None, client_id: str = "fjord-python", connect_timeout: float = 10.0,
                 max_incoming: int = DEFAULT_MAX_INCOMING) -> None:
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._streams: Dict[int, Stream] = {}
        self._ids = itertools.count(1)
        self._out = bytearray()
        self._out_cond = threading.Condition(self._lock)
        self._closed = False
        self._close_reason: Optional[BaseException] = None
        self._client_closing = False
        self._decoder = fr.FrameDecoder(max_incoming)
        self._wake_pending = False
        self._unsent_pending = 0  # bytes taken from _out by the I/O thread and not yet written

        sock: Any = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._tls = ssl_context is not None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._io_loop, name="fjord-io-%s:%d" % (host, port), daemon=True)
        self._thread.start()
        try:
            req = connection_pb2.HandshakeRequest(protocol_version=PROTOCOL_VERSION, client_id=client_id,
                                                  max_frame_bytes=0)
            self.handshake = self.call(connection_pb2.METHOD_HANDSHAKE, req, connection_pb2.HandshakeResponse,
                                       timeout=connect_timeout)
            if self.handshake.protocol_version != PROTOCOL_VERSION:
                raise ProtocolError("broker chose protocol version %d; this client speaks %d"
                                    % (self.handshake.protocol_version, PROTOCOL_VERSION))
        except BaseException:
            self.close()
            raise

    # ---- public API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def open_stream(self, method: int, on_frame: Optional[OnFrame] = None) -> Stream:
        """Allocate a new stream id (never reused) for `method`. Nothing is sent yet."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            sid = next(self._ids)
            if sid > 0xFFFFFFFF:
                raise FjordError("stream ids exhausted on this connection")
            stream = Stream(self, sid, method, on_frame)
            self._streams[sid] = stream
            return stream

    def call(self, method: int, request: Any, response_type: Callable[[], M], timeout: float = 30.0) -> M:
        """A unary call: one request frame with END_STREAM, one response frame (or the error raised)."""
        stream = self.open_stream(method)
        stream.send(request, end_stream=True)
        try:
            frame = stream.recv(timeout)
        except FjordTimeoutError:
            stream.cancel()
            raise
        if frame.method != method:
            raise ProtocolError("response on stream %d has method %d, expected %d" % (stream.id, frame.method, method))
        msg: Any = response_type()
        try:
            msg.ParseFromString(frame.payload)
        except Exception as exc:  # noqa: BLE001
            raise ProtocolError("undecodable %s: %s" % (msg.DESCRIPTOR.name, exc)) from None
        result: M = msg
        return result

    def close(self, timeout: float = 2.0) -> None:
        """Flush queued frames (up to `timeout` s), then close the socket and fail open streams."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while ((self._out or self._unsent_pending) and not self._closed
                   and threading.current_thread() is not self._thread):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._out_cond.wait(remaining)
        self._client_closing = True
        self._shutdown(ConnectionClosedError("connection closed by the client"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- internals -------------------------------------------------------------------------------

    def _closed_error(self) -> BaseException:
        reason = self._close_reason
        if isinstance(reason, ConnectionClosedError):
            return ConnectionClosedError(str(reason))
        if isinstance(reason, FjordError):
            return reason
        return ConnectionClosedError("connection closed: %s" % (reason,))

    def _forget(self, sid: int) -> None:
        with self._lock:
            self._streams.pop(sid, None)

    def _send_frame(self, stream_id: int, method: int, flags: int, payload: Any) -> None:
        data = fr.encode_frame(stream_id, method, flags, payload)
        with self._lock:
            while len(self._out) > OUTBUF_HIGH_WATER and not self._closed:
                self._out_cond.wait(1.0)
            if self._closed:
                raise self._closed_error()
            self._out += data
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            try:
                self._wake_w.send(b"\0")
            except (BlockingIOError, OSError):
                pass

    def _shutdown(self, reason: BaseException) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_reason = reason
            streams = list(self._streams.values())
            self._streams.clear()
            self._out_cond.notify_all()
        for s in streams:
            s._fail(reason if isinstance(reason, FjordError) else ConnectionClosedError(str(reason)))
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _dispatch(self, frame: fr.Frame) -> None:
        if frame.stream_id == 0:
            if frame.flags & fr.ERROR:
                err = error_from_payload(frame.payload, scope="connection")
                self._shutdown(err)
            else:
                self._shutdown(ProtocolError("broker sent a non-error frame on stream 0"))
            return
        with self._lock:
            stream = self._streams.get(frame.stream_id)
            if stream is not None and frame.flags & (fr.END_STREAM | fr.ERROR):
                del self._streams[frame.stream_id]
        if stream is None:
            return  # a late answer to a cancelled stream: dropped (protocol.md §3)
        stream._deliver(frame)

    def _io_loop(self) -> None:
        sock = self._sock
        pending = b""  # the chunk being written; retried unchanged after a would-block
        want_read_for_write = False
        try:
            while True:
                with self._lock:
                    if self._closed:
                        break
                    if not pending and self._out:
                        pending = bytes(self._out[:_CHUNK])
                        del self._out[:len(pending)]
                    self._unsent_pending = len(pending)
                    self._out_cond.notify_all()
                wlist = [sock] if pending and not want_read_for_write else []
                ready_tls = self._tls and sock.pending() > 0
                r, w, _ = select.select([sock, self._wake_r], wlist, [], 0 if ready_tls else 5.0)
                if self._wake_r in r:
                    # Drain first, then clear the flag: a sender that saw the flag still set has
                    # already queued its bytes, which the top of the loop picks up.
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    with self._lock:
                        self._wake_pending = False
                try_write = sock in w
                if sock in r or ready_tls:
                    if want_read_for_write:
                        want_read_for_write = False
                        try_write = True
                    if not self._read_available(sock):
                        break
                if pending and try_write:
                    try:
                        n = sock.send(pending)
                        pending = pending[n:]
                    except ssl.SSLWantReadError:
                        want_read_for_write = True
                    except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                        pass
        except FjordError as exc:
            self._shutdown(exc)
        except (OSError, ssl.SSLError) as exc:
            self._shutdown(ConnectionClosedError("connection lost: %s" % exc))
        except fr.FrameError as exc:
            self._shutdown(ProtocolError(str(exc)))
        except Exception as exc:  # noqa: BLE001 - never leave callers hanging
            self._shutdown(ProtocolError("I/O thread failed: %r" % exc))
        finally:
            self._shutdown(ConnectionClosedError("connection closed"))
            if self._tls and self._client_closing:
                try:  # a TLS close_notify, so the broker sees a clean shutdown
                    sock.settimeout(0.5)
                    sock.unwrap()
                except (OSError, ValueError, ssl.SSLError):
                    pass
            for s in (sock, self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass

    def _read_available(self, sock: Any) -> bool:
        """Read until the socket would block. False when the broker closed the connection."""
        while True:
            try:
                data = sock.recv(_CHUNK)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return True
            except ssl.SSLWantWriteError:
                return True
            if not data:
                if self._decoder.mid_frame:
                    # A peer that dies mid-write (a crashed broker) cuts a frame: to the client that
                    # is a lost connection, retriable, like any other.
                    self._shutdown(ConnectionClosedError("the connection ended inside a frame"))
                else:
                    self._shutdown(ConnectionClosedError("connection closed by the broker"))
                return False
            for frame in self._decoder.feed(data):
                self._dispatch(frame)
            if len(data) < _CHUNK and not (self._tls and sock.pending()):
                return True


__all__ = ["Connection", "Stream", "make_ssl_context", "parse_hostport", "PROTOCOL_VERSION", "DEFAULT_PORT"]
