"""Fitting the return-time model: the gap from the end of a session to the user's next one.

The logs are replayed causally (:func:`simkit.returns.timed_sessions`): each session starts from
what came before it, and its return features are the state at its end, the items clicked in it
and the user's record of sessions and gaps so far. The gap is modelled in discrete time
(Singer & Willett 1993; Allison 1982): the hours are cut into buckets at quantiles of the observed
gaps, every session contributes one row per bucket it was still waiting in, labelled 1 in the
bucket where the user came back, and a LightGBM classifier learns the bucket hazard from the
features and the bucket index. A session whose user never came back before the end of the log is
right-censored: it counts as "not yet back" in every bucket it waited through, and in the bucket
where the log ends with the fraction of the bucket it covered (the actuarial adjustment), instead
of being dropped, which would keep only the users who came back and make gaps look short.

References
----------
.. [1] Singer, Willett. "It's about time: using discrete-time survival analysis to study duration
   and the timing of events." Journal of Educational Statistics 18(2), 1993.
.. [2] Allison. "Discrete-time methods for the analysis of event histories." Sociological
   Methodology 13, 1982.
.. [3] Ke, Meng, Finley et al. "LightGBM: a highly efficient gradient boosting decision tree."
   NeurIPS 2017.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.errors import ConfigError, LogError
from simkit.fitters.models import lightgbm_params, train_booster
from simkit.logs import Logs
from simkit.returns import HISTORY_ARRAYS, ReturnModel, TimedSessions, timed_sessions
from simkit.simulator import Simulator
from simkit.state import return_feature_names

__all__ = ["CENSORING", "ReturnConfig", "fit_return_model", "person_periods"]

CENSORING = ("bucket", "drop")
MIN_RETURNS = 30


@dataclass(frozen=True, kw_only=True)
class ReturnConfig:
    """Settings of :func:`fit_return_model`.

    Parameters
    ----------
    n_buckets
        Buckets of the gap (at most; edges at quantiles of the observed gaps).
    censoring
        ``"bucket"`` (default): censored sessions count as waiting up to the end of the log;
        ``"drop"``: censored sessions are left out (biased: for comparison only).
    learning_rate, num_leaves, min_data_in_leaf, n_rounds
        LightGBM settings; boosting stops early on 20% of the users.
    num_threads
        LightGBM threads.
    """

    n_buckets: int = 24
    censoring: str = "bucket"
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    n_rounds: int = 1000
    num_threads: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.censoring not in CENSORING:
            problems.append(f"censoring must be one of {CENSORING}; got {self.censoring!r}")
        if self.n_buckets < 2:
            problems.append(f"n_buckets must be at least 2; got {self.n_buckets}")
        if self.n_rounds < 1 or self.num_leaves < 2 or self.min_data_in_leaf < 1:
            problems.append("n_rounds >= 1, num_leaves >= 2 and min_data_in_leaf >= 1 must hold")
        if problems:
            raise ConfigError("Invalid ReturnConfig: " + "; ".join(problems) + ".")


def _edges(observed: NDArray[np.float64], events: NDArray[np.bool_], n: int) -> NDArray:
    """Bucket edges: 0, quantiles of the observed return gaps, and the longest observed time."""
    gaps = observed[events]
    inner: NDArray[np.float64] = (
        np.quantile(gaps, np.linspace(0.0, 1.0, n + 1)[1:-1]) if len(gaps) else np.empty(0)
    )
    top = float(observed.max())
    edges = np.unique(np.r_[0.0, np.round(inner, 4), top])
    edges = edges[(edges > 0) & (edges < top)]
    return np.r_[0.0, edges, top if top > 0 else 1.0]


def person_periods(
    observed: NDArray[np.float64], events: NDArray[np.bool_], edges: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """One row per (session, bucket it waited in): session, bucket, label and weight.

    A session observed for ``t`` hours waits in every bucket that starts at or before ``t``; the
    bucket holding ``t`` gets label 1 when the user came back there, else (censored) label 0 with
    the covered fraction of the bucket as weight.

    Examples
    --------
    >>> s, b, y, w = person_periods(np.array([5.0, 15.0]), np.array([True, False]),
    ...                             np.array([0.0, 10.0, 20.0]))
    >>> s.tolist(), b.tolist(), y.tolist(), w.tolist()
    ([0, 1, 1], [0, 0, 1], [1.0, 0.0, 0.0], [1.0, 1.0, 0.5])
    """
    n_b = len(edges) - 1
    last = np.clip(np.searchsorted(edges, observed, side="right") - 1, 0, n_b - 1)
    count = last + 1
    session = np.repeat(np.arange(len(observed)), count)
    bucket = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    is_last = bucket == last[session]
    label = (is_last & events[session]).astype(np.float64)
    width = edges[bucket + 1] - edges[bucket]
    covered = np.clip((observed[session] - edges[bucket]) / width, 0.0, 1.0)
    weight = np.where(is_last & ~events[session], covered, 1.0)
    return session, bucket.astype(np.int64), label, weight


def fit_return_model(
    logs: Logs,
    sim: Simulator,
    config: ReturnConfig | None = None,
    *,
    rng: np.random.Generator,
    sessions: TimedSessions | None = None,
) -> ReturnModel:
    """Fit the return-time model of ``sim`` from its training logs (with timestamps).

    Parameters
    ----------
    logs
        The training logs of ``sim`` (a ``timestamp`` column is needed).
    sim
        The fitted simulator (catalogue, state dynamics and users).
    config
        Settings; defaults when omitted.
    rng
        Generator of the early-stopping split and the LightGBM seed.
    sessions
        :func:`simkit.returns.timed_sessions` of ``logs``, when already computed.

    Returns
    -------
    ReturnModel

    Raises
    ------
    simkit.returns.NoReturnModelError
        When the logs have no timestamps.
    LogError
        When fewer than 30 returns are observed.
    """
    config = config or ReturnConfig()
    ts = sessions if sessions is not None else timed_sessions(logs, sim)
    events = ~ts.censored
    if int(events.sum()) < MIN_RETURNS:
        raise LogError(
            f"{logs.source}: a return-time model needs at least {MIN_RETURNS} observed returns "
            f"(a user's session followed by another); got {int(events.sum())} in "
            f"{len(events)} sessions of {len(ts.user_ids)} users. Provide logs over a longer span."
        )
    observed = ts.observed_hours
    keep = np.ones(len(observed), bool) if config.censoring == "bucket" else events
    edges = _edges(observed, events, config.n_buckets)
    session, bucket, label, weight = person_periods(observed[keep], events[keep], edges)
    x_s = ts.x[keep]
    x = np.empty((len(session), x_s.shape[1] + 1), np.float32)
    x[:, :-1] = x_s[session]
    x[:, -1] = bucket
    names = [*return_feature_names(sim.spec), "gap_bucket"]
    categorical = [names.index(c) for c in sim.categories if c in names]
    split_rng, seed_rng = rng.spawn(2)
    users = ts.user[keep][session]
    valid_users = split_rng.random(len(ts.user_ids)) < 0.2
    params = lightgbm_params(
        objective="binary",
        seed=int(seed_rng.integers(2**31 - 1)),
        learning_rate=config.learning_rate,
        num_leaves=config.num_leaves,
        min_data_in_leaf=config.min_data_in_leaf,
        num_threads=config.num_threads,
    )
    booster = _train_weighted(
        params, x, label, weight, valid_users[users], config.n_rounds, names, categorical
    )
    rows = pd.Index(ts.user_ids).get_indexer(sim.users.user_ids)
    history = {}
    for key in HISTORY_ARRAYS:
        values = ts.end_history[key]
        default = np.nan if key == "last_log_gap" else (ts.span_hours if key == "hours" else 0.0)
        history[key] = np.where(rows >= 0, values[np.maximum(rows, 0)], default)
    return ReturnModel(
        booster=booster,
        edges_hours=edges,
        user_history=history,
        skip_seconds=ts.skip_seconds,
        open_seconds=ts.open_seconds,
    )


def _train_weighted(
    params: dict[str, Any],
    x: NDArray[np.float32],
    y: NDArray[np.float64],
    weight: NDArray[np.float64],
    valid: NDArray[np.bool_],
    n_rounds: int,
    names: list[str],
    categorical: list[int],
) -> Any:
    """:func:`simkit.fitters.models.train_booster` with row weights (the censored fractions)."""
    import lightgbm as lgb

    if not weight.size or np.all(weight == 1.0):
        return train_booster(
            params, x, y, valid=valid, n_rounds=n_rounds, feature_names=names,
            categorical=categorical,
        )  # fmt: skip
    train = lgb.Dataset(
        x[~valid], y[~valid], weight=weight[~valid], feature_name=names,
        categorical_feature=categorical or "auto", free_raw_data=True, params={"verbosity": -1},
    )  # fmt: skip
    sets: list[lgb.Dataset] = []
    callbacks: list[Any] = []
    if valid.any():
        sets = [lgb.Dataset(x[valid], y[valid], weight=weight[valid], reference=train)]
        callbacks = [lgb.early_stopping(50, verbose=False)]
    booster = lgb.train(
        params, train, num_boost_round=n_rounds, valid_sets=sets, callbacks=callbacks
    )
    if valid.any():
        best = booster.best_iteration or booster.current_iteration()
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return booster
