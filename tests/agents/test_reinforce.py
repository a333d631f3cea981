"""REINFORCE with (top-K) off-policy correction: AGENTS.md section 2.5 T1, T2, T3."""

from __future__ import annotations

import math
import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from simkit import nn
from simkit.agents import REINFORCE, DecisionLog, discounted_returns
from simkit.agents.base import blas_threads
from simkit.agents.reinforce import importance_weights, topk_multiplier
from simkit.agents.testenvs import SlateMNLEnv, StatelessItemEnv, top_k
from simkit.errors import ConfigError, LogError

CAP = math.exp(3.0)


@pytest.fixture(autouse=True)
def one_blas_thread():
    with blas_threads(1):
        yield


# --------------------------------------------------------------------------- T1: Chen et al. Fig. 3

T1_ORACLE = 14.27  # max sum_a r_a (1 - (1 - p_a)^2), AGENTS.md; exactly 14.263 (p1 = 10/19)


def train_t1(correction: str, seed: int, n_steps: int, lr: float = 0.1, batch: int = 1024):
    env = StatelessItemEnv()
    rng = np.random.default_rng(seed)
    logs = env.sample_logs(200_000, rng=rng)
    agent = REINFORCE(
        embedding_dim=0,  # full-softmax logits over the 10 one-hot items
        correction=correction,
        top_k=2,
        optimizer="sgd",
        learning_rate=lr,
        batch_size=batch,
    )
    agent.learn_from_logs(logs, rng=rng, n_steps=n_steps)
    return env, agent.action_proba(env.reset(seed=0)[0])


# 2000 SGD steps instead of the calibration's 20k: every variant has converged by then (measured
# set value 14.25-14.26 top-K, pi(a1) = 0.999 standard, L-inf 0.001-0.008 uncorrected); the
# 20k-step runs are in the slow tests below.
T1_STEPS = 2000


@pytest.mark.parametrize("seed", range(5))
def test_t1_topk_correction_reaches_the_set_optimum(seed: int) -> None:
    env, p = train_t1("topk", seed, T1_STEPS)
    assert env.set_value(p, 2) >= 0.97 * T1_ORACLE
    assert 0.4 < p[0] < 0.65 and 0.35 < p[1] < 0.6  # shares the mass between the two good items


@pytest.mark.parametrize("seed", range(5))
def test_t1_standard_correction_collapses_on_the_best_item(seed: int) -> None:
    _, p = train_t1("standard", seed, T1_STEPS)
    assert p[0] >= 0.99


@pytest.mark.parametrize("seed", range(5))
def test_t1_uncorrected_policy_follows_beta_times_reward(seed: int) -> None:
    env, p = train_t1("none", seed, T1_STEPS)
    assert np.abs(p - env.rewards / env.rewards.sum()).max() <= 0.05


def test_t1_oracle_is_exact() -> None:
    env = StatelessItemEnv()
    p = env.oracle_set_proba(2)
    np.testing.assert_allclose(p[:2], [10 / 19, 9 / 19], atol=1e-9)
    assert env.oracle_set_value(2) == pytest.approx(14.263, abs=1e-3)
    grid = np.linspace(0, 1, 2001)
    brute = max(env.set_value(np.r_[a, 1 - a, np.zeros(8)], 2) for a in grid)
    assert env.oracle_set_value(2) >= brute - 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_t1_full_calibration_run(seed: int) -> None:
    env, p = train_t1("topk", seed, 20_000)
    assert env.set_value(p, 2) >= 0.97 * T1_ORACLE
    _, p = train_t1("standard", seed, 20_000)
    assert p[0] >= 0.99
    env, p = train_t1("none", seed, 20_000)
    assert np.abs(p - env.rewards / env.rewards.sum()).max() <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_t1_large_learning_rate_stays_near_the_optimum(seed: int) -> None:
    env, p = train_t1("topk", seed, 20_000, lr=0.5, batch=512)
    assert env.set_value(p, 2) >= 0.85 * T1_ORACLE


# --------------------------------------------------------------------------- T3: unit tests


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_topk_multiplier_is_the_derivative_of_the_inclusion_probability(k: int) -> None:
    pi = np.array([1e-4, 0.1, 0.37, 0.8, 0.999])
    eps = 1e-6

    def inclusion(p):
        return 1 - (1 - p) ** k

    fd = (inclusion(pi + eps) - inclusion(pi - eps)) / (2 * eps)
    np.testing.assert_allclose(topk_multiplier(pi, k), fd, rtol=1e-6, atol=1e-9)


