"""Entity IDs to stable 64-bit keys.

Every ID a table sees (a user, an item, an ad) is hashed to an unsigned 64-bit
key with XXH3-64 and the store's seed.  The key is what LMDB, the Bloom filter
and the vector index work with; the original ID is kept beside the row so that
results can report it and so that two IDs sharing a key are caught.

The scheme, so another language can compute the same keys (also in
``docs/format.md``):

* ``str``: XXH3-64 of its UTF-8 bytes, seeded with the store seed.
* ``bytes``: XXH3-64 of the bytes (so ``"abc"`` and ``b"abc"`` share a key and
  are the same entity).
* ``int`` (Python or numpy, in ``[-2**63, 2**63)``): XXH3-64 of the 8-byte
  little-endian two's-complement encoding.  ``bool`` and floats are refused.
* The key is then masked to ``hash_bits`` bits (64 unless a store was created
  with the collision test hook ``hash_bits=``).

Numpy integer arrays and batches of str take vectorized paths
(:mod:`vecstore.xxh3`): XXH3-64 of a short input is a fixed sequence of 64-bit
arithmetic, reproduced with numpy over the whole batch and checked against
the ``xxhash`` package by the tests.

Example::

    >>> import vecstore
    >>> keys = vecstore.hash_ids(["item-1", 42], seed=7)
    >>> keys.dtype
    dtype('uint64')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Union

import numpy as np
import xxhash

from .errors import InvalidIdError
from .xxh3 import xxh3_64_int64, xxh3_64_packed

__all__ = ["IdBatch", "IdLike", "Utf8Ids", "decode_id", "hash_ids", "normalize_ids", "xxh3_64_int64"]

IdLike = Union[str, bytes, int, np.integer]

_M64 = (1 << 64) - 1
# Below this many IDs a str batch is hashed one ID at a time: the vectorized
# kernel's fixed cost (tens of numpy calls) outweighs what it saves.
_VECTORIZE_MIN = 2048
# Likewise for integers: below this the per-ID path (one C-level map over
# 8-byte strings) beats the int kernel, whose fixed cost is about 30 us.
_INT_VECTORIZE_MIN = 256
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

# Tags of the stored original ID (first byte of a value in a table's ids
# sub-database); see docs/format.md.
TAG_STR = 0x01
TAG_BYTES = 0x02
TAG_INT = 0x03

_h = xxhash.xxh3_64_intdigest
_STR_TAG = bytes((TAG_STR,))

class Utf8Ids(tuple):  # type: ignore[type-arg]
    r"""A tuple of str IDs that also holds each one's UTF-8 bytes (``utf8``), so hashing does not encode them again.

    The sidecar server decodes the compact wire form of a str batch (one
    NUL-joined UTF-8 string) into one: splitting that string gives both
    sequences in two C-level calls.  To everything else it is a tuple of str
    (immutable, so the two cannot drift apart).

    Example::

        >>> ids = Utf8Ids.from_joined(b"item-1\x00item-2")
        >>> ids, ids.utf8
        (('item-1', 'item-2'), [b'item-1', b'item-2'])
    """

    utf8: list[bytes]

    @classmethod
    def from_joined(cls, data: bytes) -> Utf8Ids:
        """IDs from their UTF-8 bytes joined by NUL (UnicodeDecodeError if not UTF-8)."""
        out = cls(data.decode("utf-8").split("\0"))
        out.utf8 = data.split(b"\0")  # UTF-8 has a zero byte only for U+0000: the same boundaries
        return out


@dataclass(frozen=True)
class IdBatch:
    """A batch of IDs turned into keys.

    ``keys`` are the u64 keys in input order; ``encoded`` the stored form of each
    original ID (tag byte + payload) as a list of bytes, built lazily because
    reads never need it; ``ids`` the IDs as given (a list, or the numpy array).
    """

    keys: np.ndarray
    ids: Sequence[Any]
    scalar: bool
    _int_array: np.ndarray | None = None
    # Every ID a str: a small batch keeps each ID's UTF-8 bytes; a large one
    # their bytes back to back (NUL-separated) with each one's start and length.
    _utf8: list[bytes] | tuple[bytes, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stored forms as arrays: (tag per ID, all payloads concatenated as uint8, start, length).

        Lets a writer assemble ``record + tag + payload`` values for a whole batch
        with numpy instead of one Python concatenation per row.
        """
        n = len(self.keys)
        if self._int_array is not None:
            payload = self._int_array.astype("<i8").view(np.uint8)
            return np.full(n, TAG_INT, np.uint8), payload, np.arange(n, dtype=np.int64) * 8, np.full(n, 8, np.int64)
        if isinstance(self._utf8, tuple):
            data, starts, lengths = self._utf8
            return np.full(n, TAG_STR, np.uint8), np.frombuffer(data, dtype=np.uint8), starts, lengths
        if self._utf8 is not None:
            parts, tags = self._utf8, np.full(n, TAG_STR, np.uint8)
        else:
            enc = self.encoded()
            tags = np.fromiter((e[0] for e in enc), dtype=np.uint8, count=n)
            parts = [e[1:] for e in enc]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=n)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return tags, np.frombuffer(b"".join(parts), dtype=np.uint8), starts, lengths

    def encoded(self) -> list[bytes]:
        """The stored form of each ID (see docs/format.md), in input order."""
        if self._int_array is not None:
            raw = np.empty((len(self._int_array), 9), dtype=np.uint8)
            raw[:, 0] = TAG_INT
            raw[:, 1:] = self._int_array.astype("<i8").view(np.uint8).reshape(-1, 8)
            b = raw.tobytes()
            return [b[i : i + 9] for i in range(0, len(b), 9)]
        if isinstance(self._utf8, tuple):
            data, starts, lengths = self._utf8
            return [_STR_TAG + data[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist())]
        if self._utf8 is not None:
            return list(map(_STR_TAG.__add__, self._utf8))
        return [encode_id(x) for x in self.ids]


