"""Shadow evaluation: replay fresh logs the policy never saw and estimate its per-request value.

A *decision log* (:func:`write_decision_log`, one ``.npz`` per log, read without pickle) holds one
row per request, in the schema every simkit agent logs: ``context`` (n, d_u), ``candidates``
(n, K, d_c), the logged ``action`` (n,), its ``propensity`` under the logging policy (n,),
``reward`` (n,), and optionally ``session_id``/``step`` (for the session-level estimate),
``item_ids`` (n, K) (for catalogue coverage) and named reward components ``reward.<name>``.

:func:`shadow_report` computes, against the logging policy's own (on-policy) value:

- the target policy's per-request value by SNIPS and DR (cross-fitted ridge reward model), with
  bootstrap 95% intervals (:mod:`simkit.validation.ope`);
- the share of requests where the policy's most probable item is the logged one;
- the effective sample size and the propensity sanity check (mean weight within 3 SE of 1);
- the action distribution: catalogue coverage and the share of exposure of the top 10 items;
- a session-level estimate (trajectory-wise importance sampling) only where its ESS reaches the
  minimum; on the synthetic world whole-session weights kept 0.3-1.5% of the sessions.

Per-request OPE measures a decision's immediate value, not what it does to the rest of the session
or to the user's return; the report says so, and points to the simulator (``simkit evaluate``)
and its trust check (``simkit validate --agents``) for long-term value.

References
----------
Swaminathan, Joachims. The self-normalized estimator for counterfactual learning. NeurIPS 2015.
Dudik, Langford, Li. Doubly robust policy evaluation and learning. ICML 2011.
Kish. Survey Sampling. Wiley 1965 (effective sample size).
Precup, Sutton, Singh. Eligibility traces for off-policy policy evaluation. ICML 2000.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ArtifactError, ConfigError, LogError
from simkit.serving.policy import ServedPolicy

__all__ = [
    "ShadowGates",
    "ShadowReport",
    "read_decision_log",
    "shadow_report",
    "write_decision_log",
]

F64 = NDArray[np.float64]
LIMITS = (
    "Per-request off-policy estimates measure the immediate value of one decision (its expected "
    "click or watch), not what the decision does to the rest of the session or to whether the "
    "user comes back. A policy that wins per request can lose over a session (clickbait). For "
    "long-term value, run the policy in the simulator (simkit evaluate) and check that the "
    "simulator ranks policies like the logs do (simkit validate --agents)."
)


def write_decision_log(path: str | Path, **arrays: Any) -> Path:
    """Write a decision log (``.npz``): ``context``, ``candidates``, ``action``, ``propensity``,
    ``reward`` and the optional fields of the module docstring.

    Raises
    ------
    LogError
        When a required field is missing (the log is checked as :func:`read_decision_log` does).
    """
    path = Path(path)
    data = {k: np.asarray(v) for k, v in arrays.items()}
    _check_log(data, path)
    np.savez(path, **data)  # type: ignore[arg-type]
    return path


def read_decision_log(path: str | Path) -> dict[str, NDArray[Any]]:
    """Read and check a decision log written by :func:`write_decision_log`.

    Raises
    ------
    LogError
        Missing fields, inconsistent shapes, propensities outside (0, 1], actions that do not
        index the candidates, or non-finite rewards; every problem in one message.
    ArtifactError
        When the file cannot be read as ``.npz`` without pickle.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a decision log (.npz without pickle): {exc}") from None
    _check_log(data, path)
    return data


def _check_log(data: dict[str, NDArray[Any]], path: Path) -> None:
    need = ("context", "candidates", "action", "propensity", "reward")
    missing = [k for k in need if k not in data]
    if missing:
        raise LogError(
            f"{path}: a decision log needs the arrays {list(need)}; {missing} are missing "
            f"(found {sorted(data)}). Log one row per request with what the policy saw and did."
        )
    n = data["action"].shape[0] if data["action"].ndim == 1 else -1
    problems = []
    if data["context"].ndim != 2 or data["context"].shape[0] != n:
        problems.append(f"context must be (n={n}, d_u); got {data['context'].shape}")
    if data["candidates"].ndim != 3 or data["candidates"].shape[0] != n:
        problems.append(f"candidates must be (n={n}, K, d_c); got {data['candidates'].shape}")
    for k in ("propensity", "reward", "session_id", "step"):
        if k in data and data[k].shape != (n,):
            problems.append(f"{k} must have shape ({n},); got {data[k].shape}")
    if not problems:
        k_c = data["candidates"].shape[1]
        checks = {
            "propensity must lie in (0, 1]": ~(
                (data["propensity"] > 0) & (data["propensity"] <= 1)
            ),
            f"action must index the {k_c} candidates": (data["action"] < 0)
            | (data["action"] >= k_c),
            "reward must be finite": ~np.isfinite(data["reward"]),
        }
        for what, bad in checks.items():
            if bad.any():
                rows = np.flatnonzero(bad)
                problems.append(f"{what}; {rows.size} rows do not (rows {rows[:5].tolist()})")
    if problems:
        raise LogError(f"{path}: " + "; ".join(problems) + ".")


