"""Writing synthetic logs to disk: the files in ``data_samples/`` and ``simkit synth``'s output."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from simkit.synthetic import WorldConfig
    from simkit.synthetic_bandit import BanditWorldConfig
    from simkit.synthetic_lists import ListWorldConfig

__all__ = ["write_samples"]


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """CSV.gz with a fixed gzip header time, so the same data gives the same bytes."""
    text = frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
        gz.write(text)
    path.write_bytes(buffer.getvalue())


def write_samples(
    out: str | os.PathLike[str],
    *,
    n_sessions: int,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    config: WorldConfig | ListWorldConfig | BanditWorldConfig | None = None,
    chunk_users: int | None = None,
) -> dict[str, Path]:
    """Generate a world and its logs and write ``logs.parquet``, ``logs.csv.gz`` and ``items.parquet``.

    The kind of world follows the config: :class:`~simkit.synthetic.WorldConfig` (default),
    :class:`~simkit.synthetic_lists.ListWorldConfig` (impression lists, as slates) or
    :class:`~simkit.synthetic_bandit.BanditWorldConfig` (a click-only bandit log). The world is
    drawn from the first of two streams spawned from ``rng`` and the logs from the second, so the
    same generator state reproduces the same files byte for byte. Files are written to temporary
    names and renamed into place.

    Parameters
    ----------
    out
        Folder to write to (created when missing).
    n_sessions
        About how many sessions to log (the default world's return process sets the exact count).
    rng
        ``numpy.random.default_rng(seed)`` for a seed.
    seed
        Transitional: the same as ``rng=numpy.random.default_rng(seed)``, kept until the callers
        that still pass ``seed`` (``simkit.cli``, ``tests/_env_fixtures.py``,
        ``benchmarks/env.py``) pass ``rng``. Give exactly one of ``rng`` and ``seed``.
    config
        World parameters and kind.
    chunk_users
        Passed to :meth:`simkit.synthetic.World.generate_logs` (default world only).

    Raises
    ------
    TypeError
        Both or neither of ``rng`` and ``seed``, or a config of another type.

    Example
    -------
    >>> import tempfile
    >>> paths = write_samples(tempfile.mkdtemp(), n_sessions=50, rng=np.random.default_rng(0))
    >>> sorted(paths)
    ['items.parquet', 'logs.csv.gz', 'logs.parquet']
    """
    from simkit.synthetic import World, WorldConfig
    from simkit.synthetic_bandit import BanditWorld, BanditWorldConfig
    from simkit.synthetic_lists import ListWorld, ListWorldConfig

    if (rng is None) == (seed is None):
        raise TypeError("write_samples needs exactly one of rng= and seed=.")
    if rng is None:
        rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world_rng, logs_rng = rng.spawn(2)
    if isinstance(config, ListWorldConfig):
        lists = ListWorld(config, rng=world_rng)
        logs, items = lists.generate_logs(n_sessions, rng=logs_rng), lists.items
    elif isinstance(config, BanditWorldConfig):
        bandit = BanditWorld(config, rng=world_rng)
        logs, items = bandit.generate_logs(n_sessions, rng=logs_rng), bandit.items
    elif config is None or isinstance(config, WorldConfig):
        world = World(config, rng=world_rng)
        logs = world.generate_logs(n_sessions, rng=logs_rng, chunk_users=chunk_users)
        items = world.items
    else:
        raise TypeError(f"config must be a world config; got {type(config).__name__}.")
    paths = {
        "logs.parquet": out / "logs.parquet",
        "logs.csv.gz": out / "logs.csv.gz",
        "items.parquet": out / "items.parquet",
    }
    tmp = {name: path.with_name(path.name + ".partial") for name, path in paths.items()}
    try:
        logs.to_parquet(tmp["logs.parquet"], index=False)
        _write_csv_gz(logs, tmp["logs.csv.gz"])
        items.to_parquet(tmp["items.parquet"], index=False)
        for name, path in paths.items():
            os.replace(tmp[name], path)
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    return paths
