"""A throw-away ``redis-server`` on a free loopback port, for tests and benchmarks.

Never the default 6379: that one may hold somebody's data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import attrs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` again keep the same port.

    Without ``persistent`` a restart comes back empty, as a Redis without persistence does.
    """

    port: int = attrs.field(factory=free_port)
    #: Keep data across stop/start (append-only file, fsync on every write).
    persistent: bool = False
    #: More configuration, as command-line pairs: ``("--maxmemory", "1mb")``, an ACL user as
    #: ``("--user", "reader", "on", ">pw", "~*", "+@read")``, ``("--requirepass", "pw")``.
    config: tuple[str, ...] = ()
    #: The password :meth:`command` and :meth:`flushall` authenticate with (the default user's).
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path = attrs.field(factory=lambda: Path(tempfile.mkdtemp(prefix="callsbot-redis-")))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *self.config,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    # A password-protected server answers -NOAUTH: it is up all the same.
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def url_for(self, user: str | None = None, password: str | None = None) -> str:
        """The URL with credentials: ``redis://user:password@127.0.0.1:port/0``."""
        creds = f"{user or ''}:{password or ''}@" if (user or password) else ""
        return f"redis://{creds}127.0.0.1:{self.port}/0"

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def command(self, *args: str) -> str:
        """Send one command (as the default user) and return the reply's first line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            if self.password is not None:
                conn.sendall(_resp("AUTH", self.password))
                reply = _read_line(conn)
                if not reply.startswith("+OK"):
                    raise RuntimeError(f"AUTH refused: {reply}")
            conn.sendall(_resp(*args))
            return _read_line(conn)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open, nothing is answered (until :meth:`thaw`)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


def _resp(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")
