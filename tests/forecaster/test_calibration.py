"""The band is calibrated on out-of-sample residuals before the anomaly flag may rise.

Pure logic on synthetic arrays: a fit whose in-sample band is far narrower than its real
error (what Prophet's 25 changepoints do to a short history) must not flag ordinary noise,
while a level shift or a leak after calibration still must, within the persistence rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from vigil.forecaster.config import ForecastConfig
from vigil.forecaster.engine import Engine, Ring, SeriesState
from vigil.forecaster.model import FitResult, calibrate, conformal_halfwidth, is_outside, widen_at

STEP = 60.0
FIT_AT = 0.0


def _overfit_fit(horizon_points: int = 2000, half: float = 0.05, span: float = 1e7
                 ) -> FitResult:
    """A flat forecast at 100 whose in-sample band is +-half (an overfit history)."""
    grid = FIT_AT + STEP * np.arange(horizon_points + 1)
    yhat = np.full(len(grid), 100.0)
    widen = np.sqrt(1.0 + (grid - FIT_AT) / span)
    return FitResult("f", {}, FIT_AT, grid, yhat, yhat - half * widen, yhat + half * widen,
                     span=span)


def _config(**extra: object) -> ForecastConfig:
    return ForecastConfig.model_validate({"name": "f", "query": "up", "step": "1m", **extra})


def _replay(values: np.ndarray, cfg: ForecastConfig, result: FitResult | None = None
            ) -> tuple[list[bool], SeriesState]:
    """Feed the points one cycle at a time; return the flag after each point."""
    st = SeriesState.for_config({}, cfg, result=result or _overfit_fit(),
                                evaluated_until=FIT_AT)
    ts = FIT_AT + STEP * np.arange(1, len(values) + 1)
    flags = []
    for i in range(len(values)):
        Engine._evaluate(st, ts[: i + 1], values[: i + 1], cfg)
        flags.append(st.anomaly)
    return flags, st


def _noise(n: int, seed: int, sd: float = 1.0, phi: float = 0.5) -> np.ndarray:
    """AR(1) noise with marginal standard deviation sd: errors of real series are correlated."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    out = np.empty(n)
    prev = 0.0
    for i in range(n):
        prev = phi * prev + e[i]
        out[i] = prev
    return out


def test_conformal_halfwidth_uses_the_finite_sample_rank() -> None:
    r = np.arange(1.0, 100.0) * np.where(np.arange(99) % 2, 1.0, -1.0)  # |r| = 1..99, both signs
    # rank ceil(100 * 0.95) = 95 of the sorted |residuals|; order must not matter
    assert conformal_halfwidth(np.random.default_rng(0).permutation(r), 0.95) == 95.0
    assert conformal_halfwidth(np.array([-1.0, 3.0]), 0.95) == 3.0  # too few: the largest
    assert conformal_halfwidth(np.array([]), 0.95) is None


def test_calibrate_widens_both_sides_with_the_horizon_and_never_narrows() -> None:
    res = _overfit_fit(horizon_points=60, half=0.05, span=3600.0)
    cal = calibrate(res, 2.0)
    w = widen_at(res, res.grid)
    assert w[0] == 1.0 and w[-1] == pytest.approx(np.sqrt(2.0))
    assert np.allclose(cal.lower, 100.0 - 2.0 * w) and np.allclose(cal.upper, 100.0 + 2.0 * w)
    # an out-of-sample error inside the in-sample band keeps the fit's band
    same = calibrate(res, 0.01)
    assert np.array_equal(same.lower, res.lower) and np.array_equal(same.upper, res.upper)


def test_one_sided_outside() -> None:
    assert is_outside(5.0, 0.0, 1.0) and is_outside(-5.0, 0.0, 1.0)
    assert is_outside(5.0, 0.0, 1.0, "above") and not is_outside(-5.0, 0.0, 1.0, "above")
    assert is_outside(-5.0, 0.0, 1.0, "below") and not is_outside(5.0, 0.0, 1.0, "below")


def _longest_run(flags: list[bool]) -> int:
    best = cur = 0
    for flag in flags:
        cur = cur + 1 if flag else 0
        best = max(best, cur)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_overfit_band_with_realistic_noise_does_not_flag(seed: int) -> None:
    # the in-sample band is +-0.05 while the real error is ~N(0, 1): almost every point is
    # outside it, which used to raise the flag on the third new point and keep it up
    cfg = _config()
    flags, st = _replay(100.0 + _noise(600, seed), cfg)
    # correlated noise still crosses a 95% band 3 times in 5 now and then, but only for a
    # few points: never the sustained flag that ForecastAnomalySustained waits for
    assert sum(flags) <= 0.05 * len(flags)  # the old in-sample band: nearly all of them
    assert _longest_run(flags) <= 2 * cfg.anomaly_window
    assert len(st.residuals) > 500
    assert st.halfwidth is not None and 1.5 < st.halfwidth < 2.5  # the series' own ~95% error


