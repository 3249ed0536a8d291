"""Helpers shared by the benchmark scripts in bench/ (standard library only; boto3 for uploads).

Child processes (servers, moto) on 127.0.0.1, timed runs under `/usr/bin/time -v`, HTTP GETs
that decode gzip and read cellucid-edge's `Server-Timing`, and peak RSS from /proc.
"""
from __future__ import annotations

import gzip
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

S3_ENV = {
    "AWS_ALLOW_HTTP": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_run(cmd, env=None):
    """Runs `cmd` under /usr/bin/time -v: (wall seconds, peak RSS MiB, stdout); exits on failure."""
    out = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{out.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", out.stderr).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return secs, rss / 1024, out.stdout


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (the process's peak resident set) in MiB, or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def server_timing(header: str) -> dict:
    """The cache outcome, store GETs and bytes read that cellucid-edge reports per response."""
    gets = re.search(r"gets=(\d+) bytes=(\d+)", header or "")
    outcome = re.search(r'cache;desc="(\w+)"', header or "")
    return {
        "gets": int(gets.group(1)) if gets else None,
        "read": int(gets.group(2)) if gets else None,
        "outcome": outcome.group(1) if outcome else None,
    }


def get(port: int, route: str, timeout: float = 600.0) -> dict:
    """One GET with `Accept-Encoding: gzip` on a new connection; the body comes back decoded."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request("GET", "/" + route, headers={"Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        raw = resp.read()
        seconds = time.perf_counter() - t0
        body = gzip.decompress(raw) if resp.getheader("Content-Encoding") == "gzip" else raw
        return {
            "status": resp.status,
            "seconds": seconds,
            "wire_bytes": len(raw),
            "body": body,
            **server_timing(resp.getheader("Server-Timing", "")),
        }
    except (OSError, http.client.HTTPException) as e:
        return {"status": 0, "seconds": time.perf_counter() - t0, "error": str(e), "body": b""}
    finally:
        conn.close()


class ServerProcess:
    """A server in a child process; `startup_s` is spawn → first 200 on /_cellucid/health."""

    def __init__(self, cmd, port, env=None, log_name="server", startup_timeout=1800.0):
        self.port = port
        self.log_path = Path(tempfile.gettempdir()) / f"bench-{log_name}-{port}.log"
        self.log = open(self.log_path, "w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{log_name} exited during start-up; log: {self.log_path}")
            if get(port, "_cellucid/health", timeout=5)["status"] == 200:
                break
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"{log_name} did not answer health in {startup_timeout} s")
            time.sleep(0.02)
        self.startup_s = time.perf_counter() - t0

    def get(self, route: str, timeout: float = 600.0) -> dict:
        return get(self.port, route, timeout)

    def peak_rss_mib(self):
        return peak_rss_mib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_moto():
    """`moto_server` on a free loopback port: (process, endpoint URL)."""
    port = free_port()
    log = open(os.path.join(tempfile.gettempdir(), f"bench-moto-{port}.log"), "w")
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                sys.exit("moto_server did not start")
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def upload(endpoint, bucket, prefix, root: Path) -> int:
    """Copies a store directory to s3://bucket/prefix on `endpoint`; returns the object count."""
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    n = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")
            n += 1
    return n


def percentile(sorted_values, q: float):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]