@dataclass(frozen=True, kw_only=True)
class ShadowGates:
    """Release gates of ``simkit shadow --strict``.

    Parameters
    ----------
    min_ess_share : float
        Smallest ESS of the per-request weights as a share of the requests (0.01).
    max_value_drop : float
        Largest relative drop of the policy's DR estimate below the logging policy's value (0.05).
    min_agreement : float
        Smallest share of requests where the policy's top item is the logged one (0: not gated).
    """

    min_ess_share: float = 0.01
    max_value_drop: float = 0.05
    min_agreement: float = 0.0

    def __post_init__(self) -> None:
        bad = [k for k, v in self.__dict__.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ConfigError(f"ShadowGates must be finite and >= 0; got bad {', '.join(bad)}.")


@dataclass(frozen=True, kw_only=True)
class ShadowReport:
    """Figures and verdicts of a shadow run (see :func:`shadow_report`)."""

    n_requests: int
    logging_value: tuple[float, float, float]
    snips: Any
    dr: Any
    agreement: float
    ess: float
    weights_ok: bool
    mean_weight: float
    coverage: float | None
    top10_share: float | None
    session: Any | None
    gates: dict[str, tuple[float, str, float, bool]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """All gates passed."""
        return all(v[3] for v in self.gates.values())

    def summary(self) -> str:
        """Plain-text summary."""
        lo, mid, hi = self.logging_value
        lines = [
            f"requests: {self.n_requests}",
            f"logging policy (on-policy mean reward): {mid:.4g}, 95% CI [{lo:.4g}, {hi:.4g}]",
            self.snips.summary(),
            self.dr.summary(),
            f"agreement with the logged item: {self.agreement:.3f}",
        ]
        if self.coverage is not None:
            lines.append(
                f"catalogue coverage {self.coverage:.3f}, top-10 items' exposure share "
                f"{self.top10_share:.3f}"
            )
        if self.session is None:
            lines.append("session-level estimate: not computed (no session_id/step in the log)")
        elif not self.session.enough_overlap:
            lines.append(f"session-level estimate: withheld, {self.session.display_value}")
        else:
            lines.append("session-level: " + self.session.summary().splitlines()[0])
        for name, (value, op, threshold, ok) in self.gates.items():
            lines.append(
                f"gate {name}: {value:.4g} {op} {threshold:.4g}: {'ok' if ok else 'FAILED'}"
            )
        lines.append(LIMITS)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""

        def est(e: Any) -> dict[str, float] | None:
            if e is None:
                return None
            keys = ("value", "ci_low", "ci_high", "ess", "mean_weight", "enough_overlap")
            return {k: float(getattr(e, k)) for k in keys}

        return {
            "n_requests": self.n_requests,
            "logging_value": list(self.logging_value),
            "snips": est(self.snips),
            "dr": est(self.dr),
            "session": est(self.session),
            "agreement": self.agreement,
            "ess": self.ess,
            "weights_ok": self.weights_ok,
            "coverage": self.coverage,
            "top10_share": self.top10_share,
            "gates": {
                k: {"value": v[0], "threshold": v[2], "passed": v[3]} for k, v in self.gates.items()
            },
            "passed": self.passed,
            "limits": LIMITS,
        }

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML page of the report."""
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v[0]:.4g} {html.escape(v[1])} {v[2]:.4g}</td>"
            f"<td>{'ok' if v[3] else 'FAILED'}</td></tr>"
            for k, v in self.gates.items()
        )
        body = (
            "<!doctype html><html><head><meta charset='utf-8'><title>simkit shadow</title></head>"
            "<body><h1>Shadow evaluation</h1>"
            f"<p><b>Verdict: {'passed' if self.passed else 'FAILED'}</b></p>"
            f"<pre>{html.escape(self.summary())}</pre>"
            f"<h2>Gates</h2><table border='1'>{rows}</table>"
            f"<h2>What this measures</h2><p>{html.escape(LIMITS)}</p></body></html>"
        )
        Path(path).write_text(body)
        return Path(path)


def _ridge_features(context: F64, candidates: F64) -> F64:
    """Reward-model rows of every candidate: ``[context, candidate, context (x) candidate]``."""
    n, k, d = candidates.shape
    ctx = np.broadcast_to(context[:, None, :], (n, k, context.shape[1]))
    cross = (ctx[:, :, :, None] * candidates[:, :, None, :]).reshape(n, k, -1)
    return np.concatenate([ctx, candidates, cross], axis=2)


def shadow_report(
    policy: ServedPolicy,
    log: dict[str, NDArray[Any]],
    *,
    rng: np.random.Generator,
    gates: ShadowGates | None = None,
    n_bootstrap: int = 1000,
) -> ShadowReport:
    """Evaluate ``policy`` on a fresh decision log (see the module docstring).

    Parameters
    ----------
    policy : ServedPolicy
        The policy to judge (:func:`simkit.serving.load_policy`).
    log : dict of arrays
        A decision log (:func:`read_decision_log`), one item shown per request.
    rng : numpy.random.Generator
        Cross-fitting folds and bootstrap resamples.
    gates : ShadowGates, optional
    n_bootstrap : int
        Bootstrap resamples behind each interval.

    Returns
    -------
    ShadowReport

    Raises
    ------
    LogError
        A log that does not fit the policy's features, or bad propensities.
    """
    from sklearn.linear_model import Ridge

    from simkit.validation.ope import cross_fit_predict, dr, snips
    from simkit.validation.ope_sequential import trajectory_is

    gates = gates or ShadowGates()
    ctx, cand = log["context"].astype(np.float64), log["candidates"].astype(np.float64)
    action, p0, r = log["action"].astype(np.int64), log["propensity"], log["reward"]
    n = action.size
    try:
        pi = policy.proba(ctx, cand)
    except ValueError as exc:
        raise LogError(f"The fresh log does not fit the policy: {exc}") from None
    rows = np.arange(n)
    pi_a = pi[rows, action]
    fold_rng, boot_rng = rng.spawn(2)
    groups = log.get("session_id", rows)
    x_all = _ridge_features(ctx, cand)
    q_all = cross_fit_predict(
        lambda: Ridge(alpha=1.0), x_all[rows, action], r, groups, rng=fold_rng, X_eval=x_all
    )
    s_est = snips(r, pi_a, p0, rng=boot_rng, n_bootstrap=n_bootstrap)
    d_est = dr(
        r,
        pi_a,
        p0,
        q_all[rows, action],
        q_all,
        target_dist=pi,
        rng=boot_rng,
        n_bootstrap=n_bootstrap,
    )
    boot = r[boot_rng.integers(n, size=(min(n_bootstrap, 1000) or 1, n))].mean(axis=1)
    logging = (float(np.quantile(boot, 0.025)), float(r.mean()), float(np.quantile(boot, 0.975)))
    agreement = float((pi.argmax(axis=1) == action).mean())
    coverage = top10 = None
    if "item_ids" in log:
        ids = log["item_ids"]
        uniq, inv = np.unique(ids, return_inverse=True)
        exposure = np.bincount(inv.ravel(), weights=pi.ravel(), minlength=uniq.size)
        coverage = float((exposure > 1e-3).mean())
        top10 = float(np.sort(exposure)[::-1][:10].sum() / exposure.sum())
    session = None
    if "session_id" in log and "step" in log:
        session = trajectory_is(
            r, pi_a, p0, log["session_id"], step=log["step"], rng=boot_rng, n_bootstrap=n_bootstrap
        )
    drop = (logging[1] - d_est.value) / abs(logging[1]) if logging[1] else 0.0
    verdicts = {
        "ess_share": (
            d_est.ess / n,
            ">=",
            gates.min_ess_share,
            d_est.ess / n >= gates.min_ess_share,
        ),
        "propensity_check": (d_est.mean_weight, "~", 1.0, bool(d_est.weights_ok)),
        "value_drop": (drop, "<=", gates.max_value_drop, drop <= gates.max_value_drop),
        "agreement": (agreement, ">=", gates.min_agreement, agreement >= gates.min_agreement),
    }
    return ShadowReport(
        n_requests=n,
        logging_value=logging,
        snips=s_est,
        dr=d_est,
        agreement=agreement,
        ess=float(d_est.ess),
        weights_ok=bool(d_est.weights_ok),
        mean_weight=float(d_est.mean_weight),
        coverage=coverage,
        top10_share=top10,
        session=session,
        gates=verdicts,
    )


def write_report(report: ShadowReport, out: str | Path) -> tuple[Path, Path]:
    """The HTML report at ``out`` and its JSON beside it."""
    out = Path(out)
    report.to_html(out)
    js = out.with_suffix(".json")
    js.write_text(json.dumps(report.to_json(), indent=2))
    return out, js
