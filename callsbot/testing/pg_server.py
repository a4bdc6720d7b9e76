"""A throw-away PostgreSQL server (initdb + pg_ctl) in a temporary directory, for tests and bench.

It listens on a free loopback port, never 5432: that one may be the machine's shared server.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user that
Debian's ``postgresql`` package creates (``runuser``), else as ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import attrs

from callsbot.testing.redis_server import free_port

USER = "callsbot"


def find_bin(name: str) -> str | None:
    """``name`` on PATH, else in the newest /usr/lib/postgresql/<version>/bin (Debian)."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    return candidates[-1] if candidates else None


def _run_as() -> str | None:
    """The unprivileged user to run the server as when we are root (``None``: run as we are)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@attrs.define
class PostgresServer:
    """One PostgreSQL cluster; :meth:`stop` and :meth:`start` again keep its data and port."""

    port: int = attrs.field(factory=free_port)
    workdir: Path = attrs.field(factory=lambda: Path(tempfile.mkdtemp(prefix="callsbot-pg-")))
    user: str | None = attrs.field(factory=_run_as)
    initialised: bool = False

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL (trust authentication: no password)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        if self.user is None:
            return list(args)
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", self.user, "--", *args]
        return ["su", self.user, "-s", "/bin/sh", "-c", " ".join(map(_quote, args))]

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            log = self.workdir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}"
            )

    def init(self) -> None:
        initdb = find_bin("initdb")
        if initdb is None:
            raise RuntimeError("initdb not found (make test installs Debian's postgresql)")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self._run(
            initdb,
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.initialised = True

    def start(self) -> None:
        if not self.initialised:
            self.init()
        pg_ctl = find_bin("pg_ctl")
        assert pg_ctl is not None
        # -F: no fsync (a test cluster); -k: the socket in our directory, not /var/run.
        options = f"-h 127.0.0.1 -p {self.port} -k {self.workdir} -F -c max_connections=50"
        self._run(
            pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.workdir / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("postgres did not listen within 10 s")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clean; ``immediate``: as if it crashed)."""
        pg_ctl = find_bin("pg_ctl")
        if pg_ctl is None or not (self.data / "postmaster.pid").exists():
            return
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"
