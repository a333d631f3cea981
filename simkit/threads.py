"""Thread limits for numpy's BLAS, written once for fitting, environments and agents.

simkit multiplies many small matrices (a batch of users' interest vectors by a few candidates'
embeddings, a small MLP layer) next to LightGBM, whose OpenMP threads use every core. With more
than one BLAS thread, each small product wakes threads that then spin against LightGBM's on the
same cores; on 2 cores this made such products tens of times slower (see ``benchmarks/env.py`` and
``benchmarks/agents.py``). The limit is scoped to a ``with`` block, never set for the process, so a
user's own numpy work keeps its threads.

References
----------
.. [1] threadpoolctl: "Python helpers to limit the number of threads used in native libraries."
   https://github.com/joblib/threadpoolctl
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["blas_threads"]

_CONTROLLER: Any = None  # threadpoolctl.ThreadpoolController, made on first use; False without it


def _controller() -> Any:
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _CONTROLLER = False
        else:
            _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextmanager
def blas_threads(n: int | None = 1) -> Iterator[None]:
    """Limit numpy's BLAS to ``n`` threads inside the ``with`` block.

    Parameters
    ----------
    n : int or None, default 1
        Threads the BLAS libraries may use inside the block; None leaves them alone (for a caller,
        such as a benchmark, that sets the count itself).

    Yields
    ------
    None

    Raises
    ------
    ValueError
        ``n`` below 1.

    Examples
    --------
    >>> import numpy as np
    >>> with blas_threads(1):
    ...     product = np.ones((64, 16)) @ np.ones((16, 8))
    >>> product.shape
    (64, 8)
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 or None; got {n}")
    controller = _controller() if n is not None else False
    if controller is False:
        yield
        return
    with controller.limit(limits=n, user_api="blas"):  # type: ignore[union-attr]
        yield
