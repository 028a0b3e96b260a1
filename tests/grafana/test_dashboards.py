"""The dashboards as code: deterministic JSON, required variables, parsable PromQL, known metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
from grafana_foundation_sdk.models import units
from vigil.grafana import cli, predictions
from vigil.grafana.render import DASHBOARDS, DASHBOARDS_DIR, iter_panels, iter_queries, render_all

from tests.grafana.catalogue import expand_promql, known_metrics, metric_names

RENDERED = {name: json.loads(text) for name, text in render_all().items()}
ALL_QUERIES = [q for board in RENDERED.values() for q in iter_queries(board)]
PROMQL = [q for q in ALL_QUERIES if q.kind == "promql"]
VALID_UNITS = {v for k, v in vars(units).items() if not k.startswith("_") and isinstance(v, str)}


def _id(query: object) -> str:
    return f"{query.dashboard_uid}:{query.panel_title}:{query.ref_id}"  # type: ignore[attr-defined]


def test_committed_json_equals_a_fresh_build() -> None:
    for name, text in render_all().items():
        committed = DASHBOARDS_DIR / name
        assert committed.exists(), f"{committed} missing: run `vigil dashboards build`"
        assert committed.read_text(encoding="utf-8") == text, (
            f"{committed} is stale: run `vigil dashboards build` and commit the result")
    assert sorted(p.name for p in DASHBOARDS_DIR.glob("*.json")) == sorted(DASHBOARDS)


def test_build_is_deterministic_and_sorted() -> None:
    first, second = render_all(), render_all()
    assert first == second
    for name, text in first.items():
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2,
                                  ensure_ascii=False) + "\n", name


def test_every_dashboard_has_stable_uid_and_the_variables() -> None:
    uids = set()
    for name, board in RENDERED.items():
        assert re.fullmatch(r"vigil-[a-z-]+", board["uid"]), name
        uids.add(board["uid"])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["target"]["type"] == "query"
        assert "label_values(" in variables["target"]["query"]["query"]
        assert "vigil" in board["tags"]
    assert len(uids) == len(RENDERED)


def test_panel_ids_unique_and_layout_inside_the_grid() -> None:
    for name, board in RENDERED.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, (name, panel["title"])


def test_every_panel_has_a_query_a_description_and_a_known_unit() -> None:
    for name, board in RENDERED.items():
        for panel in iter_panels(board):
            assert panel["targets"], (name, panel["title"])
            assert panel.get("description"), (name, panel["title"])
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit in VALID_UNITS, (name, panel["title"], unit)


def test_targets_use_the_dashboard_datasource_variables() -> None:
    for board in RENDERED.values():
        for panel in iter_panels(board):
            for target in panel["targets"]:
                uid = target["datasource"]["uid"]
                expected = "${datasource}" if "expr" in target else "${incidents_db}"
                assert uid == expected, (board["uid"], panel["title"])


@pytest.mark.parametrize("query", PROMQL, ids=_id)
def test_promql_parses(query: object) -> None:
    promql_parser.parse(expand_promql(query.text))  # type: ignore[attr-defined]


def test_rate_windows_use_rate_interval_or_a_fixed_range() -> None:
    # rate()/increase() over a panel's own window must follow $__rate_interval (or $__range
    # for totals over the dashboard's range); fixed windows only inside recording rules and
    # in the forecaster's own queries, which the forecast panels plot as they are.
    forecast_queries = {spec.query for spec in predictions.load_forecasts()}
    for query in PROMQL:
        if query.text in forecast_queries:
            continue
        for window in re.findall(r"(?:rate|increase)\([^\[]*\[([^\]]+)\]", query.text):
            assert window in ("$__rate_interval", "$__range"), (_id(query), window)


def test_the_target_variable_query_parses() -> None:
    for board in RENDERED.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        inner = re.fullmatch(r"label_values\((.*), *\w+\)", variables["target"]["query"]["query"])
        assert inner is not None
        promql_parser.parse(inner.group(1))


def test_every_metric_is_exported_or_recorded() -> None:
    known = known_metrics()
    unknown = {(_id(q), name) for q in PROMQL for name in metric_names(q.text)
               if name not in known}
    assert not unknown, f"panels select metrics nobody exports or records: {sorted(unknown)}"


def test_the_catalogue_check_can_fail() -> None:
    assert "vigil_no_such_metric" not in known_metrics()
    assert metric_names('sum(rate(vigil_no_such_metric_total{target="$target"}[$__rate_interval]))'
                        ) == {"vigil_no_such_metric_total"}


def test_forecast_panels_follow_the_forecaster_config(tmp_path: Path) -> None:
    config = tmp_path / "forecasts.yml"
    config.write_text(
        "forecasts:\n"
        "  - name: mem\n"
        "    query: process_resident_memory_bytes{job=\"demo\"}\n"
        "    threshold: {value: 1000, direction: above}\n")
    board = predictions.dashboard(config)
    titles = [p["title"] for p in iter_panels(board)]
    assert "mem: actual against forecast" in titles
    panel = next(p for p in iter_panels(board) if p["title"] == "mem: actual against forecast")
    exprs = [t["expr"] for t in panel["targets"]]
    assert exprs[0] == 'process_resident_memory_bytes{job="demo"}'
    assert 'vigil_forecast{forecast="mem",bound="yhat_upper"}' in exprs
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == 1000


def test_cli_build_check_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["check", "--output-dir", str(out)]) == 1
    assert cli.main(["build", "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(DASHBOARDS)
    assert cli.main(["check", "--output-dir", str(out)]) == 0
    (out / "health.json").write_text("{}\n")
    assert cli.main(["check", "--output-dir", str(out)]) == 1
    capsys.readouterr()
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "vigil-incidents" in listing and "panels" in listing


def test_cli_build_refuses_a_bad_forecasts_file(tmp_path: Path) -> None:
    from vigil.config import ConfigError

    bad = tmp_path / "forecasts.yml"
    bad.write_text("forecasts:\n  - name: x\n")  # no query
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as excinfo:
        cli.main(["build", "--output-dir", str(out), "--forecasts.file", str(bad)])
    assert "query" in str(excinfo.value)
    assert not out.exists() or not list(out.iterdir()), "nothing is written"
    with pytest.raises(ConfigError):
        cli.main(["build", "--output-dir", str(out), "--forecasts.file", str(tmp_path / "no")])


def test_json_survives_the_sdk_dashboard_model_unchanged() -> None:
    # No Grafana server here: the SDK's schema-derived model is the closest check that the
    # JSON has the dashboard schema's shape (a misspelt or mistyped field would not survive).
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    for name, board in RENDERED.items():
        model = Dashboard.from_json(board)
        assert json.loads(json.dumps(model, cls=JSONEncoder)) == board, name
