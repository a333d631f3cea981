"""``SessionVectorEnv``: N simulated sessions stepped together, one model call per model per step."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from simkit.envs._core import EnvConfig, RewardFn, SessionCore, load_simulator
from simkit.session import StepResult, Streams
from simkit.simulator import Simulator

__all__ = ["SessionVectorEnv"]

_STEP_KEYS = ("item_ids", "p_click", "examined", "click", "watch_time", "p_continue")


class SessionVectorEnv(VectorEnv):
    """``num_envs`` user sessions of :class:`~simkit.envs.SessionEnv` as one native vector env.

    All sessions live in one :class:`~simkit.state.SessionState`; a step samples the candidates,
    builds the click-model rows of every shown item and calls each response model once for the
    whole batch (click, watch time for the clicked rows, continuation), then moves the state with
    :func:`simkit.state.transition`. There is no Python loop over users (except for a callable
    ``reward``, which is called once per user).

    Parameters
    ----------
    simulator
        A :class:`~simkit.simulator.Simulator` or the path of a simulator folder.
    num_envs
        Number of parallel sessions ``N``.
    max_episode_steps
        Truncate a session after this many steps (``None``: never). ``gymnasium.make_vec`` passes
        the registered 200, matching the ``TimeLimit`` of the single env.
    autoreset_mode
        ``AutoresetMode.NEXT_STEP`` (default, Gymnasium's default): the step after a session
        ends ignores its action, starts a new session and returns its first observation with
        reward 0 and ``terminated = truncated = False``. ``SAME_STEP``: the session restarts within
        the step that ended it; the final observation and info are in ``info["final_obs"]`` /
        ``info["final_info"]``. ``DISABLED``: restart sessions with
        ``reset(options={"reset_mask": mask})``.
    **kwargs
        ``n_candidates``, ``slate_size``, ``sampler``, ``temperature``, ``reward``,
        ``long_watch_threshold``, ``users``, ``duplicates``, ``position_bias``: as for
        :class:`~simkit.envs.SessionEnv`.

    Notes
    -----
    Observations are batched along a leading axis (``user`` (N, d_u), ``candidates`` (N, K, d_c)),
    with the layout and bounds of :class:`~simkit.envs.SessionEnv`. ``info`` holds the
    single env's keys batched over sessions, each with its Gymnasium ``_key`` mask:
    ``candidate_item_ids`` (N, K) for every session; the step keys ``item_ids``, ``p_click``,
    ``examined``, ``click``, ``watch_time`` (N, slate_size) and ``p_continue`` (N,) only for the
    sessions that stepped (not those restarted by the autoreset in this call).

    Threads: LightGBM predicts with :func:`simkit.models.predict_threads` (one thread below 4096
    rows); the env runs its own matrix products (``z . e`` of all items) on one BLAS thread, scoped
    to those calls, because two OpenBLAS threads competing with LightGBM's OpenMP threads on 2 cores
    were measured 2-25 times slower (``benchmarks/env.py``).

    Seeding: ``reset(seed=s)`` seeds ``np_random`` and spawns the same streams as the single env,
    each drawn for the whole batch at once (sessions in index order). With ``num_envs=1`` the
    trajectory equals :class:`~simkit.envs.SessionEnv`'s for the same seed and actions; with more
    sessions it is reproducible for the same seed and ``num_envs``. A list of seeds is combined
    into one.

    Examples
    --------
    >>> import gymnasium as gym
    >>> import simkit.envs
    >>> envs = gym.make_vec("simkit/Session-v0", num_envs=64, simulator="sim/",
    ...                     vectorization_mode="vector_entry_point")  # doctest: +SKIP
    >>> obs, info = envs.reset(seed=0)                               # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())  # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        simulator: Simulator | str | os.PathLike[str],
        *,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        n_candidates: int = 50,
        slate_size: int = 1,
        sampler: str = "uniform",
        temperature: float = 1.0,
        reward: str | RewardFn = "watch_time",
        long_watch_threshold: float = 60.0,
        users: str = "logged",
        duplicates: str = "next",
        position_bias: tuple[float, ...] | list[float] | None = None,
        uncertainty_penalty: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer; got {num_envs!r}.")
        if max_episode_steps is not None and (
            int(max_episode_steps) != max_episode_steps or max_episode_steps < 1
        ):
            raise ValueError(
                f"max_episode_steps must be a positive integer or None; got {max_episode_steps!r}."
            )
        if render_mode is not None:
            raise ValueError(f"SessionVectorEnv does not render; got render_mode={render_mode!r}.")
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
            uncertainty_penalty=uncertainty_penalty,
        )
        self.core = SessionCore(load_simulator(simulator), config)
        self.simulator = self.core.sim
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.single_observation_space = self.core.observation_space()
        self.single_action_space = self.core.action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.user_names = self.core.user_names
        self.candidate_names = self.core.candidate_names
        self.render_mode = None
        self._streams: Streams | None = None
        self._state = None
        self._cands: NDArray[np.int64] | None = None
        self._elapsed = np.zeros(self.num_envs, np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    # ------------------------------------------------------------------ reset

    def reset(
        self,
        *,
        seed: int | list[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        """Start new sessions (all, or those in ``options["reset_mask"]``)."""
        if isinstance(seed, (list, tuple)):
            seed = int(seed[0]) if len(seed) == 1 else _combine_seeds(seed)
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        if seed is not None or self._streams is None:
            self._streams = Streams.spawn(self.np_random)
        mask = None if options is None else options.get("reset_mask")
        if mask is None or self._state is None:
            self._state = self.core.start(self.num_envs, self._streams.users)
            self._elapsed[:] = 0
            self._needs_reset[:] = False
            self._cands = self.core.draw_candidates(self._state, self._streams.candidates)
        else:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},); "
                    f"got shape {mask.shape}."
                )
            self._restart(np.flatnonzero(mask))
        obs = self.core.observe(self._state, self._cands)
        ids = self.core.item_ids(self._cands)
        info = {"candidate_item_ids": ids, "_candidate_item_ids": np.ones(self.num_envs, bool)}
        return obs, info

    def _restart(self, rows: NDArray[np.int64]) -> None:
        """New users and candidates for sessions ``rows`` (users drawn before candidates)."""
        if len(rows) == 0:
            return
        assert self._streams is not None and self._state is not None and self._cands is not None
        fresh = self.core.start(len(rows), self._streams.users)
        self._state.put(rows, fresh)
        self._elapsed[rows] = 0
        self._needs_reset[rows] = False
        self._cands[rows] = self.core.draw_candidates(fresh, self._streams.candidates)

    # ------------------------------------------------------------------ step

    def step(
        self, actions: Any
    ) -> tuple[
        dict[str, NDArray[np.float32]],
        NDArray[np.float64],
        NDArray[np.bool_],
        NDArray[np.bool_],
        dict[str, Any],
    ]:
        """Step every session; see the class notes for autoreset and ``info``."""
        if self._state is None or self._streams is None or self._cands is None:
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
                f"sessions {bad[:5].tolist()}."
            )
        resetting = self._needs_reset.copy()
        reset_rows = np.flatnonzero(resetting)
        active = np.flatnonzero(~resetting)
        fresh = self.core.start(len(reset_rows), self._streams.users) if len(reset_rows) else None
        slots = a.copy()
        slots[active] = self.core.slots(a[active])
        response, reward = self.core.respond(
            self._state, self._cands, slots, self._streams, active=active
        )
        if fresh is not None:
            self._state.put(reset_rows, fresh)
            self._elapsed[reset_rows] = 0
        self._elapsed[active] += 1
        terminated = response.terminated.copy()
        truncated = np.zeros(n, dtype=bool)
        if self.max_episode_steps is not None:
            truncated[active] = self._elapsed[active] >= self.max_episode_steps
        self._cands = self.core.draw_candidates(self._state, self._streams.candidates)
        obs = self.core.observe(self._state, self._cands)
        info = self._step_info(response, ~resetting)
        done = terminated | truncated
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = done
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            rows = np.flatnonzero(done)
            final_obs = np.full(n, None, dtype=object)
            for i in rows:
                final_obs[i] = {key: value[i].copy() for key, value in obs.items()}
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
            info["final_info"], info["_final_info"] = self._step_info(response, done), done.copy()
            self._restart(rows)
            fresh_obs = self.core.observe(self._state.take(rows), self._cands[rows])
            for key in obs:
                obs[key][rows] = fresh_obs[key]
            info["candidate_item_ids"][rows] = self.core.item_ids(self._cands[rows])
        return obs, reward, terminated, truncated, info

    def immediate_values(self, obs: dict[str, NDArray]) -> NDArray[np.float64]:
        """Expected immediate reward of each candidate of ``obs`` under the fitted models.

        ``p(click)`` times the fitted watch distribution's mean for the watch-time reward (the one
        definition, :func:`simkit.session.values_of_rows`): what greedy agents and DQN's warm
        start rank by. Takes one observation or a batch; returns (N, K).
        """
        return self.core.immediate_values(obs)

    def _step_info(self, r: StepResult, mask: NDArray[np.bool_]) -> dict[str, Any]:
        """Batched step info; ``mask`` marks the sessions whose entries are meaningful."""
        assert self._cands is not None
        info: dict[str, Any] = {
            "candidate_item_ids": self.core.item_ids(self._cands),
            "_candidate_item_ids": np.ones(self.num_envs, dtype=bool),
        }
        values = (r.items, r.p_click, r.examined, r.click, r.watch, r.p_continue)
        for key, value in zip(_STEP_KEYS, values):
            info[key] = self.core.item_ids(value) if key == "item_ids" else value.copy()
            info[f"_{key}"] = mask.copy()
        if self.core.spread is not None:
            info["spread"], info["_spread"] = self.core.spread.copy(), mask.copy()
        return info


def _combine_seeds(seeds: list[int] | tuple[int, ...]) -> int:
    """One integer seed from several (sessions share batched streams, not one stream each)."""
    return int(np.random.SeedSequence([int(x) for x in seeds]).generate_state(1, np.uint64)[0] >> 1)
