"""Fitting one series with Prophet: a warm start must never turn a flat series into nonsense."""

from __future__ import annotations

import numpy as np
from vigil.forecaster.model import FitRequest, fit_series

# resident memory of the demo target in 128 KiB units, one sample a second, as the control
# run of `vigil scenarios` read it: a warm-up, then flat
PAGES = [501, 504, 504, 510, 512, 513, 515, 515, 516, 517, 517, 517, 518, 519, 519, 519, 519,
         519, 520, 520, 520, 521] + [522] * 24
FLAT = 522 * 131072.0


def _request(n: int, init: dict | None = None) -> FitRequest:
    ts = 1.79e9 + np.arange(float(n))
    vs = np.array(PAGES[:n], dtype=float) * 131072.0
    return FitRequest("memory", {}, ts, vs, 1.0, 360.0, daily=False, weekly=False, init=init)


def test_a_warm_start_from_an_exact_fit_falls_back_to_a_cold_fit() -> None:
    first = fit_series(_request(31))
    assert not first.error
    # the changepoints fit 31 points exactly: sigma_obs ~ 1e-16, a point L-BFGS diverged
    # from (yhat of 5e25 bytes here, of 5e21 and a threshold ETA of 0 in that control run)
    second = fit_series(_request(46, first.params))
    assert not second.error
    assert np.all(np.abs(second.yhat - FLAT) < 1e6), second.yhat[:3]
    assert np.all(second.upper - second.lower < 1e6)
