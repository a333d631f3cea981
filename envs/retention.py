"""``simkit/Retention-v0``: one simulated user over a horizon of days, session after session.

Inside a session the env steps like ``simkit/Session-v0`` (the same candidates, observation, action
and :func:`simkit.session.step`). When the user leaves, the simulator's return-time model samples
the gap until the next session and :func:`simkit.state.between_sessions` gives the state that
session starts from (:func:`simkit.returns.close_sessions`); the episode goes on with the next
session, and is truncated when the next session would start after the horizon (the return is then
never observed: right-censoring, not termination). This is the setting of RLUR (Cai et al. 2023):
rewards have an immediate part and a retention part, and the retention part arrives only when the
user comes back.

References
----------
.. [1] Cai, Liu, Wang, Zuo, Xie, Yang, Zheng, Jiang, Gai. "Reinforcing user retention in a billion
   scale short video recommender system." WWW 2023 Companion, arXiv:2302.01724.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from simkit.envs._core import EnvConfig, RewardFn, SessionCore, load_simulator
from simkit.errors import ConfigError
from simkit.returns import EpisodeEvents, Episodes, after_step, return_model_of
from simkit.session import StepResult, Streams
from simkit.simulator import Simulator

__all__ = ["RetentionEnv", "RetentionFigures", "RetentionRecorder", "RetentionVectorEnv"]

_STEP_KEYS = ("item_ids", "p_click", "examined", "click", "watch_time", "p_continue")


class _RetentionCore:
    """Episodes of ``n`` users (arrays over episodes): sessions, the clock and the user record."""

    def __init__(
        self,
        simulator: Simulator,
        config: EnvConfig,
        *,
        horizon_days: float,
        retention_weight: float,
        max_session_steps: int,
    ) -> None:
        problems = []
        if not (np.isfinite(horizon_days) and horizon_days > 0):
            problems.append(f"horizon_days must be a positive number; got {horizon_days!r}")
        if not (np.isfinite(retention_weight) and retention_weight >= 0):
            problems.append(f"retention_weight must be a number >= 0; got {retention_weight!r}")
        if int(max_session_steps) != max_session_steps or max_session_steps < 1:
            problems.append(
                f"max_session_steps must be a positive integer; got {max_session_steps!r}"
            )
        if problems:
            raise ConfigError("Invalid Retention-v0 settings: " + "; ".join(problems) + ".")
        self.model = return_model_of(simulator, "simkit/Retention-v0")
        self.core = SessionCore(simulator, config)
        self.sim = simulator
        self.horizon_hours = 24.0 * float(horizon_days)
        self.retention_weight = float(retention_weight)
        self.max_session_steps = int(max_session_steps)

    def rng_streams(self, rng: np.random.Generator) -> tuple[Streams, np.random.Generator]:
        """The session streams (users, candidates, click, watch, leave) and the gap stream."""
        children = rng.spawn(6)
        return Streams(*children[:5]), children[5]

    def start(self, n: int, streams: Streams) -> Episodes:
        """Episodes of ``n`` new users drawn from the configured population."""
        users = self.sim.sample_users(n, rng=streams.users, population=self.core.config.users)
        ep = Episodes.start(self.sim, self.model, users)
        context = getattr(self.core, "context", None)
        if context is not None:
            context.draw(ep.state, rng=streams.users)
        return ep

    def step(
        self,
        ep: Episodes,
        cands: NDArray[np.int64],
        slots: NDArray[np.int64],
        streams: Streams,
        gap_rng: np.random.Generator,
        active: NDArray[np.int64],
    ) -> tuple[StepResult, NDArray[np.float64], EpisodeEvents]:
        """Serve the active episodes' requests and move their time; rewards with both parts."""
        result, immediate = self.core.respond(ep.state, cands, slots, streams, active=active)
        events = after_step(
            self.sim,
            self.model,
            ep,
            result,
            active,
            rng=gap_rng,
            horizon_hours=self.horizon_hours,
            max_session_steps=self.max_session_steps,
        )
        context = getattr(self.core, "context", None)
        restarted = np.flatnonzero(events.session_end & ~events.truncated)
        if context is not None and len(restarted):
            context.draw(ep.state, restarted, rng=streams.users)
        rewards = immediate - self.retention_weight * np.nan_to_num(events.gap_hours) / 24.0
        return result, rewards, events


