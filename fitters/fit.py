"""``fit_simulator``: from logs to a :class:`simkit.simulator.Simulator`.

The steps: build the item catalogue and its embeddings (item features, else a truncated SVD of the
training clicks), each session's start interest from the user's other sessions, the replay of every
logged session through :mod:`simkit.state` (teacher forcing), then the click, watch-time and
continuation models on the replayed rows, the known users' interest vectors and a Gaussian mixture
for new users.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from simkit.context import ContextModel
from simkit.errors import ConfigError, LogError
from simkit.fitters.models import (
    ClickModel,
    ContinuationModel,
    WatchTimeModel,
    expected_calibration_error,
)
from simkit.logs import Logs
from simkit.models import BinaryResponse
from simkit.noise import auc_warning
from simkit.replay import (
    PreparedLogs,
    ReplayRows,
    index_logs,
    prepare_logs,
    replay_with,
    row_context,
    session_features,
    user_start_interest,
)
from simkit.simulator import Simulator, UserTable
from simkit.state import (
    Catalogue,
    Dynamics,
    FeatureSpec,
    encode_column,
    item_embeddings_from_clicks,
    item_embeddings_from_features,
)
from simkit.threads import blas_threads

__all__ = [
    "FitConfig",
    "check_fittable",
    "FitResult",
    "fit_simulator",
    "fit_simulator_with_rows",
    "heldout_metrics",
]

MIN_SESSIONS = 10
MIN_CLICKS = 20


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Fit settings.

    Parameters
    ----------
    embedding
        ``"auto"`` (item features when the logs have numeric ones, else clicks), ``"features"`` or
        ``"clicks"``.
    dim
        Embedding dimension ``d`` (at most; features with fewer columns give fewer).
    eta
        Interest update rate after a click.
    shrinkage
        Pseudo-count pulling a user's start interest toward the population mean.
    learning_rate, num_leaves, min_child_samples, n_estimators
        LightGBM parameters shared by the three models.
    mixture_components
        Components of the new-user Gaussian mixture.
    oof_folds
        Folds of users for out-of-fold click embeddings (``embedding="clicks"``).
    ensemble
        Bootstrap members of each response model (0: none; see :mod:`simkit.fitters.ensemble`).
    num_threads
        LightGBM threads. One by default: on a 2-core machine whose cores are shared with other
        work, LightGBM's OpenMP threads wait on each other at every split, and a fit of the sample
        log took 66 s with 2 threads against 8 s with 1 (measured side by side in one run).
    """

    embedding: str = "auto"
    dim: int = 16
    eta: float = 0.1
    shrinkage: float = 5.0
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 200
    n_estimators: int = 2000
    mixture_components: int = 4
    num_threads: int = 1
    oof_folds: int = 5
    ensemble: int = 0

    def __post_init__(self) -> None:
        if self.embedding not in ("auto", "features", "clicks"):
            raise ConfigError(
                f"FitConfig.embedding must be 'auto', 'features' or 'clicks'; got {self.embedding!r}."
            )
        if not 0 < self.eta < 1:
            raise ConfigError(f"FitConfig.eta must be in (0, 1); got {self.eta}.")
        if self.dim < 1 or self.shrinkage < 0 or self.mixture_components < 1:
            raise ConfigError("FitConfig.dim and mixture_components must be >= 1, shrinkage >= 0.")

    def model_kwargs(self, seed: int, n_rows: int | None = None) -> dict[str, Any]:
        """Keyword arguments shared by the three estimators.

        With ``n_rows``, ``min_child_samples`` is lowered to a twentieth of the rows (at least 5)
        when the data is too small for it: LightGBM makes no split with fewer rows than twice
        the minimum per leaf, and the model would be a silent constant.
        """
        mcs = self.min_child_samples
        if n_rows is not None:
            mcs = min(mcs, max(5, n_rows // 20))
        return {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": mcs,
            "n_estimators": self.n_estimators,
            "num_threads": self.num_threads,
            "random_state": seed,
        }


def _item_feature_table(logs: Logs) -> pd.DataFrame | None:
    """The item table: the catalogue, plus the log's own ``item_*`` columns and ``duration``
    where the catalogue lacks them (each item's first value; :attr:`Logs.warnings` says so)."""
    cols = [c for c in logs.frame.columns if c.startswith("item_") and c != "item_id"]
    if "duration" in logs.frame.columns:
        cols.append("duration")
    from_log = logs.frame[["item_id", *cols]].drop_duplicates("item_id") if cols else None
    if logs.items is None:
        return from_log
    if from_log is None:
        return logs.items
    extra = [c for c in cols if c not in logs.items.columns]
    if not extra:
        return logs.items
    merged = logs.items.merge(from_log[["item_id", *extra]], on="item_id", how="outer")
    return merged


def _build_catalogue(
    logs: Logs, config: FitConfig, rng: np.random.Generator
) -> tuple[Catalogue, tuple[str, ...], dict[str, list], str]:
    frame = logs.frame
    table = _item_feature_table(logs)
    ids = pd.Index(pd.unique(frame["item_id"]))
    if table is not None:
        ids = ids.append(pd.Index(table["item_id"])).unique()
    n_items = len(ids)
    feature_cols: list[str] = []
    categories: dict[str, list] = {}
    feats = np.empty((n_items, 0), np.float32)
    duration = np.full(n_items, np.nan)
    numeric_for_emb = []
    if table is not None:
        aligned = table.set_index("item_id").reindex(ids)
        cols = [c for c in aligned.columns if c.startswith("item_")]
        blocks = []
        for c in cols:
            values, cats = encode_column(aligned[c])
            blocks.append(values)
            feature_cols.append(c)
            if cats is not None:
                categories[c] = cats
            else:
                numeric_for_emb.append(values)
        if "duration" in aligned:
            duration = aligned["duration"].to_numpy(dtype=np.float64)
            blocks.append(np.log1p(duration).astype(np.float32))
            feature_cols.append("log_duration")
        if blocks:
            feats = np.column_stack(blocks).astype(np.float32)
    source = config.embedding
    if source == "auto":
        source = "features" if numeric_for_emb else "clicks"
    if source == "features":
        if not numeric_for_emb:
            raise LogError(
                f"{logs.source}: FitConfig(embedding='features') needs numeric item_* feature "
                "columns (in the log or the item catalogue); found none. Use embedding='clicks'."
            )
        emb = item_embeddings_from_features(np.column_stack(numeric_for_emb), config.dim)
    else:
        emb = _click_embedding(logs, ids, config.dim, rng)
    impressions = np.bincount(ids.get_indexer(frame["item_id"].to_numpy()), minlength=n_items)
    catalogue = Catalogue(
        item_ids=ids.to_numpy(),
        embedding=np.vstack([emb, emb.mean(axis=0)]),
        features=np.vstack([feats, np.full((1, feats.shape[1]), np.nan, np.float32)]),
        duration=np.r_[duration, np.nan],
        log_popularity=np.r_[np.log1p(impressions), 0.0].astype(np.float32),
    )
    return catalogue, tuple(feature_cols), categories, source


def _user_columns(logs: Logs) -> tuple[str, ...]:
    return tuple(
        c for c in logs.frame.columns if c.startswith(("user_", "ctx_")) and c != "user_id"
    )


def _click_embedding(
    logs: Logs, ids: pd.Index, dim: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    frame = logs.frame
    clicked = frame["clicked"].to_numpy() > 0
    user_rows = pd.factorize(frame["user_id"])[0][clicked]
    item_rows = ids.get_indexer(frame["item_id"].to_numpy()[clicked])
    n_users, n_items = len(np.unique(user_rows)), len(np.unique(item_rows))
    if n_users < 2 or n_items < 2:
        raise LogError(
            f"{logs.source}: item embeddings from clicks need clicks of at least 2 users on at "
            f"least 2 items; the training logs have clicks of {n_users} user(s) on {n_items} "
            "item(s). Give the items numeric item_* features (in the log or an item catalogue), "
            "or provide logs of more users."
        )
    return item_embeddings_from_clicks(
        user_rows, item_rows, int(user_rows.max()) + 1, len(ids), dim, rng=rng
    )


def _prepare_out_of_fold(
    logs: Logs,
    catalogue: Catalogue,
    user_cols: tuple[str, ...],
    categories: dict[str, list],
    config: FitConfig,
    dynamics: Dynamics,
    rng: np.random.Generator,
) -> PreparedLogs:
    """Replay each fold of users with embeddings fitted on the other folds' clicks.

    Embeddings from clicks know the training users' own clicks, so in-sample rows would look more
    predictable than a new user's; out-of-fold rows look like held-out users. Each fold's embedding
    is rotated onto the full one (orthogonal Procrustes), so every row lives in the same basis as
    the simulator's final embedding.
    """
    frame = logs.frame
    user_codes, user_ids = pd.factorize(frame["user_id"])
    n_folds = config.oof_folds
    fold_of_user = rng.permutation(len(user_ids)) % n_folds
    fold = fold_of_user[user_codes]
    ids = pd.Index(catalogue.item_ids)
    full = catalogue.embedding[:-1]
    parts: list[tuple[NDArray[np.int64], PreparedLogs]] = []
    for f in range(n_folds):
        if not (fold == f).any() or not (fold != f).any():
            continue
        other = logs.subset(fold != f)
        clicked_users = other.frame.loc[other.frame["clicked"] > 0, "user_id"].nunique()
        clicked_items = other.frame.loc[other.frame["clicked"] > 0, "item_id"].nunique()
        if clicked_users < 2 or clicked_items < 2:
            continue
        emb = _click_embedding(other, ids, full.shape[1], rng)
        u, _, vt = np.linalg.svd(emb.T @ full)
        emb = emb @ (u @ vt)
        fold_cat = Catalogue(
            item_ids=catalogue.item_ids,
            embedding=np.vstack([emb, emb.mean(axis=0)]),
            features=catalogue.features,
            duration=catalogue.duration,
            log_popularity=catalogue.log_popularity,
        )
        sub = logs.subset(fold == f)
        parts.append(
            (
                np.flatnonzero(fold == f),
                prepare_logs(sub, fold_cat, user_cols, categories, dynamics),
            )
        )
    if len(parts) < n_folds:
        return prepare_logs(logs, catalogue, user_cols, categories, dynamics)
    n = len(frame)
    x_click = np.empty((n, parts[0][1].rows.x_click.shape[1]), np.float32)
    step_of_row = np.empty(n, np.int64)
    steps_done = 0
    sessions_done = 0
    session_of_step = []
    for rows_f, part in parts:
        x_click[rows_f] = part.rows.x_click
        step_of_row[rows_f] = part.rows.step_of_row + steps_done
        session_of_step.append(part.rows.session_of_step + sessions_done)
        steps_done += len(part.rows.continued)
        sessions_done += int(part.rows.session_of_step.max()) + 1
    return PreparedLogs(
        rows=ReplayRows(
            x_click=x_click,
            clicked=frame["clicked"].to_numpy().astype(np.int8),
            watch=frame["watch_time"].to_numpy(dtype=np.float64),
            item_rows=catalogue.rows(frame["item_id"].to_numpy()),
            x_continue=np.vstack([p.rows.x_continue for _, p in parts]),
            continued=np.concatenate([p.rows.continued for _, p in parts]),
            step_of_row=step_of_row,
            session_of_step=np.concatenate(session_of_step),
        ),
        session_codes=pd.factorize(frame["session_id"], sort=False)[0].astype(np.int64),
        user_ids_of_session=np.concatenate([p.user_ids_of_session for _, p in parts]),
        duration_of_row=catalogue.duration[catalogue.rows(frame["item_id"].to_numpy())],
    )


def check_fittable(logs: Logs, *, whole: Logs | None = None) -> None:
    """Refuse logs too small to fit, naming the counts.

    ``whole``: the file ``logs`` is the training part of (after holding users out); the message
    then gives both counts, so that a small training part is not mistaken for a small file.
    """
    n_clicks = int(logs.frame["clicked"].sum())
    problems = []
    if logs.n_sessions < MIN_SESSIONS:
        problems.append(f"{logs.n_sessions} sessions (at least {MIN_SESSIONS} are needed)")
    if n_clicks < MIN_CLICKS:
        problems.append(f"{n_clicks} clicks (at least {MIN_CLICKS} are needed)")
    if n_clicks == logs.n_rows:
        problems.append("no impression without a click (the click model needs both)")
    if not problems:
        return
    if whole is not None and whole.n_rows != logs.n_rows:
        w_clicks = int(whole.frame["clicked"].sum())
        raise LogError(
            f"{logs.source}: too little to fit a simulator: the training part (the users not held "
            f"out, {logs.n_users:,} of {whole.n_users:,}) has " + "; ".join(problems) + ". The "
            f"whole file has {whole.n_sessions:,} sessions and {w_clicks:,} clicks of "
            f"{whole.n_users:,} users; hold out a smaller share of users (--holdout) or provide "
            "more logs."
        )
    raise LogError(
        f"{logs.source}: too little to fit a simulator: "
        + "; ".join(problems)
        + ". Provide more logs."
    )


_check_fittable = check_fittable


@dataclass(frozen=True)
class FitResult:
    """A fitted simulator and the replayed training rows its models were fitted on."""

    simulator: Simulator
    prepared: PreparedLogs


def fit_simulator(
    logs: Logs,
    config: FitConfig | None = None,
    *,
    rng: np.random.Generator,
    holdout: Logs | None = None,
    progress: bool = False,
) -> Simulator:
    """Fit a simulator from training logs.

    Parameters
    ----------
    logs
        Training logs from :func:`simkit.logs.read_logs` (held-out users removed).
    config
        Fit settings; defaults when omitted.
    rng
        Generator; every stochastic part (SVD start, early-stopping split, model seeds, mixture,
        position bias, held-out metrics) draws from its own spawned stream.
    holdout
        Optional held-out logs: fit-time metrics (click AUC, continuation AUC, watch KS) are
        measured on them, else on nothing (NaN).
    progress
        Show a progress bar over the fitting stages.

    Returns
    -------
    Simulator

    Raises
    ------
    LogError
        When the logs are too small to fit (few sessions, no clicks, or only clicks).
    """
    return fit_simulator_with_rows(
        logs, config, rng=rng, holdout=holdout, progress=progress
    ).simulator


def fit_simulator_with_rows(
    logs: Logs,
    config: FitConfig | None = None,
    *,
    rng: np.random.Generator,
    holdout: Logs | None = None,
    progress: bool = False,
) -> FitResult:
    """:func:`fit_simulator`, also returning the replayed training rows (for diagnostics and for
    reference models fitted on the very same rows)."""
    config = config or FitConfig()
    _check_fittable(logs)
    with blas_threads(1):
        result = _fit(logs, config, rng=rng, holdout=holdout, progress=progress)
    if config.ensemble:  # its own stream: the fit above is the same with or without members
        from simkit.fitters.ensemble import fit_ensemble

        fit_ensemble(result, logs, n_members=config.ensemble, config=config, rng=rng.spawn(1)[0])
    return result


def _fit(
    logs: Logs,
    config: FitConfig,
    *,
    rng: np.random.Generator,
    holdout: Logs | None,
    progress: bool,
) -> FitResult:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    emb_rng, model_rng, mix_rng, metric_rng, bias_rng = rng.spawn(5)
    seeds = model_rng.integers(2**31 - 1, size=3)
    bar = tqdm(total=6, desc="fit", disable=not progress, leave=False)

    catalogue, item_cols, categories, source = _build_catalogue(logs, config, emb_rng)
    user_cols = _user_columns(logs)
    for c in user_cols:
        _, cats = encode_column(logs.frame[c])
        if cats is not None:
            categories[c] = cats
    spec = FeatureSpec(user_columns=user_cols, item_columns=item_cols, dim=catalogue.dim)
    clicked = logs.frame["clicked"].to_numpy() > 0
    prior_mean = catalogue.embedding[
        catalogue.rows(logs.frame["item_id"].to_numpy()[clicked])
    ].mean(0)
    dynamics = Dynamics(
        eta=config.eta, prior_mean=tuple(prior_mean.tolist()), shrinkage=config.shrinkage
    )
    bar.update()

    if source == "clicks":
        prep = _prepare_out_of_fold(
            logs, catalogue, user_cols, categories, config, dynamics, emb_rng
        )
    else:
        prep = prepare_logs(logs, catalogue, user_cols, categories, dynamics)
    rows = prep.rows
    bar.update()
    names = list(spec.click_names)
    cat_idx = [names.index(c) for c in categories]
    click = ClickModel(**config.model_kwargs(int(seeds[0]), len(rows.clicked))).fit(
        rows.x_click,
        rows.clicked,
        groups=prep.session_codes,
        categorical=cat_idx,
        feature_names=names,
    )
    bar.update()
    hit = rows.clicked > 0
    watch = None
    if logs.dwell:
        watch = WatchTimeModel(**config.model_kwargs(int(seeds[1]), int(hit.sum()))).fit(
            rows.x_click[hit],
            rows.watch[hit],
            groups=prep.session_codes[hit],
            duration=prep.duration_of_row[hit],
            categorical=cat_idx,
            feature_names=names,
        )
    bar.update()
    cnames = list(spec.continue_names)
    cont = None
    if rows.continued.any():  # one decision per session: no continuation model (a bandit)
        cont = ContinuationModel(**config.model_kwargs(int(seeds[2]), len(rows.continued))).fit(
            rows.x_continue,
            rows.continued,
            groups=rows.session_of_step,
            categorical=[cnames.index(c) for c in categories if c in cnames],
            feature_names=cnames,
        )
    bar.update()
    index = index_logs(logs.frame, catalogue)
    context = None
    ctx_idx, ctx_rows = row_context(logs.frame, user_cols, categories)
    if ctx_rows is not None:
        context = ContextModel.fit(
            ctx_idx,
            ctx_rows[index.step_first_row],
            index.t_of_step,
            index.step_click,
            rng=bias_rng.spawn(1)[0],
        )
    multi = np.diff(np.r_[index.step_first_row, index.n_rows]) > 1
    slate_clicks = "independent"
    per_step = np.bincount(index.step_of_row, weights=index.clicked, minlength=index.n_steps)
    if multi.any() and per_step[multi].max() <= 1:
        slate_clicks = "one"  # impression lists: at most one click per list

    users = _user_table(logs, catalogue, user_cols, categories, dynamics)
    n_comp = max(1, min(config.mixture_components, len(users.user_ids) // 20))
    gmm = GaussianMixture(
        n_components=n_comp,
        covariance_type="full",
        reg_covar=1e-4,
        random_state=int(mix_rng.integers(2**31 - 1)),
    ).fit(users.z0)
    sim = Simulator(
        spec=spec,
        catalogue=catalogue,
        users=users,
        mixture_weights=gmm.weights_ / gmm.weights_.sum(),
        mixture_means=gmm.means_,
        mixture_chol=np.linalg.cholesky(gmm.covariances_),
        click=click.to_runtime(),
        watch=None if watch is None else watch.to_runtime(),
        cont=None if cont is None else cont.to_runtime(),
        dynamics=dynamics,
        categories=categories,
        config={
            **asdict(config),
            "embedding_source": source,
            "slate_clicks": slate_clicks,
            "calibration": {
                "click": click.calibration_note_,
                **({"continuation": cont.calibration_note_} if cont is not None else {}),
            },
        },
        schema={"source": logs.source, "dwell": logs.dwell},
        extras={} if context is None else {"context": context},
    )
    if logs.has_position:
        sim.position_bias = estimate_position_bias(
            sim.click, rows.x_click, names.index("position"), rng=bias_rng
        )
    sim.metrics = {
        "train_rows": logs.n_rows,
        "train_sessions": logs.n_sessions,
        "train_clicks": int(rows.clicked.sum()),
        "click_validation_ece": click.validation_ece_,
        "fit_seconds": time.perf_counter() - t0,
        **(heldout_metrics(sim, holdout, rng=metric_rng) if holdout is not None else {}),
    }
    sim.metrics["warnings"] = fit_warnings(sim, logs)
    # --- return-time model (optional part "return"): only logs with timestamps have gaps
    if logs.has_timestamp:
        from simkit.fitters.returns import ReturnConfig, fit_return_model

        try:
            sim.extras["return"] = fit_return_model(
                logs,
                sim,
                ReturnConfig(n_rounds=config.n_estimators, num_threads=config.num_threads),
                rng=rng.spawn(1)[0],
            )
        except LogError as err:
            sim.metrics["return_model_skipped"] = str(err)
    bar.update()
    bar.close()
    return FitResult(simulator=sim, prepared=prep)


def estimate_position_bias(
    click: BinaryResponse,
    x_click: NDArray[np.float32],
    position_column: int,
    *,
    rng: np.random.Generator,
    max_rows: int = 20_000,
) -> NDArray[np.float64]:
    """Examination probability of each slate position, relative to the first, from the click model.

    The click model sees the slate position as a feature; the same impressions are scored as if
    shown at each position in turn, and the bias of position ``j`` is the mean click probability
    there over the mean at position 0 (clipped to ``(0, 1]``, non-increasing). Scoring the *same*
    rows removes the confounding of position with what the logging policy put on top.
    """
    positions = x_click[:, position_column]
    n_pos = int(np.nanmax(positions)) + 1 if len(positions) else 1
    take = rng.choice(len(x_click), size=min(max_rows, len(x_click)), replace=False)
    x = x_click[take].copy()
    means = []
    for j in range(n_pos):
        x[:, position_column] = j
        means.append(float(click.proba(x).mean()))
    bias = np.clip(np.asarray(means) / means[0], 1e-3, 1.0)
    return np.minimum.accumulate(bias)


def _user_table(
    logs: Logs,
    catalogue: Catalogue,
    user_cols: tuple[str, ...],
    categories: dict[str, list],
    dynamics: Dynamics,
) -> UserTable:
    """Known users: the start interest of a new session of each (all the user's clicks)."""
    index = index_logs(logs.frame, catalogue)
    _, by_user = user_start_interest(index, catalogue, dynamics)
    first_session = np.unique(index.user_of_session, return_index=True)[1]
    feats = session_features(
        logs.frame, index.session_first_row[first_session], user_cols, categories
    )
    return UserTable(user_ids=index.user_ids, z0=by_user.z0, hist_n=by_user.hist_n, features=feats)


def fit_warnings(sim: Simulator, logs: Logs) -> list[str]:
    """What the fit summary warns about: AUCs within noise of 0.5, models left out."""
    m, out = sim.metrics, []
    if "click_auc" in m:
        n_pos, n_neg = int(m.get("heldout_clicks", 0)), int(m.get("heldout_rows", 0))
        w = auc_warning("click", m["click_auc"], n_pos, n_neg - n_pos, "clicks")
        if w:
            out.append(w)
    if "continue_auc" in m and sim.cont is not None:
        n_pos, n_all = int(m.get("heldout_continued", 0)), int(m.get("heldout_steps", 0))
        w = auc_warning("continuation", m["continue_auc"], n_pos, n_all - n_pos, "steps followed")
        if w:
            out.append(w)
    if sim.watch is None:
        out.append(
            "No watch-time model: the logs have no dwell time, so rewards are clicks and no "
            "watch time is simulated."
        )
    if sim.cont is None:
        out.append(
            "No continuation model: every session is one decision, so the environment ends each "
            "session after its first step (a contextual bandit)."
        )
    return out


def heldout_metrics(sim: Simulator, holdout: Logs, *, rng: np.random.Generator) -> dict[str, float]:
    """Click AUC / ECE, continuation AUC and watch-time KS of ``sim`` on held-out logs (NaN for a
    model the simulator has not: no watch model without dwell, no continuation without sessions
    of more than one step)."""
    prep = replay_with(sim, holdout)
    r = prep.rows
    p = sim.click.proba(r.x_click)
    out: dict[str, float] = {
        "heldout_rows": float(len(p)),
        "heldout_clicks": float(r.clicked.sum()),
        "heldout_steps": float(len(r.continued)),
        "heldout_continued": float(r.continued.sum()),
    }
    both = 0 < r.clicked.sum() < len(r.clicked)
    out["click_auc"] = float(roc_auc_score(r.clicked, p)) if both else float("nan")
    out["click_ece"] = expected_calibration_error(r.clicked, p)
    both = 0 < r.continued.sum() < len(r.continued)
    if sim.cont is not None and both:
        pc = sim.cont.proba(r.x_continue)
        out["continue_auc"] = float(roc_auc_score(r.continued, pc))
    else:
        out["continue_auc"] = float("nan")
    hit = r.clicked > 0
    if sim.watch is not None and hit.sum() > 1:
        sampled = sim.watch.sample(r.x_click[hit], prep.duration_of_row[hit], rng=rng)
        out["watch_ks"] = float(stats.ks_2samp(sampled, r.watch[hit]).statistic)
    else:
        out["watch_ks"] = float("nan")
    return out
