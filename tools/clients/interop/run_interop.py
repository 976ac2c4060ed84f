#!/usr/bin/env python3
"""Fjord client interop: every producer's records, consumed by every consumer, compared.

    python3 tools/clients/interop/run_interop.py --fjord PATH/TO/fjord [--languages python,c,swift]

Starts `fjord serve` with mutual TLS on 127.0.0.1 (ephemeral port, temporary data dir), makes a
client certificate signed by the broker's development CA (openssl), creates one 3-partition topic per
producer language, feeds each producer a deterministic set of records through the JSON-lines
interface of tools/clients/README.md, then runs every consumer against every topic and checks:

  - the producer exits 0 and acknowledges every record, one line per input line, in order;
  - keyed records (without an explicit partition) are on (murmur2(key) & 0x7fffffff) % 3, and
    records with an explicit partition are on it;
  - each partition's acknowledged offsets are 0..n-1, each once;
  - each consumer exits 0 and prints exactly the acknowledged (partition, offset) pairs, each
    partition in offset order, with the topic name;
  - every record's key, value, headers and timestamp are intact (SHA-256 of a canonical encoding,
    compared with the input record the producer acknowledged at that offset);
  - all consumers agree on each topic.

Languages are a table of (name, producer argv, consumer argv). Without --languages every language
is tried and those whose programs are missing are skipped with a message; a language named in
--languages that is missing is a failure. Topics are created with the Python client's
`create-topic` command. Stdlib only. Prints `N passed, M failed` (checks) last and exits non-zero on
any failure. Every subprocess is bounded by a timeout and the broker is always stopped.
"""
import argparse
import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.abspath(os.path.join(HERE, ".."))
PYTHON_DIR = os.path.join(CLIENTS, "python")
C_BUILD = os.path.join(CLIENTS, "c", "build")
PARTITIONS = 3


# ---- Kafka's murmur2 (independent of every client under test) -----------------------------------

