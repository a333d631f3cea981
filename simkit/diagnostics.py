"""Training diagnostics: what an agent's updates look like, and warnings when learning goes wrong.

A :class:`Diagnostics` recorder collects one row of figures per update, from whatever the agent
knows at that update: the importance-weight cap share and effective sample size (off-policy
REINFORCE, DRL-PUT), the policy entropy, the TD error and critic loss (DQN, the dual critic) and the
reward variance. Agents call the module-level :func:`record` (a no-op unless a recorder is active,
see :func:`diagnosing`), so an agent trained outside ``simkit train`` pays nothing.

Guards: a non-finite figure or reward stops training at once with :class:`TrainingDiverged`, whose
message names the update, the env step and the quantity. Warnings (:class:`DiagnosticWarning`) fire
on the known failure signatures, each with its likely cause and fix:

- more than a third of the importance weights at the cap (the policy left the logging policy's
  support; the capped gradient is biased);
- the policy entropy collapsing early (the policy turned deterministic before it learned);
- reward variance near zero (the reward carries no signal).

References
----------
.. [1] Henderson, Islam, Bachman et al. "Deep reinforcement learning that matters." AAAI 2018
   (monitoring and reporting training runs).
.. [2] Chen, Beutel, Covington et al. "Top-K off-policy correction for a REINFORCE recommender
   system." WSDM 2019 (capped importance weights).
.. [3] Kong. "A note on importance sampling using standardized weights." Technical report 348,
   University of Chicago, 1992 (effective sample size).
.. [4] Mnih, Badia, Mirza et al. "Asynchronous methods for deep reinforcement learning." ICML 2016
   (entropy as a sign of premature convergence).
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simkit.errors import TrainingDivergedError

__all__ = [
    "DiagnosticThresholds",
    "DiagnosticWarning",
    "Diagnostics",
    "TrainingDiverged",
    "diagnosing",
    "entropy",
    "observe_reward",
    "record",
    "weight_stats",
]


TrainingDiverged = TrainingDivergedError
"""Raised when training produced a non-finite figure; the message names the update, the env step
and the quantity (:class:`simkit.errors.TrainingDivergedError`)."""


class DiagnosticWarning(UserWarning):
    """A known failure signature of training (cause and fix in the message)."""


@dataclass(frozen=True, kw_only=True)
class DiagnosticThresholds:
    """When the diagnostics warn.

    Parameters
    ----------
    cap_share : float, default 1/3
        Warn when the mean share of importance weights at the cap exceeds this.
    entropy_ratio : float, default 0.1
        Warn when the policy entropy falls below this share of its first value ...
    early_share : float, default 0.25
        ... within this first share of the updates.
    reward_cv : float, default 1e-6
        Warn when the rewards' standard deviation is below this share of ``max(1, |mean|)``.
    min_updates : int, default 20
        Updates needed before the entropy and cap signatures are judged.
    min_rewards : int, default 50
        Rewards needed before the variance signature is judged.
    """

    cap_share: float = 1.0 / 3.0
    entropy_ratio: float = 0.1
    early_share: float = 0.25
    reward_cv: float = 1e-6
    min_updates: int = 20
    min_rewards: int = 50


def entropy(proba: ArrayLike) -> float:
    """Mean entropy (nats) of the rows of a probability matrix.

    Examples
    --------
    >>> round(entropy([[0.5, 0.5], [1.0, 0.0]]), 4)
    0.3466
    """
    p = np.asarray(proba, dtype=np.float64)
    p = p.reshape(-1, p.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return float(h.mean())


def weight_stats(weights: ArrayLike, cap: float) -> dict[str, float]:
    """Share of importance weights at ``cap`` and their effective sample size share.

    Returns ``{"cap_share": ..., "ess_share": ...}`` with ``ess_share = (sum w)^2 / (n sum w^2)``.

    Examples
    --------
    >>> weight_stats([1.0, 5.0, 5.0], cap=5.0)["cap_share"]
    0.6666666666666666
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    if len(w) == 0:
        return {"cap_share": 0.0, "ess_share": 1.0}
    at_cap = float(np.mean(w >= cap * (1 - 1e-9))) if np.isfinite(cap) else 0.0
    sq = float((w * w).sum())
    ess = float(w.sum() ** 2 / (len(w) * sq)) if sq > 0 else 0.0
    return {"cap_share": at_cap, "ess_share": ess}