class RetentionEnv(gym.Env[dict[str, NDArray[np.float32]], Any]):
    """One simulated user over a horizon of days, session after session (``simkit/Retention-v0``).

    Each step is one request of the current session, exactly as in
    :class:`~simkit.envs.SessionEnv` (same observation, action, candidates and
    :func:`simkit.session.step`). When the user leaves (or the session reaches
    ``max_session_steps``), the return-time model of the simulator samples the gap until the user
    comes back, and the next session starts from the state that
    :func:`simkit.state.between_sessions` gives (the long-term interest over every click so far,
    fresh counters). The first observation after a session's last request is the next session's
    first. An episode starts with a session at hour 0 from a logged user (who continues the record
    of its training log) or a new user.

    Parameters
    ----------
    simulator
        A :class:`~simkit.simulator.Simulator` with a return-time model, or its folder path.
    horizon_days
        Length of an episode in days (default 30). The episode is *truncated* when the next session
        would start after it; it never terminates (there is no churn model: every user would come
        back some day).
    retention_weight
        Weight of the retention part of the reward (default 1.0): the session's last request
        earns ``-retention_weight * gap`` with the gap in days, the gap the user then takes.
    reward
        Immediate part, as for :class:`~simkit.envs.SessionEnv` (default ``"clicks"``: clicks and
        days of absence are on comparable scales).
    max_session_steps
        Requests after which a session ends (default 200).
    n_candidates, slate_size, sampler, temperature, long_watch_threshold, users, duplicates, position_bias
        As for :class:`~simkit.envs.SessionEnv`.
    render_mode
        Only ``None``.

    Raises
    ------
    simkit.returns.NoReturnModelError
        When the simulator has no return-time model (fitted from logs without timestamps).

    Notes
    -----
    **info** of every step: the keys of :class:`~simkit.envs.SessionEnv` (``item_ids``,
    ``p_click``, ``examined``, ``click``, ``watch_time``, ``p_continue``, ``candidate_item_ids``) and

    - ``session_index`` (int): the session of the request just served (0 for the first);
    - ``day`` (int): the day that session started on (the episode starts on day 0);
    - ``gap`` (float, days): only on the first request of every session after the first, the
      time since the previous session ended (a delayed reward: it belongs to that session's last
      request, whose reward already carries it);
    - ``session_end`` (bool): this request was the last of its session;
    - ``immediate_reward`` (float): the immediate part of the reward;
    - ``user_group`` (int, also in ``reset``'s info): 1 when the user's sessions per day over its
      record exceed the median of the logged users, else 0.

    **Seeding**: ``reset(seed=...)`` spawns one stream per stochastic part (users, candidates,
    clicks, watch, leaving, gaps); :class:`RetentionVectorEnv` with ``num_envs=1`` gives the same
    trajectory for the same seed and actions.

    Examples
    --------
    >>> import gymnasium as gym
    >>> import simkit.envs
    >>> env = gym.make("simkit/Retention-v0", simulator="sim/")      # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step(0)       # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        simulator: Simulator | str | os.PathLike[str],
        *,
        horizon_days: float = 30.0,
        retention_weight: float = 1.0,
        reward: str | RewardFn = "clicks",
        max_session_steps: int = 200,
        n_candidates: int = 50,
        slate_size: int = 1,
        sampler: str = "uniform",
        temperature: float = 1.0,
        long_watch_threshold: float = 60.0,
        users: str = "logged",
        duplicates: str = "next",
        position_bias: tuple[float, ...] | list[float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"RetentionEnv does not render; got render_mode={render_mode!r}.")
        self._vec = RetentionVectorEnv(
            simulator,
            num_envs=1,
            horizon_days=horizon_days,
            retention_weight=retention_weight,
            reward=reward,
            max_session_steps=max_session_steps,
            n_candidates=n_candidates,
            slate_size=slate_size,
            sampler=sampler,
            temperature=temperature,
            long_watch_threshold=long_watch_threshold,
            users=users,
            duplicates=duplicates,
            position_bias=position_bias,
            autoreset_mode=AutoresetMode.DISABLED,
        )
        self.simulator = self._vec.simulator
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self.user_names = self._vec.user_names
        self.candidate_names = self._vec.candidate_names
        self.render_mode = None
        self._started = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        """Start a new user; ``seed`` re-seeds every stream."""
        super().reset(seed=seed)
        if seed is not None or not self._started:
            self._vec.seed_streams(self.np_random)
        self._started = True
        obs, info = self._vec.reset(options={"reset_mask": np.ones(1, bool)})
        return _first(obs), _first_info(info)

    def step(
        self, action: Any
    ) -> tuple[dict[str, NDArray[np.float32]], float, bool, bool, dict[str, Any]]:
        """Serve one request; returns ``(obs, reward, False, truncated, info)``."""
        if not self._started:
            raise RuntimeError("Call reset() before step().")
        a = np.asarray(action)
        ok = np.issubdtype(a.dtype, np.integer) and self.action_space.contains(
            np.int64(a.reshape(())) if a.size == 1 and self._vec.core.s == 1 else a.astype(np.int64)
        )
        if not ok:
            raise ValueError(f"Action {action!r} is outside the action space {self.action_space}.")
        obs, reward, terminated, truncated, info = self._vec.step(a.reshape(1, -1))
        return (
            _first(obs),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            _first_info(info),
        )

    def immediate_values(self, obs: dict[str, NDArray]) -> NDArray[np.float64]:
        """Expected immediate reward of each candidate of ``obs`` (see ``SessionEnv``)."""
        return self._vec.core.immediate_values(obs)


class RetentionVectorEnv(VectorEnv):
    """``num_envs`` users of :class:`RetentionEnv` stepped together (one model call per step).

    Parameters
    ----------
    simulator
        A :class:`~simkit.simulator.Simulator` with a return-time model, or its folder path.
    num_envs
        Number of parallel users.
    autoreset_mode
        ``AutoresetMode.NEXT_STEP`` (default): the step after an episode ends ignores its action
        and starts a new user (reward 0, not done); ``DISABLED``: restart users with
        ``reset(options={"reset_mask": mask})``.
    **kwargs
        As for :class:`RetentionEnv`.

    Notes
    -----
    ``info`` holds the single env's keys batched over users, each with its ``_key`` mask (``gap``
    only where a session after the first begins).
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        simulator: Simulator | str | os.PathLike[str],
        *,
        num_envs: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        horizon_days: float = 30.0,
        retention_weight: float = 1.0,
        reward: str | RewardFn = "clicks",
        max_session_steps: int = 200,
        n_candidates: int = 50,
        slate_size: int = 1,
        sampler: str = "uniform",
        temperature: float = 1.0,
        long_watch_threshold: float = 60.0,
        users: str = "logged",
        duplicates: str = "next",
        position_bias: tuple[float, ...] | list[float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer; got {num_envs!r}.")
        if render_mode is not None:
            raise ValueError(f"RetentionVectorEnv does not render; got {render_mode!r}.")
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.SAME_STEP:
            raise ValueError(
                "RetentionVectorEnv supports autoreset_mode NEXT_STEP (default) or DISABLED; got "
                "SAME_STEP."
            )
        config = EnvConfig(
            n_candidates=n_candidates,
            slate_size=slate_size,
            sampler=sampler,
            temperature=temperature,
            reward=reward,
            long_watch_threshold=long_watch_threshold,
            users=users,
            duplicates=duplicates,
            position_bias=None if position_bias is None else tuple(position_bias),
        )
        self._rc = _RetentionCore(
            load_simulator(simulator),
            config,
            horizon_days=horizon_days,
            retention_weight=retention_weight,
            max_session_steps=max_session_steps,
        )
        self.core = self._rc.core
        self.simulator = self.core.sim
        self.num_envs = int(num_envs)
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.single_observation_space = self.core.observation_space()
        self.single_action_space = self.core.action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.user_names = self.core.user_names
        self.candidate_names = self.core.candidate_names
        self.render_mode = None
        self._streams: Streams | None = None
        self._gap_rng: np.random.Generator | None = None
        self._ep: Episodes | None = None
        self._cands: NDArray[np.int64] | None = None
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def seed_streams(self, rng: np.random.Generator) -> None:
        """Spawn the env's streams from ``rng`` (what ``reset(seed=...)`` does)."""
        self._streams, self._gap_rng = self._rc.rng_streams(rng)

    def reset(
        self,
        *,
        seed: int | list[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        """Start new users (all, or those in ``options["reset_mask"]``)."""
        if isinstance(seed, (list, tuple)):
            seed = int(np.random.SeedSequence([int(x) for x in seed]).generate_state(1)[0])
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        if seed is not None or self._streams is None:
            self.seed_streams(self.np_random)
        mask = None if options is None else options.get("reset_mask")
        if mask is None or self._ep is None:
            rows = np.arange(self.num_envs)
        else:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},); "
                    f"got shape {mask.shape}."
                )
            rows = np.flatnonzero(mask)
        self._begin(rows)
        assert self._ep is not None and self._cands is not None
        obs = self.core.observe(self._ep.state, self._cands)
        info = {
            "candidate_item_ids": self.core.item_ids(self._cands),
            "_candidate_item_ids": np.ones(self.num_envs, bool),
            "user_group": self._ep.group.copy(),
            "_user_group": np.ones(self.num_envs, bool),
        }
        return obs, info

    def _begin(self, rows: NDArray[np.int64]) -> None:
        """New users (drawn before their candidates) in episodes ``rows``."""
        if len(rows) == 0:
            return
        assert self._streams is not None
        fresh = self._rc.start(len(rows), self._streams)
        cands = self.core.draw_candidates(fresh.state, self._streams.candidates)
        if self._ep is None or self._cands is None or len(rows) == self.num_envs:
            self._ep, self._cands = fresh, cands
        else:
            self._ep.put(rows, fresh)
            self._cands[rows] = cands
        self._needs_reset[rows] = False

    def step(
        self, actions: Any
    ) -> tuple[
        dict[str, NDArray[np.float32]],
        NDArray[np.float64],
        NDArray[np.bool_],
        NDArray[np.bool_],
        dict[str, Any],
    ]:
        """Serve every user's request; see the class notes for autoreset and ``info``."""
        ep = self._ep
        if ep is None or self._cands is None or self._streams is None or self._gap_rng is None:
            raise RuntimeError("Call reset() before step().")
        n, s, k = self.num_envs, self.core.s, self.core.k
        a = np.asarray(actions)
        if not np.issubdtype(a.dtype, np.integer) or a.size != n * s:
            raise ValueError(
                f"actions must be integers of shape {self.action_space.shape}; got "
                f"{a.dtype} of shape {a.shape}."
            )
        a = a.astype(np.int64).reshape(n, s)
        bad = np.flatnonzero(((a < 0) | (a >= k)).any(axis=1))
        if len(bad):
            raise ValueError(
                f"actions must be candidate indices in [0, {k}); got {a[bad[:5]].tolist()} for "
                f"users {bad[:5].tolist()}."
            )
        resetting = self._needs_reset.copy()
        active = np.flatnonzero(~resetting)
        slots = a.copy()
        slots[active] = self.core.slots(a[active])
        result, reward, events = self._rc.step(
            ep, self._cands, slots, self._streams, self._gap_rng, active
        )
        truncated = events.truncated.copy()
        reward[resetting] = 0.0
        self._begin(np.flatnonzero(resetting))
        ep = self._ep
        assert ep is not None
        stepped = ~resetting
        self._cands[stepped] = self.core.draw_candidates(
            ep.state.take(np.flatnonzero(stepped)), self._streams.candidates
        )
        obs = self.core.observe(ep.state, self._cands)
        terminated = np.zeros(n, dtype=bool)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = truncated.copy()
        info = self._info(result, events, reward, stepped)
        return obs, reward, terminated, truncated, info

    def _info(
        self,
        r: StepResult,
        events: EpisodeEvents,
        reward: NDArray[np.float64],
        mask: NDArray[np.bool_],
    ) -> dict[str, Any]:
        assert self._cands is not None and self._ep is not None
        info: dict[str, Any] = {
            "candidate_item_ids": self.core.item_ids(self._cands),
            "_candidate_item_ids": np.ones(self.num_envs, dtype=bool),
        }
        values = (r.items, r.p_click, r.examined, r.click, r.watch, r.p_continue)
        for key, value in zip(_STEP_KEYS, values):
            info[key] = self.core.item_ids(value) if key == "item_ids" else value.copy()
            info[f"_{key}"] = mask.copy()
        immediate = reward + self._rc.retention_weight * np.nan_to_num(events.gap_hours) / 24.0
        time_keys = {
            "session_index": events.session_index,
            "day": events.day,
            "session_end": events.session_end,
            "immediate_reward": np.where(mask, immediate, 0.0),
            "user_group": self._ep.group.copy(),
        }
        for key, value in time_keys.items():
            info[key] = value
            info[f"_{key}"] = mask.copy()
        info["gap"] = np.nan_to_num(events.gap)
        info["_gap"] = mask & np.isfinite(events.gap)
        return info

    def immediate_values(self, obs: dict[str, NDArray]) -> NDArray[np.float64]:
        """Expected immediate reward of each candidate of ``obs`` (see ``SessionEnv``)."""
        return self.core.immediate_values(obs)


