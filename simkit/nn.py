"""Small numpy neural networks with hand-written backward passes.

Layers (:class:`Dense`, :class:`ReLU`, :class:`Tanh`, :class:`Embedding`, :class:`BatchNorm`)
compose with :class:`Sequential`. ``forward`` caches what ``backward`` needs; ``backward(grad)``
takes the gradient of a scalar loss with respect to the layer's output, stores the gradients of the
layer's parameters in ``Parameter.grad`` (overwriting, not accumulating) and returns the gradient
with respect to the input. Losses are functions returning ``(loss, gradient)``. :class:`Adam` and
:class:`SGD` update :class:`Parameter` objects in place; :func:`clip_grad_norm` rescales gradients.

Modules save as a ``.npz`` of their arrays (loaded with ``allow_pickle=False``) beside a JSON
architecture (:func:`save_module`, :func:`load_module`). Every backward pass is checked against
central finite differences in ``tests/test_nn.py``; :func:`numerical_gradient` and
:func:`relative_error` are public so other tests can do the same.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> net = mlp([4, 8, 2], rng=rng)
>>> x = rng.normal(size=(5, 4))
>>> loss, grad = mse_loss(net.forward(x), np.zeros((5, 2)))
>>> _ = net.backward(grad)
>>> opt = Adam(net.parameters(), lr=1e-2)
>>> opt.step()
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simkit.errors import ArtifactError
from simkit.nn_optim import SGD, Adam, clip_grad_norm, numerical_gradient, relative_error

__all__ = [
    "Adam",
    "BatchNorm",
    "Dense",
    "Embedding",
    "Module",
    "Parameter",
    "ReLU",
    "SGD",
    "Sequential",
    "Tanh",
    "build_module",
    "clip_grad_norm",
    "gaussian_log_likelihood_loss",
    "huber_loss",
    "load_module",
    "log_softmax",
    "log_softmax_and_softmax",
    "mlp",
    "mse_loss",
    "numerical_gradient",
    "relative_error",
    "save_module",
    "softmax",
    "softmax_cross_entropy",
    "softmax_entropy",
    "weighted_log_likelihood",
]

Array = NDArray[np.floating]


# --------------------------------------------------------------------------- parameters and modules


class Parameter:
    """A trainable array and the gradient of the last backward pass.

    Parameters
    ----------
    value : ndarray
        The array, updated in place by optimisers.
    """

    __slots__ = ("value", "grad")

    def __init__(self, value: Array) -> None:
        self.value = value
        self.grad = np.zeros_like(value)


class Module:
    """Base class: ``forward``, ``backward``, parameters, buffers, train/eval mode, config."""

    training: bool = True

    def forward(self, x: NDArray[Any]) -> Array:
        """Compute the output and cache what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, grad: Array) -> Array | None:
        """Store parameter gradients and return the gradient with respect to the input."""
        raise NotImplementedError

    def __call__(self, x: NDArray[Any]) -> Array:
        return self.forward(x)

    def named_parameters(self) -> dict[str, Parameter]:
        """Trainable parameters by name."""
        return {}

    def buffers(self) -> dict[str, Array]:
        """Non-trainable state saved with the module (running statistics)."""
        return {}

    def parameters(self) -> list[Parameter]:
        """Trainable parameters, in a fixed order."""
        return list(self.named_parameters().values())

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero."""
        for p in self.parameters():
            p.grad = np.zeros_like(p.value)

    def train(self, mode: bool = True) -> Module:
        """Switch to training mode (``mode=True``) or evaluation mode."""
        self.training = mode
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode (BatchNorm then uses its running statistics)."""
        return self.train(False)

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable architecture, enough for :func:`build_module`."""
        return {"type": type(self).__name__}

    def state_dict(self) -> dict[str, Array]:
        """Copies of every parameter and buffer, by name."""
        state = {name: p.value.copy() for name, p in self.named_parameters().items()}
        state.update({name: b.copy() for name, b in self.buffers().items()})
        return state

    def load_state_dict(self, state: dict[str, NDArray[Any]]) -> None:
        """Copy arrays into the parameters and buffers.

        Raises
        ------
        ArtifactError
            When names or shapes differ from the module's.
        """
        targets: dict[str, Array] = {n: p.value for n, p in self.named_parameters().items()}
        targets.update(self.buffers())
        problems = []
        missing = sorted(set(targets) - set(state))
        extra = sorted(set(state) - set(targets))
        if missing:
            problems.append(f"missing arrays {missing[:5]}")
        if extra:
            problems.append(f"unexpected arrays {extra[:5]}")
        for name in sorted(set(targets) & set(state)):
            if targets[name].shape != np.shape(state[name]):
                problems.append(
                    f"array {name!r} has shape {np.shape(state[name])}, "
                    f"expected {targets[name].shape}"
                )
        if problems:
            raise ArtifactError(
                "Saved parameters must match the architecture; got " + "; ".join(problems) + "."
            )
        for name, target in targets.items():
            target[...] = state[name]


class Dense(Module):
    """Affine layer ``y = x W + b`` over the last axis.

    Parameters
    ----------
    n_in, n_out : int
        Input and output sizes.
    rng : numpy.random.Generator, optional
        Draws the initial weights; required unless ``init="zeros"``.
    init : {"he", "xavier", "zeros"}
        He normal (for ReLU), Xavier normal (tanh, linear) or zeros. Biases start at zero.
    dtype : str
        Floating dtype of the parameters.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        rng: np.random.Generator | None = None,
        init: str = "xavier",
        dtype: str = "float64",
    ) -> None:
        self.n_in, self.n_out, self.dtype = int(n_in), int(n_out), str(dtype)
        if init == "zeros":
            w = np.zeros((n_in, n_out), dtype=dtype)
        elif init in ("he", "xavier"):
            if rng is None:
                raise TypeError(f"Dense(init={init!r}) needs rng=np.random.Generator")
            scale = math.sqrt(2.0 / n_in) if init == "he" else math.sqrt(2.0 / (n_in + n_out))
            w = (rng.standard_normal((n_in, n_out)) * scale).astype(dtype)
        else:
            raise ValueError(f"init must be 'he', 'xavier' or 'zeros'; got {init!r}")
        self.weight = Parameter(w)
        self.bias = Parameter(np.zeros(n_out, dtype=dtype))
        self._x: Array | None = None

    def forward(self, x: NDArray[Any]) -> Array:
        self._x = x
        return x @ self.weight.value + self.bias.value

    def backward(self, grad: Array) -> Array:
        x = self._x
        assert x is not None, "backward before forward"
        x2 = x.reshape(-1, self.n_in)
        g2 = grad.reshape(-1, self.n_out)
        self.weight.grad = x2.T @ g2
        self.bias.grad = g2.sum(axis=0)
        return grad @ self.weight.value.T

    def named_parameters(self) -> dict[str, Parameter]:
        return {"weight": self.weight, "bias": self.bias}

    def get_config(self) -> dict[str, Any]:
        return {"type": "Dense", "n_in": self.n_in, "n_out": self.n_out, "dtype": self.dtype}


