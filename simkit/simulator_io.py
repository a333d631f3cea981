"""Saving and loading simulator folders (format described in :mod:`simkit.simulator`).

Saving writes into a temporary sibling folder and renames it into place
(:func:`simkit.artifacts.atomic_folder`), so an interrupted save never leaves a half-written
simulator at the target path. Loading checks the manifest's integrity record, format version and
field types, the exact file set, plain names and every file's sha256 before anything is parsed; it
reads only JSON, LightGBM text, parquet and ``.npz`` with ``allow_pickle=False``.

Optional model parts
--------------------
Beside the fixed files, a simulator may carry optional models (a return-time model, click ensemble
members, ...). Each is an :class:`OptionalPart` in :data:`OPTIONAL_PARTS`: a role (the key in
``Simulator.extras``), a pattern of the file names it owns, a writer and a reader. The manifest's
``parts`` maps each role present to its files, which are hashed with the others; a folder without
parts loads as before, and a role or file name this simkit does not know is refused. A new model
plugs in by registering a part, without a format version change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from simkit import __version__
from simkit.artifacts import (
    atomic_folder,
    check_fields,
    check_file_hashes,
    is_plain_name,
    open_manifest,
    seal,
    sha256_file,
)
from simkit.errors import ArtifactError
from simkit.models import BinaryResponse, WatchResponse
from simkit.simulator import FORMAT_VERSION, Simulator, UserTable
from simkit.state import Catalogue, Dynamics, FeatureSpec

__all__ = [
    "DATA_FILES",
    "OPTIONAL_PARTS",
    "OptionalPart",
    "load_simulator",
    "register_optional_part",
    "save_simulator",
]

FORMAT = "simkit-simulator"

DATA_FILES = (
    "click.txt",
    "watch.txt",
    "continue.txt",
    "items.parquet",
    "users.parquet",
    "arrays.npz",
)
"""The files of a simulator folder besides ``manifest.json``; ``watch.txt`` and ``continue.txt``
are left out when the simulator has no such model (see :data:`ABSENT_MODEL_FILES`)."""

ABSENT_MODEL_FILES = {"watch_model": "watch.txt", "continuation_model": "continue.txt"}
"""``config`` flag -> file: a simulator fitted on logs without dwell time has no watch model
(``config["watch_model"] = false``), one fitted on one decision per session no continuation model
(``config["continuation_model"] = false``); their files are then absent."""


def _required_files(config: Any) -> tuple[str, ...]:
    config = config if isinstance(config, dict) else {}
    absent = {f for flag, f in ABSENT_MODEL_FILES.items() if config.get(flag) is False}
    return tuple(n for n in DATA_FILES if n not in absent)


_FIX = "Fit the simulator again, or copy the folder again from its source."


# --------------------------------------------------------------------------- optional parts


@dataclass(frozen=True, kw_only=True)
class OptionalPart:
    """An optional model stored beside the required files.

    Parameters
    ----------
    role : str
        Key of the object in ``Simulator.extras`` and in the manifest's ``parts``.
    pattern : str
        Regular expression that every file name of this part matches in full.
    write : callable
        ``write(obj, folder) -> file names`` writes the part's files into ``folder``.
    read : callable
        ``read(folder, file_names) -> obj`` builds the object from its (already hash-checked) files.
    description : str
        One line for messages and docs.
    """

    role: str
    pattern: str
    write: Callable[[Any, Path], Sequence[str]]
    read: Callable[[Path, Sequence[str]], Any]
    description: str

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one of this part's file names."""
        return re.fullmatch(self.pattern, name) is not None


OPTIONAL_PARTS: dict[str, OptionalPart] = {}
"""Registered optional parts, by role."""


def register_optional_part(part: OptionalPart) -> OptionalPart:
    """Make ``part`` savable and loadable; returns it.

    Raises
    ------
    ValueError
        When the role is taken or the pattern claims a required file name.
    """
    clash = [n for n in (*DATA_FILES, "manifest.json") if part.owns(n)]
    if part.role in OPTIONAL_PARTS or clash:
        raise ValueError(
            f"Optional part {part.role!r} clashes with an existing role or claims the required "
            f"file names {clash}; choose another role and pattern."
        )
    OPTIONAL_PARTS[part.role] = part
    return part


