"""A synthetic recommender world whose click, watch and leave behaviour is known exactly.

The world exists so that every other part of simkit can be checked against the truth: the
fitters' recovery of the click model, the simulator's value of a policy, the off-policy estimators.
Its dynamics are written in terms simkit's state can express (DESIGN.md, "Synthetic ground truth"):

* users have a latent interest vector ``u`` (never logged); items have an embedding ``v`` that the
  catalogue's ``item_f*`` features record, a quality, a duration and a clickbait flag;
* click: ``sigmoid(b + a * u.v + clickbait + quality - repeats - log1p(step))`` plus a
  non-linear interest term;
* watch time given a click: log-normal around a mean driven by interest and quality (clickbait is
  short), capped by the item's duration;
* after a click the interest moves, ``u <- (1 - eta) u + eta v`` (the same kind of update as
  :mod:`simkit.state`);
* leaving depends on the last watch, whether the last item was clicked, the steps since the last
  click and the step: short watches (clickbait) make users leave, so myopic policies lose.

``misspecified=True`` adds a hidden per-user fatigue that lowers clicks and continuation and a
different interest update, so that the truth lies outside what simkit's state can hold.
``confounded=True`` lets the logging policy see the latent interest, as production rankers see
signals no log keeps.

Example
-------
>>> import numpy as np
>>> world = World(WorldConfig(n_users=200, n_items=100), rng=np.random.default_rng(0))
>>> logs = world.generate_logs(300, rng=np.random.default_rng(1))
>>> sorted(logs.columns)[:4]
['clicked', 'item_id', 'propensity', 'session_id']
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from simkit.errors import ConfigError

__all__ = [
    "PolicyValue",
    "World",
    "WorldConfig",
    "WorldState",
    "WorldView",
    "write_samples",
]

Policy = Callable[["WorldView", np.random.Generator], NDArray[np.int64]]


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Parameters of the synthetic world (all have defaults that give realistic logs).

    Parameters
    ----------
    n_users, n_items, dim, n_clusters
        Population sizes and the latent dimension.
    clickbait_share
        Fraction of items that are clickbait (tempting, short watches, users leave after them).
    eta
        Interest update rate after a click.
    max_steps
        Hard cap on a session's length (a truncation; rarely reached).
    logging_temperature
        Temperature of the logging policy's softmax over the catalogue.
    confounded
        The logging policy also scores items by the user's latent interest.
    misspecified
        Hidden fatigue and a different interest update (truth outside simkit's state).
    sessions_per_user
        Mean number of sessions per user in generated logs.
    """

    n_users: int = 3000
    n_items: int = 500
    dim: int = 8
    n_clusters: int = 6
    clickbait_share: float = 0.1
    eta: float = 0.1
    max_steps: int = 200
    logging_temperature: float = 1.0
    confounded: bool = False
    misspecified: bool = False
    sessions_per_user: float = 5.0

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "dim", "n_clusters", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"WorldConfig.{name} must be at least 1; got {getattr(self, name)}."
                )
        if not 0.0 <= self.clickbait_share < 1.0:
            raise ConfigError(
                f"WorldConfig.clickbait_share must be in [0, 1); got {self.clickbait_share}."
            )
        if not 0.0 < self.eta < 1.0:
            raise ConfigError(f"WorldConfig.eta must be in (0, 1); got {self.eta}.")
        if self.logging_temperature <= 0:
            raise ConfigError(
                f"WorldConfig.logging_temperature must be positive; got {self.logging_temperature}."
            )


@dataclass
class WorldState:
    """The true state of many sessions at once (arrays over sessions; mutated by :meth:`World.step`)."""

    user: NDArray[np.int64]
    interest: NDArray[np.float64]
    step: NDArray[np.int64]
    n_clicks: NDArray[np.int64]
    watch_total: NDArray[np.float64]
    steps_since_click: NDArray[np.int64]
    last_watch: NDArray[np.float64]
    last_click: NDArray[np.int64]
    shown: NDArray[np.int16]
    history: NDArray[np.float64]
    fatigue: NDArray[np.float64]

    def take(self, rows: NDArray[np.int64]) -> WorldState:
        """The sub-state of the given sessions (copies)."""
        return WorldState(**{k: v[rows].copy() for k, v in self.__dict__.items()})


