"""A scalable Bloom filter over 64-bit keys, vectorized with numpy.

Keys are already hashes (the table's XXH3 keys), but may be poorly mixed (the
``hash_bits`` test hook truncates them, and tests use sequential integers), so
each key is re-mixed with the 64-bit murmur3 finalizer, salted per sub-filter.
The k probe positions come from the two 32-bit halves by double hashing, and
each is mapped into ``[0, m)`` with a multiply-shift instead of a modulo
(several times faster in numpy).  That needs ``m < 2**32`` bits per sub-filter
(about 440M keys at 1%); a larger capacity is split over several sub-filters.

**Growth**: when the newest sub-filter is full, another with twice the capacity
and a false-positive target four times tighter is added, so the overall rate
stays below ``p * (1 + 1/4 + 1/16 + ...) = 1.33 p`` at any size.

**Speed**: ``may_contain`` probes one position for every key, keeps only the
keys that hit, and probes the next position for those: an absent key is
usually rejected after one or two probes, so a batch costs about two probes
per absent key instead of k.

Example::

    >>> bf = BloomFilter(capacity=1000, fpr=0.01)
    >>> bf.add(np.arange(10, dtype=np.uint64))
    10
    >>> bool(bf.may_contain(np.array([3], dtype=np.uint64))[0])
    True
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import xxhash

from .errors import CorruptionError, InvalidValueError

__all__ = ["BloomFilter"]

_MAGIC = b"VSBLOOM1"
_VERSION = 1
_MAX_BITS = (1 << 32) - 64
_CHUNK = 1 << 16
_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = 0x9E3779B97F4A7C15
_HDR = struct.Struct("<8sII")
_SUB = struct.Struct("<QQQId")


def _mix(keys: np.ndarray, salt: int) -> np.ndarray:
    """murmur3 fmix64 of ``keys ^ salt``: every output bit depends on every input bit."""
    with np.errstate(over="ignore"):
        h = keys ^ np.uint64(salt)
        h ^= h >> np.uint64(33)
        h *= _C1
        h ^= h >> np.uint64(33)
        h *= _C2
        h ^= h >> np.uint64(33)
    return h


class _Sub:
    """One classic Bloom filter: m bits, k probes, a capacity and a target rate."""

    __slots__ = ("bits", "capacity", "count", "fpr", "k", "m", "salt")

    def __init__(self, capacity: int, fpr: float, index: int) -> None:
        m = math.ceil(-capacity * math.log(fpr) / (math.log(2) ** 2))
        m = min(max(64, (m + 63) // 64 * 64), _MAX_BITS)
        self.m = m
        self.k = max(1, round(m / capacity * math.log(2)))
        self.capacity = capacity
        self.fpr = fpr
        self.count = 0
        self.salt = (_GOLDEN * (index + 1)) & ((1 << 64) - 1)
        self.bits = np.zeros(m // 8, dtype=np.uint8)

    def _halves(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = _mix(keys, self.salt)
        return h & _M32, (h >> np.uint64(32)) | np.uint64(1)

    def add(self, keys: np.ndarray) -> None:
        m = np.uint64(self.m)
        for lo in range(0, len(keys), _CHUNK):
            h1, h2 = self._halves(keys[lo : lo + _CHUNK])
            with np.errstate(over="ignore"):
                j = np.arange(self.k, dtype=np.uint64)
                pos = ((((h1[:, None] + j * h2[:, None]) & _M32) * m) >> np.uint64(32)).ravel()
            byte = pos >> np.uint64(3)
            bit = (pos & np.uint64(7)).astype(np.uint8)
            # A fancy-indexed |= loses updates when an index repeats with different
            # values, so set one bit position at a time: repeats then agree.
            for b in range(8):
                sel = byte[bit == b]
                self.bits[sel] |= np.uint8(1 << b)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        out = np.zeros(len(keys), dtype=bool)
        m = np.uint64(self.m)
        bits = self.bits
        for lo in range(0, len(keys), _CHUNK):
            h1, h2 = self._halves(keys[lo : lo + _CHUNK])
            idx = np.arange(lo, lo + len(h1))
            with np.errstate(over="ignore"):
                for j in range(self.k):
                    pos = (((h1 + np.uint64(j) * h2) & _M32) * m) >> np.uint64(32)
                    hit = (bits[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
                    keep = hit.view(bool)
                    if not keep.all():
                        idx, h1, h2 = idx[keep], h1[keep], h2[keep]
                        if len(idx) == 0:
                            break
            out[idx] = True
        return out

    def estimated_fpr(self) -> float:
        return (1.0 - math.exp(-self.k * self.count / self.m)) ** self.k


class BloomFilter:
    """A growing Bloom filter of u64 keys: never a false negative.

    ``capacity`` and ``fpr`` size the first sub-filter; later ones are added
    as needed (see the module docstring).
    """

    def __init__(self, *, capacity: int, fpr: float) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise InvalidValueError(f"Bloom filter capacity must be a positive integer, got {capacity!r}")
        if not (isinstance(fpr, (float, int)) and 0.0 < fpr < 1.0):
            raise InvalidValueError(f"Bloom filter fpr must be in (0, 1), got {fpr!r}")
        self.capacity = int(capacity)
        self.fpr = float(fpr)
        self._subs: list[_Sub] = [_Sub(self.capacity, self.fpr, 0)]
        # A capacity too large for one sub-filter's 2**32 bits is handled by growth.
        self._subs[0].capacity = min(self.capacity, self._max_capacity(self.fpr))

    @staticmethod
    def _max_capacity(fpr: float) -> int:
        return int(_MAX_BITS * (math.log(2) ** 2) / -math.log(fpr))

    @staticmethod
    def _keys(keys: Any) -> np.ndarray:
        arr = np.asarray(keys)
        if arr.dtype == np.uint64:
            return arr.ravel()
        if arr.dtype == np.int64:
            return arr.ravel().view(np.uint64)
        if arr.size == 0:
            return np.zeros(0, dtype=np.uint64)
        raise InvalidValueError(f"Bloom filter keys must be a uint64 (or int64) array, got dtype {arr.dtype}")

    @property
    def count(self) -> int:
        return sum(s.count for s in self._subs)

    @property
    def nbytes(self) -> int:
        return sum(s.bits.nbytes for s in self._subs)

    @property
    def num_filters(self) -> int:
        return len(self._subs)

    def may_contain(self, keys: Any) -> np.ndarray:
        """One bool per key: False means surely never added."""
        keys = self._keys(keys)
        out = self._subs[0].contains(keys)
        for sub in self._subs[1:]:
            rest = np.flatnonzero(~out)
            if len(rest) == 0:
                break
            out[rest] = sub.contains(keys[rest])
        return out

    def add(self, keys: Any) -> int:
        """Add keys; returns how many were new (keys already maybe-present are not counted)."""
        keys = self._keys(keys)
        if len(keys) == 0:
            return 0
        keys = np.sort(keys[~self.may_contain(keys)])
        if len(keys) > 1:
            keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
        added = len(keys)
        while len(keys):
            sub = self._subs[-1]
            room = sub.capacity - sub.count
            if room <= 0:
                nxt = len(self._subs)
                fpr = self.fpr / 4**nxt
                cap = min(sub.capacity * 2, self._max_capacity(fpr))
                new = _Sub(cap, fpr, nxt)
                new.capacity = cap
                self._subs.append(new)
                continue
            take, keys = keys[:room], keys[room:]
            sub.add(take)
            sub.count += len(take)
        return added

    def estimated_fpr(self) -> float:
        """The false-positive rate expected from each sub-filter's size, probes and fill."""
        p_none = 1.0
        for s in self._subs:
            p_none *= 1.0 - s.estimated_fpr()
        return 1.0 - p_none

    def filters_info(self) -> list[dict[str, Any]]:
        """Per sub-filter: capacity, count, bits, hashes and its false-positive target."""
        return [{"capacity": s.capacity, "count": s.count, "bits": s.m, "hashes": s.k, "fpr": s.fpr} for s in self._subs]

    def copy(self) -> BloomFilter:
        other = BloomFilter.__new__(BloomFilter)
        other.capacity, other.fpr = self.capacity, self.fpr
        other._subs = []
        for s in self._subs:
            c = _Sub.__new__(_Sub)
            c.bits, c.capacity, c.count, c.fpr, c.k, c.m, c.salt = s.bits.copy(), s.capacity, s.count, s.fpr, s.k, s.m, s.salt
            other._subs.append(c)
        return other

    # -- persistence ---------------------------------------------------------

    def to_bytes(self, meta: dict[str, Any]) -> bytes:
        """Self-describing, versioned bytes with an XXH3 checksum of everything before it."""
        meta_b = msgpack.packb({"capacity": self.capacity, "fpr": self.fpr, **meta})
        parts = [_HDR.pack(_MAGIC, _VERSION, len(self._subs)), struct.pack("<I", len(meta_b)), meta_b]
        for s in self._subs:
            parts.append(_SUB.pack(s.capacity, s.count, s.m, s.k, s.fpr))
        for s in self._subs:
            parts.append(s.bits.tobytes())
        body = b"".join(parts)
        return body + struct.pack("<Q", xxhash.xxh3_64_intdigest(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[BloomFilter, dict[str, Any]]:
        """Inverse of :meth:`to_bytes`; CorruptionError for anything torn, damaged or foreign."""
        if len(data) < _HDR.size + 12 or data[:8] != _MAGIC:
            raise CorruptionError("not a vecstore Bloom filter file (bad magic or too short)")
        body, (checksum,) = data[:-8], struct.unpack("<Q", data[-8:])
        if xxhash.xxh3_64_intdigest(body) != checksum:
            raise CorruptionError("Bloom filter file failed its checksum", hint="it is rebuilt from the rows")
        _, version, nsubs = _HDR.unpack_from(body)
        if version != _VERSION:
            raise CorruptionError(f"Bloom filter file has unknown version {version}")
        off = _HDR.size
        (mlen,) = struct.unpack_from("<I", body, off)
        off += 4
        meta = msgpack.unpackb(body[off : off + mlen])
        off += mlen
        bf = cls.__new__(cls)
        bf.capacity, bf.fpr = int(meta.pop("capacity")), float(meta.pop("fpr"))
        bf._subs = []
        for i in range(nsubs):
            cap, count, m, k, fpr = _SUB.unpack_from(body, off)
            off += _SUB.size
            s = _Sub.__new__(_Sub)
            s.capacity, s.count, s.m, s.k, s.fpr = cap, count, m, k, fpr
            s.salt = (_GOLDEN * (i + 1)) & ((1 << 64) - 1)
            bf._subs.append(s)
        for s in bf._subs:
            n = s.m // 8
            if off + n > len(body):
                raise CorruptionError("Bloom filter file is truncated")
            s.bits = np.frombuffer(body, dtype=np.uint8, count=n, offset=off).copy()
            off += n
        if off != len(body):
            raise CorruptionError("Bloom filter file has trailing bytes")
        return bf, meta

    def save(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        """Write atomically: a temp file in the same directory, fsync, rename, fsync the directory."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_bytes(meta)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> tuple[BloomFilter, dict[str, Any]]:
        """Read a file written by :meth:`save` (FileNotFoundError passes through)."""
        return cls.from_bytes(Path(path).read_bytes())