def encode_id(x: Any) -> bytes:
    """The stored form of one ID: a tag byte then the payload that was hashed."""
    if isinstance(x, str):
        return bytes((TAG_STR,)) + x.encode("utf-8")
    if isinstance(x, bytes):
        return bytes((TAG_BYTES,)) + x
    return bytes((TAG_INT,)) + int(x).to_bytes(8, "little", signed=True)


def decode_id(b: bytes) -> Any:
    """Inverse of the stored form: the original str, bytes or int."""
    tag = b[0]
    if tag == TAG_STR:
        return b[1:].decode("utf-8")
    if tag == TAG_BYTES:
        return bytes(b[1:])
    if tag == TAG_INT:
        return int.from_bytes(b[1:9], "little", signed=True)
    raise InvalidIdError(f"stored ID has unknown tag {tag:#x}")


def same_entity(a: bytes, b: bytes) -> bool:
    """Whether two stored IDs name the same entity (str and bytes of equal bytes do)."""
    if a == b:
        return True
    return a[1:] == b[1:] and a[0] in (TAG_STR, TAG_BYTES) and b[0] in (TAG_STR, TAG_BYTES)


def _bad_id(x: Any) -> InvalidIdError:
    if isinstance(x, (bool, np.bool_)):
        return InvalidIdError(f"bool is not a valid ID: {x!r}", hint="IDs are str, bytes or int")
    if isinstance(x, (int, np.integer)):
        return InvalidIdError(f"integer ID {int(x)} is outside the signed 64-bit range", hint="use a str ID")
    return InvalidIdError(
        f"unsupported ID type {type(x).__name__}: {x!r}",
        hint="IDs are str, bytes or int (or a numpy integer array)",
    )


def _hash_one(x: Any, seed: int) -> int:
    if isinstance(x, str):
        try:
            return _h(x.encode("utf-8"), seed)
        except UnicodeEncodeError as e:
            raise InvalidIdError(f"ID is not valid Unicode: {e}", hint="IDs must encode as UTF-8") from None
    if isinstance(x, bytes):
        return _h(x, seed)
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        v = int(x)
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise _bad_id(x)
        return _h(v.to_bytes(8, "little", signed=True), seed)
    raise _bad_id(x)


def _not_unicode(ids: Sequence[str]) -> InvalidIdError:
    """The error for a str batch that does not encode, naming the first bad ID and its position."""
    for i, x in enumerate(ids):
        try:
            x.encode("utf-8")
        except UnicodeEncodeError as e:
            return InvalidIdError(f"ID {x!r} at position {i} is not valid Unicode: {e.reason}", hint="IDs must encode as UTF-8")
    return InvalidIdError("an ID is not valid Unicode", hint="IDs must encode as UTF-8")


def _hash_int64(arr: np.ndarray, seed: int) -> np.ndarray:
    """Keys of a 1-D int64 array: the numpy kernel for large batches, else one C-level map."""
    n = len(arr)
    if n >= _INT_VECTORIZE_MIN:
        return xxh3_64_int64(arr, seed)
    # Every ID's 8 little-endian bytes as a bytes object, made by one tolist()
    # (void items keep their trailing zero bytes, unlike numpy bytes strings).
    raw = np.ascontiguousarray(arr, dtype="<i8").view("V8").tolist()
    return np.fromiter(map(_h, raw, repeat(seed)), dtype=np.uint64, count=n)


