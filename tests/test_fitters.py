"""Recovery of the synthetic world's truth by the fitters, and gates that fail when a part is broken."""

from __future__ import annotations

import re

import lightgbm as lgb
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from simkit.errors import LogError
from simkit.fitters import (
    FitConfig,
    expected_calibration_error,
    fit_simulator,
    fit_simulator_with_rows,
)
from simkit.logs import read_logs
from simkit.models import BinaryResponse
from simkit.replay import replay_with

ECE_MARGIN = 0.008
AUC_MARGIN = 0.01
CONT_MARGIN = 0.02
WATCH_MARGIN = 0.025
# measured per-quintile KS on the default world was 0.02-0.05 (noise floor about 0.03-0.04);
# a feature-blind model gives 0.2-0.5 in the outer quintiles
QUINTILE_TOLERANCE = 0.10
# a coarser rate than the default 0.05 halves the boosting rounds; the ceiling uses the same
LEARNING_RATE = 0.1


def _ceiling_auc(sim, prep, train, heldout_rows, y) -> float:
    """Same parameters, same feature rows, true click probabilities as soft labels."""
    params = {
        "objective": "cross_entropy",
        "learning_rate": LEARNING_RATE,
        "num_leaves": 31,
        "min_data_in_leaf": 200,
        "feature_fraction": 0.9,
        "lambda_l2": 1.0,
        "num_threads": 1,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
        "seed": 0,
    }
    soft = train.frame["true_p_click"].to_numpy()
    booster = lgb.train(
        params,
        lgb.Dataset(prep.rows.x_click, soft),
        num_boost_round=sim.click.booster.current_iteration(),
    )
    return float(roc_auc_score(y, booster.predict(heldout_rows.x_click)))


@pytest.fixture(scope="module", params=["features", "clicks"])
def fitted(request, world_logs):
    train, heldout = world_logs
    fitted = fit_simulator_with_rows(
        train,
        FitConfig(embedding=request.param, learning_rate=LEARNING_RATE),
        rng=np.random.default_rng(2),
    )
    sim, prep = fitted.simulator, fitted.prepared
    return request.param, sim, prep, train, heldout, replay_with(sim, heldout)


def test_click_model_reaches_its_feasible_ceiling_and_is_calibrated(fitted) -> None:
    source, sim, prep, train, heldout, held = fitted
    y = held.rows.clicked
    p = sim.click.proba(held.rows.x_click)
    truth = heldout.frame["true_p_click"].to_numpy()
    auc = roc_auc_score(y, p)
    ceiling = _ceiling_auc(sim, prep, train, held.rows, y)
    oracle = roc_auc_score(y, truth)
    print(f"{source}: AUC {auc:.4f} ceiling {ceiling:.4f} oracle {oracle:.4f}")
    assert auc >= ceiling - AUC_MARGIN
    ece, oracle_ece = expected_calibration_error(y, p), expected_calibration_error(y, truth)
    print(f"{source}: ECE {ece:.4f} oracle ECE {oracle_ece:.4f}")
    assert ece <= oracle_ece + ECE_MARGIN


def test_continuation_model_is_near_its_oracle(fitted) -> None:
    _, sim, _, _, heldout, held = fitted
    r = held.rows
    truth = heldout.frame["true_p_continue"].to_numpy()
    first = np.r_[0, np.flatnonzero(np.diff(r.step_of_row)) + 1]
    auc = roc_auc_score(r.continued, sim.cont.proba(r.x_continue))
    oracle = roc_auc_score(r.continued, truth[first])
    assert auc >= oracle - CONT_MARGIN


