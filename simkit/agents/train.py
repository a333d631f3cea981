"""Train reference agents in a fitted simulator and compare saved agents: what ``simkit train`` and
``simkit evaluate`` run.

A *run folder* (``simkit train ... --out RUN_DIR``) holds:

- ``agent/``: the saved agent (:meth:`save` of the agent; ``load_agent`` reads it back);
- ``curve.csv``: one row per completed training episode (``episode``, ``end_step``, ``return``,
  ``length``), and ``curve.png``, the returns with a moving average;
- ``run.json``: the settings (agent, simulator path, steps, candidates, seed, agent config) and a
  summary, written last: a folder without it is an interrupted run.

Training happens in :class:`simkit.envs.SessionEnv` (``simkit/Session-v0``: one item shown per
step out of ``n_candidates``, reward = seconds watched). The agents and their defaults are those of
:data:`simkit.agents.registry.AGENTS`:

- ``random``, ``popular``, ``greedy`` do not learn: they run ``n_steps`` env steps (the curve
  shows their level) and are saved;
- ``linucb`` and ``lints`` update their ridge statistics after every step with that step's reward
  (a contextual bandit over the candidate rows, which already hold user-item features such as
  ``dot`` and ``cos``);
- ``reinforce`` runs on-policy REINFORCE (``learn_online``) with discounted in-session returns.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from simkit.agents.base import (
    EvaluationResult,
    blas_threads,
    config_to_json,
    evaluate,
    load_agent,
)
from simkit.agents.registry import AGENTS, agent_names, agent_spec, build_agent
from simkit.diagnostics import Diagnostics, diagnosing, observe_reward
from simkit.errors import ArtifactError, ConfigError

__all__ = [
    "AGENT_NAMES",
    "EpisodeRecorder",
    "RetentionResult",
    "TrainResult",
    "baseline_returns",
    "learning_summary",
    "evaluate_runs",
    "trust_verdicts",
    "format_retention_table",
    "format_table",
    "make_agent",
    "make_env",
    "plot_comparison",
    "plot_learning_curve",
    "read_run",
    "train_agent",
    "write_table_csv",
]

RUN_FORMAT_VERSION = 1
AGENT_NAMES = agent_names()
"""Names of the registered agents (:data:`simkit.agents.registry.AGENTS`)."""


# --------------------------------------------------------------------------- env and agents


SIMULATOR_ENVS = ("simkit/Session-v0", "simkit/Retention-v0")
"""Env ids :func:`train_agent` builds over a simulator (the retention env needs a return model)."""


def make_env(
    simulator: Any, *, n_candidates: int = 50, env_id: str = "simkit/Session-v0"
) -> gym.Env:
    """The env ``env_id`` (one of :data:`SIMULATOR_ENVS`) over ``simulator`` (Simulator or path).

    Raises
    ------
    ArtifactError
        When the simulator folder cannot be loaded.
    ConfigError
        When ``n_candidates`` does not fit the simulator.
    """
    import simkit.envs  # noqa: F401  (registers simkit/Session-v0 and simkit/Retention-v0)

    return gym.make(env_id, simulator=simulator, n_candidates=n_candidates)


def _session_agents() -> list[str]:
    return [name for name, spec in AGENTS.items() if spec.env in SIMULATOR_ENVS]


def make_agent(name: str, env: gym.Env, *, simulator_path: str | os.PathLike[str]) -> Any:
    """A fresh agent ``name`` for ``env`` with its registered defaults.

    See :func:`simkit.agents.registry.build_agent`.

    Raises
    ------
    ConfigError
        For an unknown name.
    """
    return build_agent(name, env, simulator_path=simulator_path)


class EpisodeRecorder(gym.Wrapper):
    """Records the return and length of every completed episode (and calls ``on_episode``)."""

    def __init__(self, env: gym.Env, on_episode: Callable[[float, int], None] | None = None):
        super().__init__(env)
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.end_steps: list[int] = []
        self.total_steps = 0
        self._return, self._length = 0.0, 0
        self._on_episode = on_episode

    def reset(self, **kwargs: Any) -> Any:
        self._return, self._length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        observe_reward(float(reward))  # diagnostics: NaN guard and reward variance (when recording)
        self._return += float(reward)
        self._length += 1
        self.total_steps += 1
        if terminated or truncated:
            self.returns.append(self._return)
            self.lengths.append(self._length)
            self.end_steps.append(self.total_steps)
            if self._on_episode is not None:
                self._on_episode(self._return, self._length)
        return obs, reward, terminated, truncated, info


def _run_policy(
    agent: Any, env: gym.Env, n_steps: int, *, rng: np.random.Generator, progress: bool
) -> None:
    """Act for ``n_steps`` env steps without learning (resetting after each episode)."""
    env_rng, act_rng = rng.spawn(2)
    obs, _ = env.reset(seed=int(env_rng.integers(2**63 - 1)))
    steps: Any = range(n_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=type(agent).__name__)
    for _ in steps:
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, rng=act_rng))
        if terminated or truncated:
            obs, _ = env.reset()


# --------------------------------------------------------------------------- training


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What :func:`train_agent` produced.

    Attributes
    ----------
    agent : Agent
    run_dir : Path
    returns, lengths : ndarray
        Return and length of each completed training episode.
    end_steps : ndarray
        Env step at which each episode ended.
    seconds : float
        Wall time of training.
    settings : dict
        What ``run.json`` holds.
    """

    agent: Any
    run_dir: Path
    returns: NDArray[np.float64]
    lengths: NDArray[np.int64]
    end_steps: NDArray[np.int64]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def _check_out(out: Path, overwrite: bool) -> None:
    """Raise unless ``out`` is free, or is a run folder and ``overwrite`` is set."""
    if not out.exists():
        return
    if not overwrite:
        raise ArtifactError(
            f"{out} already exists; choose another --out folder or pass --overwrite to replace "
            "the run in it."
        )
    is_run = (out / "run.json").is_file() or (out / "agent").is_dir()
    if not out.is_dir() or (any(out.iterdir()) and not is_run):
        raise ArtifactError(
            f"{out} exists and is not a run folder (no run.json or agent/); refusing to replace "
            "it. Choose another --out folder."
        )


def train_agent(
    simulator_dir: str | os.PathLike[str],
    agent: str,
    *,
    n_steps: int,
    out: str | os.PathLike[str],
    rng: np.random.Generator,
    n_candidates: int = 50,
    overwrite: bool = False,
    progress: bool = False,
    record: Mapping[str, Any] | None = None,
    baseline_episodes: int = 100,
) -> TrainResult:
    """Train (or just run) ``agent`` in the simulator for ``n_steps`` env steps; write a run folder.

    Parameters
    ----------
    simulator_dir : str or PathLike
        Simulator folder written by ``simkit fit``.
    agent : str
        One of :data:`AGENT_NAMES`.
    n_steps : int
        Env steps (decisions) of training.
    out : str or PathLike
        Run folder to write (see the module docstring).
    rng : numpy.random.Generator
        Seeds the env and the agent (separate streams).
    n_candidates : int
        Candidates offered per step.
    overwrite : bool
        Replace an existing run folder.
    progress : bool
        Show a progress bar.
    record : mapping, optional
        Extra settings written to ``run.json`` (the CLI records its ``--seed`` here).
    baseline_episodes : int
        Episodes of the random and most-popular baselines drawn on the learning curve (0: none).

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        Unknown agent, ``n_steps < 1``, or candidates that do not fit the simulator.
    ArtifactError
        Missing simulator folder, or ``out`` exists and ``overwrite`` is false.

    Examples
    --------
    >>> res = train_agent("sim/", "reinforce", n_steps=8000, out="runs/pg",
    ...                   rng=np.random.default_rng(0))                     # doctest: +SKIP
    >>> res.returns[-200:].mean()                                          # doctest: +SKIP
    """
    spec = agent_spec(agent)
    if spec.env not in SIMULATOR_ENVS:
        raise ConfigError(
            f"Agent {agent!r} trains in {spec.env}, not in an env over a simulator; "
            f"'simkit train SIM_DIR' trains session agents ({', '.join(_session_agents())}). "
            f"Train {agent!r} from Python (see the {spec.target.partition(':')[0]} module)."
        )
    if n_steps < 1:
        raise ConfigError(f"--steps must be at least 1; got {n_steps}.")
    sim_dir = Path(simulator_dir).resolve()
    out = Path(out)
    _check_out(out, overwrite)  # before the slow part
    env = EpisodeRecorder(make_env(sim_dir, n_candidates=n_candidates, env_id=spec.env))
    policy = make_agent(agent, env, simulator_path=sim_dir)
    start = time.perf_counter()
    diag = Diagnostics()
    with blas_threads(1), diagnosing(diag):
        if spec.learns_online:
            policy.learn_online(env, n_steps, rng=rng, progress=progress)
        else:
            _run_policy(policy, env, n_steps, rng=rng, progress=progress)
    seconds = time.perf_counter() - start
    returns = np.asarray(env.returns, dtype=np.float64)
    lengths = np.asarray(env.lengths, dtype=np.int64)
    end_steps = np.asarray(env.end_steps, dtype=np.int64)

    _check_out(out, overwrite)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    policy.save(out / "agent")
    _write_curve(out / "curve.csv", returns, lengths, end_steps)
    base = (
        baseline_returns(sim_dir, n_episodes=baseline_episodes, n_candidates=n_candidates, rng=rng)
        if baseline_episodes and spec.env == "simkit/Session-v0"
        else {}
    )
    plot_learning_curve(
        returns, end_steps, out / "curve.png", title=f"{agent} training", baselines=base
    )
    diagnostic_warnings = diag.finish(out)  # diagnostics.csv/.json/.png; warns on failure signs
    tail = returns[-max(1, len(returns) // 5) :] if len(returns) else returns
    from simkit import __version__

    settings = {
        "format": "simkit-run",
        "format_version": RUN_FORMAT_VERSION,
        "simkit_version": __version__,
        "agent": agent,
        "agent_class": type(policy).__name__,
        "learns": spec.learns_online,
        "simulator": str(sim_dir),
        "n_steps": int(n_steps),
        "n_candidates": int(n_candidates),
        "max_episode_steps": env.spec.max_episode_steps if env.spec is not None else None,
        "env": spec.env,
        "reward": "watch_time" if spec.env == "simkit/Session-v0" else "clicks - gap_days",
        **dict(record or {}),
        "agent_config": config_to_json(policy.config),
        "episodes": len(returns),
        "mean_return_last_fifth": float(tail.mean()) if len(tail) else None,
        "learning_summary": learning_summary(returns, learns=spec.learns_online),
        "baselines": base,
        "seconds": round(seconds, 3),
        "diagnostic_warnings": diagnostic_warnings,
    }
    (out / "run.json").write_text(json.dumps(settings, indent=2))
    return TrainResult(
        agent=policy,
        run_dir=out,
        returns=returns,
        lengths=lengths,
        end_steps=end_steps,
        seconds=seconds,
        settings=settings,
    )


def _write_curve(
    path: Path, returns: NDArray[Any], lengths: NDArray[Any], end_steps: NDArray[Any]
) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "end_step", "return", "length"])
        for i, (r, n, s) in enumerate(zip(returns, lengths, end_steps)):
            writer.writerow([i, int(s), f"{r:.6g}", int(n)])


def _moving_average(x: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    c = np.cumsum(np.concatenate([[0.0], x]))
    n = np.minimum(np.arange(1, len(x) + 1), window)
    return (c[1:] - c[np.arange(1, len(x) + 1) - n]) / n


def learning_summary(returns: NDArray[np.float64], *, learns: bool = True) -> str:
    """The first- vs last-fifth mean returns, and whether their difference is outside noise.

    The difference of the two means gets a normal 95% interval from the episodes' spread (Welch);
    the change is "outside noise" only when that interval excludes 0. For an agent that does not
    learn, a difference can only come from noise or from which episodes end first (short ones).

    Examples
    --------
    >>> r = np.r_[np.full(50, 10.0), np.full(50, 10.5)] + np.tile([-3.0, 3.0], 50)
    >>> learning_summary(r).endswith("within noise.")
    True
    """
    r = np.asarray(returns, dtype=np.float64)
    if len(r) == 0:
        return "no episode completed: raise --steps"
    fifth = max(1, len(r) // 5)
    first, last = r[:fifth], r[-fifth:]
    text = (
        f"{len(r):,} episodes; mean return {first.mean():.1f} in the first fifth, "
        f"{last.mean():.1f} in the last fifth"
    )
    if fifth < 2:
        return text + "; too few episodes to tell a change from noise."
    diff = last.mean() - first.mean()
    half = 1.96 * math.sqrt(first.var(ddof=1) / len(first) + last.var(ddof=1) / len(last))
    outside = abs(diff) > half
    verdict = "outside noise" if outside else "within noise"
    text += (
        f": change {diff:+.1f} (95% interval [{diff - half:+.1f}, {diff + half:+.1f}]), {verdict}."
    )
    if not learns and outside:
        text += " This agent does not learn: the change comes from which episodes ended first."
    elif not learns:
        text += " (This agent does not learn.)"
    return text


def baseline_returns(
    simulator_dir: str | os.PathLike[str],
    *,
    n_episodes: int = 200,
    n_candidates: int = 50,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Mean return of a random and of a most-popular policy over ``n_episodes`` episodes each.

    Both run in the native vector env (one session per episode, the registered 200-step limit),
    so the learning curve can show what choosing at random and always picking the most popular
    candidate achieve in the same simulator.
    """
    from simkit.envs import SessionVectorEnv

    out = {}
    for name in ("random", "popular"):
        envs = SessionVectorEnv(
            str(simulator_dir),
            num_envs=n_episodes,
            n_candidates=n_candidates,
            max_episode_steps=200,
            autoreset_mode="Disabled",
        )
        obs, _ = envs.reset(seed=int(rng.integers(2**31)))
        pop = envs.candidate_names.index("item_log_pop")
        pick = np.random.default_rng(rng.integers(2**31))
        total = np.zeros(n_episodes)
        done = np.zeros(n_episodes, dtype=bool)
        while not done.all():
            if name == "random":
                a = pick.integers(n_candidates, size=n_episodes)
            else:
                a = np.argmax(obs["candidates"][:, :, pop], axis=1)
            obs, reward, terminated, truncated, _ = envs.step(a)
            total += np.where(done, 0.0, reward)
            done |= terminated | truncated
        out[name] = float(total.mean())
    return out


def plot_learning_curve(
    returns: NDArray[np.float64],
    end_steps: NDArray[np.int64],
    path: str | Path,
    *,
    title: str,
    baselines: Mapping[str, float] | None = None,
) -> None:
    """Per-episode returns against env steps, a trailing moving average and baselines, as a PNG.

    ``baselines`` (e.g. :func:`baseline_returns`) are drawn as labelled horizontal lines. When a
    few very long sessions would flatten the average, the y-axis is cut at the 98th percentile of
    the returns, and the axis label says so with the number of episodes above the cut.
    """
    curve_figure(returns, end_steps, title=title, baselines=baselines).savefig(path)


def curve_figure(
    returns: NDArray[np.float64],
    end_steps: NDArray[np.int64],
    *,
    title: str,
    baselines: Mapping[str, float] | None = None,
) -> Any:
    """The matplotlib ``Figure`` of :func:`plot_learning_curve`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    ylabel = "episode return (s watched)"
    if len(returns):
        window = max(1, len(returns) // 25)
        smooth = _moving_average(returns, window)
        ax.plot(end_steps, returns, ".", ms=2, alpha=0.3, color="tab:blue", label="episode")
        ax.plot(end_steps, smooth, color="tab:red", label=f"moving average ({window} episodes)")
        colors = {"random": "tab:gray", "popular": "tab:green"}
        for name, value in (baselines or {}).items():
            ax.axhline(
                value, ls="--", lw=1.2, color=colors.get(name, "k"), label=f"{name}: {value:.1f}"
            )
        top = max(
            float(np.quantile(returns, 0.98)),
            1.2 * float(smooth.max()),
            *(1.1 * v for v in (baselines or {}).values()),
        )
        bottom = min(0.0, float(returns.min()))
        above = int((returns > top).sum())
        if top > bottom:
            ax.set_ylim(bottom, top)
        if above:
            ylabel += f"\naxis cut at the 98th percentile: {above} episode(s) above"
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no episode completed", ha="center", transform=ax.transAxes)
    ax.set_xlabel("env step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- evaluation


def read_run(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """Settings (``run.json``, or ``{}``) and agent folder of a run folder or a saved agent folder.

    Raises
    ------
    ArtifactError
        When ``path`` is neither.
    """
    path = Path(path)
    if (path / "run.json").is_file() and (path / "agent").is_dir():
        try:
            settings = json.loads((path / "run.json").read_text())
        except ValueError as exc:
            raise ArtifactError(f"{path / 'run.json'} is not valid JSON ({exc}).") from exc
        return settings, path / "agent"
    if (path / "manifest.json").is_file():
        return {}, path
    what = "does not exist" if not path.exists() else "is not a run folder"
    raise ArtifactError(
        f"{path} {what}: --agents takes folders written by 'simkit train ... --out RUN_DIR' "
        "(holding run.json and agent/) or saved agent folders (holding manifest.json)."
    )


def evaluate_runs(
    simulator_dir: str | os.PathLike[str],
    runs: Sequence[str | os.PathLike[str]],
    *,
    episodes: int,
    rng: np.random.Generator,
    n_candidates: int | None = None,
    progress: bool = False,
    env_id: str | None = None,
) -> dict[str, EvaluationResult]:
    """Evaluate saved agents in the simulator with :func:`simkit.agents.base.evaluate`.

    In ``simkit/Retention-v0`` each result is a :class:`RetentionResult` that also holds the
    retention figures (sessions per user, return days, day-1 retention, watch).

    Every agent meets the same stream of users (the env is seeded identically for each).

    Parameters
    ----------
    simulator_dir : str or PathLike
    runs : sequence of paths
        Run folders (or saved agent folders).
    episodes : int
        Episodes per agent (at least 2).
    rng : numpy.random.Generator
    n_candidates : int, optional
        Candidates per step; by default the runs' own (they must agree).
    progress : bool
        Show a progress bar of episodes.
    env_id : str, optional
        One of :data:`SIMULATOR_ENVS`; by default the env the runs were trained in (``run.json``),
        ``simkit/Retention-v0`` when any of them was.

    Returns
    -------
    dict
        Label of each run (its folder name, or the path when names repeat) to its result.

    Raises
    ------
    ArtifactError
        A missing or unreadable run or simulator folder.
    ConfigError
        Runs trained with different candidate counts and no ``n_candidates``; no runs.

    Examples
    --------
    >>> results = evaluate_runs("sim/", ["runs/pg", "runs/random"], episodes=1000,
    ...                         rng=np.random.default_rng(0))               # doctest: +SKIP
    >>> print(format_table(results))                                       # doctest: +SKIP
    """
    if not runs:
        raise ConfigError("Give at least one run folder to evaluate (--agents RUN_DIR ...).")
    if episodes < 2:
        raise ConfigError(f"--episodes must be at least 2 (an interval needs two); got {episodes}.")
    read = [read_run(r) for r in runs]
    agents = [load_agent(agent_dir) for _, agent_dir in read]
    if n_candidates is None:
        ks = {s["n_candidates"] for s, _ in read if "n_candidates" in s}
        if len(ks) > 1:
            raise ConfigError(
                f"The runs were trained with different candidate counts {sorted(ks)}; pass "
                "--candidates K to evaluate them all with K candidates."
            )
        n_candidates = ks.pop() if ks else 50
    if env_id is None:
        trained_in = {s.get("env", "simkit/Session-v0") for s, _ in read}
        env_id = "simkit/Retention-v0" if "simkit/Retention-v0" in trained_in else SIMULATOR_ENVS[0]
    if env_id not in SIMULATOR_ENVS:
        raise ConfigError(f"env_id must be one of {SIMULATOR_ENVS}; got {env_id!r}.")
    names = [Path(r).resolve().name for r in runs]
    labels = names if len(set(names)) == len(names) else [str(r) for r in runs]
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=episodes * len(agents), desc="evaluate", unit="episode")
    env = EpisodeRecorder(
        _evaluation_env(Path(simulator_dir).resolve(), n_candidates, env_id),
        on_episode=None if bar is None else (lambda r, n: bar.update()),
    )
    for agent in agents:
        if getattr(agent, "reward_prior", "no") is None and hasattr(agent, "set_reward_prior"):
            agent.set_reward_prior(env.unwrapped.immediate_values)  # type: ignore[attr-defined]
    common = rng.spawn(1)[0]
    results = {}
    try:
        with blas_threads(1):
            for label, agent in zip(labels, agents):
                if bar is not None:
                    bar.set_postfix_str(label)
                results[label] = evaluate(env, agent, episodes, rng=copy.deepcopy(common))
                if hasattr(env.env, "pop_figures"):  # simkit/Retention-v0's RetentionRecorder
                    results[label] = RetentionResult(
                        **vars(results[label]), retention=env.env.pop_figures()
                    )
    finally:
        if bar is not None:
            bar.close()
    return results


@dataclass(frozen=True, kw_only=True)
class RetentionResult(EvaluationResult):
    """An :class:`~simkit.agents.base.EvaluationResult` in ``simkit/Retention-v0`` with the
    retention figures of its episodes (:class:`simkit.envs.retention.RetentionFigures`)."""

    retention: Any


def _evaluation_env(sim_dir: Path, n_candidates: int, env_id: str) -> gym.Env:
    env = make_env(sim_dir, n_candidates=n_candidates, env_id=env_id)
    if env_id == "simkit/Retention-v0":
        from simkit.envs.retention import RetentionRecorder

        return RetentionRecorder(env)
    return env


def format_retention_table(results: Mapping[str, EvaluationResult]) -> str:
    """Plain-text table of the retention figures of :class:`RetentionResult` rows, 95% CIs."""
    heads = ("sessions/user", "return days", "day-1 retention", "watch/user (s)")
    keys = ("sessions_per_user", "return_days", "day1_retention", "watch_per_user")
    rows = [("agent", *(h for head in heads for h in (head, "95% CI")))]
    for label, r in results.items():
        if isinstance(r, RetentionResult):
            fig = r.retention.summary()
            cells = []
            for key in keys:
                mean, lo, hi = fig[key]
                digits = 0 if key == "watch_per_user" else 3
                cells += [f"{mean:.{digits}f}", _ci((lo, hi), digits)]
            rows.append((label, *cells))
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def trust_verdicts(
    simulator_dir: str | os.PathLike[str],
    runs: Sequence[str | os.PathLike[str]],
    logs: Any,
    *,
    rng: np.random.Generator,
    n_sessions: int = 300,
) -> dict[str, Any]:
    """The trust report of each run (:func:`simkit.validation.trust.trust_report`), by label.

    ``logs`` are held-out :class:`~simkit.logs.Logs`; the confounding check runs once for all
    runs. ``report.verdict`` is the line ``simkit evaluate`` prints per agent.
    """
    from simkit.agents.policy import load_agent_policies
    from simkit.simulator import Simulator
    from simkit.validation.confounding import confounding_check
    from simkit.validation.trust import trust_report

    sim = Simulator.load(Path(simulator_dir))
    conf_rng, run_rng = rng.spawn(2)
    conf = confounding_check(sim, logs, rng=conf_rng)
    return {
        p.name.removeprefix("agent:"): trust_report(
            sim, p, logs, rng=copy.deepcopy(run_rng), n_sessions=n_sessions, confounding=conf
        )
        for p in load_agent_policies(list(runs))
    }


def _ci(lo_hi: tuple[float, float] | None, digits: int) -> str:
    if lo_hi is None:
        return "-"
    return f"[{lo_hi[0]:.{digits}f}, {lo_hi[1]:.{digits}f}]"


def format_table(results: Mapping[str, EvaluationResult]) -> str:
    """Plain-text table: mean return, session length and click rate, each with its 95% CI."""
    rows = [("agent", "mean return", "95% CI", "length", "95% CI", "click rate", "95% CI")]
    for label, r in results.items():
        rate = "-" if r.click_rate is None else f"{r.click_rate:.3f}"
        rows.append(
            (
                label,
                f"{r.mean_return:.1f}",
                _ci(r.return_ci, 1),
                f"{r.mean_length:.2f}",
                _ci(r.length_ci, 2),
                rate,
                _ci(r.click_rate_ci, 3),
            )
        )
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    n = {r.n_episodes for r in results.values()}
    what = "seconds watched"
    if any(isinstance(r, RetentionResult) for r in results.values()):
        what = "clicks - days away over the horizon (simkit/Retention-v0)"
    lines.append(f"({', '.join(map(str, sorted(n)))} episodes per agent; return = {what})")
    return "\n".join(lines)


def write_table_csv(results: Mapping[str, EvaluationResult], path: str | Path) -> None:
    """The table of :func:`format_table` as CSV (one row per agent)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "agent",
                "episodes",
                "mean_return",
                "return_lo",
                "return_hi",
                "mean_length",
                "length_lo",
                "length_hi",
                "click_rate",
                "click_rate_lo",
                "click_rate_hi",
            ]
        )
        for label, r in results.items():
            rate = (r.click_rate, *(r.click_rate_ci or (None, None)))
            writer.writerow(
                [label, r.n_episodes, r.mean_return, *r.return_ci, r.mean_length, *r.length_ci]
                + ["" if v is None else v for v in rate]
            )


def plot_comparison(results: Mapping[str, EvaluationResult], path: str | Path) -> None:
    """Bar chart (PNG) of mean return, session length and click rate with 95% CI error bars."""
    from matplotlib.figure import Figure

    labels = list(results)
    panels = [
        ("mean return (s watched)", [r.mean_return for r in results.values()], "return_ci"),
        ("mean session length", [r.mean_length for r in results.values()], "length_ci"),
        (
            "click rate",
            [math.nan if r.click_rate is None else r.click_rate for r in results.values()],
            "click_rate_ci",
        ),
    ]
    fig = Figure(figsize=(3 * max(3.0, 1.5 + 0.6 * len(labels)), 4), dpi=100)
    x = np.arange(len(labels))
    for j, (title, means, ci_name) in enumerate(panels):
        ax = fig.add_subplot(1, 3, j + 1)
        err = np.zeros((2, len(labels)))
        for i, r in enumerate(results.values()):
            ci = getattr(r, ci_name)
            if ci is not None:
                err[:, i] = (means[i] - ci[0], ci[1] - means[i])
        ax.bar(x, means, yerr=err, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_title(title)
    fig.suptitle("policy comparison (error bars: 95% CI)")
    fig.tight_layout()
    fig.savefig(path)