def test_white_noise_rarely_flags_and_never_for_long() -> None:
    rng = np.random.default_rng(11)
    cfg = _config()
    flags, _ = _replay(100.0 + rng.normal(0.0, 1.0, 2000), cfg)
    # two points in three beyond a 99% band: about 3 in 10,000 for independent errors
    assert sum(flags) <= 0.01 * len(flags)
    assert _longest_run(flags) <= 2 * cfg.anomaly_window
    # the 3-of-5 rule at the published 95% band never flags this noise
    strict = _config(anomaly_coverage=0.95, anomaly_points=3, anomaly_window=5)
    assert not any(_replay(100.0 + rng.normal(0.0, 1.0, 600), strict)[0])


def test_the_flag_waits_for_the_minimum_of_out_of_sample_residuals() -> None:
    cfg = _config(calibration_min_points=40)
    values = np.full(60, 150.0)  # wildly off the forecast from the first point on
    flags, st = _replay(values, cfg)
    assert not any(flags[:40])
    # after the minimum the band has learnt that the error is +50: still no flag
    assert not any(flags)
    assert st.halfwidth == pytest.approx(50.0, rel=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_level_shift_after_calibration_is_flagged_and_stays_flagged(seed: int) -> None:
    cfg = _config()
    values = 100.0 + _noise(300, seed)
    values[200:] += 12.0  # well beyond the band's floor of anomaly_floor robust sd
    flags, _ = _replay(values, cfg)
    assert _longest_run(flags[:200]) <= 2 * cfg.anomaly_window
    # the shifted points never calibrate the band (nor its floor), so the flag rises on the
    # first of them and stays up until a refit takes the shift in
    assert not any(flags[195:200]) and all(flags[200:])


@pytest.mark.parametrize(("points", "window"), [(2, 3), (3, 5)])
def test_level_shift_in_white_noise_is_flagged_on_its_nth_point(points: int, window: int
                                                                 ) -> None:
    values = 100.0 + np.random.default_rng(12).normal(0.0, 1.0, 300)
    values[200:] += 10.0  # beyond the 6.5 robust sd floor, so every shifted point is out
    flags, st = _replay(values, _config(anomaly_points=points, anomaly_window=window))
    first = 200 + points - 1  # on the points-th shifted point
    assert not any(flags[195:first]) and all(flags[first:])
    assert st.halfwidth is not None and st.halfwidth < 3.0  # the shift did not widen it


def test_a_leak_is_flagged_and_only_growth_counts_for_direction_above() -> None:
    noise = _noise(400, 7)
    leak = 100.0 + noise
    leak[200:] += 0.1 * np.arange(200)  # grows 0.1 a step: 6 sigma after 60 steps
    flags, _ = _replay(leak, _config(anomaly_direction="above"))
    assert not any(flags[:200]) and any(flags[200:])
    drop = 100.0 + noise
    drop[200:] -= 8.0  # a restart: memory falls, then sits lower
    assert not any(_replay(drop, _config(anomaly_direction="above"))[0])
    assert any(_replay(drop, _config(anomaly_direction="both"))[0])
    assert any(_replay(drop, _config(anomaly_direction="below"))[0])


def test_the_calibration_window_keeps_the_latest_residuals() -> None:
    ring = Ring(3)
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        ring.append(value)
    assert len(ring) == 3 and sorted(ring.values().tolist()) == [3.0, 4.0, 5.0]
    cfg = _config(calibration_window=50, calibration_min_points=40)
    _, st = _replay(100.0 + _noise(200, 3), cfg)
    assert len(st.residuals) == 50


def test_the_hold_keeps_the_flag_up_after_the_rule_last_held() -> None:
    values = 100.0 + np.random.default_rng(13).normal(0.0, 1.0, 300)
    values[200:203] += 12.0  # three shifted points (beyond the 7 robust sd floor), then back
    rule = {"anomaly_points": 2, "anomaly_window": 3}
    held, _ = _replay(values, _config(anomaly_hold=10, **rule))
    plain, _ = _replay(values, _config(anomaly_hold=0, **rule))
    last = max(i for i in range(len(plain)) if plain[i])
    assert 200 <= last <= 203
    assert all(held[201:last + 11]) and not held[last + 11]
    assert not any(plain[last + 1:last + 11])


def test_the_refractory_period_blocks_a_new_rise_but_never_holds_the_flag() -> None:
    values = 100.0 + np.random.default_rng(13).normal(0.0, 1.0, 400)
    for at in (200, 230, 320):
        values[at:at + 2] += 12.0  # three short departures: the second within 72 points
    rule = {"anomaly_points": 2, "anomaly_window": 3, "anomaly_hold": 0}
    flags, _ = _replay(values, _config(anomaly_refractory=72, **rule))
    plain, _ = _replay(values, _config(anomaly_refractory=0, **rule))
    rises = [i for i in range(1, len(flags)) if flags[i] and not flags[i - 1]]
    plain_rises = [i for i in range(1, len(plain)) if plain[i] and not plain[i - 1]]
    assert {201, 231, 321} <= set(plain_rises)
    assert 201 in rises and 321 in rises and 231 not in rises
    assert not any(flags[225:235])  # blocked, and never held up by the refractory period
    assert sum(flags) <= sum(plain)
