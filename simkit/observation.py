"""The observation layout of the session envs, defined once (no gymnasium).

An observation of ``n`` sessions is ``{"user": (n, d_u), "candidates": (n, K, d_c)}``, float32:

* ``user``: the interest vector ``z`` (``z_0 .. z_{d-1}``), then the continuation model's features
  of the state (user features and history counters, :data:`simkit.state.CONTINUE_NAMES`);
* ``candidates``: per candidate, the item feature columns, its embedding, ``item_log_pop``, and
  ``dot``/``cos`` of ``z`` with the embedding and ``repeats`` (times shown in the session).

Every value lies inside finite bounds (:attr:`ObservationLayout.user_low` etc.): missing feature
values become -1 and counters are clipped, so the envs' ``Box`` spaces contain every observation.
The envs build their spaces from these bounds; agents and the validation's policy adapter call
:meth:`ObservationLayout.observe` on a simulator state, so an agent sees the same observation in
an env and when it is judged in validation.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from simkit.shown import ShownMemory
from simkit.simulator import Simulator
from simkit.state import SessionState, continue_features
from simkit.threads import blas_threads

__all__ = ["COUNT_CAP", "LOG_CAP", "ObservationLayout"]

COUNT_CAP = 1000.0  # observation bound of counters (step, clicks, steps since click, repeats)
LOG_CAP = 30.0  # observation bound of log1p(seconds) and log1p(history size)
DOT_ALL_ITEMS = 32  # up to K x this many items, z . e of all items in one product is cheaper


def _bounds(values: NDArray, pad_missing: bool = True) -> tuple[NDArray, NDArray]:
    """Column-wise [min, max] of ``values`` (NaN -> -1), widened so that low < high."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] == 0:
        return np.full(v.shape[1], -1.0), np.ones(v.shape[1])
    filled = np.where(np.isnan(v), -1.0, v) if pad_missing else v
    lo, hi = filled.min(axis=0), filled.max(axis=0)
    return lo, np.where(hi > lo, hi, lo + 1.0)


