"""Per-step context: the ``ctx_`` columns of a log, drawn per step in simulation.

A ``ctx_`` column (device, page, slot, ...) belongs to an impression, not to a user: it may change
from one step of a session to the next. Fitting and replay read it per row
(:func:`simkit.replay.prepare_logs`); a simulated step needs one too. :class:`ContextModel` is the
logged distribution of the context of *comparable steps*: the context of a session's first step,
and the context of a later step given the previous step's context and whether that step was
clicked (a device mostly stays, an article page follows a click). It is the empirical Markov chain
of the logged step contexts, each row shrunk toward the context distribution of all later steps
(``prior`` pseudo-counts) so that rarely seen transitions do not follow a handful of steps. With
more than :data:`MAX_STATES` distinct contexts (e.g. a continuous ``ctx_`` column) it keeps a
random sample of logged step contexts and draws from it regardless of the previous step (said in
:attr:`ContextModel.description`).

The context lives in the ``ctx_`` entries of ``SessionState.user_features`` (the model features
see it there); :meth:`ContextModel.draw` writes a drawn context into them. The model is stored in
a simulator folder as the optional part ``context`` (``context.npz``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from simkit.simulator_io import OptionalPart, register_optional_part
from simkit.state import SessionState

__all__ = ["MAX_STATES", "ContextModel", "context_indices"]

MAX_STATES = 256
"""Most distinct contexts modelled as a Markov chain (a transition table of ``2 K x K``)."""
_SAMPLE = 4096
_NAN = np.float32(-3.0e38)  # stands for NaN when matching contexts


def context_indices(user_columns: Sequence[str]) -> NDArray[np.int64]:
    """Positions of the ``ctx_`` columns among a simulator's user columns."""
    return np.array([j for j, c in enumerate(user_columns) if c.startswith("ctx_")], np.int64)