@dataclass(frozen=True)
class WorldView:
    """What a policy run in the world may look at: the logged history and the candidates.

    ``world`` and ``state`` are there for oracle policies; policies meant to be compared with a
    simulator must use only the observable fields.
    """

    user_id: NDArray[np.int64]
    candidates: NDArray[np.int64]
    step: NDArray[np.int64]
    n_clicks: NDArray[np.int64]
    last_watch: NDArray[np.float64]
    world: World
    state: WorldState = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class PolicyValue:
    """True value of a policy estimated by running it in the world, with standard errors."""

    n_sessions: int
    watch_time: float
    watch_time_se: float
    clicks: float
    clicks_se: float
    length: float
    length_se: float


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class World:
    """The synthetic ground-truth world: users, items and their true response functions.

    Parameters
    ----------
    config
        World parameters; defaults when omitted.
    rng
        Generator for the world's users and items (logs use their own generator).
    """

    def __init__(self, config: WorldConfig | None = None, *, rng: np.random.Generator) -> None:
        self.config = config or WorldConfig()
        c = self.config
        items_rng, users_rng = rng.spawn(2)
        centres = items_rng.normal(size=(c.n_clusters, c.dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        item_cluster = items_rng.integers(c.n_clusters, size=c.n_items)
        v = centres[item_cluster] + 0.6 * items_rng.normal(size=(c.n_items, c.dim)) / np.sqrt(c.dim)
        self.item_embedding = v / np.linalg.norm(v, axis=1, keepdims=True)
        self.item_clickbait = (items_rng.random(c.n_items) < c.clickbait_share).astype(np.int64)
        self.item_quality = items_rng.normal(0.0, 0.5, size=c.n_items)
        self.item_duration = np.round(np.exp(items_rng.normal(5.0, 0.6, size=c.n_items)), 1)
        self.item_duration[self.item_clickbait == 1] *= 0.4
        self.item_pop = items_rng.normal(0.0, 0.7, size=c.n_items)
        self.item_ids = np.arange(c.n_items, dtype=np.int64) + 1000
        self.item_category = np.array([f"cat{k}" for k in item_cluster], dtype=object)

        user_cluster = users_rng.integers(c.n_clusters, size=c.n_users)
        u = centres[user_cluster] + 0.7 * users_rng.normal(size=(c.n_users, c.dim)) / np.sqrt(c.dim)
        scale = users_rng.uniform(0.6, 1.2, size=(c.n_users, 1))
        self.user_interest = scale * u / np.linalg.norm(u, axis=1, keepdims=True)
        self.user_segment = np.array([f"seg{k % 3}" for k in user_cluster], dtype=object)
        self.user_fatigue_rate = users_rng.uniform(0.0, 0.3, size=c.n_users)
        self.user_ids = np.arange(c.n_users, dtype=np.int64) + 1

    # ----------------------------------------------------------------- catalogue

    @property
    def items(self) -> pd.DataFrame:
        """The item catalogue as logs would ship it: ``item_id``, ``item_*`` features, ``duration``."""
        frame = pd.DataFrame({"item_id": self.item_ids})
        for k in range(self.config.dim):
            frame[f"item_f{k}"] = np.round(self.item_embedding[:, k], 4)
        frame["item_category"] = pd.Categorical(self.item_category)
        frame["item_clickbait"] = self.item_clickbait
        frame["item_quality"] = np.round(self.item_quality, 4)
        frame["duration"] = self.item_duration
        return frame

    # ------------------------------------------------------------------ dynamics

    def initial_state(self, users: NDArray[np.int64]) -> WorldState:
        """Fresh sessions for the given user indices (0-based rows of the user table)."""
        n = len(users)
        c = self.config
        return WorldState(
            user=np.asarray(users, dtype=np.int64),
            interest=self.user_interest[users].copy(),
            step=np.zeros(n, np.int64),
            n_clicks=np.zeros(n, np.int64),
            watch_total=np.zeros(n),
            steps_since_click=np.zeros(n, np.int64),
            last_watch=np.zeros(n),
            last_click=np.zeros(n, np.int64),
            shown=np.zeros((n, c.n_items), np.int16),
            history=np.zeros((n, c.dim)),
            fatigue=np.zeros(n),
        )

    def _affinity(self, state: WorldState, items: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.einsum("nd,nkd->nk", state.interest, self.item_embedding[items])

    def click_proba(self, state: WorldState, items: NDArray[np.int64]) -> NDArray[np.float64]:
        """True click probability of showing ``items`` (shape (n, K)) in ``state``."""
        items = np.asarray(items).reshape(len(state.user), -1)
        aff = self._affinity(state, items)
        repeats = np.take_along_axis(state.shown, items, axis=1)
        logit = (
            -1.6
            + 2.2 * aff
            + 1.2 * np.maximum(aff, 0.0) ** 2
            + 1.4 * self.item_clickbait[items]
            + 0.5 * self.item_quality[items]
            - 0.8 * repeats
            - 0.15 * np.log1p(state.step)[:, None]
        )
        if self.config.misspecified:
            logit = logit - 0.25 * state.fatigue[:, None]
        return _sigmoid(logit)

    def watch_mean_log(self, state: WorldState, items: NDArray[np.int64]) -> NDArray[np.float64]:
        """Mean of log watch seconds given a click, before the duration cap (shape (n, K))."""
        items = np.asarray(items).reshape(len(state.user), -1)
        aff = self._affinity(state, items)
        return (
            3.4
            + 0.9 * aff
            + 0.35 * self.item_quality[items]
            - 1.3 * self.item_clickbait[items]
            + 0.05 * np.minimum(state.n_clicks, 10)[:, None]
        )

    def continue_proba(self, state: WorldState) -> NDArray[np.float64]:
        """True probability that another impression follows, in the state after a transition."""
        logit = (
            2.1
            + 0.5 * np.log1p(state.last_watch)
            - 1.5 * state.last_click
            - 0.12 * np.minimum(state.steps_since_click, 10)
            - 0.08 * np.log1p(state.step)
        )
        if self.config.misspecified:
            logit = logit - 0.2 * state.fatigue
        return _sigmoid(logit)

    def step(
        self, state: WorldState, items: NDArray[np.int64], *, rng: np.random.Generator
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_], NDArray, NDArray]:
        """Show one item per session, sample the response and move ``state`` in place.

        Returns
        -------
        clicked, watch_time, continues, p_click, p_continue
            Arrays over sessions (the last two are the true probabilities used).
        """
        items = np.asarray(items, dtype=np.int64)
        n = len(items)
        p = self.click_proba(state, items[:, None])[:, 0]
        click = (rng.random(n) < p).astype(np.int64)
        mu = self.watch_mean_log(state, items[:, None])[:, 0]
        raw = np.exp(mu + 0.8 * rng.standard_normal(n))
        watch = np.where(click == 1, np.minimum(raw, self.item_duration[items]), 0.0)
        watch = np.round(watch, 2)

        eta = self.config.eta
        if self.config.misspecified:
            eta = 0.25
            # disengagement also moves interest: away from what was ignored
            miss = click == 0
            state.interest[miss] = state.interest[miss] - 0.03 * self.item_embedding[items[miss]]
        clicked = click == 1
        state.interest[clicked] = (1 - eta) * state.interest[clicked] + eta * self.item_embedding[
            items[clicked]
        ]
        state.history[clicked] += self.item_embedding[items[clicked]]
        rows = np.arange(n)
        state.shown[rows, items] += 1
        state.step += 1
        state.n_clicks += click
        state.watch_total += watch
        state.steps_since_click = np.where(clicked, 0, state.steps_since_click + 1)
        state.last_watch = watch
        state.last_click = click
        state.fatigue += self.user_fatigue_rate[state.user]
        p_cont = self.continue_proba(state)
        cont = rng.random(n) < p_cont
        return click, watch, cont, p, p_cont

    # ------------------------------------------------------------ logging policy

    def logging_proba(self, state: WorldState) -> NDArray[np.float64]:
        """The logging policy's probabilities over the whole catalogue (shape (n, n_items)).

        By default it scores items by what the logs record: the item's popularity and quality,
        its clickbait flag, and the items clicked earlier in the session; ``confounded=True``
        adds the latent interest.
        """
        c = self.config
        n_hist = np.maximum(state.n_clicks, 1)[:, None]
        h = state.history / n_hist
        score = (
            self.item_pop[None, :]
            + 0.6 * self.item_quality[None, :]
            + 0.5 * self.item_clickbait[None, :]
            + 1.5 * h @ self.item_embedding.T
            - 2.0 * (state.shown > 0)
        )
        if c.confounded:
            score = score + 2.5 * state.interest @ self.item_embedding.T
        score = score / c.logging_temperature
        score -= score.max(axis=1, keepdims=True)
        w = np.exp(score)
        return w / w.sum(axis=1, keepdims=True)

    # --------------------------------------------------------------------- logs

    def generate_logs(
        self, n_sessions: int, *, rng: np.random.Generator, truth: bool = False
    ) -> pd.DataFrame:
        """Run the logging policy for ``n_sessions`` sessions and return the impression log.

        Columns: ``user_id, session_id, step, timestamp, item_id, clicked, watch_time,
        propensity, user_segment`` (one row per shown item). Item features are in :attr:`items`.
        With ``truth=True`` two more columns hold the true probabilities behind each row:
        ``true_p_click`` and ``true_p_continue`` (of the state after the row).
        """
        if n_sessions < 1:
            raise ConfigError(f"n_sessions must be at least 1; got {n_sessions}.")
        c = self.config
        pick_rng, policy_rng, response_rng, time_rng = rng.spawn(4)
        n_users_used = min(c.n_users, max(1, int(round(n_sessions / c.sessions_per_user))))
        users_pool = pick_rng.choice(c.n_users, size=n_users_used, replace=False)
        users = np.sort(users_pool[pick_rng.integers(n_users_used, size=n_sessions)])
        state = self.initial_state(users)
        alive = np.arange(n_sessions)
        chunks: list[dict[str, NDArray]] = []
        for _ in range(c.max_steps):
            if len(alive) == 0:
                break
            probs = self.logging_proba(state)
            cum = probs.cumsum(axis=1)
            draw = policy_rng.random(len(alive))[:, None]
            items = np.minimum((cum < draw).sum(axis=1), c.n_items - 1)
            prop = probs[np.arange(len(alive)), items]
            step = state.step.copy()
            click, watch, cont, p_click, p_cont = self.step(state, items, rng=response_rng)
            chunks.append(
                {
                    "session": alive,
                    "step": step,
                    "item": items,
                    "clicked": click,
                    "watch": watch,
                    "propensity": prop,
                    "p_click": p_click,
                    "p_cont": p_cont,
                }
            )
            keep = np.flatnonzero(cont)
            alive = alive[keep]
            state = state.take(keep)
        data = {k: np.concatenate([ch[k] for ch in chunks]) for k in chunks[0]}
        order = np.lexsort((data["step"], data["session"]))
        data = {k: v[order] for k, v in data.items()}
        session = data["session"]

        # session start times: each user's sessions spread over 30 days, in session-id order
        starts = np.sort(time_rng.uniform(0, 30 * 86400, size=n_sessions))
        user_of_session = users
        # gaps inside a session: watch time plus a few seconds of browsing
        gap = data["watch"] + time_rng.exponential(8.0, size=len(session))
        offset = np.cumsum(gap) - gap
        first = np.r_[0, np.flatnonzero(np.diff(session)) + 1]
        offset -= np.repeat(offset[first], np.diff(np.r_[first, len(session)]))
        t0 = pd.Timestamp("2026-01-01").value // 10**9
        frame = pd.DataFrame(
            {
                "user_id": self.user_ids[user_of_session[session]],
                "session_id": session.astype(np.int64) + 1,
                "step": data["step"],
                "timestamp": np.round(t0 + starts[session] + offset, 3),
                "item_id": self.item_ids[data["item"]],
                "clicked": data["clicked"].astype(np.int8),
                "watch_time": data["watch"],
                "propensity": data["propensity"],
                "user_segment": self.user_segment[user_of_session[session]],
            }
        )
        frame["user_segment"] = frame["user_segment"].astype("category")
        if truth:
            frame["true_p_click"] = data["p_click"]
            frame["true_p_continue"] = data["p_cont"]
        return frame

    # -------------------------------------------------------------- true values

    def run_policy(
        self,
        policy: Policy,
        n_sessions: int,
        *,
        rng: np.random.Generator,
        n_candidates: int | None = None,
        users: NDArray[np.int64] | None = None,
    ) -> PolicyValue:
        """Run ``policy`` in the world and return its true mean values per session.

        Parameters
        ----------
        policy
            ``policy(view, rng) -> indices`` choosing one candidate per session.
        n_sessions
            Number of sessions to simulate.
        n_candidates
            Candidates drawn uniformly without replacement each step; ``None`` offers the whole
            catalogue.
        users
            User rows to start sessions from (default: uniform over the population).
        """
        c = self.config
        user_rng, cand_rng, policy_rng, response_rng = rng.spawn(4)
        if users is None:
            users = user_rng.integers(c.n_users, size=n_sessions)
        state = self.initial_state(np.asarray(users)[:n_sessions])
        alive = np.arange(n_sessions)
        watch = np.zeros(n_sessions)
        clicks = np.zeros(n_sessions)
        length = np.zeros(n_sessions)
        for _ in range(c.max_steps):
            if len(alive) == 0:
                break
            if n_candidates is None:
                cands = np.broadcast_to(np.arange(c.n_items), (len(alive), c.n_items))
            else:
                cands = np.argsort(cand_rng.random((len(alive), c.n_items)), axis=1)[
                    :, :n_candidates
                ]
            view = WorldView(
                user_id=self.user_ids[state.user],
                candidates=cands,
                step=state.step,
                n_clicks=state.n_clicks,
                last_watch=state.last_watch,
                world=self,
                state=state,
            )
            idx = np.asarray(policy(view, policy_rng), dtype=np.int64)
            items = cands[np.arange(len(alive)), idx]
            click, w, cont, _, _ = self.step(state, items, rng=response_rng)
            watch[alive] += w
            clicks[alive] += click
            length[alive] += 1
            keep = np.flatnonzero(cont)
            alive = alive[keep]
            state = state.take(keep)
        root_n = np.sqrt(n_sessions)
        return PolicyValue(
            n_sessions=n_sessions,
            watch_time=float(watch.mean()),
            watch_time_se=float(watch.std(ddof=1) / root_n) if n_sessions > 1 else 0.0,
            clicks=float(clicks.mean()),
            clicks_se=float(clicks.std(ddof=1) / root_n) if n_sessions > 1 else 0.0,
            length=float(length.mean()),
            length_se=float(length.std(ddof=1) / root_n) if n_sessions > 1 else 0.0,
        )

    def logging_policy(self, view: WorldView, rng: np.random.Generator) -> NDArray[np.int64]:
        """The logging policy as a :data:`Policy` over the offered candidates."""
        probs = self.logging_proba(view.state)
        sub = np.take_along_axis(probs, np.asarray(view.candidates), axis=1)
        sub /= sub.sum(axis=1, keepdims=True)
        draw = rng.random(len(sub))[:, None]
        return np.minimum((sub.cumsum(axis=1) < draw).sum(axis=1), sub.shape[1] - 1)


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """CSV.gz with a fixed gzip header time, so the same data gives the same bytes."""
    text = frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
        gz.write(text)
    path.write_bytes(buffer.getvalue())


def write_samples(
    out: str | os.PathLike[str],
    *,
    n_sessions: int,
    seed: int,
    config: WorldConfig | None = None,
) -> dict[str, Path]:
    """Generate a world and its logs and write ``logs.parquet``, ``logs.csv.gz`` and ``items.parquet``.

    The world is drawn from ``seed`` and the logs from a stream spawned from it, so the same
    arguments reproduce the same files byte for byte. Files are written to temporary names and
    renamed into place.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world_rng, logs_rng = np.random.default_rng(seed).spawn(2)
    world = World(config, rng=world_rng)
    logs = world.generate_logs(n_sessions, rng=logs_rng)
    paths = {
        "logs.parquet": out / "logs.parquet",
        "logs.csv.gz": out / "logs.csv.gz",
        "items.parquet": out / "items.parquet",
    }
    tmp = {name: path.with_name(path.name + ".partial") for name, path in paths.items()}
    try:
        logs.to_parquet(tmp["logs.parquet"], index=False)
        _write_csv_gz(logs, tmp["logs.csv.gz"])
        world.items.to_parquet(tmp["items.parquet"], index=False)
        for name, path in paths.items():
            os.replace(tmp[name], path)
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    return paths