def _write_return(model: Any, folder: Path) -> list[str]:
    """A :class:`simkit.returns.ReturnModel` (booster + arrays), or a bare booster."""
    if isinstance(model, lgb.Booster):
        (folder / "return.txt").write_text(model.model_to_string())
        return ["return.txt"]
    (folder / "return.txt").write_text(model.booster.model_to_string())
    np.savez(folder / "return.npz", **model.to_arrays())
    return ["return.txt", "return.npz"]


def _read_return(folder: Path, names: Sequence[str]) -> Any:
    from simkit.returns import ReturnModel

    if sorted(names) == ["return.txt"]:
        return _booster(folder / "return.txt")
    if sorted(names) != ["return.npz", "return.txt"]:
        raise ArtifactError(
            f"{folder / 'manifest.json'}: part 'return' must list return.txt and return.npz; got "
            f"{sorted(names)}. {_FIX}"
        )
    with np.load(folder / "return.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    try:
        return ReturnModel.from_arrays(_booster(folder / "return.txt"), arrays)
    except ValueError as err:
        raise ArtifactError(f"{folder / 'return.npz'}: {err}. {_FIX}") from None


def _write_click_members(members: Sequence[BinaryResponse], folder: Path) -> list[str]:
    names = []
    for i, member in enumerate(members, start=1):
        (folder / f"click_{i}.txt").write_text(member.booster.model_to_string())
        np.savez(folder / f"click_{i}.npz", calib_x=member.calib_x, calib_y=member.calib_y)
        names += [f"click_{i}.txt", f"click_{i}.npz"]
    return names


def _read_click_members(folder: Path, names: Sequence[str]) -> tuple[BinaryResponse, ...]:
    n = len(names) // 2
    expected = {f"click_{i}.{ext}" for i in range(1, n + 1) for ext in ("txt", "npz")}
    if set(names) != expected:
        raise ArtifactError(
            f"{folder / 'manifest.json'}: part 'click_members' must list click_1.txt, click_1.npz, "
            f"... click_N.txt, click_N.npz; got {sorted(names)}. {_FIX}"
        )
    members = []
    for i in range(1, n + 1):
        with np.load(folder / f"click_{i}.npz", allow_pickle=False) as npz:
            calib_x, calib_y = npz["calib_x"], npz["calib_y"]
        members.append(BinaryResponse(_booster(folder / f"click_{i}.txt"), calib_x, calib_y))
    return tuple(members)


def _write_watch_members(members: Sequence[WatchResponse], folder: Path) -> list[str]:
    names = []
    for i, m in enumerate(members, start=1):
        (folder / f"watch_{i}.txt").write_text(m.booster.model_to_string())
        np.savez(
            folder / f"watch_{i}.npz",
            bin_edges=m.bin_edges,
            residuals=m.residuals,
            cumulative=m.cumulative,
        )
        names += [f"watch_{i}.txt", f"watch_{i}.npz"]
    return names


def _read_watch_members(folder: Path, names: Sequence[str]) -> tuple[WatchResponse, ...]:
    members = []
    for i, arrays in _member_files(folder, names, "watch"):
        members.append(WatchResponse(_booster(folder / f"watch_{i}.txt"), **arrays))
    return tuple(members)


def _write_continue_members(members: Sequence[BinaryResponse], folder: Path) -> list[str]:
    names = []
    for i, m in enumerate(members, start=1):
        (folder / f"continue_{i}.txt").write_text(m.booster.model_to_string())
        np.savez(folder / f"continue_{i}.npz", calib_x=m.calib_x, calib_y=m.calib_y)
        names += [f"continue_{i}.txt", f"continue_{i}.npz"]
    return names


def _read_continue_members(folder: Path, names: Sequence[str]) -> tuple[BinaryResponse, ...]:
    return tuple(
        BinaryResponse(_booster(folder / f"continue_{i}.txt"), a["calib_x"], a["calib_y"])
        for i, a in _member_files(folder, names, "continue")
    )


def _member_files(
    folder: Path, names: Sequence[str], stem: str
) -> list[tuple[int, dict[str, Any]]]:
    """Member number and ``.npz`` arrays of ``stem_1.txt``, ``stem_1.npz``, ... (checked set)."""
    n = len(names) // 2
    if set(names) != {f"{stem}_{i}.{ext}" for i in range(1, n + 1) for ext in ("txt", "npz")}:
        raise ArtifactError(
            f"{folder / 'manifest.json'}: part '{stem}_members' must list {stem}_1.txt, "
            f"{stem}_1.npz, ... {stem}_N.txt, {stem}_N.npz; got {sorted(names)}. {_FIX}"
        )
    out = []
    for i in range(1, n + 1):
        with np.load(folder / f"{stem}_{i}.npz", allow_pickle=False) as npz:
            out.append((i, {k: npz[k] for k in npz.files}))
    return out


register_optional_part(
    OptionalPart(
        role="return",
        pattern=r"return\.(?:txt|npz)",
        write=_write_return,
        read=_read_return,
        description="hazard model (LightGBM text) and arrays of the time until the next session",
    )
)
register_optional_part(
    OptionalPart(
        role="click_members",
        pattern=r"click_[1-9][0-9]*\.(?:txt|npz)",
        write=_write_click_members,
        read=_read_click_members,
        description="click-model ensemble members (LightGBM text + calibration knots each)",
    )
)
register_optional_part(
    OptionalPart(
        role="watch_members",
        pattern=r"watch_[1-9][0-9]*\.(?:txt|npz)",
        write=_write_watch_members,
        read=_read_watch_members,
        description="watch-time ensemble members (LightGBM text + residual pools each)",
    )
)
register_optional_part(
    OptionalPart(
        role="continue_members",
        pattern=r"continue_[1-9][0-9]*\.(?:txt|npz)",
        write=_write_continue_members,
        read=_read_continue_members,
        description="continuation ensemble members (LightGBM text + calibration knots each)",
    )
)


# --------------------------------------------------------------------------- saving


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_files(sim: Simulator, folder: Path) -> None:
    cat = sim.catalogue
    d = cat.dim
    for name, model in (
        ("click.txt", sim.click),
        ("watch.txt", sim.watch),
        ("continue.txt", sim.cont),
    ):
        if model is not None:
            (folder / name).write_text(model.booster.model_to_string())
    n_items = len(cat.item_ids)
    items = pd.DataFrame({"item_id": cat.item_ids})
    for k in range(d):
        items[f"emb_{k}"] = cat.embedding[:n_items, k]
    for j, name in enumerate(sim.spec.item_columns):
        items[f"x_{name}"] = cat.features[:n_items, j]
    items["duration"] = cat.duration[:n_items]
    items["log_popularity"] = cat.log_popularity[:n_items]
    items.to_parquet(folder / "items.parquet", index=False)
    users = pd.DataFrame({"user_id": sim.users.user_ids})
    for k in range(d):
        users[f"z0_{k}"] = sim.users.z0[:, k]
    users["hist_n"] = sim.users.hist_n
    for j, name in enumerate(sim.spec.user_columns):
        users[f"x_{name}"] = sim.users.features[:, j]
    users.to_parquet(folder / "users.parquet", index=False)
    arrays = {
        "mixture_weights": sim.mixture_weights,
        "mixture_means": sim.mixture_means,
        "mixture_chol": sim.mixture_chol,
        "click_calib_x": sim.click.calib_x,
        "click_calib_y": sim.click.calib_y,
        "stand_in_embedding": cat.embedding[n_items],
    }
    if sim.cont is not None:
        arrays["continue_calib_x"] = sim.cont.calib_x
        arrays["continue_calib_y"] = sim.cont.calib_y
    if sim.watch is not None:
        arrays["watch_bin_edges"] = sim.watch.bin_edges
        arrays["watch_residuals"] = sim.watch.residuals
        arrays["watch_cumulative"] = sim.watch.cumulative
    if sim.position_bias is not None:
        arrays["position_bias"] = sim.position_bias
    np.savez(folder / "arrays.npz", **arrays)


def _write_parts(extras: dict[str, Any], folder: Path) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {}
    extras = {k: v for k, v in extras.items() if v is not None}
    claimed: set[str] = set(DATA_FILES)
    for role, obj in sorted(extras.items()):
        part = OPTIONAL_PARTS.get(role)
        if part is None:
            raise ArtifactError(
                f"Simulator.extras has {role!r}, which is not a registered optional part (known: "
                f"{sorted(OPTIONAL_PARTS)}); register it with register_optional_part() first."
            )
        names = list(part.write(obj, folder))
        bad = [n for n in names if not part.owns(n) or n in claimed or not is_plain_name(n)]
        if not names or bad:
            raise ArtifactError(
                f"Optional part {role!r} wrote {names}; each name must match {part.pattern!r} and "
                f"be used once (bad: {bad}). Fix the part's writer."
            )
        claimed.update(names)
        parts[role] = sorted(names)
    return parts


def save_simulator(sim: Simulator, path: Path, *, overwrite: bool = False) -> Path:
    """Write ``sim`` to ``path`` atomically; see :meth:`simkit.simulator.Simulator.save`."""
    config = {
        **sim.config,
        "watch_model": sim.watch is not None,
        "continuation_model": sim.cont is not None,
    }
    with atomic_folder(path, overwrite=overwrite, kind="simulator") as tmp:
        _write_files(sim, tmp)
        parts = _write_parts(sim.extras, tmp)
        names = [*_required_files(config), *(n for files in parts.values() for n in files)]
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "simkit_version": __version__,
            "dynamics": sim.dynamics.to_json(),
            "embedding_dim": sim.catalogue.dim,
            "user_columns": list(sim.spec.user_columns),
            "item_columns": list(sim.spec.item_columns),
            "click_feature_names": list(sim.spec.click_names),
            "continue_feature_names": list(sim.spec.continue_names),
            "categories": sim.categories,
            "schema": sim.schema,
            "config": config,
            "metrics": sim.metrics,
            "files": {name: sha256_file(tmp / name) for name in names},
            "parts": parts,
        }
        # through JSON once, so the seal hashes exactly what a reader parses
        plain = json.loads(json.dumps(body, default=_json_default))
        (tmp / "manifest.json").write_text(json.dumps(seal(plain), indent=2, sort_keys=True))
    return path


