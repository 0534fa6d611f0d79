"""Frames: the checksummed records a log segment file is made of.

A segment is a plain file of frames written back to back, append only.  A
frame is a 32-byte header and a payload (docs/format.md, "Feature log")::

    offset  size  field
    0       4     magic b"VSLF"
    4       4     payload length, u32 LE
    8       1     kind (KIND_*)
    9       1     frame version (1)
    10      6     zero
    16      8     ts: f64 LE, seconds since the Unix epoch
    24      8     checksum: XXH3-64 (seed 0) of header bytes 4..24, then the payload

The payload is a u32 LE length M, a msgpack map of M bytes (the frame's
*meta*), then the frame's buffers back to back.  ``meta["b"]`` names the
buffers and ``meta["l"]`` gives their lengths, so a reader slices them
without copying.

Why this shape: a whole call (5,000 candidates) is one frame written with one
``writev``, so logging costs one system call and no per-candidate Python
object.  A process killed mid-write leaves a *torn* frame at the end of its
file: too short, or with a checksum that does not match.  Readers stop at the
first frame that does not check out, so a torn tail is dropped and every frame
before it is intact.

Example::

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    write_frame(fd, KIND_LABEL, 1.7e9, {"r": "req-1"}, [])
    for frame in iter_frames(path):
        print(frame.kind, frame.ts, frame.meta())
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import xxhash

from ..packing import ThreadPacker

__all__ = [
    "HEADER_SIZE",
    "KIND_DICT",
    "KIND_HEADER",
    "KIND_LABEL",
    "KIND_RANKING",
    "KIND_RETRIEVAL",
    "KIND_SCHEMA",
    "MAGIC",
    "Frame",
    "ScanResult",
    "encode_frame",
    "iter_frames",
    "next_good_frame",
    "write_frame",
]

MAGIC = b"VSLF"
VERSION = 1
HEADER_SIZE = 32
_HDR = struct.Struct("<4sIBB6xdQ")

KIND_HEADER = 0  # first frame of every segment: who wrote it and when
KIND_RETRIEVAL = 1  # one retrieval call
KIND_RANKING = 2  # one ranking call
KIND_LABEL = 3  # one outcome
KIND_SCHEMA = 4  # a table's schema, written before the first call that uses it in a segment
KIND_DICT = 5  # category strings of codes a segment's calls use, written before the first call that uses them

STAGE_OF_KIND = {KIND_RETRIEVAL: "retrieval", KIND_RANKING: "ranking"}
KIND_OF_STAGE = {v: k for k, v in STAGE_OF_KIND.items()}


def _nbytes(b: Any) -> int:
    return b.nbytes if isinstance(b, np.ndarray) else len(b) if isinstance(b, bytes) else memoryview(b).nbytes


# Every logging call packs a frame's meta map: one Packer per thread, reused.
_pack_meta = ThreadPacker(lambda: msgpack.Packer(use_bin_type=True)).pack


def encode_frame(kind: int, ts: float, meta: dict[str, Any], buffers: Sequence[Any]) -> list[Any]:
    """The pieces of one frame (header, meta, buffers), ready for ``os.writev``.

    ``buffers`` are bytes-like objects (bytes, contiguous numpy arrays); they
    are not copied.
    """
    meta["l"] = [_nbytes(b) for b in buffers]
    packed = _pack_meta(meta)
    head = len(packed).to_bytes(4, "little") + packed
    length = len(head) + sum(meta["l"])
    fields = _HDR.pack(MAGIC, length, kind, VERSION, ts, 0)
    h = xxhash.xxh3_64(fields[4:24])
    h.update(head)
    for b in buffers:
        h.update(b)
    header = fields[:24] + h.intdigest().to_bytes(8, "little")
    return [header, head, *buffers]


def write_frame(fd: int, kind: int, ts: float, meta: dict[str, Any], buffers: Sequence[Any]) -> int:
    """Append one frame to ``fd`` (opened with O_APPEND); returns the bytes written.

    A short write (a signal, a full disk) continues where it stopped; an
    OSError propagates and the caller truncates the file back to where the
    frame began, so a failed frame never sits before a good one.
    """
    parts = encode_frame(kind, ts, meta, buffers)
    total = HEADER_SIZE + int.from_bytes(parts[0][4:8], "little")
    done = os.writev(fd, parts)
    if done < total:
        rest = b"".join(bytes(memoryview(p).cast("B")) for p in parts)[done:]
        while rest:
            n = os.write(fd, rest)
            rest = rest[n:]
    return total


@dataclass
class Frame:
    """One frame read back: its place in the file, kind, ts and (when loaded) payload."""

    offset: int
    end: int
    kind: int
    ts: float
    payload: bytes | None

    def meta(self) -> dict[str, Any]:
        """The frame's msgpack meta map."""
        assert self.payload is not None
        m = int.from_bytes(self.payload[:4], "little")
        return msgpack.unpackb(self.payload[4 : 4 + m], raw=False, strict_map_key=False)

    def parts(self) -> tuple[dict[str, Any], dict[str, memoryview]]:
        """``(meta, {buffer name: memoryview})``; the views share the payload's memory."""
        assert self.payload is not None
        m = int.from_bytes(self.payload[:4], "little")
        meta = msgpack.unpackb(self.payload[4 : 4 + m], raw=False, strict_map_key=False)
        view = memoryview(self.payload)
        pos = 4 + m
        bufs: dict[str, memoryview] = {}
        for name, n in zip(meta.get("b", ()), meta.get("l", ())):
            bufs[name] = view[pos : pos + n]
            pos += n
        return meta, bufs


