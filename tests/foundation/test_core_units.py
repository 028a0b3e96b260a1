"""Pure-logic tests of the shared core: config errors, URLs, listen addresses."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vigil.config import ConfigError, StrictModel, key_path, load_config, parse_model
from vigil.db import normalize_url, redact_url
from vigil.service import parse_listen_address


class Inner(StrictModel):
    port: int


class Outer(StrictModel):
    items: list[Inner]
    password: str = ""


def test_key_path_renders_indexes() -> None:
    assert key_path(("targets", 0, "cors", "origins", 2)) == "targets[0].cors.origins[2]"


def test_parse_model_error_names_path_not_value() -> None:
    with pytest.raises(ConfigError) as err:
        parse_model(Outer, {"items": [{"port": 1}, {"port": "s3cr3t-value"}]}, "f.yml")
    text = str(err.value)
    assert text.startswith("f.yml: items[1].port: ")
    assert "s3cr3t-value" not in text


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"items\[0\]\.prot"):
        parse_model(Outer, {"items": [{"port": 1, "prot": 2}]})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(Outer, tmp_path / "nope.yml")


def test_psycopg2_is_pinned_and_passwords_redacted() -> None:
    assert normalize_url("postgresql://u@h/d").drivername == "postgresql+psycopg2"
    assert normalize_url("postgres://u@h/d").drivername == "postgresql+psycopg2"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    assert "hunter2" not in redact_url("postgresql://u:hunter2@h/d")
    assert "hunter2" not in redact_url("not a url hunter2")


def test_listen_address() -> None:
    assert parse_listen_address("127.0.0.1:9115") == ("127.0.0.1", 9115)
    assert parse_listen_address(":80") == ("0.0.0.0", 80)
    assert parse_listen_address("[::1]:9") == ("::1", 9)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_listen_address("localhost")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_listen_address("h:99999")


def test_every_error_is_listed_with_its_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_model(Outer, {"items": [{"port": "x"}, {"port": "y"}]}, "f.yml")
    assert "items[0].port" in str(err.value) and "items[1].port" in str(err.value)