# --------------------------------------------------------------------------- loading


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "simkit_version": ("a string", lambda v: isinstance(v, str)),
    "dynamics": ("an object", lambda v: isinstance(v, dict)),
    "embedding_dim": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "user_columns": ("an array of strings", _str_list),
    "item_columns": ("an array of strings", _str_list),
    "click_feature_names": ("an array of strings", _str_list),
    "continue_feature_names": ("an array of strings", _str_list),
    "categories": (
        "an object of arrays",
        lambda v: isinstance(v, dict) and all(isinstance(x, list) for x in v.values()),
    ),
    "schema": ("an object", lambda v: isinstance(v, dict)),
    "config": ("an object", lambda v: isinstance(v, dict)),
    "metrics": ("an object", lambda v: isinstance(v, dict)),
    "files": (
        "an object of sha256 hex strings",
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(x, str) and re.fullmatch("[0-9a-f]{64}", x) for x in v.values())
        ),
    ),
    "parts": (
        "an object of arrays of file names",
        lambda v: isinstance(v, dict) and all(_str_list(x) for x in v.values()),
    ),
}


def _check_file_set(
    mpath: Path,
    files: dict[str, str],
    parts: dict[str, list[str]],
    required: tuple[str, ...] = DATA_FILES,
) -> None:
    problems = []
    missing = sorted(set(required) - set(files))
    if missing:
        problems.append(f"the required files {missing} are not listed")
    listed = set(required)
    for role, names in sorted(parts.items()):
        part = OPTIONAL_PARTS.get(role)
        if part is None:
            problems.append(
                f"optional part {role!r} ({names}) is unknown to this simkit ({__version__}; "
                f"known parts: {sorted(OPTIONAL_PARTS)}): upgrade simkit to load it"
            )
            continue
        wrong = [n for n in names if not part.owns(n) or n in listed]
        if wrong or not names:
            problems.append(
                f"optional part {role!r} lists {names}, but its file names must match "
                f"{part.pattern!r}, each once"
            )
        listed.update(names)
        problems += [
            f"{n!r} of part {role!r} has no sha256 in 'files'" for n in names if n not in files
        ]
    unknown = sorted(set(files) - listed)
    if unknown:
        problems.append(
            f"the files {unknown} are neither required files nor listed under an optional part "
            f"(required: {list(DATA_FILES)}; optional parts: {sorted(OPTIONAL_PARTS)})"
        )
    if problems:
        raise ArtifactError(
            f"{mpath}: {'; '.join(problems)}. The folder is damaged or was not written by this "
            f"simkit. {_FIX}"
        )


