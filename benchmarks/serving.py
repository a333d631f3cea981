"""Latency of ``ServedPolicy.rank`` beside a bare numpy matrix product of the same size.

For each agent kind (LinUCB: linear with a UCB width; LinTS: 100 frozen posterior draws;
REINFORCE: two towers with a 64-unit hidden layer; DQN: a 64x64 Q-net without prior) this prints
the p50 and p99 of one request with 100 and 1,000 candidates, and the throughput of batches of 256
requests of 100 candidates, each beside the same figure for the bare products the scorer does (the
same shapes, in the same process, no checks and no sampling), and their ratio.

Run: ``python benchmarks/serving.py [--repeats 2000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simkit.agents.base import blas_threads
from simkit.agents.dqn import DQN
from simkit.agents.lints import LinTS
from simkit.agents.linucb import LinUCB
from simkit.agents.reinforce import REINFORCE
from simkit.serving import export_policy, load_policy

D_U, D_C = 24, 24


def _timings(fn: Callable[[], object], repeats: int) -> np.ndarray:
    for _ in range(20):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out


def _agents(rng: np.random.Generator) -> dict[str, object]:
    obs = {"user": rng.normal(size=D_U), "candidates": rng.normal(size=(50, D_C))}
    ucb = LinUCB(features="candidates")
    ts = LinTS(features="candidates", ensemble_size=100)
    for agent in (ucb, ts):
        for _ in range(200):
            agent.update(obs, int(rng.integers(50)), float(rng.normal()))
    pg = REINFORCE(embedding_dim=16, hidden=(64,))
    pg.build(D_U, D_C, rng=rng)
    dqn = DQN(warm_start=False, hidden=(64, 64))
    dqn.build(D_U, D_C, rng=rng)
    return {"linucb": ucb, "lints": ts, "reinforce": pg, "dqn": dqn}


def _bare(kind: str, policy: object) -> Callable[[np.ndarray, np.ndarray], object]:
    """The scorer's products alone, as plain numpy."""
    s = policy.scorer  # type: ignore[attr-defined]
    if kind == "linucb":
        return lambda u, c: c @ s.a_inv[:-1, :-1] @ s.theta[:-1]
    if kind == "lints":
        return lambda u, c: c @ s.ensemble[:, :-1].T
    if kind == "reinforce":
        w = s.item
        return lambda u, c: np.maximum(c @ w[0] + w[1], 0) @ w[2] @ (u @ s.user[0][:, :16]).T
    w = s.layers
    return lambda u, c: np.maximum(np.maximum(c @ w[0][D_U:] + w[1], 0) @ w[2] + w[3], 0) @ w[4]


def main() -> None:
    with blas_threads(1):  # one BLAS thread: two threads on two busy cores stall for milliseconds
        _run()


def _run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    print(
        f"{'kind':<10}{'K':>6}{'rank p50':>11}{'p99':>9}{'bare p50':>11}{'p99':>9}{'p99 ratio':>11}"
    )
    for kind, agent in _agents(rng).items():
        names = ([f"u{j}" for j in range(D_U)], [f"c{j}" for j in range(D_C)])
        export_policy(agent, tmp / kind, rng=rng, context_names=names[0], candidate_names=names[1])
        policy = load_policy(tmp / kind)
        bare = _bare(kind, policy)
        for k in (100, 1000):
            user, cands = rng.normal(size=(1, D_U)), rng.normal(size=(1, k, D_C))
            r = np.random.default_rng(1)
            t_rank = _timings(
                lambda p=policy, u=user, c=cands, g=r: p.rank(u, c, rng=g), args.repeats
            )
            t_bare = _timings(lambda b=bare, u=user, c=cands[0]: b(u, c), args.repeats)
            p = [np.percentile(t, q) * 1e6 for t in (t_rank, t_bare) for q in (50, 99)]
            print(
                f"{kind:<10}{k:>6}{p[0]:>9.0f}us{p[1]:>7.0f}us{p[2]:>9.0f}us{p[3]:>7.0f}us"
                f"{p[1] / p[3]:>10.2f}x"
            )
        n = 256
        users, cands = rng.normal(size=(n, D_U)), rng.normal(size=(n, 100, D_C))
        r = np.random.default_rng(2)
        t_rank = _timings(lambda p=policy, u=users, c=cands, g=r: p.rank(u, c, rng=g), 50).mean()
        flat = cands.reshape(n * 100, D_C)
        t_bare = _timings(lambda b=bare, u=users, c=flat: b(u, c), 50).mean()
        print(
            f"{kind:<10} batch of {n} x 100: {n / t_rank:,.0f} requests/s "
            f"(bare products {n / t_bare:,.0f}/s, ratio {t_rank / t_bare:.2f}x)"
        )


if __name__ == "__main__":
    main()
