"""Candidate samplers: K distinct catalogue rows per session, drawn from a sampler's distribution.

``uniform`` draws uniformly, ``popularity`` in proportion to training impressions (an alias table),
``interest`` in proportion to ``exp(z . e / T)`` for each session's interest ``z``. Each session
draws ``M > K`` items with replacement and keeps the first K distinct ones (successive sampling:
sampling without replacement in proportion to the weights); a session with fewer than K distinct
draws falls back to the exponential race, which has the same distribution.

The exact ``interest`` sampler scores every item for every session, O(sessions x catalogue) per
step. Above :data:`INTEREST_EXACT_MAX` items (or with ``interest_method="clustered"``) it draws in
two stages instead, at a cost independent of the catalogue size (see
:meth:`CandidateSampler.draw_candidates`): items are grouped once into clusters of their
embeddings; per session, ``M`` proposals are drawn (a cluster from a Gaussian approximation of its
share of the softmax mass, then a member uniformly) and reweighted by importance (sampling
importance resampling, [1]_), and the K candidates are the first K distinct proposals of the
exponential race on those weights. It approaches the exact distribution as ``M`` grows; at the
default ``M = 4K`` the test suite checks inclusion frequencies against the exact sampler's.

References
----------
.. [1] Rubin, D. B. "Using the SIR algorithm to simulate posterior distributions." Bayesian
   Statistics 3, 395-402, 1988.
.. [2] Efraimidis, P. S. and Spirakis, P. G. "Weighted random sampling with a reservoir."
   Information Processing Letters 97(5), 181-185, 2006 (the exponential race).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.state import SessionState
from simkit.threads import blas_threads

__all__ = ["INTEREST_EXACT_MAX", "SAMPLERS", "CandidateSampler", "uniform_candidates"]

SAMPLERS = ("uniform", "popularity", "interest")
INTEREST_METHODS = ("auto", "exact", "clustered")
INTEREST_EXACT_MAX = 4096  # catalogues up to this size: the exact interest sampler
SCRATCH_LIMIT = 1 << 22  # largest sessions x items scratch table for duplicate detection
SMALL_PRODUCT = 1 << 16  # products below this many entries run without a BLAS thread limit


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
    interest_method
        ``"auto"`` (default): exact up to :data:`INTEREST_EXACT_MAX` items, clustered above;
        ``"exact"`` or ``"clustered"`` to choose.

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
        interest_method: str = "auto",
    ) -> None:
        if kind not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}; got {kind!r}.")
        if interest_method not in INTEREST_METHODS:
            raise ConfigError(
                f"interest_method must be one of {INTEREST_METHODS}; got {interest_method!r}."
            )
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
        self.clusters: ItemClusters | None = None
        if kind == "interest" and (
            interest_method == "clustered"
            or (interest_method == "auto" and n_items > INTEREST_EXACT_MAX)
        ):
            self.clusters = ItemClusters(embedding)
            self.n_draws = 4 * k

    def item_dots(self, state: SessionState) -> NDArray[np.float64]:
        """``z . e`` of every session with every catalogue item, (n, n_items)."""
        if state.n * self.n_items < SMALL_PRODUCT:
            return state.z @ self.embedding.T
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
        if self.clusters is not None:
            return self._clustered(state, rng)
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

    def _clustered(self, state: SessionState, rng: np.random.Generator) -> NDArray[np.int64]:
        """Two-stage interest draw: cluster proposals, importance weights, exponential race.

        Proposal ``q(i) = q(c) / n_c`` for item ``i`` of cluster ``c``, with ``q(c)`` proportional
        to ``n_c exp(z . mu_c / T + (z^2 . var_c) / (2 T^2))``, the Gaussian approximation of the
        cluster's softmax mass. Each proposal gets the key ``z . e_i / T - log q(i) - log E`` with
        ``E ~ Exp(1)``; the K distinct items of largest key are the candidates (a repeated
        proposal keeps its largest key, which is the race on its summed weight). Sessions with
        fewer than K distinct proposals are completed by uniform items not yet chosen.
        """
        cl = self.clusters
        assert cl is not None
        n, k, m = state.n, self.k, self.n_draws
        zt = state.z / self.interest_scale
        log_mass = cl.log_size + zt @ cl.mean.T + 0.5 * (zt * zt) @ cl.var.T  # (n, C)
        log_mass -= log_mass.max(axis=1, keepdims=True)
        cdf = np.exp(log_mass)
        np.cumsum(cdf, axis=1, out=cdf)
        u = rng.random((n, m)) * cdf[:, -1:]
        c = _row_search(cdf, u)
        pos = cl.start[c] + (rng.random((n, m)) * cl.size[c]).astype(np.int64)
        draws = cl.order[pos]
        dots = np.einsum("nd,nmd->nm", zt, self.embedding[draws])
        logq = np.take_along_axis(log_mass, c, axis=1) - cl.log_size[c]
        keys = dots - logq - np.log(rng.standard_exponential((n, m)))
        order = np.argsort(-keys, axis=1, kind="stable")
        draws = np.take_along_axis(draws, order, axis=1)
        first = self._first_occurrence(draws)
        rank = np.cumsum(first, axis=1)
        ok = rank[:, -1] >= k
        cands = np.empty((n, k), np.int64)
        keep = first & (rank <= k)
        cands[ok] = draws[ok][keep[ok]].reshape(-1, k)
        for r in np.flatnonzero(~ok):
            chosen = draws[r][first[r]]
            rest = np.setdiff1d(rng.permutation(self.n_items)[: 2 * k + len(chosen)], chosen)
            cands[r] = np.concatenate([chosen, rng.permutation(rest)[: k - len(chosen)]])
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


def _row_search(cdf: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray[np.int64]:
    """Per row ``r``, ``searchsorted(cdf[r], u[r], side="right")`` in one call (offset rows)."""
    n, width = cdf.shape
    offset = np.arange(n, dtype=np.float64)[:, None] * (2.0 * cdf[:, -1:].max() + 1.0)
    flat = (cdf + offset).ravel()
    pos = np.searchsorted(flat, (u + offset).ravel(), side="right").reshape(u.shape)
    pos -= (np.arange(n, dtype=np.int64) * width)[:, None]
    return np.clip(pos, 0, width - 1)


class ItemClusters:
    """Items grouped by k-means on their embeddings (Lloyd's iterations [1]_ on a subsample).

    Parameters
    ----------
    embedding
        Item embeddings, (n_items, d).
    n_clusters
        Number of clusters (default: ``sqrt(n_items)``, between 2 and 256).

    Attributes
    ----------
    order
        Item rows sorted by cluster; cluster ``c`` holds ``order[start[c]:start[c] + size[c]]``.
    mean, var
        Per cluster: mean embedding and per-dimension variance, (C, d).
    log_size
        ``log`` of each cluster's size.

    Notes
    -----
    The grouping is deterministic (a fixed seed): it depends only on the embeddings. Empty clusters
    are dropped.

    References
    ----------
    .. [1] Lloyd, S. "Least squares quantization in PCM." IEEE Transactions on Information Theory
       28(2), 129-137, 1982.
    """

    def __init__(self, embedding: NDArray[np.float64], n_clusters: int | None = None) -> None:
        emb = np.asarray(embedding, dtype=np.float64)
        n_items = len(emb)
        c = n_clusters or int(np.clip(np.sqrt(n_items), 2, 256))
        c = max(1, min(c, n_items))
        rng = np.random.default_rng(0)
        sample = emb[rng.choice(n_items, size=min(n_items, 16_384), replace=False)]
        centers = sample[rng.choice(len(sample), size=c, replace=False)].copy()
        for _ in range(6):
            assign = _nearest(sample, centers)
            sums = np.zeros_like(centers)
            np.add.at(sums, assign, sample)
            counts = np.bincount(assign, minlength=c)
            nonempty = counts > 0
            centers[nonempty] = sums[nonempty] / counts[nonempty, None]
        assign = _nearest(emb, centers)
        counts = np.bincount(assign, minlength=c)
        used = np.flatnonzero(counts > 0)
        relabel = np.full(c, -1, np.int64)
        relabel[used] = np.arange(len(used))
        assign = relabel[assign]
        self.n = len(used)
        self.order = np.argsort(assign, kind="stable").astype(np.int64)
        self.size = counts[used].astype(np.int64)
        self.start = np.concatenate(([0], np.cumsum(self.size)[:-1])).astype(np.int64)
        self.log_size = np.log(self.size.astype(np.float64))
        grouped = emb[self.order]
        sums = np.add.reduceat(grouped, self.start, axis=0)
        squares = np.add.reduceat(grouped * grouped, self.start, axis=0)
        self.mean = sums / self.size[:, None]
        self.var = np.maximum(squares / self.size[:, None] - self.mean**2, 0.0)


def _nearest(x: NDArray[np.float64], centers: NDArray[np.float64]) -> NDArray[np.int64]:
    """Index of the nearest center of each row of ``x`` (in chunks of 65536 rows)."""
    c32 = centers.astype(np.float32)
    half_norm = 0.5 * np.sum(c32 * c32, axis=1)
    out = np.empty(len(x), np.int64)
    with blas_threads(1):
        for lo in range(0, len(x), 65536):
            block = x[lo : lo + 65536].astype(np.float32)
            out[lo : lo + 65536] = np.argmax(block @ c32.T - half_norm, axis=1)
    return out
