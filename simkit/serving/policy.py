"""A served policy: scores, its serving-time exploration, and the exact probability of what it shows.

:meth:`ServedPolicy.rank` takes a batch of requests (one context vector and a candidate matrix per
request) and returns a :class:`Decision`: the shown item (or the ordered slate) of each request and
the probability of exactly that, under the exploration configured at export:

- ``uniform``: every candidate ``1/K`` (slates: distinct candidates in uniformly random order);
- ``greedy``: ``(1 - eps) 1[a in argmax] / #ties + eps / K`` (ties split evenly);
- ``softmax`` (Boltzmann): ``(1 - eps) softmax(s / T) + eps / K``; a slate is a Plackett-Luce draw
  (Gumbel top-k), whose position ``j`` has probability ``p(a_j) / (1 - sum_{i<j} p(a_i))``;
- ``topk_softmax``: ``(1 - eps) greedy + eps ((1 - u) softmax_topK(s / T) + u / K)``, the top-K
  softmax with a uniform floor of RecoMind-style exploration;
- ``ensemble``: ``(1/M) sum_m 1[a in argmax s_m] / #ties_m`` over ``M`` frozen posterior draws,
  mixed with ``eps / K``.

Slates under ``greedy``, ``topk_softmax`` and ``ensemble`` fill position ``j`` by the same rule
applied to the candidates not shown above it, so each position's conditional probability is exact
and the slate's probability is their product. Per-slot marginal probabilities (for the
independent-position estimators) are not computed: they need a sum over the orders of the
positions above.

References
----------
Li, Chu, Langford, Wang. Unbiased offline evaluation of contextual-bandit-based news article
recommendation algorithms. WSDM 2011 (log the probability of what was shown).
Plackett. The analysis of permutations. Applied Statistics 24, 1975. Luce. Individual choice
behavior. Wiley 1959.
Chen, Gomes et al. RecoMind. arXiv:2508.00201, 2025 (top-K softmax exploration).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit import nn
from simkit.errors import ConfigError, SimkitError

__all__ = ["RULES", "Decision", "Exploration", "InputError", "ServedPolicy"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
RULES = ("uniform", "greedy", "softmax", "topk_softmax", "ensemble")


class InputError(SimkitError, ValueError):
    """A request that cannot be scored: the message says which field, what was found, how to fix."""


@dataclass(frozen=True, kw_only=True)
class Exploration:
    """Serving-time exploration of a policy (the manifest's ``exploration`` object).

    Parameters
    ----------
    rule : {"uniform", "greedy", "softmax", "topk_softmax", "ensemble"}
    epsilon : float
        Share of exploratory draws (``greedy``, ``topk_softmax``) or of uniform mixing (the rest).
    temperature : float
        Softmax temperature, in the units of the scores.
    top_k : int or None
        Candidates in the top-K softmax; None: ``ceil(top_k_fraction * K)``.
    top_k_fraction : float
    uniform_share : float
        Share u of exploratory draws that are uniform (``topk_softmax``).
    slate_size : int
        Items shown per request.
    """

    rule: str = "greedy"
    epsilon: float = 0.0
    temperature: float = 1.0
    top_k: int | None = None
    top_k_fraction: float = 0.25
    uniform_share: float = 0.0
    slate_size: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.rule not in RULES:
            problems.append(f"rule must be one of {RULES}; got {self.rule!r}")
        for name in ("epsilon", "top_k_fraction", "uniform_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1]; got {getattr(self, name)}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0; got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"top_k must be >= 1 or None; got {self.top_k}")
        if self.slate_size < 1:
            problems.append(f"slate_size must be >= 1; got {self.slate_size}")
        if problems:
            raise ConfigError("Invalid exploration settings: " + "; ".join(problems) + ".")

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``exploration`` object."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def k_top(self, n_candidates: int) -> int:
        """Size of the top-K softmax for ``n_candidates`` candidates."""
        if self.top_k is not None:
            return min(self.top_k, n_candidates)
        return max(1, math.ceil(self.top_k_fraction * n_candidates))


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What a served policy showed for a batch of requests, ready to log.

    Attributes
    ----------
    items : ndarray of int, shape (n, L)
        Candidate index shown at each slate position (L = 1: one item).
    propensity : ndarray, shape (n, L)
        Probability of each position's item given the positions above it (for ``L = 1`` the
        probability of the shown item), exact under the configured exploration.
    slate_propensity : ndarray, shape (n,)
        Probability of the whole ordered slate (the product over positions).
    action_dist : ndarray, shape (n, K)
        Probability of each candidate at the first position.
    scores : ndarray, shape (n, K)
        The policy's scores (mean over the draws of an ensemble).
    policy_id : str
        The sha256 of the policy's manifest (which pins every file).
    """

    items: I64
    propensity: F64
    slate_propensity: F64
    action_dist: F64
    scores: F64
    policy_id: str

    @property
    def action(self) -> I64:
        """First-position item of each request, shape (n,)."""
        return self.items[:, 0]

    @property
    def action_propensity(self) -> F64:
        """Probability of the first-position item of each request, shape (n,)."""
        return self.propensity[:, 0]


# --------------------------------------------------------------------------- probabilities


def _argmax_share(scores: F64, avail: NDArray[np.bool_]) -> F64:
    """1/#ties on the maxima among the available candidates (any leading axes)."""
    masked = np.where(avail, scores, -np.inf)
    best = (masked >= masked.max(axis=-1, keepdims=True)) & avail
    return best / best.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def _softmax(scores: F64, avail: NDArray[np.bool_], temperature: float) -> F64:
    z = np.where(avail, scores.astype(np.float64) / temperature, -np.inf)
    out: F64 = np.asarray(nn.softmax(z), dtype=np.float64)
    return np.where(avail, out, 0.0)


def _topk_softmax(scores: F64, avail: NDArray[np.bool_], k: int, temperature: float) -> F64:
    masked = np.where(avail, scores, -np.inf)
    n_avail = int(avail[0].sum())
    k = min(k, n_avail)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    out = np.zeros(scores.shape, dtype=np.float64)
    out[rows, top] = nn.softmax(scores[rows, top].astype(np.float64) / temperature)
    return out


def position_proba(
    scores: NDArray[Any], avail: NDArray[np.bool_], exploration: Exploration, n_candidates: int
) -> tuple[F64, F64, F64, F64]:
    """Distribution of the next position over the available candidates.

    Returns ``(proba, main, soft, uniform)``, each of shape (n, K): the mixture, its main branch
    (greedy, softmax or ensemble), the top-K softmax (``topk_softmax``; else the uniform) and the
    uniform over the available candidates.
    """
    e = exploration
    uniform = avail / avail.sum(axis=1, keepdims=True)
    soft = uniform
    if e.rule == "uniform":
        return uniform, uniform, uniform, uniform
    if e.rule == "ensemble":
        main = _argmax_share(scores, avail[:, None, :]).mean(axis=1)
    elif e.rule == "softmax":
        main = _softmax(scores, avail, e.temperature)
    else:
        main = _argmax_share(scores, avail)
        if e.rule == "topk_softmax":
            soft = _topk_softmax(scores, avail, e.k_top(n_candidates), e.temperature)
            explore = (1.0 - e.uniform_share) * soft + e.uniform_share * uniform
            return (1.0 - e.epsilon) * main + e.epsilon * explore, main, soft, uniform
    return (1.0 - e.epsilon) * main + e.epsilon * uniform, main, soft, uniform


def _inverse_cdf(proba: F64, u: F64) -> I64:
    """Index drawn from each row of ``proba`` with one uniform per row (never a zero cell)."""
    c = np.cumsum(proba, axis=1)
    idx = (c <= (u * c[:, -1])[:, None]).sum(axis=1)
    return np.minimum(idx, proba.shape[1] - 1).astype(np.int64)


# --------------------------------------------------------------------------- the policy


class ServedPolicy:
    """A loaded serving artefact (:func:`simkit.serving.load_policy`): scores and exploration.

    Parameters
    ----------
    scorer
        A :class:`~simkit.serving.scorers.Scorer`.
    context_names, candidate_names : sequence of str
        Feature names in the order the scorer reads them.
    exploration : Exploration
    policy_id : str
        The manifest's sha256.
    manifest : mapping
        The whole manifest, for inspection.

    Examples
    --------
    >>> from simkit.serving.scorers import Column
    >>> policy = ServedPolicy(Column(0), ["u"], ["pop"], Exploration(epsilon=0.5), "demo")
    >>> d = policy.rank([[0.0]], [[[1.0], [3.0]]], rng=np.random.default_rng(0))
    >>> d.action_dist.tolist()
    [[0.25, 0.75]]
    """

    def __init__(
        self,
        scorer: Any,
        context_names: Sequence[str],
        candidate_names: Sequence[str],
        exploration: Exploration,
        policy_id: str,
        manifest: Mapping[str, Any] | None = None,
    ) -> None:
        self.scorer = scorer
        self.context_names = tuple(context_names)
        self.candidate_names = tuple(candidate_names)
        self.exploration = exploration
        self.policy_id = policy_id
        self.manifest = dict(manifest or {})

    # ------------------------------------------------------------------ inputs

    def _matrix(
        self, value: Any, names: tuple[str, ...], what: str, extra_dims: int
    ) -> NDArray[np.float64]:
        """A named mapping or an array, as float64 with the names in the policy's order."""
        if isinstance(value, Mapping):
            missing = [n for n in names if n not in value]
            if missing:
                shown = ", ".join(repr(m) for m in missing[:5])
                raise InputError(
                    f"{what} must hold every feature the policy reads ({len(names)}); "
                    f"{len(missing)} are missing ({shown}{', ...' if len(missing) > 5 else ''}). "
                    f"Pass a value for each of {list(names)[:5]}..."
                )
            cols = [np.asarray(value[n], dtype=np.float64) for n in names]
            try:
                arr = np.stack(cols, axis=-1)
            except ValueError:
                shapes = sorted({c.shape for c in cols})
                raise InputError(
                    f"the features of {what} must all have one shape; got shapes {shapes[:5]}."
                ) from None
        else:
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{what} must be numeric; {exc}.") from None
        want = 1 + extra_dims
        if arr.ndim == want:
            arr = arr[None]
        if arr.ndim != want + 1 or arr.shape[-1] != len(names):
            lead = "(n, K, " if extra_dims else "(n, "
            raise InputError(
                f"{what} must have shape {lead}{len(names)}) (or one request without the leading "
                f"n), one column per feature in the policy's order ({', '.join(names[:5])}"
                f"{', ...' if len(names) > 5 else ''}); got shape {arr.shape}."
            )
        return arr

    def _inputs(self, context: Any, candidates: Any) -> tuple[F64, F64]:
        ctx = self._matrix(context, self.context_names, "context", 0)
        cand = self._matrix(candidates, self.candidate_names, "candidates", 1)
        problems = []
        if cand.shape[0] != ctx.shape[0]:
            problems.append(
                f"context holds {ctx.shape[0]} requests but candidates {cand.shape[0]}; give one "
                "candidate matrix per request"
            )
        if cand.shape[1] < self.exploration.slate_size:
            problems.append(
                f"each request needs at least slate_size={self.exploration.slate_size} "
                f"candidates; got {cand.shape[1]}"
            )
        for arr, what, names in (
            (ctx, "context", self.context_names),
            (cand, "candidates", self.candidate_names),
        ):
            bad = ~np.isfinite(arr)
            if bad.any():
                cols = np.flatnonzero(bad.reshape(-1, arr.shape[-1]).any(axis=0))
                reqs = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1))
                problems.append(
                    f"{what} must be finite; {int(bad.sum())} values are NaN or infinite in "
                    f"{reqs.size} requests (requests {reqs[:5].tolist()}), features "
                    f"{[names[j] for j in cols[:5]]}"
                )
        if problems:
            raise InputError(
                "Cannot score the request batch: "
                + "; ".join(problems)
                + ". Fill missing values upstream; the policy never treats them as zero."
            )
        return ctx, cand

    # ------------------------------------------------------------------ scoring

    def raw_scores(self, context: Any, candidates: Any) -> NDArray[Any]:
        """Scores (n, K) of each request's candidates ((n, M, K) for an ensemble)."""
        ctx, cand = self._inputs(context, candidates)
        return np.asarray(self.scorer.score(ctx, cand))

    def scores(self, context: Any, candidates: Any) -> F64:
        """Scores (n, K) of each request's candidates (an ensemble's mean over its draws)."""
        s = self.raw_scores(context, candidates)
        return s.mean(axis=1) if s.ndim == 3 else s  # type: ignore[no-any-return]

    def proba(self, context: Any, candidates: Any) -> F64:
        """Exact probability (n, K) of each candidate at the first position."""
        s = self.raw_scores(context, candidates)
        avail = np.ones((s.shape[0], s.shape[-1]), dtype=bool)
        return position_proba(s, avail, self.exploration, s.shape[-1])[0]

    def rank(self, context: Any, candidates: Any, *, rng: np.random.Generator) -> Decision:
        """Choose the item (or slate) of each request and the exact probability of it.

        Parameters
        ----------
        context : array-like of shape (n, d_u) or (d_u,), or mapping of name -> (n,)
            Request features, in :attr:`context_names` order (or by name).
        candidates : array-like of shape (n, K, d_c) or (K, d_c), or mapping of name -> (n, K)
            Candidate features, in :attr:`candidate_names` order (or by name).
        rng : numpy.random.Generator
            The draws of the exploration.

        Returns
        -------
        Decision

        Raises
        ------
        InputError
            A missing feature, a wrong shape, NaN or infinite values, fewer candidates than the
            slate size; every problem in one message.
        """
        s = self.raw_scores(context, candidates)
        e = self.exploration
        n, k = s.shape[0], s.shape[-1]
        mean_scores = s.mean(axis=1) if s.ndim == 3 else s
        size = e.slate_size
        if e.rule == "uniform":
            return self._uniform(mean_scores, size, rng)
        avail = np.ones((n, k), dtype=bool)
        rows = np.arange(n)
        items = np.empty((n, size), dtype=np.int64)
        prop = np.empty((n, size))
        first: F64 | None = None
        gumbel = None
        if e.rule == "softmax" and size > 1:
            gumbel = rng.gumbel(size=(n, k))
        for j in range(size):
            proba, main, soft, uniform = position_proba(s, avail, e, k)
            if first is None:
                first = proba
            if gumbel is not None and e.epsilon == 0.0:  # Plackett-Luce by Gumbel top-k
                keys = np.where(avail, np.log(np.maximum(proba, 1e-300)) + gumbel, -np.inf)
                a = np.argmax(keys, axis=1)
            elif e.rule == "topk_softmax":  # draw the branch, then the item: P(a) is the mixture
                explore_it = np.asarray(rng.random(n) < e.epsilon)
                use_uniform = np.asarray(rng.random(n) < e.uniform_share)
                branch = np.where(use_uniform[:, None], uniform, soft)
                a = _inverse_cdf(np.where(explore_it[:, None], branch, main), rng.random((n,)))
            else:
                a = _inverse_cdf(proba, rng.random((n,)))
            items[:, j] = a
            prop[:, j] = proba[rows, a]
            avail[rows, a] = False
        assert first is not None
        return Decision(
            items=items,
            propensity=prop,
            slate_propensity=prop.prod(axis=1),
            action_dist=first,
            scores=mean_scores,
            policy_id=self.policy_id,
        )

    def _uniform(self, scores: F64, size: int, rng: np.random.Generator) -> Decision:
        n, k = scores.shape
        if size == 1:
            items = rng.integers(k, size=n).reshape(n, 1)
        else:
            items = np.stack([rng.choice(k, size=size, replace=False) for _ in range(n)])
        prop = np.broadcast_to(1.0 / (k - np.arange(size)), (n, size)).copy()
        return Decision(
            items=items.astype(np.int64),
            propensity=prop,
            slate_propensity=prop.prod(axis=1),
            action_dist=np.full((n, k), 1.0 / k),
            scores=scores,
            policy_id=self.policy_id,
        )