class ReLU(Module):
    """Rectified linear unit ``max(x, 0)``."""

    def forward(self, x: NDArray[Any]) -> Array:
        self._mask = x > 0
        return np.where(self._mask, x, 0.0).astype(x.dtype, copy=False)

    def backward(self, grad: Array) -> Array:
        return grad * self._mask


class Tanh(Module):
    """Hyperbolic tangent."""

    def forward(self, x: NDArray[Any]) -> Array:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad: Array) -> Array:
        return grad * (1.0 - self._y * self._y)


class Embedding(Module):
    """Lookup table: integer indices of any shape to vectors of size ``dim``.

    Parameters
    ----------
    n : int
        Number of rows (ids ``0 .. n-1``).
    dim : int
        Vector size.
    rng : numpy.random.Generator, optional
        Draws N(0, 1/dim) initial rows; zeros when omitted.
    dtype : str
        Floating dtype.
    """

    def __init__(
        self, n: int, dim: int, *, rng: np.random.Generator | None = None, dtype: str = "float64"
    ) -> None:
        self.n, self.dim, self.dtype = int(n), int(dim), str(dtype)
        if rng is None:
            w = np.zeros((n, dim), dtype=dtype)
        else:
            w = (rng.standard_normal((n, dim)) / math.sqrt(dim)).astype(dtype)
        self.weight = Parameter(w)

    def forward(self, x: NDArray[Any]) -> Array:
        idx = np.asarray(x)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"Embedding takes integer indices; got dtype {idx.dtype}")
        self._idx = idx
        return self.weight.value[idx]

    def backward(self, grad: Array) -> None:
        g = np.zeros_like(self.weight.value)
        np.add.at(g, self._idx.reshape(-1), grad.reshape(-1, self.dim))
        self.weight.grad = g
        return None

    def named_parameters(self) -> dict[str, Parameter]:
        return {"weight": self.weight}

    def get_config(self) -> dict[str, Any]:
        return {"type": "Embedding", "n": self.n, "dim": self.dim, "dtype": self.dtype}


