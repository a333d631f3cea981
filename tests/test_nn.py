"""Gradient checks of every hand-written backward pass in simkit.nn, plus optimiser and I/O tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simkit import nn
from simkit.errors import ArtifactError

TOL = 1e-5
ZERO = 1e-7  # a gradient that is exactly zero (a bias before BatchNorm) is checked absolutely


def assert_close(analytic: np.ndarray, numeric: np.ndarray, what: str = "") -> None:
    """Max elementwise relative error < 1e-5, or both below ZERO when the gradient vanishes."""
    if np.abs(analytic).max() < ZERO and np.abs(numeric).max() < ZERO:
        return
    err = nn.relative_error(analytic, numeric)
    assert err < TOL, f"{what}: relative error {err:.2e}"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def away_from_zero(x: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    """Move entries off the ReLU kink so the finite difference never crosses it."""
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin * 10, x)


def check_module(module: nn.Module, x: np.ndarray, rng: np.random.Generator) -> None:
    """Compare input and parameter gradients of sum(G * module(x)) with finite differences."""
    out = module.forward(x)
    g_out = rng.normal(size=out.shape)

    def f() -> float:
        return float((module.forward(x) * g_out).sum())

    module.forward(x)
    g_in = module.backward(g_out)
    analytic = {name: p.grad.copy() for name, p in module.named_parameters().items()}
    for name, p in module.named_parameters().items():
        numeric = nn.numerical_gradient(f, p.value)
        assert_close(analytic[name], numeric, name)
    if g_in is not None:
        numeric = nn.numerical_gradient(f, x)
        assert_close(g_in, numeric, "input")


def test_dense_gradients(rng: np.random.Generator) -> None:
    layer = nn.Dense(4, 3, rng=rng)
    layer.bias.value[:] = rng.normal(size=3)
    check_module(layer, rng.normal(size=(6, 4)), rng)


def test_dense_gradients_on_3d_input(rng: np.random.Generator) -> None:
    check_module(nn.Dense(4, 3, rng=rng), rng.normal(size=(2, 5, 4)), rng)


def test_relu_and_tanh_gradients(rng: np.random.Generator) -> None:
    check_module(nn.ReLU(), away_from_zero(rng.normal(size=(5, 7))), rng)
    check_module(nn.Tanh(), rng.normal(size=(5, 7)), rng)


def test_embedding_gradients_with_repeated_ids(rng: np.random.Generator) -> None:
    emb = nn.Embedding(6, 3, rng=rng)
    idx = np.array([[0, 2, 2], [5, 0, 1]])
    check_module(emb, idx, rng)
    with pytest.raises(TypeError, match="integer indices"):
        emb.forward(np.zeros(3))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(rng: np.random.Generator, training: bool) -> None:
    bn = nn.BatchNorm(4)
    bn.weight.value[:] = rng.normal(size=4)
    bn.bias.value[:] = rng.normal(size=4)
    bn.running_mean[:] = rng.normal(size=4)
    bn.running_var[:] = rng.uniform(0.5, 2.0, size=4)
    bn.train(training)
    x = rng.normal(size=(8, 4)) * 3 + 1
    running = bn.running_mean.copy()
    check_module(bn, x, rng)
    if not training:
        np.testing.assert_array_equal(bn.running_mean, running)


def test_batchnorm_modes() -> None:
    bn = nn.BatchNorm(2, momentum=1.0)
    x = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 9.0]])
    y = bn.forward(x)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, [2.0, 5.0])
    np.testing.assert_allclose(bn.running_var, x.var(axis=0, ddof=1))
    bn.eval()
    np.testing.assert_allclose(bn.forward(x), (x - 2.0 - [0, 3]) / np.sqrt(bn.running_var + 1e-5))


def test_mlp_gradients_relu_tanh_batchnorm(rng: np.random.Generator) -> None:
    for activation, batch_norm in [("relu", False), ("tanh", False), ("tanh", True)]:
        net = nn.mlp([3, 5, 4, 2], rng=rng, activation=activation, batch_norm=batch_norm)
        x = rng.normal(size=(7, 3))
        h = x  # the finite difference must not cross a ReLU kink: pre-activations stay off 0
        for layer in net.layers:
            if isinstance(layer, nn.ReLU):
                assert np.abs(h).min() > 1e-4
            h = layer.forward(h)
        check_module(net, x, rng)


def check_loss(loss_fn, pred: np.ndarray) -> None:
    value, grad = loss_fn(pred)
    numeric = nn.numerical_gradient(lambda: loss_fn(pred)[0], pred)
    assert nn.relative_error(grad, numeric) < TOL


def test_loss_gradients(rng: np.random.Generator) -> None:
    pred = rng.normal(size=(6, 3))
    target = rng.normal(size=(6, 3))
    w = rng.uniform(0.1, 3.0, size=6)
    check_loss(lambda p: nn.mse_loss(p, target), pred)
    check_loss(lambda p: nn.mse_loss(p, target, w), pred)
    check_loss(lambda p: nn.huber_loss(p, target, delta=0.7), pred)
    check_loss(lambda p: nn.huber_loss(p, target, 0.7, w), pred)
    labels = rng.integers(0, 3, size=6)
    check_loss(lambda p: nn.softmax_cross_entropy(p, labels), pred)
    check_loss(lambda p: nn.softmax_cross_entropy(p, labels, w), pred)
    probs = nn.softmax(rng.normal(size=(6, 3)))
    check_loss(lambda p: nn.softmax_cross_entropy(p, probs), pred)
    signed = rng.normal(size=6)  # returns minus a baseline can be negative
    check_loss(lambda p: nn.weighted_log_likelihood(p, labels, signed), pred)
    check_loss(nn.softmax_entropy, pred)


def test_huber_matches_mse_inside_delta() -> None:
    pred, target = np.array([[0.1, -0.2]]), np.zeros((1, 2))
    assert nn.huber_loss(pred, target, 1.0)[0] == pytest.approx(0.5 * nn.mse_loss(pred, target)[0])


def test_gaussian_log_likelihood_gradients(rng: np.random.Generator) -> None:
    a = rng.normal(size=(5, 2))
    mean = rng.normal(size=(5, 2))
    log_std = rng.uniform(-1, 1, size=(5, 2))
    w = rng.normal(size=5)
    loss = lambda: nn.gaussian_log_likelihood_loss(a, mean, log_std, w)[0]  # noqa: E731
    _, g_mean, g_ls = nn.gaussian_log_likelihood_loss(a, mean, log_std, w)
    assert nn.relative_error(g_mean, nn.numerical_gradient(loss, mean)) < TOL
    assert nn.relative_error(g_ls, nn.numerical_gradient(loss, log_std)) < TOL
    shared = rng.uniform(-1, 1, size=2)  # one log-std per dimension, broadcast over rows
    loss2 = lambda: nn.gaussian_log_likelihood_loss(a, mean, shared, w)[0]  # noqa: E731
    _, _, g_shared = nn.gaussian_log_likelihood_loss(a, mean, shared, w)
    assert nn.relative_error(g_shared, nn.numerical_gradient(loss2, shared)) < TOL
    clamped = np.array([-7.0, 3.0])
    _, _, g_clamped = nn.gaussian_log_likelihood_loss(a, mean, clamped, w)
    np.testing.assert_array_equal(g_clamped, 0.0)
    # the log-density itself agrees with the closed form
    sd = np.exp(log_std)
    ref = -(w * (-0.5 * ((a - mean) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))).sum(1)).mean()
    assert loss() == pytest.approx(ref)


def test_log_softmax_is_stable() -> None:
    z = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]])
    out = nn.log_softmax(z)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0, :2], [0.0, -1000.0])
    np.testing.assert_allclose(nn.softmax(z).sum(axis=1), 1.0)
    np.testing.assert_allclose(nn.softmax(z)[1], 1 / 3)
    # rows far below the global maximum take the row-wise path and stay exact
    rows = np.array([[0.0, 1.0, 2.0], [-5000.0, -5001.0, -5002.0]])
    ref = np.array([0.0, 1.0, 2.0]) - np.log(np.exp([0.0, 1.0, 2.0]).sum())
    np.testing.assert_allclose(nn.log_softmax(rows), [ref, ref[::-1]], rtol=1e-12)
    np.testing.assert_allclose(nn.softmax(rows), np.exp([ref, ref[::-1]]), rtol=1e-12)
    np.testing.assert_allclose(nn.log_softmax(z[0]), out[0])  # 1-D input


def test_composed_network_and_loss_gradient(rng: np.random.Generator) -> None:
    """End to end: embedding -> MLP -> cross-entropy, every parameter checked."""
    emb = nn.Embedding(5, 4, rng=rng)
    net = nn.mlp([4, 6, 3], rng=rng, activation="tanh")
    idx = np.array([0, 3, 3, 1])
    labels = np.array([2, 0, 1, 1])

    def loss() -> float:
        return nn.softmax_cross_entropy(net.forward(emb.forward(idx)), labels)[0]

    _, g = nn.softmax_cross_entropy(net.forward(emb.forward(idx)), labels)
    emb.backward(net.backward(g))
    for p in net.parameters() + emb.parameters():
        assert nn.relative_error(p.grad, nn.numerical_gradient(loss, p.value)) < TOL


def test_adam_first_steps_match_closed_form() -> None:
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = nn.Adam([p], lr=0.1)
    p.grad = np.array([0.5, -3.0])
    opt.step()  # the first bias-corrected step is lr * sign(g) (up to eps)
    np.testing.assert_allclose(p.value, [0.9, -1.9], atol=1e-7)
    p.grad = np.array([0.5, 1.0])
    m = 0.9 * 0.1 * np.array([0.5, -3.0]) + 0.1 * p.grad
    v = 0.999 * 0.001 * np.array([0.25, 9.0]) + 0.001 * p.grad**2
    expected = p.value - 0.1 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    opt.step()
    np.testing.assert_allclose(p.value, expected, rtol=1e-12)


def test_adam_fits_a_regression(rng: np.random.Generator) -> None:
    x = rng.normal(size=(256, 3))
    y = np.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    net = nn.mlp([3, 32, 1], rng=rng, activation="tanh")
    opt = nn.Adam(net.parameters(), lr=1e-2)
    first = nn.mse_loss(net.forward(x), y)[0]
    for _ in range(500):
        _, g = nn.mse_loss(net.forward(x), y)
        net.backward(g)
        opt.step()
    assert nn.mse_loss(net.forward(x), y)[0] < 0.1 * first


def test_clip_grad_norm() -> None:
    a, b = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([4.0])
    assert nn.clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.r_[a.grad, b.grad], [0.6, 0.0, 0.8])
    assert nn.clip_grad_norm([a, b], 10.0) == pytest.approx(1.0)
    np.testing.assert_allclose(np.r_[a.grad, b.grad], [0.6, 0.0, 0.8])


def test_save_load_round_trip(tmp_path, rng: np.random.Generator) -> None:
    net = nn.mlp([3, 4, 2], rng=rng, activation="tanh", batch_norm=True)
    x = rng.normal(size=(5, 3))
    net.forward(x)  # moves the running statistics
    net.eval()
    nn.save_module(net, tmp_path, "policy")
    assert json.loads((tmp_path / "policy.json").read_text())["type"] == "Sequential"
    loaded = nn.load_module(tmp_path, "policy")
    loaded.eval()
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))
    with np.load(tmp_path / "policy.npz", allow_pickle=False) as data:
        assert "1.running_mean" in data.files


def test_load_rejects_mismatched_arrays(tmp_path, rng: np.random.Generator) -> None:
    nn.save_module(nn.mlp([3, 4, 2], rng=rng), tmp_path, "a")
    config = json.loads((tmp_path / "a.json").read_text())
    config["layers"][0]["n_out"] = 5
    (tmp_path / "a.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="shape"):
        nn.load_module(tmp_path, "a")
    (tmp_path / "a.json").write_text(json.dumps({"type": "Conv2d"}))
    with pytest.raises(ArtifactError, match="Layer type must be one of"):
        nn.load_module(tmp_path, "a")
