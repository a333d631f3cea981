"""Coverage: how much of what a policy does in the simulator the logs support.

A simulator is fitted on logged (state, item) pairs; what it says about pairs the logs never held is
extrapolation. For a policy run in the simulator, each chosen (state, item) pair is judged twice:

- **item support**: the item was shown at least ``min_impressions`` times in the training logs (the
  catalogue's logged popularity, stored at fit time);
- **state support**: the session's interest vector ``z`` is where logged users are, by the density
  of the new-user Gaussian mixture fitted at fit time: ``log p(z)`` at or above the
  ``state_quantile`` quantile of the known users' own ``log p(z0)``.

A pair is supported when both hold. The shares are expectations over the policy's choice
distribution at each visited state (no sampling noise from the choice), reported per episode and
overall.

References
----------
.. [1] Levine, Kumar, Tucker, Fu. "Offline reinforcement learning: tutorial, review, and
   perspectives on open problems." arXiv:2005.01643, 2020 (distribution shift and support).
.. [2] Chen, Beutel, Covington et al. "Top-K off-policy correction for a REINFORCE recommender
   system." WSDM 2019 (policies leaving the logged support).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import solve_triangular

from simkit.session import immediate_values
from simkit.simulator import Simulator
from simkit.state import SessionState
from simkit.threads import blas_threads
from simkit.uncertainty import value_spread
from simkit.validation.policies import Policy, PolicyContext, SessionValues, run_in_simulator
from simkit.validation.sessions import HeldoutSessions

__all__ = [
    "Coverage",
    "CoverageRecorder",
    "item_support",
    "policy_coverage",
    "state_log_density",
    "state_support",
]

MIN_IMPRESSIONS = 20
STATE_QUANTILE = 0.01


def item_support(sim: Simulator, *, min_impressions: int = MIN_IMPRESSIONS) -> NDArray[np.bool_]:
    """Whether each catalogue row was shown at least ``min_impressions`` times in training.

    Examples
    --------
    >>> item_support(sim).mean()                                   # doctest: +SKIP
    0.93
    """
    impressions = np.expm1(sim.catalogue.log_popularity[: sim.n_items].astype(np.float64))
    return np.rint(impressions) >= min_impressions


def state_log_density(sim: Simulator, z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Log density of interest vectors ``z`` (n, d) under the simulator's user mixture."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    d = z.shape[1]
    parts = []
    for w, mu, chol in zip(sim.mixture_weights, sim.mixture_means, sim.mixture_chol):
        y = solve_triangular(chol, (z - mu).T, lower=True)
        log_det = float(np.log(np.diag(chol)).sum())
        parts.append(np.log(w) - 0.5 * (y * y).sum(axis=0) - log_det - 0.5 * d * np.log(2 * np.pi))
    stacked = np.stack(parts)
    top = stacked.max(axis=0)
    return top + np.log(np.exp(stacked - top).sum(axis=0))


def state_support(
    sim: Simulator,
    *,
    quantile: float = STATE_QUANTILE,
    reference: NDArray[np.float64] | None = None,
) -> tuple[float, NDArray[np.float64]]:
    """The density threshold of supported states and the reference states' log densities.

    Parameters
    ----------
    sim : Simulator
        Its user mixture (fitted at fit time) scores the states.
    quantile : float
        Share of the reference states that fall below the threshold.
    reference : numpy.ndarray of shape (n, d), optional
        Logged interest vectors, e.g. the teacher-forced states of held-out sessions (states
        inside sessions, where the interest has moved); the known users' start interest ``z0``
        when omitted.

    Returns
    -------
    threshold : float
        The ``quantile`` quantile of the reference states' ``log p(z)``.
    known : numpy.ndarray
        The reference states' log densities.
    """
    known = state_log_density(sim, sim.users.z0 if reference is None else reference)
    return float(np.quantile(known, quantile)), known


class CoverageRecorder:
    """A policy wrapper that records the support of the policy's choices at every call.

    Parameters
    ----------
    policy : Policy
        The policy to watch; its probabilities are passed through unchanged.
    supported_items : numpy.ndarray of bool
        Item support per catalogue row (:func:`item_support`).
    state_threshold : float
        Log density at or above which a state is supported (:func:`state_support`).
    spread : bool
        Also record the ensemble members' mean and spread of the chosen items' immediate value
        (:func:`simkit.uncertainty.value_spread`; needs a simulator with an ensemble).
    """

    def __init__(
        self,
        policy: Policy,
        supported_items: NDArray[np.bool_],
        state_threshold: float,
        *,
        spread: bool = False,
    ) -> None:
        self.policy = policy
        self.supported_items = supported_items
        self.state_threshold = state_threshold
        self.with_spread = spread
        self.item: list[NDArray[np.float64]] = []
        self.state: list[NDArray[np.bool_]] = []
        self.value_mean: list[NDArray[np.float64]] = []
        self.value_spread: list[NDArray[np.float64]] = []
        self.value_main: list[NDArray[np.float64]] = []

    @property
    def name(self) -> str:
        """The watched policy's name."""
        return self.policy.name

    def proba(self, ctx: PolicyContext) -> NDArray[np.float64]:
        """The policy's probabilities; records the expected item support and state support."""
        p = np.asarray(self.policy.proba(ctx), dtype=np.float64)
        self.item.append((p * self.supported_items[ctx.candidates]).sum(axis=1))
        self.state.append(self._state_ok(ctx.sim, ctx.state))
        if self.with_spread:
            mean, spread = value_spread(ctx.sim, ctx.state, ctx.candidates)
            self.value_mean.append((p * mean).sum(axis=1))
            self.value_spread.append((p * spread).sum(axis=1))
            main = immediate_values(ctx.sim, ctx.state, ctx.candidates)
            self.value_main.append((p * main).sum(axis=1))
        return p

    def _state_ok(self, sim: Simulator, state: SessionState) -> NDArray[np.bool_]:
        return state_log_density(sim, state.z) >= self.state_threshold


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """Support of a policy's choices in the simulator.

    Attributes
    ----------
    item, state, pair : float
        Overall shares (over all decisions) of chosen items with support, visited states with
        support, and chosen (state, item) pairs with both.
    episode_item, episode_state, episode_pair : numpy.ndarray
        The same shares per episode.
    n_decisions : int
        Decisions behind the overall shares.
    min_impressions : int
        Item support threshold.
    state_quantile : float
        State support threshold (quantile of the known users' densities).
    value_mean, value_spread : float
        With an ensemble: the members' mean and standard deviation of the chosen items'
        immediate value, averaged over decisions (NaN without).
    value_main : float
        With an ensemble: the simulator's own immediate value of the chosen items, averaged.
    """

    item: float
    state: float
    pair: float
    episode_item: NDArray[np.float64]
    episode_state: NDArray[np.float64]
    episode_pair: NDArray[np.float64]
    n_decisions: int
    min_impressions: int
    state_quantile: float
    value_mean: float = float("nan")
    value_spread: float = float("nan")
    value_main: float = float("nan")

    def describe(self) -> str:
        """One plain sentence with the figures."""
        low = float(np.mean(self.episode_pair < 0.5)) if len(self.episode_pair) else float("nan")
        return (
            f"{self.pair:.0%} of the policy's {self.n_decisions:,} chosen (state, item) pairs are "
            f"supported by the logs (items shown at least {self.min_impressions} times: "
            f"{self.item:.0%}; states as dense as the {1 - self.state_quantile:.0%} most typical "
            f"logged states: {self.state:.0%}); {low:.0%} of episodes are mostly unsupported."
        )


