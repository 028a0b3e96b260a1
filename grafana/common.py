"""Shared defaults for every Vigil dashboard: datasources, variables, panel helpers.

One place decides how a panel looks (sizes, legends, units), so each dashboard module only
says what it shows. Panels are returned as builders; `.build()` happens in `finalize`.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from grafana_foundation_sdk.builders import bargauge as bargauge_b
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as statetimeline_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import timeseries as timeseries_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import units

__all__ = [
    "POSTGRES_DS",
    "POSTGRES_TYPE",
    "PROMETHEUS_DS",
    "PROMETHEUS_TYPE",
    "TARGET_JOB",
    "TARGET_LABEL",
    "SqlQuery",
    "SqlQueryBuilder",
    "assemble",
    "bar_gauge",
    "finalize",
    "new_dashboard",
    "prom",
    "row",
    "sql",
    "stat",
    "state_timeline",
    "table",
    "thresholds",
    "timeseries",
    "transformation",
    "units",
    "value_map",
]

# Plugin ids. Grafana >= 10.3 names the core PostgreSQL plugin "grafana-postgresql-datasource".
PROMETHEUS_TYPE = "prometheus"
POSTGRES_TYPE = "grafana-postgresql-datasource"

# Provisioned datasource uids (grafana/provisioning/datasources/vigil.yml); the variables
# default to them, and a user can switch to another datasource of the same type.
PROMETHEUS_UID = "vigil-prometheus"
POSTGRES_UID = "vigil-postgres"

PROMETHEUS_DS = dash_m.DataSourceRef(type_val=PROMETHEUS_TYPE, uid="${datasource}")
POSTGRES_DS = dash_m.DataSourceRef(type_val=POSTGRES_TYPE, uid="${incidents_db}")

# The watched service is scraped under a Prometheus job whose name equals the exporter's
# target name (the demo's is "demo"), so one `$target` filters both kinds of series.
TARGET_JOB = 'job="$target"'
TARGET_LABEL = 'target="$target"'

TAGS = ["vigil"]


# --- queries ---------------------------------------------------------------------------------

def prom(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A",
         table_format: bool = False) -> prom_b.Dataquery:
    """A PromQL target on the `$datasource` Prometheus."""
    query = prom_b.Dataquery().expr(expr).ref_id(ref).datasource(PROMETHEUS_DS)
    query = query.legend_format(legend or "__auto")
    query = query.instant() if instant else query.range()
    if table_format:
        query = query.format(typing.cast(Any, "table"))
    return query


class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL target for Grafana's PostgreSQL datasource (the SDK ships no model for it)."""

    def __init__(self, raw_sql: str, ref_id: str, fmt: str) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.fmt = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": POSTGRES_DS.to_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class SqlQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw_sql: str, ref_id: str, fmt: str) -> None:
        self._internal = SqlQuery(raw_sql, ref_id, fmt)

    def build(self) -> SqlQuery:
        return self._internal


def sql(raw_sql: str, *, ref: str = "A", fmt: str = "table") -> SqlQueryBuilder:
    """A SQL target on the `$incidents_db` PostgreSQL datasource; fmt is table or time_series."""
    return SqlQueryBuilder(" ".join(raw_sql.split()), ref, fmt)


# --- variables and the dashboard -------------------------------------------------------------

def _datasource_variable() -> dash_b.DatasourceVariable:
    return (dash_b.DatasourceVariable("datasource").label("Prometheus").type(PROMETHEUS_TYPE)
            .current(dash_m.VariableOption(selected=True, text=PROMETHEUS_UID,
                                           value=PROMETHEUS_UID)))


def _incidents_db_variable() -> dash_b.DatasourceVariable:
    return (dash_b.DatasourceVariable("incidents_db").label("Incident store").type(POSTGRES_TYPE)
            .current(dash_m.VariableOption(selected=True, text=POSTGRES_UID,
                                           value=POSTGRES_UID)))


def _target_variable() -> dash_b.QueryVariable:
    # Every scraped job except Vigil's own and the monitoring stack's is a watched target.
    query = 'label_values(up{job!~"vigil-.*|prometheus|alertmanager|grafana"}, job)'
    return (dash_b.QueryVariable("target").label("Target").datasource(PROMETHEUS_DS)
            .query({"query": query, "refId": "target"})
            .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
            .multi(False).include_all(False))


def new_dashboard(title: str, uid: str, description: str, *,
                  with_incident_db: bool = False) -> dash_b.Dashboard:
    """A dashboard with Vigil's defaults: stable uid, `$datasource` and `$target` variables."""
    builder = (dash_b.Dashboard(title).uid(uid).description(description).tags(TAGS)
               .readonly().timezone("browser").time("now-6h", "now").refresh("30s")
               .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
               .with_variable(_datasource_variable())
               .with_variable(_target_variable()))
    if with_incident_db:
        builder = builder.with_variable(_incidents_db_variable())
    return builder.link(dash_b.DashboardLink("Vigil").type(dash_m.DashboardLinkType.DASHBOARDS)
                        .tags(TAGS).as_dropdown(True).include_vars(True).keep_time(True))


# --- panels ----------------------------------------------------------------------------------