class BatchNorm(Module):
    """Batch normalisation over axis 0 with a learned scale and shift.

    In training mode the batch mean and (biased) variance normalise the input and the running
    statistics move by ``momentum`` (the running variance uses the unbiased batch variance); in
    evaluation mode the running statistics are used.

    Parameters
    ----------
    n : int
        Number of features (last axis).
    momentum : float
        Weight of the new batch in the running statistics.
    eps : float
        Added to the variance.
    dtype : str
        Floating dtype.
    """

    def __init__(
        self, n: int, *, momentum: float = 0.1, eps: float = 1e-5, dtype: str = "float64"
    ) -> None:
        self.n, self.momentum, self.eps, self.dtype = int(n), float(momentum), float(eps), dtype
        self.weight = Parameter(np.ones(n, dtype=dtype))
        self.bias = Parameter(np.zeros(n, dtype=dtype))
        self.running_mean = np.zeros(n, dtype=dtype)
        self.running_var = np.ones(n, dtype=dtype)

    def forward(self, x: NDArray[Any]) -> Array:
        if self.training:
            m = x.shape[0]
            if m < 2:
                raise ValueError("BatchNorm in training mode needs a batch of at least 2 rows")
            mean = x.mean(axis=0)
            var = x.var(axis=0)
            self.running_mean *= 1.0 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1.0 - self.momentum
            self.running_var += self.momentum * var * (m / (m - 1))
        else:
            mean, var = self.running_mean, self.running_var
        self._inv_std = 1.0 / np.sqrt(var + self.eps)
        self._xhat = (x - mean) * self._inv_std
        self._batch_stats = self.training
        return self._xhat * self.weight.value + self.bias.value

    def backward(self, grad: Array) -> Array:
        xhat = self._xhat
        self.weight.grad = (grad * xhat).sum(axis=0)
        self.bias.grad = grad.sum(axis=0)
        dxhat = grad * self.weight.value
        if not self._batch_stats:
            return dxhat * self._inv_std
        m = grad.shape[0]
        return (self._inv_std / m) * (
            m * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)
        )

    def named_parameters(self) -> dict[str, Parameter]:
        return {"weight": self.weight, "bias": self.bias}

    def buffers(self) -> dict[str, Array]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "BatchNorm",
            "n": self.n,
            "momentum": self.momentum,
            "eps": self.eps,
            "dtype": self.dtype,
        }


class Sequential(Module):
    """Layers applied in order; ``backward`` runs them in reverse.

    Parameters
    ----------
    layers : sequence of Module
        The layers. Parameter names are ``"<index>.<name>"``.
    """

    def __init__(self, layers: Sequence[Module]) -> None:
        self.layers = list(layers)

    def forward(self, x: NDArray[Any]) -> Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: Array) -> Array | None:
        g: Array | None = grad
        for layer in reversed(self.layers):
            if g is None:  # an Embedding has no input gradient: nothing below it can train
                raise ValueError("Embedding must be the first layer of a Sequential")
            g = layer.backward(g)
        return g

    def named_parameters(self) -> dict[str, Parameter]:
        return {
            f"{i}.{name}": p
            for i, layer in enumerate(self.layers)
            for name, p in layer.named_parameters().items()
        }

    def buffers(self) -> dict[str, Array]:
        return {
            f"{i}.{name}": b
            for i, layer in enumerate(self.layers)
            for name, b in layer.buffers().items()
        }

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def get_config(self) -> dict[str, Any]:
        return {"type": "Sequential", "layers": [layer.get_config() for layer in self.layers]}


