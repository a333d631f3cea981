"""``simkit export``: a trained agent as a self-contained serving artefact.

:func:`export_policy` reads a run folder of ``simkit train`` (or a saved agent folder), turns the
agent into a scorer kind of :mod:`simkit.serving.scorers` and its exploration into an
:class:`~simkit.serving.policy.Exploration`, and writes the sealed folder of
:mod:`simkit.serving.io`. The served policy reproduces the in-memory agent: the same scores and,
for the same inputs and ``rng``, the same choices (single-item decisions; slates have the same
probabilities).

Agents that score candidates and how they are served: ``RandomAgent`` (uniform), ``PopularAgent``
(a column, greedy), ``GreedyClickAgent`` (the click model in LightGBM text, greedy), ``LinUCB``
(joint model, greedy on the UCB), ``LinTS`` (joint model, a frozen ensemble of posterior draws:
exact probabilities), ``REINFORCE`` (two towers, softmax), ``DQN`` (Q-net, top-K softmax; a warm
start's prior is the simulator's click and watch models in LightGBM text). Disjoint-arm bandits
score candidate *positions*, not candidates, and are refused.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ArtifactError, ConfigError
from simkit.serving.io import write_policy_folder
from simkit.serving.policy import Exploration

__all__ = ["export_policy", "policy_spec"]


def _dense_layers(seq: Any, prefix: str) -> dict[str, NDArray[Any]]:
    """The Dense layers of a :class:`simkit.nn.Sequential` as ``prefix.i.weight/bias``."""
    from simkit import nn

    out: dict[str, NDArray[Any]] = {}
    dense = [layer for layer in seq.layers if isinstance(layer, nn.Dense)]
    for i, layer in enumerate(dense):
        out[f"{prefix}.{i}.weight"] = layer.weight.value.copy()
        out[f"{prefix}.{i}.bias"] = layer.bias.value.copy()
    return out


def _activation(seq: Any) -> str:
    from simkit import nn

    return "tanh" if any(isinstance(layer, nn.Tanh) for layer in seq.layers) else "relu"


def _click_model_part(
    greedy: Any, reward: str, candidate_names: Sequence[str]
) -> tuple[dict[str, Any], dict[str, NDArray[Any]], dict[str, str]]:
    """Parameters, arrays and texts of a ``click_model`` scorer from a GreedyClickAgent."""
    sim = greedy.simulator
    arrays: dict[str, NDArray[Any]] = dict(greedy.click_feature_map())
    arrays["calib_x"] = np.asarray(sim.click.calib_x, np.float64)
    arrays["calib_y"] = np.asarray(sim.click.calib_y, np.float64)
    texts = {"click.txt": sim.click.booster.model_to_string()}
    params: dict[str, Any] = {"n_features": len(sim.spec.click_names), "reward": reward}
    if reward not in ("clicks", "watch_time"):
        raise ConfigError(
            f"Serving scores a click model by 'clicks' or 'watch_time'; got reward {reward!r}."
        )
    if reward == "watch_time":
        arrays["watch_bin_edges"] = np.asarray(sim.watch.bin_edges, np.float64)
        arrays["watch_residuals"] = np.asarray(sim.watch.residuals, np.float64)
        arrays["watch_cumulative"] = np.asarray(sim.watch.cumulative, np.float64)
        texts["watch.txt"] = sim.watch.booster.model_to_string()
        names = list(candidate_names)
        params["duration_col"] = names.index("log_duration") if "log_duration" in names else None
    return params, arrays, texts


def policy_spec(
    agent: Any,
    *,
    n_candidate_features: int,
    rng: np.random.Generator,
    simulator: Any = None,
    reward: str = "watch_time",
    candidate_names: Sequence[str] = (),
    ensemble_size: int | None = None,
) -> tuple[dict[str, Any], Exploration, dict[str, NDArray[Any]], dict[str, str]]:
    """Scorer spec, exploration, arrays and texts that serve ``agent``.

    Parameters
    ----------
    agent
        A trained simkit agent.
    n_candidate_features : int
        Columns of a candidate row (to resolve negative column indices).
    rng : numpy.random.Generator
        Draws a LinTS ensemble that is not drawn yet.
    simulator : Simulator, optional
        The simulator a warm-started DQN's prior comes from.
    reward : str
        The reward the DQN's prior predicts (``"watch_time"`` or ``"clicks"``).
    candidate_names : sequence of str
        Candidate column names (to find ``log_duration`` for the prior's duration cap).
    ensemble_size : int, optional
        For a LinTS acting on fresh posterior draws: serve ``M`` frozen draws instead.

    Raises
    ------
    ConfigError
        For an agent that cannot be served (see the module docstring), saying why.
    """
    name = type(agent).__name__
    cfg = agent.config
    if name == "RandomAgent":
        return {"kind": "constant"}, Exploration(rule="uniform", slate_size=cfg.slate_size), {}, {}
    if name == "PopularAgent":
        j = cfg.column_index % n_candidate_features
        explore = Exploration(epsilon=cfg.epsilon_mix, slate_size=cfg.slate_size)
        return {"kind": "column", "params": {"index": j}}, explore, {}, {}
    if name == "GreedyClickAgent":
        params, arrays, texts = _click_model_part(agent, "clicks", candidate_names)
        explore = Exploration(epsilon=cfg.epsilon_mix, slate_size=cfg.slate_size)
        return {"kind": "click_model", "params": params}, explore, arrays, texts
    if name in ("LinUCB", "LinTS"):
        if cfg.model != "joint":
            raise ConfigError(
                f"This {name} uses disjoint arms: it scores candidate positions, not candidates, "
                "so it cannot rank a new candidate set. Serve a joint model (model='joint')."
            )
        stats = agent.statistics
        params = {"features": cfg.features, "intercept": bool(cfg.intercept)}
        if name == "LinUCB":
            arrays = {"theta": stats.theta[0].copy(), "A_inv": stats.A_inv[0].copy()}
            return (
                {"kind": "linear", "params": {**params, "alpha": float(cfg.alpha)}},
                Exploration(epsilon=cfg.epsilon_mix),
                arrays,
                {},
            )
        if cfg.ensemble_size == 0:
            if not ensemble_size:
                raise ConfigError(
                    "This LinTS draws a fresh posterior sample per decision, so its action "
                    "probabilities are only Monte-Carlo estimates; a served policy logs exact "
                    "ones. Export it with --ensemble-size M (e.g. 100): the served policy acts on "
                    "M posterior draws frozen at export, with exact probabilities."
                )
            agent.config = dataclasses.replace(cfg, ensemble_size=int(ensemble_size))
            agent._on_publish()
        ensemble = agent.posterior_ensemble(rng)
        return (
            {"kind": "linear_ensemble", "params": params},
            Exploration(rule="ensemble"),
            {"ensemble": ensemble.copy()},
            {},
        )
    if name == "REINFORCE":
        agent._check_built()
        arrays = {}
        layers = 0
        if agent.user_tower is not None:
            arrays |= _dense_layers(agent.user_tower, "user_tower")
            arrays |= _dense_layers(agent.policy.tower, "item_tower")
            layers = len(arrays) // 4
        if agent.policy.bias is not None:
            arrays["bias.0.weight"] = agent.policy.bias.weight.value.copy()
            arrays["bias.0.bias"] = agent.policy.bias.bias.value.copy()
        params = {
            "activation": cfg.activation,
            "temperature": float(cfg.temperature),
            "tower_layers": layers,
            "item_bias": bool(cfg.item_bias),
        }
        explore = Exploration(rule="softmax", slate_size=cfg.slate_size)
        return {"kind": "two_tower", "params": params}, explore, arrays, {}
    if name == "DQN":
        if agent.online is None:
            raise ConfigError("This DQN has no networks yet; train it before exporting it.")
        net = agent.online
        arrays = _dense_layers(net.net, "net")
        arrays["input_mean"] = net.mean.copy()
        arrays["input_std"] = net.std.copy()
        texts = {}
        prior = None
        if cfg.warm_start:
            if simulator is None:
                raise ConfigError(
                    "This DQN is warm-started: its Q adds the simulator's expected immediate "
                    "reward. Export it from its run folder (whose run.json names the simulator)."
                )
            from simkit.agents.baselines import GreedyClickAgent

            greedy = GreedyClickAgent(simulator=simulator)
            prior, prior_arrays, texts = _click_model_part(greedy, reward, candidate_names)
            arrays |= prior_arrays
        params = {
            "dtype": cfg.dtype,
            "user_dim": int(agent.dims[0]),
            "activation": _activation(net.net),
            "reward_scale": float(cfg.reward_scale),
            "n_layers": len([k for k in arrays if k.startswith("net.") and k.endswith("weight")]),
            "prior": prior,
        }
        uniform = 1.0 if cfg.exploration == "epsilon_greedy" else cfg.uniform_share
        explore = Exploration(
            rule="topk_softmax",
            epsilon=float(agent.epsilon),
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_k_fraction=cfg.top_k_fraction,
            uniform_share=uniform,
        )
        return {"kind": "qnet", "params": params}, explore, arrays, texts
    raise ConfigError(
        f"simkit export serves agents that score candidates (RandomAgent, PopularAgent, "
        f"GreedyClickAgent, LinUCB, LinTS, REINFORCE, DQN); got a {name}."
    )


def export_policy(
    source: str | os.PathLike[str] | Any,
    out: str | os.PathLike[str],
    *,
    rng: np.random.Generator,
    context_names: Sequence[str] | None = None,
    candidate_names: Sequence[str] | None = None,
    exploration: Mapping[str, Any] | None = None,
    ensemble_size: int | None = None,
    simulator: Any = None,
    reward: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the serving artefact of a trained agent to the folder ``out``.

    Parameters
    ----------
    source : str or PathLike or agent
        A run folder of ``simkit train`` (``run.json`` + ``agent/``), a saved agent folder, or
        an agent object.
    out : str or PathLike
        The policy folder to write (atomically).
    rng : numpy.random.Generator
        Draws a LinTS ensemble when the agent has none yet.
    context_names, candidate_names : sequence of str, optional
        Feature names in the order the agent reads them. Default for a run folder: the session
        env's observation names of its simulator; else ``context_0 ..`` and ``candidate_0 ..``
        (then give ``n`` via the agent's dimensions).
    exploration : mapping, optional
        Overrides of the serving-time exploration (e.g. ``{"epsilon": 0.1}``).
    ensemble_size : int, optional
        Frozen posterior draws to serve a LinTS that draws a fresh sample per decision.
    simulator : Simulator, optional
        The simulator of a warm-started DQN (default: the run's).
    reward : str, optional
        The reward a warm-started DQN's prior predicts (default: the run's, else watch time).
    overwrite : bool
        Replace an existing policy folder.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ArtifactError
        A source that is neither a run nor an agent folder, or an ``out`` that cannot be written.
    ConfigError
        An agent that cannot be served, or names that do not match its dimensions.
    """
    from simkit.agents.base import load_agent

    settings: dict[str, Any] = {}
    source_info: dict[str, Any] = {}
    if isinstance(source, (str, os.PathLike)):
        from simkit.agents.train import read_run

        settings, agent_dir = read_run(source)
        agent = load_agent(agent_dir)
        source_info = {
            "path": str(Path(source).resolve()),
            "agent_manifest_sha256": _sha(Path(agent_dir) / "manifest.json"),
        }
    else:
        agent = source
    sim_path = settings.get("simulator")
    if sim_path is not None and (
        context_names is None or candidate_names is None or simulator is None
    ):
        from simkit.agents.baselines import observation_names
        from simkit.simulator import Simulator

        sim = simulator if simulator is not None else Simulator.load(sim_path)
        simulator = sim
        user_names, cand_names = observation_names(sim)
        context_names = context_names or user_names
        candidate_names = candidate_names or cand_names
        source_info["simulator"] = str(sim_path)
    dims = _agent_dims(agent)
    if context_names is None or candidate_names is None:
        if dims[0] is None or dims[1] is None:
            raise ConfigError(
                f"A {type(agent).__name__} does not record its input sizes; pass context_names "
                "and candidate_names (the feature names in the order the agent reads them)."
            )
        context_names = context_names or [f"context_{j}" for j in range(dims[0])]
        candidate_names = candidate_names or [f"candidate_{j}" for j in range(dims[1])]
    if any(d is not None and d != len(n) for d, n in zip(dims, (context_names, candidate_names))):
        raise ConfigError(
            f"The agent reads {dims[0]} context and {dims[1]} candidate features; got "
            f"{len(context_names)} context and {len(candidate_names)} candidate names."
        )
    scorer, explore, arrays, texts = policy_spec(
        agent,
        n_candidate_features=len(candidate_names),
        rng=rng,
        simulator=simulator,
        reward=reward or settings.get("reward", "watch_time"),
        candidate_names=candidate_names,
        ensemble_size=ensemble_size,
    )
    if exploration:
        explore = dataclasses.replace(explore, **dict(exploration))
    needs = ["numpy"] + (["lightgbm"] if texts else [])
    body = {
        "agent": type(agent).__name__,
        "features": {"context": list(context_names), "candidates": list(candidate_names)},
        "candidate_spec": {
            "n_features": len(candidate_names),
            "min_candidates": explore.slate_size,
            "dtype": "float64",
            "missing_values": "refused: NaN or infinite features raise InputError",
            "layout": "one row per candidate, columns in features.candidates order",
        },
        "scorer": scorer,
        "exploration": explore.to_json(),
        "needs": needs,
        "source": source_info,
    }
    return write_policy_folder(
        Path(out), body=body, arrays=arrays, texts=texts, overwrite=overwrite
    )


def _agent_dims(agent: Any) -> tuple[int | None, int | None]:
    dims = getattr(agent, "dims", None)
    if dims is not None:
        return int(dims[0]), int(dims[1])
    return None, None


def _sha(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from None
