"""deploy/grafana/regworker.json: every query names only series the worker exports
(worker.core.metrics.Metrics().names()), every metric family is shown somewhere, and the
data source is a variable, so the dashboard imports into any Grafana."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Final

from worker.core.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "regworker.json"
IDENTIFIER: Final = re.compile(r"\bregworker_[A-Za-z0-9_]*")
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries() -> Iterator[str]:
    """Every PromQL text: the panels' targets and the template variables' queries."""
    for panel in panels():
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            yield query["query"] if isinstance(query, dict) else query


def named_series() -> set[str]:
    return {name for query in queries() for name in IDENTIFIER.findall(query)}


def test_queries_name_only_exported_series() -> None:
    unknown = named_series() - Metrics().names()
    assert not unknown, f"not exported by worker.core.metrics: {sorted(unknown)}"


def test_identifier_scan_finds_names_in_promql() -> None:
    query = 'histogram_quantile(0.99, sum by (le) (rate(regworker_x_bucket{job=~"$job"}[5m])))'
    assert IDENTIFIER.findall(query) == ["regworker_x_bucket"]
    assert IDENTIFIER.findall("sum(regworker_a) / sum(regworker_b_total)") == [
        "regworker_a",
        "regworker_b_total",
    ]


def test_every_metric_family_is_shown() -> None:
    families = {family.name for family in Metrics().registry.collect()}
    shown = {
        family
        for family in families
        for series in named_series()
        if series == family or series.startswith(family + "_")
    }
    assert shown == families, f"not on the dashboard: {sorted(families - shown)}"


def test_latency_quantiles_come_from_the_histograms() -> None:
    quantiles = [query for query in queries() if "histogram_quantile" in query]
    assert {re.search(r"histogram_quantile\((0\.\d+)", query).group(1) for query in quantiles} >= {  # type: ignore[union-attr]
        "0.5",
        "0.99",
    }
    for query in quantiles:
        assert all(name.endswith("_bucket") for name in IDENTIFIER.findall(query)), query
        assert re.search(r"by \((?:[a-z_]+, )*le(?:, [a-z_]+)*\)", query), query


def test_data_source_is_a_variable() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_query_is_filtered_by_the_job_variable() -> None:
    for panel in panels():
        for target in panel.get("targets", []):
            for series in IDENTIFIER.findall(target["expr"]):
                assert f'{series}{{job=~"$job"}}' in target["expr"], (panel["title"], series)


def test_panels_have_unique_ids_and_balanced_queries() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for query in queries():
        for opening, closing in ("()", "[]", "{}"):
            assert query.count(opening) == query.count(closing), query
