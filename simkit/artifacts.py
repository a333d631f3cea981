"""On-disk artifacts, written once: hashes, sealed manifests, atomic folders, output checks.

Simulator folders (:mod:`simkit.simulator_io`) and agent folders (:mod:`simkit.agents.base`) share
this module:

- :func:`sha256_file` hashes the data files listed in a manifest.
- :func:`seal` adds an ``integrity`` record to a manifest: the sha256 of each top-level field's
  canonical JSON (sorted keys, no whitespace). :func:`open_manifest` checks it before anything else,
  so an edited field (``eta`` inside ``dynamics``, a feature name, a version) is named in the error.
  This detects edits and damage, not forgery: whoever can recompute a hash can rewrite a manifest.
  The record's layout is the same in every format version, so a genuinely newer folder is told
  apart from an edited one.
- :func:`atomic_folder` writes into a temporary sibling ``.NAME.<host>-<pid>-<random>.partial``,
  fsyncs it and renames it into place; an existing ``NAME`` is renamed to ``.NAME.<...>.old`` first
  and removed only once the new folder is in place. The next save (or :func:`check_output_folder`)
  removes the leftovers of a save that was killed (only those whose owner process is gone) and puts
  back a ``NAME`` that a kill between the two renames left only as ``.old``.
- Folders get the mode ``mkdir`` gives under the user's umask (``0o777 & ~umask``), files
  ``0o666 & ~umask``: the umask is read from the mode of the freshly made temporary folder, never by
  setting it (``os.umask`` changes the whole process's umask, and other threads may be creating files).
- :func:`check_output_folder` and :func:`check_output_file` let the CLI refuse a bad ``--out`` before
  any work.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simkit.errors import ArtifactError

__all__ = [
    "INTEGRITY_SCHEME",
    "atomic_folder",
    "canonical_json",
    "check_fields",
    "check_file_hashes",
    "check_output_file",
    "check_output_folder",
    "clean_leftovers",
    "is_plain_name",
    "json_type",
    "open_manifest",
    "seal",
    "sha256_file",
]

INTEGRITY_SCHEME = "sha256-canonical-json-fields"
"""Name of the manifest integrity scheme; kept in every format version."""

_KINDS = {
    # kind: (what the messages call it, files any one of which marks a folder of that kind)
    "simulator": ("simulator", ("manifest.json",)),
    "agent": ("agent", ("manifest.json",)),
    "run": ("run", ("run.json", "agent")),
}
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no whitespace (the text a seal hashes).

    Examples
    --------
    >>> canonical_json({"b": [1, 2.5], "a": None})
    '{"a":null,"b":[1,2.5]}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _field_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def seal(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the JSON-ready manifest ``body`` with its ``integrity`` record added.

    Examples
    --------
    >>> sealed = seal({"format_version": 2})
    >>> sealed["integrity"]["scheme"], sorted(sealed["integrity"]["fields"])
    ('sha256-canonical-json-fields', ['format_version'])
    """
    fields = {k: _field_hash(v) for k, v in body.items() if k != "integrity"}
    return {**body, "integrity": {"scheme": INTEGRITY_SCHEME, "fields": fields}}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type ("object", "array", "string", ...)."""
    for py, name in (
        (bool, "boolean"),
        (dict, "object"),
        (list, "array"),
        (str, "string"),
        ((int, float), "number"),
    ):
        if isinstance(value, py):
            return name
    return "null" if value is None else type(value).__name__


def _names(keys: Sequence[str]) -> str:
    return ", ".join(repr(k) for k in keys)


def open_manifest(
    folder: Path, *, fmt: str, version: int, label: str, fix: str, older_fix: str
) -> dict[str, Any]:
    """Read ``folder/manifest.json``, check its seal, format and version; return it.

    Parameters
    ----------
    folder : Path
        The saved folder.
    fmt : str
        Expected ``format`` field (e.g. ``"simkit-agent"``).
    version : int
        The format version this simkit reads.
    label : str
        What the folder holds, for messages ("simulator", "agent").
    fix : str
        Sentence telling how to recover from a damaged folder.
    older_fix : str
        Sentence telling how to recover from a folder of an older format version.

    Raises
    ------
    ArtifactError
        Missing folder or manifest, invalid or truncated JSON, not a JSON object, an integrity
        record that is missing or does not match, another format, or another version.
    """
    mpath = folder / "manifest.json"
    if not folder.is_dir():
        why = "is a file, not a folder" if folder.exists() else "does not exist"
        stranded = _stranded_olds(folder)
        hint = (
            f" A save was interrupted: the previous folder is in {stranded[-1]}; saving again "
            "to this path restores it, or rename it back by hand."
            if stranded and not folder.exists()
            else ""
        )
        raise ArtifactError(
            f"{folder} is not a saved {label}: cannot read manifest.json because {folder} {why}."
            f"{hint} {fix}"
        )
    try:
        raw = mpath.read_bytes()
    except OSError as exc:
        raise ArtifactError(
            f"{folder} is not a saved {label}: cannot read manifest.json ({exc.strerror}). "
            f"Point at the folder simkit wrote. {fix}"
        ) from None
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        if not raw.rstrip().endswith((b"}", b"]")):
            what = f"ends in the middle of the JSON (truncated after {len(raw)} bytes)"
        elif isinstance(exc, json.JSONDecodeError):
            what = f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        else:
            what = "is not valid UTF-8 JSON"
        raise ArtifactError(f"{mpath} {what}; the folder is damaged. {fix}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(
            f"{mpath} must hold a JSON object; got a JSON {json_type(manifest)}. The folder is "
            f"damaged or was not written by simkit. {fix}"
        )
    from simkit import __version__

    found: Any = manifest.get("format_version")
    is_int = isinstance(found, int) and not isinstance(found, bool)
    newer = (
        f"{folder} has {label} format version {found}, but this simkit ({__version__}) reads "
        f"versions up to {version}; upgrade simkit to load it."
    )
    older = (
        f"{folder} has {label} format version {found}, written by an older simkit; this simkit "
        f"({__version__}) reads version {version}. {older_fix}"
    )
    integrity = manifest.get("integrity")
    if integrity is None:
        if is_int and found < version:
            raise ArtifactError(older)
        raise ArtifactError(
            f"{mpath} has no integrity record (field 'integrity'), so its fields cannot be "
            f"checked: it was edited or not written by simkit. {fix}"
        )
    if isinstance(integrity, dict) and integrity.get("scheme") != INTEGRITY_SCHEME and is_int:
        if found > version:
            raise ArtifactError(newer)
    fields = integrity.get("fields") if isinstance(integrity, dict) else None
    if (
        not isinstance(integrity, dict)
        or integrity.get("scheme") != INTEGRITY_SCHEME
        or not isinstance(fields, dict)
        or not all(isinstance(v, str) for v in fields.values())
    ):
        raise ArtifactError(
            f"{mpath}: field 'integrity' must be an object with scheme {INTEGRITY_SCHEME!r} and "
            f"a sha256 per field; got {canonical_json(integrity)[:80]}. {fix}"
        )
    _check_seal(manifest, fields, mpath, fix)
    if manifest.get("format") != fmt:
        raise ArtifactError(
            f"{mpath} must have format {fmt!r}; got {manifest.get('format')!r}: this folder does "
            f"not hold a {label}. {fix}"
        )
    if not is_int:
        raise ArtifactError(
            f"{mpath}: field 'format_version' must be an integer; got {found!r}. {fix}"
        )
    if found > version:
        raise ArtifactError(newer)
    if found < version:
        raise ArtifactError(older)
    return manifest


def _check_seal(manifest: dict[str, Any], fields: dict[str, str], mpath: Path, fix: str) -> None:
    body = [k for k in manifest if k != "integrity"]
    changed = sorted(k for k in body if k in fields and _field_hash(manifest[k]) != fields[k])
    missing = sorted(set(fields) - set(body))
    added = sorted(set(body) - set(fields))
    problems = []
    if changed:
        verb = "does" if len(changed) == 1 else "do"
        s = "" if len(changed) == 1 else "s"
        problems.append(
            f"field{s} {_names(changed)} {verb} not match {'its' if len(changed) == 1 else 'their'}"
            " sha256 in the integrity record"
        )
    if missing:
        problems.append(f"field(s) {_names(missing)} listed in the integrity record are missing")
    if added:
        problems.append(f"field(s) {_names(added)} are not in the integrity record")
    if problems:
        raise ArtifactError(
            f"{mpath}: {'; '.join(problems)}: the manifest was edited after saving. Refusing to "
            f"load it; restore the original manifest.json. {fix}"
        )


def check_fields(
    manifest: Mapping[str, Any], table: Mapping[str, tuple[str, Any]], mpath: Path, fix: str
) -> None:
    """Check each field's JSON type; ``table`` maps field -> (description, predicate).

    Raises
    ------
    ArtifactError
        Listing every missing or wrong-typed field at once.
    """
    problems = []
    for name, (what, ok) in table.items():
        if name not in manifest:
            problems.append(f"field {name!r} is missing")
        elif not ok(manifest[name]):
            problems.append(
                f"field {name!r} must be {what}; got a JSON {json_type(manifest[name])} "
                f"{canonical_json(manifest[name])[:40]}"
            )
    if problems:
        raise ArtifactError(f"{mpath}: {'; '.join(problems)}. {fix}")


def check_file_hashes(folder: Path, files: Mapping[str, str], fix: str) -> None:
    """Check that each listed plain file name exists in ``folder`` with its sha256.

    Raises
    ------
    ArtifactError
        An unsafe name, a missing file, or changed bytes.
    """
    for name, digest in files.items():
        if not is_plain_name(name):
            raise ArtifactError(
                f"{folder / 'manifest.json'} names the file {name!r}, which is not a plain file "
                "name inside the folder; refusing to load a manifest that points elsewhere."
            )
        target = folder / name
        if not target.is_file():
            raise ArtifactError(f"{folder} is missing {name}; the folder is incomplete. {fix}")
        if sha256_file(target) != digest:
            raise ArtifactError(
                f"{target} does not match the sha256 in the manifest: the file was changed after "
                f"saving. Refusing to load it. {fix}"
            )


def is_plain_name(name: str) -> bool:
    """True for a file name without folders, not hidden, not ``.``/``..``."""
    return bool(name) and Path(name).name == name and "\\" not in name and not name.startswith(".")


# --------------------------------------------------------------------------- leftovers


def _temp_pattern(name: str) -> re.Pattern[str]:
    n = re.escape(name)
    return re.compile(
        rf"\.{n}\.(?:(?P<host>[0-9a-f]{{6}})-(?P<pid>\d+)-[0-9a-f]{{8}}\.(?P<end>partial|old)"
        # written by simkit 0.1.0 before owner tags (no owner to ask: treated as orphaned)
        rf"|[a-z0-9_]{{8}}\.(?P<legacy_partial>partial)|tmp-[a-z0-9_]{{8}}"
        rf"|(?P<legacy_old>old)(?:-[0-9a-f]{{32}})?)"
    )


def _owner_alive(match: re.Match[str]) -> bool:
    if match.group("pid") is None:
        return False
    if match.group("host") != _HOST:
        return True  # another machine's process: cannot tell, leave it alone
    pid = int(match.group("pid"))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: alive, owned by someone else
    return True


def _leftovers(path: Path) -> list[tuple[Path, bool]]:
    """Orphaned temp/old siblings of ``path`` as ``(sibling, is_old)``, oldest first."""
    pattern = _temp_pattern(path.name)
    found = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and not _owner_alive(m):
            is_old = m.group("end") == "old" or m.group("legacy_old") is not None
            found.append((entry, is_old))
    return sorted(found, key=lambda e: _mtime(e[0]))


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _stranded_olds(path: Path) -> list[Path]:
    return [p for p, is_old in _leftovers(path) if is_old]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed saves to ``path`` left beside it; restore ``path`` if only its ``.old`` is left.

    Only siblings named like this module's temporary folders for ``path`` are touched, and only
    when the process named in them is gone. When ``path`` is missing but an orphaned ``.old`` is
    there (a save was killed between its two renames), the newest ``.old`` is renamed back to
    ``path`` with a warning.

    Returns
    -------
    list of Path
        The siblings removed.

    Warns
    -----
    UserWarning
        When ``path`` was restored from its ``.old``.
    """
    path = Path(path)
    found = _leftovers(path)
    olds = [p for p, is_old in found if is_old]
    if olds and not os.path.lexists(path):
        os.rename(olds[-1], path)
        warnings.warn(
            f"A save to {path} was interrupted after it moved the previous folder aside; "
            f"restored {path} from {olds[-1].name}.",
            UserWarning,
            stacklevel=3,
        )
        found = [(p, o) for p, o in found if p != olds[-1]]
    for p, _ in found:
        _remove(p)
    return [p for p, _ in found]