class ObservationLayout:
    """Names, bounds and the observation of ``k`` candidates for a fitted simulator.

    Parameters
    ----------
    simulator
        The fitted simulator.
    k
        Candidates per observation.
    """

    def __init__(self, simulator: Simulator, k: int) -> None:
        self.sim = simulator
        cat = simulator.catalogue
        n_items, d = simulator.n_items, cat.dim
        self.n_items, self.dim, self.k = n_items, d, k
        emb = cat.embedding[:n_items]
        self.item_norm = np.linalg.norm(emb, axis=1)
        z_ref = simulator.users.z0[:512]
        spec = simulator.spec
        self.user_names = tuple(f"z_{j}" for j in range(d)) + tuple(spec.continue_names)
        self.candidate_names = (
            tuple(spec.item_columns)
            + tuple(f"emb_{j}" for j in range(d))
            + ("item_log_pop", "dot", "cos", "repeats")
        )
        zmax = max(float(np.abs(emb).max(initial=0.0)), float(np.abs(z_ref).max(initial=0.0)))
        zb = 2.0 * (zmax if zmax > 0 else 1.0)
        znorm_hi = np.sqrt(d) * zb
        dot_hi = znorm_hi * float(self.item_norm.max(initial=1.0))
        n_user = simulator.users.features.shape[1]
        ulo, uhi = _bounds(simulator.users.features)
        self.user_has_nan = bool(np.isnan(simulator.users.features).any())
        counters = {
            "z_norm": (0.0, znorm_hi),
            "step": (0.0, COUNT_CAP),
            "n_clicks": (0.0, COUNT_CAP),
            "log_watch_total": (0.0, LOG_CAP),
            "steps_since_click": (0.0, COUNT_CAP),
            "log_last_watch": (0.0, LOG_CAP),
            "last_click": (0.0, 1.0),
            "hist_n": (0.0, LOG_CAP),
        }
        rest = [counters.get(nm, (-COUNT_CAP, COUNT_CAP)) for nm in self.user_names[d + n_user :]]
        self.user_low = np.concatenate([np.full(d, -zb), ulo, [r[0] for r in rest]])
        self.user_high = np.concatenate([np.full(d, zb), uhi, [r[1] for r in rest]])

        n_feat = cat.features.shape[1]
        feats = cat.features[:n_items].astype(np.float64)
        flo, fhi = _bounds(feats)
        pop = cat.log_popularity[:n_items].astype(np.float64)
        self.candidate_low = np.concatenate([flo, np.full(d, -zb), [0.0, -dot_hi, -1.0, 0.0]])
        self.candidate_high = np.concatenate(
            [fhi, np.full(d, zb), [max(float(pop.max()), 1.0), dot_hi, 1.0, COUNT_CAP]]
        )
        table = np.zeros((n_items, len(self.candidate_names)), np.float32)
        table[:, :n_feat] = np.where(np.isnan(feats), -1.0, feats)
        table[:, n_feat : n_feat + d] = emb
        table[:, n_feat + d] = pop
        self.table = table
        self.col_dot = n_feat + d + 1
        self.user_low32 = self.user_low.astype(np.float32)
        self.user_high32 = self.user_high.astype(np.float32)
        self.cand_low32 = self.candidate_low.astype(np.float32)
        self.cand_high32 = self.candidate_high.astype(np.float32)
        self.emb32 = np.ascontiguousarray(table[:, n_feat : n_feat + d])
        self.item_norm32 = np.linalg.norm(self.emb32, axis=1)

    def observe(self, state: SessionState, cands: NDArray[np.int64]) -> dict[str, NDArray]:
        """Observation of ``n`` sessions: ``user`` (n, d_u) and ``candidates`` (n, K, d_c).

        ``dot`` and ``cos`` are computed in float32 from the float32 embedding columns, so they
        equal the click-model features up to float32 rounding.
        """
        n, d = state.n, self.dim
        user = np.empty((n, len(self.user_names)), np.float32)
        user[:, :d] = state.z
        user[:, d:] = continue_features(state)
        if self.user_has_nan:
            np.nan_to_num(user, copy=False, nan=-1.0)
        np.clip(user, self.user_low32, self.user_high32, out=user)

        obs = np.take(self.table, cands, axis=0)
        c, e0 = self.col_dot, self.col_dot - 1 - d
        z32 = state.z.astype(np.float32)
        if self.n_items <= DOT_ALL_ITEMS * self.k:  # one BLAS product beats a batched gather
            with blas_threads(1):
                dots = z32 @ self.emb32.T
            dot = np.take(dots, cands + np.arange(n, dtype=np.int64)[:, None] * self.n_items)
        else:
            dot = np.matmul(obs[:, :, e0 : e0 + d], z32[:, :, None])[:, :, 0]
        z_norm = np.linalg.norm(z32, axis=1)
        cos = dot / np.maximum(z_norm[:, None] * np.take(self.item_norm32, cands), 1e-9)
        lo, hi = self.cand_low32, self.cand_high32
        np.clip(dot, lo[c], hi[c], out=obs[:, :, c])
        np.clip(cos, lo[c + 1], hi[c + 1], out=obs[:, :, c + 1])
        if isinstance(state.shown, ShownMemory):
            np.clip(state.shown.count(cands), lo[c + 2], hi[c + 2], out=obs[:, :, c + 2])
        elif state.shown is not None:
            repeats = np.take_along_axis(state.shown, cands, axis=1)
            np.clip(repeats, lo[c + 2], hi[c + 2], out=obs[:, :, c + 2])
        return {"user": user, "candidates": obs}

    # ------------------------------------------------------------------ back to model rows

    def _inverse(self) -> None:
        """Where each click-model feature sits in the observation (the position feature is 0)."""
        sim = self.sim
        names = sim.spec.click_names
        n_user = len(sim.spec.user_columns)
        user_src, user_dst, cand_src, cand_dst = [], [], [], []
        for j, name in enumerate(names):
            if j < n_user or (name in self.user_names and name not in self.candidate_names):
                user_src.append(self.user_names.index(name))
                user_dst.append(j)
            elif name in self.candidate_names:
                cand_src.append(self.candidate_names.index(name))
                cand_dst.append(j)
        self._user_map = (np.array(user_src, np.int64), np.array(user_dst, np.int64))
        self._cand_map = (np.array(cand_src, np.int64), np.array(cand_dst, np.int64))
        self._n_features = len(names)

        # observations show NaN as -1: undo it where -1 never occurs in the simulator's data
        def restore(data: NDArray[np.float32]) -> NDArray[np.bool_]:
            return np.isnan(data).any(axis=0) & ~(data == -1).any(axis=0)

        self._nan_cols = np.concatenate(
            [
                np.flatnonzero(restore(sim.users.features)),
                n_user + np.flatnonzero(restore(sim.catalogue.features[: self.n_items])),
            ]
        ).astype(np.int64)
        self._duration_col = (
            self.candidate_names.index("log_duration")
            if "log_duration" in self.candidate_names
            else None
        )

    def click_features(
        self, user: NDArray[np.floating], candidates: NDArray[np.floating]
    ) -> NDArray[np.float32]:
        """Click-model rows of observed candidates, (N * K, F), at slate position 0.

        The inverse of :meth:`observe` for the model's inputs: ``user`` (N, d_u) and
        ``candidates`` (N, K, d_c) observations of this layout. Exact up to the observation's
        float32 rounding and clipping (bounds far beyond what sessions reach).

        Raises
        ------
        ValueError
            When the shapes are not this layout's.
        """
        if not hasattr(self, "_user_map"):
            self._inverse()
        user = np.asarray(user, dtype=np.float32).reshape(-1, len(self.user_names))
        cands = np.asarray(candidates, dtype=np.float32)
        if (
            cands.ndim != 3
            or cands.shape[0] != user.shape[0]
            or cands.shape[2] != len(self.candidate_names)
        ):
            raise ValueError(
                f"expected user observations (N, {len(self.user_names)}) and candidate "
                f"observations (N, K, {len(self.candidate_names)}) of this simulator's layout; "
                f"got {user.shape} and {cands.shape}."
            )
        n, k = cands.shape[:2]
        x = np.zeros((n, k, self._n_features), dtype=np.float32)
        us, ud = self._user_map
        cs, cd = self._cand_map
        x[:, :, ud] = user[:, None, us]
        x[:, :, cd] = cands[:, :, cs]
        if self._nan_cols.size:
            cols = x[:, :, self._nan_cols]
            cols[cols == -1] = np.nan
            x[:, :, self._nan_cols] = cols
        return x.reshape(n * k, -1)

    def durations(self, candidates: NDArray[np.floating]) -> NDArray[np.float64]:
        """Item duration of observed candidates (N, K) from their ``log_duration`` column (NaN
        when the simulator has no durations)."""
        if not hasattr(self, "_user_map"):
            self._inverse()
        cands = np.asarray(candidates)
        if self._duration_col is None:
            return np.full(cands.shape[:2], np.nan)
        return np.expm1(cands[:, :, self._duration_col].astype(np.float64))
