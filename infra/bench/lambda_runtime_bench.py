#!/usr/bin/env python3
"""Time the Lambda function locally against a minimal Lambda Runtime API (standard library only).

    python3 infra/bench/lambda_runtime_bench.py [--bootstrap PATH] [--runs N] [-e VAR=VALUE ...]

Starts the function binary (default: the `bootstrap` inside
target/lambda/cellucid-lambda/bootstrap.zip, else target/release/cellucid-lambda) with
AWS_LAMBDA_RUNTIME_API pointing at an in-process emulator on 127.0.0.1, feeds it a fixed sequence
of events from events/, and reports:

  * init-to-first-response: process spawn -> first response posted (a cold start, minus
    Firecracker/sandbox setup which only AWS can add);
  * per-invocation handler time: event handed out -> response posted (warm container).

Each run starts a fresh process. Nothing leaves the machine.
"""
import argparse
import http.server
import json
import os
import pathlib
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEQUENCE = [
    # The viewer's probe sequence, then data routes; a repeated route shows the warm cache.
    "v2-health.json",
    "v2-info.json",
    "v2-datasets.json",
    "v2-identity.json",
    "v2-obs-manifest.json",
    "v2-var-manifest.json",
    "v2-connectivity-manifest.json",
    "v2-points-3d.json",
    "v2-points-2d-gzip.json",
    "v2-obs-codes-gzip.json",
    "v2-gene-gzip.json",
    "v2-gene-gzip.json",
    "v2-edges-src-gzip.json",
    "v2-vectors-gzip.json",
]


class Emulator:
    def __init__(self, events):
        self.pending = queue.Queue()
        for i, (name, body) in enumerate(events):
            self.pending.put((f"req-{i:04d}", name, body))
        self.handed = {}
        self.done = []
        self.errors = []
        self.finished = threading.Event()
        self.total = len(events)
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self._reply(404)
                try:
                    rid, name, body = emulator.pending.get(timeout=60)
                except queue.Empty:
                    return self._reply(500)
                emulator.handed[rid] = (name, time.perf_counter())
                deadline = int(time.time() * 1000) + 30_000
                self._reply(200, body, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": rid,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:cellucid-edge",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                })

            def do_POST(self):
                now = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length)
                parts = self.path.strip("/").split("/")
                if parts[-1] == "response":
                    rid = parts[-2]
                    name, handed = emulator.handed.get(rid, ("?", now))
                    status = json.loads(payload or b"{}").get("statusCode")
                    emulator.done.append((name, handed, now, status, len(payload)))
                else:
                    emulator.errors.append((self.path, payload[:500]))
                self._reply(202, b"{}", {"Content-Type": "application/json"})
                if len(emulator.done) + len(emulator.errors) >= emulator.total:
                    emulator.finished.set()

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the function is killed while its next poll is pending

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def find_bootstrap(explicit):
    if explicit:
        return pathlib.Path(explicit), None
    zipped = ROOT / "target/lambda/cellucid-lambda/bootstrap.zip"
    if zipped.exists():
        tmp = pathlib.Path(tempfile.mkdtemp())
        with zipfile.ZipFile(zipped) as z:
            z.extract("bootstrap", tmp)
        path = tmp / "bootstrap"
        path.chmod(0o755)
        return path, tmp
    native = ROOT / "target/release/cellucid-lambda"
    if native.exists():
        return native, None
    sys.exit("no function binary: run `cargo lambda build --release --bin cellucid-lambda --no-default-features --output-format zip`")


def run_once(binary, extra_env):
    events = [(n, (ROOT / "events" / n).read_bytes()) for n in SEQUENCE]
    emu = Emulator(events)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{emu.port}",
        "AWS_LAMBDA_FUNCTION_NAME": "cellucid-edge",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/cellucid-edge",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_REGION": "us-east-1",
        "CELLUCID_LOG": "warn",
    }
    env.update(extra_env)
    start = time.perf_counter()
    proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = emu.finished.wait(timeout=120)
    proc.kill()
    _, stderr = proc.communicate()
    emu.server.shutdown()
    if not ok or emu.errors:
        sys.exit(f"function failed: {emu.errors} {stderr.decode(errors='replace')[-2000:]}")
    first = emu.done[0][2] - start
    handler = [(name, (t1 - t0) * 1000, status, size) for name, t0, t1, status, size in emu.done]
    return first * 1000, handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="function binary (default: bootstrap from the cargo lambda zip)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-e", "--env", action="append", default=[], help="extra VAR=VALUE for the function")
    args = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.env)
    binary, tmp = find_bootstrap(args.bootstrap)
    try:
        firsts, per_route = [], {}
        for _ in range(args.runs):
            first, handler = run_once(binary, extra)
            firsts.append(first)
            seen = {}
            for name, ms, status, size in handler:
                seen[name] = seen.get(name, 0) + 1
                key = name if seen[name] == 1 else f"{name} (again)"
                per_route.setdefault(key, []).append((ms, status, size))
        print(f"binary: {binary} ({binary.stat().st_size} bytes)  env: {extra or '{}'}")
        print(f"init-to-first-response over {args.runs} cold starts: median {statistics.median(firsts):.1f} ms "
              f"(min {min(firsts):.1f}, max {max(firsts):.1f})")
        print("handler time per event (median over runs), first event includes the lazy open if any:")
        for key, vals in per_route.items():
            print(f"  {key:38s} {statistics.median(v[0] for v in vals):8.2f} ms  status {vals[0][1]}  envelope {vals[0][2]} B")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
