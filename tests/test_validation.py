"""Unit and contract tests of simkit.validation on a small world (the acceptance against the
ground truth at 100k rows is in test_validation_worlds.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from simkit.cli import main
from simkit.errors import ConfigError
from simkit.fitters import FitConfig, fit_simulator
from simkit.logs import read_logs, split_logs
from simkit.metrics import weighted_ece
from simkit.synthetic import World, WorldConfig
from simkit.validation import (
    Gates,
    LoggingPolicyModel,
    Metric,
    PolicyContext,
    confounding_check,
    fit_logging_policy,
    heldout_sessions,
    run_in_simulator,
    run_in_world,
    validate,
)
from simkit.validation.confounding import ConfoundingResult, propensity_gain
from simkit.validation.fidelity import (
    half_splits,
    impression_fidelity,
    ks_noise_floor,
    session_weights,
    weighted_auc,
    weighted_ks,
)
from simkit.validation.ope import ips, snips
from simkit.validation.ope_sequential import pdis, wpdis
from simkit.validation.policies import RandomPolicy, choose
from simkit.validation.ranking import ope_reference
from simkit.validation.report import SCHEMA_PATH, FidelityReport
from simkit.validation.sessions import SessionFidelity, session_fidelity


def check_schema(value, schema, root, path="$") -> list[str]:
    """A small JSON-schema validator: type, enum, required, properties, additionalProperties,
    items, oneOf, minimum and local $ref (what report_schema.json uses)."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return check_schema(value, target, root, path)
    errors: list[str] = []
    if "oneOf" in schema:
        ok = [not check_schema(value, s, root, path) for s in schema["oneOf"]]
        if sum(ok) != 1:
            errors.append(f"{path}: matches {sum(ok)} of the oneOf branches")
        return errors
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "null": lambda v: v is None,
        }
        if not any(checks[k](value) for k in kinds):
            return [f"{path}: {value!r} is not of type {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        errors += [f"{path}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errors += check_schema(v, props[k], root, f"{path}.{k}")
            elif extra is False:
                errors.append(f"{path}: unexpected {k!r}")
            elif isinstance(extra, dict):
                errors += check_schema(v, extra, root, f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += check_schema(v, schema["items"], root, f"{path}[{i}]")
    return errors


SCHEMA = json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def small():
    world = World(WorldConfig(n_users=600, n_items=200), rng=np.random.default_rng(3))
    logs = read_logs(world.generate_logs(3000, rng=np.random.default_rng(4)), items=world.items)
    train, held = split_logs(logs, by="user", holdout=0.3, rng=np.random.default_rng(5))
    sim = fit_simulator(train, FitConfig(n_estimators=40), rng=np.random.default_rng(6))
    return world, train, held, sim


# ------------------------------------------------------------------ weighted statistics


def test_weighted_auc_matches_sklearn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(2, size=300)
    p = np.round(rng.random(300), 1)  # many ties
    w = rng.integers(0, 4, size=(3, 300)).astype(float)
    got = weighted_auc(y, p, w)
    want = [roc_auc_score(y, p, sample_weight=row) for row in w]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_weighted_ks_matches_scipy_and_repeated_samples() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 20, 200).astype(float), rng.integers(2, 22, 150).astype(float)
    got = weighted_ks(a, np.ones((1, 200)), b, np.ones((1, 150)))[0]
    assert got == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    wa, wb = rng.integers(0, 3, 200), rng.integers(0, 3, 150)
    got = weighted_ks(a, wa[None, :].astype(float), b, wb[None, :].astype(float))[0]
    want = stats.ks_2samp(np.repeat(a, wa), np.repeat(b, wb)).statistic
    assert got == pytest.approx(want, abs=1e-12)


def test_weighted_ece_with_unit_weights_matches_the_fitters() -> None:
    from simkit.fitters import expected_calibration_error
    from simkit.validation.fidelity import weighted_ece as fidelity_ece

    assert fidelity_ece is weighted_ece  # written once, in simkit.metrics

    rng = np.random.default_rng(2)
    p = rng.random(500)
    y = (rng.random(500) < p**2).astype(float)
    assert weighted_ece(y, p, np.ones((1, 500)))[0] == pytest.approx(
        expected_calibration_error(y, p), abs=1e-12
    )


def test_bootstrap_counts_and_half_splits() -> None:
    w = session_weights(50, 7, rng=np.random.default_rng(0))
    assert w.shape == (7, 50) and (w.sum(axis=1) == 50).all()
    h = half_splits(51, 30, rng=np.random.default_rng(0))
    assert (h.sum(axis=1) == 25).all()
    assert len({tuple(r) for r in h}) == 30


def test_gates_and_metric_verdicts() -> None:
    with pytest.raises(ConfigError, match=re.escape("Gates must be finite and non-negative")):
        Gates(ks_margin=-0.1)
    m = Metric.gated(key="k", label="l", section="impression", value=0.7, threshold=0.6,
                     direction=">=")  # fmt: skip
    assert m.passed is True
    m = Metric.gated(key="k", label="l", section="impression", value=0.5, threshold=0.6,
                     direction=">=")  # fmt: skip
    assert m.passed is False
    m = Metric.gated(key="k", label="l", section="impression", value=0.7, threshold=0.6)
    assert m.passed is False
    m = Metric.gated(key="k", label="l", section="impression", value=float("nan"), threshold=0.6)
    assert m.passed is None
    m = Metric.gated(key="k", label="l", section="impression", value=0.7, threshold=None)
    assert m.passed is None
    with pytest.raises(ValueError, match="direction"):
        Metric(key="k", label="l", section="impression", value=1.0, direction="<")


# ------------------------------------------------------------------------ noise floors
# Each floor is checked against an independent estimate of the same quantity: the mean KS between
# two independent samples of the same sizes drawn (whole sessions, with replacement) from the
# held-out distribution. Random halves of a finite set of sessions differ exactly as much as two
# independent samples of half the size from its empirical distribution, so the ratio is 1 up to
# Monte Carlo noise (30 splits: about 5%); 0.8-1.25 leaves four standard errors either side.


def _independent_ks(
    values: np.ndarray, session_of: np.ndarray, n_sessions: int, seed: int
) -> float:
    """Mean KS between the values of two independent with-replacement draws of half the sessions."""
    rng = np.random.default_rng(seed)
    order = np.argsort(session_of, kind="stable")
    values, session_of = values[order], session_of[order]
    ks = []
    for _ in range(300):
        counts = [
            np.bincount(rng.integers(n_sessions, size=size), minlength=n_sessions)
            for size in (n_sessions // 2, n_sessions - n_sessions // 2)
        ]
        a, b = (np.repeat(values, c[session_of]) for c in counts)
        ks.append(stats.ks_2samp(a, b, method="asymp").statistic)
    return float(np.mean(ks))


def _session_values(frame) -> dict[str, np.ndarray]:
    per = frame.groupby("session_id", sort=False).agg(
        length=("step", "nunique"), clicks=("clicked", "sum"), watch=("watch_time", "sum")
    )
    clicked = per[per["clicks"] > 0]
    return {
        "length": per["length"].to_numpy(float),
        "watch": per["watch"].to_numpy(float),
        "clicks": per["clicks"].to_numpy(float),
        "watch_per_click": (clicked["watch"] / clicked["clicks"]).to_numpy(float),
    }


def test_ks_noise_floor_of_independent_rows_matches_the_kolmogorov_mean() -> None:
    # one value per session: the KS of two halves of n/2 follows the Kolmogorov null, whose mean
    # is sqrt(pi/2) ln 2 / sqrt(n/4) asymptotically (a little less at finite n)
    n = 4000
    values = np.random.default_rng(0).lognormal(size=n)
    floor, sd = ks_noise_floor(values, np.arange(n), n, n_splits=60, rng=np.random.default_rng(1))
    kolmogorov = np.sqrt(np.pi / 2) * np.log(2) * np.sqrt(4 / n)
    assert 0.8 * kolmogorov <= floor <= 1.1 * kolmogorov, (floor, kolmogorov)
    assert 0 < sd < floor


def test_watch_ks_noise_floor_matches_an_independent_estimate(small) -> None:
    _, _, held, sim = small
    fid = impression_fidelity(sim, held, rng=np.random.default_rng(0), n_bootstrap=20)
    m = {x.key: x for x in fid.metrics}["watch_ks"]
    frame = held.frame
    sessions = frame["session_id"].factorize()[0]
    hit = frame["clicked"].to_numpy() > 0
    ref = _independent_ks(
        frame["watch_time"].to_numpy(float)[hit], sessions[hit], int(sessions.max()) + 1, seed=1
    )
    assert 0.8 <= m.noise_floor / ref <= 1.25, (m.noise_floor, ref)
    assert m.threshold == pytest.approx(m.noise_floor + Gates().ks_margin)


def test_session_ks_noise_floors_match_an_independent_estimate(small) -> None:
    _, _, held, sim = small
    res = session_fidelity(sim, held, rng=np.random.default_rng(0), n_bootstrap=20)
    by_key = {m.key: m for m in res.metrics}
    for key, values in _session_values(held.frame).items():
        m = by_key[f"session_ks.{key}"]
        ref = _independent_ks(values, np.arange(len(values)), len(values), seed=2)
        assert 0.8 <= m.noise_floor / ref <= 1.25, (key, m.noise_floor, ref)
        assert m.threshold == pytest.approx(m.noise_floor + Gates().ks_margin)


# ---------------------------------------------------------------------- confounding rule
# The rule: fire when the lower 95% bound of the relative log-loss gain exceeds 0.5%. Tested from
# above and from below with fixed per-user losses whose interval is narrow and known.


def _losses(gain: float, n_users: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    without = 1.0 + (np.arange(n_users) % 7) / 7.0
    spread = np.where(np.arange(n_users) % 2 == 0, -0.001, 0.001)
    return without, without * (1.0 - gain - spread)


@pytest.mark.parametrize(
    ("gain", "fires"),
    [(-0.002, False), (0.0, False), (0.004, False), (0.0065, True), (0.02, True)],
)
def test_confounding_rule_fires_only_above_half_a_percent(gain: float, fires: bool) -> None:
    without, with_ = _losses(gain)
    point, lo, hi, fired = propensity_gain(without, with_, rng=np.random.default_rng(0))
    assert point == pytest.approx(gain, abs=1e-4)
    assert lo <= point <= hi
    if gain == 0.004:  # a lower bound between 0 and the 0.5% bar must not fire
        assert 0.0 < lo < Gates().confounding_min_gain, lo
    if gain == 0.0065:
        assert lo > Gates().confounding_min_gain, lo
    assert fired is fires


def test_confounding_check_holds_the_gain_to_the_gates(small) -> None:
    _, _, held, sim = small
    gates = Gates(confounding_min_gain=0.25)
    res = confounding_check(sim, held, rng=np.random.default_rng(0), gates=gates, n_bootstrap=50)
    assert res.ran and res.threshold == 0.25
    assert res.fired is bool(res.ci_low > 0.25)


# ------------------------------------------------------------------ the report's verdict


def _report_of(metrics: tuple[Metric, ...]) -> FidelityReport:
    from simkit.validation.fidelity import ImpressionFidelity, Reliability

    nan = float("nan")
    return FidelityReport(
        gates=Gates(),
        impression=ImpressionFidelity(
            metrics=metrics,
            reliability=Reliability(mean_predicted=(), observed_rate=(), count=()),
            n_rows=0,
            n_sessions=0,
            click_rate=nan,
            continue_rate=nan,
        ),
        sessions=SessionFidelity(metrics=()),
        ranking=None,
        confounding=ConfoundingResult(
            ran=False,
            fired=False,
            gain=nan,
            ci_low=nan,
            ci_high=nan,
            threshold=0.005,
            log_loss_without=nan,
            log_loss_with=nan,
            n_rows=0,
            n_users=0,
            message="",
        ),  # fmt: skip
        logging_policy="",
        source={},
    )


def test_report_fails_on_any_failed_gate_and_counts_only_verdicts() -> None:
    ok = Metric.gated(key="a", label="a", section="impression", value=0.7, threshold=0.6,
                      direction=">=")  # fmt: skip
    bad = Metric.gated(key="b", label="b", section="impression", value=0.5, threshold=0.6,
                       direction=">=")  # fmt: skip
    nan = Metric.gated(key="c", label="c", section="impression", value=float("nan"), threshold=0.6)
    assert _report_of((ok, nan)).passed is True
    report = _report_of((ok, bad, nan))
    assert report.passed is False and [m.key for m in report.failed] == ["b"]
    assert "1 of 2 gates passed" in report.summary()  # the NaN figure is not counted as a pass


# ------------------------------------------------------------------------------ policies


def test_choose_samples_the_policy_distribution(small) -> None:
    _, _, held, sim = small

    class Skewed:
        name = "skewed"

        def proba(self, ctx: PolicyContext) -> np.ndarray:
            p = np.array([0.7, 0.2, 0.1, 0.0])
            return np.broadcast_to(p, (ctx.candidates.shape[0], 4))

    h = heldout_sessions(sim, held)
    state = h.start_state(np.zeros(20000, dtype=np.int64), sim.n_items)
    ctx = PolicyContext(sim, state, np.zeros((20000, 4), dtype=np.int64))
    idx = choose(Skewed(), ctx, rng=np.random.default_rng(0))
    freq = np.bincount(idx, minlength=4) / len(idx)
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1, 0.0], atol=0.01)
    wide = PolicyContext(sim, state, np.zeros((20000, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("shape (20000, 4); expected (20000, 5)")):
        choose(Skewed(), wide, rng=np.random.default_rng(0))


def test_logging_policy_model_recovers_the_loggers_item_scores(small) -> None:
    world, _, held, sim = small
    h = heldout_sessions(sim, held)
    model = fit_logging_policy(sim, h, rng=np.random.default_rng(0))
    assert isinstance(model, LoggingPolicyModel)
    static = world.item_pop + 0.6 * world.item_quality + 0.5 * world.item_clickbait
    rows = sim.catalogue.rows(world.item_ids)
    assert np.corrcoef(model.alpha[rows], static)[0, 1] > 0.8
    assert model.beta_shown < -1.0  # the logger avoids repeats
    assert "conditional-logit" in model.describe()


def test_policies_start_from_the_users_heldout_interest_in_sim_and_world(small) -> None:
    world, _, held, sim = small
    h = heldout_sessions(sim, held)
    users = np.arange(len(h.user_ids))
    seen: dict[str, list[np.ndarray]] = {"sim": [], "world": []}

    class Probe:
        name = "probe"

        def __init__(self, where: str) -> None:
            self.where = where

        def proba(self, ctx: PolicyContext) -> np.ndarray:
            if (ctx.state.step == 0).all():
                seen[self.where].append(ctx.state.z.copy())
            return np.full(ctx.candidates.shape, 1.0 / ctx.candidates.shape[1])

    out_sim = run_in_simulator(sim, Probe("sim"), h, users, rng=np.random.default_rng(0))
    out_world = run_in_world(world, sim, Probe("world"), h, users, rng=np.random.default_rng(0))
    np.testing.assert_allclose(seen["sim"][0], h.user_z0[users])
    np.testing.assert_allclose(seen["world"][0], h.user_z0[users])
    for out in (out_sim, out_world):
        assert (out.length >= 1).all() and (out.clicks <= out.length).all()
    with pytest.raises(ValueError, match="users the world does not have"):
        other = World(WorldConfig(n_users=5, n_items=200), rng=np.random.default_rng(0))
        run_in_world(other, sim, RandomPolicy(), h, users, rng=np.random.default_rng(0))


# ------------------------------------------------------------------------ the report


def test_report_without_world_or_propensities_says_what_could_not_run(small, tmp_path) -> None:
    _, _, held, sim = small
    no_prop = read_logs(held.frame.drop(columns=["propensity"]), items=held.items)
    res = confounding_check(sim, no_prop, rng=np.random.default_rng(0))
    assert not res.ran and res.message.startswith("Could not run: the logs carry no propensities")
    report = validate(sim, no_prop, rng=np.random.default_rng(0), n_bootstrap=50)
    assert report.ranking is None
    assert "Policy ranking: not run" in report.summary()
    data = json.loads(report.to_json(tmp_path / "r.json").read_text())
    assert check_schema(data, SCHEMA, SCHEMA) == []
    assert data["ranking"] is None and data["confounding"]["gain"] is None
    html = report.to_html(tmp_path / "r.html")
    assert "Not run: no ground-truth world" in html and "Could not run" in html


def test_report_with_propensities_withholds_session_estimates_without_overlap(
    small, tmp_path
) -> None:
    _, _, held, sim = small

    class FirstCandidate:
        name = "first-candidate"

        def proba(self, ctx: PolicyContext) -> np.ndarray:
            out = np.zeros(ctx.candidates.shape)
            out[:, 0] = 1.0
            return out

    report = validate(
        sim,
        held,
        rng=np.random.default_rng(0),
        policies=[RandomPolicy(), FirstCandidate()],
        default_policy_set=False,
        n_bootstrap=50,
    )
    r = report.ranking
    assert r is not None and "off-policy" in r.reference
    assert [p.name for p in r.policies] == ["random", "first-candidate"]
    for p in r.policies:
        assert p.session_ope.startswith("PDIS session watch time: not enough overlap (ESS=")
    assert "(SNIPS)" in r.reference
    md = report.to_markdown()
    assert "not enough overlap" in md and "Per-decision values" in md
    data = report.to_dict()
    assert check_schema(data, SCHEMA, SCHEMA) == []
    json.dumps(data, allow_nan=False)


def test_validate_rejects_bad_arguments_and_notes_training_users(small) -> None:
    _, train, held, sim = small
    with pytest.raises(TypeError, match="holdout_logs must be simkit Logs"):
        validate(sim, held.frame, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="n_splits must be at least 30"):
        validate(sim, held, rng=np.random.default_rng(0), n_splits=10)
    with pytest.raises(ConfigError, match="policy names must be unique"):
        validate(sim, held, rng=np.random.default_rng(0), policies=[RandomPolicy()])
    report = validate(
        sim, train, rng=np.random.default_rng(0), default_policy_set=False, n_bootstrap=20
    )
    assert report.ranking is None
    assert any("also in the simulator's training logs" in n for n in report.notes)


def test_cli_validate_writes_the_three_reports(small, tmp_path: Path, capsys) -> None:
    _, _, held, sim = small
    sim.save(tmp_path / "sim")
    # without propensities (and without a world) the ranking and confounding checks are skipped
    held.frame.drop(columns=["propensity"]).to_parquet(tmp_path / "held.parquet")
    held.items.to_parquet(tmp_path / "items.parquet")
    args = ["validate", str(tmp_path / "sim"), "--logs", str(tmp_path / "held.parquet")]
    args += ["--items", str(tmp_path / "items.parquet"), "--out", str(tmp_path / "rep.html")]
    assert main([*args, "--gates", "nonsense=1"]) == 2  # before any work
    assert "unknown gate(s) nonsense" in capsys.readouterr().err
    code = main([*args, "--strict", "--quiet", "--gates", "click_auc_min=0.99", "ks_margin=0.1"])
    assert code == 1
    out, err = capsys.readouterr()
    assert "Fidelity FAILED" in out and "FAILED Click AUC" in out
    assert "Fidelity gates failed" in err
    for name in ("rep.html", "rep.json", "rep.md"):
        assert (tmp_path / name).stat().st_size > 1000
    assert json.loads((tmp_path / "rep.json").read_text())["gates"]["ks_margin"] == 0.1


def test_ope_reference_takes_a_list_of_estimators(small) -> None:
    _, _, held, sim = small
    h = heldout_sessions(sim, held)
    res = ope_reference(
        sim,
        h,
        [RandomPolicy()],
        rng=np.random.default_rng(0),
        gates=Gates(),
        max_sessions=60,
        n_draws=1,
        n_bootstrap=20,
        estimators=(ips, snips),
        session_estimators=(pdis, wpdis),
    )
    assert "(IPS)" in res.reference
    (p,) = res.policies
    assert "SNIPS watch time per decision" in p.session_ope
    assert "SNIPS clicks per decision" in p.session_ope
    assert "PDIS session watch time" in p.session_ope
    assert "WPDIS session watch time" in p.session_ope
    with pytest.raises(ConfigError, match="at least one per-decision estimator"):
        ope_reference(sim, h, [RandomPolicy()], rng=np.random.default_rng(0), gates=Gates(),
                      estimators=())  # fmt: skip


def test_importing_validation_does_not_import_the_fitters() -> None:
    import subprocess
    import sys

    code = "import sys, simkit.validation; print('simkit.fitters' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "module_name",
    ["fidelity", "sessions", "policies", "report", "gates", "confounding", "ranking"],
)
def test_docstring_examples_run(module_name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module(f"simkit.validation.{module_name}")
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
