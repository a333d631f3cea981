"""Per-session memory of shown items, sized by session length rather than by catalogue.

A session of ``T`` steps shows at most ``T x slate_size`` distinct items, however large the
catalogue. :class:`ShownMemory` keeps, per session, an open-addressing hash table (linear probing,
Fibonacci hashing [1]_) of (item, times shown), with a power-of-two capacity kept at least twice
the largest number of distinct items any session holds. Lookups and updates are vectorised over
sessions: a probe round is a few array operations over every pending (session, item) pair, and
at a load factor of at most one half the expected number of rounds is small.

It reads and writes like the dense sessions x catalogue count matrix it replaces:
``memory[rows, items]`` gives the counts of (session, item) pairs, ``memory[rows, items] = v``
sets them (``memory[rows, items] += 1`` counts a showing), ``memory[rows]`` is the memory of some
sessions, ``memory[rows] = other`` overwrites them, and ``numpy.take_along_axis(memory, items,
axis=1)`` works. Memory use is ``sessions x capacity x 10`` bytes (capacity 512 for 200-step
sessions): about 5 MB at a thousand sessions, against 2 GB for the dense matrix of 10^6 items.

References
----------
.. [1] Knuth, D. E. *The Art of Computer Programming, Vol. 3: Sorting and Searching*, 2nd ed.,
   Section 6.4 (multiplicative hashing and linear probing), Addison-Wesley, 1998.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ShownMemory"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: Fibonacci hashing
_EMPTY = -1
_START_BITS = 3  # capacity 8 until a session holds more than 4 distinct items


class ShownMemory:
    """How often each catalogue row was shown in each of ``n`` sessions.

    Parameters
    ----------
    n
        Number of sessions.
    n_columns
        Number of catalogue rows (the nominal second dimension, for ``shape``).
    bits
        Initial capacity ``2 ** bits`` slots per session (it doubles as sessions fill up).

    Examples
    --------
    >>> memory = ShownMemory(2, 10**6)
    >>> memory[np.array([0, 0, 1]), np.array([999_999, 7, 7])] += 1
    >>> memory.count(np.array([[7, 999_999, 3], [7, 7, 1]])).tolist()
    [[1, 1, 0], [1, 1, 0]]
    >>> memory.shape, memory.capacity
    ((2, 1000000), 8)
    """

    ndim = 2

    def __init__(self, n: int, n_columns: int, *, bits: int = _START_BITS) -> None:
        self.n_columns = int(n_columns)
        self.bits = int(bits)
        self.keys = np.full((int(n), 1 << self.bits), _EMPTY, np.int64)
        self.counts = np.zeros((int(n), 1 << self.bits), np.int16)
        self.fill = np.zeros(int(n), np.int64)

    # ------------------------------------------------------------------ shape

    @property
    def shape(self) -> tuple[int, int]:
        """(sessions, catalogue rows), as the dense matrix would have."""
        return (int(self.keys.shape[0]), self.n_columns)

    @property
    def capacity(self) -> int:
        """Slots per session."""
        return int(self.keys.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables."""
        return int(self.keys.nbytes + self.counts.nbytes + self.fill.nbytes)

    # ------------------------------------------------------------------ lookup

    def _hash(self, items: NDArray[np.int64]) -> NDArray[np.int64]:
        h = (items.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        return (h >> np.uint64(64 - self.bits)).astype(np.int64)

    def _find(
        self, rows: NDArray[np.int64], items: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """Slot of each (row, item) pair: where it is, or the empty slot that ends its probe."""
        mask = self.capacity - 1
        slot = self._hash(items)
        found = np.zeros(len(items), dtype=bool)
        key = self.keys[rows, slot]
        hit = key == items
        done = hit | (key == _EMPTY)
        if done.all():
            return slot, hit
        found |= hit
        pending = np.flatnonzero(~done)
        while len(pending):
            slot[pending] = (slot[pending] + 1) & mask
            key = self.keys[rows[pending], slot[pending]]
            hit = key == items[pending]
            found[pending[hit]] = True
            pending = pending[~(hit | (key == _EMPTY))]
        return slot, found

    def count(self, items: NDArray[np.int64]) -> NDArray[np.int16]:
        """Times each of ``items`` (n, K) was shown in its session (row ``i`` is session ``i``)."""
        items = np.asarray(items, dtype=np.int64)
        n, k = items.shape
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        flat = items.reshape(-1)
        slot, found = self._find(rows, flat)
        out = np.where(found, self.counts[rows, slot], np.int16(0)).astype(np.int16)
        return out.reshape(n, k)

    # ------------------------------------------------------------------ update

    def _insert(
        self, rows: NDArray[np.int64], items: NDArray[np.int64], values: NDArray[np.int16]
    ) -> None:
        """Put pairs that are not in the table (distinct pairs) into empty slots."""
        need = self.fill + np.bincount(rows, minlength=len(self.fill))
        if len(need) and 2 * int(need.max()) > self.capacity:
            self._grow(int(need.max()))
        mask = self.capacity - 1
        slot = self._hash(items)
        pending = np.arange(len(items))
        while len(pending):
            r, s = rows[pending], slot[pending]
            free = self.keys[r, s] == _EMPTY
            claim = pending[free]
            # pairs claiming the same empty slot: the first takes it, the others probe on
            _, first = np.unique(rows[claim] * (mask + 1) + slot[claim], return_index=True)
            won = claim[first]
            self.keys[rows[won], slot[won]] = items[won]
            self.counts[rows[won], slot[won]] = values[won]
            placed = np.zeros(len(items), dtype=bool)
            placed[won] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) & mask
        np.add.at(self.fill, rows, 1)

    def _grow(self, n_distinct: int) -> None:
        """Double the capacity until ``n_distinct`` items fit at load <= 1/2; rehash."""
        bits = self.bits
        while (1 << bits) < 2 * n_distinct:
            bits += 1
        rows, cols = np.nonzero(self.keys != _EMPTY)
        items, values = self.keys[rows, cols], self.counts[rows, cols]
        n = self.keys.shape[0]
        self.bits = bits
        self.keys = np.full((n, 1 << bits), _EMPTY, np.int64)
        self.counts = np.zeros((n, 1 << bits), np.int16)
        self.fill = np.zeros(n, np.int64)
        if len(items):
            self._insert(rows.astype(np.int64), items, values)

    def _set(self, rows: NDArray[np.int64], items: NDArray[np.int64], values: NDArray) -> None:
        values = np.broadcast_to(np.asarray(values), items.shape).astype(np.int16).ravel()
        rows, items = rows.ravel(), items.ravel()
        if len(items) > 1:
            # repeated pairs: the last assignment wins, as for a numpy array
            key = rows * (self.n_columns + 1) + items
            _, last = np.unique(key[::-1], return_index=True)
            keep = np.sort(len(key) - 1 - last)
            rows, items, values = rows[keep], items[keep], values[keep]
        slot, found = self._find(rows, items)
        self.counts[rows[found], slot[found]] = values[found]
        new = ~found & (values != 0)
        if new.any():
            self._insert(rows[new], items[new], values[new])

    # ------------------------------------------------------------------ array protocol

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, tuple):
            rows, items = (np.asarray(i, dtype=np.int64) for i in index)
            rows, items = np.broadcast_arrays(rows, items)
            slot, found = self._find(rows.ravel().copy(), items.ravel().copy())
            counts = self.counts[rows.ravel(), slot]
            return np.where(found, counts, np.int16(0)).astype(np.int16).reshape(rows.shape)
        rows = np.arange(len(self.fill))[index]
        out = ShownMemory.__new__(ShownMemory)
        out.n_columns, out.bits = self.n_columns, self.bits
        out.keys, out.counts, out.fill = self.keys[rows], self.counts[rows], self.fill[rows]
        return out

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, tuple):
            rows, items = (np.asarray(i, dtype=np.int64) for i in index)
            rows, items = np.broadcast_arrays(rows, items)
            self._set(rows.copy(), items.copy(), value)
            return
        if not isinstance(value, ShownMemory):
            raise TypeError(f"rows of a ShownMemory take a ShownMemory; got {type(value).__name__}")
        rows = np.arange(len(self.fill))[index]
        self.keys[rows] = _EMPTY
        self.counts[rows] = 0
        self.fill[rows] = 0
        src, cols = np.nonzero(value.keys != _EMPTY)
        if len(src):
            self._insert(
                np.atleast_1d(rows)[src].astype(np.int64),
                value.keys[src, cols],
                value.counts[src, cols],
            )

    def copy(self) -> ShownMemory:
        """An independent copy."""
        out = self[:]
        out.keys, out.counts, out.fill = out.keys.copy(), out.counts.copy(), out.fill.copy()
        return out

    def sum(self, axis: int | None = None) -> Any:
        """Total showings (``axis=None``), or the dense matrix's sums along ``axis``."""
        if axis is None:
            return int(self.counts.sum(dtype=np.int64))
        return self.to_dense().sum(axis=axis)

    def to_dense(self) -> NDArray[np.int16]:
        """The dense (sessions, catalogue rows) count matrix (for small catalogues and tests)."""
        out = np.zeros(self.shape, np.int16)
        rows, cols = np.nonzero(self.keys != _EMPTY)
        out[rows, self.keys[rows, cols]] = self.counts[rows, cols]
        return out
