"""Optimisers and gradient checks of simkit's numpy nets (re-exported by :mod:`simkit.nn`).

``SGD`` and ``Adam`` step :class:`simkit.nn.Parameter` objects in place; ``clip_grad_norm`` scales
gradients to a global norm; ``numerical_gradient`` and ``relative_error`` are the central-difference
checks every layer and loss is tested against.

References
----------
.. [1] Kingma and Ba. "Adam: a method for stochastic optimization." ICLR 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from simkit.nn import Parameter

__all__ = ["SGD", "Adam", "clip_grad_norm", "numerical_gradient", "relative_error"]

Array = NDArray[np.floating]


# --------------------------------------------------------------------------- optimisers


class SGD:
    """Plain stochastic gradient descent ``p -= lr * grad``.

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
    """

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        self.lr = float(lr)

    def step(self) -> None:
        """Apply one update with the stored gradients."""
        for p in self.params:
            p.value -= self.lr * p.grad

    def state_dict(self) -> dict[str, Array]:
        """Optimiser state (none for SGD)."""
        return {}

    def load_state_dict(self, state: dict[str, NDArray[Any]]) -> None:
        """Restore optimiser state (none for SGD)."""


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction.

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
    betas : tuple of float
        Decay rates of the first and second moment estimates (0.9, 0.999).
    eps : float
        Added to the root of the second moment (1e-8).
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.t = 0
        self.m = [np.zeros_like(p.value) for p in self.params]
        self.v = [np.zeros_like(p.value) for p in self.params]

    def step(self) -> None:
        """Apply one update with the stored gradients."""
        b1, b2 = self.betas
        self.t += 1
        c1 = 1.0 - b1**self.t
        c2 = 1.0 - b2**self.t
        step = self.lr * math.sqrt(c2) / c1
        eps_hat = self.eps * math.sqrt(c2)  # same as eps added to sqrt(v_hat)
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            p.value -= step * m / (np.sqrt(v) + eps_hat)

    def state_dict(self) -> dict[str, Array]:
        """Moment estimates and step count, as arrays."""
        state: dict[str, Array] = {"t": np.array(self.t)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            state[f"m.{i}"] = m.copy()
            state[f"v.{i}"] = v.copy()
        return state

    def load_state_dict(self, state: dict[str, NDArray[Any]]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.t = int(state["t"])
        for i in range(len(self.params)):
            self.m[i][...] = state[f"m.{i}"]
            self.v[i][...] = state[f"v.{i}"]


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> float:
    """Rescale gradients in place so that their global L2 norm is at most ``max_norm``.

    Returns
    -------
    float
        The global norm before clipping.
    """
    params = list(params)
    total = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for p in params:
            p.grad = p.grad * scale
    return total


# --------------------------------------------------------------------------- gradient checking


def numerical_gradient(f: Callable[[], float], x: Array, eps: float = 1e-6) -> Array:
    """Central finite-difference gradient of ``f()`` with respect to the array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def relative_error(analytic: NDArray[Any], numeric: NDArray[Any], floor: float = 1e-8) -> float:
    """Largest elementwise ``|a - n| / max(|a| + |n|, floor)``."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    return float((np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)).max(initial=0.0))
