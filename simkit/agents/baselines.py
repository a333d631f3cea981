"""Baselines: show the most popular candidate, or the one the fitted click model likes best.

Both rank the K candidates of an observation by a score and show the best one (or the best
``slate_size`` in order), breaking ties at random:

- :class:`PopularAgent` scores a candidate by its popularity, the ``item_log_pop`` column of the
  session env's candidate rows (``log1p`` of the item's training impressions).
- :class:`GreedyClickAgent` is "the production model": it scores a candidate by the fitted
  simulator's click probability, ``sim.click.proba`` of the candidate's click-feature row. The
  session env's observation holds every click feature but the slate position, under the same
  names (the user and history columns in ``obs["user"]``, the item columns, embedding, ``dot``,
  ``cos``, ``repeats`` and ``item_log_pop`` in each candidate row), so the agent rebuilds each
  candidate's row from the observation alone, with position 0 as the env scores it. The rebuilt
  row equals the env's up to float32 rounding of ``dot`` and ``cos``, the observation's clipping
  to its bounds (reached only by drawn new users) and missing values, which the observation shows
  as -1: a column where the simulator's data has missing values but never the value -1 gets its
  -1 turned back into NaN.

Being deterministic they log propensity ``1/#ties`` (per shown item for a slate: one over the size
of its tie group). With ``epsilon_mix=eps`` a single-item agent shows a uniform candidate with
probability ``eps`` and logs ``(1 - eps) 1[a in argmax] / #ties + eps / K``.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.agents.base import (
    Observation,
    SavableAgent,
    config_from_json,
    draw_from,
    greedy_proba,
    observation_parts,
    read_agent_folder,
    register_agent,
)
from simkit.errors import ArtifactError, ConfigError
from simkit.simulator import Simulator
from simkit.state import CONTINUE_NAMES

__all__ = [
    "GreedyClickAgent",
    "GreedyClickAgentConfig",
    "PopularAgent",
    "PopularAgentConfig",
    "observation_names",
]

F64 = NDArray[np.float64]
CANDIDATE_COUNTERS = ("item_log_pop", "dot", "cos", "repeats")


def observation_names(simulator: Simulator) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Column names of the session env's ``user`` and ``candidates`` observations.

    The layout of :class:`simkit.envs.SessionEnv` (``env.unwrapped.user_names`` and
    ``candidate_names``): ``z_0 .. z_{d-1}`` then the continuation features; the item columns,
    ``emb_0 .. emb_{d-1}``, ``item_log_pop``, ``dot``, ``cos``, ``repeats``.
    """
    d = simulator.catalogue.dim
    user = tuple(f"z_{j}" for j in range(d)) + tuple(simulator.spec.continue_names)
    cands = (
        tuple(simulator.spec.item_columns)
        + tuple(f"emb_{j}" for j in range(d))
        + CANDIDATE_COUNTERS
    )
    return user, cands


class _RankingAgent(SavableAgent):
    """Show the top-scored candidate(s), ties at random; subclasses define :meth:`scores`."""

    config: Any
    last_propensity: float | F64 | None
    last_slate_propensity: float | None
    last_info: dict[str, Any]

    def scores(self, obs: Observation) -> F64:
        """Score of each candidate (higher is shown first)."""
        raise NotImplementedError

    def action_proba(self, obs: Observation, *, rng: np.random.Generator | None = None) -> F64:
        """Probability of showing each candidate first (exact; ``rng`` is not used)."""
        return greedy_proba(self.scores(obs), self.config.epsilon_mix)

    def act(self, obs: Observation, *, rng: np.random.Generator) -> Any:
        """Show the best candidate (or the ``slate_size`` best, best first), ties at random."""
        scores = self.scores(obs)
        size = self.config.slate_size
        self.last_info = {"scores": scores, "deterministic": self.config.epsilon_mix == 0.0}
        if size == 1:
            proba = greedy_proba(scores, self.config.epsilon_mix)
            action = draw_from(proba, rng)
            self.last_propensity = float(proba[action])
            self.last_slate_propensity = self.last_propensity
            return action
        k = scores.size
        if size > k:
            raise ConfigError(f"slate_size {size} exceeds the {k} candidates offered")
        # a random permutation, then a stable sort: ties come out in uniformly random order
        perm = rng.permutation(k)
        slate = perm[np.argsort(-scores[perm], kind="stable")[:size]]
        _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
        self.last_propensity = 1.0 / counts[group[slate]]
        # ordered slate: m shown of a tie group of g in one order has probability 1/(g (g-1)...)
        shown, m = np.unique(group[slate], return_counts=True)
        self.last_slate_propensity = 1.0 / math.prod(
            math.perm(int(counts[g]), int(n)) for g, n in zip(shown, m)
        )
        return slate