def thresholds(*steps: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    """Absolute thresholds: (None, base colour) first, then (value, colour) ascending."""
    return (dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps([dash_m.Threshold(value=v, color=c) for v, c in steps]))


def value_map(mapping: dict[str, tuple[str, str]]) -> list[dash_m.ValueMapping]:
    """Value -> (text, colour) mappings, e.g. {"0": ("blocked", "red")}."""
    options = {k: dash_m.ValueMappingResult(text=text, color=color, index=i)
               for i, (k, (text, color)) in enumerate(mapping.items())}
    return [dash_m.ValueMap(options=options)]


_P = typing.TypeVar("_P", timeseries_b.Panel, stat_b.Panel, table_b.Panel,
                    statetimeline_b.Panel, bargauge_b.Panel)


def _common(panel: _P, title: str, description: str, unit: str, w: int, h: int,
            targets: tuple[cogbuilder.Builder[cogvariants.Dataquery], ...]) -> _P:
    panel = panel.title(title).description(description).unit(unit).span(w).height(h)
    is_sql = any(isinstance(t, SqlQueryBuilder) for t in targets)
    panel = panel.datasource(POSTGRES_DS if is_sql else PROMETHEUS_DS)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def timeseries(title: str, description: str, unit: str,
               *targets: cogbuilder.Builder[cogvariants.Dataquery], w: int = 12, h: int = 8,
               stack: bool = False, min_val: float | None = None) -> timeseries_b.Panel:
    panel = _common(timeseries_b.Panel(), title, description, unit, w, h, targets)
    panel = (panel.line_width(1).fill_opacity(10).show_points(common_m.VisibilityMode.NEVER)
             .legend(common_b.VizLegendOptions().display_mode(common_m.LegendDisplayMode.TABLE)
                     .placement(common_m.LegendPlacement.BOTTOM).show_legend(True)
                     .calcs(["lastNotNull", "max"]))
             .tooltip(common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI)
                      .sort(common_m.SortOrder.DESCENDING)))
    if stack:
        panel = panel.stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL))
    if min_val is not None:
        panel = panel.min(min_val)
    return panel


def stat(title: str, description: str, unit: str,
         *targets: cogbuilder.Builder[cogvariants.Dataquery], w: int = 6, h: int = 4,
         steps: dash_b.ThresholdsConfig | None = None, calc: str = "lastNotNull",
         decimals: float | None = None) -> stat_b.Panel:
    panel = _common(stat_b.Panel(), title, description, unit, w, h, targets)
    panel = (panel.color_mode(common_m.BigValueColorMode.BACKGROUND)
             .graph_mode(common_m.BigValueGraphMode.AREA)
             .reduce_options(common_b.ReduceDataOptions().calcs([calc]).values(False))
             .thresholds(steps or thresholds((None, "green"))))
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def table(title: str, description: str, unit: str,
          *targets: cogbuilder.Builder[cogvariants.Dataquery], w: int = 24, h: int = 8,
          transformations: list[dash_m.DataTransformerConfig] | None = None,
          sort_by: tuple[str, bool] | None = None) -> table_b.Panel:
    # options always set: the SDK leaves them null otherwise, which Grafana's schema refuses
    panel = _common(table_b.Panel(), title, description, unit, w, h, targets).show_header(True)
    for transformation in transformations or []:
        panel = panel.with_transformation(transformation)
    if sort_by is not None:
        panel = panel.sort_by([common_b.TableSortByFieldState().display_name(sort_by[0])
                               .desc(sort_by[1])])
    return panel


def state_timeline(title: str, description: str,
                   *targets: cogbuilder.Builder[cogvariants.Dataquery], w: int = 24, h: int = 8,
                   mappings: list[dash_m.ValueMapping] | None = None,
                   steps: dash_b.ThresholdsConfig | None = None) -> statetimeline_b.Panel:
    panel = _common(statetimeline_b.Panel(), title, description, units.NoUnit, w, h, targets)
    panel = panel.show_value(common_m.VisibilityMode.NEVER).merge_values(True)
    if mappings:
        panel = panel.mappings(mappings)
    if steps is not None:
        panel = panel.thresholds(steps).color_scheme(
            dash_b.FieldColor().mode(dash_m.FieldColorModeId.THRESHOLDS))
    return panel


def bar_gauge(title: str, description: str, unit: str,
              *targets: cogbuilder.Builder[cogvariants.Dataquery], w: int = 12, h: int = 8,
              steps: dash_b.ThresholdsConfig | None = None) -> bargauge_b.Panel:
    panel = _common(bargauge_b.Panel(), title, description, unit, w, h, targets)
    return (panel.display_mode(common_m.BarGaugeDisplayMode.GRADIENT)
            .orientation(common_m.VizOrientation.HORIZONTAL)
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .thresholds(steps or thresholds((None, "green"))))


def row(title: str) -> dash_b.Row:
    return dash_b.Row(title)


def transformation(transform_id: str, options: dict[str, Any]) -> dash_m.DataTransformerConfig:
    return dash_m.DataTransformerConfig(id_val=transform_id, options=options)


PanelBuilder = cogbuilder.Builder[dash_m.Panel] | dash_b.Row


def assemble(builder: dash_b.Dashboard, panels: list[Any]) -> dict[str, Any]:
    """Add rows and panels in order, then finalize."""
    for panel in panels:
        builder = builder.with_row(panel) if isinstance(panel, dash_b.Row) else builder.with_panel(panel)
    return finalize(builder)


def finalize(builder: dash_b.Dashboard) -> dict[str, Any]:
    """Build the dashboard, number its panels 1..n in order, and return its JSON object."""
    model = builder.build()
    # Lay panels out left to right, wrapping a panel that does not fit the 24-column grid
    # (the SDK's own layout only wraps after an overflow).
    x = y = line_height = 0
    for panel_id, panel in enumerate(model.panels or [], start=1):
        panel.id_val = panel_id
        pos = panel.grid_pos or dash_m.GridPos()
        if x + pos.w > 24:
            x, y, line_height = 0, y + line_height, 0
        pos.x, pos.y = x, y
        panel.grid_pos = pos
        x += pos.w
        line_height = max(line_height, pos.h)
    result: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return result
