"""The runtime simulator and its on-disk folder format.

A :class:`Simulator` holds the item catalogue with embeddings, the known users' interest vectors and
a Gaussian mixture for new users, and the three response models (click, watch time, continuation).
Everything is batched: each method takes arrays for many sessions at once.

On disk a simulator is a folder::

    manifest.json      format version, simkit version, feature names, config, metrics, sha256 of files
    click.txt          LightGBM text models
    watch.txt
    continue.txt
    items.parquet      item ids, embeddings, model features, duration, popularity
    users.parquet      user ids, interest vectors, history size, encoded user features
    arrays.npz         mixture, calibration maps, watch residual pools (allow_pickle=False)

Loading checks the format version, that every file is present and listed with a safe name, and
every hash; it never unpickles, so a simulator from someone else cannot run code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.models import BinaryResponse, WatchResponse
from simkit.state import (
    Catalogue,
    Dynamics,
    FeatureSpec,
    SessionState,
    click_features,
    continue_features,
    initial_state,
)

__all__ = ["FORMAT_VERSION", "Simulator", "UserBatch", "UserTable"]

FORMAT_VERSION = 2


@dataclass
class UserTable:
    """Known users: ids, full-history interest ``z0``, ``hist_n`` and encoded user features."""

    user_ids: NDArray
    z0: NDArray[np.float64]
    hist_n: NDArray[np.float64]
    features: NDArray[np.float32]


@dataclass(frozen=True)
class UserBatch:
    """Users drawn to start sessions: known-user row (-1 for new users) and their start state."""

    rows: NDArray[np.int64]
    z0: NDArray[np.float64]
    hist_n: NDArray[np.float64]
    features: NDArray[np.float32]


@dataclass
class Simulator:
    """A fitted user simulator (build with :func:`simkit.fitters.fit_simulator` or :meth:`load`).

    Example
    -------
    >>> sim = Simulator.load("sim/")                                  # doctest: +SKIP
    >>> users = sim.sample_users(8, rng=np.random.default_rng(0))     # doctest: +SKIP
    >>> state = sim.initial_state(users)                              # doctest: +SKIP
    >>> p = sim.click_proba(state, np.zeros((8, 5), dtype=int))       # doctest: +SKIP
    """

    spec: FeatureSpec
    catalogue: Catalogue
    users: UserTable
    mixture_weights: NDArray[np.float64]
    mixture_means: NDArray[np.float64]
    mixture_chol: NDArray[np.float64]
    click: BinaryResponse
    watch: WatchResponse | None
    cont: BinaryResponse | None
    dynamics: Dynamics
    categories: dict[str, list] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)
    position_bias: NDArray[np.float64] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ models present

    @property
    def has_watch(self) -> bool:
        """Whether there is a watch-time model (logs without dwell time give none: rewards are clicks)."""
        return self.watch is not None

    @property
    def has_continuation(self) -> bool:
        """Whether there is a continuation model (one decision per session gives none: every
        session ends after its first step, a contextual bandit)."""
        return self.cont is not None

    @property
    def context(self) -> Any:
        """The per-step context model (:class:`simkit.context.ContextModel`), or None."""
        return self.extras.get("context")

    # ------------------------------------------------------------------ users

    @property
    def n_items(self) -> int:
        """Number of catalogue items (the stand-in row for unseen items excluded)."""
        return len(self.catalogue.item_ids)

    def sample_users(
        self, n: int, *, rng: np.random.Generator, population: str = "logged"
    ) -> UserBatch:
        """Draw ``n`` users to start sessions.

        ``population="logged"`` draws known users uniformly; ``"new"`` draws the interest vector from
        the Gaussian mixture fitted to the known users' and pairs it with the features and history
        size of a random known user.
        """
        if population not in ("logged", "new"):
            raise ValueError(f"population must be 'logged' or 'new'; got {population!r}.")
        rows = rng.integers(len(self.users.user_ids), size=n)
        z0 = self.users.z0[rows].copy()
        if population == "new":
            comp = rng.choice(len(self.mixture_weights), size=n, p=self.mixture_weights)
            noise = rng.standard_normal((n, self.catalogue.dim))
            z0 = self.mixture_means[comp] + np.einsum("nij,nj->ni", self.mixture_chol[comp], noise)
            out_rows = np.full(n, -1, np.int64)
        else:
            out_rows = rows
        return UserBatch(
            rows=out_rows,
            z0=z0,
            hist_n=self.users.hist_n[rows].copy(),
            features=self.users.features[rows].copy(),
        )

    def initial_state(self, users: UserBatch) -> SessionState:
        """Fresh session state for ``users``."""
        return initial_state(users.z0, users.hist_n, users.features, self.n_items)

    # ---------------------------------------------------------------- responses

    def click_features(
        self, state: SessionState, items: NDArray[np.int64], position: NDArray | None = None
    ) -> NDArray[np.float32]:
        """Model features of showing catalogue rows ``items`` (n, K) in ``state``: (n*K, F)."""
        return click_features(state, self.catalogue, items, position=position)

    def click_proba(
        self, state: SessionState, items: NDArray[np.int64], position: NDArray | None = None
    ) -> NDArray[np.float64]:
        """Click probability of each catalogue row in ``items`` (shape (n, K)) for each session."""
        items = np.asarray(items, dtype=np.int64).reshape(state.n, -1)
        x = self.click_features(state, items, position)
        return self.click.proba(x).reshape(items.shape)

    def sample_watch(
        self, x: NDArray[np.float32], items: NDArray[np.int64], *, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """Watch seconds for clicked rows with features ``x`` of catalogue rows ``items``
        (zeros without a watch model)."""
        if self.watch is None:
            return np.zeros(len(x))
        return self.watch.sample(x, self.catalogue.duration[items], rng=rng)

    def continue_proba(self, state: SessionState) -> NDArray[np.float64]:
        """Probability that another impression follows, in the state after a transition (zeros
        without a continuation model: one decision per session)."""
        if self.cont is None:
            return np.zeros(state.n)
        return self.cont.proba(continue_features(state))

    def value_spread(
        self, state: SessionState, items: NDArray[np.int64], *, reward: str = "watch_time"
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Ensemble members' mean and spread of each (session, item)'s immediate value, (n, K)
        each (see :func:`simkit.uncertainty.value_spread`; needs a simulator fitted with an
        ensemble)."""
        from simkit.uncertainty import value_spread

        return value_spread(self, state, items, reward=reward)

    # ---------------------------------------------------------------- save/load

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the simulator folder atomically (temporary folder renamed into place).

        Raises
        ------
        ArtifactError
            When ``path`` exists and ``overwrite`` is false.
        """
        from simkit.simulator_io import save_simulator

        return save_simulator(self, Path(path), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Simulator:
        """Load a simulator folder, checking format version, file names and sha256 hashes.

        Raises
        ------
        ArtifactError
            Missing folder or file, changed bytes, a newer format, or an unsafe file name.
        """
        from simkit.simulator_io import load_simulator

        return load_simulator(Path(path))