def _check_common(cfg: Any) -> list[str]:
    problems = []
    if cfg.slate_size < 1:
        problems.append(f"slate_size must be at least 1; got {cfg.slate_size}")
    if not 0.0 <= cfg.epsilon_mix <= 1.0:
        problems.append(f"epsilon_mix must be in [0, 1]; got {cfg.epsilon_mix}")
    if cfg.epsilon_mix > 0 and cfg.slate_size > 1:
        problems.append("epsilon_mix is only supported with slate_size=1")
    return problems


# --------------------------------------------------------------------------- popular


@dataclass(frozen=True, kw_only=True)
class PopularAgentConfig:
    """Settings of :class:`PopularAgent`.

    Parameters
    ----------
    column : int or str
        The candidate column holding popularity: an index into the candidate rows, or a name
        looked up in ``candidate_names``. Default ``-4``, the ``item_log_pop`` column of
        :class:`simkit.envs.SessionEnv` (fourth from last).
    candidate_names : tuple of str, optional
        Names of the candidate columns (``env.unwrapped.candidate_names``); needed for a named
        ``column``.
    slate_size : int
        1 to show one candidate; ``k > 1`` for the ``k`` most popular, most popular first.
    epsilon_mix : float
        Probability of a uniform choice instead of the most popular (slate_size 1 only).
    """

    column: int | str = -4
    candidate_names: tuple[str, ...] | None = None
    slate_size: int = 1
    epsilon_mix: float = 0.0

    def __post_init__(self) -> None:
        problems = _check_common(self)
        if isinstance(self.column, str):
            if self.candidate_names is None:
                problems.append(
                    f"column={self.column!r} is a name, so candidate_names must list the "
                    "candidate columns (env.unwrapped.candidate_names)"
                )
            elif self.column not in self.candidate_names:
                names = list(self.candidate_names)
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                problems.append(
                    f"column {self.column!r} is not among the {len(names)} candidate columns "
                    f"({shown})"
                )
        elif not isinstance(self.column, int) or isinstance(self.column, bool):
            problems.append(f"column must be an int or a str; got {self.column!r}")
        if problems:
            raise ConfigError("Invalid PopularAgentConfig: " + "; ".join(problems) + ".")

    @property
    def column_index(self) -> int:
        """Index of the popularity column in a candidate row."""
        if isinstance(self.column, str):
            assert self.candidate_names is not None
            return self.candidate_names.index(self.column)
        return self.column


@register_agent
class PopularAgent(_RankingAgent):
    """Show the most popular candidate (the highest ``item_log_pop``), ties at random.

    Parameters
    ----------
    config : PopularAgentConfig, optional
    **overrides
        Config fields, e.g. ``PopularAgent(slate_size=5)``.

    Attributes
    ----------
    last_propensity : float or ndarray
        ``1/#ties`` of the shown candidate (mixed with ``epsilon_mix / K``); per shown item for
        a slate.
    last_slate_propensity : float
        Probability of the whole ordered slate under random tie-breaking.
    last_info : dict
        ``scores`` per candidate and the ``deterministic`` flag (no epsilon mixing).

    Examples
    --------
    >>> agent = PopularAgent(column=0)
    >>> obs = {"user": np.zeros(2), "candidates": np.array([[1.0], [3.0], [2.0]])}
    >>> agent.act(obs, rng=np.random.default_rng(0)), agent.last_propensity
    (1, 1.0)
    """

    Config = PopularAgentConfig

    def __init__(self, config: PopularAgentConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or PopularAgentConfig(), **overrides)
        self.last_propensity = None
        self.last_slate_propensity = None
        self.last_info = {}

    @classmethod
    def for_env(cls, env: Any, *, simulator_path: Any = None, **overrides: Any) -> PopularAgent:
        """A popular agent reading the ``item_log_pop`` column of ``env``'s candidates by name."""
        names = tuple(env.unwrapped.candidate_names)
        return cls(column="item_log_pop", candidate_names=names, **overrides)

    def scores(self, obs: Observation) -> F64:
        """The popularity column of the candidate rows."""
        _, cands = observation_parts(obs)
        j = self.config.column_index
        if not -cands.shape[1] <= j < cands.shape[1]:
            raise ConfigError(
                f"popularity column {self.config.column!r} (index {j}) is outside the "
                f"{cands.shape[1]} candidate columns"
            )
        return cands[:, j]

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        return {}, {}

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        pass


# --------------------------------------------------------------------------- greedy on clicks


