"""A throwaway PostgreSQL cluster the bench owns: initdb in a temporary directory, started on a
free loopback port, restartable (``pg_ctl restart -m fast``) without harming anyone, removed
at the end.  Run as the ``postgres`` user when the bench runs as root (PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from bench.procs import free_port, tcp_ready

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """initdb or pg_ctl failed, or no PostgreSQL binaries were found."""


def bin_dir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: the newest /usr/lib/postgresql/*/bin, else
    wherever ``initdb`` is on the PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                        else 0)
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise ClusterError("no initdb found (install postgresql, e.g. apt-get install postgresql)")


class Cluster:
    """``with Cluster() as pg:`` a running PostgreSQL on ``pg.server_url`` (trust auth)."""

    def __init__(self, *, log_dir: Path, port: int | None = None) -> None:
        self.bin = bin_dir()
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        # The server writes its log as the postgres user, which may not reach ``log_dir`` (a
        # pytest tmp_path is private to root): it goes next to the data, copied out at stop.
        self.log_path = self.base / "postgresql.log"
        self.saved_log = log_dir / "postgresql.log"
        self.data = self.base / "data"
        self._user = self._run_as()

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run_as(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise ClusterError("running as root and there is no postgres user") from None
        return entry.pw_uid, entry.pw_gid

    def _preexec(self) -> Callable[[], None] | None:
        if self._user is None:
            return None
        uid, gid = self._user

        def drop() -> None:
            os.setgid(gid)
            os.setuid(uid)

        return drop

    def _pg(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run([str(self.bin / args[0]), *args[1:]],  # noqa: S603 - our argv
                              capture_output=True, text=True, timeout=timeout,
                              preexec_fn=self._preexec(), cwd=self.base)
        if proc.returncode != 0:
            raise ClusterError(f"{args[0]} {args[1] if len(args) > 1 else ''} failed "
                               f"({proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    def _options(self) -> str:
        # A throwaway: no fsync (it shares the disk with other work), sockets in its own dir.
        return (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200")

    def start(self) -> None:
        if self._user is not None:
            os.chown(self.base, *self._user)
        if not self.data.exists():
            self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                     "-E", "UTF8", "--no-sync")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60",
                 "-o", self._options(), "start")
        log.info("PostgreSQL cluster ready on port %d (%s)", self.port, self.data)

    def restart(self) -> float:
        """``pg_ctl restart -m fast``: every connection is closed; returns the seconds it took."""
        started = time.monotonic()
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60",
                 "-m", "fast", "-o", self._options(), "restart")
        return time.monotonic() - started

    def stop_server(self) -> None:
        """``pg_ctl stop -m fast``, keeping the cluster's files (``start()`` starts it again)."""
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", "fast", "stop")

    def ready(self) -> bool:
        return tcp_ready("127.0.0.1", self.port)

    def stop(self) -> None:
        """Stop the cluster (fast, then immediate, then SIGKILL) and delete its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                for mode in ("fast", "immediate"):
                    try:
                        self._pg("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", mode,
                                 "stop", timeout=60)
                        break
                    except (ClusterError, subprocess.TimeoutExpired):
                        log.warning("pg_ctl stop -m %s failed", mode, exc_info=True)
                else:
                    self._kill_postmaster()
        finally:
            try:
                self.saved_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.log_path, self.saved_log)
            except OSError:
                log.warning("could not keep the PostgreSQL log", exc_info=True)
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