@dataclass
class ScanResult:
    """How far a file's frames check out: filled in by :func:`iter_frames` as it goes.

    ``valid_end`` is the offset just past the last good frame; ``size`` the
    file's length when the scan ended; ``problem`` says why the scan stopped
    before ``size`` (a torn tail after a crash, or damage), else None.
    """

    valid_end: int = 0
    size: int = 0
    problem: str | None = None
    frames: int = 0
    kinds: dict[int, int] = field(default_factory=dict)


def iter_frames(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    stop: int | None = None,
    load: Callable[[int, float, int], bool] | None = None,
    result: ScanResult | None = None,
) -> Iterator[Frame]:
    """Yield the good frames of a segment file from offset ``start`` (a frame boundary).

    ``load(kind, ts, offset)`` decides whether a frame's payload is read (and
    its checksum checked); by default every payload is.  A skipped frame is
    only checked for its magic and length, which is enough to find a tail torn
    by a crash (it is short).  The scan stops at ``stop`` (default: the end of
    the file) or at the first frame that does not check out; ``result`` says
    which.
    """
    res = result if result is not None else ScanResult()
    res.valid_end = start
    with open(path, "rb", buffering=1 << 20) as f:
        size = os.fstat(f.fileno()).st_size
        res.size = size
        end = size if stop is None else min(stop, size)
        pos = start
        if pos:
            f.seek(pos)
        while pos < end:
            hdr = f.read(HEADER_SIZE)
            if len(hdr) < HEADER_SIZE:
                res.problem = f"torn frame header at offset {pos} ({len(hdr)} of {HEADER_SIZE} bytes)"
                return
            magic, length, kind, version, ts, check = _HDR.unpack(hdr)
            if magic != MAGIC or version != VERSION:
                res.problem = f"bad frame magic or version at offset {pos}"
                return
            fend = pos + HEADER_SIZE + length
            if fend > size:
                res.problem = f"torn frame at offset {pos}: {length} payload bytes announced, {size - pos - HEADER_SIZE} present"
                return
            if load is None or load(kind, ts, pos):
                payload = f.read(length)
                if len(payload) < length:
                    res.problem = f"torn frame at offset {pos}"
                    return
                h = xxhash.xxh3_64(hdr[4:24])
                h.update(payload)
                if h.intdigest() != check:
                    res.problem = f"checksum mismatch in frame at offset {pos}"
                    return
                frame = Frame(pos, fend, kind, ts, payload)
            else:
                f.seek(length, 1)
                frame = Frame(pos, fend, kind, ts, None)
            pos = fend
            res.valid_end = pos
            res.frames += 1
            res.kinds[kind] = res.kinds.get(kind, 0) + 1
            yield frame


def next_good_frame(path: str | os.PathLike[str], start: int) -> int | None:
    """Offset of the first frame at or after ``start`` that checks out, if any (damage detection)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    pos = data.find(MAGIC)
    while pos >= 0:
        if pos + HEADER_SIZE <= len(data):
            _, length, _, version, _, check = _HDR.unpack_from(data, pos)
            end = pos + HEADER_SIZE + length
            if version == VERSION and end <= len(data):
                h = xxhash.xxh3_64(data[pos + 4 : pos + 24])
                h.update(data[pos + HEADER_SIZE : end])
                if h.intdigest() == check:
                    return start + pos
        pos = data.find(MAGIC, pos + 1)
    return None
