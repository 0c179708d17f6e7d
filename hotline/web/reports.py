"""Supervisors' reports: queues by hour / day / week / month, operators, the IVR
path and staffing (Erlang C) — a page drawn on the server (tables and SVG
charts, no script) and the same figures as JSON or CSV.

``GET /reports?view=queues|operators|ivr|staffing&since=&until=&granularity=&queue=``;
``GET /api/reports/<view>`` answers JSON, or CSV with ``format=csv`` (``table=``
names the table where a view has several). Dates are the city's days, ``until``
inclusive; bad parameters are a 400 naming the field, an unknown queue a 404."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from crm_sync.stats import queries
from crm_sync.stats.metrics import (
    CITY_TZ,
    MAX_DETAIL_DAYS,
    MAX_PERIOD_DAYS,
    Period,
    parse_period,
)
from hotline.core.errors import InvalidInput, NotFound
from hotline.core.logs import get_logger
from hotline.core.people import WATCHERS
from hotline.web.common import POOL, Route, html_response, json_response, principal, template
from hotline.web.guard import csrf_token
from hotline.web.report_charts import bar_chart, line_chart

log = get_logger("hotline.web.reports")

VIEWS = ("queues", "operators", "ivr", "staffing")
#: Staffing is per half-hour: a week at most on one page.
MAX_STAFFING_DAYS = 7
_MAX_QUEUES = 50

Column = tuple[str, str]  # (heading, key)
QUEUE_COLUMNS: list[Column] = [
    ("Offered", "offered"), ("Answered", "answered"), ("Abandoned", "abandoned"),
    ("Short abandons", "short_abandoned"), ("Timed out", "timed_out"),
    ("Callbacks", "callbacks"), ("SL, %", "service_level"), ("SL2, %", "service_level2"),
    ("ASA, s", "asa"), ("Longest wait, s", "longest_wait"), ("AHT, s", "aht"),
    ("Abandon rate, %", "abandon_rate"),
]
OPERATOR_COLUMNS: list[Column] = [
    ("Operator", "operator"), ("Name", "name"), ("Calls", "calls"), ("Talk, s", "talk"),
    ("Wrap-up, s", "wrap"), ("AHT, s", "aht"), ("Paused, s", "pause"),
    ("Available, s", "available"), ("Occupancy, %", "occupancy"), ("Surveys", "surveys"),
    ("Survey average", "survey_avg"), ("Dispositions", "dispositions_text"),
]
IVR_COLUMNS: list[Column] = [("Node", "step"), ("Option", "option"), ("Times", "count"),
                             ("Share of callers, %", "share")]
STAFFING_COLUMNS: list[Column] = [
    ("Queue", "queue"), ("Half-hour", "label"), ("Forecast calls", "forecast_calls"),
    ("Forecast AHT, s", "forecast_aht"), ("Load, erl", "load"),
    ("Operators needed", "agents_needed"), ("Logged in", "logged_in"),
    ("Expected SL, %", "expected_sl"), ("Expected ASA, s", "expected_asa"),
    ("Actual offered", "offered"), ("Actual SL, %", "service_level"), ("Actual ASA, s", "asa"),
]


def _today() -> date:
    return datetime.now(CITY_TZ).date()


def _period(request: web.Request, view: str) -> Period:
    q = request.query
    max_days = {"operators": MAX_DETAIL_DAYS, "staffing": MAX_STAFFING_DAYS}.get(
        view, MAX_PERIOD_DAYS)
    granularity = "halfhour" if view == "staffing" else q.get("granularity")
    return parse_period(q.get("since") or None, q.get("until") or None, granularity,
                        today=_today(), max_days=max_days)


async def _queues(request: web.Request) -> list[str] | None:
    names = [n.strip() for raw in request.query.getall("queue", []) for n in raw.split(",")
             if n.strip()]
    if not names:
        return None
    if len(names) > _MAX_QUEUES or any(len(n) > 64 for n in names):
        raise InvalidInput("too many or too long queue names", details={"field": "queue"})
    known = await known_queues(request.app[POOL], names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NotFound(f"unknown queue: {', '.join(unknown)}",
                       details={"field": "queue", "unknown": unknown})
    return sorted(set(names))


async def known_queues(pool: asyncpg.Pool, names: Sequence[str]) -> set[str]:
    """Of ``names``, those with thresholds (config's queues) or with any statistics."""
    rows = await pool.fetch(
        """SELECT n FROM unnest($1::text[]) AS n
            WHERE EXISTS (SELECT 1 FROM stats_thresholds WHERE queue = n)
               OR EXISTS (SELECT 1 FROM stats_queue_halfhour WHERE queue = n)""",
        list(names))
    return {r["n"] for r in rows}


async def _report(request: web.Request, view: str) -> dict[str, Any]:
    if view not in VIEWS:
        raise InvalidInput(f"view must be one of {', '.join(VIEWS)}", details={"field": "view"})
    period = _period(request, view)
    pool = request.app[POOL]
    if view == "queues":
        return await queries.queue_report(pool, period, await _queues(request))
    if view == "operators":
        report = await queries.operator_report(pool, period)
        for row in report["operators"]:
            row["dispositions_text"] = "; ".join(
                f"{k}: {v}" for k, v in sorted(row["dispositions"].items()))
            for reason in report["pause_reasons"]:
                row[f"pause:{reason}"] = row["pauses"].get(reason, 0)
        return report
    if view == "ivr":
        return await queries.ivr_report(pool, period)
    return await queries.staffing_report(pool, period, await _queues(request))


# --- tables (one definition for the page and the CSV) --------------------------


def tables(view: str, report: dict[str, Any]) -> dict[str, tuple[list[Column],
                                                                  list[dict[str, Any]]]]:
    """name → (columns, rows) of every table the view shows."""
    if view == "queues":
        by_queue = [("Queue", "queue"), *QUEUE_COLUMNS]
        series = [("Queue", "queue"), ("Period", "label"), *QUEUE_COLUMNS]
        rows = [{"queue": q, **p} for q, points in report["series"].items() for p in points]
        return {"totals": (by_queue, [*report["queues"], report["total"]]),
                "series": (series, rows)}
    if view == "operators":
        pauses = [(f"Paused: {r}, s", f"pause:{r}") for r in report["pause_reasons"]]
        return {"operators": ([*OPERATOR_COLUMNS[:7], *pauses, *OPERATOR_COLUMNS[7:]],
                              report["operators"])}
    if view == "ivr":
        rows = [{"step": n["step"], "option": opt, "count": count,
                 "share": (round(100 * count / report["callers"], 1)
                           if report["callers"] else None)}
                for n in report["nodes"] for opt, count in sorted(n["options"].items())]
        summary = [{"figure": _SUMMARY[k], "value": v} for k, v in report["summary"].items()]
        return {"ivr": (IVR_COLUMNS, rows),
                "ivr_summary": ([("Figure", "figure"), ("Calls", "value")], summary)}
    rows = [{"queue": q, "label": _local(p["slot"]), **p}
            for q, points in report["queues"].items() for p in points]
    return {"staffing": (STAFFING_COLUMNS, rows)}


_SUMMARY = {"notices_heard": "Notices heard", "notices_skipped": "Notices skipped",
            "saved_by_notice": "Calls saved (hung up after a notice, before a queue)",
            "callbacks_booked": "Callbacks booked instead of waiting"}


def _local(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def to_csv(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([heading for heading, _ in columns])
    for row in rows:
        writer.writerow([_cell(row.get(key)) for _, key in columns])
    return out.getvalue()


def _html_table(name: str, columns: list[Column], rows: list[dict[str, Any]],
                csv_href: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h, _ in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(row.get(k))) or '—'}</td>" for _, k in columns)
        + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td class="empty" colspan="{len(columns)}">no calls in this period</td></tr>'
    return (f'<div class="table"><div class="tools"><a class="csv" download '
            f'href="{escape(csv_href)}">CSV</a></div><table data-table="{escape(name)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def charts(view: str, report: dict[str, Any]) -> list[str]:
    if view == "queues":
        names = list(report["series"])
        if not names:
            return []
        first = report["series"][names[0]]
        labels = [p["label"] for p in first]
        offered = [sum(report["series"][n][i]["offered"] for n in names)
                   for i in range(len(labels))]
        return [bar_chart("Offered calls", labels, offered),
                line_chart("Service level, %", labels,
                           [(n, [p["service_level"] for p in report["series"][n]])
                            for n in names])]
    if view == "operators":
        ops = report["operators"]
        return [bar_chart("Calls per operator", [o["name"] or o["operator"] for o in ops],
                          [o["calls"] for o in ops])] if ops else []
    if view == "ivr":
        nodes = report["nodes"]
        return [bar_chart("Callers reaching each IVR node", [n["step"] for n in nodes],
                          [n["reached"] for n in nodes])] if nodes else []
    out = []
    for queue, points in report["queues"].items():
        labels = [_local(p["slot"])[11:] for p in points]
        out.append(line_chart(f"{queue}: operators needed and logged in", labels, [
            ("needed", [p["agents_needed"] for p in points]),
            ("logged in", [p["logged_in"] for p in points])]))
    return out


# --- handlers ------------------------------------------------------------------


def _view(request: web.Request, default: str = "queues") -> str:
    view = request.match_info.get("view") or request.query.get("view") or default
    if view not in VIEWS:
        raise InvalidInput(f"view must be one of {', '.join(VIEWS)}", details={"field": "view"})
    return view


async def api_report(request: web.Request) -> web.Response:
    view = _view(request)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidInput("format must be json or csv", details={"field": "format"})
    report = await _report(request, view)
    log.info("report_served", view=view, format=fmt, who=principal(request).login,
             since=report["since"], until=report["until"])
    if fmt == "json":
        return json_response(report)
    available = tables(view, report)
    name = request.query.get("table") or next(iter(available))
    if name not in available:
        raise InvalidInput(f"table must be one of {', '.join(available)}",
                           details={"field": "table"})
    columns, rows = available[name]
    filename = f"{view}-{name}-{report['since'][:10]}-{report['until'][:10]}.csv"
    return web.Response(
        text=to_csv(columns, rows), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "Cache-Control": "no-store"})


async def page(request: web.Request) -> web.Response:
    view = _view(request)
    report = await _report(request, view)
    params = {k: v for k, v in request.query.items() if k not in ("format", "table", "view")}
    sections = [f'<div class="chart-box">{svg}</div>' for svg in charts(view, report)]
    for name, (columns, rows) in tables(view, report).items():
        href = f"/api/reports/{view}?" + urlencode({**params, "format": "csv", "table": name})
        sections.append(f"<h2>{escape(_TABLE_TITLES.get(name, name))}</h2>"
                        + _html_table(name, columns, rows, href))
    text = _fill(template("reports.html"), {
        "name": escape(principal(request).display_name),
        "csrf": escape(csrf_token(request)),
        "nav": _nav(view, params),
        "form": _form(view, request, report),
        "content": "".join(sections),
        "title": escape(_TITLES[view]),
    })
    return html_response(text, headers={"Cache-Control": "no-store"})


_TITLES = {"queues": "Queues", "operators": "Operators", "ivr": "IVR path",
           "staffing": "Staffing (Erlang C)"}
_TABLE_TITLES = {"totals": "Per queue, whole period", "series": "Per queue and period",
                 "operators": "Per operator", "ivr": "IVR nodes and options",
                 "ivr_summary": "Notices and callbacks",
                 "staffing": "Per queue and half-hour: forecast, need, actual"}


def _fill(text: str, values: dict[str, str]) -> str:
    """The template with already-escaped HTML put in its ``{{key}}`` places."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _nav(current: str, params: dict[str, str]) -> str:
    keep = {k: v for k, v in params.items() if k in ("since", "until")}
    links = []
    for view in VIEWS:
        href = "/reports?" + urlencode({"view": view, **keep})
        cls = ' class="current"' if view == current else ""
        links.append(f'<a{cls} href="{escape(href)}">{escape(_TITLES[view])}</a>')
    return "".join(links)


def _form(view: str, request: web.Request, report: dict[str, Any]) -> str:
    q = request.query
    since = escape(q.get("since") or report["since"][:10])
    until = escape(q.get("until") or "")
    fields = [f'<input type="hidden" name="view" value="{view}">',
              f'<label>From <input type="date" name="since" value="{since}"></label>',
              f'<label>To <input type="date" name="until" value="{until}"></label>']
    if view == "queues":
        current = q.get("granularity") or "day"
        options = "".join(f'<option{" selected" if g == current else ""}>{g}</option>'
                          for g in ("halfhour", "hour", "day", "week", "month"))
        fields.append(f'<label>By <select name="granularity">{options}</select></label>')
    if view in ("queues", "staffing"):
        fields.append(f'<label>Queue <input name="queue" value="{escape(q.get("queue", ""))}" '
                      'placeholder="all"></label>')
    fields.append("<button>Show</button>")
    return f'<form class="filters" method="get" action="/reports">{"".join(fields)}</form>'


def _doc(summary: str, **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": [{"session": []}], **more,
            "responses": {"200": {"description": summary},
                          "400": {"description": "a bad parameter (named in details.field)"},
                          "404": {"description": "an unknown queue"}}}


_PARAMS = [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
           for n in ("since", "until", "granularity", "queue", "format", "table")]

#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    "/reports": {"get": _doc("the reports page (queues, operators, IVR path, staffing)",
                             parameters=[{"name": "view", "in": "query", "required": False,
                                          "schema": {"enum": list(VIEWS)}}, *_PARAMS])},
    "/api/reports/{view}": {"get": _doc(
        "a report as JSON, or one of its tables as CSV (format=csv&table=…)",
        parameters=[{"name": "view", "in": "path", "required": True,
                     "schema": {"enum": list(VIEWS)}}, *_PARAMS])},
}

ROUTES = [
    Route("GET", "/reports", page, WATCHERS),
    Route("GET", "/api/reports/{view}", api_report, WATCHERS),
]
