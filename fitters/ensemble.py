"""Bootstrap ensembles of the response models: the simulator's model uncertainty.

``M`` members of each response model (click, watch time, continuation) are fitted on bootstrap
resamples of *users* of the replayed training rows (the rows :func:`simkit.fitters.fit_simulator_with_rows`
returns, so the log replay is not run again). Resampling users, not rows, keeps a user's sessions
together, so the members disagree where few users speak for a state or an item: on items the logs
rarely show and on states few users were in. The members are stored in ``Simulator.extras`` under
``click_members``, ``watch_members`` and ``continue_members`` (optional parts of the simulator
folder) and read through :mod:`simkit.uncertainty`.

References
----------
.. [1] Efron. "Bootstrap methods: another look at the jackknife." Annals of Statistics 1979.
.. [2] Lakshminarayanan, Pritzel, Blundell. "Simple and scalable predictive uncertainty estimation
   using deep ensembles." NeurIPS 2017.
.. [3] Yu, Thomas, Yu et al. "MOPO: model-based offline policy optimization." NeurIPS 2020 (a
   reward penalised by the models' disagreement).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.fitters.fit import FitConfig, FitResult
from simkit.fitters.models import ClickModel, ContinuationModel, WatchTimeModel
from simkit.logs import Logs
from simkit.threads import blas_threads

__all__ = ["DEFAULT_MEMBERS", "fit_ensemble"]

DEFAULT_MEMBERS = 5


def _user_of_rows(logs: Logs) -> NDArray[np.int64]:
    import pandas as pd

    return pd.factorize(logs.frame["user_id"])[0].astype(np.int64)


def fit_ensemble(
    result: FitResult,
    logs: Logs,
    *,
    n_members: int = DEFAULT_MEMBERS,
    config: FitConfig | None = None,
    rng: np.random.Generator,
) -> None:
    """Fit ``n_members`` bootstrap members of each response model and store them on the simulator.

    Parameters
    ----------
    result : FitResult
        From :func:`simkit.fitters.fit_simulator_with_rows` on ``logs``; its simulator gains the
        ``click_members``, ``watch_members`` (when it has a watch model) and ``continue_members``
        (when it has a continuation model) extras, in place.
    logs : Logs
        The training logs ``result`` was fitted on (they give each row's user).
    n_members : int, default 5
        Ensemble size ``M`` (at least 2: a spread needs two).
    config : FitConfig, optional
        Model settings; the simulator's own (``simulator.config``) when omitted.
    rng : numpy.random.Generator
        Draws the bootstrap resamples and the members' LightGBM seeds.

    Raises
    ------
    ConfigError
        When ``n_members < 2`` or the rows do not match ``logs``.

    Examples
    --------
    >>> res = fit_simulator_with_rows(logs, rng=np.random.default_rng(0))   # doctest: +SKIP
    >>> fit_ensemble(res, logs, n_members=5, rng=np.random.default_rng(1))  # doctest: +SKIP
    >>> len(res.simulator.extras["click_members"])                         # doctest: +SKIP
    5
    """
    if int(n_members) != n_members or n_members < 2:
        raise ConfigError(
            f"An ensemble needs at least 2 members (a spread needs two); got n_members="
            f"{n_members!r}. Pass --ensemble 5 (the default size) or leave the ensemble off."
        )
    sim, rows = result.simulator, result.prepared.rows
    if len(rows.clicked) != logs.n_rows:
        raise ConfigError(
            f"fit_ensemble needs the logs the simulator was fitted on: the replayed rows hold "
            f"{len(rows.clicked):,} rows, the logs {logs.n_rows:,}. Pass the same training logs."
        )
    if config is None:
        known = set(FitConfig.__dataclass_fields__)
        config = FitConfig(**{k: v for k, v in sim.config.items() if k in known})
    user_of_row = _user_of_rows(logs)
    n_users = int(user_of_row.max()) + 1
    user_of_step = np.empty(len(rows.continued), np.int64)
    user_of_step[rows.step_of_row] = user_of_row
    names = list(sim.spec.click_names)
    cnames = list(sim.spec.continue_names)
    cat_idx = [names.index(c) for c in sim.categories if c in names]
    cont_cat = [cnames.index(c) for c in sim.categories if c in cnames]
    sessions = result.prepared.session_codes
    hit = rows.clicked > 0
    clicks, watches, conts = [], [], []
    with blas_threads(1):
        for member_rng in rng.spawn(int(n_members)):
            counts = np.bincount(member_rng.integers(n_users, size=n_users), minlength=n_users)
            seeds = member_rng.integers(2**31 - 1, size=3)
            take = np.repeat(np.arange(len(user_of_row)), counts[user_of_row])
            # early stopping holds out whole sessions with every copy of them: a copy on each
            # side would leak the training rows into the validation rows (no member would stop)
            groups = sessions[take]
            click = ClickModel(**config.model_kwargs(int(seeds[0]), len(take))).fit(
                rows.x_click[take],
                rows.clicked[take],
                groups=groups,
                categorical=cat_idx,
                feature_names=names,
            )
            clicks.append(click.to_runtime())
            if sim.watch is not None:
                wt = take[hit[take]]
                wgroups = groups[hit[take]]
                watch = WatchTimeModel(**config.model_kwargs(int(seeds[1]), len(wt))).fit(
                    rows.x_click[wt],
                    rows.watch[wt],
                    groups=wgroups,
                    duration=result.prepared.duration_of_row[wt],
                    categorical=cat_idx,
                    feature_names=names,
                )
                watches.append(watch.to_runtime())
            if sim.cont is not None:
                st = np.repeat(np.arange(len(user_of_step)), counts[user_of_step])
                sgroups = rows.session_of_step[st]
                cont = ContinuationModel(**config.model_kwargs(int(seeds[2]), len(st))).fit(
                    rows.x_continue[st],
                    rows.continued[st],
                    groups=sgroups,
                    categorical=cont_cat,
                    feature_names=cnames,
                )
                conts.append(cont.to_runtime())
    sim.extras["click_members"] = tuple(clicks)
    if watches:
        sim.extras["watch_members"] = tuple(watches)
    if conts:
        sim.extras["continue_members"] = tuple(conts)
    sim.config["ensemble_members"] = int(n_members)
