"""Model uncertainty of a simulator: the per-(state, item) mean and spread over ensemble members.

A simulator fitted with an ensemble (:func:`simkit.fitters.ensemble.fit_ensemble`) carries ``M``
bootstrap members of its click, watch-time and continuation models in ``Simulator.extras``. This
module reads them:

- :func:`members` gives one :class:`~simkit.simulator.Simulator` per member (the member's models in
  place of the fitted ones, everything else shared), so any rollout can run under a member;
- :func:`value_spread` gives, for each session and candidate, the members' mean and standard
  deviation of the expected immediate reward (:func:`simkit.session.values_of_rows`): what the
  trust report calls the member spread;
- :func:`rows_deviation` gives the members' root-mean-square deviation from the simulator's own
  value: the spread of the members around the reward the simulator pays, which the env's
  ``uncertainty_penalty`` subtracts. It grows both where the members disagree with each other
  and where the simulator's own model disagrees with all of them (a model error on data the
  bootstrap resamples do not back).

References
----------
.. [1] Lakshminarayanan, Pritzel, Blundell. "Simple and scalable predictive uncertainty estimation
   using deep ensembles." NeurIPS 2017.
.. [2] Kidambi, Rajeswaran, Netrapalli, Joachims. "MOReL: model-based offline reinforcement
   learning." NeurIPS 2020 (pessimism where the models disagree).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.session import values_of_rows
from simkit.state import SessionState

if TYPE_CHECKING:
    from simkit.simulator import Simulator

__all__ = [
    "has_ensemble",
    "members",
    "n_members",
    "rows_deviation",
    "rows_spread",
    "value_spread",
]


def n_members(sim: Simulator) -> int:
    """Number of ensemble members the simulator carries (0 without an ensemble)."""
    return len(sim.extras.get("click_members") or ())


def has_ensemble(sim: Simulator) -> bool:
    """Whether ``sim`` carries at least two ensemble members."""
    return n_members(sim) >= 2


def _require(sim: Simulator) -> None:
    if not has_ensemble(sim):
        raise ConfigError(
            f"The simulator has {n_members(sim)} ensemble members; model spread needs at least 2. "
            "Fit it with an ensemble: 'simkit fit LOGS --out DIR --ensemble 5'."
        )


def members(sim: Simulator) -> list[Simulator]:
    """One simulator per ensemble member: its click, watch and continuation models in place.

    A model without members (e.g. no continuation members) stays the fitted one. The members share
    the catalogue, users and dynamics with ``sim`` and carry no extras.

    Raises
    ------
    ConfigError
        When ``sim`` has fewer than two members.
    """
    _require(sim)
    clicks = sim.extras["click_members"]
    watches = sim.extras.get("watch_members") or (sim.watch,) * len(clicks)
    conts = sim.extras.get("continue_members") or (sim.cont,) * len(clicks)
    return [
        dataclasses.replace(sim, click=c, watch=w, cont=k, extras={})
        for c, w, k in zip(clicks, watches, conts)
    ]


def rows_spread(
    sim: Simulator,
    x: NDArray[np.float32],
    duration: NDArray[np.float64],
    *,
    reward: str = "watch_time",
    long_watch_threshold: float = 60.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Members' mean and standard deviation of the immediate value of click-model rows.

    Parameters
    ----------
    sim : Simulator
        A simulator with an ensemble.
    x : numpy.ndarray of shape (n * K, F)
        Click-model rows (:meth:`Simulator.click_features`).
    duration : numpy.ndarray of shape (n, K)
        Item durations of the rows.
    reward : str
        ``"watch_time"``, ``"clicks"`` or ``"long_watch"`` (as :func:`simkit.session.values_of_rows`).

    Returns
    -------
    mean, spread : numpy.ndarray of shape (n, K)
        Mean over members and standard deviation (``ddof=1``) over members.
    """
    values = np.stack(
        [
            values_of_rows(m, x, duration, reward=reward, long_watch_threshold=long_watch_threshold)
            for m in members(sim)
        ]
    )
    return values.mean(axis=0), values.std(axis=0, ddof=1)


def rows_deviation(
    sim: Simulator,
    x: NDArray[np.float32],
    duration: NDArray[np.float64],
    *,
    reward: str = "watch_time",
    long_watch_threshold: float = 60.0,
    own: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Members' root-mean-square deviation from the simulator's own immediate value of each row.

    ``sqrt(mean_m (v_m - v)^2)`` with ``v_m`` member ``m``'s value and ``v`` the simulator's:
    equal to ``sqrt((M - 1) / M * s^2 + (mean_m v_m - v)^2)`` with ``s`` the members' spread
    (:func:`rows_spread`). A pessimistic reward ``v - c * deviation`` (MOPO's penalty [1]_ around
    the value the simulator pays) stays near ``v - c * s`` where the simulator agrees with its
    members and falls toward the members' values where it does not.

    Parameters
    ----------
    sim : Simulator
        A simulator with an ensemble.
    x : numpy.ndarray of shape (n * K, F)
        Click-model rows (:meth:`Simulator.click_features`).
    duration : numpy.ndarray of shape (n, K)
        Item durations of the rows.
    reward : str
        ``"watch_time"``, ``"clicks"`` or ``"long_watch"``.
    own : numpy.ndarray of shape (n, K), optional
        The simulator's own values of the rows when already computed.

    Returns
    -------
    numpy.ndarray of shape (n, K)

    References
    ----------
    .. [1] Yu, Thomas, Yu et al. "MOPO: model-based offline policy optimization." NeurIPS 2020.
    """
    threshold = long_watch_threshold
    if own is None:
        own = values_of_rows(sim, x, duration, reward=reward, long_watch_threshold=threshold)
    values = np.stack(
        [
            values_of_rows(m, x, duration, reward=reward, long_watch_threshold=threshold)
            for m in members(sim)
        ]
    )
    return np.sqrt(((values - own) ** 2).mean(axis=0))


def value_spread(
    sim: Simulator,
    state: SessionState,
    items: NDArray[np.int64],
    *,
    reward: str = "watch_time",
    long_watch_threshold: float = 60.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Members' mean and spread of the expected immediate reward of each (session, item).

    Parameters
    ----------
    sim : Simulator
        A simulator fitted with an ensemble.
    state : SessionState
        ``n`` sessions.
    items : numpy.ndarray of shape (n, K)
        Catalogue rows.
    reward : str
        The reward kind.

    Returns
    -------
    mean, spread : numpy.ndarray of shape (n, K)

    Raises
    ------
    ConfigError
        When ``sim`` has no ensemble.

    Examples
    --------
    >>> users = sim.sample_users(4, rng=np.random.default_rng(0))        # doctest: +SKIP
    >>> mean, spread = value_spread(sim, sim.initial_state(users),
    ...                             np.zeros((4, 3), dtype=int))        # doctest: +SKIP
    """
    _require(sim)
    items = np.asarray(items, dtype=np.int64).reshape(state.n, -1)
    x = sim.click_features(state, items)
    return rows_spread(
        sim,
        x,
        sim.catalogue.duration[items],
        reward=reward,
        long_watch_threshold=long_watch_threshold,
    )
