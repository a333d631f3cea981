"""The synthetic world: propensities, values against IPS, reproducibility, realistic sessions.

The time model (dwell, return gaps, censoring, run_days) is tested in test_synthetic_time.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simkit.errors import ConfigError
from simkit.synthetic import World, WorldConfig, write_samples


def _small_world(**kw) -> World:
    return World(WorldConfig(n_users=500, n_items=150, **kw), rng=np.random.default_rng(7))


def test_logged_propensities_equal_the_logging_policy() -> None:
    world = _small_world()
    frame = world.generate_logs(400, rng=np.random.default_rng(8))
    # replay the first step of every session: the state there is the fresh user state
    first = frame[frame["step"] == 0]
    users = first["user_id"].to_numpy() - 1
    state = world.initial_state(users)
    probs = world.logging_proba(state)
    rows = first["item_id"].to_numpy() - 1000
    np.testing.assert_allclose(first["propensity"], probs[np.arange(len(first)), rows], rtol=1e-12)


def test_propensities_follow_history_inside_a_session() -> None:
    world = _small_world()
    frame = world.generate_logs(200, rng=np.random.default_rng(9))
    sess = frame[frame["session_id"] == frame["session_id"].value_counts().idxmax()]
    state = world.initial_state(np.array([sess["user_id"].iloc[0] - 1]))
    for row in sess.itertuples():
        item = row.item_id - 1000
        p = world.logging_proba(state)[0, item]
        assert p == pytest.approx(row.propensity, rel=1e-12)
        # drive the true state with the logged response (the world's own transition)
        clicked = row.clicked == 1
        if clicked:
            state.interest[0] = 0.9 * state.interest[0] + 0.1 * world.item_embedding[item]
            state.history[0] += world.item_embedding[item]
        state.shown[0, item] += 1
        state.step += 1
        state.n_clicks += int(clicked)
        state.last_watch[:] = row.watch_time
        state.last_click[:] = int(clicked)
        state.bait_clicks += int(clicked) * world.item_clickbait[item]


def test_true_value_matches_ips_from_the_world_own_logs() -> None:
    """First-impression click rate of a target policy: run in the world vs IPS on logged step 0."""
    world = _small_world()
    quality = world.item_quality

    def target_probs(n: int) -> np.ndarray:
        w = np.exp(2.0 * quality)
        return np.broadcast_to(w / w.sum(), (n, len(quality)))

    frame = world.generate_logs(20000, rng=np.random.default_rng(10))
    first = frame[frame["step"] == 0]
    rows = first["item_id"].to_numpy() - 1000
    w = target_probs(len(first))[np.arange(len(first)), rows] / first["propensity"].to_numpy()
    terms = w * first["clicked"].to_numpy()
    ips, ips_se = terms.mean(), terms.std(ddof=1) / np.sqrt(len(terms))

    # users in the logs are drawn from a pool; the true value uses the same user distribution
    pool = first["user_id"].to_numpy() - 1
    users = pool[np.random.default_rng(11).integers(len(pool), size=50000)]
    state = world.initial_state(users)
    p_target = target_probs(len(users))
    true = float(
        (
            world.click_proba(state, np.arange(len(quality))[None, :].repeat(len(users), 0))
            * p_target
        )
        .sum(axis=1)
        .mean()
    )
    assert abs(ips - true) < 3 * ips_se, (ips, ips_se, true)


def test_seeded_generation_is_reproducible(tmp_path) -> None:
    a = write_samples(tmp_path / "a", n_sessions=300, rng=np.random.default_rng(3))
    b = write_samples(tmp_path / "b", n_sessions=300, rng=np.random.default_rng(3))
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    c = World(rng=np.random.default_rng(1)).generate_logs(200, rng=np.random.default_rng(2))
    d = World(rng=np.random.default_rng(1)).generate_logs(200, rng=np.random.default_rng(2))
    pd.testing.assert_frame_equal(c, d)


def test_sessions_have_a_realistic_spread_of_lengths(world: World) -> None:
    frame = world.generate_logs(5000, rng=np.random.default_rng(12))
    length = frame.groupby("session_id").size()
    assert length.quantile(0.25) <= 3 < 8 <= length.quantile(0.9)
    assert (length >= world.config.max_steps).mean() < 0.001
    assert 0.2 < frame["clicked"].mean() < 0.4


def test_clickbait_lures_clicks_but_loses_watch_time(world: World) -> None:
    """Myopic clicks are a trap: clickbait has the higher click rate and the lower session value."""
    bait = np.flatnonzero(world.item_clickbait == 1)
    plain = np.flatnonzero(world.item_clickbait == 0)

    def only(items):
        def policy(view, rng):
            ok = np.isin(view.candidates, items)
            return np.argmax(ok + rng.random(ok.shape) * 0.5, axis=1)

        return policy

    v_bait = world.run_policy(only(bait), 3000, rng=np.random.default_rng(13), n_candidates=50)
    v_plain = world.run_policy(only(plain), 3000, rng=np.random.default_rng(13), n_candidates=50)
    assert v_bait.clicks / v_bait.length > v_plain.clicks / v_plain.length
    assert v_bait.watch_time < 0.7 * v_plain.watch_time


def test_confounded_and_misspecified_worlds_differ_from_the_default() -> None:
    rng = np.random.default_rng(14)
    default = _small_world().generate_logs(500, rng=rng)
    conf = _small_world(confounded=True).generate_logs(500, rng=np.random.default_rng(14))
    miss = _small_world(misspecified=True).generate_logs(500, rng=np.random.default_rng(14))
    assert not default["propensity"].equals(conf["propensity"])
    assert miss.groupby("session_id").size().mean() < default.groupby("session_id").size().mean()


def test_bad_config_raises() -> None:
    with pytest.raises(ConfigError, match=r"WorldConfig.eta must be in \(0, 1\); got 1.5."):
        WorldConfig(eta=1.5)