def _check_manifest(path: Path) -> dict[str, Any]:
    fix = _FIX if path.is_dir() else "Fit one with 'simkit fit LOGS --out DIR' or check the path."
    m = open_manifest(
        path,
        fmt=FORMAT,
        version=FORMAT_VERSION,
        label="simulator",
        fix=fix,
        older_fix="Refit the simulator with 'simkit fit' (the state's dynamics are now stored as "
        "one record).",
    )
    mpath = path / "manifest.json"
    check_fields(m, _FIELDS, mpath, _FIX)
    _check_file_set(mpath, m["files"], m["parts"], _required_files(m["config"]))
    check_file_hashes(path, m["files"], _FIX)
    return m


def _booster(path: Path) -> lgb.Booster:
    return lgb.Booster(model_str=path.read_text())


def load_simulator(path: Path) -> Simulator:
    """Load the folder at ``path``; see :meth:`simkit.simulator.Simulator.load`."""
    m = _check_manifest(path)
    mpath = path / "manifest.json"
    d = m["embedding_dim"]
    spec = FeatureSpec(
        user_columns=tuple(m["user_columns"]), item_columns=tuple(m["item_columns"]), dim=d
    )
    for field, names in (
        ("click_feature_names", spec.click_names),
        ("continue_feature_names", spec.continue_names),
    ):
        if tuple(m[field]) != tuple(names):
            raise ArtifactError(
                f"{mpath}: field {field!r} does not match this simkit's state layout; the "
                "simulator was written by an incompatible version: fit it again."
            )
    try:
        dynamics = Dynamics.from_json(m["dynamics"])
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{mpath}: field 'dynamics' is invalid ({exc}). {_FIX}") from None
    try:
        return _read_simulator(path, m, spec, dynamics)
    except (KeyError, ValueError, lgb.basic.LightGBMError) as exc:
        raise ArtifactError(
            f"{path}: the data files do not agree with manifest.json ({type(exc).__name__}: "
            f"{exc}); the folder was not written by this simkit. {_FIX}"
        ) from None