def murmur2(data):
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    n = len(data)
    h = (0x9747B28C ^ n) & mask
    for i in range(0, n & ~3, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = n & ~3
    rem = n & 3
    if rem == 3:
        h ^= data[tail + 2] << 16
    if rem >= 2:
        h ^= data[tail + 1] << 8
    if rem >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


assert murmur2(b"21") == -973932308 and murmur2(b"foobar") == -790332482 and murmur2(b"abc") == 479470107


def murmur2_partition(key, n):
    return (murmur2(key) & 0x7FFFFFFF) % n


# ---- deterministic input ------------------------------------------------------------------------

def make_records(lang, count):
    """count JSON-able input records, the same for a given language name on every run."""
    rng = random.Random("fjord-interop-" + lang)
    t0 = 1764230400000
    out = []
    for i in range(count):
        rec = {}
        if i % 5 == 0:
            pass  # no "key" at all: a null key
        elif i % 5 == 1 and i % 3 == 0:
            rec["key"] = None  # an explicit null key
        elif i % 17 == 2:
            rec["key"] = b""  # an empty key (not null): hashed like any key
        elif i % 2:
            rec["key"] = ("user-%d" % rng.randrange(40)).encode()
        else:
            rec["key"] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)))
        if i % 23 == 0:
            value = b""  # empty value
        elif i == 101:
            value = bytes(rng.randrange(256) for _ in range(70000))  # bigger than one TLS record
        else:
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        rec["value"] = value
        headers = []
        for j in range(i % 4):  # 0-3 headers with binary values
            hkey = ["trace-id", "content-type", "x-bin", "ünïcode-ключ"][(i + j) % 4]
            headers.append((hkey, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12)))))
        rec["headers"] = headers
        rec["timestamp"] = t0 + i * 1000 + rng.randrange(-5000, 5000)  # explicit, not monotonic
        if i % 40 == 13:  # a few unkeyed records with an explicit partition
            rec.pop("key", None)
            rec["partition"] = (i // 40) % PARTITIONS
        out.append(rec)
    return out


def b64(data):
    return None if data is None else base64.b64encode(data).decode("ascii")


def to_json_line(rec):
    obj = {"value": b64(rec["value"]), "timestamp": rec["timestamp"],
           "headers": [{"key": k, "value": b64(v)} for k, v in rec["headers"]]}
    if "key" in rec:
        obj["key"] = b64(rec["key"])
    if "partition" in rec:
        obj["partition"] = rec["partition"]
    return json.dumps(obj, ensure_ascii=False)


def digest(key_b64, value_b64, timestamp, headers):
    """SHA-256 of a canonical encoding: base64 strings as given (None for null), headers in order."""
    canon = json.dumps({"k": key_b64, "v": value_b64, "t": timestamp,
                        "h": [[h.get("key"), h.get("value")] for h in headers]},
                       sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()


def input_digest(rec):
    return digest(b64(rec.get("key")), b64(rec["value"]), rec["timestamp"],
                  [{"key": k, "value": b64(v)} for k, v in rec["headers"]])


def output_digest(obj):
    return digest(obj.get("key"), obj.get("value"), obj.get("timestamp"), obj.get("headers") or [])


# ---- the broker ---------------------------------------------------------------------------------

class Broker:
    def __init__(self, fjord, workdir, timeout):
        self.data = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "broker.log")
        self._log = open(self.log_path, "wb")
        self._lock = threading.Lock()
        args = [fjord, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:0", "--operations-listen", "off",
                "--set", "tls.client.auth=required"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.addr = None
        self._pumps = []
        found = threading.Event()
        # stdout: "fjord: broker listening on [IPv4]127.0.0.1/127.0.0.1:PORT (TLS)" (block-buffered when
        # piped); stderr log: "listen.tls=[IPv4]127.0.0.1/127.0.0.1:PORT" (immediate). Either will do.
        pats = (re.compile(rb"broker listening on .*:(\d+)"), re.compile(rb"listen\.tls=\S*:(\d+)"))

        def pump(stream):
            for line in stream:
                with self._lock:
                    if not self._log.closed:
                        self._log.write(line)
                        self._log.flush()
                for p in pats:
                    m = p.search(line)
                    if m and self.addr is None:
                        self.addr = "127.0.0.1:%d" % int(m.group(1))
                        found.set()

        for s in (self.proc.stdout, self.proc.stderr):
            th = threading.Thread(target=pump, args=(s,), daemon=True)
            th.start()
            self._pumps.append(th)
        deadline = time.monotonic() + timeout
        while not found.is_set() and self.proc.poll() is None and time.monotonic() < deadline:
            found.wait(0.2)
        if self.addr is None:
            self.stop()
            raise RuntimeError("the broker did not start (no listening port reported); log tail:\n" + self.tail())
        self.ca = os.path.join(self.data, "certs", "ca.pem")
        self.ca_key = os.path.join(self.data, "certs", "ca-key.pem")

    def tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        for th in self._pumps:
            th.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        with self._lock:
            self._log.close()


def make_client_cert(broker, workdir):
    key = os.path.join(workdir, "client-key.pem")
    csr = os.path.join(workdir, "client.csr")
    crt = os.path.join(workdir, "client.pem")
    ext = os.path.join(workdir, "client.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    for cmd in (["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-subj", "/CN=fjord-interop", "-out", csr],
                ["openssl", "x509", "-req", "-in", csr, "-CA", broker.ca, "-CAkey", broker.ca_key,
                 "-set_serial", str(int(time.time() * 1000)), "-days", "2", "-sha256", "-extfile", ext, "-out", crt]):
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd[:2]), r.stderr.decode("utf-8", "replace")))
    return crt, key


# ---- languages ----------------------------------------------------------------------------------