def mlp(
    sizes: Sequence[int],
    *,
    rng: np.random.Generator,
    activation: str = "relu",
    batch_norm: bool = False,
    dtype: str = "float64",
) -> Sequential:
    """Build a multi-layer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Hidden layers use He initialisation for ReLU and Xavier for tanh; the output layer is linear
    with Xavier initialisation.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first; at least two entries.
    rng : numpy.random.Generator
        Draws the initial weights.
    activation : {"relu", "tanh"}
        Hidden activation.
    batch_norm : bool
        Insert :class:`BatchNorm` before each hidden activation.
    dtype : str
        Floating dtype.

    Returns
    -------
    Sequential
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least input and output sizes; got {list(sizes)}")
    if activation not in ("relu", "tanh"):
        raise ValueError(f"activation must be 'relu' or 'tanh'; got {activation!r}")
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        init = "xavier" if last or activation == "tanh" else "he"
        layers.append(Dense(n_in, n_out, rng=rng, init=init, dtype=dtype))
        if not last:
            if batch_norm:
                layers.append(BatchNorm(n_out, dtype=dtype))
            layers.append(ReLU() if activation == "relu" else Tanh())
    return Sequential(layers)


_BUILDERS: dict[str, Callable[[dict[str, Any]], Module]] = {
    "Dense": lambda c: Dense(c["n_in"], c["n_out"], init="zeros", dtype=c["dtype"]),
    "ReLU": lambda c: ReLU(),
    "Tanh": lambda c: Tanh(),
    "Embedding": lambda c: Embedding(c["n"], c["dim"], dtype=c["dtype"]),
    "BatchNorm": lambda c: BatchNorm(
        c["n"], momentum=c["momentum"], eps=c["eps"], dtype=c["dtype"]
    ),
    "Sequential": lambda c: Sequential([build_module(layer) for layer in c["layers"]]),
}


def build_module(config: dict[str, Any]) -> Module:
    """Build a module (zero parameters) from :meth:`Module.get_config` output.

    Raises
    ------
    ArtifactError
        For an unknown layer type.
    """
    kind = config.get("type")
    if kind not in _BUILDERS:
        raise ArtifactError(
            f"Layer type must be one of {sorted(_BUILDERS)}; got {kind!r}. "
            "The file was written by another program or a newer simkit."
        )
    return _BUILDERS[kind](config)


def save_module(module: Module, directory: str | Path, name: str = "model") -> None:
    """Write ``<name>.npz`` (arrays) and ``<name>.json`` (architecture) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"{name}.npz", **module.state_dict())  # type: ignore[arg-type]
    (directory / f"{name}.json").write_text(json.dumps(module.get_config(), indent=2))


def load_module(directory: str | Path, name: str = "model") -> Module:
    """Read a module written by :func:`save_module`; never unpickles.

    Raises
    ------
    ArtifactError
        When a file is missing or does not match the architecture.
    """
    directory = Path(directory)
    try:
        config = json.loads((directory / f"{name}.json").read_text())
        with np.load(directory / f"{name}.npz", allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"Could not read module {name!r} from {directory}: {exc}") from exc
    module = build_module(config)
    module.load_state_dict(state)
    return module


# --------------------------------------------------------------------------- softmax and losses


# Reductions along a short last axis are slow in numpy (tens of microseconds for a 1024 x 10
# array), so for 2-D inputs the fast path subtracts the global maximum and sums rows with a matrix
# product. That is exact unless a row's normaliser underflows (its maximum is far below the global
# one); then the row-wise maximum is subtracted instead. Exponents are floored at -700 so that no
# subnormal number is ever produced (arithmetic on subnormals is ~100x slower on x86); this changes
# a normaliser by at most K * exp(-700) relative.
_TINY = 1e-250
_FLOOR = -700.0


def _exp(z: Array) -> Array:
    return np.exp(np.maximum(z, _FLOOR))


def log_softmax(logits: Array, axis: int = -1) -> Array:
    """Numerically stable ``log(softmax(logits))`` (a maximum is subtracted first)."""
    if logits.ndim == 2 and axis in (-1, 1) and logits.size:
        return log_softmax_and_softmax(logits)[0]
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(_exp(z).sum(axis=axis, keepdims=True))


def log_softmax_and_softmax(logits: Array) -> tuple[Array, Array]:
    """Log-probabilities and probabilities of the rows of a 2-D array, in one pass."""
    z = logits - logits.max()
    e = _exp(z)
    s = e @ np.ones(z.shape[1], dtype=z.dtype)
    if s.min() <= _TINY:  # some row lies far below the global maximum: use row maxima
        z = logits - logits.max(axis=1, keepdims=True)
        e = _exp(z)
        s = e.sum(axis=1)
    return z - np.log(s)[:, None], e / s[:, None]


def softmax(logits: Array, axis: int = -1) -> Array:
    """Numerically stable softmax (probabilities below ``exp(-700)`` are rounded up to it)."""
    return _exp(log_softmax(logits, axis=axis))


def _row_weights(weights: NDArray[Any] | None, n: int, dtype: Any) -> Array:
    if weights is None:
        return np.ones(n, dtype=dtype)
    w = np.asarray(weights, dtype=dtype)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},); got {w.shape}")
    return w


