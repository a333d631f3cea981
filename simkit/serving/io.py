"""The serving artefact on disk: a sealed, pickle-free folder, and :func:`load_policy`.

A policy folder holds

- ``manifest.json``: format (``simkit-policy``) and version, the agent it came from, the feature
  names and their order (``features.context``, ``features.candidates``), the candidate feature
  spec, the scorer kind and its parameters, the serving-time exploration, the packages scoring
  needs, and the sha256 of every data file; sealed by an integrity record (a sha256 per field,
  :func:`simkit.artifacts.seal`);
- ``arrays.npz``: weights and statistics (read with ``allow_pickle=False``);
- ``click.txt`` / ``watch.txt``: LightGBM text models, for the kinds that score with trees;
- ``SHA256SUMS``: the sha256 of every other file, ``manifest.json`` included, in the format of
  ``sha256sum -c``, so a release pipeline can check the folder without simkit.

Loading checks the seal, the format version, the field types, the exact file set and every hash
before anything is parsed, and never runs code from the folder. It is written through
:func:`simkit.artifacts.atomic_folder`: an interrupted export leaves no half-written policy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.artifacts import (
    atomic_folder,
    check_fields,
    check_file_hashes,
    open_manifest,
    seal,
    sha256_file,
)
from simkit.errors import ArtifactError
from simkit.serving.policy import Exploration, ServedPolicy
from simkit.serving.scorers import build_scorer

__all__ = ["FORMAT", "FORMAT_VERSION", "load_policy", "read_policy_folder", "write_policy_folder"]

FORMAT = "simkit-policy"
FORMAT_VERSION = 1
"""Version of the policy folder layout; loading refuses any other."""

SUMS = "SHA256SUMS"
_FIX = "Export the policy again with 'simkit export RUN_DIR --out POLICY_DIR'."


def _names(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "simkit_version": ("a string", lambda v: isinstance(v, str)),
    "agent": ("a string", lambda v: isinstance(v, str)),
    "features": (
        "an object with lists of names 'context' and 'candidates'",
        lambda v: isinstance(v, dict) and _names(v.get("context")) and _names(v.get("candidates")),
    ),
    "candidate_spec": ("an object", lambda v: isinstance(v, dict)),
    "scorer": (
        "an object with a string 'kind'",
        lambda v: isinstance(v, dict) and isinstance(v.get("kind"), str),
    ),
    "exploration": ("an object", lambda v: isinstance(v, dict)),
    "needs": ("a list of package names", _names),
    "source": ("an object", lambda v: isinstance(v, dict)),
    "files": (
        "an object mapping file names to sha256 strings",
        lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    ),
}


def write_policy_folder(
    path: str | Path,
    *,
    body: Mapping[str, Any],
    arrays: Mapping[str, NDArray[Any]],
    texts: Mapping[str, str],
    overwrite: bool = False,
) -> Path:
    """Write a policy folder atomically; ``body`` is the manifest without files and seal.

    Raises
    ------
    ArtifactError
        When ``path`` exists and ``overwrite`` is false, or is a file or a non-empty folder of
        another kind.
    """
    from simkit import __version__

    path = Path(path)
    with atomic_folder(path, overwrite=overwrite, kind="agent") as tmp:
        np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
        for name, text in texts.items():
            (tmp / name).write_text(text)
        files = {name: sha256_file(tmp / name) for name in ["arrays.npz", *sorted(texts)]}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "simkit_version": __version__,
            **dict(body),
            "files": files,
        }
        plain = json.loads(json.dumps(manifest))
        (tmp / "manifest.json").write_text(json.dumps(seal(plain), indent=2, sort_keys=True))
        sums = {**files, "manifest.json": sha256_file(tmp / "manifest.json")}
        (tmp / SUMS).write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))
    return path


def _check_sums(path: Path, files: Mapping[str, str]) -> None:
    try:
        lines = (path / SUMS).read_text().splitlines()
    except OSError:
        raise ArtifactError(f"{path} is missing {SUMS}; the folder is incomplete. {_FIX}") from None
    listed: dict[str, str] = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        listed[name] = digest
    expected = set(files) | {"manifest.json"}
    if set(listed) != expected:
        raise ArtifactError(
            f"{path / SUMS} must list exactly {sorted(expected)}; got {sorted(listed)}. {_FIX}"
        )
    actual = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    if listed["manifest.json"] != actual:
        raise ArtifactError(
            f"{path / 'manifest.json'} does not match its sha256 in {SUMS}: the manifest was "
            f"changed after export. Refusing to load it. {_FIX}"
        )
    changed = sorted(n for n in files if listed[n] != files[n])
    if changed:
        raise ArtifactError(
            f"{path / SUMS} disagrees with manifest.json on {changed}: one of them was edited. "
            f"{_FIX}"
        )


def read_policy_folder(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, NDArray[Any]], dict[str, str]]:
    """Check a policy folder and return ``(manifest, arrays, texts)``.

    Raises
    ------
    ArtifactError
        A missing folder or file, an edited or truncated manifest, a changed file, an unexpected
        file, another format, or a newer format version.
    """
    path = Path(path)
    manifest = open_manifest(
        path,
        fmt=FORMAT,
        version=FORMAT_VERSION,
        label="serving policy",
        fix=_FIX,
        older_fix="Export it again with this simkit.",
    )
    check_fields(manifest, _FIELDS, path / "manifest.json", _FIX)
    files = manifest["files"]
    check_file_hashes(path, files, _FIX)
    _check_sums(path, files)
    extra = sorted(
        p.name for p in path.iterdir() if p.name not in set(files) | {"manifest.json", SUMS}
    )
    if extra:
        raise ArtifactError(
            f"{path} holds files the manifest does not list: {extra[:5]}; a policy folder holds "
            f"only what 'simkit export' wrote. Remove them or export again."
        )
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    texts = {n: (path / n).read_text() for n in files if n.endswith(".txt")}
    return manifest, arrays, texts


def load_policy(path: str | Path) -> ServedPolicy:
    """Load a policy folder written by ``simkit export`` as a :class:`ServedPolicy`.

    Only the packages the policy's scorer needs are imported (numpy for the linear, ensemble,
    two-tower and MLP kinds; LightGBM in addition for the tree kinds).

    Parameters
    ----------
    path : str or Path
        The policy folder.

    Returns
    -------
    ServedPolicy

    Raises
    ------
    ArtifactError
        When the folder is damaged, edited, incomplete, of another format or of a newer format
        version (see :func:`read_policy_folder`).

    Examples
    --------
    >>> policy = load_policy("policy/")                                    # doctest: +SKIP
    >>> decision = policy.rank(context, candidates, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> decision.items, decision.propensity                                # doctest: +SKIP
    """
    path = Path(path)
    manifest, arrays, texts = read_policy_folder(path)
    try:
        exploration = Exploration(**manifest["exploration"])
        scorer = build_scorer(manifest["scorer"], arrays, texts)
    except (TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(
            f"{path / 'manifest.json'}: the scorer or exploration settings cannot be read ({exc}). "
            f"{_FIX}"
        ) from None
    policy_id = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    return ServedPolicy(
        scorer,
        manifest["features"]["context"],
        manifest["features"]["candidates"],
        exploration,
        policy_id,
        manifest,
    )
