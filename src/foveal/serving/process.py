"""A `foveal serve` in a child process on loopback, ready when this returns: for tests, benchmarks and
your own integration tests.

    with ServerProcess(["runs/train"], port=free_port()) as server:
        requests.post(server.url + "/predict", ...)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`python -m foveal serve ARGS --port PORT` until the context ends; waits for /readyz."""

    def __init__(self, args: list[str], *, port: int | None = None, ready_timeout: float = 120.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "foveal", "serve", *args, "--port", str(self.port)]
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen | None = None
        self._output = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it

    def __enter__(self) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.args, stdout=self._output, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"foveal serve exited ({self.process.returncode}): {self.output()[-2000:]}"
                )
            if self.ready():
                return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise TimeoutError(
            f"foveal serve was not ready within {self.ready_timeout:g} s: {self.output()[-2000:]}"
        )

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                return json.load(response).get("status") == "ready"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def rss_bytes(self) -> int:
        """The server's resident memory now (Linux /proc)."""
        return self._status_bytes("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The most resident memory the server has held since it started (Linux /proc)."""
        return self._status_bytes("VmHWM")

    def _status_bytes(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc: resident memory is measured on Linux only")

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
