"""The synthetic world's time: sessions last their dwell, returns follow the exposed law, censoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from simkit.synthetic import ReturnGap, World, WorldConfig


@pytest.fixture(scope="module")
def small() -> tuple[World, pd.DataFrame]:
    world = World(WorldConfig(n_users=800, n_items=150), rng=np.random.default_rng(21))
    return world, world.generate_logs(2500, rng=np.random.default_rng(22), truth=True)


def _sessions(frame: pd.DataFrame) -> pd.DataFrame:
    s = frame.groupby("session_id").agg(
        user=("user_id", "first"),
        t0=("timestamp", "min"),
        t_last=("timestamp", "max"),
        gap=("true_gap_hours", "first"),
        censored=("censored", "first"),
    )
    last = frame.groupby("session_id").tail(1).set_index("session_id")
    open_s = np.where(last["clicked"] == 1, last["watch_time"] + 1.0, 0.0)
    s["end"] = s["t_last"] + open_s  # the last row's skip time is not in the log
    s["next"] = s.groupby("user")["t0"].shift(-1)
    return s


def test_sessions_are_ordered_in_time_and_never_overlap(small) -> None:
    _, frame = small
    s = _sessions(frame)
    # ids follow time within a user; rows follow steps within a session
    assert (s.groupby("user")["t0"].diff().dropna() > 0).all()
    assert (frame.groupby("session_id")["timestamp"].diff().dropna() > 0).all()
    gap = (s["next"] - s["end"]).dropna()
    assert (gap > 0).all()
    # realistic: sessions take minutes, returns take hours to days (today: ~120 s, 41% overlap)
    assert 30 < (s["t_last"] - s["t0"]).median() < 600
    assert 10 * 3600 < gap.median() < 5 * 86400


def test_the_logged_gap_is_the_true_gap_and_the_last_session_is_censored(small) -> None:
    world, frame = small
    s = _sessions(frame)
    seen = s.dropna(subset=["next"])
    # the next start is the end of the session plus the true gap (up to the unlogged last skip)
    delta = seen["next"] - seen["end"] - 3600 * seen["gap"]
    assert (delta >= -1e-3).all() and (delta < 60).all()
    assert not seen["censored"].any()
    last = s[s["next"].isna()]
    assert last["censored"].all()
    window_end = pd.Timestamp("2026-01-01").value / 1e9 + world.config.log_days * 86400
    assert (last["end"] + 3600 * last["gap"] >= window_end - 60).all()
    assert (s["t0"] < window_end).all()


def test_logged_gaps_follow_the_exposed_law() -> None:
    """Probability integral transform: F(gap | end-of-session state) is uniform."""
    world = World(WorldConfig(n_users=400, n_items=100), rng=np.random.default_rng(3))
    state = world.initial_state(np.arange(400))
    rng = np.random.default_rng(4)
    for _ in range(3):
        world.step(state, rng.integers(100, size=400), rng=rng)
    from simkit.synthetic import SessionEnd

    end = SessionEnd.empty(400, world.dim)
    end.put(np.arange(400), state, np.arange(400))
    law = world.return_gap(end)
    u = law.cdf(law.sample(rng=np.random.default_rng(5)))
    assert stats.kstest(u, "uniform").pvalue > 0.01
    # satisfaction: more watch -> shorter gap, clickbait clicks -> longer
    more_watch = SessionEnd(**{**end.__dict__, "watch_total": end.watch_total + 600})
    assert (world.return_gap(more_watch).mean_hours() < law.mean_hours()).all()
    bait = SessionEnd(**{**end.__dict__, "bait_clicks": end.n_clicks})
    clicked = end.n_clicks > end.bait_clicks
    assert (world.return_gap(bait).mean_hours()[clicked] > law.mean_hours()[clicked]).all()


def test_return_gap_law_formulas() -> None:
    gap = ReturnGap(scale_hours=np.array([10.0, 40.0]), shape=0.8)
    q = gap.quantile(0.3)
    np.testing.assert_allclose(gap.cdf(q), 0.3)
    draws = ReturnGap(scale_hours=np.full(200_000, 10.0), shape=0.8).sample(
        rng=np.random.default_rng(0)
    )
    assert draws.mean() == pytest.approx(gap.mean_hours()[0], rel=0.02)


def test_default_logs_keep_today_figures(world: World) -> None:
    """Rows, users, click rate and session length stay near the old generator's (issue 23)."""
    frame = world.generate_logs(15000, rng=np.random.default_rng(0))
    n_sessions = frame["session_id"].nunique()
    assert 13500 < n_sessions < 16500  # return process: about, not exactly, 15,000
    assert frame["user_id"].nunique() == 3000
    assert 0.29 < frame["clicked"].mean() < 0.34  # old: 0.317
    length = frame.groupby("session_id").size()
    assert length.quantile([0.25, 0.5, 0.9]).tolist() == [3, 5, 15]  # old: the same


def test_run_days_counts_sessions_and_follows_satisfaction() -> None:
    world = World(WorldConfig(n_users=600, n_items=150), rng=np.random.default_rng(30))
    bait = np.flatnonzero(world.item_clickbait == 1)

    def only(items, yes=True):
        def policy(view, rng):
            ok = np.isin(view.candidates, items) == yes
            return np.argmax(ok + rng.random(ok.shape) * 0.5, axis=1)

        return policy

    v_bait = world.run_days(only(bait), 600, days=30, rng=np.random.default_rng(31))
    v_good = world.run_days(only(bait, False), 600, days=30, rng=np.random.default_rng(31))
    assert v_good.sessions_per_user > v_bait.sessions_per_user + 2 * np.hypot(
        v_good.sessions_per_user_se, v_bait.sessions_per_user_se
    )
    v = v_good
    assert v.sessions.sum() == len(v.session_user)
    assert (v.session_start_hours < 30 * 24).all()
    assert v.session_censored.sum() == 600  # exactly one censored (last) session per user
    # the first return equals the first session's sampled gap
    returned = v.sessions > 1
    first = np.r_[0, np.cumsum(v.sessions)[:-1]]
    np.testing.assert_allclose(v.first_gap_hours[returned], v.session_gap_hours[first[returned]])
    assert np.isnan(v.first_gap_hours[~returned]).all()
    assert (v.active_days <= v.sessions).all() and 0 < v.day1_retention < 1


def test_run_days_is_reproducible_and_policies_share_user_draws() -> None:
    world = World(WorldConfig(n_users=100, n_items=60), rng=np.random.default_rng(1))
    a = world.run_days(world.logging_policy, 50, days=5, rng=np.random.default_rng(2))
    b = world.run_days(world.logging_policy, 50, days=5, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a.session_gap_hours, b.session_gap_hours)
    np.testing.assert_array_equal(a.users, b.users)


def test_interest_memory_carries_interest_across_sessions() -> None:
    config = WorldConfig(n_users=50, n_items=60, interest_memory_hours=24.0)
    world = World(config, rng=np.random.default_rng(1))
    from simkit.synthetic import SessionEnd

    end = SessionEnd.empty(2, world.dim)
    end.user[:] = [0, 1]
    end.interest[:] = world.item_embedding[0]
    fresh = world.start_state(np.array([0, 1]), end, np.array([0.0, 1e6]))
    np.testing.assert_allclose(fresh.interest[0], world.item_embedding[0])
    np.testing.assert_allclose(fresh.interest[1], world.user_interest[1])