def test_cap_is_applied_before_the_topk_multiplier() -> None:
    pi, beta = np.array([0.2]), np.array([0.005])  # ratio 40 > cap, lambda_5 = 2.048
    w = importance_weights(pi, beta, correction="topk", cap=CAP, top_k=5)
    assert w[0] == pytest.approx(CAP * 5 * 0.8**4)
    assert w[0] > CAP  # capping after the multiplier would have given exactly CAP
    np.testing.assert_allclose(importance_weights(pi, beta, correction="standard", cap=CAP), [CAP])
    np.testing.assert_array_equal(importance_weights(pi, beta, correction="none"), [1.0])
    pis, betas = np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.1, 0.1])
    sn = importance_weights(pis, betas, correction="standard", self_normalise=True)
    np.testing.assert_allclose(sn, [0.5, 1.0, 1.5])


def test_agent_uses_capped_weights_times_lambda_at_the_logged_action() -> None:
    env = SlateMNLEnv(n_items=20)
    rng = np.random.default_rng(0)
    logs = env.sample_logs(200, rng=rng)
    agent = REINFORCE(correction="topk", top_k=5)
    agent.build(logs.user.shape[1], logs.candidates.shape[1], rng=rng)
    idx = np.arange(64)
    _, w = agent.loss_and_gradients(
        logs.user[idx], logs.candidates, logs.action[idx], logs.reward[idx], logs.propensity[idx]
    )
    pi = nn.softmax(agent.logits(logs.user[idx], logs.candidates))[idx, logs.action[idx]]
    expected = np.minimum(pi / logs.propensity[idx], CAP) * 5 * (1 - pi) ** 4
    np.testing.assert_allclose(w, expected, rtol=1e-12)


@pytest.fixture(scope="module")
def small_logs() -> tuple[SlateMNLEnv, DecisionLog]:
    env = SlateMNLEnv(n_items=30)
    return env, env.sample_logs(400, rng=np.random.default_rng(1))


@pytest.mark.parametrize("correction", ["standard", "topk"])
def test_shuffling_logged_actions_changes_the_loss(small_logs, correction: str) -> None:
    _, logs = small_logs
    agent = REINFORCE(correction=correction)
    rng = np.random.default_rng(0)
    agent.build(logs.user.shape[1], logs.candidates.shape[1], rng=rng)
    clicked = np.flatnonzero(logs.reward)
    args = (logs.user[clicked], logs.candidates)
    loss, w = agent.loss_and_gradients(
        *args, logs.action[clicked], logs.reward[clicked], logs.propensity[clicked]
    )
    shuffled = rng.permutation(logs.action[clicked])
    loss2, w2 = agent.loss_and_gradients(
        *args, shuffled, logs.reward[clicked], logs.propensity[clicked]
    )
    assert abs(loss - loss2) > 1e-3 * abs(loss)
    assert not np.allclose(w, w2)


def test_behaviour_head_sends_no_gradient_into_the_user_tower(small_logs) -> None:
    _, logs = small_logs
    agent = REINFORCE(hidden=(6,), activation="tanh", embedding_dim=4)
    agent.build(logs.user.shape[1], logs.candidates.shape[1], rng=np.random.default_rng(0))
    assert agent.user_tower is not None
    users, cands, actions = logs.user[:50], logs.candidates, logs.action[:50]
    for p in agent.user_tower.parameters():
        p.grad = np.zeros_like(p.value)

    def loss() -> float:
        return nn.softmax_cross_entropy(agent.behaviour_logits(users, cands), actions)[0]

    agent.behaviour_loss_and_gradients(users, cands, actions)
    for p in agent.behaviour_parameters():  # the head itself gets exact gradients
        assert nn.relative_error(p.grad, nn.numerical_gradient(loss, p.value)) < 1e-5
    for p in agent.user_tower.parameters():
        np.testing.assert_array_equal(p.grad, 0.0)
    # ... although the behaviour loss does depend on the user tower: the block is a stop-gradient
    w = agent.user_tower.parameters()[0].value
    assert np.abs(nn.numerical_gradient(loss, w)).max() > 1e-4


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("baseline", ["none", "batch_mean"])
def test_reinforce_loss_gradients_match_finite_differences(shared, baseline) -> None:
    rng = np.random.default_rng(3)
    n, k, du, dc = 7, 5, 3, 4
    users = rng.normal(size=(n, du))
    cands = rng.normal(size=(k, dc)) if shared else rng.normal(size=(n, k, dc))
    actions = rng.integers(k, size=n)
    returns = rng.normal(size=n) + 1.0
    beta = rng.uniform(0.05, 0.5, size=n)
    agent = REINFORCE(
        hidden=(6,),
        activation="tanh",
        embedding_dim=3,
        temperature=0.7,
        entropy_coef=0.1,
        correction="topk",
        top_k=3,
        offline_baseline=baseline,
    )
    agent.build(du, dc, rng=rng)
    for p in agent.policy_parameters():  # non-zero bias head and biases
        p.value += 0.1 * rng.normal(size=p.value.shape)
    _, weights = agent.loss_and_gradients(users, cands, actions, returns, beta)
    analytic = [p.grad.copy() for p in agent.policy_parameters()]
    assert not np.allclose(weights, weights[0])  # real importance weights, held fixed below

    def loss() -> float:
        return agent.loss_and_gradients(users, cands, actions, returns, beta, weights=weights)[0]

    for p, g in zip(agent.policy_parameters(), analytic):
        numeric = nn.numerical_gradient(loss, p.value)
        if np.abs(numeric).max() < 1e-7:  # the bias head's constant: softmax ignores it
            assert np.abs(g).max() < 1e-7
        else:
            assert nn.relative_error(g, numeric) < 1e-5