class Language:
    def __init__(self, name, produce, consume, env=None, check=None):
        self.name, self.produce, self.consume, self.env, self._check = name, produce, consume, env, check

    def missing(self):
        """None when usable, else why not."""
        return self._check() if self._check else None


def languages(args):
    py_env = dict(os.environ)
    if not args.python_installed:
        py_env["PYTHONPATH"] = PYTHON_DIR + (os.pathsep + py_env["PYTHONPATH"] if py_env.get("PYTHONPATH") else "")
    c_dir = args.c_bin_dir

    def check_python():
        if not args.python_installed and not os.path.isfile(os.path.join(PYTHON_DIR, "fjord_client", "__main__.py")):
            return "%s/fjord_client not found" % PYTHON_DIR
        r = subprocess.run([args.python, "-c", "import fjord_client; print(fjord_client.__file__)"], env=py_env,
                           capture_output=True, timeout=60, cwd="/")
        if r.returncode != 0:
            return "`import fjord_client` fails with %s: %s" % (args.python, r.stderr.decode()[-300:].strip())
        where = os.path.abspath(r.stdout.decode().strip())
        if args.python_installed and where.startswith(PYTHON_DIR + os.sep):
            return "--python-installed, but %s imports fjord_client from the source tree (%s)" % (args.python, where)
        return None

    def check_c():
        for prog in ("fjord-produce", "fjord-consume"):
            p = os.path.join(c_dir, prog)
            if not os.access(p, os.X_OK):
                return "%s not built (make -C tools/clients/c)" % p
        return None

    def check_swift():
        # `fjord produce --help` exits 0 even when `produce` is not a subcommand (the root help is
        # printed), so look for both names in the SUBCOMMANDS list of `fjord --help`.
        try:
            r = subprocess.run([args.fjord, "--help"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return "`fjord --help` failed: %s" % exc
        listed = set(re.findall(r"^\s+([a-z][a-z-]*)\b", r.stdout.decode("utf-8", "replace").split("SUBCOMMANDS:")[-1],
                                re.M))
        lacking = [c for c in ("produce", "consume") if c not in listed]
        if "SUBCOMMANDS:" not in r.stdout.decode("utf-8", "replace") or lacking:
            return "this fjord build has no `%s` command (`fjord --help` lists: %s)" % (
                "`, `".join(lacking or ["produce", "consume"]), ", ".join(sorted(listed)) or "nothing")
        return None

    return {
        "python": Language("python", [args.python, "-m", "fjord_client", "produce"],
                           [args.python, "-m", "fjord_client", "consume"], env=py_env, check=check_python),
        "c": Language("c", [os.path.join(c_dir, "fjord-produce")], [os.path.join(c_dir, "fjord-consume")],
                      check=check_c),
        "swift": Language("swift", [args.fjord, "produce"], [args.fjord, "consume"], check=check_swift),
    }


# ---- checks -------------------------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print("PASS  %s" % what, flush=True)
        else:
            self.failed += 1
            print("FAIL  %s%s" % (what, (": " + detail) if detail else ""), flush=True)
        return ok


def run(argv, stdin=b"", env=None, timeout=120):
    """(exit code, stdout, stderr); exit code None on timeout."""
    try:
        r = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=timeout)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as exc:
        return None, exc.stdout or b"", (exc.stderr or b"") + b"\n(timed out after %d s)" % timeout
    except OSError as exc:
        return 127, b"", str(exc).encode()


def short(b, n=400):
    text = b.decode("utf-8", "replace").strip() if isinstance(b, bytes) else str(b)
    return text if len(text) <= n else text[:n] + "..."


def produce_checks(t, lang, topic, records, conn, timeout):
    lines = "".join(to_json_line(r) + "\n" for r in records).encode("utf-8")
    rc, out, err = run(lang.produce + [topic, "--format", "json", "--acks", "leader"] + conn, lines, lang.env, timeout)
    acks = []
    bad = None
    for ln in out.decode("utf-8", "replace").splitlines():
        if not ln.strip():
            continue
        try:
            acks.append(json.loads(ln))
        except ValueError:
            bad = ln
    ok = t.check(rc == 0 and bad is None and len(acks) == len(records)
                 and all(isinstance(a.get("partition"), int) and isinstance(a.get("offset"), int)
                         and a["offset"] >= 0 for a in acks),
                 "%s producer: exit 0, one acknowledgement per record" % lang.name,
                 "exit %s, %d/%d acknowledgements%s; stderr: %s"
                 % (rc, len(acks), len(records), (", bad line %r" % bad) if bad else "", short(err)))
    if not ok:
        return None
    wrong = []
    for i, (rec, ack) in enumerate(zip(records, acks)):
        if "partition" in rec:
            want = rec["partition"]
        elif rec.get("key") is not None:
            want = murmur2_partition(rec["key"], PARTITIONS)
        else:
            continue
        if ack["partition"] != want:
            wrong.append("record %d on %d, expected %d" % (i, ack["partition"], want))
    t.check(not wrong, "%s producer: keyed records on the murmur2 partition, explicit partitions honoured" % lang.name,
            "; ".join(wrong[:5]))
    by_part = {}
    for a in acks:
        by_part.setdefault(a["partition"], []).append(a["offset"])
    problems = ["partition %d: offsets %s" % (p, sorted(o)[:10]) for p, o in sorted(by_part.items())
                if sorted(o) != list(range(len(o))) or not 0 <= p < PARTITIONS]
    t.check(not problems, "%s producer: each partition's offsets are 0..n-1, each once" % lang.name,
            "; ".join(problems[:3]))
    return {(a["partition"], a["offset"]): i for i, a in enumerate(acks)}


def consume_checks(t, consumer, producer_name, topic, records, placed, conn, timeout, idle_ms):
    label = "%s consumer on %s's topic" % (consumer.name, producer_name)
    argv = consumer.consume + [topic, "--format", "json", "--from-beginning", "--timeout-ms", str(idle_ms),
                               "--max-records", str(len(records))] + conn
    rc, out, err = run(argv, b"", consumer.env, timeout)
    got = []
    bad = None
    for ln in out.decode("utf-8", "replace").splitlines():
        if not ln.strip():
            continue
        try:
            got.append(json.loads(ln))
        except ValueError:
            bad = ln
    if not t.check(rc == 0 and bad is None, "%s: exit 0, JSON lines" % label,
                   "exit %s%s; stderr: %s" % (rc, (", bad line %r" % bad) if bad else "", short(err))):
        return None
    seen = [(o.get("partition"), o.get("offset")) for o in got]
    t.check(sorted(seen) == sorted(placed) and len(seen) == len(set(seen)),
            "%s: exactly the offsets the producer reported (%d records)" % (label, len(placed)),
            "got %d records; missing %s; unexpected %s" % (len(seen), sorted(set(placed) - set(seen))[:5],
                                                           sorted(set(seen) - set(placed))[:5]))
    last = {}
    order_ok = True
    for p, o in seen:
        if p in last and o is not None and last[p] is not None and o <= last[p]:
            order_ok = False
        last[p] = o
    t.check(order_ok, "%s: each partition in offset order" % label)
    mism = []
    for o in got:
        i = placed.get((o.get("partition"), o.get("offset")))
        if i is None:
            continue
        if o.get("topic") != topic:
            mism.append("offset %s: topic %r" % ((o.get("partition"), o.get("offset")), o.get("topic")))
        elif output_digest(o) != input_digest(records[i]):
            mism.append("p%s/o%s (input record %d) differs: got %s" % (o.get("partition"), o.get("offset"), i,
                                                                        short(json.dumps(o), 200)))
    t.check(not mism, "%s: key, value, headers, timestamp intact (SHA-256 per record)" % label, "; ".join(mism[:3]))
    return {(o.get("partition"), o.get("offset")): output_digest(o) for o in got}


# ---- main ---------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fjord", required=True, help="the Swift `fjord` executable (broker, and the Swift client)")
    ap.add_argument("--languages", help="comma-separated subset of python,c,swift (default: every available one)")
    ap.add_argument("--records", type=int, default=200, help="records per producer (default 200)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the Python client")
    ap.add_argument("--python-installed", action="store_true",
                    help="use the fjord_client installed for --python (pip install), not the source tree")
    ap.add_argument("--c-bin-dir", default=C_BUILD,
                    help="where fjord-produce and fjord-consume are (an install's PREFIX/bin for the installed C client)")
    ap.add_argument("--timeout", type=int, default=180, help="seconds allowed to each subprocess (default 180)")
    ap.add_argument("--idle-ms", type=int, default=5000, help="consumers' --timeout-ms (default 5000)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (data, certs, logs)")
    args = ap.parse_args(argv)
    args.fjord = os.path.abspath(args.fjord)

    def on_term(signum, frame):  # run the finally blocks (stop the broker) on SIGTERM too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)

    t = Tally()
    table = languages(args)
    explicit = args.languages is not None
    wanted = [x.strip() for x in (args.languages or ",".join(table)).split(",") if x.strip()]
    langs = []
    for name in wanted:
        lang = table.get(name)
        if lang is None:
            t.check(False, "language %s" % name, "unknown (known: %s)" % ", ".join(table))
            continue
        why = lang.missing()
        if why is None:
            langs.append(lang)
        elif explicit:
            t.check(False, "language %s available" % name, why)
        else:
            print("SKIP  %s: %s" % (name, why), flush=True)

    if not os.access(args.fjord, os.X_OK):
        t.check(False, "broker executable", "%s is not executable" % args.fjord)
        langs = []
    if not langs:
        t.check(False, "at least one language to test")
        print("%d passed, %d failed" % (t.passed, t.failed))
        return 1

    workdir = tempfile.mkdtemp(prefix="fjord-interop-")
    broker = None
    try:
        broker = Broker(args.fjord, workdir, args.timeout)
        print("broker on %s (data and logs in %s)" % (broker.addr, workdir), flush=True)
        crt, key = make_client_cert(broker, workdir)
        conn = ["--broker", broker.addr, "--ca", broker.ca, "--cert", crt, "--key", key]
        admin_env = table["python"].env

        inputs, placements = {}, {}
        for lang in langs:
            topic = "interop-%s" % lang.name
            rc, out, err = run([args.python, "-m", "fjord_client", "create-topic", topic, "--partitions",
                                str(PARTITIONS)] + conn, b"", admin_env, args.timeout)
            if not t.check(rc == 0, "create topic %s (%d partitions)" % (topic, PARTITIONS), short(err)):
                continue
            records = make_records(lang.name, args.records)
            placed = produce_checks(t, lang, topic, records, conn, args.timeout)
            if placed is not None:
                inputs[lang.name] = (topic, records)
                placements[lang.name] = placed

        for pname, (topic, records) in inputs.items():
            views = {}
            for consumer in langs:
                v = consume_checks(t, consumer, pname, topic, records, placements[pname], conn, args.timeout,
                                   args.idle_ms)
                if v is not None:
                    views[consumer.name] = v
            if len(views) > 1:
                names = sorted(views)
                disagree = [n for n in names[1:] if views[n] != views[names[0]]]
                t.check(not disagree, "all consumers agree on %s's topic (%s)" % (pname, ", ".join(names)),
                        "%s disagree(s) with %s" % (", ".join(disagree), names[0]))
    except Exception as exc:  # noqa: BLE001 - report, count, and still stop the broker
        t.check(False, "interop run", "%s: %s" % (type(exc).__name__, exc))
    finally:
        if broker is not None:
            broker.stop()
            if t.failed:
                print("broker log tail:\n" + broker.tail(), flush=True)
        if args.keep:
            print("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
