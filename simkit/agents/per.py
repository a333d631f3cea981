"""Proportional prioritised experience replay on a sum-tree (Schaul et al. 2016).

Transition ``j`` is drawn with probability ``P(j) = p_j^alpha / sum_k p_k^alpha``, where its
priority ``p_j = |delta_j| + eps`` is the magnitude of its last TD error. The bias this sampling
adds to the expected update is corrected by importance-sampling weights

    w_j = (N P(j))^(-beta) / max_i w_i,

with the maximum taken over the sampled batch (Schaul et al., Algorithm 1), so every weight is at
most 1 and the largest is 1. ``beta`` is annealed from ``beta0`` to 1 over training
(:func:`annealed_beta`): the correction matters most near convergence. A new transition enters with
the largest priority seen so far, so it is replayed at least once soon after it is stored.

The sum-tree holds ``p^alpha`` in its leaves and each inner node holds the sum of its two children,
so the total is the root and a draw is a descent from the root. Updates and draws are vectorised:
a batch of leaves is written at once and the inner nodes above them are recomputed level by level
(exactly, from their children, so no rounding drift builds up); a batch of draws descends the tree
together, one numpy operation per level. Draws are stratified: the total mass is cut into
``batch_size`` equal segments and one draw falls uniformly in each.

The buffer is a ring of named arrays (``add`` takes a dict of batched fields; shapes and dtypes are
fixed by the first call). This module is the agents' replay memory; :mod:`simkit.replay` is the
unrelated teacher-forced replay of logged sessions.

References
----------
Schaul, Quan, Antonoglou, Silver. Prioritized experience replay. ICLR 2016. arXiv:1511.05952.

Examples
--------
>>> import numpy as np
>>> buf = PrioritizedReplay(capacity=8, alpha=0.6)
>>> buf.add({"x": np.arange(3.0)})
array([0, 1, 2])
>>> batch = buf.sample(4, rng=np.random.default_rng(0), beta=0.4)
>>> float(batch.weights.max())
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ConfigError

__all__ = ["PrioritizedReplay", "ReplayBatch", "SumTree", "annealed_beta"]


def annealed_beta(beta0: float, fraction: float) -> float:
    """Importance exponent ``beta0 + (1 - beta0) * min(fraction, 1)``: linear from beta0 to 1.

    Examples
    --------
    >>> annealed_beta(0.4, 0.5)
    0.7
    """
    return float(beta0 + (1.0 - beta0) * min(max(fraction, 0.0), 1.0))


class SumTree:
    """Binary tree whose inner nodes hold the sums of their leaves.

    Parameters
    ----------
    capacity : int
        Number of leaves (rounded up to a power of two internally; extra leaves stay 0).

    Examples
    --------
    >>> tree = SumTree(4)
    >>> tree.update(np.array([0, 2]), np.array([1.0, 3.0]))
    >>> tree.total, tree.find(np.array([0.5, 1.5]))
    (4.0, array([0, 2]))
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"capacity must be >= 1; got {capacity}")
        self.capacity = int(capacity)
        self._size = 1 << max(0, (self.capacity - 1).bit_length())  # leaves, a power of two
        self._depth = self._size.bit_length() - 1
        self.nodes = np.zeros(2 * self._size)  # node i has children 2i, 2i+1; leaves at size + j

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.nodes[1])

    @property
    def leaves(self) -> NDArray[np.float64]:
        """The leaf values (a view), one per slot."""
        return self.nodes[self._size : self._size + self.capacity]

    def update(self, index: NDArray[np.int64], values: NDArray[np.float64]) -> None:
        """Set leaves ``index`` to ``values`` (the last value wins for a repeated index).

        Raises
        ------
        ValueError
            For an index outside ``[0, capacity)`` or a negative or non-finite value.
        """
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), index.shape)
        if index.size == 0:
            return
        if index.min() < 0 or index.max() >= self.capacity:
            raise ValueError(f"leaf index must lie in [0, {self.capacity}); got {index}")
        if not np.all(np.isfinite(values) & (values >= 0)):
            raise ValueError("priorities must be finite and >= 0")
        if index.size > 1:  # keep the last write of a repeated index (numpy's order is unspecified)
            keep = index.size - 1 - np.unique(index[::-1], return_index=True)[1]
            index, values = index[keep], values[keep]
        node = index + self._size
        self.nodes[node] = values
        for _ in range(self._depth):
            # a parent shared by several updated leaves is written several times with the same
            # sum of its (already final) children, so no de-duplication is needed here
            node = node >> 1
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def find(self, mass: NDArray[np.float64]) -> NDArray[np.int64]:
        """Leaf of each prefix-sum position ``mass`` in ``[0, total)`` (one descent per level).

        A position at the boundary between two leaves goes to the right one; a leaf of zero mass
        is never returned while the total is positive.
        """
        mass = np.array(mass, dtype=np.float64).reshape(-1)
        node = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * node
            left_mass = self.nodes[left]
            right = mass >= left_mass
            # rounding can push a draw past the last positive leaf: never step into empty mass
            right &= self.nodes[left + 1] > 0
            right |= left_mass <= 0
            mass = np.where(right, mass - left_mass, mass)
            node = left + right
        return np.minimum(node - self._size, self.capacity - 1)


