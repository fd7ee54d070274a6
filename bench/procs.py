"""Server processes for the bench: start on a free loopback port, wait until ready, always stop.

Every server runs in its own process group so that stopping it also stops the workers it forked
(Sanic's and uvicorn's worker processes); nothing is ever stopped by name.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """A server did not start, or died while the bench needed it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ready(url: str, timeout: float = 1.0) -> bool:
    """True once ``url`` answers HTTP at all (any status counts: the socket is serving)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            response.read()
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False


def tcp_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def child_pids(pid: int) -> list[int]:
    """Every descendant of ``pid`` (read from /proc), depth first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: ppid follows the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = list(parents.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(parents.get(child, []))
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by the live processes among ``pids``."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    """Open file descriptors of one process (entries of /proc/<pid>/fd), 0 when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Server:
    """One server process group: ``with Server(...) as server:`` starts it and stops it."""

    def __init__(self, name: str, argv: Sequence[str], *, port: int,
                 env: Mapping[str, str] | None = None, ready_path: str | None = "/",
                 log_dir: Path, cwd: Path | None = None, start_timeout: float = 60.0,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = dict(os.environ if env is None else env)
        self.ready_path = ready_path
        self.log_path = log_dir / f"{name}.log"
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.preexec_fn = preexec_fn
        """Run in the child before exec (e.g. raising its open-file limit)."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=self.preexec_fn)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode} at start;"
                                  f" see {self.log_path}")
            if self._ready():
                log.info("%s ready on port %d (pid %d)", self.name, self.port, self.process.pid)
                return
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"{self.name} not ready after {self.start_timeout:.0f} s;"
                          f" see {self.log_path}")

    def _ready(self) -> bool:
        if self.ready_path is None:
            return tcp_ready("127.0.0.1", self.port)
        return http_ready(self.base_url + self.ready_path)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> list[int]:
        """The server's own pid followed by its worker processes."""
        if self.process is None:
            return []
        return [self.process.pid, *child_pids(self.process.pid)]

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids())

    def fds(self) -> int:
        """Open file descriptors of the server and its workers together."""
        return sum(fd_count(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        """CPU seconds the server and its workers used so far."""
        return cpu_seconds(self.pids())

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is not None:
            # The leader is gone (py-spy ends when its recording does) but the workers it
            # started may still run in its group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killing it", self.name, timeout)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(5)
        # Workers left behind by a main process that died first.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class RedisServer(Server):
    """A throwaway redis-server on a free port: no persistence, DEBUG enabled for key filling."""

    def __init__(self, name: str, *, log_dir: Path) -> None:
        port = free_port()
        super().__init__(name, [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--enable-debug-command", "yes", "--protected-mode", "yes",
            "--maxmemory", "0", "--dir", str(log_dir),
        ], port=port, ready_path=None, log_dir=log_dir, start_timeout=20)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def cpu_busy(interval: float = 1.0) -> float:
    """Fraction of all cores busy over ``interval`` seconds (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields)

    idle0, total0 = sample()
    time.sleep(interval)
    idle1, total1 = sample()
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else 0.0


def wait_for_quiet(threshold: float = 0.35, max_wait: float = 15.0) -> float:
    """Wait (at most ``max_wait`` s) until other work leaves the CPUs mostly idle.

    The machine is shared: a test suite running elsewhere halves what a server gets.  Returns
    the last busy fraction seen, which the bench records next to each result."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy
