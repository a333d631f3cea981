"""What every simkit agent shares: the protocol, logged decisions, evaluation, saving.

Observations are dicts with ``obs["user"]`` (shape ``(d_u,)``) and ``obs["candidates"]`` (shape
``(K, d_c)``, one row per candidate item), the layout of simkit's session env; actions index the
candidate rows. Every agent records the probability it gave to what it showed in
``last_propensity``: deterministic agents give 1/#ties on their argmax set.

Agents save as a folder: ``manifest.json`` (format version, agent class, config, sha256 of the
arrays, sealed by an integrity record) and ``arrays.npz``. Loading checks the seal, the version,
the field types and the hash and never unpickles; saving writes a temporary folder beside the
target and renames it into place (:func:`simkit.artifacts.atomic_folder`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

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
from simkit.errors import ArtifactError, ConfigError, LogError
from simkit.threads import blas_threads

__all__ = [
    "FORMAT_VERSION",
    "Agent",
    "DecisionLog",
    "EvaluationResult",
    "OfflineLearner",
    "OnlineLearner",
    "discounted_returns",
    "evaluate",
    "load_agent",
    "observation_parts",
]

FORMAT_VERSION = 2
"""Version of the saved-agent folder layout (2: sealed manifest); loading refuses any other."""

Observation = Mapping[str, NDArray[Any]]


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class Agent(Protocol):
    """The interface every agent offers.

    Attributes
    ----------
    last_propensity : float or ndarray or None
        Probability the agent gave to what its last :meth:`act` showed (per shown item for a
        slate); ``None`` before the first call.
    """

    last_propensity: float | NDArray[np.float64] | None

    def act(self, obs: Observation, *, rng: np.random.Generator) -> Any:
        """Choose a candidate index (or a slate of indices) for ``obs``."""
        ...

    def action_proba(
        self, obs: Observation, *, rng: np.random.Generator | None = None
    ) -> NDArray[np.float64]:
        """Probability over the K candidates of what :meth:`act` would show first."""
        ...

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the agent to the folder ``path``."""
        ...


@runtime_checkable
class OnlineLearner(Agent, Protocol):
    """An agent that learns by interacting with an env."""

    def learn_online(
        self, env: Any, n_steps: int, *, rng: np.random.Generator, progress: bool = False
    ) -> NDArray[np.float64]:
        """Interact for ``n_steps`` env steps; return the per-episode returns."""
        ...


@runtime_checkable
class OfflineLearner(Agent, Protocol):
    """An agent that learns from a :class:`DecisionLog`."""

    def learn_from_logs(
        self, logs: DecisionLog, *, rng: np.random.Generator, **kwargs: Any
    ) -> NDArray[np.float64]:
        """Train on logged decisions; return a training curve."""
        ...