@dataclass(frozen=True, kw_only=True)
class GreedyClickAgentConfig:
    """Settings of :class:`GreedyClickAgent`.

    Parameters
    ----------
    simulator_path : str, optional
        Folder of the simulator whose click model ranks the candidates, stored (as an absolute
        path) when the agent is saved; the model itself is not copied. None for an agent built
        from a :class:`~simkit.simulator.Simulator` object alone, which cannot be saved.
    slate_size : int
        1 to show one candidate; ``k > 1`` for the ``k`` most clickable, best first.
    epsilon_mix : float
        Probability of a uniform choice instead of the argmax (slate_size 1 only).
    """

    simulator_path: str | None = None
    slate_size: int = 1
    epsilon_mix: float = 0.0

    def __post_init__(self) -> None:
        problems = _check_common(self)
        if self.simulator_path is not None and not isinstance(self.simulator_path, str):
            problems.append(
                f"simulator_path must be a str; got {type(self.simulator_path).__name__}"
            )
        if problems:
            raise ConfigError("Invalid GreedyClickAgentConfig: " + "; ".join(problems) + ".")


def _manifest_digest(path: str | os.PathLike[str]) -> str | None:
    try:
        return hashlib.sha256((Path(path) / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return None


@register_agent
class GreedyClickAgent(_RankingAgent):
    """ "The production model": show the candidate the fitted click model rates most clickable.

    Parameters
    ----------
    config : GreedyClickAgentConfig, optional
    simulator : Simulator or str or PathLike, optional
        The fitted simulator, or the path of its folder (stored as ``simulator_path``, so the
        agent can be saved). Defaults to loading ``simulator_path``. With a Simulator object,
        also give ``simulator_path`` (the folder it was loaded from) to make the agent savable.
    **overrides
        Config fields, e.g. ``slate_size=5``.

    Attributes
    ----------
    simulator : Simulator
    last_propensity : float or ndarray
        ``1/#ties`` of the shown candidate (mixed with ``epsilon_mix / K``).
    last_slate_propensity : float
    last_info : dict
        ``scores`` (click probabilities) per candidate and the ``deterministic`` flag.

    Raises
    ------
    ConfigError
        When neither ``simulator`` nor ``simulator_path`` is given.
    ArtifactError
        When the simulator folder cannot be loaded.

    Notes
    -----
    Saving writes the simulator's path and the sha256 of its ``manifest.json``; loading loads the
    simulator from that path and warns when the folder now holds another simulator.

    Examples
    --------
    >>> import gymnasium as gym
    >>> env = gym.make("simkit/Session-v0", simulator="sim/")        # doctest: +SKIP
    >>> agent = GreedyClickAgent(simulator="sim/")                   # doctest: +SKIP
    >>> obs, _ = env.reset(seed=0)                                   # doctest: +SKIP
    >>> obs, reward, *_ = env.step(agent.act(obs, rng=np.random.default_rng(0)))  # doctest: +SKIP
    """

    Config = GreedyClickAgentConfig

    def __init__(
        self,
        config: GreedyClickAgentConfig | None = None,
        *,
        simulator: Simulator | str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> None:
        config = replace(config or GreedyClickAgentConfig(), **overrides)
        if isinstance(simulator, (str, os.PathLike)):
            config = replace(config, simulator_path=str(simulator))
        if config.simulator_path is not None:
            config = replace(config, simulator_path=str(Path(config.simulator_path).resolve()))
        if simulator is None:
            if config.simulator_path is None:
                raise ConfigError(
                    "GreedyClickAgent needs the fitted simulator whose click model it follows: "
                    "pass simulator=<Simulator or folder path>."
                )
            simulator = config.simulator_path
        self.config = config
        self.simulator = (
            simulator if isinstance(simulator, Simulator) else Simulator.load(Path(simulator))
        )
        path = config.simulator_path
        self._digest = None if path is None else _manifest_digest(path)
        self._layout()
        self.last_propensity = None
        self.last_slate_propensity = None
        self.last_info = {}

    @classmethod
    def for_env(cls, env: Any, *, simulator_path: Any = None, **overrides: Any) -> GreedyClickAgent:
        """Greedy on the click model of ``env``'s simulator, saved with ``simulator_path``."""
        return cls(
            simulator=env.unwrapped.simulator,
            simulator_path=None if simulator_path is None else str(simulator_path),
            **overrides,
        )

    def _layout(self) -> None:
        """Where each click feature sits in the observation (or that it is the position, 0)."""
        sim = self.simulator
        user_names, cand_names = observation_names(sim)
        click_names = sim.spec.click_names
        n_user_cols = len(sim.spec.user_columns)
        user_src, user_dst, cand_src, cand_dst, missing = [], [], [], [], []
        for j, name in enumerate(click_names):
            if j < n_user_cols or name in CONTINUE_NAMES:  # user columns and history counters
                user_src.append(user_names.index(name))
                user_dst.append(j)
            elif name in cand_names:
                cand_src.append(cand_names.index(name))
                cand_dst.append(j)
            elif name != "position":
                missing.append(name)
        if missing:  # pragma: no cover - guards a change of the env's observation
            raise ConfigError(
                f"The session env's observation lacks click features {missing}; GreedyClickAgent "
                "cannot rebuild the click model's input."
            )
        self._user_src, self._user_dst = np.array(user_src), np.array(user_dst)
        self._cand_src, self._cand_dst = np.array(cand_src), np.array(cand_dst)
        self._n_features = len(click_names)
        self._n_user_obs, self._n_cand_obs = len(user_names), len(cand_names)
        # the observation shows NaN as -1: undo it where -1 never occurs in the simulator's data
        user_data = sim.users.features
        item_data = sim.catalogue.features[: sim.n_items]  # not the unseen-item stand-in

        def restore(data: NDArray[Any]) -> NDArray[np.bool_]:
            return np.isnan(data).any(axis=0) & ~(data == -1).any(axis=0)

        self._nan_dst = np.concatenate(
            [
                np.flatnonzero(restore(user_data)),
                n_user_cols + np.flatnonzero(restore(item_data)),
            ]
        ).astype(np.int64)

    def click_feature_map(self) -> dict[str, NDArray[np.int64]]:
        """Where :meth:`click_features` reads each click feature (for ``simkit export``).

        ``user_src``/``user_dst``: observation user columns and their click-feature columns;
        ``cand_src``/``cand_dst``: the same for candidate columns; ``nan_dst``: click-feature
        columns whose -1 means missing. The position feature (the rest) stays 0.
        """
        return {
            "user_src": self._user_src.astype(np.int64),
            "user_dst": self._user_dst.astype(np.int64),
            "cand_src": self._cand_src.astype(np.int64),
            "cand_dst": self._cand_dst.astype(np.int64),
            "nan_dst": self._nan_dst.astype(np.int64),
        }

    def click_features(self, obs: Observation) -> NDArray[np.float32]:
        """Click-model feature rows of the candidates of ``obs``, shape (K, F), at position 0.

        Raises
        ------
        ValueError
            When ``obs`` does not have the session env's layout for this simulator.
        """
        user, cands = observation_parts(obs)
        if user.shape[0] != self._n_user_obs or cands.shape[1] != self._n_cand_obs:
            raise ValueError(
                f"GreedyClickAgent expects the session env's observation of its simulator: user "
                f"vectors of {self._n_user_obs} and candidate rows of {self._n_cand_obs} columns; "
                f"got {user.shape[0]} and {cands.shape[1]}."
            )
        x = np.zeros((cands.shape[0], self._n_features), dtype=np.float32)
        x[:, self._user_dst] = user[self._user_src]
        x[:, self._cand_dst] = cands[:, self._cand_src]
        if self._nan_dst.size:
            cols = x[:, self._nan_dst]
            cols[cols == -1] = np.nan
            x[:, self._nan_dst] = cols
        return x

    def click_proba(self, obs: Observation) -> F64:
        """The simulator's click probability of each candidate of ``obs``."""
        return self.simulator.click.proba(self.click_features(obs))

    def scores(self, obs: Observation) -> F64:
        """Click probability of each candidate."""
        return self.click_proba(obs)

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the agent (the simulator's path, not its models) to the folder ``path``.

        Raises
        ------
        ArtifactError
            When the agent was built from a Simulator object (no path to store), or ``path``
            exists and ``overwrite`` is false.
        """
        if self.config.simulator_path is None:
            raise ArtifactError(
                "This GreedyClickAgent was built from a Simulator object without a folder, so "
                "there is no simulator path to save; build it with simulator=<folder path> or "
                "pass simulator_path=<folder the simulator was loaded from>."
            )
        super().save(path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> GreedyClickAgent:
        """Read an agent written by :meth:`save`, loading the simulator from its stored path.

        Raises
        ------
        ArtifactError
            When the folder is not a saved GreedyClickAgent, or its simulator cannot be loaded.
        """
        manifest, arrays = read_agent_folder(path, cls.__name__)
        config = config_from_json(cls.Config, manifest["config"])
        try:
            agent = cls(config)
        except ArtifactError as exc:
            raise ArtifactError(
                f"The GreedyClickAgent saved in {path} follows the click model of the simulator "
                f"folder {config.simulator_path}, which cannot be loaded: {exc}"
            ) from exc
        agent._set_state(arrays, manifest["state"])
        return agent

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        return {}, {"simulator_manifest_sha256": self._digest}

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        saved = state.get("simulator_manifest_sha256")
        if saved is not None and saved != self._digest:
            warnings.warn(
                f"The simulator folder {self.config.simulator_path} holds another simulator than when "
                "this GreedyClickAgent was saved (its manifest.json changed); the agent now "
                "follows the new click model.",
                UserWarning,
                stacklevel=3,
            )
