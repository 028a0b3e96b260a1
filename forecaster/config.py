"""The forecaster's configuration file: Prometheus connection and the forecasts to run.

`vigil check-config FILE` validates it through `load_config`. Durations are Prometheus-style
strings (`30s`, `5m`, `2h`, `14d`, `1w`) and are stored as seconds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from vigil.config import ConfigError, StrictModel
from vigil.config import load_config as _load

__all__ = [
    "AuthConfig",
    "ForecastConfig",
    "ForecasterConfig",
    "PrometheusConfig",
    "SeasonalityConfig",
    "load_config",
    "parse_duration",
    "pick_forecast",
]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_:.-]*$")


def parse_duration(value: object) -> float:
    """Parse `1h30m`, `5m`, `14d` (or a plain number of seconds) into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 5m or 14d")  # noqa: TRY004 - pydantic
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("duration must be positive")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration like 5m or 14d")  # noqa: TRY004 - pydantic
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or total <= 0:
        raise ValueError("expected a duration like 30s, 5m, 2h, 14d or 1w")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]


class AuthConfig(StrictModel):
    """Bearer token or basic auth for the Prometheus HTTP API (secrets come from files/env)."""

    bearer_token_file: Path | None = None
    bearer_token_env: str | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> AuthConfig:
        bearer = self.bearer_token_file is not None or self.bearer_token_env is not None
        basic = self.username is not None
        if bearer and basic:
            raise ValueError("set either a bearer token or basic auth (username), not both")
        if (self.password_file or self.password_env) and not basic:
            raise ValueError("a password needs a username")
        return self

    def headers_and_auth(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """Resolve the secret (read now, never logged) into request headers or basic auth."""
        if self.bearer_token_file is not None:
            return {"Authorization": f"Bearer {self.bearer_token_file.read_text().strip()}"}, None
        if self.bearer_token_env is not None:
            return {"Authorization": f"Bearer {os.environ.get(self.bearer_token_env, '')}"}, None
        if self.username is not None:
            password = ""
            if self.password_file is not None:
                password = self.password_file.read_text().strip()
            elif self.password_env is not None:
                password = os.environ.get(self.password_env, "")
            return {}, (self.username, password)
        return {}, None


class PrometheusConfig(StrictModel):
    """Where to read series from."""

    url: str = "http://127.0.0.1:9090"
    timeout: Duration = 30.0
    retries: int = Field(default=3, ge=0, le=10)
    backoff_max: Duration = 10.0
    auth: AuthConfig = Field(default_factory=AuthConfig)

    @model_validator(mode="after")
    def _url(self) -> PrometheusConfig:
        if not re.match(r"^https?://[^\s/]+", self.url):
            raise ValueError("url must start with http:// or https://")
        return self


class SeasonalityConfig(StrictModel):
    """Which Prophet seasonalities to fit; `auto` lets Prophet decide from the history length."""

    daily: bool | Literal["auto"] = True
    weekly: bool | Literal["auto"] = "auto"
    yearly: bool | Literal["auto"] = False


class ThresholdConfig(StrictModel):
    """A level the forecast band must not cross; `above` means crossing upwards is bad.

    Either a fixed `value`, or a PromQL `query` read each cycle (e.g. a limit the target
    exports), matched to each series on the labels they share; `value` is then the fallback.
    """

    value: float | None = None
    query: str | None = None
    direction: Literal["above", "below"] = "above"

    @model_validator(mode="after")
    def _one(self) -> ThresholdConfig:
        if self.value is None and not (self.query or "").strip():
            raise ValueError("set a threshold value or a query")
        return self


class ForecastConfig(StrictModel):
    """One forecast: a PromQL query (many series allowed) and how to model each series."""

    name: str
    query: str
    history: Duration = 7 * 86400.0
    step: Duration = 300.0
    horizon: Duration = 6 * 3600.0
    threshold: ThresholdConfig | None = None
    seasonality: SeasonalityConfig = Field(default_factory=SeasonalityConfig)
    min_history: Duration = 3600.0
    retrain_interval: Duration = 3600.0
    interval_width: float = Field(default=0.95, gt=0.5, lt=1.0)
    # anomaly persistence: flag when `anomaly_points` of the last `anomaly_window` points are out;
    # the anomaly defaults are committed from bench/tune_nab.py (docs/backtest.md)
    anomaly_points: int = Field(default=1, ge=1)
    anomaly_window: int = Field(default=1, ge=1)
    # which side of the band counts: `above` for capacity forecasts, where only growth hurts
    anomaly_direction: Literal["both", "above", "below"] = "both"
    # coverage of the band a point is judged against (the published band keeps
    # interval_width); committed from the NAB tuning protocol in docs/backtest.md
    anomaly_coverage: float = Field(default=0.999, gt=0.5, lt=1.0)
    # ... and never narrower than this many robust standard deviations (1.4826 * MAD) of the
    # same residuals; 0 turns the floor off
    anomaly_floor: float = Field(default=7.0, ge=0.0, le=1000.0)
    # the flag stays up this many points after the persistence rule last held
    anomaly_hold: int = Field(default=6, ge=0, le=100_000)
    # after the flag rises it cannot rise anew for this many points (it may still stay up):
    # a departure that returns within that time is the same incident, not a new one
    anomaly_refractory: int = Field(default=432, ge=0, le=100_000)
    # the band is calibrated on this many of the series' latest out-of-sample residuals, and
    # the flag stays down until at least `calibration_min_points` of them are known
    calibration_window: int = Field(default=576, ge=1, le=100_000)
    calibration_min_points: int = Field(default=40, ge=1)
    max_fit_points: int = Field(default=1500, ge=50)
    counter: Literal["auto", "never"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> ForecastConfig:
        if not _NAME.fullmatch(self.name):
            raise ValueError("name must match [a-zA-Z_][a-zA-Z0-9_:.-]*")
        if not self.query.strip():
            raise ValueError("query must not be empty")
        if self.history <= self.step * 2:
            raise ValueError("history must span more than two steps")
        if self.min_history > self.history:
            raise ValueError("min_history must not exceed history")
        if self.horizon < self.step:
            raise ValueError("horizon must be at least one step")
        if self.anomaly_points > self.anomaly_window:
            raise ValueError("anomaly_points must not exceed anomaly_window")
        if self.calibration_min_points > self.calibration_window:
            raise ValueError("calibration_min_points must not exceed calibration_window")
        return self


class ForecasterConfig(StrictModel):
    """The whole file: `prometheus:`, `interval:` and a list of `forecasts:`."""

    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    interval: Duration = 60.0
    workers: int = Field(default=2, ge=1, le=64)
    forecasts: list[ForecastConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ForecasterConfig:
        seen: set[str] = set()
        for forecast in self.forecasts:
            if forecast.name in seen:
                raise ValueError(f"duplicate forecast name {forecast.name!r}")
            seen.add(forecast.name)
        return self


def load_config(path: str | Path) -> ForecasterConfig:
    """Load and validate a forecaster config file; raise ConfigError naming the key path."""
    config = _load(ForecasterConfig, path)
    for i, forecast in enumerate(config.forecasts):
        if forecast.history / forecast.step > 200_000:
            raise ConfigError(path, f"forecasts[{i}].history",
                              "history/step exceeds 200000 points per series")
    return config


def pick_forecast(config: ForecasterConfig, name: str | None, path: str | Path) -> ForecastConfig:
    """The forecast called `name`, or the only one when `name` is None (else ConfigError)."""
    chosen = [f for f in config.forecasts if name in (None, f.name)]
    if name is None and len(chosen) > 1:
        raise ConfigError(path, "forecasts",
                          "the config has several forecasts: pick one with --forecast NAME")
    if not chosen:
        raise ConfigError(path, "forecasts", f"no forecast named {name!r}")
    return chosen[0]