# --------------------------------------------------------------------------- output checks


def check_output_folder(path: str | os.PathLike[str], *, overwrite: bool, kind: str) -> None:
    """Refuse an output folder that cannot be written, before any work; clean old leftovers.

    Parameters
    ----------
    path : str or Path
        The folder a simulator (``kind="simulator"``), agent (``"agent"``) or run (``"run"``)
        will be written to.
    overwrite : bool
        Whether an existing folder of that kind may be replaced.
    kind : {"simulator", "agent", "run"}

    Raises
    ------
    ArtifactError
        ``path`` is a file (never replaced, even with ``overwrite``); ``path`` exists and
        ``overwrite`` is false; ``path`` is a non-empty folder of another kind; the parent is a file.
    """
    path = Path(path)
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ArtifactError(
            f"{parent} is a file, so {path} cannot be created inside it; choose another path."
        )
    if parent.is_dir():
        clean_leftovers(path)
    _check_target(path, overwrite=overwrite, kind=kind)


def _check_target(path: Path, *, overwrite: bool, kind: str) -> None:
    label, markers = _KINDS[kind]
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise ArtifactError(
            f"{path} is a file, not a {label} folder; refusing to replace a file with a folder "
            "(also with --overwrite). Choose a folder path that does not exist yet."
        )
    if not overwrite:
        raise ArtifactError(
            f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace the "
            f"{label} in it, or choose another path."
        )
    if not any((path / m).exists() for m in markers) and any(path.iterdir()):
        raise ArtifactError(
            f"{path} exists and is not a saved {label} (no {' or '.join(markers)}); refusing to "
            "replace it. Choose another path."
        )


