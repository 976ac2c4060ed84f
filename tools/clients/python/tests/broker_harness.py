"""Starts a real `fjord serve` on 127.0.0.1 (ephemeral port) for the end-to-end tests, with mutual TLS,
and makes a client certificate signed by the broker's development CA (with openssl)."""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
CANDIDATES = [
    os.environ.get("FJORD_BIN"),
    "/tmp/fjord-bin/fjord",
    os.path.join(REPO, ".build", "debug", "fjord"),
    os.path.join(REPO, ".build", "release", "fjord"),
]


def find_fjord():
    for c in CANDIDATES:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def require_broker(**kw):
    """A started Broker (keyword arguments as Broker's), or unittest.SkipTest when no binary exists."""
    fjord = find_fjord()
    if fjord is None:
        raise unittest.SkipTest("no fjord broker binary (set FJORD_BIN, or build it to /tmp/fjord-bin/fjord "
                                "or .build/debug/fjord): end-to-end tests skipped")
    return Broker(fjord, **kw)


def client_for(broker, **kw):
    """A fjord_client.Client connected to `broker` with its CA and client certificate."""
    from fjord_client import Client
    return Client(broker.addr, ca=broker.ca, cert=broker.cert, key=broker.key, timeout=30, **kw)


def make_client_cert(certs_dir, out_dir, cn="fjord-python-test"):
    """client.pem/client-key.pem in out_dir, signed by certs_dir/ca.pem + ca-key.pem (EC P-256 key)."""
    key = os.path.join(out_dir, "client-key.pem")
    csr = os.path.join(out_dir, "client.csr")
    crt = os.path.join(out_dir, "client.pem")
    ext = os.path.join(out_dir, "client.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=30)  # noqa: E731
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-subj", "/CN=%s" % cn, "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(certs_dir, "ca.pem"),
        "-CAkey", os.path.join(certs_dir, "ca-key.pem"), "-set_serial", str(int(time.time() * 1000)),
        "-days", "2", "-sha256", "-extfile", ext, "-out", crt)
    return crt, key


class Broker:
    """A broker process. `addr` is "127.0.0.1:PORT"; `ca`, `cert`, `key` are PEM paths."""

    def __init__(self, fjord, mutual_tls=True, extra=()):
        self.dir = tempfile.mkdtemp(prefix="fjord-pyclient-")
        self.data = os.path.join(self.dir, "data")
        args = [fjord, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:0", "--operations-listen", "off"]
        if mutual_tls:
            args += ["--set", "tls.client.auth=required"]
        args += list(extra)
        self._args = args
        self.log_path = os.path.join(self.dir, "broker.log")
        self._log_lock = threading.Lock()
        self._start()
        self.ca = os.path.join(self.data, "certs", "ca.pem")
        self.cert = self.key = None
        if mutual_tls:
            self.cert, self.key = make_client_cert(os.path.join(self.data, "certs"), self.dir)

    def restart(self, while_stopped=None):
        """Stops the broker (SIGTERM: a clean shutdown), calls `while_stopped()` if given, and starts
        it again on the same data directory and certificates; `addr` changes (a new ephemeral port)."""
        self.stop()
        if while_stopped is not None:
            while_stopped()
        self._start()

    def crash(self):
        """SIGKILL the broker (no clean shutdown: it recovers its logs at the next start)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.stop()

    def start_same_port(self):
        """Start the (stopped) broker again on the data directory and the port it had."""
        port = self.addr.rsplit(":", 1)[1]
        self._start([a if a != "127.0.0.1:0" else "127.0.0.1:" + port for a in self._args])

    def _start(self, args=None):
        args = self._args if args is None else args
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.addr = None
        self._pumps = []
        found = threading.Event()
        # stdout says "fjord: broker listening on [IPv4]127.0.0.1/127.0.0.1:36263 (TLS)", but it is
        # block-buffered when piped (it shows up only at exit), so also watch the stderr log line
        # "... listen.tls=[IPv4]127.0.0.1/127.0.0.1:36263 ... broker started", which comes at once.
        patterns = (re.compile(rb"broker listening on .*:(\d+)"), re.compile(rb"listen\.tls=\S*:(\d+)"))

        def pump(stream):
            for line in stream:
                with self._log_lock:
                    if not self._log.closed:
                        self._log.write(line)
                        self._log.flush()
                for pat in patterns:
                    m = pat.search(line)
                    if m and self.addr is None:
                        self.addr = "127.0.0.1:%d" % int(m.group(1))
                        found.set()

        for stream in (self.proc.stdout, self.proc.stderr):
            th = threading.Thread(target=pump, args=(stream,), daemon=True)
            th.start()
            self._pumps.append(th)
        deadline = time.monotonic() + 120
        while not found.is_set() and self.proc.poll() is None and time.monotonic() < deadline:
            found.wait(0.2)
        if self.addr is None:
            log = self.log()
            self.cleanup()
            raise RuntimeError("broker did not report its port; log:\n" + log)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for th in self._pumps:
            th.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        with self._log_lock:
            self._log.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