def _watch_noise_floor(watch: np.ndarray, rng: np.random.Generator, n: int = 30) -> float:
    ks = []
    for _ in range(n):
        half = rng.permutation(len(watch))
        a, b = watch[half[: len(watch) // 2]], watch[half[len(watch) // 2 :]]
        ks.append(stats.ks_2samp(a, b).statistic)
    return float(np.mean(ks))


def _watch_checks(sim, held, rng) -> tuple[float, float, list[float]]:
    r = held.rows
    hit = r.clicked > 0
    x, real, cap = r.x_click[hit], r.watch[hit], held.duration_of_row[hit]
    sampled = sim.watch.sample(x, cap, rng=rng)
    ks = stats.ks_2samp(sampled, real).statistic
    floor = _watch_noise_floor(real, np.random.default_rng(0))
    pred = sim.watch.predict_log(x)
    q = np.quantile(pred, [0.2, 0.4, 0.6, 0.8])
    bins = np.searchsorted(q, pred)
    per_quintile = [stats.ks_2samp(sampled[bins == b], real[bins == b]).statistic for b in range(5)]
    return ks, floor, per_quintile


def test_watch_time_distribution_matches_overall_and_by_prediction(fitted) -> None:
    source, sim, _, _, _, held = fitted
    ks, floor, per_quintile = _watch_checks(sim, held, np.random.default_rng(3))
    print(f"{source}: watch KS {ks:.4f} floor {floor:.4f} quintiles {np.round(per_quintile, 3)}")
    assert ks <= floor + WATCH_MARGIN
    assert max(per_quintile) <= QUINTILE_TOLERANCE


# ------------------------------------------------------------------ gates can fail


def test_shuffled_click_labels_fail_the_click_gate(world_logs) -> None:
    train, heldout = world_logs
    frame = train.frame.copy()
    frame["clicked"] = np.random.default_rng(0).permutation(frame["clicked"].to_numpy())
    frame["watch_time"] = np.where(frame["clicked"] > 0, 30.0, 0.0)
    broken = read_logs(frame, items=train.items)
    sim = fit_simulator(broken, FitConfig(n_estimators=200), rng=np.random.default_rng(2))
    held = replay_with(sim, heldout)
    auc = roc_auc_score(held.rows.clicked, sim.click.proba(held.rows.x_click))
    assert auc < 0.6  # the ceiling is about 0.73: far outside AUC_MARGIN


def test_constant_continuation_fails_the_continuation_gate(fitted) -> None:
    from dataclasses import replace

    from simkit.validation import Gates, impression_fidelity

    _, sim, _, _, heldout, held = fitted
    rate = float(held.rows.continued.mean())
    const = BinaryResponse(sim.cont.booster, np.array([0.0, 1.0]), np.array([rate, rate]))

    def gates_of(s) -> dict[str, bool | None]:
        fid = impression_fidelity(
            s, heldout, rng=np.random.default_rng(0), prepared=held, n_bootstrap=20
        )
        return {m.key: m.passed for m in fid.metrics}

    intact, broken = gates_of(sim), gates_of(replace(sim, cont=const))
    assert intact["continue_auc"] is True and intact["continue_ece"] is True
    # the constant is calibrated (its rate is the base rate): only the AUC gate can catch it
    assert broken["continue_auc"] is False and broken["continue_ece"] is True
    assert broken["click_auc"] is True
    assert Gates().continue_auc_min > 0.5


def test_feature_blind_watch_model_fails_the_quintile_gate(fitted) -> None:
    _, sim, _, _, _, held = fitted
    from dataclasses import replace

    # pool the bins' residual distributions into one
    w = sim.watch
    bin_of = np.floor(w.cumulative - 1e-12)
    prev = np.r_[0.0, w.cumulative[:-1]]
    mass = w.cumulative - np.where(np.r_[True, bin_of[1:] != bin_of[:-1]], bin_of, prev)
    order = np.argsort(w.residuals, kind="stable")
    pooled = np.cumsum(mass[order]) / mass.sum()
    pooled[-1] = 1.0
    blind = replace(
        sim,
        watch=replace(w, bin_edges=np.zeros(0), residuals=w.residuals[order], cumulative=pooled),
    )
    # a feature-blind model: every row gets the mean prediction and the pooled residuals
    mean_pred = float(np.mean(sim.watch.predict_log(held.rows.x_click[held.rows.clicked > 0])))

    class _Const:
        def predict(self, x, num_threads=1):
            return np.full(len(x), mean_pred)

    blind.watch.booster = _Const()
    # quintiles are still those of the real model's prediction, as the gate defines them
    r = held.rows
    hit = r.clicked > 0
    pred = sim.watch.predict_log(r.x_click[hit])
    sampled = blind.watch.sample(
        r.x_click[hit], held.duration_of_row[hit], rng=np.random.default_rng(3)
    )
    bins = np.searchsorted(np.quantile(pred, [0.2, 0.4, 0.6, 0.8]), pred)
    worst = max(
        stats.ks_2samp(sampled[bins == b], r.watch[hit][bins == b]).statistic for b in range(5)
    )
    assert worst > QUINTILE_TOLERANCE


# ------------------------------------------------- watch model: censoring and the duration cap
# A small set where censoring matters: items last 2 or 40 seconds and watch times are drawn
# independently of the item (log-normal, median 8 s), so every watch of a 2-second item is cut at
# its end. A fit that reads the cut watches as completed ones learns that half the watches are
# shorter than 2 s; the Kaplan-Meier fit learns the true distribution.


def _censored_watch_fit(rng: np.random.Generator):
    from simkit.fitters import WatchTimeModel

    n = 4000
    duration = np.where(rng.random(n) < 0.5, 2.0, 40.0)
    true_watch = rng.lognormal(np.log(8.0), 0.6, size=n)
    watch = np.minimum(true_watch, duration)
    x = rng.random((n, 2)).astype(np.float32)  # uninformative features
    model = WatchTimeModel(n_estimators=30, min_child_samples=200, random_state=0).fit(
        x, watch, groups=np.arange(n) // 4, duration=duration
    )
    return model.to_runtime(), x, duration


def test_watch_fit_reads_watches_cut_at_the_items_end_as_censored() -> None:
    watch, x, _ = _censored_watch_fit(np.random.default_rng(0))
    long_items = np.full(len(x), 40.0)
    sampled = watch.sample(x, long_items, rng=np.random.default_rng(1))
    # truth: the median of min(lognormal(median 8), 40) is 8 s; share below 2 s is 1%
    assert 6.0 <= np.median(sampled) <= 10.5, np.median(sampled)
    assert np.mean(sampled < 2.0) < 0.10


def test_sampled_watch_never_exceeds_the_items_duration() -> None:
    watch, x, duration = _censored_watch_fit(np.random.default_rng(0))
    for cap in (duration, np.full(len(x), 5.0), np.full(len(x), 0.5)):
        sampled = watch.sample(x, cap, rng=np.random.default_rng(2))
        assert (sampled <= cap).all()
        assert (sampled == cap).any()  # the cap is reached, so the assertion above bites
        values = watch.quantile_values(watch.predict_log(x[:50]), cap[:50], n_quantiles=16)
        assert (values <= cap[:50, None]).all()


# --------------------------------------------------------------- logs of all shapes


def test_fits_without_item_features_and_with_one_session_per_user(small_logs) -> None:
    frame = small_logs.frame.drop_duplicates("user_id").copy()
    frame = small_logs.frame[small_logs.frame["session_id"].isin(frame["session_id"])]
    logs = read_logs(frame.reset_index(drop=True))
    sim = fit_simulator(logs, FitConfig(n_estimators=20), rng=np.random.default_rng(0))
    assert sim.config["embedding_source"] == "clicks"
    assert sim.spec.item_columns == ()


def test_fits_string_categorical_user_and_item_features(small_logs) -> None:
    frame = small_logs.frame.copy()
    frame["user_segment"] = frame["user_segment"].astype(str)
    frame["ctx_device"] = np.where(frame["step"] % 2 == 0, "phone", "tv")
    items = small_logs.items.copy()
    items["item_category"] = items["item_category"].astype(str)
    sim = fit_simulator(
        read_logs(frame, items=items), FitConfig(n_estimators=20), rng=np.random.default_rng(0)
    )
    assert "user_segment" in sim.categories and "item_category" in sim.categories
    assert sim.spec.user_columns == ("user_segment", "ctx_device")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            "no_clicks",
            "<DataFrame>: too little to fit a simulator: 0 clicks (at least 20 are needed). "
            "Provide more logs.",
        ),
        (
            "few_sessions",
            "<DataFrame>: too little to fit a simulator: 5 sessions (at least 10 are needed); "
            "17 clicks (at least 20 are needed). Provide more logs.",
        ),
    ],
)
def test_too_small_logs_say_what_is_missing(small_logs, change, message) -> None:
    frame = small_logs.frame.copy()
    if change == "no_clicks":
        frame["clicked"] = 0
        frame["watch_time"] = 0.0
    else:
        frame = frame[frame["session_id"].isin(frame["session_id"].unique()[:5])]
    with pytest.raises(LogError, match=re.escape(message)):
        fit_simulator(read_logs(frame), rng=np.random.default_rng(0))