def policy_coverage(
    sim: Simulator,
    policy: Policy,
    held: HeldoutSessions,
    users: NDArray[np.int64],
    *,
    rng: np.random.Generator,
    n_candidates: int = 20,
    max_steps: int = 200,
    min_impressions: int = MIN_IMPRESSIONS,
    state_quantile: float = STATE_QUANTILE,
    spread: bool = False,
    reference_states: NDArray[np.float64] | None = None,
) -> tuple[Coverage, SessionValues]:
    """Run ``policy`` in the simulator (:func:`~simkit.validation.policies.run_in_simulator`) and
    measure the support of its choices.

    Parameters
    ----------
    sim, policy, held, users, rng, n_candidates, max_steps
        As :func:`~simkit.validation.policies.run_in_simulator`.
    min_impressions : int
        Item support threshold.
    state_quantile : float
        State support threshold.
    spread : bool
        Also record the ensemble spread of the chosen items' value (see :class:`CoverageRecorder`).
    reference_states : numpy.ndarray, optional
        Logged interest vectors that define state support (see :func:`state_support`).

    Returns
    -------
    Coverage
    SessionValues
        The run's per-session values (the same run).

    Examples
    --------
    >>> cov, values = policy_coverage(sim, GreedyWatchPolicy(), held, users,
    ...                               rng=np.random.default_rng(0))   # doctest: +SKIP
    >>> print(cov.describe())                                         # doctest: +SKIP
    """
    threshold, _ = state_support(sim, quantile=state_quantile, reference=reference_states)
    supported = item_support(sim, min_impressions=min_impressions)
    rec = CoverageRecorder(policy, supported, threshold, spread=spread)
    with blas_threads(1):  # small products beside LightGBM's threads (see simkit.threads)
        values = run_in_simulator(
            sim, rec, held, users, rng=rng, n_candidates=n_candidates, max_steps=max_steps
        )
    n = len(users)
    length = values.length.astype(np.int64)
    item_sum, state_sum, pair_sum = np.zeros(n), np.zeros(n), np.zeros(n)
    for t, (item, state) in enumerate(zip(rec.item, rec.state)):
        alive = np.flatnonzero(length > t)  # run_in_simulator keeps the alive sessions in order
        item_sum[alive] += item
        state_sum[alive] += state
        pair_sum[alive] += item * state
    steps = np.maximum(length, 1)
    nan = float("nan")
    total = max(int(length.sum()), 1)
    return (
        Coverage(
            item=float(item_sum.sum() / total),
            state=float(state_sum.sum() / total),
            pair=float(pair_sum.sum() / total),
            episode_item=item_sum / steps,
            episode_state=state_sum / steps,
            episode_pair=pair_sum / steps,
            n_decisions=int(length.sum()),
            min_impressions=min_impressions,
            state_quantile=state_quantile,
            value_mean=float(np.concatenate(rec.value_mean).mean()) if rec.value_mean else nan,
            value_spread=float(np.concatenate(rec.value_spread).mean())
            if rec.value_spread
            else nan,
            value_main=float(np.concatenate(rec.value_main).mean()) if rec.value_main else nan,
        ),
        values,
    )