def check_output_file(path: str | os.PathLike[str], *, suffixes: Sequence[str]) -> None:
    """Refuse an output file path that cannot be written, before any work.

    Parameters
    ----------
    path : str or Path
        The file to write (a report, a chart).
    suffixes : sequence of str
        Suffixes of the sibling files written with it, as ``path.with_suffix(s)`` (e.g.
        ``(".json", ".md")`` beside an HTML report).

    Raises
    ------
    ArtifactError
        ``path`` or a sibling is a folder; the parent folder does not exist, is a file, or is
        not writable.

    Examples
    --------
    >>> check_output_file("report.html", suffixes=(".json", ".md"))
    """
    path = Path(path)
    main_suffix = path.suffix or (suffixes[0] if suffixes else "")
    for target in [path, *(path.with_suffix(s) for s in suffixes)]:
        if target.is_dir():
            raise ArtifactError(
                f"{target} is a folder, but a file is written there; give a file path instead, "
                f"such as {target / ('NAME' + main_suffix)}."
            )
    parent = path.parent
    if not parent.exists():
        raise ArtifactError(
            f"The folder {parent} does not exist, so {path.name} cannot be written into it; "
            f"create it first (mkdir -p {parent}) or choose another path."
        )
    if not parent.is_dir():
        raise ArtifactError(f"{parent} is a file, not a folder; choose another path for {path}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArtifactError(f"The folder {parent} is not writable; choose another path.")


# --------------------------------------------------------------------------- atomic folder


def _pause(stage: str) -> None:
    """Test hook, called with "written" (before the renames) and "swapped" (between them)."""


def _temp_name(path: Path, end: str) -> Path:
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.{end}")


def _make_temp(path: Path) -> Path:
    while True:
        tmp = _temp_name(path, "partial")
        try:
            os.mkdir(tmp, 0o777)  # the kernel applies the umask
        except FileExistsError:
            continue
        return tmp


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # folders cannot be fsynced on some platforms
    finally:
        os.close(fd)


def _settle(tmp: Path) -> None:
    """Give files ``0o666 & ~umask`` and folders ``0o777 & ~umask``, then fsync everything."""
    dir_mode = stat.S_IMODE(tmp.stat().st_mode)
    for root, dirs, files in os.walk(tmp):
        for d in dirs:
            os.chmod(os.path.join(root, d), dir_mode)
        for f in files:
            os.chmod(os.path.join(root, f), dir_mode & 0o666)
            _fsync(Path(root, f))
        _fsync(Path(root))


@contextmanager
def atomic_folder(path: str | os.PathLike[str], *, overwrite: bool, kind: str) -> Iterator[Path]:
    """Yield an empty temporary sibling folder; on a clean exit, rename it into ``path``.

    The old ``path`` (if any) stays until the new one is in place; on an exception the temporary
    folder is removed and the old ``path`` is untouched.

    Raises
    ------
    ArtifactError
        As :func:`check_output_folder`, before the block runs and again before the rename.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "agent"
    >>> with atomic_folder(target, overwrite=False, kind="agent") as tmp:
    ...     _ = (tmp / "manifest.json").write_text("{}")
    >>> sorted(p.name for p in target.parent.iterdir())
    ['agent']
    """
    path = Path(path)
    check_output_folder(path, overwrite=overwrite, kind=kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp(path)
    try:
        yield tmp
        _settle(tmp)
        _pause("written")
        _check_target(path, overwrite=overwrite, kind=kind)
        if os.path.lexists(path):
            old = _temp_name(path, "old")
            os.rename(path, old)
            try:
                _pause("swapped")
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)
                raise
            _fsync(path.parent)
            _remove(old)
        else:
            os.rename(tmp, path)
        _fsync(path.parent)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)