def _read_simulator(
    path: Path, m: dict[str, Any], spec: FeatureSpec, dynamics: Dynamics
) -> Simulator:
    d = spec.dim
    items = pd.read_parquet(path / "items.parquet")
    users = pd.read_parquet(path / "users.parquet")
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    emb = np.vstack(
        [items[[f"emb_{k}" for k in range(d)]].to_numpy(), arrays["stand_in_embedding"]]
    )
    feat_cols = [f"x_{c}" for c in spec.item_columns]
    feats = np.empty((len(items), 0), np.float32)
    if feat_cols:
        feats = items[feat_cols].to_numpy(dtype=np.float32)
    feats = np.vstack([feats, np.full((1, feats.shape[1]), np.nan, np.float32)]).astype(np.float32)
    catalogue = Catalogue(
        item_ids=items["item_id"].to_numpy(),
        embedding=emb,
        features=feats,
        duration=np.r_[items["duration"].to_numpy(dtype=np.float64), np.nan],
        log_popularity=np.r_[items["log_popularity"].to_numpy(dtype=np.float32), 0.0].astype(
            np.float32
        ),
    )
    ufeat_cols = [f"x_{c}" for c in spec.user_columns]
    table = UserTable(
        user_ids=users["user_id"].to_numpy(),
        z0=users[[f"z0_{k}" for k in range(d)]].to_numpy(),
        hist_n=users["hist_n"].to_numpy(),
        features=users[ufeat_cols].to_numpy(dtype=np.float32)
        if ufeat_cols
        else np.empty((len(users), 0), np.float32),
    )
    extras = {role: OPTIONAL_PARTS[role].read(path, names) for role, names in m["parts"].items()}
    required = _required_files(m["config"])
    return Simulator(
        spec=spec,
        catalogue=catalogue,
        users=table,
        mixture_weights=arrays["mixture_weights"],
        mixture_means=arrays["mixture_means"],
        mixture_chol=arrays["mixture_chol"],
        click=BinaryResponse(
            _booster(path / "click.txt"), arrays["click_calib_x"], arrays["click_calib_y"]
        ),
        watch=WatchResponse(
            booster=_booster(path / "watch.txt"),
            bin_edges=arrays["watch_bin_edges"],
            residuals=arrays["watch_residuals"],
            cumulative=arrays["watch_cumulative"],
        )
        if "watch.txt" in required
        else None,
        cont=BinaryResponse(
            _booster(path / "continue.txt"),
            arrays["continue_calib_x"],
            arrays["continue_calib_y"],
        )
        if "continue.txt" in required
        else None,
        dynamics=dynamics,
        categories=m["categories"],
        config=m["config"],
        metrics=m["metrics"],
        schema=m["schema"],
        position_bias=arrays.get("position_bias"),
        extras=extras,
    )


# the per-step context model registers its part (imported last: it imports this module)
import simkit.context  # noqa: E402,F401
