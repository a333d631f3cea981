"""Saving and loading simulator folders (format described in :mod:`simkit.simulator`).

Saving writes into a temporary sibling folder and renames it into place, so an interrupted save
never leaves a half-written simulator at the target path. Loading reads only JSON, LightGBM text,
parquet and ``.npz`` with ``allow_pickle=False``, after checking every file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from simkit import __version__
from simkit.errors import ArtifactError
from simkit.models import BinaryResponse, WatchResponse
from simkit.simulator import FORMAT_VERSION, Simulator, UserTable
from simkit.state import Catalogue, FeatureSpec

__all__ = ["load_simulator", "save_simulator"]

DATA_FILES = (
    "click.txt",
    "watch.txt",
    "continue.txt",
    "items.parquet",
    "users.parquet",
    "arrays.npz",
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_files(sim: Simulator, folder: Path) -> dict[str, str]:
    cat = sim.catalogue
    d = cat.dim
    for name, booster in (
        ("click.txt", sim.click.booster),
        ("watch.txt", sim.watch.booster),
        ("continue.txt", sim.cont.booster),
    ):
        (folder / name).write_text(booster.model_to_string())
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
        "continue_calib_x": sim.cont.calib_x,
        "continue_calib_y": sim.cont.calib_y,
        "watch_bin_edges": sim.watch.bin_edges,
        "watch_residuals": sim.watch.residuals,
        "watch_cumulative": sim.watch.cumulative,
        "stand_in_embedding": cat.embedding[n_items],
    }
    if sim.position_bias is not None:
        arrays["position_bias"] = sim.position_bias
    np.savez(folder / "arrays.npz", **arrays)
    return {name: _sha256(folder / name) for name in DATA_FILES}


def save_simulator(sim: Simulator, path: Path, *, overwrite: bool = False) -> Path:
    """Write ``sim`` to ``path`` atomically; see :meth:`simkit.simulator.Simulator.save`."""
    if path.exists() and not overwrite:
        raise ArtifactError(
            f"Simulator folder {path} already exists; refusing to overwrite it. Pass "
            "overwrite=True (CLI: --overwrite) or choose another path."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        hashes = _write_files(sim, tmp)
        manifest = {
            "format_version": FORMAT_VERSION,
            "simkit_version": __version__,
            "eta": sim.eta,
            "watch_scale": sim.watch_scale,
            "embedding_dim": sim.catalogue.dim,
            "user_columns": list(sim.spec.user_columns),
            "item_columns": list(sim.spec.item_columns),
            "click_feature_names": list(sim.spec.click_names),
            "continue_feature_names": list(sim.spec.continue_names),
            "categories": sim.categories,
            "schema": sim.schema,
            "config": sim.config,
            "metrics": sim.metrics,
            "files": hashes,
        }
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, indent=2, default=_json_default, sort_keys=True)
        )
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _check_manifest(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise ArtifactError(
            f"Simulator folder {path} does not exist or is not a folder; fit one with "
            "'simkit fit LOGS --out DIR' or check the path."
        )
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{path} has no manifest.json, so it is not a simulator folder; point at the folder "
            "that 'simkit fit' wrote."
        ) from None
    except json.JSONDecodeError as err:
        raise ArtifactError(
            f"{path / 'manifest.json'} is not valid JSON ({err.msg} at line {err.lineno}); the "
            "folder is damaged: fit the simulator again."
        ) from None
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has simulator format version {version!r}, but this simkit "
            f"({__version__}) reads versions up to {FORMAT_VERSION}; upgrade simkit to load it."
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(DATA_FILES):
        raise ArtifactError(
            f"{path / 'manifest.json'} must list exactly the files {sorted(DATA_FILES)}; got "
            f"{sorted(files) if isinstance(files, dict) else files!r}. The folder is damaged or "
            "was not written by simkit."
        )
    for name, digest in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise ArtifactError(
                f"{path / 'manifest.json'} names the file {name!r}, which is not a plain file "
                "name inside the folder; refusing to load a manifest that points elsewhere."
            )
        target = path / name
        if not target.is_file():
            raise ArtifactError(
                f"{path} is missing {name}; the folder is incomplete: copy it again or fit again."
            )
        if _sha256(target) != digest:
            raise ArtifactError(
                f"{target} does not match the sha256 in the manifest: the file was changed after "
                "saving. Refusing to load it; fit the simulator again or restore the file."
            )
    return manifest


def _booster(path: Path) -> lgb.Booster:
    return lgb.Booster(model_str=path.read_text())


def load_simulator(path: Path) -> Simulator:
    """Load the folder at ``path``; see :meth:`simkit.simulator.Simulator.load`."""
    m = _check_manifest(path)
    d = int(m["embedding_dim"])
    spec = FeatureSpec(
        user_columns=tuple(m["user_columns"]), item_columns=tuple(m["item_columns"]), dim=d
    )
    if tuple(m["click_feature_names"]) != spec.click_names:
        raise ArtifactError(
            f"{path / 'manifest.json'}: the click feature names do not match this simkit's state "
            "layout; the simulator was written by an incompatible version: fit it again."
        )
    items = pd.read_parquet(path / "items.parquet")
    users = pd.read_parquet(path / "users.parquet")
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    emb = np.vstack(
        [items[[f"emb_{k}" for k in range(d)]].to_numpy(), arrays["stand_in_embedding"]]
    )
    feat_cols = [f"x_{c}" for c in spec.item_columns]
    feats = items[feat_cols].to_numpy(dtype=np.float32) if feat_cols else np.empty((len(items), 0))
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
        ),
        cont=BinaryResponse(
            _booster(path / "continue.txt"),
            arrays["continue_calib_x"],
            arrays["continue_calib_y"],
        ),
        eta=float(m["eta"]),
        watch_scale=m.get("watch_scale"),
        categories=m.get("categories", {}),
        config=m.get("config", {}),
        metrics=m.get("metrics", {}),
        schema=m.get("schema", {}),
        position_bias=arrays.get("position_bias"),
    )
