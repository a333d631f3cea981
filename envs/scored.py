"""``ScoredSessionEnv`` (``simkit/ScoredSession-v0``): a score-vector action over candidate features.

A flat policy network cannot learn much from a ``Discrete(K)`` slot index whose candidates change
every step: it would have to learn a permutation-equivariant scorer from scratch. This adapter
gives the agent the scorer instead, as the proto-action of Dulac-Arnold et al. [1]_ and the
item-scoring action of RecSim [2]_: the agent outputs a weight vector ``w`` (a ``Box`` action, one
weight per candidate feature); the env scores every candidate by ``s_j = x_j . w`` on its
standardised features ``x_j`` and shows the argmax, or samples from ``softmax(s / tau)``, and
records the probability of what it showed (``info["propensity"]``).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simkit.envs._core import RewardFn
from simkit.envs.session import SessionEnv
from simkit.errors import ConfigError
from simkit.simulator import Simulator

__all__ = ["ScoredSessionEnv", "standardise"]

SELECTIONS = ("argmax", "softmax")
OBSERVATIONS = ("summary", "candidates")


def standardise(
    values: NDArray[np.floating], center: NDArray[np.float32], scale: NDArray[np.float32]
) -> NDArray[np.float32]:
    """``(values - center) / scale`` in float32 (the adapter's feature scaling)."""
    out = np.asarray(values, dtype=np.float32) - center
    out /= scale
    return out


class ScoredSessionEnv(gym.Env[Any, NDArray[np.float32]]):
    """A simkit session whose action is a score vector over the candidates' features.

    Each step the session env (:class:`~simkit.envs.SessionEnv`) draws ``K`` candidates; the agent
    outputs ``w`` in ``Box(-1, 1, (d_c,))``, one weight per candidate feature (names in
    :attr:`candidate_names`); candidate ``j`` gets the score ``s_j = x_j . w`` with ``x_j`` its
    standardised features, and the env shows ``argmax_j s_j`` (``selection="argmax"``, ties to the
    lowest index, propensity 1) or draws ``j`` with probability ``softmax(s / score_temperature)_j``
    (``selection="softmax"``, from its own random stream), which it reports as the propensity.

    Parameters
    ----------
    simulator
        A :class:`~simkit.simulator.Simulator` or the path of a simulator folder.
    selection
        ``"argmax"`` (default) or ``"softmax"``.
    score_temperature
        Temperature ``tau`` of the softmax selection (default 1.0; scores are in standardised
        feature units).
    observation
        ``"summary"`` (default): one flat ``Box`` that any MLP reads: the standardised user vector,
        then the mean and the maximum of each standardised candidate feature over the K
        candidates. ``"candidates"``: ``Dict(user=Box(d_u,), candidates=Box(K, d_c))``, both
        standardised, for a network that scores candidates itself.
    **kwargs
        ``n_candidates``, ``sampler``, ``temperature``, ``reward``, ``long_watch_threshold``,
        ``users``: as for :class:`~simkit.envs.SessionEnv` (one item per step).

    Notes
    -----
    **Standardisation.** Feature ``f`` is shown as ``(f - c) / s`` with ``c`` and ``s`` the mean
    and standard deviation of its values over the candidates and users of 64 sessions started at
    construction (a fixed seed, so the scaling depends only on the simulator and the settings;
    a constant feature gets ``s = 1``). :attr:`center` and :attr:`scale` hold them for candidates,
    :attr:`user_center` and :attr:`user_scale` for the user vector.

    **info** is the session env's (``item_ids``, ``p_click``, ``click``, ``watch_time``,
    ``p_continue``, ``candidate_item_ids``) plus ``candidate_index`` (the slot shown) and
    ``propensity`` (its probability under the selection rule, given the action).

    **Seeding**: ``reset(seed=s)`` seeds the session env exactly as :class:`SessionEnv` would (so
    the same seed gives the same users and candidates) and spawns the selection's stream from it.

    References
    ----------
    .. [1] Dulac-Arnold, Evans, van Hasselt et al. "Deep reinforcement learning in large discrete
       action spaces." arXiv:1512.07679, 2015.
    .. [2] Ie, Hsu, Mladenov et al. "RecSim: a configurable simulation platform for recommender
       systems." arXiv:1909.04847, 2019.

    Examples
    --------
    >>> import gymnasium as gym
    >>> import simkit.envs
    >>> env = gym.make("simkit/ScoredSession-v0", simulator="sim/")   # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                 # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())  # doctest: +SKIP
    >>> info["propensity"]                                            # doctest: +SKIP
    1.0
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        simulator: Simulator | str | os.PathLike[str],
        *,
        selection: str = "argmax",
        score_temperature: float = 1.0,
        observation: str = "summary",
        n_candidates: int = 50,
        sampler: str = "uniform",
        temperature: float = 1.0,
        reward: str | RewardFn = "watch_time",
        long_watch_threshold: float = 60.0,
        users: str = "logged",
        render_mode: str | None = None,
    ) -> None:
        problems = []
        if selection not in SELECTIONS:
            problems.append(f"selection must be one of {SELECTIONS}; got {selection!r}")
        if not (np.isfinite(score_temperature) and score_temperature > 0):
            problems.append(
                f"score_temperature must be a positive number; got {score_temperature!r}"
            )
        if observation not in OBSERVATIONS:
            problems.append(f"observation must be one of {OBSERVATIONS}; got {observation!r}")
        if problems:
            raise ConfigError("Invalid adapter settings: " + "; ".join(problems) + ".")
        self.session = SessionEnv(
            simulator,
            n_candidates=n_candidates,
            sampler=sampler,
            temperature=temperature,
            reward=reward,
            long_watch_threshold=long_watch_threshold,
            users=users,
            render_mode=render_mode,
        )
        self.simulator = self.session.simulator
        self.selection, self.score_temperature, self.observation = (
            selection,
            float(score_temperature),
            observation,
        )
        self.user_names = self.session.user_names
        self.candidate_names = self.session.candidate_names
        self.k = n_candidates
        self._fit_scaling()
        self.action_space = spaces.Box(-1.0, 1.0, (len(self.candidate_names),), np.float32)
        self.observation_space = self._observation_space()
        self.render_mode = None
        self._raw: dict[str, NDArray[np.float32]] | None = None
        self._x: NDArray[np.float32] | None = None
        self._choice_rng: np.random.Generator | None = None

    # ------------------------------------------------------------------ scaling and spaces

    def _fit_scaling(self) -> None:
        core = self.session.core
        rng = np.random.default_rng(0)
        state = core.start(64, rng)
        obs = core.observe(state, core.draw_candidates(state, rng))
        cands = obs["candidates"].reshape(-1, len(self.candidate_names)).astype(np.float64)
        user = obs["user"].astype(np.float64)

        def moments(v: NDArray[np.float64]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
            sd = v.std(axis=0)
            return v.mean(axis=0).astype(np.float32), np.where(sd > 1e-6, sd, 1.0).astype(
                np.float32
            )

        self.center, self.scale = moments(cands)
        self.user_center, self.user_scale = moments(user)
        lay = core.layout
        self._cand_low = standardise(lay.cand_low32, self.center, self.scale)
        self._cand_high = standardise(lay.cand_high32, self.center, self.scale)
        self._user_low = standardise(lay.user_low32, self.user_center, self.user_scale)
        self._user_high = standardise(lay.user_high32, self.user_center, self.user_scale)

    def _observation_space(self) -> spaces.Space:
        if self.observation == "candidates":
            return spaces.Dict(
                {
                    "user": spaces.Box(self._user_low, self._user_high, dtype=np.float32),
                    "candidates": spaces.Box(
                        np.tile(self._cand_low, (self.k, 1)),
                        np.tile(self._cand_high, (self.k, 1)),
                        dtype=np.float32,
                    ),
                }
            )
        low = np.concatenate([self._user_low, self._cand_low, self._cand_low])
        high = np.concatenate([self._user_high, self._cand_high, self._cand_high])
        return spaces.Box(low, high, dtype=np.float32)

    def _present(self, raw: dict[str, NDArray[np.float32]]) -> Any:
        user = standardise(raw["user"], self.user_center, self.user_scale)
        x = standardise(raw["candidates"], self.center, self.scale)
        self._x = x
        if self.observation == "candidates":
            return {"user": user, "candidates": x}
        return np.concatenate([user, x.mean(axis=0), x.max(axis=0)]).astype(np.float32)

    # ------------------------------------------------------------------ gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start a session (``seed`` re-seeds the session env and the selection stream)."""
        super().reset(seed=seed)
        raw, info = self.session.reset(seed=seed, options=options)
        if seed is not None or self._choice_rng is None:
            self._choice_rng = self.session.np_random.spawn(1)[0]
        return self._present(raw), info

    def choose(self, action: NDArray[np.floating]) -> tuple[int, float]:
        """The candidate slot the action selects, and its probability under the selection rule."""
        if self._x is None or self._choice_rng is None:
            raise RuntimeError("Call reset() before step().")
        w = np.asarray(action, dtype=np.float32).reshape(-1)
        if w.shape != self.action_space.shape or not np.all(np.isfinite(w)):
            raise ValueError(
                f"The action must be {len(self.candidate_names)} finite candidate-feature "
                f"weights (Box{self.action_space.shape}); got shape {np.shape(action)}."
            )
        scores = self._x.astype(np.float64) @ np.clip(w, -1.0, 1.0)
        if self.selection == "argmax":
            return int(np.argmax(scores)), 1.0
        z = scores / self.score_temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        j = int(np.searchsorted(np.cumsum(p), self._choice_rng.random() * 1.0, side="right"))
        j = min(j, len(p) - 1)
        return j, float(p[j])

    def step(self, action: NDArray[np.floating]) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Score the candidates with ``action``, show the selected one, return the session step."""
        j, propensity = self.choose(action)
        raw, reward, terminated, truncated, info = self.session.step(j)
        info["candidate_index"] = j
        info["propensity"] = propensity
        return self._present(raw), reward, terminated, truncated, info

    def step_candidate(self, j: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Show candidate slot ``j`` directly (for baselines such as random or popular)."""
        if self._x is None:
            raise RuntimeError("Call reset() before step().")
        raw, reward, terminated, truncated, info = self.session.step(int(j))
        info["candidate_index"] = int(j)
        info["propensity"] = 1.0
        return self._present(raw), reward, terminated, truncated, info

    def immediate_values(self) -> NDArray[np.float64]:
        """Expected immediate reward of each current candidate under the fitted models, (K,)."""
        if self.session.current_state is None or self.session.current_candidates is None:
            raise RuntimeError("Call reset() first.")
        from simkit.session import immediate_values

        kind = self.session.core.config.reward
        return immediate_values(
            self.simulator,
            self.session.current_state,
            self.session.current_candidates,
            reward=kind if isinstance(kind, str) else "watch_time",
            long_watch_threshold=self.session.core.config.long_watch_threshold,
        )[0]
