"""Where the server listens, and who may talk to it: loopback checks, the token file, the Unix socket."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat
from pathlib import Path

from vecstore.errors import VecstoreError

__all__ = ["bind_unix", "is_loopback", "read_token_file"]

log = logging.getLogger("vecstore.server")


def is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (surrounding whitespace stripped); it must not be empty."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
        mode = p.stat().st_mode
    except OSError as e:
        raise VecstoreError(f"cannot read token file {p}: {e.strerror}") from None
    if not token:
        raise VecstoreError(f"token file {p} is empty", hint="write a long random secret into it")
    if mode & 0o077:
        log.warning("token file %s is readable by other users (mode %o); chmod 600 it", p, stat.S_IMODE(mode))
    return token


def bind_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` with mode 0600, replacing a stale socket file."""
    if len(os.fsencode(path)) > 100:
        size = len(os.fsencode(path))
        raise VecstoreError(f"Unix socket path is too long ({size} bytes; the OS allows about 100): {path}")
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise VecstoreError(f"{path} exists and is not a socket", hint="pick another --unix path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # left over by a server that died: nobody listens on it
        else:
            raise VecstoreError(f"another server is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # Until listen() a connect is refused, so tightening the mode here leaves no window.
        os.chmod(path, 0o600)
        sock.listen(512)
    except OSError as e:
        sock.close()
        missing = isinstance(e, FileNotFoundError)
        raise VecstoreError(
            f"cannot listen on the Unix socket {path}: {e.strerror or e}",
            hint="create its directory first, or pick another --unix path" if missing
            else "check that directory's permissions, or pick another --unix path",
        ) from e
    sock.setblocking(False)
    return sock
