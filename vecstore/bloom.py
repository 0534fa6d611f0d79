"""A scalable Bloom filter over 64-bit keys, vectorized with numpy.

Why: a table is asked "is this key stored?" for millions of mostly absent keys;
a Bloom filter in memory rejects almost all of them without touching LMDB and
never rejects a stored key.

Keys are already hashes (uint64) but may be poorly mixed (a test hook truncates
them to 8 or 16 bits; callers use sequential integers), so each key is re-mixed
with the murmur3 fmix64 finalizer, salted by the sub-filter index.  The 32-bit
halves ``h1``, ``h2`` of the result give the k probes by double hashing,
``g_i = h1 + i * h2 (mod 2**32)``, each mapped into ``[0, m)`` by the
multiply-shift ``(g_i * m) >> 32``, several times faster in numpy than a modulo.

**Size limit.**  The multiply-shift needs ``m < 2**32`` bits per sub-filter: at
most about 440M keys at 1% (fewer at tighter rates).  A larger ``capacity`` is
not an error: the first sub-filter is capped at that size and the filter grows
past it as below; ``capacity`` then reports the configured value.

**Growth.**  When the newest sub-filter is full, another is added with twice
the capacity (capped as above) and a target four times tighter,
``p_i = p / 4**i``, so the overall rate stays below ``p * (1 + 1/4 + ...) =
1.33 p`` at any fill.  ``add`` counts only keys not already maybe-present
(judged against the filter as it was before the batch; duplicates count once),
so upserts of stored keys use no capacity.

**Speed.**  Chunks of keys are processed so that the k x chunk probe matrix
stays in the L2 cache, in scratch buffers allocated once per call (fresh
multi-megabyte temporaries per chunk cost more in page faults than the
arithmetic).  ``may_contain`` tests the first three probes of every key, then
the rest only for keys that passed: at most half the bits are set, so about
1 in 8 absent keys goes on.

Concurrent ``may_contain`` calls are safe; ``add`` needs exclusive access.  The
bit positions are part of the file format: changing the mixing, salts or probe
derivation needs a new format version.

Example::

    >>> bf = BloomFilter(capacity=1000, fpr=0.01)
    >>> bf.add(np.arange(10, dtype=np.uint64))
    10
    >>> bf.may_contain(np.array([3, 3000], dtype=np.uint64)).tolist()
    [True, False]
    >>> BloomFilter.from_bytes(bf.to_bytes({"seq": 7}))[1]
    {'seq': 7}
"""

from __future__ import annotations

import math
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import xxhash

from .errors import CorruptionError, InvalidValueError
from .fsutil import atomic_replace

__all__ = ["BloomFilter"]

_MAGIC = b"VSBLOOM1"
_VERSION = 1
# magic, version, reserved, num_filters, meta_len, reserved, capacity, fpr, total_len
_HEADER = struct.Struct("<8sHHIIIQdQ")
# capacity, count, bits, hashes, reserved, fpr target
_SUBFILTER = struct.Struct("<QQQIId")
_CHECKSUM = struct.Struct("<Q")

# Largest bit count of one sub-filter: below 2**32 for the multiply-shift and a
# whole number of 64-bit words.  Tests lower it to exercise the capping.
_MAX_BITS = (1 << 32) - 64
_MAX_HASHES = 4096  # sanity bound when reading a file, far above any real k
# Growth tightens the target forever; below this it buys nothing measurable
# and would eventually underflow to 0.
_FPR_FLOOR = 1e-15
# Probe-matrix entries per chunk: k x chunk x 8 bytes stays near the L2 size.
_PROBES_PER_CHUNK = 1 << 17
_MIN_CHUNK = 1024
# Probes tested for every key before the survivors are gathered for the rest.
_FIRST_PROBES = 3

_LN2_SQ = math.log(2) ** 2
_FMIX_C1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = 0x9E3779B97F4A7C15
_U64_33, _U64_32, _U64_6, _U64_63, _U64_1 = (np.uint64(v) for v in (33, 32, 6, 63, 1))
# Column of the low and high 32-bit halves when a uint64 array is viewed as
# pairs of uint32: the bit positions must not depend on the machine.
_LO, _HI = (0, 1) if sys.byteorder == "little" else (1, 0)