@dataclass
class ContextModel:
    """The logged distribution of the per-step context (see the module docstring).

    Attributes
    ----------
    index
        Positions of the ``ctx_`` columns in ``SessionState.user_features``.
    values
        Distinct (encoded) contexts, shape (K, C); NaN where a column was missing.
    start
        Probability of each context at a session's first step, (K,).
    trans
        Probability of each context after context ``k`` and click ``c`` in row ``2 k + c``,
        shape (2 K, K); empty (0, K) when the contexts are too many for a chain.
    """

    index: NDArray[np.int64]
    values: NDArray[np.float32]
    start: NDArray[np.float64]
    trans: NDArray[np.float64]

    @property
    def markov(self) -> bool:
        """Whether later steps depend on the previous context and click."""
        return len(self.trans) > 0

    @property
    def description(self) -> str:
        """One sentence for reports."""
        if self.markov:
            return (
                f"the context of each simulated step is drawn from the logged contexts "
                f"({len(self.values)} distinct) of comparable steps: first steps, or steps after "
                "the same context and click outcome"
            )
        return (
            f"the context of each simulated step is drawn from {len(self.values):,} logged step "
            f"contexts (more than {MAX_STATES} distinct ones: the previous step is not used)"
        )

    @classmethod
    def fit(
        cls,
        index: NDArray[np.int64],
        step_context: NDArray[np.float32],
        t_of_step: NDArray[np.int64],
        step_click: NDArray[np.int64],
        *,
        rng: np.random.Generator,
        prior: float = 5.0,
    ) -> ContextModel:
        """The model of the logged step contexts ``step_context`` (n_steps, C), in log order.

        ``t_of_step`` numbers each session's steps 0, 1, ...; ``step_click`` says whether the
        step was clicked.
        """
        ctx = np.asarray(step_context, np.float32)
        key = np.where(np.isnan(ctx), _NAN, ctx)
        values, codes = np.unique(key, axis=0, return_inverse=True)
        codes = codes.ravel()
        k = len(values)
        first = np.asarray(t_of_step) == 0
        if k > MAX_STATES:
            take = rng.choice(len(ctx), size=min(_SAMPLE, len(ctx)), replace=False)
            sample = np.where(key[take] == _NAN, np.nan, key[take]).astype(np.float32)
            return cls(
                index=np.asarray(index, np.int64),
                values=sample,
                start=np.full(len(sample), 1.0 / len(sample)),
                trans=np.zeros((0, len(sample))),
            )
        start = np.bincount(codes[first], minlength=k).astype(np.float64)
        if start.sum() == 0:
            start = np.bincount(codes, minlength=k).astype(np.float64)
        later = ~first
        later_marginal = np.bincount(codes[later], minlength=k).astype(np.float64)
        base = later_marginal if later_marginal.sum() else start
        base = base / base.sum()
        # step i follows step i - 1 of the same session when t_of_step[i] > 0
        nxt = np.flatnonzero(later)
        prev = nxt - 1
        row = 2 * codes[prev] + (np.asarray(step_click)[prev] > 0)
        counts = np.zeros((2 * k, k))
        np.add.at(counts, (row, codes[nxt]), 1.0)
        trans = (counts + prior * base) / (counts.sum(axis=1, keepdims=True) + prior)
        values = np.where(values == _NAN, np.nan, values).astype(np.float32)
        return cls(
            index=np.asarray(index, np.int64),
            values=values,
            start=start / start.sum(),
            trans=trans,
        )

    def codes_of(self, state: SessionState) -> NDArray[np.int64]:
        """The context of each session's last step as a row of ``values`` (-1 when unknown)."""
        cur = state.user_features[:, self.index]
        cur = np.where(np.isnan(cur), _NAN, cur)
        ref = np.where(np.isnan(self.values), _NAN, self.values)
        eq = (cur[:, None, :] == ref[None, :, :]).all(axis=2)
        return np.where(eq.any(axis=1), eq.argmax(axis=1), -1)

    def draw(
        self,
        state: SessionState,
        rows: NDArray[np.int64] | None = None,
        *,
        rng: np.random.Generator,
    ) -> None:
        """Draw the context of the next step of sessions ``rows`` (all when None), in place.

        A session at step 0 draws from the first steps' contexts; a later one from the steps that
        followed its previous context and click outcome.
        """
        rows = np.arange(state.n) if rows is None else np.asarray(rows, np.int64)
        if len(rows) == 0 or len(self.index) == 0:
            return
        probs = np.broadcast_to(self.start, (len(rows), len(self.start)))
        if self.markov:
            prev = self.codes_of(state.take(rows)) if len(rows) else np.zeros(0, np.int64)
            later = (state.step[rows] > 0) & (prev >= 0)
            if later.any():
                probs = probs.copy()
                trans_row = 2 * prev[later] + (state.last_click[rows][later] > 0)
                probs[later] = self.trans[trans_row]
        cum = np.cumsum(probs, axis=1)
        u = rng.random(len(rows)) * cum[:, -1]
        pick = np.minimum((cum < u[:, None]).sum(axis=1), len(self.values) - 1)
        state.user_features[np.ix_(rows, self.index)] = self.values[pick]

    def set(self, state: SessionState, rows: NDArray[np.int64], values: NDArray) -> None:
        """Set the context of sessions ``rows`` (encoded values, shape (len(rows), C))."""
        state.user_features[np.ix_(np.asarray(rows, np.int64), self.index)] = np.asarray(
            values, np.float32
        ).reshape(len(rows), len(self.index))


def _write(model: ContextModel, folder: Path) -> list[str]:
    np.savez(
        folder / "context.npz",
        index=model.index,
        values=model.values,
        start=model.start,
        trans=model.trans,
    )
    return ["context.npz"]


def _read(folder: Path, names: Sequence[str]) -> ContextModel:
    with np.load(folder / "context.npz", allow_pickle=False) as npz:
        return ContextModel(
            index=npz["index"].astype(np.int64),
            values=npz["values"].astype(np.float32),
            start=npz["start"].astype(np.float64),
            trans=npz["trans"].astype(np.float64),
        )


if "context" not in __import__("simkit.simulator_io", fromlist=["OPTIONAL_PARTS"]).OPTIONAL_PARTS:
    register_optional_part(
        OptionalPart(
            role="context",
            pattern=r"context\.npz",
            write=_write,
            read=_read,
            description="per-step context model (distribution of the logged ctx_ columns)",
        )
    )
