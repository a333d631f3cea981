"""Step logic shared by :class:`~simkit.envs.SessionEnv` and :class:`~simkit.envs.SessionVectorEnv`.

Everything here works on arrays over ``n`` sessions at once; the single environment is the case
``n = 1`` of the same code, so one seed gives the same trajectory in both (see :class:`Streams`).
The state moves only through :func:`simkit.state.transition`, the function the fitters replay the
logs with; the click and continuation models see :func:`simkit.state.click_features` and
:func:`simkit.state.continue_features` rows, as at fitting time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from simkit.errors import ConfigError
from simkit.simulator import Simulator
from simkit.state import SessionState, continue_features, transition

__all__ = [
    "COUNT_CAP",
    "LOG_CAP",
    "EnvConfig",
    "Response",
    "SessionCore",
    "Streams",
    "load_simulator",
]

SAMPLERS = ("uniform", "popularity", "interest")
REWARDS = ("watch_time", "clicks", "long_watch")
DUPLICATES = ("next", "reject")
COUNT_CAP = 1000.0  # observation bound of counters (step, clicks, steps since click, repeats)
LOG_CAP = 30.0  # observation bound of log1p(seconds) and log1p(history size)
DOT_ALL_ITEMS = 32  # up to K x this many items, z . e of all items in one product is cheaper
SCRATCH_LIMIT = 1 << 26  # largest sessions x items scratch table for duplicate detection

RewardFn = Callable[[int, float, dict], float]

_BLAS: Any = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run a small matrix product on one BLAS thread.

    Two OpenBLAS threads on a 1024 x 500 x 16 product were measured here 25 times slower than one
    (thread wake-up and spinning against LightGBM's OpenMP threads on 2 cores); see
    ``benchmarks/env.py``. The limit is scoped to the env's own products, not the process.
    """
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController().select(user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _BLAS = False
    if _BLAS is False:
        yield
        return
    with _BLAS.limit(limits=1):
        yield


def load_simulator(simulator: Simulator | str | os.PathLike[str]) -> Simulator:
    """Return ``simulator`` itself or load it from a simulator folder path."""
    if isinstance(simulator, Simulator):
        return simulator
    if isinstance(simulator, (str, os.PathLike)):
        return Simulator.load(Path(simulator))
    raise TypeError(
        "simulator must be a simkit Simulator or the path of a simulator folder; "
        f"got {type(simulator).__name__}."
    )


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    """Settings shared by the session environments (see :class:`~simkit.envs.SessionEnv`)."""

    n_candidates: int = 50
    slate_size: int = 1
    sampler: str = "uniform"
    temperature: float = 1.0
    reward: str | RewardFn = "watch_time"
    long_watch_threshold: float = 60.0
    users: str = "logged"
    duplicates: str = "next"
    position_bias: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problems = []
        if int(self.n_candidates) != self.n_candidates or self.n_candidates < 1:
            problems.append(f"n_candidates must be a positive integer; got {self.n_candidates!r}")
        if int(self.slate_size) != self.slate_size or not 1 <= self.slate_size:
            problems.append(f"slate_size must be a positive integer; got {self.slate_size!r}")
        elif self.slate_size > self.n_candidates:
            problems.append(
                f"slate_size ({self.slate_size}) must not exceed n_candidates ({self.n_candidates})"
            )
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            problems.append(f"temperature must be a positive number; got {self.temperature!r}")
        if not callable(self.reward) and self.reward not in REWARDS:
            problems.append(f"reward must be one of {REWARDS} or a callable; got {self.reward!r}")
        if not (np.isfinite(self.long_watch_threshold) and self.long_watch_threshold >= 0):
            problems.append(
                f"long_watch_threshold must be a number >= 0; got {self.long_watch_threshold!r}"
            )
        if self.users not in ("logged", "new"):
            problems.append(f"users must be 'logged' or 'new'; got {self.users!r}")
        if self.duplicates not in DUPLICATES:
            problems.append(f"duplicates must be one of {DUPLICATES}; got {self.duplicates!r}")
        if self.position_bias is not None:
            b = np.asarray(self.position_bias, dtype=np.float64)
            if b.ndim != 1 or len(b) < self.slate_size or not np.all((b >= 0) & (b <= 1)):
                problems.append(
                    f"position_bias must list at least slate_size={self.slate_size} examination "
                    f"probabilities in [0, 1]; got {self.position_bias!r}"
                )
        if problems:
            raise ConfigError("Invalid environment settings: " + "; ".join(problems) + ".")


@dataclass(frozen=True)
class Streams:
    """Independent random streams, one per stochastic part, spawned from the env's ``np_random``.

    Draws are batched over the sessions that need them, in session order, so a vector env of one
    user consumes each stream exactly like the single env: the same seed gives the same trajectory.
    """

    users: np.random.Generator
    candidates: np.random.Generator
    click: np.random.Generator
    watch: np.random.Generator
    leave: np.random.Generator

    @classmethod
    def spawn(cls, rng: np.random.Generator) -> Streams:
        """Five child generators of ``rng`` (its own state is not advanced)."""
        return cls(*rng.spawn(5))


@dataclass(frozen=True)
class Response:
    """What the simulated users did with the slates shown (arrays over sessions, slots last)."""

    items: NDArray[np.int64]
    p_click: NDArray[np.float64]
    examined: NDArray[np.bool_]
    click: NDArray[np.int64]
    watch: NDArray[np.float64]
    p_continue: NDArray[np.float64]
    terminated: NDArray[np.bool_]
    reward: NDArray[np.float64]


def _alias_table(weights: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Walker/Vose alias table: draw ``i`` uniformly, keep it with ``prob[i]`` else ``alias[i]``."""
    n = len(weights)
    scaled = weights * (n / weights.sum())
    prob = np.ones(n)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


def _bounds(values: NDArray, pad_missing: bool = True) -> tuple[NDArray, NDArray]:
    """Column-wise [min, max] of ``values`` (NaN -> -1), widened so that low < high."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] == 0:
        return np.full(v.shape[1], -1.0), np.ones(v.shape[1])
    filled = np.where(np.isnan(v), -1.0, v) if pad_missing else v
    lo, hi = filled.min(axis=0), filled.max(axis=0)
    return lo, np.where(hi > lo, hi, lo + 1.0)


class SessionCore:
    """Vectorised candidate sampling, observations and responses for a fitted simulator.

    Parameters
    ----------
    simulator
        The fitted :class:`~simkit.simulator.Simulator`.
    config
        Environment settings.

    Raises
    ------
    ConfigError
        When the settings do not fit the simulator (more candidates than items, too few shown
        items for the popularity sampler, a stored position bias shorter than the slate).
    """

    def __init__(self, simulator: Simulator, config: EnvConfig) -> None:
        self.sim = simulator
        self.config = config
        cat = simulator.catalogue
        n_items, d = simulator.n_items, cat.dim
        k, s = config.n_candidates, config.slate_size
        if k > n_items:
            raise ConfigError(
                f"n_candidates ({k}) must not exceed the simulator's {n_items} catalogue items; "
                "lower n_candidates."
            )
        self.n_items, self.dim, self.k, self.s = n_items, d, k, s
        self.embedding = cat.embedding
        emb = cat.embedding[:n_items]
        self.item_norm = np.linalg.norm(emb, axis=1)

        # --- candidate sampler
        self.log_weight: NDArray[np.float64] | None = None
        if config.sampler == "popularity":
            impressions = np.rint(np.expm1(cat.log_popularity[:n_items].astype(np.float64)))
            if np.count_nonzero(impressions) < k:
                raise ConfigError(
                    f"sampler='popularity' draws items in proportion to their training impressions, "
                    f"but only {np.count_nonzero(impressions)} items were ever shown and "
                    f"n_candidates is {k}; lower n_candidates or use sampler='uniform'."
                )
            self.alias_prob, self.alias = _alias_table(impressions)
            with np.errstate(divide="ignore"):
                self.log_weight = np.log(impressions)
        # draws per session: enough that fewer than K distinct is rare (collisions among m draws
        # are about Poisson(m^2 sum p^2 / 2)); the interest weights vary by user: 2K
        if config.sampler == "interest":
            self.n_draws = 2 * k
        else:
            p = np.full(n_items, 1.0 / n_items)
            if config.sampler == "popularity":
                p = impressions / impressions.sum()
            m = k
            for _ in range(8):
                lam = m * m * float(np.sum(p * p)) / 2
                m = min(4 * k, k + int(np.ceil(lam + 4 * np.sqrt(lam) + 4)))
            self.n_draws = m
        z_ref = simulator.users.z0[:512]
        spread = float(np.std(z_ref @ emb.T)) if len(z_ref) else 0.0
        self.interest_scale = config.temperature * (spread if spread > 0 else 1.0)
        self._scratch: NDArray[np.int16] | None = None

        # --- slates: examination probability of each position (cascade)
        if config.position_bias is not None:
            bias = np.asarray(config.position_bias, dtype=np.float64)
        elif simulator.position_bias is not None:
            bias = np.asarray(simulator.position_bias, dtype=np.float64)
            if len(bias) < s:
                raise ConfigError(
                    f"The simulator's position_bias covers {len(bias)} positions but slate_size is "
                    f"{s}; pass position_bias=[...] with {s} examination probabilities."
                )
        else:
            bias = 1.0 / np.log2(np.arange(s) + 2.0)
        self.position_bias = bias[:s].copy()

        # --- observation layout and bounds
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

    # ------------------------------------------------------------------ spaces

    def observation_space(self) -> spaces.Dict:
        """``Dict(user=Box(d_u,), candidates=Box(K, d_c))``, float32 with finite bounds."""
        k = self.k
        return spaces.Dict(
            {
                "user": spaces.Box(self.user_low32, self.user_high32, dtype=np.float32),
                "candidates": spaces.Box(
                    np.tile(self.cand_low32, (k, 1)),
                    np.tile(self.cand_high32, (k, 1)),
                    dtype=np.float32,
                ),
            }
        )

    def action_space(self) -> spaces.Space:
        """``Discrete(K)``, or ``MultiDiscrete([K] * slate_size)`` for slates."""
        if self.s == 1:
            return spaces.Discrete(self.k)
        return spaces.MultiDiscrete(np.full(self.s, self.k, dtype=np.int64))

    # ------------------------------------------------------------------ users and candidates

    def start(self, n: int, rng: np.random.Generator) -> SessionState:
        """Fresh sessions of ``n`` users drawn from the configured population."""
        users = self.sim.sample_users(n, rng=rng, population=self.config.users)
        return self.sim.initial_state(users)

    def item_dots(self, state: SessionState) -> NDArray[np.float64]:
        """``z . e`` of every session with every catalogue item, (n, n_items)."""
        with one_blas_thread():
            return state.z @ self.embedding[: self.n_items].T

    def draw_candidates(self, state: SessionState, rng: np.random.Generator) -> NDArray[np.int64]:
        """K distinct catalogue rows per session (never the unseen-item stand-in row).

        Each session draws ``M > K`` items with replacement from the sampler's distribution and
        keeps the first K distinct ones, in order of first appearance: this is sampling without
        replacement in proportion to the weights (successive sampling). A session whose ``M``
        draws hold fewer than K distinct items (rare unless the weights are very concentrated)
        draws by the exponential race instead (top K of ``log w - log Exp(1)``), which has the
        same distribution.
        """
        n, k = state.n, self.k
        kind = self.config.sampler
        logits = None
        m = self.n_draws
        if kind == "uniform":
            draws = rng.integers(self.n_items, size=(n, m))
        elif kind == "popularity":
            draws = self._alias_draw(n * m, rng).reshape(n, m)
        else:
            # softmax weights in place, then one running sum over all sessions' weights: session
            # r's items span [total[r-1], total[r]), so one sorted search serves every session
            logits = self.item_dots(state)
            np.subtract(logits, logits.max(axis=1, keepdims=True), out=logits)
            logits *= 1.0 / self.interest_scale
            cdf = np.exp(logits).ravel()
            np.cumsum(cdf, out=cdf)
            ends = cdf[self.n_items - 1 :: self.n_items]
            starts = np.concatenate(([0.0], ends[:-1]))
            u = np.sort(rng.random((n, m)), axis=1)
            u *= (ends - starts)[:, None]
            u += starts[:, None]
            pos = np.searchsorted(cdf, u.ravel(), side="right").reshape(n, m)
            draws = pos - (np.arange(n, dtype=np.int64) * self.n_items)[:, None]
            np.clip(draws, 0, self.n_items - 1, out=draws)
            # the needles were sorted for a cache-friendly search; one random column permutation
            # gives each session's draws a uniformly random order again, as iid draws have
            draws = draws[:, rng.permutation(m)]
        first = self._first_occurrence(draws)
        rank = np.cumsum(first, axis=1)
        ok = rank[:, -1] >= k
        cands = np.empty((n, k), np.int64)
        keep = first & (rank <= k)
        if ok.all():
            cands[:] = draws[keep].reshape(n, k)
            return cands
        cands[ok] = draws[ok][keep[ok]].reshape(-1, k)
        short = np.flatnonzero(~ok)
        cands[short] = self._exact(None if logits is None else logits[short], len(short), rng)
        return cands

    def _alias_draw(self, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
        i = rng.integers(self.n_items, size=size)
        return np.where(rng.random(size) < self.alias_prob[i], i, self.alias[i])

    def _first_occurrence(self, draws: NDArray[np.int64]) -> NDArray[np.bool_]:
        """True at the first position of each distinct item in each row of ``draws``."""
        n, m = draws.shape
        if n * self.n_items <= SCRATCH_LIMIT and m < np.iinfo(np.int16).max:
            if self._scratch is None or self._scratch.size < n * self.n_items:
                self._scratch = np.empty(n * self.n_items, np.int16)
            flat = (draws + (np.arange(n, dtype=np.int64) * self.n_items)[:, None]).ravel()
            pos = np.tile(np.arange(m, dtype=np.int16), n)
            # with repeated indices the last assignment wins: write backwards so the first does
            self._scratch[flat[::-1]] = pos[::-1]
            return (self._scratch[flat] == pos).reshape(n, m)
        order = np.argsort(draws, axis=1, kind="stable")
        ranked = np.take_along_axis(draws, order, axis=1)
        new = np.ones((n, m), dtype=bool)
        new[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
        first = np.empty((n, m), dtype=bool)
        np.put_along_axis(first, order, new, axis=1)
        return first

    def _exact(
        self, logw: NDArray[np.float64] | None, m: int, rng: np.random.Generator
    ) -> NDArray[np.int64]:
        """Draw without replacement by the exponential race (top K of log w - log Exp(1))."""
        if logw is None:
            logw = np.zeros(self.n_items) if self.log_weight is None else self.log_weight
        keys = logw - np.log(rng.standard_exponential((m, self.n_items)))
        top = np.argpartition(-keys, self.k - 1, axis=1)[:, : self.k]
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1).astype(np.int64)

    # ------------------------------------------------------------------ observations

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
            with one_blas_thread():
                dots = z32 @ self.emb32.T
            dot = np.take(dots, cands + np.arange(n, dtype=np.int64)[:, None] * self.n_items)
        else:
            dot = np.matmul(obs[:, :, e0 : e0 + d], z32[:, :, None])[:, :, 0]
        z_norm = np.linalg.norm(z32, axis=1)
        cos = dot / np.maximum(z_norm[:, None] * np.take(self.item_norm32, cands), 1e-9)
        lo, hi = self.cand_low32, self.cand_high32
        np.clip(dot, lo[c], hi[c], out=obs[:, :, c])
        np.clip(cos, lo[c + 1], hi[c + 1], out=obs[:, :, c + 1])
        if state.shown is not None:
            offsets = np.arange(n, dtype=np.int64)[:, None] * state.shown.shape[1]
            repeats = np.take(state.shown, cands + offsets)
            np.clip(repeats, lo[c + 2], hi[c + 2], out=obs[:, :, c + 2])
        return {"user": user, "candidates": obs}

    # ------------------------------------------------------------------ actions and responses

    def slots(self, actions: NDArray[np.int64]) -> NDArray[np.int64]:
        """Candidate index per slate position, with repeated indices resolved (see the envs).

        ``duplicates="next"``: left to right, a repeated index is replaced by the next index
        (cyclically) that no earlier position uses. ``duplicates="reject"`` raises instead.
        """
        a = np.array(actions, dtype=np.int64).reshape(-1, self.s)
        if self.s == 1:
            return a
        used = np.zeros((a.shape[0], self.k), dtype=bool)
        rows = np.arange(a.shape[0])
        step = np.arange(1, self.k)
        for j in range(self.s):
            col = a[:, j]
            taken = np.flatnonzero(used[rows, col])
            if len(taken):
                if self.config.duplicates == "reject":
                    raise ValueError(
                        "A slate must not repeat a candidate index (duplicates='reject'); "
                        f"slate position {j} repeats an earlier index in {len(taken)} session(s) "
                        f"(sessions {taken[:5].tolist()}, index {col[taken[:5]].tolist()})."
                    )
                nxt = (col[taken, None] + step) % self.k
                free = ~used[taken[:, None], nxt]
                col[taken] = nxt[np.arange(len(taken)), free.argmax(axis=1)]
            used[rows, col] = True
        return a

    def respond(
        self,
        state: SessionState,
        cands: NDArray[np.int64],
        slots: NDArray[np.int64],
        streams: Streams,
        active: NDArray[np.int64] | None = None,
    ) -> Response:
        """Show the slates, sample the responses, move ``state`` and sample who leaves.

        Only the sessions in ``active`` (all when None) draw random numbers; the others get no
        click and are meant to be overwritten by the caller (vector autoreset).
        """
        sim, n, s = self.sim, state.n, self.s
        items = np.take_along_axis(cands, slots, axis=1)
        x = sim.click_features(state, items)
        p_click = sim.click.proba(x).reshape(n, s)
        act = np.arange(n) if active is None else active
        m = len(act)
        click = np.zeros((n, s), np.int64)
        examined = np.zeros((n, s), dtype=bool)
        if s == 1:
            examined[act] = True
            click[act, 0] = streams.click.random(m) < p_click[act, 0]
        else:
            ex = streams.click.random((m, s)) < self.position_bias
            hit = ex & (streams.click.random((m, s)) < p_click[act])
            first = np.where(hit.any(axis=1), hit.argmax(axis=1), s)
            before = np.arange(s) <= first[:, None]  # the cascade stops at the first click
            examined[act] = ex & before
            click[act] = hit & before
        watch = np.zeros((n, s))
        hit_rows, hit_slots = np.nonzero(click)
        if len(hit_rows):
            watch[hit_rows, hit_slots] = sim.sample_watch(
                x[hit_rows * s + hit_slots], items[hit_rows, hit_slots], rng=streams.watch
            )
        any_click = click.any(axis=1)
        chosen = np.where(any_click, click.argmax(axis=1), 0)
        moved = items[np.arange(n), chosen]
        transition(
            state,
            self.embedding,
            moved,
            any_click.astype(np.int64),
            watch.sum(axis=1),
            eta=sim.eta,
            watch_scale=sim.watch_scale,
        )
        if s > 1 and state.shown is not None:
            # transition() counts the item that moved the state; the slate's other items were
            # shown too (the replay counts every logged impression in ``repeats``).
            others = np.arange(s) != chosen[:, None]
            state.shown[np.nonzero(others)[0], items[others]] += 1
        p_continue = sim.cont.proba(continue_features(state))
        terminated = np.zeros(n, dtype=bool)
        terminated[act] = streams.leave.random(m) >= p_continue[act]
        response = Response(
            items=items,
            p_click=p_click,
            examined=examined,
            click=click,
            watch=watch,
            p_continue=p_continue,
            terminated=terminated,
            reward=np.zeros(n),
        )
        response.reward[act] = self.reward(response, act)
        return response

    def reward(self, r: Response, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """Reward of each session in ``rows`` (summed over the slate)."""
        kind = self.config.reward
        if kind == "watch_time":
            return r.watch[rows].sum(axis=1)
        if kind == "clicks":
            return r.click[rows].sum(axis=1).astype(np.float64)
        if kind == "long_watch":
            return (r.watch[rows] > self.config.long_watch_threshold).sum(axis=1).astype(np.float64)
        out = np.empty(len(rows))
        for j, i in enumerate(rows):
            info = self.step_info(r, i)
            out[j] = float(kind(int(r.click[i].sum()), float(r.watch[i].sum()), info))
        return out

    def item_ids(self, rows: NDArray[np.int64]) -> NDArray:
        """Catalogue item ids of catalogue rows."""
        return self.sim.catalogue.item_ids[rows]

    def step_info(self, r: Response, i: int) -> dict[str, Any]:
        """Documented step ``info`` of session ``i`` (arrays over the slate, fresh copies)."""
        return {
            "item_ids": self.item_ids(r.items[i]),
            "p_click": r.p_click[i].copy(),
            "examined": r.examined[i].copy(),
            "click": r.click[i].copy(),
            "watch_time": r.watch[i].copy(),
            "p_continue": float(r.p_continue[i]),
        }
