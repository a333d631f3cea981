"""Off-policy estimators for single-action logs, and the :class:`Estimate` every estimator returns.

This module gathers the public names of four modules, so that ``from simkit.validation.ope import
ips`` keeps working:

- :mod:`.ope_kernel`: :class:`Estimate`, :func:`default_min_ess`, and the input checks, bootstrap and
  options every estimator is built on (the conventions are stated there);
- :mod:`.ope_bandit`: :func:`replay`, :func:`ips`, :func:`snips`, :func:`dm`, :func:`dr`, :func:`sndr`;
- :mod:`.ope_tuned`: :func:`switch_dr`, :func:`dr_os`, :func:`sg_ips`, :func:`sg_dr`;
- :mod:`.ope_crossfit`: :func:`cross_fit_predict`, out-of-fold reward models for the DR family.

Slate estimators live in :mod:`simkit.validation.ope_slate` and session estimators in
:mod:`simkit.validation.ope_sequential`.

Examples
--------
>>> from simkit.validation.ope import ips, snips
>>> r, pi, p0 = [1.0, 0.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.25], [0.5, 0.25, 0.5, 0.25]
>>> ips(r, pi, p0, n_bootstrap=0).value, snips(r, pi, p0, n_bootstrap=0).value
(0.5, 0.4)
"""

from __future__ import annotations

from simkit.validation.ope_bandit import dm, dr, ips, replay, sndr, snips
from simkit.validation.ope_crossfit import cross_fit_predict
from simkit.validation.ope_kernel import Estimate, default_min_ess
from simkit.validation.ope_tuned import dr_os, sg_dr, sg_ips, switch_dr

__all__ = [
    "Estimate",
    "cross_fit_predict",
    "default_min_ess",
    "dm",
    "dr",
    "dr_os",
    "ips",
    "replay",
    "sg_dr",
    "sg_ips",
    "sndr",
    "snips",
    "switch_dr",
]
