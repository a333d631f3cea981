"""Small problems with exact policy values, for testing the off-policy estimators.

These mirror the agents' test environments (:mod:`simkit.agents.testenvs`) (``LinearBanditEnv``, ``SlateAdditiveEnv``,
``CascadeEnv``, ``ClickbaitSessionEnv``) in the form the estimator tests need: vectorised samplers
that draw many independent logs at once (replications on a leading axis), and exact values by
enumeration or dynamic programming. They are not Gymnasium environments; contexts come from a finite
set drawn uniformly so that every expectation is a finite sum.

Policies are arrays of action probabilities: (n_contexts, n_actions) for the bandit, (n_contexts,
n_slots, n_items) for factored slate policies, (max_patience + 1, n_items) for the session problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BanditLogs",
    "BanditProblem",
    "CascadeProblem",
    "ClickbaitSessionProblem",
    "SessionLogs",
    "SlateAdditiveProblem",
    "SlateLogs",
    "epsilon_greedy",
    "sample_categorical",
    "softmax",
]


def softmax(scores: NDArray, temperature: float) -> NDArray:
    """Softmax over the last axis of ``scores / temperature``."""
    z = scores / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def epsilon_greedy(scores: NDArray, epsilon: float) -> NDArray:
    """(1 - epsilon) on the argmax of the last axis plus epsilon spread uniformly."""
    k = scores.shape[-1]
    best = np.argmax(scores, axis=-1)
    return (1 - epsilon) * np.eye(k)[best] + epsilon / k


def sample_categorical(proba: NDArray, rng: np.random.Generator) -> NDArray:
    """One draw per row of ``proba`` (..., k), by inverse CDF; returns integer indices (...)."""
    u = rng.random(proba.shape[:-1] + (1,))
    idx = (np.cumsum(proba, axis=-1) < u).sum(axis=-1)
    return np.minimum(idx, proba.shape[-1] - 1)


# ---------------------------------------------------------------------------------------------
# Single-action Bernoulli bandit.


@dataclass(frozen=True, kw_only=True)
class BanditLogs:
    """Logs of ``n_replications`` independent runs, each of n rows: arrays (n_replications, n)."""

    context: NDArray
    action: NDArray
    reward: NDArray
    propensity: NDArray


@dataclass(frozen=True, kw_only=True)
class BanditProblem:
    """Linear Bernoulli bandit: P(r = 1 | x, a) = sigmoid(theta . phi(x, a)).

    The features are phi(x, a) = [x * e_a, b_a] (context times item embedding, and the item's
    bias), a joint linear model like Pearl's, so a logistic regression on ``features`` is
    well-specified. Contexts are ``n_contexts`` points on the unit sphere drawn uniformly per row;
    the value of a policy is an exact finite sum.
    """

    contexts: NDArray  # (n_contexts, dim)
    items: NDArray  # (n_actions, dim) item embeddings e_a
    item_bias: NDArray  # (n_actions,)
    theta: NDArray  # (dim + 1,)

    @classmethod
    def make(
        cls, *, n_contexts: int = 50, n_actions: int = 10, dim: int = 5, rng: np.random.Generator
    ) -> BanditProblem:
        x = rng.standard_normal((n_contexts, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        items = rng.standard_normal((n_actions, dim))
        bias = rng.normal(-0.5, 0.5, n_actions)
        theta = np.append(rng.normal(0.0, 2.0, dim), 1.0)
        return cls(contexts=x, items=items, item_bias=bias, theta=theta)

    def features(self, context: NDArray, action: NDArray) -> NDArray:
        """phi(x, a) for integer arrays of context and action indices: shape (..., dim + 1)."""
        inter = self.contexts[context] * self.items[action]
        return np.concatenate([inter, self.item_bias[action][..., None]], axis=-1)

    @property
    def logits(self) -> NDArray:
        """(n_contexts, n_actions) true logits."""
        m, k = len(self.contexts), len(self.items)
        ctx, act = np.meshgrid(np.arange(m), np.arange(k), indexing="ij")
        return self.features(ctx, act) @ self.theta

    @property
    def expected_reward(self) -> NDArray:
        """(n_contexts, n_actions) exact click probabilities."""
        return 1.0 / (1.0 + np.exp(-self.logits))

    def value(self, policy: NDArray) -> float:
        """Exact value of a (n_contexts, n_actions) policy."""
        return float((policy * self.expected_reward).sum(axis=1).mean())

    def sample(
        self, policy: NDArray, n: int, *, rng: np.random.Generator, n_replications: int = 1
    ) -> BanditLogs:
        """Log ``n_replications`` x n rounds of ``policy``."""
        ctx = rng.integers(0, len(self.contexts), size=(n_replications, n))
        action = sample_categorical(policy[ctx], rng)
        p_click = self.expected_reward[ctx, action]
        reward = (rng.random(ctx.shape) < p_click).astype(np.float64)
        return BanditLogs(context=ctx, action=action, reward=reward, propensity=policy[ctx, action])


# ---------------------------------------------------------------------------------------------
# Slates with factored policies.


@dataclass(frozen=True, kw_only=True)
class SlateLogs:
    """Slate logs: context (R, n), slate (R, n, L), slot_reward (R, n, L)."""

    context: NDArray
    slate: NDArray
    slot_reward: NDArray

    def marginals(self, policy: NDArray) -> NDArray:
        """Per-slot probability of the logged items under a factored policy: (R, n, L)."""
        slots = np.arange(self.slate.shape[-1])
        return policy[self.context[..., None], slots, self.slate]


def _draw_slates(
    policy: NDArray, n: int, n_contexts: int, rng: np.random.Generator, n_replications: int
) -> tuple[NDArray, NDArray]:
    ctx = rng.integers(0, n_contexts, size=(n_replications, n))
    return ctx, sample_categorical(policy[ctx], rng)


@dataclass(frozen=True, kw_only=True)
class SlateAdditiveProblem:
    """L slots with their own item sets; slot k clicks with probability phi[x, k, a_k], independently.

    The slate reward R = sum_k r_k is additive, E[R | x, s] = sum_k phi[x, k, a_k], which is the
    pseudo-inverse estimator's assumption.
    """

    phi: NDArray  # (n_contexts, n_slots, n_items)

    @classmethod
    def make(
        cls, *, n_contexts: int = 20, n_slots: int = 3, n_items: int = 10, rng: np.random.Generator
    ) -> SlateAdditiveProblem:
        base = rng.normal(-1.0, 1.0, size=(n_contexts, n_slots, n_items))
        position = np.linspace(0.0, -1.0, n_slots)[None, :, None]
        return cls(phi=1.0 / (1.0 + np.exp(-(base + position))))

    def value(self, policy: NDArray) -> float:
        """Exact value of a factored policy (n_contexts, n_slots, n_items)."""
        return float((policy * self.phi).sum(axis=(1, 2)).mean())

    def sample(
        self, policy: NDArray, n: int, *, rng: np.random.Generator, n_replications: int = 1
    ) -> SlateLogs:
        ctx, slate = _draw_slates(policy, n, self.phi.shape[0], rng, n_replications)
        slots = np.arange(self.phi.shape[1])
        p = self.phi[ctx[..., None], slots, slate]
        reward = (rng.random(p.shape) < p).astype(np.float64)
        return SlateLogs(context=ctx, slate=slate, slot_reward=reward)


@dataclass(frozen=True, kw_only=True)
class CascadeProblem:
    """Cascade clicks: the user scans top-down, clicks slot k with probability c[x, k, a_k] and
    stops at the first click. A position's reward depends on the items above it (RIPS's
    assumption), so the per-slot independence of IIPS fails.
    """

    click: NDArray  # (n_contexts, n_slots, n_items)

    @classmethod
    def make(
        cls, *, n_contexts: int = 20, n_slots: int = 3, n_items: int = 10, rng: np.random.Generator
    ) -> CascadeProblem:
        return cls(click=rng.uniform(0.02, 0.6, size=(n_contexts, n_slots, n_items)))

    def value(self, policy: NDArray) -> float:
        """Exact expected clicks: 1 - prod_k (1 - E_{a ~ pi_k}[c_k(a)]), slots being independent."""
        miss = 1.0 - (policy * self.click).sum(axis=2)
        return float((1.0 - miss.prod(axis=1)).mean())

    def value_by_enumeration(self, policy: NDArray) -> float:
        """The same value summed over every slate (a check of :meth:`value`)."""
        n_ctx, n_slots, n_items = self.click.shape
        slates = np.stack(np.unravel_index(np.arange(n_items**n_slots), (n_items,) * n_slots), 1)
        slots = np.arange(n_slots)
        prob = policy[:, slots, slates].prod(axis=2)  # (n_ctx, n_slates)
        reward = 1.0 - (1.0 - self.click[:, slots, slates]).prod(axis=2)
        return float((prob * reward).sum(axis=1).mean())

    def sample(
        self, policy: NDArray, n: int, *, rng: np.random.Generator, n_replications: int = 1
    ) -> SlateLogs:
        ctx, slate = _draw_slates(policy, n, self.click.shape[0], rng, n_replications)
        slots = np.arange(self.click.shape[1])
        hit = rng.random(slate.shape) < self.click[ctx[..., None], slots, slate]
        first = hit & (np.cumsum(hit, axis=-1) == 1)
        return SlateLogs(context=ctx, slate=slate, slot_reward=first.astype(np.float64))


# ---------------------------------------------------------------------------------------------
# Sessions.


@dataclass(frozen=True, kw_only=True)
class SessionLogs:
    """Padded session logs (R, N, horizon); ``alive`` marks logged steps."""

    patience: NDArray
    action: NDArray
    reward: NDArray
    alive: NDArray

    def flat(self, replication: int) -> dict[str, NDArray]:
        """One replication's logged steps as flat arrays: session, step, patience, action, reward."""
        alive = self.alive[replication]
        session, step = np.nonzero(alive)
        return {
            "session": session,
            "step": step,
            "patience": self.patience[replication][alive],
            "action": self.action[replication][alive],
            "reward": self.reward[replication][alive],
        }