@dataclass(frozen=True, kw_only=True)
class ReplayBatch:
    """A sampled batch: ``data`` fields, their slots ``index`` and IS ``weights`` (max 1)."""

    index: NDArray[np.int64]
    weights: NDArray[np.float64]
    probability: NDArray[np.float64]
    data: dict[str, NDArray[Any]]


class PrioritizedReplay:
    """Ring buffer of transitions sampled in proportion to ``priority^alpha``.

    Parameters
    ----------
    capacity : int
        Transitions kept; the oldest are overwritten.
    alpha : float
        Priority exponent (0: uniform sampling; Schaul et al. use 0.6 for the proportional variant).
    eps : float
        Added to ``|delta|`` so that no transition gets zero priority.

    Attributes
    ----------
    max_priority : float
        Largest priority (``|delta| + eps``, before the exponent) seen so far; new transitions
        get it. Starts at 1.
    """

    def __init__(self, capacity: int, *, alpha: float = 0.6, eps: float = 1e-6) -> None:
        if alpha < 0:
            raise ConfigError(f"alpha must be >= 0; got {alpha}")
        if not eps > 0:
            raise ConfigError(f"eps must be > 0; got {eps}")
        self.capacity = int(capacity)
        self.alpha, self.eps = float(alpha), float(eps)
        self.tree = SumTree(self.capacity)
        self.max_priority = 1.0
        self.data: dict[str, NDArray[Any]] = {}
        self.size = 0
        self._next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, fields: Mapping[str, NDArray[Any]]) -> NDArray[np.int64]:
        """Store a batch of transitions (leading axis) at the current max priority.

        Parameters
        ----------
        fields : mapping of str to ndarray
            Same leading length ``n`` for every field; the first call fixes names, shapes and
            dtypes.

        Returns
        -------
        ndarray of int
            The slots written.

        Raises
        ------
        ValueError
            When the fields differ from the first call's or have different lengths.
        """
        arrays = {k: np.asarray(v) for k, v in fields.items()}
        lengths = {v.shape[0] if v.ndim else -1 for v in arrays.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(f"every field needs the same leading length; got {lengths}")
        n = lengths.pop()
        if not self.data:
            self.data = {
                k: np.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in arrays.items()
            }
        elif set(arrays) != set(self.data):
            raise ValueError(f"fields must be {sorted(self.data)}; got {sorted(arrays)}")
        if n > self.capacity:  # only the newest `capacity` survive
            arrays = {k: v[-self.capacity :] for k, v in arrays.items()}
            n = self.capacity
        slots = (self._next + np.arange(n)) % self.capacity
        for k, v in arrays.items():
            self.data[k][slots] = v
        self.tree.update(slots, np.full(n, self.max_priority**self.alpha))
        self._next = int((self._next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        return slots

    def sample(self, batch_size: int, *, rng: np.random.Generator, beta: float) -> ReplayBatch:
        """Draw ``batch_size`` transitions (stratified, with replacement across strata).

        Parameters
        ----------
        batch_size : int
        rng : numpy.random.Generator
        beta : float
            Importance exponent in [0, 1].

        Returns
        -------
        ReplayBatch
            Weights ``(N P(j))^(-beta)`` divided by their batch maximum.

        Raises
        ------
        ConfigError
            When the buffer is empty.
        """
        if self.size == 0:
            raise ConfigError("cannot sample from an empty replay buffer; add transitions first")
        total = self.tree.total
        mass = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        index = self.tree.find(np.minimum(mass, np.nextafter(total, 0.0)))
        prob = self.tree.leaves[index] / total
        w = (self.size * prob) ** (-beta)
        w = w / w.max()
        return ReplayBatch(
            index=index,
            weights=w,
            probability=prob,
            data={k: v[index] for k, v in self.data.items()},
        )

    def update_priorities(self, index: NDArray[np.int64], td_error: NDArray[np.floating]) -> None:
        """Set the priorities of ``index`` to ``|td_error| + eps`` (and track the maximum)."""
        p = np.abs(np.asarray(td_error, dtype=np.float64)) + self.eps
        if p.size:
            self.max_priority = max(self.max_priority, float(p.max()))
        self.tree.update(index, p**self.alpha)
