"""DQN speed: gradient updates per second (batch 256) and env steps per second while training.

The numpy agent (:class:`simkit.agents.dqn.DQN`, float32, one BLAS thread) is timed on two shapes:
the clickbait test env (K = 10 candidates, 12 user and 2 item features) and a simulator-like one
(K = 50, 24 + 24 features), with a (64, 64) residual net. An update is one prioritised batch: the
Double DQN target scores every candidate of every next state with both nets, then one Huber
step with gradient clipping and Adam, then the priority update.

Rates are per CPU second (``time.process_time``): the machine is shared, and wall-clock rates there
measure the neighbours. A torch twin runs the same update (same replay buffer and sampling, same net, float32, one thread)
when torch is importable, here or in the interpreter given by ``--torch-python`` (a side venv: torch
is never a simkit dependency), and the table shows numpy / torch.

Usage: ``python benchmarks/dqn_speed.py [--updates 400] [--steps 20000]
[--torch-python /tmp/torchvenv/bin/python]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from simkit.agents.base import blas_threads
from simkit.agents.clickbait_env import ClickbaitSessionVectorEnv
from simkit.agents.dqn import DQN
from simkit.agents.per import PrioritizedReplay, annealed_beta

SHAPES = {"clickbait K=10": (10, 12, 2), "simulator-like K=50": (50, 24, 24)}
BATCH = 256


def fill(
    buf: PrioritizedReplay, k: int, d_u: int, d_c: int, n: int, rng: np.random.Generator
) -> None:
    f32 = np.float32
    buf.add(
        {
            "user": rng.normal(size=(n, d_u)).astype(f32),
            "candidates": rng.normal(size=(n, k, d_c)).astype(f32),
            "action": rng.integers(k, size=n),
            "reward": rng.random(n),
            "terminated": rng.random(n) < 0.1,
            "prior": rng.random(n).astype(f32),
            "next_user": rng.normal(size=(n, d_u)).astype(f32),
            "next_candidates": rng.normal(size=(n, k, d_c)).astype(f32),
            "next_prior": rng.random((n, k)).astype(f32),
        }
    )


def numpy_updates(k: int, d_u: int, d_c: int, n_updates: int) -> float:
    rng = np.random.default_rng(0)
    agent = DQN(
        batch_size=BATCH, gamma=0.75, reward_prior=lambda o: np.zeros(o["candidates"].shape[:2])
    )
    agent.build(d_u, d_c, rng=rng)
    agent.buffer = PrioritizedReplay(20_000)
    fill(agent.buffer, k, d_u, d_c, 20_000, rng)
    for _ in range(20):
        agent.update(rng, 0.4)
    start = time.process_time()
    for i in range(n_updates):
        agent.update(rng, annealed_beta(0.4, i / n_updates))
    return n_updates / (time.process_time() - start)


def torch_updates(k: int, d_u: int, d_c: int, n_updates: int) -> float:
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    buf = PrioritizedReplay(20_000)
    fill(buf, k, d_u, d_c, 20_000, rng)

    def net() -> Any:
        return torch.nn.Sequential(
            torch.nn.Linear(d_u + d_c, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 1),
        )

    online, target = net(), net()
    target.load_state_dict(online.state_dict())
    opt = torch.optim.Adam(online.parameters(), lr=1e-3)
    gamma, n_done = 0.75, 0

    def score(model: Any, user: Any, cands: Any) -> Any:
        u = user[:, None, :].expand(-1, cands.shape[1], -1)
        return model(torch.cat([u, cands], dim=2))[..., 0]

    def update(beta: float) -> None:
        nonlocal n_done
        batch = buf.sample(BATCH, rng=rng, beta=beta)
        d = {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in batch.data.items()}
        w = torch.from_numpy(batch.weights.astype(np.float32))
        with torch.no_grad():
            nu, nc, npr = d["next_user"], d["next_candidates"], d["next_prior"]
            best = (npr + score(online, nu, nc)).argmax(dim=1, keepdim=True)
            v = (npr + score(target, nu, nc)).gather(1, best)[:, 0]
            y = d["reward"].float() + gamma * (1.0 - d["terminated"].float()) * v
        rows = torch.arange(BATCH)
        cand = d["candidates"][rows, d["action"]]
        pred = d["prior"] + online(torch.cat([d["user"], cand], dim=1))[:, 0]
        loss = (w * torch.nn.functional.huber_loss(pred, y, reduction="none", delta=1.0)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(online.parameters(), 10.0)
        opt.step()
        buf.update_priorities(batch.index, (pred - y).detach().numpy())
        n_done += 1
        if n_done % 250 == 0:
            target.load_state_dict(online.state_dict())

    for _ in range(20):
        update(0.4)
    start = time.process_time()
    for i in range(n_updates):
        update(annealed_beta(0.4, i / n_updates))
    return n_updates / (time.process_time() - start)


def env_steps(n_steps: int, batch_size: int) -> float:
    env = ClickbaitSessionVectorEnv(16)
    agent = DQN(gamma=0.95, batch_size=batch_size)
    start = time.process_time()
    agent.learn_online(env, n_steps, rng=np.random.default_rng(0))
    return n_steps / (time.process_time() - start)


def torch_results(n_updates: int, torch_python: str | None) -> dict[str, float] | None:
    if importlib.util.find_spec("torch") is not None:
        return {name: torch_updates(*shape, n_updates) for name, shape in SHAPES.items()}
    if torch_python is None:
        return None
    out = subprocess.run(
        [torch_python, __file__, "--torch-only", "--updates", str(n_updates)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--torch-python", default=None)
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_only:
        print(json.dumps({n: torch_updates(*s, args.updates) for n, s in SHAPES.items()}))
        return
    with blas_threads(1):
        ours = {name: numpy_updates(*shape, args.updates) for name, shape in SHAPES.items()}
        theirs = torch_results(args.updates, args.torch_python)
        steps128 = env_steps(args.steps, 128)
        steps256 = env_steps(args.steps, BATCH)
    print(f"DQN updates per second, batch {BATCH}, (64, 64) net, float32, one thread")
    print(f"{'shape':<22} {'numpy':>10} {'torch':>10} {'numpy/torch':>12}")
    for name, rate in ours.items():
        if theirs is None:
            print(f"{name:<22} {rate:>10.0f} {'-':>10} {'-':>12}")
        else:
            print(f"{name:<22} {rate:>10.0f} {theirs[name]:>10.0f} {rate / theirs[name]:>12.2f}")
    if theirs is None:
        print("torch not importable (pass --torch-python PATH to use a side venv): twin skipped")
    print(
        f"env steps per second while training (ClickbaitSessionVectorEnv, 16 sessions, an update "
        f"every 4 env steps): {steps128:.0f} with batch 128, {steps256:.0f} with batch 256"
    )


if __name__ == "__main__":
    sys.exit(main())
