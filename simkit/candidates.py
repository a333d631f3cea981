"""Candidate samplers: K distinct catalogue rows per session, drawn from a sampler's distribution.

``uniform`` draws uniformly, ``popularity`` in proportion to training impressions (an alias table),
``interest`` in proportion to ``exp(z . e / T)`` for each session's interest ``z``. Each session
draws ``M > K`` items with replacement and keeps the first K distinct ones (successive sampling:
sampling without replacement in proportion to the weights); a session with fewer than K distinct
draws falls back to the exponential race, which has the same distribution.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.state import SessionState
from simkit.threads import blas_threads

__all__ = ["SAMPLERS", "CandidateSampler", "uniform_candidates"]

SAMPLERS = ("uniform", "popularity", "interest")
SCRATCH_LIMIT = 1 << 26  # largest sessions x items scratch table for duplicate detection


def uniform_candidates(
    n: int, n_items: int, k: int, *, rng: np.random.Generator
) -> NDArray[np.int64]:
    """``k`` distinct rows of ``range(n_items)`` per session, uniformly (all rows when k >= n_items).

    Exact sampling without replacement by ranking uniform keys; costs ``n x n_items``, for
    validation's rollouts over small catalogues (the envs use :class:`CandidateSampler`).
    """
    if k >= n_items:
        return np.broadcast_to(np.arange(n_items), (n, n_items)).copy()
    return np.argpartition(rng.random((n, n_items)), k, axis=1)[:, :k].astype(np.int64)


def _alias_table(weights: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Walker/Vose alias table: draw ``i`` uniformly, keep it with ``prob[i]`` else ``alias[i]``."""
    n = len(weights)
    scaled = weights * (n / weights.sum())
    prob = np.ones(n)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


