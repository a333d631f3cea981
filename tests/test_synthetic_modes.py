"""World modes with other log shapes: impression lists, bandit logs, hidden embeddings, streaming."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from simkit.errors import ConfigError
from simkit.synthetic import World, WorldConfig, write_samples
from simkit.synthetic_bandit import BanditWorld, BanditWorldConfig, FeaturePolicy
from simkit.synthetic_lists import ListWorld, ListWorldConfig


@pytest.fixture(scope="module")
def lists() -> tuple[ListWorld, pd.DataFrame]:
    world = ListWorld(ListWorldConfig(n_users=400, n_items=300), rng=np.random.default_rng(40))
    return world, world.generate_logs(600, rng=np.random.default_rng(41), truth=True)


def test_lists_have_5_to_30_items_and_at_most_one_click(lists) -> None:
    _, frame = lists
    per_list = frame.groupby(["session_id", "step"])
    size = per_list.size()
    assert size.min() >= 5 and size.max() <= 30
    assert per_list["clicked"].sum().max() == 1
    assert 0.3 < per_list["clicked"].sum().mean() < 0.8
    assert (per_list["position"].apply(lambda p: list(p) == list(range(len(p))))).all()
    assert not frame.duplicated(["session_id", "step", "item_id"]).any()
    assert (frame.loc[frame["clicked"] == 0, "watch_time"] == 0).all()
    assert (frame.loc[frame["clicked"] == 1, "watch_time"] > 0).all()
    # context is per list: it changes inside sessions, never inside a list
    assert per_list["ctx_page"].nunique().max() == 1
    changes = frame.groupby("session_id")["ctx_page"].nunique()
    assert (changes > 1).mean() > 0.3
    assert set(frame["ctx_device"].unique()) == {"mobile", "desktop", "tablet"}
    assert per_list["timestamp"].nunique().max() == 1


def test_list_truth_is_the_cascade_and_calibrated(lists) -> None:
    _, frame = lists
    p = frame["true_p_click"]
    np.testing.assert_allclose(p.sum(), frame["clicked"].sum(), rtol=0.05)
    assert (p <= frame["true_p_attract"] * frame["true_p_examine"] + 1e-12).all()
    # the first slot's marginal is its attraction times its examination
    first = frame[frame["position"] == 0]
    np.testing.assert_allclose(
        first["true_p_click"], first["true_p_attract"] * first["true_p_examine"]
    )
    assert roc_auc_score(frame["clicked"], p) > 0.75
    # the continuation truth is calibrated on lists
    last = frame.groupby(["session_id", "step"]).tail(1)
    continued = last.groupby("session_id")["step"].transform("max") > last["step"]
    np.testing.assert_allclose(last["true_p_continue"].mean(), continued.mean(), atol=0.03)


def test_list_propensities_are_plackett_luce_conditionals(lists) -> None:
    world, frame = lists
    first = frame[frame["step"] == 0]
    one = first[first["session_id"] == first["session_id"].iloc[0]]
    state = world.world.initial_state(np.array([one["user_id"].iloc[0] - 1]))
    probs = world.world.logging_proba(state)[0]
    rows = one["item_id"].to_numpy() - 1000
    left = 1.0 - np.r_[0.0, np.cumsum(probs[rows])[:-1]]
    np.testing.assert_allclose(one["propensity"], probs[rows] / left, rtol=1e-9)


def test_row_layout_holds_the_same_impressions() -> None:
    world = ListWorld(ListWorldConfig(n_users=100, n_items=200), rng=np.random.default_rng(1))
    slates = world.generate_logs(40, rng=np.random.default_rng(2))
    rows = world.generate_logs(40, rng=np.random.default_rng(2), layout="rows")
    assert "position" not in rows and {"ctx_impression_id", "ctx_slot"} <= set(rows)
    np.testing.assert_array_equal(rows["item_id"], slates["item_id"])
    np.testing.assert_array_equal(rows["ctx_slot"], slates["position"])
    assert (rows.groupby("session_id")["step"].diff().dropna() == 1).all()
    per_list = rows.groupby("ctx_impression_id")
    assert per_list["clicked"].sum().max() == 1 and per_list["session_id"].nunique().max() == 1


def test_bandit_log_shape_and_rare_clicks() -> None:
    world = BanditWorld(rng=np.random.default_rng(50))
    frame = world.generate_logs(20000, rng=np.random.default_rng(51), truth=True)
    assert "watch_time" not in frame.columns
    assert (frame["step"] == 0).all() and frame.groupby("session_id").size().eq(3).all()
    assert not frame.duplicated(["session_id", "item_id"]).any()
    assert (frame["propensity"] == 1 / 80).all()
    assert 0.003 < frame["clicked"].mean() < 0.008
    assert world.policy_ctr() == pytest.approx(frame["true_p_click"].mean(), rel=0.03)
    assert world.policy_ctr() == pytest.approx(0.005, rel=0.3)


def test_bandit_target_ctr_is_exact_against_running_it() -> None:
    """The exact CTR of the second policy equals running it and IPS on the uniform logs."""
    world = BanditWorld(rng=np.random.default_rng(50))
    policy = world.target_policy
    exact = world.policy_ctr(policy)
    assert exact > 1.2 * world.policy_ctr()  # non-uniform, and better than uniform
    rng = np.random.default_rng(52)
    n = 200_000
    users = rng.integers(world.config.n_users, size=n)
    device = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    shown = policy.sample(world.items, n, 3, rng=rng)
    p = world.click_proba(users[:, None], device[:, None], shown, np.arange(3)[None, :])
    assert p.mean() == pytest.approx(exact, rel=0.01)
    frame = world.generate_logs(30000, rng=np.random.default_rng(53), truth=True)
    pi = np.stack([policy.proba(world.items, j) for j in range(3)])
    w = pi[frame["position"], frame["item_id"] - 1] / frame["propensity"]
    assert (w * frame["true_p_click"]).mean() == pytest.approx(exact, rel=0.05)


def test_feature_policy_rejects_bad_weights() -> None:
    with pytest.raises(ConfigError, match="one weight per feature"):
        FeaturePolicy(features=("item_f0",), weights=((1.0, 2.0),))
    with pytest.raises(ConfigError, match="position_bias must list 4"):
        BanditWorldConfig(n_positions=4)


def test_hidden_embedding_logs_only_category_duration_clickbait() -> None:
    world = World(
        WorldConfig(n_users=600, n_items=200, hidden_embedding=True), rng=np.random.default_rng(3)
    )
    assert list(world.items.columns) == ["item_id", "item_category", "item_clickbait", "duration"]
    assert world.items["item_category"].dtype == np.int64
    # items are one-hot over categories: the true interest is a taste per category
    np.testing.assert_array_equal(world.item_embedding.sum(axis=1), 1.0)
    assert world.user_interest.shape == (600, world.config.n_clusters)
    frame = world.generate_logs(1500, rng=np.random.default_rng(4), truth=True)
    assert not any(c.startswith("item_f") for c in frame.columns)
    # the oracle: the true interest in the shown item's category explains the clicks
    first = frame[frame["step"] == 0]
    taste = world.true_interest(first["user_id"].to_numpy())
    cat = world.item_cluster[first["item_id"].to_numpy() - 1000]
    assert roc_auc_score(first["clicked"], taste[np.arange(len(first)), cat]) > 0.65
    assert roc_auc_score(frame["clicked"], frame["true_p_click"]) > 0.72


def test_streaming_in_chunks_keeps_ids_unique_and_the_distribution() -> None:
    world = World(WorldConfig(n_users=600, n_items=120), rng=np.random.default_rng(5))
    whole = world.generate_logs(800, rng=np.random.default_rng(6))
    chunks = list(world.iter_logs(800, rng=np.random.default_rng(6), chunk_users=35))
    assert len(chunks) == 5  # 160 users in chunks of 35
    streamed = pd.concat(chunks, ignore_index=True)
    assert streamed["session_id"].is_monotonic_increasing
    assert streamed.groupby("session_id")["user_id"].nunique().max() == 1
    assert set(streamed["user_id"]) == set(whole["user_id"])
    assert abs(streamed["clicked"].mean() - whole["clicked"].mean()) < 0.03
    again = world.generate_logs(800, rng=np.random.default_rng(6), chunk_users=35)
    pd.testing.assert_frame_equal(streamed, again)


@pytest.mark.parametrize(
    "config",
    [ListWorldConfig(n_users=50, n_items=100), BanditWorldConfig(n_users=50)],
    ids=["lists", "bandit"],
)
def test_write_samples_writes_every_mode_reproducibly(tmp_path, config) -> None:
    a = write_samples(tmp_path / "a", n_sessions=30, rng=np.random.default_rng(9), config=config)
    b = write_samples(tmp_path / "b", n_sessions=30, rng=np.random.default_rng(9), config=config)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
