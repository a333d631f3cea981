"""The simulator folder: round trips, sealed manifest, optional parts, atomic saves, sampling."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simkit.simulator_io as sio
from simkit import __version__
from simkit.artifacts import seal, sha256_file
from simkit.errors import ArtifactError
from simkit.session import Streams, step
from simkit.simulator import FORMAT_VERSION, Simulator

FIX = "Fit the simulator again, or copy the folder again from its source."


@pytest.fixture
def saved(tiny_simulator, tmp_path) -> Path:
    return tiny_simulator.save(tmp_path / "sim")


def _rollout(sim: Simulator, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    users = sim.sample_users(64, rng=rng)
    state = sim.initial_state(users)
    out = []
    for _ in range(5):
        items = rng.integers(sim.n_items, size=state.n)
        res = step(sim, state, items, streams=Streams(rng, rng, rng, rng, rng))
        out += [res.click, res.watch, res.p_click, res.p_continue]
    return out


def _edit(
    folder: Path, change: Callable[[dict[str, Any]], object], *, reseal: bool = False
) -> Path:
    """Apply ``change`` to the parsed manifest; ``reseal`` recomputes the integrity record (as a
    buggy or foreign writer would), so the field checks behind the seal are reached."""
    mpath = folder / "manifest.json"
    m = json.loads(mpath.read_text())
    change(m)
    if reseal:
        m = seal({k: v for k, v in m.items() if k != "integrity"})
    mpath.write_text(json.dumps(m, indent=2))
    return mpath


def _edited(field: str) -> str:
    return (
        f"field {field!r} does not match its sha256 in the integrity record: the manifest was "
        f"edited after saving. Refusing to load it; restore the original manifest.json. {FIX}"
    )


# --------------------------------------------------------------------------- round trips


def test_round_trip_gives_identical_predictions_and_samples(tiny_simulator, saved) -> None:
    loaded = Simulator.load(saved)
    for a, b in zip(_rollout(tiny_simulator, 0), _rollout(loaded, 0), strict=True):
        np.testing.assert_array_equal(a, b)
    new_a = tiny_simulator.sample_users(10, rng=np.random.default_rng(1), population="new")
    new_b = loaded.sample_users(10, rng=np.random.default_rng(1), population="new")
    np.testing.assert_array_equal(new_a.z0, new_b.z0)
    assert loaded.dynamics == tiny_simulator.dynamics
    assert set(loaded.extras) == set(tiny_simulator.extras)


def test_refuses_to_overwrite_unless_asked(tiny_simulator, saved) -> None:
    msg = (
        f"{saved} already exists; pass overwrite=True (CLI: --overwrite) to replace the "
        "simulator in it, or choose another path."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        tiny_simulator.save(saved)
    tiny_simulator.save(saved, overwrite=True)
    Simulator.load(saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["sim"]


def test_overwrite_refuses_a_regular_file_and_a_foreign_folder(tiny_simulator, tmp_path) -> None:
    report = tmp_path / "a_file.txt"
    report.write_text("keep me")
    msg = (
        f"{report} is a file, not a simulator folder; refusing to replace a file with a folder "
        "(also with --overwrite). Choose a folder path that does not exist yet."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        tiny_simulator.save(report, overwrite=True)
    assert report.read_text() == "keep me"
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    msg = (
        f"{home} exists and is not a saved simulator (no manifest.json); refusing to replace it. "
        "Choose another path."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        tiny_simulator.save(home, overwrite=True)
    assert (home / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt", "home"]


# --------------------------------------------------------------------------- data files


@pytest.mark.parametrize("name", sio.DATA_FILES)
def test_a_changed_byte_in_any_file_is_caught(saved, name) -> None:
    path = saved / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    msg = f"{path} does not match the sha256 in the manifest"
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_a_missing_file_is_caught(saved) -> None:
    (saved / "watch.txt").unlink()
    with pytest.raises(ArtifactError, match=re.escape(f"{saved} is missing watch.txt")):
        Simulator.load(saved)


def test_a_path_traversal_name_is_refused(saved) -> None:
    def traverse(m: dict[str, Any]) -> None:
        m["files"]["../click.txt"] = m["files"].pop("click.txt")

    mpath = _edit(saved, traverse, reseal=True)
    msg = (
        f"{mpath}: the required files ['click.txt'] are not listed; the files ['../click.txt'] "
        "are neither required files nor listed under an optional part"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_loading_a_missing_folder_says_so(tmp_path) -> None:
    msg = (
        f"{tmp_path / 'nope'} is not a saved simulator: cannot read manifest.json because "
        f"{tmp_path / 'nope'} does not exist. Fit one with 'simkit fit LOGS --out DIR' or check "
        "the path."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(tmp_path / "nope")


def test_no_pickle_anywhere(saved) -> None:
    with np.load(saved / "arrays.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_an_interrupted_save_leaves_no_folder(tiny_simulator, tmp_path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sio, "_write_files", boom)
    target = tmp_path / "sim"
    with pytest.raises(KeyboardInterrupt):
        tiny_simulator.save(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- sealed manifest


def _set_eta(m: dict[str, Any]) -> None:
    m["dynamics"]["eta"] = 0.5


def _rename_feature(m: dict[str, Any]) -> None:
    m["click_feature_names"][0] = "u_renamed"


def _bump_version(m: dict[str, Any]) -> None:
    m["format_version"] = 3


def _add_category(m: dict[str, Any]) -> None:
    m["categories"]["ctx_device"] = ["tv"]


def _change_config(m: dict[str, Any]) -> None:
    m["config"]["n_estimators"] = 7


def _change_hash(m: dict[str, Any]) -> None:
    m["files"]["click.txt"] = "0" * 64


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set_eta, "dynamics"),
        (_rename_feature, "click_feature_names"),
        (_bump_version, "format_version"),
        (_add_category, "categories"),
        (_change_config, "config"),
        (_change_hash, "files"),
    ],
)
def test_an_edited_manifest_field_is_named(saved, change, field) -> None:
    mpath = _edit(saved, change)
    with pytest.raises(ArtifactError, match=re.escape(f"{mpath}: {_edited(field)}")):
        Simulator.load(saved)


def test_an_added_or_removed_manifest_field_is_named(saved) -> None:
    mpath = _edit(saved, lambda m: m.update(note="hand-edited"))
    msg = f"{mpath}: field(s) 'note' are not in the integrity record: the manifest was edited"
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)
    _edit(saved, lambda m: [m.pop("note"), m.pop("metrics")])
    msg = f"{mpath}: field(s) 'metrics' listed in the integrity record are missing: the manifest"
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_a_manifest_without_its_integrity_record_is_refused(saved) -> None:
    mpath = _edit(saved, lambda m: m.pop("integrity"))
    msg = (
        f"{mpath} has no integrity record (field 'integrity'), so its fields cannot be checked: "
        f"it was edited or not written by simkit. {FIX}"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)
    _edit(saved, lambda m: m.update(integrity="trust me"))
    msg = (
        f"{mpath}: field 'integrity' must be an object with scheme "
        "'sha256-canonical-json-fields' and a sha256 per field; got \"trust me\"."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_a_genuinely_newer_format_asks_for_an_upgrade(saved) -> None:
    msg = (
        f"{saved} has simulator format version 99, but this simkit ({__version__}) reads "
        f"versions up to {FORMAT_VERSION}; upgrade simkit to load it."
    )
    _edit(saved, lambda m: m.update(format_version=99), reseal=True)
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)

    def future_scheme(m: dict[str, Any]) -> None:  # a later simkit may seal differently
        m["integrity"] = {"scheme": "sha3-whole-body", "digest": "ab"}

    _edit(saved, future_scheme)
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_an_older_format_asks_for_a_refit(saved) -> None:
    def version_one(m: dict[str, Any]) -> None:
        for key in ("integrity", "format", "dynamics", "parts"):
            m.pop(key)
        m.update(format_version=1, eta=0.1, watch_scale=None)

    _edit(saved, version_one)
    msg = (
        f"{saved} has simulator format version 1, written by an older simkit; this simkit "
        f"({__version__}) reads version {FORMAT_VERSION}. Refit the simulator with 'simkit fit' "
        "(the state's dynamics are now stored as one record)."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_a_truncated_manifest_is_refused(saved) -> None:
    mpath = saved / "manifest.json"
    raw = mpath.read_bytes()
    n = len(raw) // 2
    while raw[:n].rstrip().endswith((b"}", b"]")):
        n -= 1
    mpath.write_bytes(raw[:n])
    msg = f"{mpath} ends in the middle of the JSON (truncated after {n} bytes); the folder is damaged. {FIX}"
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)
    mpath.write_bytes(b"")
    with pytest.raises(ArtifactError, match=re.escape("(truncated after 0 bytes)")):
        Simulator.load(saved)


@pytest.mark.parametrize(
    ("text", "kind"), [("[1, 2]", "array"), ('"sim"', "string"), ("16", "number"), ("null", "null")]
)
def test_a_manifest_of_the_wrong_json_type_is_refused(saved, text, kind) -> None:
    mpath = saved / "manifest.json"
    mpath.write_text(text + "\n")
    msg = (
        f"{mpath} must hold a JSON object; got a JSON {kind}. The folder is damaged or was not "
        f"written by simkit. {FIX}"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_a_wrong_typed_field_is_named(saved) -> None:
    mpath = _edit(saved, lambda m: m.update(embedding_dim="16"))
    with pytest.raises(ArtifactError, match=re.escape(f"{mpath}: {_edited('embedding_dim')}")):
        Simulator.load(saved)
    _edit(saved, lambda m: m.update(embedding_dim="16", user_columns={"a": 1}), reseal=True)
    msg = (
        f"{mpath}: field 'embedding_dim' must be an integer >= 1; got a JSON string \"16\"; "
        f"field 'user_columns' must be an array of strings; got a JSON object {{\"a\":1}}. {FIX}"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)


def test_sealed_but_inconsistent_fields_are_named(saved) -> None:
    original = (saved / "manifest.json").read_text()
    mpath = _edit(saved, _rename_feature, reseal=True)
    msg = (
        f"{mpath}: field 'click_feature_names' does not match this simkit's state layout; the "
        "simulator was written by an incompatible version: fit it again."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(saved)
    mpath.write_text(original)
    _edit(saved, lambda m: m.update(dynamics={"eta": 0.1}), reseal=True)
    with pytest.raises(ArtifactError, match=re.escape(f"{mpath}: field 'dynamics' is invalid (")):
        Simulator.load(saved)


_ODD_VALUES: list[Any] = [None, True, 1.5, "x", [], {}, [1], {"a": None}]


def test_any_missing_or_wrong_typed_field_gives_artifact_error(saved) -> None:
    """Never KeyError, TypeError, AttributeError or ValueError, even behind a valid seal."""
    original = (saved / "manifest.json").read_text()
    keys = [k for k in json.loads(original) if k != "integrity"]
    for key in keys:
        for value in [..., *_ODD_VALUES]:
            m = json.loads(original)
            if value is ...:
                del m[key]
            else:
                m[key] = value
            m.pop("integrity")
            (saved / "manifest.json").write_text(json.dumps(seal(m)))
            try:
                Simulator.load(saved)
            except ArtifactError:
                pass


# --------------------------------------------------------------------------- optional parts


@pytest.fixture
def with_parts(tiny_simulator) -> Simulator:
    return dataclasses.replace(
        tiny_simulator,
        extras={
            "return": tiny_simulator.watch.booster,  # stands in for a return-time model
            "click_members": (tiny_simulator.click, tiny_simulator.cont),
        },
    )


def test_optional_parts_round_trip_hashed(with_parts, tmp_path) -> None:
    path = with_parts.save(tmp_path / "sim")
    m = json.loads((path / "manifest.json").read_text())
    assert m["parts"] == {
        "click_members": ["click_1.npz", "click_1.txt", "click_2.npz", "click_2.txt"],
        "return": ["return.txt"],
    }
    assert m["files"]["return.txt"] == sha256_file(path / "return.txt")
    loaded = Simulator.load(path)
    x = np.random.default_rng(0).normal(size=(20, loaded.watch.booster.num_feature()))
    np.testing.assert_array_equal(
        loaded.extras["return"].predict(x), with_parts.extras["return"].predict(x)
    )
    xc = np.random.default_rng(1).normal(size=(20, len(loaded.spec.click_names)))
    xc = xc.astype(np.float32)
    for a, b in zip(loaded.extras["click_members"], with_parts.extras["click_members"]):
        np.testing.assert_array_equal(
            a.proba(xc[:, : a.booster.num_feature()]), b.proba(xc[:, : b.booster.num_feature()])
        )
    data = bytearray((path / "return.txt").read_bytes())
    data[-10] ^= 0x01
    (path / "return.txt").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=re.escape(f"{path / 'return.txt'} does not match")):
        Simulator.load(path)


def test_unknown_optional_files_and_roles_are_refused(with_parts, tmp_path) -> None:
    path = with_parts.save(tmp_path / "sim")
    (path / "notes.txt").write_text("hello")

    def extra_file(m: dict[str, Any]) -> None:
        m["files"]["notes.txt"] = sha256_file(path / "notes.txt")

    mpath = _edit(path, extra_file, reseal=True)
    msg = (
        f"{mpath}: the files ['notes.txt'] are neither required files nor listed under an "
        "optional part (required: ['click.txt', 'watch.txt', 'continue.txt', 'items.parquet', "
        f"'users.parquet', 'arrays.npz']; optional parts: {sorted(sio.OPTIONAL_PARTS)})."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(path)

    def unknown_role(m: dict[str, Any]) -> None:
        m["files"].pop("notes.txt")
        m["parts"]["retention"] = m["parts"].pop("return")

    _edit(path, unknown_role, reseal=True)
    msg = (
        f"{mpath}: optional part 'retention' (['return.txt']) is unknown to this simkit "
        f"({__version__}; known parts: {sorted(sio.OPTIONAL_PARTS)}): upgrade simkit to load it"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(path)

    def wrong_role(m: dict[str, Any]) -> None:
        m["parts"]["return"] = m["parts"].pop("retention")
        m["parts"]["return"], m["parts"]["click_members"] = (
            m["parts"]["click_members"],
            m["parts"]["return"],
        )

    _edit(path, wrong_role, reseal=True)
    msg = (
        f"{mpath}: optional part 'click_members' lists ['return.txt'], but its file names must "
        "match 'click_[1-9][0-9]*\\\\.(?:txt|npz)', each once"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(path)


def test_a_new_part_plugs_in_without_a_format_change(tiny_simulator, tmp_path, monkeypatch):
    monkeypatch.setattr(sio, "OPTIONAL_PARTS", dict(sio.OPTIONAL_PARTS))

    def write(obj: dict[str, float], folder: Path) -> list[str]:
        (folder / "retention.json").write_text(json.dumps(obj))
        return ["retention.json"]

    def read(folder: Path, names: Any) -> dict[str, float]:
        return json.loads((folder / "retention.json").read_text())

    sio.register_optional_part(
        sio.OptionalPart(
            role="retention", pattern=r"retention\.json", write=write, read=read, description="t"
        )
    )
    sim = dataclasses.replace(tiny_simulator, extras={"retention": {"alpha": 0.3}})
    loaded = Simulator.load(sim.save(tmp_path / "sim"))
    assert loaded.extras == {"retention": {"alpha": 0.3}}
    assert json.loads((tmp_path / "sim" / "manifest.json").read_text())["format_version"] == 2
    with pytest.raises(ValueError, match="claims the required file names"):
        sio.register_optional_part(
            dataclasses.replace(sio.OPTIONAL_PARTS["return"], role="x", pattern=r"click\.txt")
        )


def test_an_unregistered_extra_is_refused_at_save(tiny_simulator, tmp_path) -> None:
    sim = dataclasses.replace(tiny_simulator, extras={"fatigue": object()})
    msg = (
        "Simulator.extras has 'fatigue', which is not a registered optional part (known: "
        f"{sorted(sio.OPTIONAL_PARTS)}); register it with register_optional_part() first."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        sim.save(tmp_path / "sim")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- sampling


def test_batched_methods_shapes(tiny_simulator) -> None:
    sim = tiny_simulator
    rng = np.random.default_rng(0)
    state = sim.initial_state(sim.sample_users(7, rng=rng, population="new"))
    p = sim.click_proba(state, rng.integers(sim.n_items, size=(7, 4)))
    assert p.shape == (7, 4) and np.all((p > 0) & (p < 1))
    assert sim.continue_proba(state).shape == (7,)


def test_expected_watch_is_the_mean_of_sampled_watch(tiny_simulator) -> None:
    w = tiny_simulator.watch
    pred = np.array([2.0, 3.5, 4.5, 3.0])
    cap = np.array([np.nan, 60.0, 400.0, 5.0])
    draws = np.stack(
        [w.sample_from_prediction(pred, cap, rng=np.random.default_rng(s)) for s in range(4000)]
    )
    mean = w.mean_from_prediction(pred, cap, n_quantiles=512)
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * se + 0.01 * mean)
    assert np.all(draws <= np.where(np.isnan(cap), np.inf, cap))


def test_kaplan_meier_treats_completed_watches_as_censored() -> None:
    from simkit.models import kaplan_meier

    values = np.array([1.0, 2.0, 3.0, 4.0])
    censored = np.array([False, True, False, True])
    support, mass = kaplan_meier(values, censored)
    # S: 3/4 after 1; 2 censored; at 3 two at risk: S = 3/4 * 1/2; the rest lies beyond 4
    np.testing.assert_allclose(support, [1.0, 3.0, np.inf])
    np.testing.assert_allclose(mass, [0.25, 0.375, 0.375])