@dataclass(frozen=True, kw_only=True)
class ClickbaitSessionProblem:
    """Patience-driven sessions: clickbait vs quality items.

    Patience starts at ``start`` in 0..``max_patience``; clicking a clickbait item changes it by -2,
    a quality item by +1, a skip by -1 (clipped to the range). The session terminates at patience
    0 and is truncated after ``horizon`` steps; the reward is the click. Stationary policies are
    (max_patience + 1, n_items) arrays indexed by patience.
    """

    click: NDArray = field(
        default_factory=lambda: np.array(
            [0.75, 0.70, 0.65, 0.62, 0.60, 0.40, 0.37, 0.33, 0.30, 0.25]
        )
    )
    on_click: NDArray = field(default_factory=lambda: np.array([-2] * 5 + [1] * 5))
    on_skip: int = -1
    start: int = 5
    max_patience: int = 10
    horizon: int = 50

    def _next(self, patience: NDArray, delta: NDArray | int) -> NDArray:
        return np.clip(patience + delta, 0, self.max_patience)

    def q_values(self, policy: NDArray, gamma: float = 1.0) -> NDArray:
        """Exact Q^pi by backward induction: (horizon, max_patience + 1, n_items); 0 at patience 0."""
        n_p = self.max_patience + 1
        p = np.arange(n_p)
        after_click = self._next(p[:, None], self.on_click[None, :])
        after_skip = self._next(p, self.on_skip)[:, None]
        q = np.zeros((self.horizon, n_p, self.click.size))
        v_next = np.zeros(n_p)
        for t in range(self.horizon - 1, -1, -1):
            q[t] = self.click * (1 + gamma * v_next[after_click])
            q[t] += (1 - self.click) * gamma * v_next[after_skip]
            q[t, 0] = 0.0
            v_next = (policy * q[t]).sum(axis=1)
        return q

    def value(self, policy: NDArray, gamma: float = 1.0) -> float:
        """Exact expected discounted clicks per session from the start patience."""
        q = self.q_values(policy, gamma)
        return float((policy[self.start] * q[0, self.start]).sum())

    def sample(
        self, policy: NDArray, n_sessions: int, *, rng: np.random.Generator, n_replications: int = 1
    ) -> SessionLogs:
        """Log sessions of ``policy``; each step draws only for the sessions still running."""
        total = n_replications * n_sessions
        shape = (total, self.horizon)
        patience_log = np.zeros(shape, dtype=np.int64)
        action_log = np.zeros(shape, dtype=np.int64)
        reward = np.zeros(shape)
        alive = np.zeros(shape, dtype=bool)
        cdf = np.cumsum(policy, axis=1)
        patience = np.full(total, self.start)
        running = np.arange(total)
        for t in range(self.horizon):
            if running.size == 0:
                break
            p = patience[running]
            u = rng.random(running.size)
            action = np.minimum((cdf[p] < u[:, None]).sum(axis=1), self.click.size - 1)
            clicked = rng.random(running.size) < self.click[action]
            alive[running, t] = True
            patience_log[running, t] = p
            action_log[running, t] = action
            reward[running, t] = clicked
            patience[running] = self._next(
                p, np.where(clicked, self.on_click[action], self.on_skip)
            )
            running = running[patience[running] > 0]
        full = (n_replications, n_sessions, self.horizon)
        return SessionLogs(
            patience=patience_log.reshape(full),
            action=action_log.reshape(full),
            reward=reward.reshape(full),
            alive=alive.reshape(full),
        )
