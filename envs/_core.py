"""Step logic shared by :class:`~simkit.envs.SessionEnv` and :class:`~simkit.envs.SessionVectorEnv`.

Everything here works on arrays over ``n`` sessions at once; the single environment is the case
``n = 1`` of the same code, so one seed gives the same trajectory in both (see
:class:`simkit.session.Streams`). The envs keep their settings, spaces and action handling here;
candidates come from :mod:`simkit.candidates`, observations from :mod:`simkit.observation`, and
every step goes through :func:`simkit.session.step`, the one step validation and the agents use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simkit.candidates import SAMPLERS, CandidateSampler
from simkit.errors import ConfigError
from simkit.observation import ObservationLayout
from simkit.session import REWARDS, StepResult, Streams, reward_of, step, values_of_rows
from simkit.simulator import Simulator
from simkit.state import SessionState

__all__ = [
    "EnvConfig",
    "SessionCore",
    "load_simulator",
]

DUPLICATES = ("next", "reject")

RewardFn = Callable[[int, float, dict], float]


def load_simulator(simulator: Simulator | str | os.PathLike[str]) -> Simulator:
    """Return ``simulator`` itself or load it from a simulator folder path."""
    if isinstance(simulator, Simulator):
        return simulator
    if isinstance(simulator, (str, os.PathLike)):
        return Simulator.load(Path(simulator))
    raise TypeError(
        "simulator must be a simkit Simulator or the path of a simulator folder; "
        f"got {type(simulator).__name__}."
    )


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    """Settings shared by the session environments (see :class:`~simkit.envs.SessionEnv`)."""

    n_candidates: int = 50
    slate_size: int = 1
    sampler: str = "uniform"
    temperature: float = 1.0
    reward: str | RewardFn = "watch_time"
    long_watch_threshold: float = 60.0
    users: str = "logged"
    duplicates: str = "next"
    position_bias: tuple[float, ...] | None = None
    uncertainty_penalty: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not (np.isfinite(self.uncertainty_penalty) and self.uncertainty_penalty >= 0):
            problems.append(
                f"uncertainty_penalty must be a number >= 0; got {self.uncertainty_penalty!r}"
            )
        if int(self.n_candidates) != self.n_candidates or self.n_candidates < 1:
            problems.append(f"n_candidates must be a positive integer; got {self.n_candidates!r}")
        if int(self.slate_size) != self.slate_size or not 1 <= self.slate_size:
            problems.append(f"slate_size must be a positive integer; got {self.slate_size!r}")
        elif self.slate_size > self.n_candidates:
            problems.append(
                f"slate_size ({self.slate_size}) must not exceed n_candidates ({self.n_candidates})"
            )
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            problems.append(f"temperature must be a positive number; got {self.temperature!r}")
        if not callable(self.reward) and self.reward not in REWARDS:
            problems.append(f"reward must be one of {REWARDS} or a callable; got {self.reward!r}")
        if not (np.isfinite(self.long_watch_threshold) and self.long_watch_threshold >= 0):
            problems.append(
                f"long_watch_threshold must be a number >= 0; got {self.long_watch_threshold!r}"
            )
        if self.users not in ("logged", "new"):
            problems.append(f"users must be 'logged' or 'new'; got {self.users!r}")
        if self.duplicates not in DUPLICATES:
            problems.append(f"duplicates must be one of {DUPLICATES}; got {self.duplicates!r}")
        if self.position_bias is not None:
            b = np.asarray(self.position_bias, dtype=np.float64)
            if b.ndim != 1 or len(b) < self.slate_size or not np.all((b >= 0) & (b <= 1)):
                problems.append(
                    f"position_bias must list at least slate_size={self.slate_size} examination "
                    f"probabilities in [0, 1]; got {self.position_bias!r}"
                )
        if problems:
            raise ConfigError("Invalid environment settings: " + "; ".join(problems) + ".")


class SessionCore:
    """Candidates, observations and steps of ``n`` sessions in a fitted simulator.

    Parameters
    ----------
    simulator
        The fitted :class:`~simkit.simulator.Simulator`.
    config
        Environment settings.

    Raises
    ------
    ConfigError
        When the settings do not fit the simulator (more candidates than items, too few shown
        items for the popularity sampler, a stored position bias shorter than the slate).
    """

    def __init__(self, simulator: Simulator, config: EnvConfig) -> None:
        self.sim = simulator
        if simulator.watch is None and config.reward in ("watch_time", "long_watch"):
            # fitted on logs without dwell time: there is no watch model, rewards are clicks
            import dataclasses

            config = dataclasses.replace(config, reward="clicks")
        self.config = config
        # per-step context (ctx_ columns): drawn from the logged contexts of comparable steps
        self.context = simulator.context
        cat = simulator.catalogue
        n_items = simulator.n_items
        k, s = config.n_candidates, config.slate_size
        self.n_items, self.dim, self.k, self.s = n_items, cat.dim, k, s
        emb = cat.embedding[:n_items]
        z_ref = simulator.users.z0[:512]
        # the spread of z . e over known users and (up to 4096 evenly spaced) items
        ref_items = emb[:: max(1, -(-n_items // 4096))] if n_items > 4096 else emb
        spread = float(np.std(z_ref @ ref_items.T)) if len(z_ref) else 0.0
        self.sampler = CandidateSampler(
            emb,
            cat.log_popularity[:n_items],
            k,
            config.sampler,
            interest_scale=config.temperature * (spread if spread > 0 else 1.0),
        )
        self.layout = ObservationLayout(simulator, k)
        self.user_names = self.layout.user_names
        self.candidate_names = self.layout.candidate_names

        # --- slates: examination probability of each position (cascade)
        if config.position_bias is not None:
            bias = np.asarray(config.position_bias, dtype=np.float64)
        elif simulator.position_bias is not None:
            bias = np.asarray(simulator.position_bias, dtype=np.float64)
            if len(bias) < s:
                raise ConfigError(
                    f"The simulator's position_bias covers {len(bias)} positions but slate_size is "
                    f"{s}; pass position_bias=[...] with {s} examination probabilities."
                )
        else:
            bias = 1.0 / np.log2(np.arange(s) + 2.0)
        self.position_bias = bias[:s].copy()
        # members' deviation from the shown items' value: info["spread"], the reward penalty
        from simkit.uncertainty import has_ensemble

        if config.uncertainty_penalty > 0 and not has_ensemble(simulator):
            raise ConfigError(
                "uncertainty_penalty needs a simulator fitted with an ensemble; this one has none. "
                "Refit with 'simkit fit LOGS --out DIR --ensemble 5'."
            )
        self.spread: NDArray[np.float64] | None = None
        self.with_spread = has_ensemble(simulator)

    # ------------------------------------------------------------------ spaces

    def observation_space(self) -> spaces.Dict:
        """``Dict(user=Box(d_u,), candidates=Box(K, d_c))``, float32 with finite bounds."""
        lay, k = self.layout, self.k
        return spaces.Dict(
            {
                "user": spaces.Box(lay.user_low32, lay.user_high32, dtype=np.float32),
                "candidates": spaces.Box(
                    np.tile(lay.cand_low32, (k, 1)),
                    np.tile(lay.cand_high32, (k, 1)),
                    dtype=np.float32,
                ),
            }
        )

    def action_space(self) -> spaces.Space:
        """``Discrete(K)``, or ``MultiDiscrete([K] * slate_size)`` for slates."""
        if self.s == 1:
            return spaces.Discrete(self.k)
        return spaces.MultiDiscrete(np.full(self.s, self.k, dtype=np.int64))

    # ------------------------------------------------------------------ users, candidates, obs

    def start(self, n: int, rng: np.random.Generator) -> SessionState:
        """Fresh sessions of ``n`` users drawn from the configured population."""
        users = self.sim.sample_users(n, rng=rng, population=self.config.users)
        state = self.sim.initial_state(users)
        if self.context is not None:
            self.context.draw(state, rng=rng)
        return state

    def set_context(
        self, state: SessionState, rows: NDArray[np.int64], values: dict[str, Any]
    ) -> None:
        """Take the next step's context of sessions ``rows`` from the caller instead of drawing it.

        ``values`` maps each ``ctx_`` column to its values (category labels or numbers, one per
        row); they are encoded as in the simulator's fit.
        """
        from simkit.state import encode_column

        cols = [self.sim.spec.user_columns[j] for j in (self.context.index if self.context else [])]
        missing = sorted(set(cols) - set(values))
        if not cols or missing:
            raise ConfigError(
                f"set_context needs a value for each context column {cols}; missing {missing}."
            )
        import pandas as pd

        enc = np.column_stack(
            [
                encode_column(pd.Series(np.atleast_1d(values[c])), self.sim.categories.get(c))[0]
                for c in cols
            ]
        )
        assert self.context is not None
        self.context.set(state, rows, np.broadcast_to(enc, (len(rows), len(cols))))

    def draw_candidates(self, state: SessionState, rng: np.random.Generator) -> NDArray[np.int64]:
        """K distinct catalogue rows per session (see :class:`simkit.candidates.CandidateSampler`)."""
        return self.sampler.draw_candidates(state, rng)

    def observe(self, state: SessionState, cands: NDArray[np.int64]) -> dict[str, NDArray]:
        """Observation of ``n`` sessions (see :class:`simkit.observation.ObservationLayout`)."""
        return self.layout.observe(state, cands)

    def immediate_values(self, obs: dict[str, NDArray]) -> NDArray[np.float64]:
        """Expected immediate reward of each observed candidate under the fitted models, (N, K).

        A function of observations (``user`` (N, d_u) or (d_u,), ``candidates`` (N, K, d_c) or
        (K, d_c)), so that a learner can score stored transitions: the model rows are rebuilt by
        :meth:`simkit.observation.ObservationLayout.click_features`. The reward is the env's (a
        callable reward falls back to ``watch_time``), minus ``uncertainty_penalty`` times the
        ensemble spread when the env has a penalty.
        """
        user = np.asarray(obs["user"])
        cands = np.asarray(obs["candidates"])
        if cands.ndim == 2:
            user, cands = user[None], cands[None]
        kind = self.config.reward if isinstance(self.config.reward, str) else "watch_time"
        x, duration = self.layout.click_features(user, cands), self.layout.durations(cands)
        threshold = self.config.long_watch_threshold
        values = values_of_rows(self.sim, x, duration, reward=kind, long_watch_threshold=threshold)
        if self.config.uncertainty_penalty > 0:  # the penalised reward's expectation
            from simkit.uncertainty import rows_deviation

            spread = rows_deviation(
                self.sim, x, duration, reward=kind, long_watch_threshold=threshold, own=values
            )
            values = values - self.config.uncertainty_penalty * spread
        return values

    # ------------------------------------------------------------------ actions and responses

    def slots(self, actions: NDArray[np.int64]) -> NDArray[np.int64]:
        """Candidate index per slate position, with repeated indices resolved (see the envs).

        ``duplicates="next"``: left to right, a repeated index is replaced by the next index
        (cyclically) that no earlier position uses. ``duplicates="reject"`` raises instead.
        """
        a = np.array(actions, dtype=np.int64).reshape(-1, self.s)
        if self.s == 1:
            return a
        used = np.zeros((a.shape[0], self.k), dtype=bool)
        rows = np.arange(a.shape[0])
        step = np.arange(1, self.k)
        for j in range(self.s):
            col = a[:, j]
            taken = np.flatnonzero(used[rows, col])
            if len(taken):
                if self.config.duplicates == "reject":
                    raise ValueError(
                        "A slate must not repeat a candidate index (duplicates='reject'); "
                        f"slate position {j} repeats an earlier index in {len(taken)} session(s) "
                        f"(sessions {taken[:5].tolist()}, index {col[taken[:5]].tolist()})."
                    )
                nxt = (col[taken, None] + step) % self.k
                free = ~used[taken[:, None], nxt]
                col[taken] = nxt[np.arange(len(taken)), free.argmax(axis=1)]
            used[rows, col] = True
        return a

    def respond(
        self,
        state: SessionState,
        cands: NDArray[np.int64],
        slots: NDArray[np.int64],
        streams: Streams,
        active: NDArray[np.int64] | None = None,
    ) -> tuple[StepResult, NDArray[np.float64]]:
        """Show the slates through :func:`simkit.session.step`; return it and the rewards.

        Only the sessions in ``active`` (all when None) draw random numbers and get a reward.
        """
        result = step(
            self.sim,
            state,
            np.take_along_axis(cands, slots, axis=1),
            streams=streams,
            position_bias=self.position_bias,
            active=active,
        )
        act = np.arange(state.n) if active is None else active
        rewards = np.zeros(state.n)
        rewards[act] = self.reward(result, act)
        if self.with_spread:
            from simkit.uncertainty import rows_deviation

            kind = self.config.reward if isinstance(self.config.reward, str) else "watch_time"
            spread = rows_deviation(
                self.sim,
                result.x_click,
                self.sim.catalogue.duration[result.items],
                reward=kind,
                long_watch_threshold=self.config.long_watch_threshold,
            )
            self.spread = spread.sum(axis=1)
            rewards[act] -= self.config.uncertainty_penalty * self.spread[act]
        if self.context is not None:  # the context of the next step of those who stay
            self.context.draw(state, act[~result.terminated[act]], rng=streams.users)
        return result, rewards

    def reward(self, r: StepResult, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """Reward of each session in ``rows`` (summed over the slate)."""
        kind = self.config.reward
        if isinstance(kind, str):
            return reward_of(
                kind,
                r.click[rows],
                r.watch[rows],
                long_watch_threshold=self.config.long_watch_threshold,
            )
        out = np.empty(len(rows))
        for j, i in enumerate(rows):
            info = self.step_info(r, i)
            out[j] = float(kind(int(r.click[i].sum()), float(r.watch[i].sum()), info))
        return out

    def item_ids(self, rows: NDArray[np.int64]) -> NDArray:
        """Catalogue item ids of catalogue rows."""
        return self.sim.catalogue.item_ids[rows]

    def step_info(self, r: StepResult, i: int) -> dict[str, Any]:
        """Documented step ``info`` of session ``i`` (arrays over the slate, fresh copies)."""
        return {
            "item_ids": self.item_ids(r.items[i]),
            "p_click": r.p_click[i].copy(),
            "examined": r.examined[i].copy(),
            "click": r.click[i].copy(),
            "watch_time": r.watch[i].copy(),
            "p_continue": float(r.p_continue[i]),
            **({"spread": float(self.spread[i])} if self.spread is not None else {}),
        }
