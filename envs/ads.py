"""``AdUtilityEnv``: DRL-PUT's utility tuning as a Gymnasium environment (``simkit/AdUtility-v0``).

One step is one ad request: the agent picks one of the 10 x 10 x 10 grouped utility settings
(click weights, conversion weight, reserve price), the auction of :mod:`simkit.ads_world` ranks the
request's candidate ads by utility after the reserve filter, shows the best one and pays the
campaign-type reward. Each episode is one request (``terminated=True`` after the step): DRL-PUT
optimises the immediate reward (gamma = 0).

References
----------
Deep Reinforcement Learning for Ranking Utility Tuning in the Ad Recommender System at Pinterest
(DRL-PUT), Pinterest, 2025. arXiv:2509.05292.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simkit.ads_world import N_ACTIONS, USER_FEATURES, AdsWorld, AdsWorldConfig, decode_action

__all__ = ["AD_UTILITY_ID", "AdUtilityEnv"]

AD_UTILITY_ID = "simkit/AdUtility-v0"

Obs = dict[str, NDArray[np.float32]]


class AdUtilityEnv(gym.Env[Obs, np.int64]):
    """Pick the ranking-utility setting of one ad request; receive the campaign-type reward.

    Parameters
    ----------
    world : AdsWorld or AdsWorldConfig, optional
        The ad-request world; default ``AdsWorld()`` (the synthetic world, so
        ``gymnasium.make("simkit/AdUtility-v0")`` needs no argument).
    reward : {"campaign", "revenue"}, optional
        Overrides the world config's reward (``"revenue"``: the revenue-only ablation).
    render_mode : None
        Rendering is not supported.

    Notes
    -----
    **Observation** ``Dict(user=Box(6,), candidates=Box(1000, 3))``, float32, simkit's agent
    layout. ``user`` holds the request features ``USER_FEATURES``: ``segment``, ``hour`` and
    ``country`` as integer codes (categorical), then ``hist_ctr``, ``hist_cvr`` and
    ``log_activity``. ``candidates`` row ``a`` holds the values of action ``a``:
    ``(w_click, w_conversion, reserve)`` (``w_click30`` moves with ``w_click``). Row ``a`` is the
    same in every observation.

    **Action** ``Discrete(1000)``: ``a = 100 g_click + 10 g_conversion + g_reserve``.

    **Reward**: the campaign-type reward of the shown ad (estimated revenue plus user value, from
    the true probabilities), 0 when the reserve drops every candidate.

    **info** after a step: ``ad_id`` (-1 for none), ``campaign_type``, ``p_click``,
    ``p_click30``, ``p_conversion``, ``est_revenue``, ``expected_reward`` (the exact expected
    reward of the action over this request's user and hour, from
    :meth:`~simkit.ads_world.AdsWorld.action_table`), and the sampled ``click``, ``click30``,
    ``conversion`` and ``revenue``; ``action_groups`` gives ``(g_click, g_conversion,
    g_reserve)``.

    **Seeding**: ``reset(seed=...)`` seeds ``np_random`` and spawns one stream for the requests
    and one for the sampled engagement; the same seed and actions give the same trajectory.

    Examples
    --------
    >>> env = AdUtilityEnv()
    >>> obs, info = env.reset(seed=0)
    >>> obs["user"].shape, obs["candidates"].shape
    ((6,), (1000, 3))
    >>> obs, reward, terminated, truncated, info = env.step(0)
    >>> terminated, sorted(info)[:3]
    (True, ['action_groups', 'ad_id', 'campaign_type'])
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        world: AdsWorld | AdsWorldConfig | None = None,
        *,
        reward: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"AdUtilityEnv does not render; got render_mode={render_mode!r}")
        if not isinstance(world, (AdsWorld, AdsWorldConfig, type(None))):
            raise TypeError(
                f"world must be an AdsWorld, an AdsWorldConfig or None; got {type(world).__name__}"
            )
        if isinstance(world, AdsWorld):
            if reward is not None and reward != world.config.reward:
                world = AdsWorld(world.config, reward=reward)
        else:
            overrides = {} if reward is None else {"reward": reward}
            world = AdsWorld(world, **overrides)
        self.world = world
        self.render_mode = render_mode
        feats = world.population_features
        self._features = feats.astype(np.float32)
        lo = np.minimum(feats.min(axis=0), 0.0).astype(np.float32)
        hi = np.maximum(feats.max(axis=0), 1.0).astype(np.float32)
        cand = world.action_matrix.astype(np.float32)
        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {
                "user": spaces.Box(lo, hi, (len(USER_FEATURES),), np.float32),
                "candidates": spaces.Box(
                    0.0, float(cand.max()), (N_ACTIONS, cand.shape[1]), np.float32
                ),
            }
        )
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._candidates = cand
        self._request: Any = None
        self._req_rng: np.random.Generator | None = None
        self._out_rng: np.random.Generator | None = None

    def _obs(self) -> Obs:
        user = self._features[self._request[0]]
        return {"user": user.copy(), "candidates": self._candidates.copy()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or self._req_rng is None:
            self._req_rng, self._out_rng = self.np_random.spawn(2)
        rows, cands = self.world.sample_request_arrays(1, rng=self._req_rng)
        self._request = (int(rows[0]), cands)
        user_id = rows[0] // self.world.config.n_hours
        return self._obs(), {"user_id": int(user_id)}

    def step(self, action: Any) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        if self._request is None or self._out_rng is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(np.int64(action)) or np.ndim(action) != 0:
            raise ValueError(f"action must be an integer in [0, {N_ACTIONS}); got {action!r}")
        a = int(action)
        row, cands = self._request
        cell = int(self.world.population["cell"].iat[row])
        cells = np.array([cell])
        shown = self.world.serve_arrays(cells, cands, np.array([a]))
        out = {
            k: v[0] for k, v in self.world.outcome_arrays(cells, shown, rng=self._out_rng).items()
        }
        info: dict[str, Any] = {
            "ad_id": int(out["ad_id"]),
            "campaign_type": int(out["campaign_type"]),
            "p_click": float(out["p_click"]),
            "p_click30": float(out["p_click30"]),
            "p_conversion": float(out["p_conversion"]),
            "est_revenue": float(out["est_revenue"]),
            "expected_reward": float(self.world.action_table()["reward"][cell, a]),
            "click": int(out["clicked"]),
            "click30": int(out["click30"]),
            "conversion": int(out["converted"]),
            "revenue": float(out["revenue"]),
            "action_groups": decode_action(a),
        }
        obs = self._obs()
        return obs, float(out["reward"]), True, False, info
