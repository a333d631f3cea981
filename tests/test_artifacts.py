"""simkit.artifacts: killed saves leave nothing behind, umask modes, output checks, agent seals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import simkit.artifacts as art
from simkit import __version__
from simkit.agents import RandomAgent, load_agent
from simkit.artifacts import (
    atomic_folder,
    canonical_json,
    check_output_file,
    check_output_folder,
    clean_leftovers,
    seal,
)
from simkit.errors import ArtifactError
from simkit.simulator import Simulator

AGENT_FIX = "Save the agent again (or train it again if it is lost)."

# The child pauses inside the writer at STAGE (reading stdin, which never ends) until killed.
CHILD = """
import sys
import simkit.artifacts as art

kind, source, target, stage = sys.argv[1:]

def pause(at):
    if at == stage:
        print("paused", flush=True)
        sys.stdin.read()

art._pause = pause
if kind == "simulator":
    from simkit.simulator import Simulator
    Simulator.load(source).save(target, overwrite=True)
else:
    from simkit.agents import RandomAgent
    RandomAgent(slate_size=3).save(target, overwrite=True)
"""


def _kill_during_save(kind: str, source: Path | None, target: Path, stage: str) -> None:
    args = [sys.executable, "-c", CHILD, kind, str(source), str(target), stage]
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with subprocess.Popen(args, **pipes) as child:  # type: ignore[call-overload]
        try:
            line = child.stdout.readline()
            assert line == "paused\n", child.stderr.read()
        finally:
            child.kill()  # SIGKILL: no except/finally runs in the child
            child.wait()  # reap it, so its pid is no longer alive


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it."""
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize(("stage", "existed"), [("written", False), ("written", True)])
def test_a_simulator_save_killed_mid_write_is_cleaned_by_the_next(
    tiny_simulator, tmp_path, stage, existed
) -> None:
    source = tiny_simulator.save(tmp_path / "source")
    work = tmp_path / "work"
    work.mkdir()
    target = work / "sim"
    if existed:
        tiny_simulator.save(target)
    _kill_during_save("simulator", source, target, stage)
    left = [n for n in _siblings(work) if n != "sim"]
    assert len(left) == 1 and re.fullmatch(r"\.sim\.[0-9a-f]{6}-\d+-[0-9a-f]{8}\.partial", left[0])
    assert target.exists() == existed
    tiny_simulator.save(target, overwrite=True)
    assert _siblings(work) == ["sim"]
    Simulator.load(target)