def test_estimated_propensities_need_no_logged_ones(small_logs) -> None:
    env, logs = small_logs
    bare = DecisionLog(
        user=logs.user, candidates=logs.candidates, action=logs.action, reward=logs.reward
    )
    with pytest.raises(LogError, match="needs the logged propensities"):
        REINFORCE().learn_from_logs(bare, rng=np.random.default_rng(0), n_steps=1)
    agent = REINFORCE(propensity_source="estimated", batch_size=64)
    agent.learn_from_logs(bare, rng=np.random.default_rng(0), n_steps=300)
    # the behaviour head learned the logging popularity: it ranks items like beta does
    beta = env.logging_weights("popularity")
    est = nn.softmax(agent.behaviour_logits(logs.user[:200], logs.candidates)).mean(axis=0)
    assert np.corrcoef(np.log(beta), np.log(est))[0, 1] > 0.7


# --------------------------------------------------------------------------- T2: SlateMNLEnv logs


@pytest.fixture(scope="module")
def slate_eval() -> dict:
    env = SlateMNLEnv()
    rng = np.random.default_rng(123)
    users = env.sample_users(5000, rng=rng)
    oracle = env.slate_ctr(users, env.oracle_slates(users)).mean()
    random = env.random_ctr(users, rng=rng)
    return {"env": env, "users": users, "oracle": oracle, "random": random}


def normalised_gain(agent: REINFORCE, ev: dict) -> float:
    slates = top_k(agent.logits(ev["users"], ev["env"].candidates), ev["env"].slate_size)
    ctr = ev["env"].slate_ctr(ev["users"], slates).mean()
    return (ctr - ev["random"]) / (ev["oracle"] - ev["random"])


def train_t2(ev: dict, policy: str, correction: str, seed: int) -> float:
    logs = ev["env"].sample_logs(100_000, rng=np.random.default_rng(seed), policy=policy)
    agent = REINFORCE(correction=correction, top_k=5, batch_size=512)  # Adam lr 0.02
    agent.learn_from_logs(logs, rng=np.random.default_rng(seed + 100), n_epochs=30)
    return normalised_gain(agent, ev)


