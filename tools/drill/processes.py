"""Starting and always stopping the drill's Prometheus and Alertmanager.

Each child runs in its own process group (so a terminal's Ctrl-C reaches only the drill, which
then stops them in order) and is stopped with SIGTERM, then SIGKILL after a grace period, on
every way out: normal end, exception, Ctrl-C (KeyboardInterrupt) and SIGTERM/SIGHUP (turned
into `DrillInterrupted` by `ProcessSupervisor`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Sequence

STOP_GRACE_SECONDS = 10.0


class DrillInterrupted(KeyboardInterrupt):
    pass


def free_port() -> int:
    """A port nothing listens on now, chosen by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    def __init__(self, name: str, argv: Sequence[str], log_path: Path):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ManagedProcess":
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, no grace: a peer lost as a node is, without leaving its cluster."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def reload(self) -> None:
        """SIGHUP: Prometheus and Alertmanager re-read their configuration."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGHUP)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_ready(process: ManagedProcess, url: str, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail early with the log if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running:
            raise RuntimeError(f"{process.name} exited while starting:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{process.name} not ready after {timeout:.0f}s:\n{process.log_tail()}")


class ProcessSupervisor:
    """Context manager owning every child process; all are stopped when it exits."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []
        self._previous: dict[int, object] = {}

    def start(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process.start()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise DrillInterrupted(f"signal {signal.Signals(signum).name}")

    def __enter__(self) -> "ProcessSupervisor":
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_all()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