class Diagnostics:
    """Per-update training figures, the guards and the warnings (see the module docstring).

    Parameters
    ----------
    thresholds : DiagnosticThresholds, optional
        When to warn.

    Examples
    --------
    >>> diag = Diagnostics()
    >>> with diagnosing(diag):
    ...     record(entropy=1.2, critic_loss=0.3)
    >>> diag.rows[0]["entropy"]
    1.2
    """

    def __init__(self, thresholds: DiagnosticThresholds | None = None) -> None:
        self.thresholds = thresholds or DiagnosticThresholds()
        self.rows: list[dict[str, float]] = []
        self.rewards: list[float] = []
        self.env_step = 0

    # ------------------------------------------------------------------ recording

    def record(self, **values: float) -> None:
        """Record one update's figures; a non-finite one raises :class:`TrainingDiverged`."""
        row = {"update": float(len(self.rows) + 1), "env_step": float(self.env_step)}
        for name, value in values.items():
            v = float(value)
            if not math.isfinite(v):
                raise TrainingDiverged(
                    f"Training stopped at update {len(self.rows) + 1} (env step {self.env_step}): "
                    f"the {name.replace('_', ' ')} is {v}. A non-finite {name.replace('_', ' ')} "
                    "means the learner diverged or was fed a non-finite input; check the rewards "
                    "and observations for NaN/inf, then lower the learning rate or clip gradients."
                )
            row[name] = v
        self.rows.append(row)

    def observe_reward(self, reward: ArrayLike) -> None:
        """Count env steps and keep their rewards; a non-finite reward raises at once."""
        r = np.atleast_1d(np.asarray(reward, dtype=np.float64))
        self.env_step += len(r)
        bad = np.flatnonzero(~np.isfinite(r))
        if len(bad):
            raise TrainingDiverged(
                f"Training stopped at env step {self.env_step - len(r) + int(bad[0]) + 1} "
                f"(after {len(self.rows)} updates): the reward is {r[bad[0]]}. The environment "
                "returned a non-finite reward; check the reward function and the simulator's "
                "watch-time model (a callable reward must return finite numbers)."
            )
        self.rewards.extend(r.tolist())

    def series(self, name: str) -> NDArray[np.float64]:
        """One quantity over the updates that recorded it."""
        return np.array([row[name] for row in self.rows if name in row], dtype=np.float64)

    # ------------------------------------------------------------------ judging

    def warnings(self) -> list[str]:
        """Messages of the failure signatures present so far (cause and fix in each)."""
        th, out = self.thresholds, []
        cap = self.series("cap_share")
        if len(cap) >= th.min_updates and cap.mean() > th.cap_share:
            out.append(
                f"{cap.mean():.0%} of the importance weights sat at the cap on average over "
                f"{len(cap)} updates (more than {th.cap_share:.0%}). Likely cause: the policy moved "
                "far from the logging policy, so most rows are clipped and the gradient is biased "
                "toward the logger. Fix: lower the learning rate or the temperature, raise the "
                "weight cap, or use the top-K correction with an entropy bonus."
            )
        ent = self.series("entropy")
        if len(ent) >= th.min_updates and ent[0] > 0:
            early = ent[: max(1, int(np.ceil(th.early_share * len(ent))))]
            low = (
                int(np.argmax(early < th.entropy_ratio * ent[0]))
                if (early < th.entropy_ratio * ent[0]).any()
                else -1
            )
            if low >= 0:
                out.append(
                    f"The policy entropy collapsed early: {early[low]:.3g} nats at update "
                    f"{low + 1} of {len(ent)}, below {th.entropy_ratio:.0%} of its start "
                    f"({ent[0]:.3g}). Likely cause: a learning rate or reward scale too large, so "
                    "the policy turned deterministic before it learned. Fix: lower the learning "
                    "rate, normalise the rewards, or add an entropy bonus (entropy_coef)."
                )
        r = np.asarray(self.rewards) if self.rewards else self.series("reward_mean")
        if len(r) >= th.min_rewards:
            sd, mean = float(r.std()), float(r.mean())
            if sd < th.reward_cv * max(1.0, abs(mean)):
                out.append(
                    f"The reward variance is near zero: standard deviation {sd:.3g} over "
                    f"{len(r):,} rewards (mean {mean:.4g}). Every action earns the same, so "
                    "nothing can be learned. Likely cause: a reward that never fires (a "
                    "long_watch threshold above every watch, a simulator without clicks, a "
                    "constant callable). Fix: check the env's reward setting and the simulator's "
                    "click and watch models."
                )
        return out

    def finish(self, folder: str | Path | None = None) -> list[str]:
        """Emit the warnings as :class:`DiagnosticWarning` and write ``diagnostics.csv``,
        ``diagnostics.json`` and ``diagnostics.png`` into ``folder`` (when given)."""
        messages = self.warnings()
        for m in messages:
            warnings.warn(m, DiagnosticWarning, stacklevel=2)
        if folder is not None:
            self.write(Path(folder), messages)
        return messages

    def write(self, folder: Path, messages: list[str]) -> None:
        """Write the figures, the warnings and a plot into ``folder``."""
        names = sorted({k for row in self.rows for k in row} - {"update", "env_step"})
        with open(folder / "diagnostics.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["update", "env_step", *names])
            for row in self.rows:
                writer.writerow(
                    [int(row["update"]), int(row["env_step"])]
                    + [f"{row[n]:.6g}" if n in row else "" for n in names]
                )
        r = np.asarray(self.rewards)
        summary: dict[str, Any] = {
            "updates": len(self.rows),
            "env_steps": self.env_step,
            "reward_variance": float(r.var()) if len(r) else None,
            "warnings": messages,
        }
        (folder / "diagnostics.json").write_text(json.dumps(summary, indent=2))
        self.plot(folder / "diagnostics.png", names)

    def plot(self, path: Path, names: list[str]) -> None:
        """One panel per recorded quantity over the updates."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = names or ["reward"]
        fig, axes = plt.subplots(len(panels), 1, figsize=(6, 1.8 * len(panels)), squeeze=False)
        for ax, name in zip(axes[:, 0], panels):
            if name == "reward" and not names:
                ax.plot(np.asarray(self.rewards), lw=0.5)
                ax.set_xlabel("env step")
            else:
                rows = [row for row in self.rows if name in row]
                ax.plot([row["update"] for row in rows], [row[name] for row in rows], lw=0.8)
                ax.set_xlabel("update")
            ax.set_ylabel(name.replace("_", " "), fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)


_ACTIVE: contextvars.ContextVar[Diagnostics | None] = contextvars.ContextVar(
    "simkit_diagnostics", default=None
)


@contextlib.contextmanager
def diagnosing(diag: Diagnostics) -> Iterator[Diagnostics]:
    """Make ``diag`` the recorder that :func:`record` and :func:`observe_reward` write to."""
    token = _ACTIVE.set(diag)
    try:
        yield diag
    finally:
        _ACTIVE.reset(token)


def record(**values: float) -> None:
    """Record one update's figures in the active recorder (nothing without one)."""
    diag = _ACTIVE.get()
    if diag is not None:
        diag.record(**values)


def observe_reward(reward: ArrayLike) -> None:
    """Pass env rewards to the active recorder (nothing without one)."""
    diag = _ACTIVE.get()
    if diag is not None:
        diag.observe_reward(reward)
