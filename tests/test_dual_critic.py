"""The RLUR dual-critic agent and its calibrated retention problem (Cai et al. 2023)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from simkit import nn
from simkit.agents.base import load_agent
from simkit.agents.dual_critic import DualCritic, DualCriticConfig, mixed_advantages, session_gae
from simkit.agents.retention_problem import (
    RetentionTestEnv,
    RetentionTestVectorEnv,
    evaluate_retention,
)
from simkit.errors import ConfigError, TrainingDivergedError

# ----------------------------------------------------------------------------- the test problem


@pytest.mark.parametrize("action", ["candidate", "weights"])
def test_env_passes_check_env_with_warnings_as_errors(action: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(RetentionTestEnv(action=action), skip_render_check=True)


def test_env_reproduces_the_calibration_table() -> None:
    env, rng = RetentionTestEnv(), np.random.default_rng(0)
    table = {0.0: (3.04, 0.40, 4.6), 0.2: (2.85, 0.43, 4.7), 0.4: (1.71, 0.72, 2.5)}
    table |= {0.5: (1.73, 0.73, 2.2), 1.0: (1.93, 0.70, 1.6)}
    for theta, (days, day1, clicks) in table.items():
        s = env.constant_policy_stats(theta, n_sessions=5_000, rng=rng)
        assert s.mean_return_days == pytest.approx(days, abs=0.1), theta
        assert s.mean_day1_retention == pytest.approx(day1, abs=0.03), theta
        assert s.mean_clicks_per_session == pytest.approx(clicks, abs=0.15), theta
    best = env.best_constant_theta(rng=rng, grid=(0.0, 0.3, 0.4, 0.45, 0.5, 0.7), n_sessions=5_000)
    assert 0.4 <= best.theta <= 0.5 and best.mean_return_days == pytest.approx(1.71, abs=0.06)


def test_stepping_the_env_agrees_with_the_vectorised_oracle() -> None:
    env = RetentionTestEnv()
    res = evaluate_retention(env, env.constant_policy(0.0), 150, rng=np.random.default_rng(1))
    oracle = env.constant_policy_stats(0.0, n_sessions=10_000, rng=np.random.default_rng(2))
    assert res.n_sessions == 150 * 8 and res.n_gaps == 150 * 7
    # 3 standard errors: the 7 gaps of a user share its group, whose mean gaps differ by ~2.8 days
    assert res.return_days == pytest.approx(oracle.mean_return_days, abs=0.45)
    assert res.clicks_per_session == pytest.approx(oracle.mean_clicks_per_session, abs=0.25)


def test_weights_action_ranks_like_the_candidate_choice() -> None:
    a, b = RetentionTestEnv(action="weights"), RetentionTestEnv()
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    for _ in range(40):
        np.testing.assert_array_equal(oa["candidates"], ob["candidates"])
        oa, ra, ta, ua, ia = a.step(np.array([0.6, 0.4], np.float32))
        ob, rb, tb, ub, ib = b.step(b.constant_policy(0.4)(ob, np.random.default_rng()))
        assert (ra, ta, ua, ia["p_sat"]) == (rb, tb, ub, ib["p_sat"])
        if ua:
            break


def test_info_protocol_gaps_days_and_censored_end() -> None:
    env = RetentionTestEnv(n_sessions=4)
    obs, info = env.reset(seed=5)
    assert info["session_index"] == 0 and info["day"] == 0
    rng, infos = np.random.default_rng(0), []
    done = terminated = False
    while not done:
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        infos.append(info)
        done = terminated or truncated
    assert not terminated and truncated and infos[-1]["session_end"]  # censored, not terminal
    sessions = np.array([i["session_index"] for i in infos])
    firsts = np.flatnonzero(np.diff(sessions)) + 1
    assert sorted(set(sessions)) == [0, 1, 2, 3]
    assert [i for i, x in enumerate(infos) if "gap" in x] == firsts.tolist()
    assert all(infos[f - 1]["session_end"] for f in firsts)
    for f in firsts:  # the day of a session is the previous day plus the revealed gap
        assert infos[f]["day"] == infos[f - 1]["day"] + infos[f]["gap"]
    del rng


def test_env_rejects_bad_settings_and_actions() -> None:
    with pytest.raises(ConfigError, match=re.escape("n_candidates must be even and >= 2; got 3")):
        RetentionTestEnv(n_candidates=3)
    env = RetentionTestEnv(action="weights")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="two finite weights >= 0"):
        env.step(np.array([-1.0, 1.0]))


def test_vector_env_at_one_user_is_the_single_env() -> None:
    single, vector = RetentionTestEnv(n_sessions=2), RetentionTestVectorEnv(1, n_sessions=2)
    o1, i1 = single.reset(seed=11)
    ov, iv = vector.reset(seed=11)
    assert i1["user_group"] == iv["user_group"][0]
    policy, rng = single.constant_policy(0.3), np.random.default_rng(0)
    n_episodes = 0
    for _ in range(200):
        np.testing.assert_array_equal(o1["candidates"], ov["candidates"][0])
        np.testing.assert_array_equal(o1["user"], ov["user"][0])
        a = policy(o1, rng)
        o1, r1, t1, u1, i1 = single.step(a)
        ov, rv, tv, uv, iv = vector.step(np.array([a]))
        assert (r1, t1, u1) == (rv[0], tv[0], uv[0])
        assert i1.get("gap", -1) == (iv["gap"][0] if iv["_gap"][0] else -1)
        assert i1["session_index"] == iv["session_index"][0] and i1["day"] == iv["day"][0]
        if u1:  # the vector env restarts the user on its next step (NEXT_STEP autoreset)
            n_episodes += 1
            o1, i1 = single.reset()
            ov, rv, tv, uv, iv = vector.step(np.array([0]))
            assert rv[0] == 0.0 and not uv[0] and not iv["_click"][0] and iv["_user_group"][0]
            assert i1["user_group"] == iv["user_group"][0]
    assert n_episodes >= 3


def test_vector_env_evaluation_agrees_with_the_oracle() -> None:
    env = RetentionTestEnv()
    for theta in (0.0, 0.45):
        res = evaluate_retention(
            RetentionTestVectorEnv(100),
            env.constant_policy(theta),
            2000,
            rng=np.random.default_rng(3),
        )
        oracle = env.constant_policy_stats(theta, n_sessions=20_000, rng=np.random.default_rng(4))
        assert res.n_sessions == 2000 * 8 and res.n_gaps == 2000 * 7
        assert res.return_days == pytest.approx(oracle.mean_return_days, abs=0.06), theta
        assert res.day1_retention == pytest.approx(oracle.mean_day1_retention, abs=0.02), theta
        assert res.clicks_per_session == pytest.approx(oracle.mean_clicks_per_session, abs=0.06)


# ----------------------------------------------------------------------------- gradients


def test_actor_loss_gradient_matches_central_differences() -> None:
    rng = np.random.default_rng(0)
    agent = DualCritic(actor_hidden=(5,), entropy_coef=0.05, soft_kappa=2.0)
    agent.build(4, 3, rng=rng)
    assert agent.actor is not None
    for p in agent.actor.parameters():  # move the zero output layer off zero
        p.value[...] = rng.normal(size=p.value.shape)
    users, cands = rng.normal(size=(6, 4)), rng.normal(size=(6, 7, 3))
    actions, adv = rng.integers(7, size=6), rng.normal(size=6)
    logp_beta = np.log(rng.uniform(0.05, 0.3, size=6))
    agent.actor_loss_and_gradients(users, cands, actions, adv, logp_beta)
    analytic = [p.grad.copy() for p in agent.actor.parameters()]
    # rho is a constant of the surrogate: freeze it at its current value, then differentiate
    logp = nn.log_softmax(agent.actor.forward(users, cands))[np.arange(6), actions]
    rho = np.exp(-2.0 * np.abs(logp - logp_beta))
    frozen = DualCritic(actor_hidden=(5,), entropy_coef=0.05, soft_kappa=0.0)
    frozen.actor = agent.actor

    def f() -> float:
        return frozen.actor_loss_and_gradients(users, cands, actions, adv * rho, logp_beta)[0]

    for p, a in zip(agent.actor.parameters(), analytic):
        assert nn.relative_error(a, nn.numerical_gradient(f, p.value)) < 1e-5


# ----------------------------------------------------------------------------- discounting


def test_retention_discount_is_one_inside_a_session_and_gamma_across() -> None:
    # two sessions of two requests; r_T = -3 on the last request of session 0; the critic is 0
    # everywhere except the start of a third session (-10), reached after session 1
    rewards = np.array([0.0, -3.0, 0.0, 0.0])
    disc = np.array([1.0, 0.9, 1.0, 0.9])
    v = np.zeros(4)
    v_next = np.array([0.0, 0.0, 0.0, -10.0])
    cont = np.array([True, True, True, False])
    adv = session_gae(rewards, v, v_next, disc, cont, np.ones(4, bool), lam=0.0)
    np.testing.assert_allclose(adv, [0.0, -3.0, 0.0, -9.0])
    full = session_gae(rewards, v, v_next, disc, cont, np.ones(4, bool), lam=1.0)
    # the gap reaches the first request undiscounted; the next session's value once discounted
    np.testing.assert_allclose(full, [-3.0 - 0.9 * 9.0, -3.0 - 0.9 * 9.0, -9.0, -9.0])


def test_unobserved_return_is_truncation_not_termination() -> None:
    v = np.array([-5.0, -6.0])
    v_next = np.array([-6.0, 0.0])
    disc, cont = np.array([1.0, 0.9]), np.array([True, False])
    censored = session_gae(np.zeros(2), v, v_next, disc, cont, np.array([True, False]), lam=0.9)
    np.testing.assert_allclose(censored, [-6.0 + 5.0, 0.0])  # bootstraps from V(s_last)
    terminal = session_gae(
        np.zeros(2), v, v_next, np.array([1.0, 0.0]), cont, np.ones(2, bool), 0.9
    )
    assert terminal[1] == pytest.approx(6.0)  # what termination would (wrongly) teach


def test_advantages_are_normalised_before_mixing() -> None:
    a_imm, a_ret = np.array([0.0, 1.0, 2.0]), np.array([-300.0, 0.0, 300.0])
    valid = np.ones(3, bool)
    mixed = mixed_advantages(a_imm, a_ret, 0.5, valid)
    np.testing.assert_allclose(mixed, [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_allclose(
        mixed_advantages(a_imm, a_ret, 0.0, valid), [-1.22474487, 0, 1.22474487]
    )


def test_retention_advantages_are_normalised_within_each_user_group() -> None:
    a_ret = np.array([-1.0, 1.0, -10.0, 10.0, 0.0])
    groups, valid = np.array([0, 0, 1, 1, 1]), np.array([True, True, True, True, False])
    per_group = mixed_advantages(np.zeros(5), a_ret, 1.0, valid, groups)
    np.testing.assert_allclose(per_group, [-1.0, 1.0, -1.0, 1.0, 0.0], atol=1e-7)
    pooled = mixed_advantages(np.zeros(5), a_ret, 1.0, valid)
    assert abs(pooled[0]) < 0.15 and abs(pooled[2]) > 1.3  # the frequent group would fade


def test_vector_env_must_autoreset_on_the_next_step() -> None:
    env = RetentionTestVectorEnv(2)
    env.metadata = {**env.metadata, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    with pytest.raises(ConfigError, match="autoreset_mode NEXT_STEP"):
        DualCritic().learn_online(env, 10, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------- plumbing


class _Recorder(gym.Wrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.infos: list[dict[str, Any]] = []

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        self.infos.append(out[4])
        return out


class _VectorRecorder(RetentionTestVectorEnv):
    infos: list[dict[str, Any]]

    def step(self, actions: Any) -> Any:
        out = super().step(actions)
        self.infos.append(out[4])
        return out


def _captured_rows(agent: DualCritic, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    real = agent._update

    def spy(buf: list[dict[str, Any]], rng: np.random.Generator, step: int) -> None:
        rows.extend({k: v.copy() for k, v in row.items()} for row in buf)
        real(buf, rng, step)

    monkeypatch.setattr(agent, "_update", spy)
    return rows


def _lane_steps(env: Any, rows: list[dict[str, Any]], lane: int) -> list[tuple[dict, dict]]:
    """(stored row, the env's info of that step) of one user, for the steps that served it."""
    if isinstance(env, _Recorder):  # the single env's reset steps serve nothing and are not stepped
        served = [{k: v[0] for k, v in row.items()} for row in rows if row["present"][0]]
        return list(zip(served, env.infos))
    out = []
    for row, info in zip(rows, env.infos):
        if row["present"][lane]:
            assert info["_click"][lane]
            keys = [k for k in info if not k.startswith("_") and info[f"_{k}"][lane]]
            out.append(({k: v[lane] for k, v in row.items()}, {k: info[k][lane] for k in keys}))
    return out


@pytest.mark.parametrize("num_envs", [0, 3])
def test_gaps_are_back_filled_onto_the_last_request_of_the_previous_session(
    monkeypatch: pytest.MonkeyPatch, num_envs: int
) -> None:
    if num_envs:
        env: Any = _VectorRecorder(num_envs, n_sessions=3)
        env.infos = []
    else:
        env = _Recorder(RetentionTestEnv(n_sessions=3))
    agent = DualCritic(batch_size=37, gamma=0.8, gamma_immediate=0.7)
    rows = _captured_rows(agent, monkeypatch)
    agent.learn_online(env, 400, rng=np.random.default_rng(0))
    assert len(rows) * max(num_envs, 1) >= 400 - 2 * 37
    n_checked = 0
    for lane in range(max(num_envs, 1)):
        steps = _lane_steps(env, rows, lane)
        for t, (row, info) in enumerate(steps):
            last_of_session, censored = info["session_end"], False
            if last_of_session and info["session_index"] == 2:
                censored = True
            if t + 1 == len(steps):
                break  # its successor is not in a stored batch
            if last_of_session and not censored:
                nxt = steps[t + 1][1]
                assert row["r_ret"] == -nxt["gap"] and row["g_ret"] == 0.8 and row["g_imm"] == 0.0
                n_checked += 1
            else:
                assert row["r_ret"] == 0.0
            if not last_of_session:
                assert row["g_ret"] == 1.0 and row["g_imm"] == 0.7 and row["valid_ret"]
                assert not row["end"]
            if censored:  # the third session's return is never observed: truncation, not end
                assert not row["valid_ret"] and row["end"] and row["g_ret"] == 1.0
    assert n_checked >= 20


def test_save_load_round_trip(tmp_path: Any) -> None:
    env = RetentionTestEnv()
    agent = DualCritic(batch_size=256)
    agent.learn_online(env, 800, rng=np.random.default_rng(0))
    agent.save(tmp_path / "a")
    again = load_agent(tmp_path / "a")
    assert isinstance(again, DualCritic) and again.config == agent.config
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(again.action_proba(obs), agent.action_proba(obs))
    for g in (0, 1):
        assert again.retention_value(obs, group=g) == agent.retention_value(obs, group=g)
    assert again.immediate_value(obs) == agent.immediate_value(obs)


class _Poison(gym.Wrapper):
    def __init__(self, env: gym.Env, at: int, key: str) -> None:
        super().__init__(env)
        self.at, self.key, self.n = at, key, 0

    def step(self, action: Any) -> Any:
        obs, r, term, trunc, info = self.env.step(action)
        self.n += 1
        if self.n > self.at:
            if self.key == "reward":
                r = float("nan")
            elif "gap" in info:
                info = {**info, "gap": float("inf")}
        return obs, r, term, trunc, info


@pytest.mark.parametrize(("key", "what"), [("reward", "reward"), ("gap", "info['gap']")])
def test_non_finite_values_stop_training_naming_step_and_quantity(key: str, what: str) -> None:
    env = _Poison(RetentionTestEnv(), 50, key)
    with pytest.raises(TrainingDivergedError, match=r"at env step \d+: " + re.escape(what)):
        DualCritic(batch_size=64).learn_online(env, 500, rng=np.random.default_rng(0))


def test_config_errors_are_collected() -> None:
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]; got 2.*batch_size must be"):
        DualCriticConfig(alpha=2.0, batch_size=0)
    with pytest.raises(ConfigError, match="Discrete"):
        DualCritic().learn_online(
            RetentionTestEnv(action="weights"), 10, rng=np.random.default_rng()
        )