def _sizing(capacity: int, fpr: float) -> tuple[int, int]:
    """Bits (a multiple of 64) and hash count for ``capacity`` keys at ``fpr``."""
    exact = -capacity * math.log(fpr) / _LN2_SQ
    hashes = max(1, round(exact / capacity * math.log(2)))
    # Rounding up to whole words only lowers the rate.
    bits = max(64, -(-math.ceil(exact) // 64) * 64)
    return bits, hashes


def _max_capacity(fpr: float) -> int:
    """Most keys one sub-filter can size for at ``fpr`` within ``_MAX_BITS``."""
    n = max(1, int(_MAX_BITS * _LN2_SQ / -math.log(fpr)))
    while n > 1 and _sizing(n, fpr)[0] > _MAX_BITS:  # float rounding at the edge
        n -= 1
    return n


@dataclass
class _Sub:
    """One fixed-size Bloom filter: ``bits`` bits in ``words``, ``hashes`` probes."""

    capacity: int
    count: int
    bits: int
    hashes: int
    fpr: float
    words: np.ndarray  # uint64, bits // 64 entries; bit b is (words[b >> 6] >> (b & 63)) & 1

    @classmethod
    def new(cls, capacity: int, fpr: float) -> _Sub:
        bits, hashes = _sizing(capacity, fpr)
        return cls(capacity, 0, bits, hashes, fpr, np.zeros(bits // 64, dtype=np.uint64))


class _Scratch:
    """Reusable buffers for one sub-filter's probes over chunks of keys.

    ``mix`` hashes up to ``chunk`` keys into the halves ``(h1, h2)``;
    ``positions`` turns them into the word index and bit offset of the probes
    ``steps`` as two contiguous ``(len(steps), n)`` uint64 arrays.
    """

    def __init__(self, hashes: int, chunk: int) -> None:
        self.chunk = chunk
        self.steps = np.arange(hashes, dtype=np.uint32)[:, None]
        self.mixed, self.tmp = np.empty(chunk, np.uint64), np.empty(chunk, np.uint64)
        self.h2, self.g = np.empty(chunk, np.uint32), np.empty(hashes * chunk, np.uint32)
        self.word, self.bit, self.got = (np.empty(hashes * chunk, np.uint64) for _ in range(3))

    def mix(self, keys: np.ndarray, salt: np.uint64) -> tuple[np.ndarray, np.ndarray]:
        n = len(keys)
        h, t = self.mixed[:n], self.tmp[:n]
        # murmur3 fmix64 of key + salt: a bijection, so distinct keys stay distinct.
        np.add(keys, salt, out=h)
        for mult in (_FMIX_C1, _FMIX_C2, None):
            np.right_shift(h, _U64_33, out=t)
            np.bitwise_xor(h, t, out=h)
            if mult is not None:
                np.multiply(h, mult, out=h)
        halves = h.view(np.uint32).reshape(n, 2)
        h2 = self.h2[:n]
        np.bitwise_or(halves[:, _HI], np.uint32(1), out=h2)  # odd step: the k g_i differ mod 2**32
        return halves[:, _LO], h2

    def positions(
        self, h1: np.ndarray, h2: np.ndarray, steps: np.ndarray, bits: np.uint64
    ) -> tuple[np.ndarray, np.ndarray]:
        shape = (len(steps), len(h1))
        size = shape[0] * shape[1]
        g = self.g[:size].reshape(shape)
        np.multiply(steps, h2, out=g)
        np.add(g, h1, out=g)
        pos = self.word[:size].reshape(shape)
        # (g * m) >> 32 spreads g over [0, m) like g % m would, without a division.
        np.multiply(g, bits, out=pos)
        np.right_shift(pos, _U64_32, out=pos)
        bit = self.bit[:size].reshape(shape)
        np.bitwise_and(pos, _U64_63, out=bit)
        np.right_shift(pos, _U64_6, out=pos)
        return pos, bit

    def test(self, words: np.ndarray, word: np.ndarray, bit: np.ndarray) -> np.ndarray:
        """1 where every probe of a key hits a set bit, else 0 (uint64, one per key)."""
        got = self.got[: word.size].reshape(word.shape)
        # Indices are in range by construction; "clip" skips numpy's buffered
        # bounds check.
        np.take(words, word.view(np.int64), out=got, mode="clip")
        np.right_shift(got, bit, out=got)
        hit = np.bitwise_and.reduce(got, axis=0)
        np.bitwise_and(hit, _U64_1, out=hit)
        return hit


def _salt(index: int) -> np.uint64:
    """Per-sub-filter additive salt, so sub-filters' false positives are independent."""
    return np.uint64((_GOLDEN * (index + 1)) & 0xFFFFFFFFFFFFFFFF)


def _distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct keys; ``np.unique`` takes ~0.4 s for 1M uint64 in numpy 2.x, this ~20 ms."""
    ordered = np.sort(keys)
    if len(ordered) < 2:
        return ordered
    first = np.empty(len(ordered), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def _check_keys(keys: Any) -> np.ndarray:
    """The keys as a 1-D uint64 array; int64 is reinterpreted (same bits)."""
    if not isinstance(keys, np.ndarray) or keys.ndim != 1 or keys.dtype.kind not in "iu" or keys.dtype.itemsize != 8:
        got = f"{keys.dtype} array of shape {keys.shape}" if isinstance(keys, np.ndarray) else type(keys).__name__
        raise InvalidValueError(
            f"Bloom filter keys must be a 1-D uint64 (or int64) numpy array, got {got}",
            hint="keys are 64-bit hashes: hash IDs first, then pass np.asarray(keys, dtype=np.uint64)",
        )
    if not keys.dtype.isnative:
        keys = keys.astype(keys.dtype.newbyteorder("="))
    return keys.view(np.uint64)


class BloomFilter:
    """A growing Bloom filter over uint64 keys; never a false negative.

    ``capacity`` keys fit in the first sub-filter at about ``fpr``; past that
    it grows, keeping the overall rate below ~1.33 ``fpr``.

    Example::

        >>> bf = BloomFilter(capacity=100, fpr=0.01)
        >>> bf.add(np.arange(250, dtype=np.uint64)), bf.num_filters
        (250, 2)
        >>> bool(bf.may_contain(np.arange(250, dtype=np.uint64)).all())
        True
    """

    def __init__(self, *, capacity: int, fpr: float) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1:
            raise InvalidValueError(f"Bloom filter capacity must be an integer >= 1, got {capacity!r}")
        if isinstance(fpr, bool) or not isinstance(fpr, int | float | np.floating) or not 0.0 < fpr < 1.0:
            raise InvalidValueError(f"Bloom filter fpr must be a number in (0, 1), got {fpr!r}")
        self._capacity = int(capacity)
        self._fpr = float(fpr)
        self._subs: list[_Sub] = [_Sub.new(min(self._capacity, _max_capacity(self._fpr)), self._fpr)]

    # -- properties ---------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Configured capacity (of the first sub-filter, unless it had to be capped)."""
        return self._capacity

    @property
    def fpr(self) -> float:
        """Configured false-positive rate."""
        return self._fpr

    @property
    def count(self) -> int:
        """Distinct keys counted (keys that were already maybe-present are not)."""
        return sum(s.count for s in self._subs)

    @property
    def nbytes(self) -> int:
        """Bytes held by the bit arrays of all sub-filters."""
        return sum(s.words.nbytes for s in self._subs)

    @property
    def num_filters(self) -> int:
        """Number of sub-filters (1 until the first one fills)."""
        return len(self._subs)

    def estimated_fpr(self) -> float:
        """Expected false-positive rate now, from each sub-filter's bits, hashes and count.

        ``1 - prod(1 - (1 - exp(-k n / m)) ** k)``: a key is a false positive
        if any sub-filter says yes.
        """
        miss = 1.0
        for s in self._subs:
            miss *= 1.0 - (1.0 - math.exp(-s.hashes * s.count / s.bits)) ** s.hashes
        return 1.0 - miss

    def filters_info(self) -> list[dict[str, int | float]]:
        """Per sub-filter: ``capacity``, ``count``, ``bits``, ``hashes`` and target ``fpr``."""
        return [
            {"capacity": s.capacity, "count": s.count, "bits": s.bits, "hashes": s.hashes, "fpr": s.fpr}
            for s in self._subs
        ]

    def __repr__(self) -> str:
        return (
            f"BloomFilter(capacity={self._capacity}, fpr={self._fpr}, count={self.count}, "
            f"num_filters={self.num_filters}, nbytes={self.nbytes})"
        )

    # -- queries and inserts -------------------------------------------------

    def may_contain(self, keys: np.ndarray) -> np.ndarray:
        """A bool array: False means the key was certainly never added.

        Example: ``bf.may_contain(np.array([5], dtype=np.uint64))`` -> ``array([ True])``
        once 5 was added; int64 arrays are read as the same 64 bits.
        """
        keys = _check_keys(keys)
        out = np.zeros(len(keys), dtype=bool)
        with np.errstate(over="ignore"):  # uint64 wrap-around is the hash arithmetic
            for index, sub in enumerate(self._subs):
                if sub.count:  # an empty sub-filter holds nothing
                    out |= self._query(index, sub, keys)
        return out

    def _query(self, index: int, sub: _Sub, keys: np.ndarray) -> np.ndarray:
        out = np.empty(len(keys), dtype=bool)
        scratch = _Scratch(sub.hashes, self._chunk(sub, len(keys)))
        salt, bits = _salt(index), np.uint64(sub.bits)
        # Small batches are bound by per-call overhead: one stage is cheaper there.
        split = _FIRST_PROBES if len(keys) >= _MIN_CHUNK else sub.hashes
        first, rest = scratch.steps[:split], scratch.steps[split:]
        for start in range(0, len(keys), scratch.chunk):
            part = keys[start : start + scratch.chunk]
            h1, h2 = scratch.mix(part, salt)
            hit = scratch.test(sub.words, *scratch.positions(h1, h2, first, bits))
            # At most half the bits are set, so few absent keys pass the first
            # probes: only those pay for the rest.
            if len(rest):
                cand = np.flatnonzero(hit)
                if len(cand):
                    hit[cand] = scratch.test(sub.words, *scratch.positions(h1[cand], h2[cand], rest, bits))
            out[start : start + len(part)] = hit
        return out

    @staticmethod
    def _chunk(sub: _Sub, n: int) -> int:
        return max(1, min(n, max(_MIN_CHUNK, _PROBES_PER_CHUNK // sub.hashes)))

    def add(self, keys: np.ndarray) -> int:
        """Add keys; return how many were newly counted.

        Keys that are already maybe-present are neither inserted nor counted,
        so re-adding stored keys consumes no capacity; duplicates count once.
        A batch that overflows the newest sub-filter fills it to capacity and
        continues in a new one.

        Example::

            >>> bf = BloomFilter(capacity=10, fpr=0.01)
            >>> bf.add(np.array([1, 2, 2], dtype=np.uint64)), bf.add(np.array([2], dtype=np.uint64))
            (2, 0)
        """
        keys = _distinct(_check_keys(keys))
        if len(keys) == 0:
            return 0
        fresh = keys[~self.may_contain(keys)]
        done = 0
        with np.errstate(over="ignore"):
            while done < len(fresh):
                sub = self._subs[-1]
                if sub.count >= sub.capacity:
                    sub = self._grow()
                take = min(sub.capacity - sub.count, len(fresh) - done)
                self._insert(len(self._subs) - 1, sub, fresh[done : done + take])
                sub.count += take
                done += take
        return len(fresh)

    def _grow(self) -> _Sub:
        index = len(self._subs)
        fpr = max(self._fpr / 4.0**index, min(self._fpr, _FPR_FLOOR))
        capacity = min(2 * self._subs[-1].capacity, _max_capacity(fpr))
        sub = _Sub.new(capacity, fpr)
        self._subs.append(sub)
        return sub

    def _insert(self, index: int, sub: _Sub, keys: np.ndarray) -> None:
        scratch = _Scratch(sub.hashes, self._chunk(sub, len(keys)))
        salt, bits = _salt(index), np.uint64(sub.bits)
        for start in range(0, len(keys), scratch.chunk):
            h1, h2 = scratch.mix(keys[start : start + scratch.chunk], salt)
            word, bit = scratch.positions(h1, h2, scratch.steps, bits)
            mask = np.left_shift(_U64_1, bit, out=bit)
            np.bitwise_or.at(sub.words, word.ravel().view(np.int64), mask.ravel())

    def copy(self) -> BloomFilter:
        """An independent copy (bit arrays included)."""
        new = BloomFilter.__new__(BloomFilter)
        new._capacity, new._fpr = self._capacity, self._fpr
        new._subs = [
            _Sub(s.capacity, s.count, s.bits, s.hashes, s.fpr, s.words.copy()) for s in self._subs
        ]
        return new

    # -- persistence -----------------------------------------------------------

    def _parts(self, meta: dict[str, int | str]) -> list[bytes | memoryview]:
        """The file as a list of buffers (no copy of the bit arrays), checksum excluded.

        Layout, all little-endian: a 48-byte header (magic ``VSBLOOM1``,
        version u16, reserved u16, num_filters u32, meta_len u32, reserved u32,
        capacity u64, fpr f64, total file length u64); per sub-filter a 40-byte
        record (capacity u64, count u64, bits u64, hashes u32, reserved u32,
        fpr f64); the msgpack meta padded with zeros to a multiple of 8; each
        sub-filter's ``bits // 64`` words as u64; then the XXH3-64 of
        everything before it as u64.
        """
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, int | str) for k, v in meta.items()
        ):
            raise InvalidValueError("Bloom filter meta must be a dict of str -> int | str")
        try:
            packed = msgpack.packb(meta, use_bin_type=True)
        except (OverflowError, ValueError) as e:
            raise InvalidValueError(f"Bloom filter meta cannot be stored: {e}") from None
        padded = packed + b"\0" * (-len(packed) % 8)
        words = [np.ascontiguousarray(s.words, dtype="<u8") for s in self._subs]
        nsubs = len(self._subs)
        total = _HEADER.size + _SUBFILTER.size * nsubs + len(padded) + self.nbytes + _CHECKSUM.size
        header = _HEADER.pack(_MAGIC, _VERSION, 0, nsubs, len(packed), 0, self._capacity, self._fpr, total)
        records = b"".join(
            _SUBFILTER.pack(s.capacity, s.count, s.bits, s.hashes, 0, s.fpr) for s in self._subs
        )
        return [header, records, padded, *(memoryview(w).cast("B") for w in words)]

    def to_bytes(self, meta: dict[str, int | str]) -> bytes:
        """The filter and ``meta`` as one self-describing, checksummed blob.

        Example: ``bf.to_bytes({"table_id": 4})[:8] == b"VSBLOOM1"``.
        """
        body = b"".join(self._parts(meta))
        return body + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(body))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> tuple[BloomFilter, dict[str, int | str]]:
        """Decode ``to_bytes`` output; raise CorruptionError if it is damaged or foreign.

        Example: ``bf, meta = BloomFilter.from_bytes(blob)``.
        """
        return cls._decode(memoryview(data).cast("B"), copy=True)

    @classmethod
    def _decode(cls, view: memoryview, *, copy: bool) -> tuple[BloomFilter, dict[str, int | str]]:
        if len(view) < _HEADER.size + _CHECKSUM.size:
            raise CorruptionError(f"Bloom filter data is truncated ({len(view)} bytes)")
        magic, version, _, nsubs, meta_len, _, capacity, fpr, total = _HEADER.unpack_from(view)
        if magic != _MAGIC:
            raise CorruptionError(f"not a vecstore Bloom filter (magic {bytes(magic)!r})")
        if version != _VERSION:
            raise CorruptionError(
                f"Bloom filter format version {version} is not supported (this vecstore reads {_VERSION})",
                hint="the filter is rebuilt from the table when it cannot be read",
            )
        if total != len(view):
            raise CorruptionError(f"Bloom filter data is {len(view)} bytes, its header says {total}")
        body = view[: total - _CHECKSUM.size]
        (stored,) = _CHECKSUM.unpack_from(view, total - _CHECKSUM.size)
        if xxhash.xxh3_64_intdigest(body) != stored:
            raise CorruptionError("Bloom filter checksum mismatch: the data is damaged")
        # The checksum passed, so what follows only fails on a file that was
        # written wrong; check anyway rather than build a filter that crashes.
        offset = _HEADER.size
        meta_end = offset + _SUBFILTER.size * nsubs + meta_len
        if nsubs < 1 or capacity < 1 or not 0.0 < fpr < 1.0 or meta_end > len(body):
            raise CorruptionError("Bloom filter header is inconsistent")
        subs: list[_Sub] = []
        records = [_SUBFILTER.unpack_from(view, offset + i * _SUBFILTER.size) for i in range(nsubs)]
        offset = meta_end + (-meta_len % 8)
        for sub_cap, count, bits, hashes, _, sub_fpr in records:
            end = offset + bits // 8
            if (
                bits % 64 or not 64 <= bits <= _MAX_BITS or not 1 <= hashes <= _MAX_HASHES
                or not 0 <= count <= sub_cap or not 0.0 < sub_fpr < 1.0 or end > len(body)
            ):
                raise CorruptionError("Bloom filter sub-filter record is inconsistent")
            words = np.frombuffer(view, dtype="<u8", count=bits // 64, offset=offset).astype(np.uint64, copy=copy)
            subs.append(_Sub(sub_cap, count, bits, hashes, sub_fpr, words))
            offset = end
        if offset != len(body):
            raise CorruptionError("Bloom filter data has trailing bytes")
        try:
            meta = msgpack.unpackb(view[meta_end - meta_len : meta_end], raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as e:
            raise CorruptionError(f"Bloom filter meta cannot be decoded: {e}") from None
        if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
            raise CorruptionError("Bloom filter meta is not a str-keyed mapping")
        bf = cls.__new__(cls)
        bf._capacity, bf._fpr, bf._subs = capacity, fpr, subs
        return bf, meta

    def save(self, path: str | os.PathLike[str], meta: dict[str, int | str]) -> None:
        """Write the filter to ``path`` atomically: readers see the old file or the new one.

        Writes a temporary file in the same directory (created if missing),
        fsyncs it, renames it over ``path`` and fsyncs the directory, so a
        crash leaves no torn file.

        The file gets the mode the umask allows (as ``data.mdb`` does), so
        other users who may read the store may read it too.  A temp file left
        by a crash (``.NAME.<random>.<pid>.tmp``) is never read; removing it is
        up to the caller (``derived.remove_orphan_temps`` reads the pid).
        Example: ``bf.save(dir / "bloom.bin", {"seq": 1})``.
        """
        parts = self._parts(meta)

        def write(tmp: Path) -> None:
            digest = xxhash.xxh3_64()
            with open(tmp, "xb") as f:  # a new file, mode 0666 less the umask
                for part in parts:  # streamed, so a large filter is never copied whole
                    digest.update(part)
                    f.write(part)
                f.write(_CHECKSUM.pack(digest.intdigest()))

        atomic_replace(write, Path(path))  # the first save of a table makes its folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> tuple[BloomFilter, dict[str, int | str]]:
        """Read a file written by ``save``.

        FileNotFoundError passes through (the caller rebuilds the filter);
        a damaged or foreign file raises CorruptionError.
        """
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # One writable buffer that the bit arrays then share: no second copy.
            buf = bytearray(size)
            got = f.readinto(buf)
        return cls._decode(memoryview(buf)[:got], copy=False)
