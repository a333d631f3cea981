"""Per-candidate scorers of served policies: numpy only, LightGBM only for tree-model kinds.

A scorer maps a batch of requests, ``context`` (n, d_u) and ``candidates`` (n, K, d_c), to scores
(n, K) (an ensemble scorer: (n, M, K), one row per posterior draw). Each kind is rebuilt from plain
arrays (``arrays.npz``) and JSON parameters written by :mod:`simkit.serving.export`; nothing here
imports pandas, scipy, scikit-learn or gymnasium, and LightGBM is imported only by the tree kinds
(``click_model`` and a Q-net with a click/watch prior) when they are loaded.

Kinds and the agents they serve:

- ``constant``: every candidate scores 0 (:class:`~simkit.agents.random_agent.RandomAgent`);
- ``column``: one candidate column (:class:`~simkit.agents.baselines.PopularAgent`);
- ``linear``: ``x theta + alpha sqrt(x^T A^-1 x)`` over a feature map of the context and the
  candidate (LinUCB, Li et al. 2010);
- ``linear_ensemble``: ``x theta_m`` for ``M`` frozen posterior draws (LinTS with an ensemble);
- ``two_tower``: ``(f(context) . g(candidate) + c(candidate)) / T`` (REINFORCE, Chen et al. 2019);
- ``qnet``: ``prior + MLP([context, candidate])`` on standardised inputs (RecoMind-style DQN);
- ``click_model``: the fitted click model's probability (the greedy "production" agent).

References
----------
Li, Chu, Langford, Schapire. A contextual-bandit approach to personalized news article
recommendation. WWW 2010.
Chen, Beutel, Covington, Jain, Belletti, Chi. Top-K off-policy correction for a REINFORCE
recommender system. WSDM 2019.
Ke, Meng, Finley, Wang, Chen, Ma, Ye, Liu. LightGBM: a highly efficient gradient boosting decision
tree. NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ArtifactError

__all__ = ["SCORERS", "Scorer", "build_scorer", "feature_map"]

F64 = NDArray[np.float64]
_CLIP = 5.0  # standardised inputs of the Q-net are clipped to +-5, as in training


class Scorer(Protocol):
    """What a served policy calls: ``score(context (n, d_u), candidates (n, K, d_c))``."""

    def score(self, context: F64, candidates: F64) -> NDArray[Any]:
        """Scores (n, K), or (n, M, K) for an ensemble."""
        ...


def feature_map(context: F64, candidates: F64, kind: str, intercept: bool) -> F64:
    """Joint-model feature rows of each candidate of each request, shape (n, K, p).

    The batched form of :func:`simkit.agents.linucb.candidate_features` (same kinds, same order of
    columns): ``"outer"`` ``[u, 1] (x) [c, 1]``, ``"product"`` ``u * c``, ``"concat"`` ``[u, c]``,
    ``"candidates"`` ``c``; plus a constant column when ``intercept`` (never for ``"outer"``).
    """
    n, k, _ = candidates.shape
    if kind == "outer":
        u1 = np.concatenate([context, np.ones((n, 1))], axis=1)
        c1 = np.concatenate([candidates, np.ones((n, k, 1))], axis=2)
        return (c1[:, :, :, None] * u1[:, None, None, :]).reshape(n, k, -1)
    if kind == "product":
        x = candidates * context[:, None, :]
    elif kind == "concat":
        x = np.concatenate(
            [np.broadcast_to(context[:, None, :], (n, k, context.shape[1])), candidates], axis=2
        )
    else:
        x = candidates
    return np.concatenate([x, np.ones((n, k, 1))], axis=2) if intercept else x


def _array(arrays: Mapping[str, NDArray[Any]], name: str) -> NDArray[Any]:
    try:
        return arrays[name]
    except KeyError:
        raise ArtifactError(
            f"arrays.npz lacks the array {name!r} this policy kind needs; export the policy "
            "again with 'simkit export'."
        ) from None


class Constant:
    """Every candidate scores 0."""

    def score(self, context: F64, candidates: F64) -> F64:
        return np.zeros(candidates.shape[:2])


class Column:
    """The candidate column ``index``."""

    def __init__(self, index: int) -> None:
        self.index = int(index)

    def score(self, context: F64, candidates: F64) -> F64:
        return candidates[:, :, self.index]


class Linear:
    """``x theta + alpha sqrt(max(x^T A^-1 x, 0))`` over :func:`feature_map` rows."""

    def __init__(self, params: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]]) -> None:
        self.kind, self.intercept = str(params["features"]), bool(params["intercept"])
        self.alpha = float(params["alpha"])
        self.theta = np.asarray(_array(arrays, "theta"), np.float64)
        self.a_inv = np.asarray(_array(arrays, "A_inv"), np.float64)

    def score(self, context: F64, candidates: F64) -> F64:
        x = feature_map(context, candidates, self.kind, self.intercept)
        mean = x @ self.theta
        if self.alpha == 0.0:
            return mean  # type: ignore[no-any-return]
        var = np.maximum(((x @ self.a_inv) * x).sum(axis=2), 0.0)
        return mean + self.alpha * np.sqrt(var)  # type: ignore[no-any-return]


class LinearEnsemble:
    """``x theta_m`` for each of ``M`` frozen posterior draws: scores (n, M, K)."""

    def __init__(self, params: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]]) -> None:
        self.kind, self.intercept = str(params["features"]), bool(params["intercept"])
        self.ensemble = np.asarray(_array(arrays, "ensemble"), np.float64)  # (M, p)

    def score(self, context: F64, candidates: F64) -> F64:
        x = feature_map(context, candidates, self.kind, self.intercept)
        return np.swapaxes(x @ self.ensemble.T, 1, 2)


def _mlp(arrays: Mapping[str, NDArray[Any]], prefix: str, n_layers: int) -> list[NDArray[Any]]:
    out: list[NDArray[Any]] = []
    for i in range(n_layers):
        out += [_array(arrays, f"{prefix}.{i}.weight"), _array(arrays, f"{prefix}.{i}.bias")]
    return out


def _forward(x: NDArray[Any], layers: list[NDArray[Any]], activation: str) -> NDArray[Any]:
    """Dense layers ``x W + b`` with ``activation`` between them (none after the last)."""
    n = len(layers) // 2
    for i in range(n):
        x = x @ layers[2 * i] + layers[2 * i + 1]
        if i < n - 1:
            x = np.maximum(x, 0.0) if activation == "relu" else np.tanh(x)
    return x


class TwoTower:
    """``(f(context) . g(candidate) + c(candidate)) / T`` (towers may be absent)."""

    def __init__(self, params: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]]) -> None:
        self.activation = str(params["activation"])
        self.temperature = float(params["temperature"])
        n_tower = int(params["tower_layers"])
        self.user = _mlp(arrays, "user_tower", n_tower) if n_tower else None
        self.item = _mlp(arrays, "item_tower", n_tower) if n_tower else None
        self.bias = _mlp(arrays, "bias", 1) if params["item_bias"] else None

    def score(self, context: F64, candidates: F64) -> F64:
        n, k, d = candidates.shape
        z = np.zeros((n, k))
        if self.user is not None and self.item is not None:
            state = _forward(context, self.user, self.activation)
            g = _forward(candidates.reshape(n * k, d), self.item, self.activation)
            z = np.einsum("ne,nke->nk", state, g.reshape(n, k, -1))
        if self.bias is not None:
            z = z + (candidates.reshape(n * k, d) @ self.bias[0] + self.bias[1]).reshape(n, k)
        return z / self.temperature  # type: ignore[no-any-return]


class QNet:
    """``prior + MLP([context, candidate])`` on standardised, clipped inputs (per candidate)."""

    def __init__(
        self,
        params: Mapping[str, Any],
        arrays: Mapping[str, NDArray[Any]],
        prior: Scorer | None,
    ) -> None:
        self.dtype = np.dtype(str(params["dtype"]))
        self.d_u = int(params["user_dim"])
        self.activation = str(params["activation"])
        self.scale = float(params["reward_scale"])  # the prior is scaled; Q stays scaled
        self.layers = [a.astype(self.dtype) for a in _mlp(arrays, "net", int(params["n_layers"]))]
        self.mean = _array(arrays, "input_mean").astype(self.dtype)
        self.std = _array(arrays, "input_std").astype(self.dtype)
        self.prior = prior

    def score(self, context: F64, candidates: F64) -> F64:
        """Q in the learner's units (``reward_scale`` x reward), what the agent explores on."""
        n, k, _ = candidates.shape
        m, s, du = self.mean, self.std, self.d_u
        xu = np.clip((context.astype(self.dtype) - m[:du]) / s[:du], -_CLIP, _CLIP)
        xc = np.clip(
            (candidates.reshape(n * k, -1).astype(self.dtype) - m[du:]) / s[du:], -_CLIP, _CLIP
        )
        w, b = self.layers[0], self.layers[1]
        h = xc @ w[du:]
        h = (h.reshape(n, k, -1) + (xu @ w[:du] + b)[:, None, :]).reshape(n * k, -1)
        if len(self.layers) > 2:
            h = np.maximum(h, 0.0) if self.activation == "relu" else np.tanh(h)
            h = _forward(h, self.layers[2:], self.activation)
        q = h.reshape(n, k)
        if self.prior is not None:
            q = self.prior.score(context, candidates) * self.scale + q
        return q  # type: ignore[no-any-return]


