"""The Grafana dashboard (deploy/grafana/dashboards/greenlane.json), written from this module.

Panels are data here (title, queries, unit, thresholds), so every query gets the job and
instance selectors, units stay right and the layout never overlaps; a test checks the shipped
file is what this writes, another runs every query against a real Prometheus. Regenerate with
`make deploy-files` after a change (devtools.deploy_files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/greenlane.json"
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def m(name: str, extra: str = "") -> str:
    """A metric with the dashboard's job and instance selection (and ``extra`` matchers)."""
    more = f", {extra}" if extra else ""
    return f'{name}{{job=~"$job", instance=~"$instance"{more}}}'


def rate(name: str, by: str = "", extra: str = "") -> str:
    grouping = f"sum by ({by}) " if by else "sum "
    return f"{grouping}(rate({m(name, extra)}[{RATE}]))"


def quantiles(histogram: str, by: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[Q]:
    group = f"le, {by}" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return [
        Q(
            f"histogram_quantile({q}, sum by ({group}) (rate({m(f'{histogram}_bucket')}[{RATE}])))",
            f"{legend}p{round(q * 100)}",
        )
        for q in qs
    ]


@dataclass(frozen=True)
class Q:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    queries: list[Q]
    unit: str
    description: str = ""
    # (colour, from value): drawn as lines on a time series
    thresholds: tuple[tuple[str, float | None], ...] = ()
    kind: str = "timeseries"
    width: int = 12
    min: float | None = 0
    max: float | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the panel's own, e.g. a stat's


@dataclass(frozen=True)
class Row:
    title: str
    panels: list[Panel]


SLO_LE = 'le="1.0"'  # the bucket of the latency SLO in deploy/prometheus/alerts.yml

ROWS = [
    Row(
        "Flow: throughput, lag, latency",
        [
            Panel(
                "Consumer lag: age of the oldest undecided filing, by topic",
                [
                    Q(f"max by (topic) ({m('greenlane_consumer_lag_seconds')})", "{{topic}}"),
                    Q(f"max({m('greenlane_consumer_lag_bound_seconds')})", "alert bound"),
                ],
                "s",
                "How long the oldest filing not yet decided has been on the broker, on the "
                "worst partition of each topic. GreenlaneConsumerLagHigh fires above the bound "
                "([worker] lag_alert_seconds).",
            ),
            Panel(
                "Consumer lag: filings not yet committed, by topic and partition",
                [
                    Q(
                        # max: during a handover two workers may report a partition
                        f"max by (topic, partition) ({m('greenlane_consumer_lag')})",
                        "{{topic}} [{{partition}}]",
                    )
                ],
                "short",
                "High watermark minus the group's committed offset, read from the broker by "
                "the worker that owns the partition.",
            ),
            Panel(
                "Throughput: filings consumed per second, by topic",
                [Q(rate("greenlane_messages_consumed_total", "topic"), "{{topic}}")],
                "recps",
            ),
            Panel(
                "Decision latency p50 / p95 / p99 (filing to decision confirmed)",
                quantiles("greenlane_decision_latency_seconds", "stage"),
                "s",
                "From the filing's Kafka record timestamp to its decision confirmed by the "
                "broker. The SLO: 99 % within 1 s (the red line).",
                thresholds=(("green", None), ("red", 1.0)),
            ),
            Panel(
                "Share of decisions slower than the 1 s SLO",
                [
                    Q(
                        f"1 - {rate('greenlane_decision_latency_seconds_bucket', 'stage', SLO_LE)}"
                        f" / {rate('greenlane_decision_latency_seconds_count', 'stage')}",
                        "{{stage}}",
                    )
                ],
                "percentunit",
                "The latency SLO's error budget is 1 %: above the line the budget burns "
                "(GreenlaneLatencyBudgetBurning* alerts).",
                thresholds=(("green", None), ("red", 0.01)),
            ),
            Panel(
                "Progress heartbeat: seconds since each agent last finished a batch",
                [
                    Q(
                        "time() - max by (instance, agent) "
                        f"({m('greenlane_agent_last_progress_timestamp_seconds')})",
                        "{{instance}} {{agent}}",
                    ),
                    Q(f"max({m('greenlane_stall_bound_seconds')})", "stall bound"),
                ],
                "s",
                "An idle agent's grows harmlessly; one above the stall bound while its topic "
                "has lag is a stall (GreenlaneWorkerStalled).",
            ),
            Panel(
                "Batch processing time p50 / p95 / p99",
                quantiles("greenlane_batch_processing_seconds", "stage"),
                "s",
                "Decode, assess, publish and confirm one micro-batch.",
            ),
            Panel(
                "Batch size: mean and p95 filings per batch",
                [
                    Q(
                        f"{rate('greenlane_batch_size_sum', 'stage')} / "
                        f"{rate('greenlane_batch_size_count', 'stage')}",
                        "{{stage}} mean",
                    ),
                    *quantiles("greenlane_batch_size", "stage", (0.95,)),
                ],
                "short",
            ),
        ],
    ),
    Row(
        "Decisions: routes, dead letters, quality, referrals",
        [
            Panel(
                "Decisions per second, by stage and route",
                [Q(rate("greenlane_decisions_total", "stage, route"), "{{stage}} {{route}}")],
                "cps",
            ),
            Panel(
                "Route split: share of each stage's decisions",
                [
                    Q(
                        f"{rate('greenlane_decisions_total', 'stage, route')} / on (stage) "
                        f"group_left {rate('greenlane_decisions_total', 'stage')}",
                        "{{stage}} {{route}}",
                    )
                ],
                "percentunit",
                max=1,
            ),
            Panel(
                "Dead letters per second, by error code",
                [Q(rate("greenlane_dead_letters_total", "error_code"), "{{error_code}}")],
                "cps",
            ),
            Panel(
                "Dead-letter share of consumed filings",
                [
                    Q(
                        f"{rate('greenlane_dead_letters_total')} / "
                        f"{rate('greenlane_messages_consumed_total')}",
                        "dead-lettered",
                    )
                ],
                "percentunit",
                "GreenlaneDeadLetterShareHigh fires above 2 % for 10 minutes.",
                thresholds=(("green", None), ("red", 0.02)),
            ),
            Panel(
                "Data-quality findings per second, by code",
                [Q(rate("greenlane_quality_findings_total", "code"), "{{code}}")],
                "cps",
            ),
            Panel(
                "Carrier responses per second, by status",
                [Q(rate("greenlane_carrier_responses_total", "status"), "{{status}}")],
                "cps",
            ),
            Panel(
                "Referrals to partner agencies per second",
                [Q(rate("greenlane_referrals_total", "agency"), "{{agency}}")],
                "cps",
            ),
            Panel(
                "Random selections for inspection per second (exploration)",
                [Q(rate("greenlane_random_picks_total"), "random picks")],
                "cps",
            ),
            Panel(
                "Inspection outcomes per second (joined to their decision / dead-lettered)",
                [Q(rate("greenlane_inspection_outcomes_total", "result"), "{{result}}")],
                "cps",
            ),
            Panel(
                "Decisions republished from the replay log per second (redeliveries)",
                [Q(rate("greenlane_replayed_decisions_total", "stage"), "{{stage}}")],
                "cps",
                "A filing read again after a crash or rebalance gets the decisions it got the "
                "first time.",
            ),
            Panel(
                "Seller-keyed pattern findings per second (amended / not applied)",
                [Q(rate("greenlane_pattern_findings_total", "result"), "{{result}}")],
                "cps",
            ),
            Panel(
                "Pattern amendment latency p50 / p95 (the re-keying hops)",
                quantiles("greenlane_pattern_amendment_latency_seconds", "", (0.5, 0.95)),
                "s",
            ),
        ],
    ),
    Row(
        "Model: scores, drift, versions",
        [
            Panel(
                "In force: risk model, targeting profiles, greenlane release",
                [
                    Q(f"max by (version) ({m('greenlane_risk_model_info')})", "model {{version}}"),
                    Q(
                        f"max by (version) ({m('greenlane_targeting_profiles_info')})",
                        "profiles {{version}}",
                    ),
                    Q(f"max by (version) ({m('greenlane_build_info')})", "greenlane {{version}}"),
                ],
                "none",
                "Two versions of one kind at once: workers disagree (a reload under way, or "
                "refused on some).",
                kind="stat",
                options={"textMode": "name", "colorMode": "none"},
            ),
            Panel(
                "Refused reloads (1: the last good one is kept), and reloads in the last hour",
                [
                    Q(f"max by (what) ({m('greenlane_reload_refused')})", "refused {{what}}"),
                    Q(
                        "sum by (settings, result) "
                        f"(increase({m('greenlane_settings_reloads_total')}[1h]))",
                        "{{settings}} {{result}}",
                    ),
                    Q(
                        f"sum by (result) (increase({m('greenlane_model_reloads_total')}[1h]))",
                        "model {{result}}",
                    ),
                ],
                "short",
                thresholds=(("green", None), ("red", 1.0)),
            ),
            Panel(
                "Risk model score p50 / p95 / p99",
                quantiles("greenlane_model_score", ""),
                "percentunit",
                "A shift in the score distribution is the first sign of drift.",
                max=1,
            ),
            Panel(
                "Population stability index vs the training window (0.1 watch, 0.25 act)",
                [
                    Q(f"max by (feature) ({m('greenlane_model_feature_psi')})", "{{feature}}"),
                    Q(f"max({m('greenlane_model_score_psi')})", "score"),
                ],
                "none",
                "GreenlaneModelDrift fires when one stays above 0.25 for 30 minutes.",
                thresholds=(("green", None), ("orange", 0.1), ("red", 0.25)),
            ),
            Panel(
                "Scheduled retraining runs per day (promoted / kept / failed)",
                [
                    Q(
                        "sum by (result) "
                        f"(increase({m('greenlane_scheduled_retrains_total')}[1d]))",
                        "{{result}}",
                    )
                ],
                "short",
            ),
        ],
    ),
    Row(
        "Process: CPU, memory, GC, tables, rebalances, errors",
        [
            Panel(
                "Workers live and ready, and batches awaiting the broker",
                [
                    Q(f"sum({m('greenlane_worker_live')})", "live"),
                    Q(f"sum({m('greenlane_worker_ready')})", "ready"),
                    Q(f"sum({m('greenlane_unconfirmed_batches')})", "unconfirmed batches"),
                ],
                "short",
            ),
            Panel(
                "CPU: cores used by each worker",
                [Q(rate("process_cpu_seconds_total", "instance"), "{{instance}}")],
                "short",
                "One worker runs on one event loop: near 1 core it is saturated; add workers "
                "(up to the partition count).",
                thresholds=(("green", None), ("orange", 0.8), ("red", 0.95)),
            ),
            Panel(
                "CPU µs per decided filing, by part of the work",
                [
                    Q(
                        f"1e6 * {rate('greenlane_cpu_seconds_total', 'part')} / "
                        f"scalar({rate('greenlane_messages_consumed_total')})",
                        "{{part}}",
                    ),
                    Q(
                        f"1e6 * {rate('process_cpu_seconds_total')} / "
                        f"scalar({rate('greenlane_messages_consumed_total')})",
                        "whole process",
                    ),
                ],
                "µs",
            ),
            Panel(
                "Memory: resident set of each worker",
                [Q(f"max by (instance) ({m('process_resident_memory_bytes')})", "{{instance}}")],
                "bytes",
            ),
            Panel(
                "Garbage-collector pauses (p99 by generation, and the longest so far)",
                [
                    Q(
                        "histogram_quantile(0.99, sum by (generation, le) "
                        f"(rate({m('greenlane_gc_pause_seconds_bucket')}[{RATE}])))",
                        "gen {{generation}} p99",
                    ),
                    Q(
                        f"max by (generation) ({m('greenlane_gc_pause_max_seconds')})",
                        "gen {{generation}} longest",
                    ),
                ],
                "s",
            ),
            Panel(
                "Table entries (all workers; RocksDB estimate)",
                [Q(f"sum by (table) ({m('greenlane_table_entries')})", "{{table}}")],
                "short",
            ),
            Panel(
                "Table size (live data and memtables)",
                [Q(f"sum by (table) ({m('greenlane_table_bytes')})", "{{table}}")],
                "bytes",
            ),
            Panel(
                "Rebalances and offset commits per second",
                [
                    Q(rate("greenlane_rebalances_total", "instance"), "rebalances {{instance}}"),
                    Q(rate("greenlane_offset_commits_total", "result"), "commits {{result}}"),
                ],
                "cps",
                "A failed commit is refused after a rebalance (the new owner reads the batch "
                "again) or an error (the worker stops).",
            ),
            Panel(
                "Publishing trouble per second (waits, retries, dead-lettered outputs, "
                "producer errors)",
                [
                    Q(rate("greenlane_publish_waits_total"), "waits for the broker"),
                    Q(rate("greenlane_publish_retries_total", "step"), "retried {{step}}"),
                    Q(rate("greenlane_unpublishable_outputs_total"), "unpublishable outputs"),
                    # error names are the client's, not known before the first one
                    Q(
                        f"{rate('greenlane_producer_errors_total', 'error')} or on () vector(0)",
                        "producer error {{error}}",
                    ),
                ],
                "cps",
            ),
            Panel(
                "Batches retried, agents failed, offset holes mended per second",
                [
                    Q(
                        f"{rate('greenlane_batch_retries_total', 'agent, error')} "
                        "or on () vector(0)",
                        "retried {{agent}} {{error}}",
                    ),
                    Q(rate("greenlane_agent_failures_total", "agent"), "failed {{agent}}"),
                    Q(rate("greenlane_offset_holes_total", "topic"), "hole {{topic}}"),
                ],
                "cps",
            ),
        ],
    ),
]


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": c, "value": v} for c, v in panel.thresholds] or [
        {"color": "green", "value": None}
    ]
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "palette-classic"},
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.thresholds and panel.kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    out: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
                **({"instant": True} if panel.kind == "stat" else {}),
            }
            for i, q in enumerate(panel.queries)
        ],
    }
    if panel.kind == "timeseries":
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.options:
        out["options"] = panel.options
    return out


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


def build() -> dict[str, Any]:
    """The dashboard as Grafana imports it."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x = pid + 1, y + 1, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(panel, pid, x, y))
            pid, x = pid + 1, x + panel.width
        y += 8
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes the greenlane workers",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
        ],
        "uid": "greenlane",
        "title": "greenlane",
        "description": "Streaming risk assessment of cross-border e-commerce filings: flow "
        "(throughput, lag, latency), decisions, model and process, from the workers' own "
        "metrics. Written by streams/devtools/dashboard.py.",
        "tags": ["greenlane", "kafka", "customs"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 2,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    # import fills this from __inputs; provisioned, it falls to the default
                    "current": {"text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
                    "hide": 0,
                    "refresh": 1,
                },
                _variable("job", "Job", "label_values(greenlane_messages_consumed_total, job)"),
                _variable(
                    "instance",
                    "Worker",
                    'label_values(greenlane_messages_consumed_total{job=~"$job"}, instance)',
                ),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