def test_a_save_killed_between_the_renames_restores_the_old_folder(tiny_simulator, tmp_path):
    source = tiny_simulator.save(tmp_path / "source")
    work = tmp_path / "work"
    work.mkdir()
    target = work / "sim"
    tiny_simulator.save(target)
    before = (target / "manifest.json").read_bytes()
    _kill_during_save("simulator", source, target, "swapped")
    left = _siblings(work)
    assert "sim" not in left and len(left) == 2
    assert {n.rsplit(".", 1)[1] for n in left} == {"old", "partial"}
    old = next(n for n in left if n.endswith(".old"))
    msg = (
        f"{target} is not a saved simulator: cannot read manifest.json because {target} does not "
        f"exist. A save was interrupted: the previous folder is in {work / old}; saving again to "
        "this path restores it, or rename it back by hand."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        Simulator.load(target)
    restored = f"A save to {target} was interrupted after it moved the previous folder aside; restored {target} from {old}."
    with pytest.warns(UserWarning, match=re.escape(restored)):
        with pytest.raises(ArtifactError, match="already exists; pass overwrite=True"):
            tiny_simulator.save(target)  # the restored folder is not overwritten without asking
    assert _siblings(work) == ["sim"]
    assert (target / "manifest.json").read_bytes() == before
    Simulator.load(target)


def test_an_agent_save_killed_mid_write_is_cleaned_by_the_next(tmp_path) -> None:
    target = tmp_path / "agent"
    RandomAgent().save(target)
    _kill_during_save("agent", None, target, "written")
    assert len(_siblings(tmp_path)) == 2
    RandomAgent(slate_size=2).save(target, overwrite=True)
    assert _siblings(tmp_path) == ["agent"]
    assert load_agent(target).config.slate_size == 2


# --------------------------------------------------------------------------- leftovers


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return p.pid


def test_only_orphaned_leftovers_of_the_same_target_are_removed(tmp_path) -> None:
    host = art._HOST
    live = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        dead = _dead_pid()
        names = {
            f".sim.{host}-{dead}-0123abcd.partial": False,  # removed: owner gone
            f".sim.{host}-{dead}-0123abce.old": False,  # removed: sim exists
            ".sim.k2j4_x9a.partial": False,  # simkit 0.1.0 names, no owner recorded
            ".sim.old": False,
            ".sim.tmp-ab12cd34": False,
            f".sim.{host}-{live.pid}-0123abcd.partial": True,  # kept: owner alive
            f".sim.{host}-{os.getpid()}-0123abcd.partial": True,  # kept: this process
            f".sim.abcdef-{dead}-0123abcd.partial": True,  # kept: another machine's
            f".sims.{host}-{dead}-0123abcd.partial": True,  # kept: another target
            f".other.{host}-{dead}-0123abcd.old": True,
            ".sim.notes": True,  # kept: not a simkit temp name
        }
        (tmp_path / "sim").mkdir()
        for name in names:
            (tmp_path / name).mkdir()
        removed = clean_leftovers(tmp_path / "sim")
        assert sorted(p.name for p in removed) == sorted(n for n, keep in names.items() if not keep)
        assert _siblings(tmp_path) == sorted(["sim", *(n for n, keep in names.items() if keep)])
    finally:
        live.kill()
        live.wait()
        if live.stdin:
            live.stdin.close()


def test_an_exception_while_writing_keeps_the_old_folder(tmp_path) -> None:
    target = tmp_path / "agent"
    RandomAgent().save(target)
    before = (target / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_folder(target, overwrite=True, kind="agent") as tmp:
            (tmp / "manifest.json").write_text("{}")
            raise RuntimeError("disk full")
    assert _siblings(tmp_path) == ["agent"]
    assert (target / "manifest.json").read_bytes() == before


# --------------------------------------------------------------------------- umask


@pytest.mark.parametrize(
    ("mask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_folders_and_files_follow_the_umask(
    tiny_simulator, tmp_path, umask, mask, dir_mode, file_mode
):
    os.umask(mask)
    sim = tiny_simulator.save(tmp_path / "sim")
    agent = tmp_path / "agent"
    RandomAgent().save(agent)
    for folder in (sim, agent):
        assert oct(folder.stat().st_mode & 0o777) == oct(dir_mode), folder
        for f in folder.iterdir():
            assert oct(f.stat().st_mode & 0o777) == oct(file_mode), f


def test_a_file_made_private_by_its_writer_gets_the_umask_mode(tmp_path, umask) -> None:
    os.umask(0o022)
    with atomic_folder(tmp_path / "agent", overwrite=False, kind="agent") as tmp:
        os.close(os.open(tmp / "secret.npz", os.O_CREAT | os.O_WRONLY, 0o600))  # like mkstemp
    assert oct((tmp_path / "agent" / "secret.npz").stat().st_mode & 0o777) == oct(0o644)


# --------------------------------------------------------------------------- output checks


def test_check_output_folder_refuses_before_any_work(tmp_path) -> None:
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    cases = [
        (
            dict(path=a_file, overwrite=True, kind="simulator"),
            f"{a_file} is a file, not a simulator folder; refusing to replace a file with a folder "
            "(also with --overwrite). Choose a folder path that does not exist yet.",
        ),
        (
            dict(path=a_file / "sim", overwrite=False, kind="simulator"),
            f"{a_file} is a file, so {a_file / 'sim'} cannot be created inside it; choose another "
            "path.",
        ),
        (
            dict(path=tmp_path, overwrite=False, kind="run"),
            f"{tmp_path} already exists; pass overwrite=True (CLI: --overwrite) to replace the run "
            "in it, or choose another path.",
        ),
        (
            dict(path=tmp_path, overwrite=True, kind="run"),
            f"{tmp_path} exists and is not a saved run (no run.json or agent); refusing to "
            "replace it. Choose another path.",
        ),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ArtifactError, match=re.escape(msg)):
            check_output_folder(**kwargs)
    assert a_file.read_text() == "x"
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", overwrite=True, kind="simulator")
    check_output_folder(tmp_path / "new" / "deeper", overwrite=False, kind="simulator")


def test_check_output_file_refuses_folders_and_missing_parents(tmp_path) -> None:
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    (tmp_path / "report.json").mkdir()
    cases = [
        (
            dict(path=a_dir, suffixes=(".html", ".json", ".md")),
            f"{a_dir} is a folder, but a file is written there; give a file path instead, such as "
            f"{a_dir / 'NAME.html'}.",
        ),
        (
            dict(path=tmp_path / "a_dir.png", suffixes=(".csv",)),
            None,
        ),
        (
            dict(path=tmp_path / "report.html", suffixes=(".json", ".md")),
            f"{tmp_path / 'report.json'} is a folder, but a file is written there; give a file "
            f"path instead, such as {tmp_path / 'report.json' / 'NAME.html'}.",
        ),
        (
            dict(path=tmp_path / "nope" / "report.html", suffixes=(".json",)),
            f"The folder {tmp_path / 'nope'} does not exist, so report.html cannot be written into "
            f"it; create it first (mkdir -p {tmp_path / 'nope'}) or choose another path.",
        ),
    ]
    for kwargs, msg in cases:
        if msg is None:
            check_output_file(**kwargs)
            continue
        with pytest.raises(ArtifactError, match=re.escape(msg)):
            check_output_file(**kwargs)


# --------------------------------------------------------------------------- seals


def test_seal_hashes_each_field_canonically() -> None:
    sealed = seal({"b": {"y": 1, "x": [1.5]}, "a": "s"})
    again = seal({"a": "s", "b": {"x": [1.5], "y": 1}})
    assert sealed["integrity"] == again["integrity"]
    assert canonical_json(sealed["b"]) == '{"x":[1.5],"y":1}'
    assert (
        seal({"b": {"y": 2, "x": [1.5]}, "a": "s"})["integrity"]["fields"]["a"]
        == (sealed["integrity"]["fields"]["a"])
    )


def _agent_manifest(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "agent"
    RandomAgent().save(path)
    return path, json.loads((path / "manifest.json").read_text())


def test_an_edited_agent_manifest_is_refused(tmp_path) -> None:
    path, m = _agent_manifest(tmp_path)
    mpath = path / "manifest.json"
    m["config"]["slate_size"] = 5
    mpath.write_text(json.dumps(m))
    msg = (
        f"{mpath}: field 'config' does not match its sha256 in the integrity record: the manifest "
        f"was edited after saving. Refusing to load it; restore the original manifest.json. "
        f"{AGENT_FIX}"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        load_agent(path)


def test_a_truncated_or_wrong_typed_agent_manifest_is_refused(tmp_path) -> None:
    path, m = _agent_manifest(tmp_path)
    mpath = path / "manifest.json"
    raw = mpath.read_bytes()
    mpath.write_bytes(raw[:40])
    msg = f"{mpath} ends in the middle of the JSON (truncated after 40 bytes); the folder is damaged. {AGENT_FIX}"
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        load_agent(path)
    mpath.write_text('"RandomAgent"')
    with pytest.raises(
        ArtifactError, match=re.escape(f"{mpath} must hold a JSON object; got a JSON string.")
    ):
        load_agent(path)
    body = {k: v for k, v in m.items() if k != "integrity"}
    body["state"] = []
    del body["agent"]
    mpath.write_text(json.dumps(seal(body)))
    msg = (
        f"{mpath}: field 'agent' is missing; field 'state' must be an object; got a JSON array []. "
        f"{AGENT_FIX}"
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        load_agent(path)


def test_agent_versions_newer_and_older(tmp_path) -> None:
    path, m = _agent_manifest(tmp_path)
    mpath = path / "manifest.json"
    body = {k: v for k, v in m.items() if k != "integrity"}
    mpath.write_text(json.dumps(seal({**body, "format_version": 7})))
    msg = (
        f"{path} has agent format version 7, but this simkit ({__version__}) reads versions up "
        "to 2; upgrade simkit to load it."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        load_agent(path)
    mpath.write_text(json.dumps({**body, "format_version": 1}))  # as simkit 0.1.0 wrote it
    msg = (
        f"{path} has agent format version 1, written by an older simkit; this simkit "
        f"({__version__}) reads version 2. Train and save the agent again with this simkit."
    )
    with pytest.raises(ArtifactError, match=re.escape(msg)):
        load_agent(path)