def _hash_each(ids: Sequence[Any], seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Keys of a batch that is not all str, and the int64 array of an all-int one (InvalidIdError for a bad ID)."""
    if all(type(x) is int for x in ids):  # plain ints (not bool, not numpy scalars): no per-ID type checks
        try:
            arr = np.array(ids, dtype=np.int64)
            return _hash_int64(arr, seed), arr  # the array also serves the stored forms (IdBatch.packed)
        except OverflowError:
            pass  # out of the int64 range: the checks below name the ID
    return np.array([_hash_one(x, seed) for x in ids], dtype=np.uint64), None


def _pack_str(ids: Sequence[Any]) -> tuple[bytes, np.ndarray, np.ndarray] | None:
    """An all-str batch as (UTF-8 bytes joined with NUL, starts, lengths); None otherwise.

    The common case for catalog IDs, done with one C-level join and encode
    rather than a bytes object per ID.  None (use the per-ID path) when the
    batch holds a non-str or an ID that itself contains NUL, since NULs are
    what mark the boundaries.
    """
    n = len(ids)
    if not n:
        return None
    try:
        joined = "\0".join(ids)
    except TypeError:
        return None
    try:
        data = joined.encode("utf-8")
    except UnicodeEncodeError:
        raise _not_unicode(ids) from None
    # UTF-8 encodes only U+0000 as a zero byte, so zeros are exactly the separators.
    seps = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
    if len(seps) != n - 1:
        return None
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = seps + 1
    ends = np.empty(n, dtype=np.int64)
    ends[:-1] = seps
    ends[-1] = len(data)
    return data, starts, ends - starts


def normalize_ids(ids: Any, seed: int, hash_bits: int = 64) -> IdBatch:
    """Hash a single ID or a batch of IDs; raise InvalidIdError for anything else.

    A batch is a list/tuple of str, bytes and int, a numpy integer array, or a
    numpy str/object array.  A single str/bytes/int gives a batch of one with
    ``scalar=True`` so callers can return a scalar result.
    """
    mask = None if hash_bits >= 64 else np.uint64((1 << hash_bits) - 1)
    if isinstance(ids, (str, bytes, int, np.integer)) and not isinstance(ids, (bool, np.bool_)):
        keys = np.array([_hash_one(ids, seed)], dtype=np.uint64)
        if mask is not None:
            keys &= mask
        return IdBatch(keys, [ids.item() if isinstance(ids, np.integer) else ids], True)
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise InvalidIdError(f"an ID array must be 1-D, got shape {ids.shape}")
        if ids.dtype.kind in "iu":
            if ids.dtype.kind == "u" and ids.dtype.itemsize == 8 and len(ids) and ids.max() > _INT64_MAX:
                raise _bad_id(int(ids.max()))
            arr = ids.astype(np.int64, copy=False)
            keys = _hash_int64(arr, seed & _M64)
            if mask is not None:
                keys &= mask
            return IdBatch(keys, arr, False, arr)
        if ids.dtype.kind == "S":
            raise InvalidIdError(
                "numpy bytes arrays (dtype S) drop trailing NUL bytes, so their IDs would change",
                hint="pass a list of bytes or an object array",
            )
        if ids.dtype.kind in "UO":
            ids = ids.tolist()
        else:
            raise InvalidIdError(
                f"unsupported ID array dtype {ids.dtype}", hint="use an integer, str or object array"
            )
    elif not isinstance(ids, (list, tuple)):
        if isinstance(ids, Iterable) and not isinstance(ids, (dict, set, frozenset)):
            ids = list(ids)
        else:
            raise _bad_id(ids)
    seed &= _M64
    utf8: list[bytes] | tuple[bytes, np.ndarray, np.ndarray] | None = None
    ints = None
    if len(ids) >= _VECTORIZE_MIN:
        utf8 = _pack_str(ids)
    if utf8 is not None:
        data, starts, lengths = utf8
        keys = xxh3_64_packed(np.frombuffer(data, dtype=np.uint8), starts, lengths, seed)
    else:
        known = getattr(ids, "utf8", None) if type(ids) is Utf8Ids else None
        try:
            # All str (the common case for catalog IDs): C-level maps, each
            # ID encoded once (or not at all: a Utf8Ids has its bytes) and the
            # bytes kept for the stored form.
            utf8 = known if known is not None and len(known) == len(ids) else list(map(str.encode, ids))
        except TypeError:
            utf8 = None
        except UnicodeEncodeError:
            raise _not_unicode(ids) from None
        if utf8 is not None:
            keys = np.fromiter(map(_h, utf8, repeat(seed)), dtype=np.uint64, count=len(utf8))
        else:
            keys, ints = _hash_each(ids, seed)
    if mask is not None:
        keys &= mask
    return IdBatch(keys, ids, False, ints, utf8)


def hash_ids(ids: Any, *, seed: int, hash_bits: int = 64) -> np.ndarray:
    """The exact 64-bit keys a store with this seed uses for ``ids``.

    ``ids`` is a single ID or a batch (see :func:`normalize_ids`); the result is
    always a 1-D ``np.uint64`` array.  ``store.hash_ids(ids)`` fills in the
    store's own seed.

    Example::

        >>> hash_ids(["u-1", "u-2"], seed=0).shape
        (2,)
    """
    return normalize_ids(ids, seed, hash_bits).keys