def test_fitting_twice_with_the_same_seed_gives_identical_models(small_logs) -> None:
    a = fit_simulator(small_logs, FitConfig(n_estimators=30), rng=np.random.default_rng(9))
    b = fit_simulator(small_logs, FitConfig(n_estimators=30), rng=np.random.default_rng(9))
    for part in ("click", "cont"):
        assert (
            getattr(a, part).booster.model_to_string() == getattr(b, part).booster.model_to_string()
        )
    assert a.watch.booster.model_to_string() == b.watch.booster.model_to_string()


def test_position_bias_is_estimated_from_slate_logs(small_logs) -> None:
    """Slates of 3 whose lower positions lose a known share of their clicks."""
    frame = small_logs.frame.copy()
    frame["position"] = frame["step"] % 3
    frame["step"] = frame["step"] // 3
    keep = np.array([1.0, 0.75, 0.5])[frame["position"]]
    lost = np.random.default_rng(0).random(len(frame)) > keep
    frame.loc[lost, "clicked"] = 0
    frame.loc[lost, "watch_time"] = 0.0
    sim = fit_simulator(
        read_logs(frame, items=small_logs.items),
        FitConfig(n_estimators=200),
        rng=np.random.default_rng(1),
    )
    np.testing.assert_allclose(sim.position_bias, [1.0, 0.75, 0.5], atol=0.08)
    assert (
        fit_simulator(
            small_logs, FitConfig(n_estimators=5), rng=np.random.default_rng(1)
        ).position_bias
        is None
    )