def observation_parts(obs: Observation) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Split an observation into ``(user, candidates)`` as float64 arrays.

    Raises
    ------
    TypeError
        When ``obs`` is not a mapping with keys ``"user"`` and ``"candidates"``.
    ValueError
        When ``user`` is not 1-D or ``candidates`` not 2-D.
    """
    if not isinstance(obs, Mapping) or "user" not in obs or "candidates" not in obs:
        raise TypeError(
            "Observations must be dicts with keys 'user' (d_u,) and 'candidates' (K, d_c); "
            f"got {type(obs).__name__}"
            + (f" with keys {sorted(obs)}" if isinstance(obs, Mapping) else "")
        )
    user = np.asarray(obs["user"], dtype=np.float64)
    cands = np.asarray(obs["candidates"], dtype=np.float64)
    if user.ndim != 1 or cands.ndim != 2:
        raise ValueError(
            "obs['user'] must be 1-D and obs['candidates'] 2-D (one row per candidate); "
            f"got shapes {user.shape} and {cands.shape}"
        )
    return user, cands


def greedy_proba(scores: NDArray[np.float64], epsilon: float = 0.0) -> NDArray[np.float64]:
    """``(1-epsilon)`` split evenly over the argmax set plus ``epsilon/K`` everywhere."""
    best = scores >= scores.max()
    return (1.0 - epsilon) * best / best.sum() + epsilon / scores.size


def draw_from(proba: NDArray[np.float64], rng: np.random.Generator) -> int:
    """Index drawn from a probability vector (inverse CDF, one uniform)."""
    c = np.cumsum(proba)
    return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), proba.size - 1))


# --------------------------------------------------------------------------- logged decisions


@dataclass(frozen=True, kw_only=True)
class DecisionLog:
    """Logged decisions, one row per shown item.

    Parameters
    ----------
    user : ndarray, shape (n, d_u)
        User/context vector each decision saw.
    candidates : ndarray, shape (K, d_c) or (n, K, d_c)
        Candidate features, shared by all rows or one set per row.
    action : ndarray of int, shape (n,)
        Index of the shown candidate.
    reward : ndarray, shape (n,)
        Reward (or return) credited to the row.
    propensity : ndarray, shape (n,), optional
        Per-draw probability the logging policy gave to ``action``, in (0, 1].
    slate_id, position : ndarray of int, shape (n,), optional
        Slate a row belongs to and its slot.
    conditional_propensity : ndarray, optional
        Probability of the item at its slot given the slots before it (Plackett-Luce).
    slate_propensity : ndarray, optional
        Joint probability of the row's whole slate.
    deterministic : ndarray of bool, optional
        Rows logged by a deterministic policy (propensity 1 or 1/#ties).

    Raises
    ------
    LogError
        Listing every inconsistent field at once.
    """

    user: NDArray[np.float64]
    candidates: NDArray[np.float64]
    action: NDArray[np.int64]
    reward: NDArray[np.float64]
    propensity: NDArray[np.float64] | None = None
    slate_id: NDArray[np.int64] | None = None
    position: NDArray[np.int64] | None = None
    conditional_propensity: NDArray[np.float64] | None = None
    slate_propensity: NDArray[np.float64] | None = None
    deterministic: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        n = np.shape(self.action)[0] if np.ndim(self.action) == 1 else -1
        if n < 0:
            problems.append(f"action must be 1-D; got shape {np.shape(self.action)}")
        if np.ndim(self.user) != 2 or (n >= 0 and np.shape(self.user)[0] != n):
            problems.append(f"user must have shape (n={n}, d_u); got {np.shape(self.user)}")
        cshape = np.shape(self.candidates)
        if len(cshape) not in (2, 3) or (len(cshape) == 3 and cshape[0] != n):
            problems.append(f"candidates must have shape (K, d_c) or (n={n}, K, d_c); got {cshape}")
        n_cand = cshape[-2] if len(cshape) in (2, 3) else 0
        if n >= 0 and not np.issubdtype(np.asarray(self.action).dtype, np.integer):
            problems.append(f"action must hold integers; got dtype {np.asarray(self.action).dtype}")
        elif n > 0 and n_cand:
            bad = np.flatnonzero((self.action < 0) | (self.action >= n_cand))
            if bad.size:
                problems.append(
                    f"action must index the {n_cand} candidates; {bad.size} rows are outside "
                    f"(rows {bad[:5].tolist()})"
                )
        for name in (
            "reward",
            "propensity",
            "slate_id",
            "position",
            "conditional_propensity",
            "slate_propensity",
            "deterministic",
        ):
            value = getattr(self, name)
            if value is not None and np.shape(value) != (n,):
                problems.append(f"{name} must have shape ({n},); got {np.shape(value)}")
        if self.reward is not None and np.shape(self.reward) == (n,):
            bad = np.flatnonzero(~np.isfinite(self.reward))
            if bad.size:
                problems.append(f"reward must be finite; {bad.size} rows are not (rows {bad[:5]})")
        for name in ("propensity", "conditional_propensity", "slate_propensity"):
            value = getattr(self, name)
            if value is not None and np.shape(value) == (n,):
                bad = np.flatnonzero(~((value > 0) & (value <= 1)))
                if bad.size:
                    problems.append(
                        f"{name} must lie in (0, 1]; {bad.size} rows do not "
                        f"(rows {bad[:5].tolist()}, values {np.asarray(value)[bad[:5]].tolist()})"
                    )
        if problems:
            raise LogError(
                "DecisionLog fields are inconsistent: "
                + "; ".join(problems)
                + ". Build the log with one row per shown item."
            )

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.action.shape[0])

    def candidates_for(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """Candidate features of ``rows``: the shared (K, d_c) matrix or the (len, K, d_c) slice."""
        return self.candidates if self.candidates.ndim == 2 else self.candidates[rows]


def discounted_returns(
    rewards: NDArray[np.float64], episode_ends: NDArray[np.bool_], gamma: float
) -> NDArray[np.float64]:
    """Discounted returns ``R_t = sum_{t' >= t} gamma^(t'-t) r_t'`` within each episode.

    Parameters
    ----------
    rewards : ndarray, shape (n,)
        Rewards in time order, episodes back to back.
    episode_ends : ndarray of bool, shape (n,)
        True at the last step of each episode (terminated or truncated).
    gamma : float
        Discount factor.

    Examples
    --------
    >>> discounted_returns(np.array([1.0, 1.0, 2.0]), np.array([False, True, True]), 0.5)
    array([1.5, 1. , 2. ])
    """
    out = np.empty(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if episode_ends[t]:
            running = 0.0
        running = rewards[t] + gamma * running
        out[t] = running
    return out


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, kw_only=True)
class EvaluationResult:
    """Per-episode figures of a policy run in an env, with 95% confidence intervals.

    Attributes
    ----------
    n_episodes : int
    mean_return, mean_length : float
    return_ci, length_ci : tuple of float
        Student-t 95% intervals over episodes.
    click_rate : float or None
        Clicks per step, from ``info["click"]`` (summed over a slate); None when the env never
        reports clicks.
    click_rate_ci : tuple of float or None
        95% interval of the ratio estimator, clustered by episode (delta method).
    returns, lengths : ndarray
        The per-episode values.
    """

    n_episodes: int
    mean_return: float
    return_ci: tuple[float, float]
    mean_length: float
    length_ci: tuple[float, float]
    click_rate: float | None
    click_rate_ci: tuple[float, float] | None
    returns: NDArray[np.float64]
    lengths: NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.n_episodes < 2:
            raise ConfigError(f"n_episodes must be at least 2; got {self.n_episodes}")
        for lo, hi in (self.return_ci, self.length_ci, self.click_rate_ci or (0, 0)):
            if not lo <= hi:
                raise ConfigError(f"confidence interval must have lo <= hi; got ({lo}, {hi})")


def _t_interval(x: NDArray[np.float64]) -> tuple[float, float]:
    from scipy import stats  # imported here: serving and the agents' acting paths need no scipy

    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def evaluate(
    env: Any,
    policy: Agent | Callable[[Observation, np.random.Generator], Any],
    episodes: int,
    *,
    rng: np.random.Generator,
) -> EvaluationResult:
    """Run ``policy`` for ``episodes`` episodes and summarise returns, lengths and clicks.

    Parameters
    ----------
    env : gymnasium.Env
        Reset once with a seed drawn from ``rng``, then without a seed.
    policy : Agent or callable
        An object with ``act(obs, *, rng)`` or a function ``f(obs, rng) -> action``.
    episodes : int
        At least 2 (an interval needs two episodes).
    rng : numpy.random.Generator
        Seeds the env and drives the policy (separate streams).

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> from simkit.agents import RandomAgent
    >>> from simkit.agents.testenvs import LinearBanditEnv
    >>> res = evaluate(LinearBanditEnv(), RandomAgent(), 20, rng=np.random.default_rng(0))
    >>> res.n_episodes
    20
    """
    if episodes < 2:
        raise ConfigError(f"episodes must be at least 2; got {episodes}")
    act: Callable[[Observation, np.random.Generator], Any]
    if hasattr(policy, "act"):
        agent = policy

        def act(o: Observation, r: np.random.Generator) -> Any:
            return agent.act(o, rng=r)  # type: ignore[union-attr]
    elif callable(policy):
        act = policy
    else:
        raise TypeError(f"policy must have .act(obs, rng=...) or be callable; got {policy!r}")
    env_rng, policy_rng = rng.spawn(2)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    clicks = np.zeros(episodes)
    saw_click = False
    obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
    for e in range(episodes):
        if e:
            obs, _ = env.reset()
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs, policy_rng))
            returns[e] += float(reward)
            lengths[e] += 1
            if "click" in info:
                saw_click = True
                clicks[e] += float(np.sum(info["click"]))
            done = terminated or truncated
    rate = rate_ci = None
    if saw_click:
        rate = float(clicks.sum() / lengths.sum())
        resid = clicks - rate * lengths
        se = math.sqrt((resid**2).sum() / (episodes * (episodes - 1))) / lengths.mean()
        from scipy import stats

        half = float(stats.t.ppf(0.975, episodes - 1) * se)
        rate_ci = (rate - half, rate + half)
    return EvaluationResult(
        n_episodes=episodes,
        mean_return=float(returns.mean()),
        return_ci=_t_interval(returns),
        mean_length=float(lengths.mean()),
        length_ci=_t_interval(lengths.astype(np.float64)),
        click_rate=rate,
        click_rate_ci=rate_ci,
        returns=returns,
        lengths=lengths,
    )


def run_bandit_online(
    agent: Any, env: Any, n_steps: int, *, rng: np.random.Generator, progress: bool = False
) -> NDArray[np.float64]:
    """Act, step and ``agent.update(obs, action, reward)`` for ``n_steps``; per-episode returns.

    The env is reset with a seed drawn from ``rng``; an episode cut short by ``n_steps`` is not
    counted.
    """
    if n_steps < 1:
        raise ConfigError(f"n_steps must be at least 1; got {n_steps}")
    env_rng, act_rng = rng.spawn(2)
    obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
    returns: list[float] = []
    episode_return = 0.0
    steps: Any = range(n_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=type(agent).__name__)
    with blas_threads(1):
        for _ in steps:
            action = agent.act(obs, rng=act_rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            agent.update(obs, action, float(reward))
            episode_return += float(reward)
            if terminated or truncated:
                returns.append(episode_return)
                episode_return = 0.0
                next_obs, _ = env.reset()
            obs = next_obs
    return np.asarray(returns)


# --------------------------------------------------------------------------- saving and loading

_REGISTRY: dict[str, Any] = {}
T = TypeVar("T", bound=type)


def register_agent(cls: T) -> T:
    """Class decorator: make ``cls`` loadable by :func:`load_agent`."""
    _REGISTRY[cls.__name__] = cls
    return cls


def config_to_json(config: Any) -> dict[str, Any]:
    """A frozen config dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_json(config_cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass; lists become tuples.

    Raises
    ------
    ArtifactError
        When the saved fields differ from the class's.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ArtifactError(
            f"Saved config has fields {unknown} that {config_cls.__name__} does not know; "
            "it was written by a newer simkit."
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return config_cls(**values)


_AGENT_FIX = "Save the agent again (or train it again if it is lost)."
_AGENT_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "simkit_version": ("a string", lambda v: isinstance(v, str)),
    "agent": ("a string", lambda v: isinstance(v, str)),
    "config": ("an object", lambda v: isinstance(v, dict)),
    "state": ("an object", lambda v: isinstance(v, dict)),
    "files": (
        "an object with the sha256 of arrays.npz",
        lambda v: (
            isinstance(v, dict) and set(v) == {"arrays.npz"} and isinstance(v["arrays.npz"], str)
        ),
    ),
}


def write_agent_folder(
    path: str | Path,
    *,
    agent: str,
    config: dict[str, Any],
    arrays: Mapping[str, NDArray[Any]],
    state: Mapping[str, Any],
    overwrite: bool,
) -> None:
    """Write ``manifest.json`` and ``arrays.npz`` into a temp folder, then rename into ``path``.

    Leftovers of an earlier save to ``path`` that was killed are removed first
    (:func:`simkit.artifacts.clean_leftovers`).

    Raises
    ------
    ArtifactError
        When ``path`` exists and ``overwrite`` is false, is a file, or is a non-empty folder that
        is not an agent folder.
    """
    from simkit import __version__

    with atomic_folder(path, overwrite=overwrite, kind="agent") as tmp:
        np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
        body = {
            "format": "simkit-agent",
            "format_version": FORMAT_VERSION,
            "simkit_version": __version__,
            "agent": agent,
            "config": config,
            "state": dict(state),
            "files": {"arrays.npz": sha256_file(tmp / "arrays.npz")},
        }
        plain = json.loads(json.dumps(body))  # the seal hashes exactly what a reader parses
        (tmp / "manifest.json").write_text(json.dumps(seal(plain), indent=2, sort_keys=True))


def read_agent_folder(
    path: str | Path, agent: str | None = None
) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """Read and check a saved agent folder; returns ``(manifest, arrays)``.

    Raises
    ------
    ArtifactError
        Missing files, an edited, truncated or wrong-typed manifest, another format version,
        another agent class, or a hash mismatch.
    """
    path = Path(path)
    manifest = open_manifest(
        path,
        fmt="simkit-agent",
        version=FORMAT_VERSION,
        label="agent",
        fix=_AGENT_FIX,
        older_fix="Train and save the agent again with this simkit.",
    )
    check_fields(manifest, _AGENT_FIELDS, path / "manifest.json", _AGENT_FIX)
    if agent is not None and manifest["agent"] != agent:
        raise ArtifactError(f"{path} holds a {manifest['agent']} agent, not a {agent}.")
    check_file_hashes(path, manifest["files"], _AGENT_FIX)
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return manifest, arrays


def load_agent(path: str | Path) -> Any:
    """Load any saved simkit agent, dispatching on the class named in its manifest.

    Raises
    ------
    ArtifactError
        For an unknown agent class or a bad folder.
    """
    manifest, _ = read_agent_folder(path)
    name = manifest.get("agent")
    if name not in _REGISTRY:
        from simkit.agents.registry import class_for

        class_for(str(name))  # imports the registered module, whose decorator registers the class
    if name not in _REGISTRY:
        raise ArtifactError(
            f"{path} holds agent {name!r}; known agents are {sorted(_REGISTRY)}. "
            "Import the module that defines it first."
        )
    return _REGISTRY[name].load(path)


class SavableAgent:
    """Mixin: ``save``/``load`` through ``_get_state`` and ``_set_state`` hooks."""

    config: Any
    Config: type

    def _get_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        raise NotImplementedError

    def _set_state(self, arrays: dict[str, NDArray[Any]], state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the agent to the folder ``path`` (``manifest.json`` + ``arrays.npz``).

        Parameters
        ----------
        path : str or Path
            Target folder; written atomically (temp folder + rename).
        overwrite : bool
            Replace an existing saved agent at ``path``.

        Raises
        ------
        ArtifactError
            When ``path`` exists and ``overwrite`` is false.
        """
        arrays, state = self._get_state()
        write_agent_folder(
            path,
            agent=type(self).__name__,
            config=config_to_json(self.config),
            arrays=arrays,
            state=state,
            overwrite=overwrite,
        )

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Read an agent written by :meth:`save`.

        Raises
        ------
        ArtifactError
            When the folder is not a saved agent of this class and format version.
        """
        manifest, arrays = read_agent_folder(path, cls.__name__)
        agent = cls(config_from_json(cls.Config, manifest["config"]))  # type: ignore[call-arg]
        agent._set_state(arrays, manifest["state"])
        return agent
