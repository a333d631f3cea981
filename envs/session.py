"""``SessionEnv``: one simulated user session as a Gymnasium environment (``simkit/Session-v0``)."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from simkit.envs._core import EnvConfig, RewardFn, SessionCore, load_simulator
from simkit.session import Streams
from simkit.simulator import Simulator
from simkit.state import SessionState

__all__ = ["SessionEnv"]


class SessionEnv(gym.Env[dict[str, NDArray[np.float32]], Any]):
    """A recommender session in a fitted simulator: each step the agent picks from K candidates.

    Each step the environment draws ``n_candidates`` distinct catalogue items for the user (the
    *candidates*), the agent picks one (``Discrete(K)``) or a slate of ``slate_size`` of them
    (``MultiDiscrete([K] * slate_size)``), and the simulator samples the click, the watch time,
    the state transition (:func:`simkit.state.transition`, the one fitting replays the logs with)
    and whether the user stays. The episode *terminates* when the user leaves; it is *truncated*
    only by Gymnasium's ``TimeLimit`` (``gymnasium.make`` applies ``max_episode_steps=200``).

    Parameters
    ----------
    simulator
        A :class:`~simkit.simulator.Simulator` or the path of a simulator folder (a path keeps the
        ``gymnasium.make`` kwargs serialisable).
    n_candidates
        ``K``, candidates offered per step (default 50; at most the catalogue size).
    slate_size
        Items shown per step. 1 gives ``Discrete(K)`` actions; more gives
        ``MultiDiscrete([K] * slate_size)`` and the position-biased cascade below.
    sampler
        How candidates are drawn, always ``K`` distinct items and never the unseen-item stand-in
        row: ``"uniform"`` (default) over the catalogue; ``"popularity"`` in proportion to the
        item's training impressions; ``"interest"`` from ``softmax(z . e / (temperature * s))``
        with ``z`` the user's current interest and ``s`` the spread (standard deviation) of
        ``z0 . e`` over known users and items, so that ``temperature`` is scale-free. Items are
        drawn with replacement and repeats redrawn. ``"interest"`` costs O(users x catalogue) per
        step, the other two O(users x K).
    temperature
        Softmax temperature of the ``"interest"`` sampler (default 1.0).
    reward
        ``"watch_time"`` (default; seconds watched), ``"clicks"`` (number of clicks),
        ``"long_watch"`` (number of watches longer than ``long_watch_threshold``) or a callable
        ``reward(click, watch, info) -> float`` with ``click`` the number of clicks of the step
        (int), ``watch`` the seconds watched (float) and ``info`` the step info below. Rewards are
        summed over the slate. A callable makes the spec's kwargs non-serialisable.
    long_watch_threshold
        Seconds a watch must exceed to count for ``reward="long_watch"`` (default 60).
    users
        ``"logged"`` (default): sessions start from known users; ``"new"``: interest vectors drawn
        from the simulator's Gaussian mixture for new users.
    duplicates
        A slate action that repeats a candidate index: ``"next"`` (default) resolves it
        deterministically, left to right, by replacing each repeated index with the next index
        (cyclically, modulo K) that no earlier slate position uses; so ``[3, 3, 4]`` shows
        candidates ``[3, 4, 5]``. ``"reject"`` raises ``ValueError`` instead.
    position_bias
        Examination probability of each slate position for the cascade. Default: the simulator's
        ``position_bias`` when its logs had positions, else ``1 / log2(j + 2)`` for position ``j``
        (1, 0.63, 0.5, ...). Ignored when ``slate_size == 1`` (the single item is examined).
    uncertainty_penalty
        ``c >= 0``: subtract ``c`` times the ensemble spread of the shown items' immediate value
        around the simulator's own (a pessimistic simulator; needs a simulator fitted with an
        ensemble, see :func:`simkit.uncertainty.rows_deviation`). Default 0.
    render_mode
        Only ``None`` (no rendering).

    Notes
    -----
    **Observation** ``Dict(user=Box(d_u,), candidates=Box(K, d_c))``, float32. Column names are in
    :attr:`user_names` and :attr:`candidate_names`:

    - ``user`` = ``z_0 .. z_{d-1}`` (the interest vector), then the simulator's continuation
      features in order: the encoded user / context columns, ``z_norm``, ``step``, ``n_clicks``,
      ``log_watch_total`` (log1p seconds), ``steps_since_click``, ``log_last_watch``,
      ``last_click``, ``hist_n`` (log1p of the user's training history size).
    - ``candidates`` row ``j`` describes candidate ``j`` by a subset of its click-model features:
      the item feature columns, ``emb_0 .. emb_{d-1}`` (item embedding), ``item_log_pop``
      (log1p training impressions), ``dot`` (``z . e``), ``cos`` and ``repeats`` (times shown in
      this session). Each equals the matching column of :func:`simkit.state.click_features`
      (``dot`` and ``cos`` up to float32 rounding: they are computed in float32).

    **Bounds** are finite and the observation is clipped to them: ``z`` and embeddings to
    ``+-2 m`` with ``m`` the largest absolute embedding / known-user interest entry (only drawn
    new users can reach it); ``z_norm`` to ``sqrt(d) 2 m``; ``dot`` to that times the largest item
    norm; ``cos`` to [-1, 1]; counters to [0, 1000]; log1p values to [0, 30]; user and item
    feature columns to their range in the simulator. Missing (NaN) feature values appear as -1.

    **Cascade** (``slate_size > 1``): the user looks at positions in order, examines position
    ``j`` with probability ``position_bias[j]``, clicks an examined item with its click
    probability (the click model's, at position 0) and stops at the first click. The state moves
    with the clicked item (else the first one shown), as the replay of logged slates does.

    **info** (arrays over the slate positions, length ``slate_size``):

    - ``item_ids``: catalogue ids of the items shown;
    - ``p_click``: click probability of each item if examined;
    - ``examined``: whether the user looked at each position;
    - ``click``: 0/1 per position (at most one 1: the cascade stops at the first click);
    - ``watch_time``: seconds watched per position;
    - ``p_continue``: probability that the user stays for another step (float);
    - ``spread``: with an ensemble, the members' root-mean-square deviation from the simulator's
      expected immediate reward of the shown items, summed over the slate (float);
    - ``candidate_item_ids``: ids of the K candidates in the returned observation (also the only
      key of the ``reset`` info).

    **Seeding**: ``reset(seed=...)`` seeds ``np_random`` (``super().reset``) and spawns one stream
    per stochastic part (users, candidates, clicks, watch times, leaving); the same seed and actions
    give the same trajectory, and :class:`~simkit.envs.SessionVectorEnv` with ``num_envs=1``
    reproduces it.

    Examples
    --------
    >>> import gymnasium as gym
    >>> import simkit.envs  # registers simkit/Session-v0
    >>> env = gym.make("simkit/Session-v0", simulator="sim/")       # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step(0)       # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        simulator: Simulator | str | os.PathLike[str],
        *,
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
        if render_mode is not None:
            raise ValueError(
                f"SessionEnv does not render; render_mode must be None, got {render_mode!r}."
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
            uncertainty_penalty=uncertainty_penalty,
        )
        self.core = SessionCore(load_simulator(simulator), config)
        self.simulator = self.core.sim
        self.observation_space = self.core.observation_space()
        self.action_space = self.core.action_space()
        self.user_names = self.core.user_names
        self.candidate_names = self.core.candidate_names
        self.render_mode = None
        self._streams: Streams | None = None
        self._state: SessionState | None = None
        self._cands: NDArray[np.int64] | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        """Start a new session; ``seed`` re-seeds every stream (see the class notes)."""
        super().reset(seed=seed)
        if seed is not None or self._streams is None:
            self._streams = Streams.spawn(self.np_random)
        self._state = self.core.start(1, self._streams.users)
        return self._observe()

    def _observe(self) -> tuple[dict[str, NDArray[np.float32]], dict[str, Any]]:
        assert self._state is not None and self._streams is not None
        self._cands = self.core.draw_candidates(self._state, self._streams.candidates)
        obs = self.core.observe(self._state, self._cands)
        info = {"candidate_item_ids": self.core.item_ids(self._cands[0])}
        return {"user": obs["user"][0], "candidates": obs["candidates"][0]}, info

    def step(
        self, action: Any
    ) -> tuple[dict[str, NDArray[np.float32]], float, bool, bool, dict[str, Any]]:
        """Show the chosen candidate(s); returns ``(obs, reward, terminated, False, info)``."""
        if self._state is None or self._streams is None or self._cands is None:
            raise RuntimeError("Call reset() before step().")
        if not self.action_space.contains(_as_action(action, self.core.s)):
            raise ValueError(f"Action {action!r} is outside the action space {self.action_space}.")
        slots = self.core.slots(np.asarray(action, dtype=np.int64).reshape(1, self.core.s))
        response, reward = self.core.respond(self._state, self._cands, slots, self._streams)
        info = self.core.step_info(response, 0)
        obs, obs_info = self._observe()
        info.update(obs_info)
        return obs, float(reward[0]), bool(response.terminated[0]), False, info

    @property
    def current_state(self) -> SessionState | None:
        """simkit's state of the running session (None before ``reset``); do not modify it."""
        return self._state

    @property
    def current_candidates(self) -> NDArray[np.int64] | None:
        """Catalogue rows of the current candidates, (1, K) (None before ``reset``)."""
        return self._cands

    def immediate_values(self, obs: dict[str, NDArray]) -> NDArray[np.float64]:
        """Expected immediate reward of each candidate of ``obs`` under the fitted models.

        ``p(click)`` times the fitted watch distribution's mean for the watch-time reward (the one
        definition, :func:`simkit.session.values_of_rows`): what greedy agents and DQN's warm
        start rank by. Takes one observation or a batch; returns (N, K).
        """
        return self.core.immediate_values(obs)


def _as_action(action: Any, slate_size: int) -> Any:
    """Normalise an action for ``Space.contains`` (plain ints for Discrete, int64 arrays else)."""
    a = np.asarray(action)
    if slate_size == 1:
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
            return None
        return np.int64(a.reshape(()))
    if not np.issubdtype(a.dtype, np.integer):
        return None
    return a.astype(np.int64)