def test_t2_calibration_of_the_env(slate_eval) -> None:
    assert slate_eval["oracle"] == pytest.approx(0.908, abs=0.01)
    assert slate_eval["random"] == pytest.approx(0.446, abs=0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_t2_topk_beats_uncorrected_on_skewed_logs(slate_eval, seed: int) -> None:
    topk = train_t2(slate_eval, "popularity", "topk", seed)
    none = train_t2(slate_eval, "popularity", "none", seed)
    assert topk >= 0.90
    assert topk >= none + 0.08


def test_t2_topk_on_uniform_logs(slate_eval) -> None:
    assert train_t2(slate_eval, "uniform", "topk", 0) >= 0.95


def test_t2_logged_propensities(slate_eval) -> None:
    env = slate_eval["env"]
    logs = env.sample_logs(2000, rng=np.random.default_rng(5))
    beta = env.logging_weights("popularity")
    np.testing.assert_allclose(logs.propensity, beta[logs.action])
    first = logs.position == 0
    np.testing.assert_allclose(logs.conditional_propensity[first], logs.propensity[first])
    slate = logs.action[:5]
    cond = beta[slate] / (1 - np.concatenate([[0], np.cumsum(beta[slate])[:-1]]))
    assert logs.slate_propensity[0] == pytest.approx(np.prod(cond))
    assert logs.reward.reshape(-1, 5).sum(axis=1).max() == 1  # at most one click per slate
    # per-slot click frequency agrees with the exact MNL probabilities
    users = logs.user[::5]
    p = env.click_proba(users, logs.action.reshape(-1, 5)).sum(axis=1)
    assert abs(logs.reward.sum() / 2000 - p.mean()) < 0.03


# --------------------------------------------------------------------------- acting and online


def test_act_logs_the_probability_of_what_it_showed() -> None:
    env = StatelessItemEnv()
    rng = np.random.default_rng(0)
    agent = REINFORCE(embedding_dim=0, batch_size=256)
    agent.learn_from_logs(env.sample_logs(2000, rng=rng), rng=rng, n_steps=20)
    obs, _ = env.reset(seed=0)
    proba = agent.action_proba(obs)
    a = agent.act(obs, rng=rng)
    assert agent.last_propensity == pytest.approx(proba[a])
    slate_agent = REINFORCE(embedding_dim=0, slate_size=3)
    slate_agent.build(1, 10, rng=None)
    slate = slate_agent.act(obs, rng=rng)
    assert len(set(slate.tolist())) == 3
    np.testing.assert_allclose(slate_agent.last_propensity, 0.1)
    assert slate_agent.last_slate_propensity == pytest.approx(0.1 * (0.1 / 0.9) * (0.1 / 0.8))


def test_online_reinforce_learns_the_best_item() -> None:
    env = StatelessItemEnv()
    agent = REINFORCE(embedding_dim=0, batch_size=64, learning_rate=0.05)
    returns = agent.learn_online(env, 10_000, rng=np.random.default_rng(0))
    assert returns[:500].mean() < 4.0
    assert returns[-500:].mean() > 9.5


class DelayedRewardEnv(gym.Env):
    """Two steps: candidate 0 pays 0 now and 10 at the next step; candidate 1 pays 1 and ends."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Box(0.0, 1.0, (2,), np.float32),
                "candidates": spaces.Box(0.0, 1.0, (2, 2), np.float32),
            }
        )
        self.action_space = spaces.Discrete(2)

    def _obs(self):
        return {
            "user": np.eye(2, dtype=np.float32)[self.t],
            "candidates": np.eye(2, dtype=np.float32),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if self.t == 1:
            return self._obs(), 10.0, True, False, {}
        if int(action) == 1:
            return self._obs(), 1.0, True, False, {}
        self.t = 1
        return self._obs(), 0.0, False, False, {}


def test_online_reinforce_credits_delayed_rewards() -> None:
    agent = REINFORCE(embedding_dim=2, batch_size=64, learning_rate=0.05, gamma=0.9)
    returns = agent.learn_online(DelayedRewardEnv(), 6000, rng=np.random.default_rng(0))
    assert returns[-200:].mean() > 9.0  # the myopic choice would earn 1
    with pytest.raises(ConfigError, match="Discrete"):
        agent.learn_online(SlateMNLEnv(), 10, rng=np.random.default_rng(0))


def test_discounted_returns() -> None:
    r = np.array([1.0, 0.0, 2.0, 5.0, 1.0])
    ends = np.array([False, False, True, True, False])
    np.testing.assert_allclose(discounted_returns(r, ends, 0.9), [1 + 0.81 * 2, 1.8, 2.0, 5.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"correction": "ips"},
            "correction must be one of ('none', 'standard', 'topk'); got 'ips'",
        ),
        ({"top_k": 0}, "top_k must be >= 1; got 0"),
        ({"weight_cap": 0.0}, "weight_cap must be > 0; got 0.0"),
        ({"gamma": 1.5}, "gamma must be in [0, 1]; got 1.5"),
        (
            {"embedding_dim": 0, "hidden": (4,)},
            "embedding_dim=0 needs item_bias=True and hidden=()",
        ),
    ],
)
def test_config_errors(kwargs, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        REINFORCE(**kwargs)


def test_untrained_agent_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="call learn_from_logs, learn_online or build first"):
        REINFORCE().action_proba({"user": np.ones(2), "candidates": np.eye(3)})