# ----------------------------------------------------------------------------- acceptance

R1_STEPS = 120_000
R2_STEPS = 60_000
BEST_CONSTANT_DAYS = 1.71  # test_env_reproduces_the_calibration_table pins this figure


def _train_and_evaluate(seed: int, n_steps: int = R1_STEPS, **overrides: Any) -> Any:
    agent = DualCritic(**overrides)
    agent.learn_online(RetentionTestVectorEnv(64), n_steps, rng=np.random.default_rng(seed))
    return evaluate_retention(
        RetentionTestVectorEnv(200), agent, 2000, rng=np.random.default_rng(seed + 100)
    )


def _check_retention_wins(seed: int) -> Any:
    res = _train_and_evaluate(seed)
    print(f"R1 seed {seed}: {res}")  # shown by pytest -rA
    assert res.return_days <= 1.15 * BEST_CONSTANT_DAYS, res
    assert res.day1_retention >= 0.65, res
    return res


def _check_click_optimal_without_retention(seed: int) -> None:
    res = _train_and_evaluate(seed, R2_STEPS, alpha=0.0)
    print(f"R2 seed {seed}: {res}")
    assert res.return_days >= 2.5, res
    assert res.clicks_per_session >= 4.0, res


def _check_discounting_every_request_does_not_win(seed: int) -> None:
    r1 = _train_and_evaluate(seed)
    every = _train_and_evaluate(seed, discount_every_request=True)
    print(f"R3 seed {seed}: session-boundary {r1}, every request {every}")
    # "not better than R1 by more than noise": passing R1 runs spread over ~0.1 days (seeds 0-7)
    assert every.return_days >= r1.return_days - 0.1, (r1, every)


