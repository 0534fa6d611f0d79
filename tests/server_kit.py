"""Helpers for the server tests: start a server on a Unix socket or loopback TCP, raw frames."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vecstore.server import start_in_thread
from vecstore.server.protocol import packb, unpackb

import vecstore

ROOT = Path(__file__).resolve().parents[1]


def start(store: vecstore.Store, transport: str, tmp_path: Path, **options: Any) -> Any:
    """A RunningServer for ``store`` on ``transport`` ("unix" or "tcp"), on its own thread."""
    if transport == "unix":
        return start_in_thread(store, unix=str(tmp_path / "vs.sock"), **options)
    return start_in_thread(store, host="127.0.0.1", port=0, **options)


def raw_socket(address: str, timeout: float = 10.0) -> socket.socket:
    """A plain socket to a server URL, for speaking the protocol by hand."""
    if address.startswith("unix://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address[len("unix://") :])
    else:
        host, port = address[len("tcp://") :].rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=timeout)
    return s


def send_frame(s: socket.socket, body: bytes) -> None:
    s.sendall(struct.pack(">I", len(body)) + body)


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionResetError("closed")
        out += chunk
    return bytes(out)


def recv_frame(s: socket.socket) -> Any:
    n = struct.unpack(">I", recv_exact(s, 4))[0]
    return unpackb(recv_exact(s, n))


def request(s: socket.socket, op: str, rid: Any = 1, **args: Any) -> Any:
    send_frame(s, packb({"id": rid, "op": op, "args": args}))
    return recv_frame(s)


def closed_by_peer(s: socket.socket) -> bool:
    """True once the server has closed the connection (reads EOF or a reset), within the socket timeout."""
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def serve_subprocess(path: Path, sock: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``python -m vecstore.server PATH --unix SOCK`` in a child process; returns once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vecstore.server", str(path), "--unix", str(sock), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        if sock.exists():
            return proc
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("server did not start within 30 s")


__all__ = ["closed_by_peer", "raw_socket", "recv_frame", "request", "send_frame", "serve_subprocess", "start"]