def mse_loss(
    pred: Array, target: Array, weights: NDArray[Any] | None = None
) -> tuple[float, Array]:
    """Mean squared error ``mean(w * (pred - target)**2)`` and its gradient in ``pred``.

    ``weights`` (one per row, e.g. importance weights) multiply each row; the mean runs over all
    elements.
    """
    err = pred - target
    w = _row_weights(weights, pred.shape[0], pred.dtype).reshape((-1,) + (1,) * (pred.ndim - 1))
    return float((w * err * err).sum() / err.size), 2.0 * w * err / err.size


def huber_loss(
    pred: Array, target: Array, delta: float = 1.0, weights: NDArray[Any] | None = None
) -> tuple[float, Array]:
    """Huber loss (quadratic within ``delta``, linear outside), mean over elements, and gradient."""
    err = pred - target
    a = np.abs(err)
    per = np.where(a <= delta, 0.5 * err * err, delta * (a - 0.5 * delta))
    w = _row_weights(weights, pred.shape[0], pred.dtype).reshape((-1,) + (1,) * (pred.ndim - 1))
    return float((w * per).sum() / err.size), w * np.clip(err, -delta, delta) / err.size


def softmax_cross_entropy(
    logits: Array, target: NDArray[Any], weights: NDArray[Any] | None = None
) -> tuple[float, Array]:
    """Mean cross-entropy of ``softmax(logits)`` against labels or target distributions.

    Parameters
    ----------
    logits : ndarray, shape (n, k)
    target : ndarray
        Integer labels of shape (n,) or probability rows of shape (n, k).
    weights : ndarray of shape (n,), optional
        Per-row weights; the loss is ``-(1/n) sum_i w_i sum_j t_ij log p_ij``.

    Returns
    -------
    loss : float
    grad : ndarray, shape (n, k)
        Gradient of the loss in ``logits``.
    """
    n = logits.shape[0]
    logp = log_softmax(logits)
    if np.issubdtype(np.asarray(target).dtype, np.integer):
        t = np.zeros_like(logits)
        t[np.arange(n), target] = 1.0
    else:
        t = np.asarray(target, dtype=logits.dtype)
    w = _row_weights(weights, n, logits.dtype)
    loss = -float((w * (t * logp).sum(axis=1)).sum() / n)
    grad = (w / n)[:, None] * (_exp(logp) * t.sum(axis=1, keepdims=True) - t)
    return loss, grad


def weighted_log_likelihood(
    logits: Array, actions: NDArray[np.integer], weights: NDArray[Any]
) -> tuple[float, Array]:
    """Policy-gradient surrogate ``-(1/n) sum_i w_i log softmax(logits_i)[a_i]`` and its gradient.

    The weights (returns times importance weights) are constants: no gradient flows into them.
    """
    return softmax_cross_entropy(logits, np.asarray(actions), weights)


def softmax_entropy(logits: Array) -> tuple[float, Array]:
    """Mean entropy of ``softmax(logits)`` over rows, and its gradient in ``logits``."""
    logp = log_softmax(logits)
    p = _exp(logp)
    h = -(p * logp).sum(axis=1, keepdims=True)
    return float(h.mean()), -p * (logp + h) / logits.shape[0]


def gaussian_log_likelihood_loss(
    actions: Array,
    mean: Array,
    log_std: Array,
    weights: NDArray[Any] | None = None,
    *,
    log_std_bounds: tuple[float, float] = (-5.0, 2.0),
) -> tuple[float, Array, Array]:
    """Weighted negative log-likelihood of actions under a diagonal Gaussian.

    ``log_std`` is clamped to ``log_std_bounds`` (no gradient outside them); the loss is
    ``-(1/n) sum_i w_i log N(a_i; mean_i, exp(log_std_i)**2)``, log-density summed over the last
    axis.

    Returns
    -------
    loss : float
    grad_mean, grad_log_std : ndarray
        Gradients in ``mean`` and ``log_std`` (shape of ``log_std``, broadcast summed).
    """
    lo, hi = log_std_bounds
    ls = np.clip(log_std, lo, hi)
    inside = (log_std >= lo) & (log_std <= hi)
    n = actions.shape[0]
    w = _row_weights(weights, n, mean.dtype)[:, None]
    z = (actions - mean) * np.exp(-ls)
    logp = (-0.5 * z * z - ls - 0.5 * math.log(2 * math.pi)).sum(axis=1)
    loss = -float((w[:, 0] * logp).sum() / n)
    grad_mean = -(w / n) * z * np.exp(-ls)
    grad_ls = -(w / n) * (z * z - 1.0)
    if np.shape(log_std) != grad_ls.shape:  # a shared log-std: sum over the broadcast axes
        grad_ls = grad_ls.sum(axis=0).reshape(np.shape(log_std))
    return loss, grad_mean, grad_ls * inside