def _first(obs: dict[str, NDArray]) -> dict[str, NDArray[np.float32]]:
    return {key: value[0] for key, value in obs.items()}


def _first_info(info: dict[str, Any]) -> dict[str, Any]:
    """Row 0 of a batched info, keeping only the keys whose mask is set (no ``_`` masks)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get(f"_{key}")
        if mask is not None and not bool(mask[0]):
            continue
        v = value[0]
        if key in ("session_index", "day", "user_group"):
            v = int(v)
        elif key in ("gap", "immediate_reward", "p_continue"):
            v = float(v)
        elif key == "session_end":
            v = bool(v)
        out[key] = v
    return out


# --------------------------------------------------------------------------- evaluation


def _mean_ci(x: NDArray[np.float64]) -> tuple[float, float, float]:
    """Mean and its normal-approximation 95% interval (NaN when fewer than two values)."""
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan, math.nan, math.nan)
    half = 1.96 * float(x.std(ddof=1)) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean()) - half, float(x.mean()) + half


@dataclass(frozen=True, kw_only=True)
class RetentionFigures:
    """Retention figures of evaluated ``simkit/Retention-v0`` episodes (one user each).

    Attributes
    ----------
    sessions
        Sessions of each user over the horizon.
    return_days
        Mean gap (days) between the sessions of each user with at least one return (NaN
        otherwise): RLUR's returning time (Cai et al. 2023).
    day1
        The user started a session on day 1 (24 to 48 hours after the episode began).
    watch, clicks
        Seconds watched and clicks of each user over the horizon.
    """

    sessions: NDArray[np.int64]
    return_days: NDArray[np.float64]
    day1: NDArray[np.bool_]
    watch: NDArray[np.float64]
    clicks: NDArray[np.float64]

    def summary(self) -> dict[str, tuple[float, float, float]]:
        """``(mean, 95% low, 95% high)`` of sessions per user, return days (over users who came
        back), day-1 retention and watch and clicks per user (normal approximation)."""
        back = self.return_days[np.isfinite(self.return_days)]
        return {
            "sessions_per_user": _mean_ci(self.sessions.astype(np.float64)),
            "return_days": _mean_ci(back),
            "day1_retention": _mean_ci(self.day1.astype(np.float64)),
            "watch_per_user": _mean_ci(self.watch),
            "clicks_per_user": _mean_ci(self.clicks),
        }


class RetentionRecorder(gym.Wrapper):  # type: ignore[type-arg]
    """Records the retention figures of every completed episode of a ``simkit/Retention-v0`` env.

    Reads ``info``'s ``session_index``, ``gap`` (days), ``day`` and ``watch_time``/``click``;
    :meth:`pop_figures` gives them as :class:`RetentionFigures`.

    Examples
    --------
    >>> env = RetentionRecorder(gym.make("simkit/Retention-v0", simulator="sim/"))  # doctest: +SKIP
    """

    def __init__(self, env: gym.Env) -> None:  # type: ignore[type-arg]
        super().__init__(env)
        self._done: list[tuple[int, float, bool, float, float]] = []
        self._open()

    def _open(self) -> None:
        self._sessions, self._day1, self._watch, self._clicks = 1, False, 0.0, 0.0
        self._gaps: list[float] = []

    def reset(self, **kwargs: Any) -> Any:
        self._open()
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._sessions = max(self._sessions, int(info["session_index"]) + 1)
        if "gap" in info:
            self._gaps.append(float(info["gap"]))
        self._day1 = self._day1 or int(info["day"]) == 1
        self._watch += float(np.sum(info.get("watch_time", 0.0)))
        self._clicks += float(np.sum(info.get("click", 0.0)))
        if terminated or truncated:
            mean_gap = float(np.mean(self._gaps)) if self._gaps else math.nan
            self._done.append((self._sessions, mean_gap, self._day1, self._watch, self._clicks))
            self._open()
        return obs, reward, terminated, truncated, info

    def pop_figures(self) -> RetentionFigures:
        """The figures of the episodes completed since the last call (which are then forgotten)."""
        done, self._done = self._done, []
        cols: list[Any] = list(zip(*done)) if done else [()] * 5
        return RetentionFigures(
            sessions=np.asarray(cols[0], dtype=np.int64),
            return_days=np.asarray(cols[1], dtype=np.float64),
            day1=np.asarray(cols[2], dtype=bool),
            watch=np.asarray(cols[3], dtype=np.float64),
            clicks=np.asarray(cols[4], dtype=np.float64),
        )