def test_r1_retention_wins_one_seed() -> None:
    _check_retention_wins(0)


def test_r2_retention_weight_zero_goes_click_optimal_one_seed() -> None:
    _check_click_optimal_without_retention(0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_r1_retention_wins_three_seeds(seed: int) -> None:
    _check_retention_wins(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_r2_retention_weight_zero_three_seeds(seed: int) -> None:
    _check_click_optimal_without_retention(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_r3_discounting_every_request_does_not_beat_r1(seed: int) -> None:
    _check_discounting_every_request_does_not_win(seed)


def _check_retention_critic_matches_monte_carlo(seed: int) -> None:
    env = RetentionTestEnv()
    # a fixed policy; smaller batches give the critic more backups per request (gamma-contraction).
    # TD(lambda) has the same fixed point for every lambda; 0.9 reaches it in fewer requests than
    # the default 0.5 (at 80k requests 0.5 is still 4-7% short in the low-activity group); at 40k
    # requests 0.9 was still 14% short on seed 3
    agent = DualCritic(learn_actor=False, batch_size=512, retention_lambda=0.9)
    obs, _ = env.reset(seed=0)
    agent.build(6, 2, rng=np.random.default_rng(seed))
    assert agent.actor is not None
    agent.actor.net.layers[-1].named_parameters()["bias"].value[...] = 1000.0  # ranks by theta 0.5
    agent.learn_online(RetentionTestVectorEnv(64), 80_000, rng=np.random.default_rng(seed))
    truth = env.retention_value(0.5, agent.config.gamma, rng=np.random.default_rng(seed + 7))
    start = {"candidates": obs["candidates"]}
    for group in (0, 1):
        start["user"] = np.array([group, 1, 0, 0, 0, 0], np.float32)
        v = agent.retention_value(start, group=group)
        print(f"R4 seed {seed} group {group}: critic {v:.2f}, Monte-Carlo {truth[group]:.2f}")
        assert v == pytest.approx(truth[group], rel=0.10), (group, v, truth)


def test_r4_retention_critic_matches_monte_carlo_one_seed() -> None:
    _check_retention_critic_matches_monte_carlo(0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_r4_retention_critic_matches_monte_carlo_three_seeds(seed: int) -> None:
    _check_retention_critic_matches_monte_carlo(seed)