class ClickModel:
    """The fitted click model (LightGBM text, isotonic map) on rows rebuilt from the request."""

    def __init__(
        self,
        params: Mapping[str, Any],
        arrays: Mapping[str, NDArray[Any]],
        texts: Mapping[str, str],
    ) -> None:
        import lightgbm as lgb

        from simkit.models import BinaryResponse, WatchResponse

        self.n_features = int(params["n_features"])
        self.reward = str(params.get("reward", "clicks"))
        self.user_src, self.user_dst = _array(arrays, "user_src"), _array(arrays, "user_dst")
        self.cand_src, self.cand_dst = _array(arrays, "cand_src"), _array(arrays, "cand_dst")
        self.nan_dst = _array(arrays, "nan_dst")
        self.click = BinaryResponse(
            lgb.Booster(model_str=texts["click.txt"]),
            _array(arrays, "calib_x"),
            _array(arrays, "calib_y"),
        )
        self.watch = None
        self.duration_col = params.get("duration_col")
        if self.reward != "clicks":
            self.watch = WatchResponse(
                lgb.Booster(model_str=texts["watch.txt"]),
                _array(arrays, "watch_bin_edges"),
                _array(arrays, "watch_residuals"),
                _array(arrays, "watch_cumulative"),
            )

    def rows(self, context: F64, candidates: F64) -> NDArray[np.float32]:
        """Click-model rows (n * K, F) at slate position 0; -1 back to NaN where it means missing."""
        n, k, _ = candidates.shape
        x = np.zeros((n, k, self.n_features), dtype=np.float32)
        x[:, :, self.user_dst] = context[:, None, self.user_src]
        x[:, :, self.cand_dst] = candidates[:, :, self.cand_src]
        if self.nan_dst.size:
            cols = x[:, :, self.nan_dst]
            cols[cols == -1] = np.nan
            x[:, :, self.nan_dst] = cols
        return x.reshape(n * k, -1)

    def score(self, context: F64, candidates: F64) -> F64:
        shape = candidates.shape[:2]
        x = self.rows(context, candidates)
        p = self.click.proba(x).reshape(shape)
        if self.watch is None:
            return p
        if self.duration_col is None:
            cap = np.full(shape, np.nan)
        else:
            cap = np.expm1(candidates[:, :, int(self.duration_col)].astype(np.float64))
        pred = self.watch.predict_log(x).reshape(shape)
        return p * self.watch.mean_from_prediction(pred, cap)  # type: ignore[no-any-return]


SCORERS = ("constant", "column", "linear", "linear_ensemble", "two_tower", "qnet", "click_model")
"""The scorer kinds a policy manifest may name."""


def build_scorer(
    spec: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]], texts: Mapping[str, str]
) -> Scorer:
    """The scorer described by the manifest's ``scorer`` object.

    Raises
    ------
    ArtifactError
        For an unknown kind or missing arrays.
    """
    kind = spec.get("kind")
    params = spec.get("params", {})
    if kind == "constant":
        return Constant()
    if kind == "column":
        return Column(params["index"])
    if kind == "linear":
        return Linear(params, arrays)
    if kind == "linear_ensemble":
        return LinearEnsemble(params, arrays)
    if kind == "two_tower":
        return TwoTower(params, arrays)
    if kind == "qnet":
        prior = None
        if params.get("prior") is not None:
            prior = ClickModel(params["prior"], arrays, texts)
        return QNet(params, arrays, prior)
    if kind == "click_model":
        return ClickModel(params, arrays, texts)
    raise ArtifactError(
        f"the policy's scorer kind {kind!r} is not one this simkit serves ({', '.join(SCORERS)}); "
        "it was written by a newer simkit: upgrade simkit."
    )