class CandidateSampler:
    """Draws ``k`` distinct candidates per session from the catalogue of ``embedding``.

    Parameters
    ----------
    embedding
        Item embeddings, (n_items, d) (without the unseen-item stand-in row).
    log_popularity
        ``log1p`` of training impressions per item (the ``popularity`` sampler's weights).
    k
        Candidates per session.
    kind
        ``"uniform"``, ``"popularity"`` or ``"interest"``.
    interest_scale
        Temperature of the ``interest`` sampler's softmax over ``z . e``.

    Raises
    ------
    ConfigError
        When ``k`` exceeds the catalogue, or the popularity sampler has fewer than ``k`` shown items.
    """

    def __init__(
        self,
        embedding: NDArray[np.float64],
        log_popularity: NDArray[np.float32],
        k: int,
        kind: str = "uniform",
        *,
        interest_scale: float = 1.0,
    ) -> None:
        if kind not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}; got {kind!r}.")
        n_items = len(embedding)
        if k > n_items:
            raise ConfigError(
                f"n_candidates ({k}) must not exceed the simulator's {n_items} catalogue items; "
                "lower n_candidates."
            )
        self.kind, self.k, self.n_items = kind, k, n_items
        self.embedding = embedding
        self.interest_scale = interest_scale
        self.log_weight: NDArray[np.float64] | None = None
        p = np.full(n_items, 1.0 / n_items)
        if kind == "popularity":
            impressions = np.rint(np.expm1(np.asarray(log_popularity, dtype=np.float64)))
            if np.count_nonzero(impressions) < k:
                raise ConfigError(
                    f"sampler='popularity' draws items in proportion to their training impressions, "
                    f"but only {np.count_nonzero(impressions)} items were ever shown and "
                    f"n_candidates is {k}; lower n_candidates or use sampler='uniform'."
                )
            self.alias_prob, self.alias = _alias_table(impressions)
            with np.errstate(divide="ignore"):
                self.log_weight = np.log(impressions)
            p = impressions / impressions.sum()
        # draws per session: enough that fewer than K distinct is rare (collisions among m draws
        # are about Poisson(m^2 sum p^2 / 2)); the interest weights vary by user: 2K
        if kind == "interest":
            self.n_draws = 2 * k
        else:
            m = k
            for _ in range(8):
                lam = m * m * float(np.sum(p * p)) / 2
                m = min(4 * k, k + int(np.ceil(lam + 4 * np.sqrt(lam) + 4)))
            self.n_draws = m
        self._scratch: NDArray[np.int16] | None = None

    def item_dots(self, state: SessionState) -> NDArray[np.float64]:
        """``z . e`` of every session with every catalogue item, (n, n_items)."""
        with blas_threads(1):
            return state.z @ self.embedding.T

    def draw_candidates(self, state: SessionState, rng: np.random.Generator) -> NDArray[np.int64]:
        """K distinct catalogue rows per session (never the unseen-item stand-in row).

        Each session draws ``M > K`` items with replacement from the sampler's distribution and
        keeps the first K distinct ones, in order of first appearance: this is sampling without
        replacement in proportion to the weights (successive sampling). A session whose ``M``
        draws hold fewer than K distinct items (rare unless the weights are very concentrated)
        draws by the exponential race instead (top K of ``log w - log Exp(1)``), which has the
        same distribution.
        """
        n, k = state.n, self.k
        kind = self.kind
        logits = None
        m = self.n_draws
        if kind == "uniform":
            draws = rng.integers(self.n_items, size=(n, m))
        elif kind == "popularity":
            draws = self._alias_draw(n * m, rng).reshape(n, m)
        else:
            # softmax weights in place, then one running sum over all sessions' weights: session
            # r's items span [total[r-1], total[r]), so one sorted search serves every session
            logits = self.item_dots(state)
            np.subtract(logits, logits.max(axis=1, keepdims=True), out=logits)
            logits *= 1.0 / self.interest_scale
            cdf = np.exp(logits).ravel()
            np.cumsum(cdf, out=cdf)
            ends = cdf[self.n_items - 1 :: self.n_items]
            starts = np.concatenate(([0.0], ends[:-1]))
            u = np.sort(rng.random((n, m)), axis=1)
            u *= (ends - starts)[:, None]
            u += starts[:, None]
            pos = np.searchsorted(cdf, u.ravel(), side="right").reshape(n, m)
            draws = pos - (np.arange(n, dtype=np.int64) * self.n_items)[:, None]
            np.clip(draws, 0, self.n_items - 1, out=draws)
            # the needles were sorted for a cache-friendly search; one random column permutation
            # gives each session's draws a uniformly random order again, as iid draws have
            draws = draws[:, rng.permutation(m)]
        first = self._first_occurrence(draws)
        rank = np.cumsum(first, axis=1)
        ok = rank[:, -1] >= k
        cands = np.empty((n, k), np.int64)
        keep = first & (rank <= k)
        if ok.all():
            cands[:] = draws[keep].reshape(n, k)
            return cands
        cands[ok] = draws[ok][keep[ok]].reshape(-1, k)
        short = np.flatnonzero(~ok)
        cands[short] = self._exact(None if logits is None else logits[short], len(short), rng)
        return cands

    def _alias_draw(self, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
        i = rng.integers(self.n_items, size=size)
        return np.where(rng.random(size) < self.alias_prob[i], i, self.alias[i])

    def _first_occurrence(self, draws: NDArray[np.int64]) -> NDArray[np.bool_]:
        """True at the first position of each distinct item in each row of ``draws``."""
        n, m = draws.shape
        if n * self.n_items <= SCRATCH_LIMIT and m < np.iinfo(np.int16).max:
            if self._scratch is None or self._scratch.size < n * self.n_items:
                self._scratch = np.empty(n * self.n_items, np.int16)
            flat = (draws + (np.arange(n, dtype=np.int64) * self.n_items)[:, None]).ravel()
            pos = np.tile(np.arange(m, dtype=np.int16), n)
            # with repeated indices the last assignment wins: write backwards so the first does
            self._scratch[flat[::-1]] = pos[::-1]
            return (self._scratch[flat] == pos).reshape(n, m)
        order = np.argsort(draws, axis=1, kind="stable")
        ranked = np.take_along_axis(draws, order, axis=1)
        new = np.ones((n, m), dtype=bool)
        new[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
        first = np.empty((n, m), dtype=bool)
        np.put_along_axis(first, order, new, axis=1)
        return first

    def _exact(
        self, logw: NDArray[np.float64] | None, m: int, rng: np.random.Generator
    ) -> NDArray[np.int64]:
        """Draw without replacement by the exponential race (top K of log w - log Exp(1))."""
        if logw is None:
            logw = np.zeros(self.n_items) if self.log_weight is None else self.log_weight
        keys = logw - np.log(rng.standard_exponential((m, self.n_items)))
        top = np.argpartition(-keys, self.k - 1, axis=1)[:, : self.k]
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1).astype(np.int64)
