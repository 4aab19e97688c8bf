"""Render one self-contained HTML page from the tables the jobs write in PostgreSQL.

    python -m tools.report --config conf/local.yaml --out report.html
        [--latency latency.json] [--since 2026-01-01T00:00Z] [--until ...] [--meter-prefix P]

Sections: load curves per region and per feeder (region_load, feeder_load), the alert
timeline (alerts), interval voltages against the profile's limits (meter_intervals over
meter_registry's nominal voltage) and an alert-latency histogram from --latency, a JSON file
{"samples_ms": [12.5, 8.0, ...], "label": "what was measured"} (label optional). Plots are
PNGs inlined as base64 and the CSS is inline: the page opens offline, from anywhere.
--meter-prefix keeps the meters whose id starts with P, and the feeders and regions they are
registered on; --since/--until keep what overlaps that window (ISO 8601, UTC if no offset).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

from jobs.config import ConfigError, JobConfig, load_config
from udfs.alert_record import ALERT_TYPES, CRITICAL, MAJOR, MINOR

TOP_CURVES = 10          # more lines than this make a plot nobody can read; a note counts the rest
MAX_ALERTS_DRAWN = 20_000  # the timeline draws the latest ones; the table counts every alert
LATENCY_HINT = ".stack/bench/detect-latency.json"  # what `make bench-detect` writes
SEVERITY_COLORS = {CRITICAL: "#c0392b", MAJOR: "#e67e22", MINOR: "#2e86c1"}
PROFILE_NAMES = {"EN50160": "EN 50160", "ANSI_C84_1": "ANSI C84.1 Range A"}
BIN_WIDTH = 0.005        # voltage histogram bins: half a percent of nominal
# Feeders and regions in scope of a meter prefix: those its meters are registered on.
REGISTERED = "{column} IN (SELECT {column} FROM meter_registry WHERE meter_id LIKE %s)"
ALERT_SCOPE = ("(meter_id LIKE %s OR (meter_id IS NULL AND "
               + REGISTERED.format(column="feeder_id") + "))")


class ReportError(ValueError):
    """A problem the user can fix, stated as one line."""


@dataclass(frozen=True)
class Scope:
    since: datetime | None = None
    until: datetime | None = None
    meter_prefix: str | None = None

    def where(self, start: str, end: str, prefix_clause: str) -> tuple[str, list]:
        """SQL condition and parameters for rows whose [start, end) overlaps the window (a NULL
        end is still open) and that belong to the prefix. `prefix_clause` takes the LIKE
        pattern once per %s."""
        clauses, params = ["TRUE"], []
        if self.since is not None:
            clauses.append(f"coalesce({end}, 'infinity') >= %s")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"{start} < %s")
            params.append(self.until)
        if self.meter_prefix is not None:
            # Ids may hold '_' (a LIKE wildcard): escape it, and '%' and the escape itself.
            pattern = (self.meter_prefix.replace("\\", "\\\\").replace("%", "\\%")
                       .replace("_", "\\_") + "%")
            clauses.append(prefix_clause)
            params += [pattern] * prefix_clause.count("%s")
        return " AND ".join(clauses), params


class Section(NamedTuple):
    id: str
    title: str
    body: str     # HTML
    plots: int
    summary: str  # what it shows, for the summary line: "34 regions"


class Latency(NamedTuple):
    samples_ms: list[float]
    label: str
    path: Path


# --------------------------------------------------------------------------- sections

def load_curves(conn, scope: Scope, level: str) -> Section:
    """kW over time (each period's average demand) for the regions or feeders with the most
    energy in the window."""
    table, key = ("region_load", "region") if level == "region" else ("feeder_load", "feeder_id")
    title = f"Load per {level}"
    where, params = scope.where("period_start", "period_end", REGISTERED.format(column=key))
    totals = conn.execute(
        f"SELECT {key}, sum(kwh_import), max(peak_kw), max(meters_registered) FROM {table} "
        f"WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1", params).fetchall()
    if not totals:
        return _empty(f"load-{level}", title, f"no {table} rows in scope", f"0 {level}s")
    shown = totals[:TOP_CURVES]
    rows = conn.execute(
        f"SELECT {key}, period_start, period_end, avg_kw FROM {table} "
        f"WHERE {where} AND {key} = ANY(%s) ORDER BY 1, 2",
        [*params, [name for name, *_ in shown]]).fetchall()
    fig, ax = _figure(height=3.6)
    for name, points in groupby(rows, key=lambda row: row[0]):
        points = list(points)
        # Each period's average holds from its start to its end: a step, closed at the end.
        times = [p[1] for p in points] + [points[-1][2]]
        kw = [_number(p[3]) for p in points] + [_number(points[-1][3])]
        ax.step(times, kw, where="post", label=name, linewidth=1.4)
    ax.set_ylabel("average demand (kW)")
    _time_axis(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    note = ""
    if len(totals) > len(shown):
        rest = sum(_number(t[1]) for t in totals[len(shown):])
        share = rest / max(sum(_number(t[1]) for t in totals), 1e-12)
        note = _p(f"Showing the {len(shown)} {level}s with the most energy of {len(totals)}; "
                  f"the other {len(totals) - len(shown)} hold {share:.0%} of it.")
    table_html = _table([level, "energy (kWh)", "peak (kW)", "meters registered"],
                        [(n, f"{_number(e):,.1f}", _fmt(p, ",.1f"), _fmt(m, ",d"))
                         for n, e, p, m in shown])
    return Section(f"load-{level}", title, _png(fig, title) + note + table_html, 1,
                   f"{len(totals):,} {level}s")


def alert_timeline(conn, scope: Scope) -> Section:
    """Each alert from OPEN to CLEARED on its type's row, coloured by severity."""
    title = "Alerts"
    where, params = scope.where("opened_ts", "cleared_ts", ALERT_SCOPE)
    counts = conn.execute(
        f"SELECT type, severity, count(*), count(*) FILTER (WHERE state = 'OPEN') FROM alerts "
        f"WHERE {where} GROUP BY 1, 2", params).fetchall()
    if not counts:
        return _empty("alerts", title, "no alerts in scope", "0 alerts")
    alerts = conn.execute(
        f"SELECT type, severity, opened_ts, cleared_ts FROM alerts WHERE {where} "
        f"ORDER BY opened_ts DESC LIMIT %s", [*params, MAX_ALERTS_DRAWN]).fetchall()
    per_type, still_open, per_severity = Counter(), Counter(), Counter()
    for type_, severity, total, open_now in counts:
        per_type[type_] += total
        still_open[type_] += open_now
        per_severity[type_, severity] = total
    # DESIGN's order first, then any type this version does not know.
    types = [t for t in ALERT_TYPES if t in per_type] + sorted(set(per_type) - set(ALERT_TYPES))
    row = {t: i for i, t in enumerate(types)}
    latest = max(t for a in alerts for t in (a[2], a[3]) if t is not None)
    end = min(latest, scope.until) if scope.until else latest
    fig, ax = _figure(height=1.2 + 0.45 * len(types))
    for severity, color in SEVERITY_COLORS.items():
        mine = [a for a in alerts if a[1] == severity]
        if not mine:
            continue
        # Spread alerts of one row a little so that overlapping spans stay visible.
        ys = [row[a[0]] + ((i % 5) - 2) * 0.08 for i, a in enumerate(mine)]
        starts = [a[2] for a in mine]
        stops = [a[3] or max(end, a[2]) for a in mine]
        ax.hlines(ys, starts, stops, colors=color, linewidth=5, alpha=0.55)
        ax.scatter(starts, ys, marker="|", s=80, color=color, label=severity)
        ends = [(stop, y) for a, stop, y in zip(mine, stops, ys, strict=True) if not a[3]]
        if ends:
            ax.scatter(*zip(*ends, strict=True), marker=">", s=30, color=color)
    ax.set_yticks(range(len(types)), [f"{t} ({per_type[t]:,})" for t in types])
    ax.set_ylim(len(types) - 0.5, -0.5)  # first type on top
    _time_axis(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    note = _p("A bar runs from OPEN to CLEARED; ▶ marks an alert still OPEN, drawn to the "
              "latest alert event.")
    total = sum(per_type.values())
    if total > len(alerts):
        note += _p(f"The timeline draws the latest {len(alerts):,} of {total:,} alerts.")
    table_html = _table(["type", *SEVERITY_COLORS, "still open"],
                        [(t, *(f"{per_severity[t, s]:,}" for s in SEVERITY_COLORS),
                          f"{still_open[t]:,}") for t in types])
    return Section("alerts", title, _png(fig, title) + note + table_html, 1, f"{total:,} alerts")


def voltage_distribution(conn, scope: Scope, config: JobConfig) -> Section:
    """Interval voltages as a share of each meter's nominal voltage, against the limits of
    the configured profile (the same numbers the detect job alerts on)."""
    title = "Voltage distribution"
    rules = config.detect.rules
    band = rules.voltage_band(1.0)  # limits as fractions of nominal
    default_v = config.registry.default_nominal_voltage_v or rules.nominal_voltage_v
    low = math.floor((band.severe_low - 0.05) * 100) / 100
    high = math.ceil((band.severe_high + 0.05) * 100) / 100
    bins = round((high - low) / BIN_WIDTH)
    where, params = scope.where("i.interval_start", "i.interval_end", "i.meter_id LIKE %s")
    ratio = "v.value / coalesce(r.nominal_voltage_v, %s)"
    buckets = conn.execute(
        f"SELECT v.kind, width_bucket({ratio}, %s, %s, %s), count(*) "
        f"FROM meter_intervals i LEFT JOIN meter_registry r ON r.meter_id = i.meter_id "
        f"CROSS JOIN LATERAL (VALUES ('lowest', i.voltage_min), ('average', i.voltage_avg), "
        f"('highest', i.voltage_max)) AS v(kind, value) "
        f"WHERE v.value IS NOT NULL AND {where} GROUP BY 1, 2",
        [default_v, low, high, bins, *params]).fetchall()
    if not buckets:
        return _empty("voltage", title, "no interval voltages in scope (meter_intervals)",
                      "0 intervals")
    counts = {kind: [0] * (bins + 2) for kind in ("average", "lowest", "highest")}
    for kind, bucket, n in buckets:
        counts[kind][bucket] = n
    import numpy as np

    edges = np.linspace(low, high, bins + 1) * 100
    fig, ax = _figure(height=3.6)
    ax.stairs(counts["average"][1:-1], edges, fill=True, alpha=0.45, color="#5d6d7e",
              label="interval average")
    ax.stairs(counts["lowest"][1:-1], edges, color="#8e44ad", label="interval lowest")
    ax.stairs(counts["highest"][1:-1], edges, color="#16a085", label="interval highest")
    name = PROFILE_NAMES.get(rules.voltage_profile, rules.voltage_profile)
    ax.axvspan(band.low * 100, band.high * 100, color="#27ae60", alpha=0.08)
    for limit, style, label in ((band.low, "--", f"{name} {_band_text(band.low, band.high)}"),
                                (band.high, "--", None),
                                (band.severe_low, ":", f"severe {band.severe_low:.0%} / "
                                                       f"{band.severe_high:.0%} (CRITICAL)"),
                                (band.severe_high, ":", None)):
        ax.axvline(limit * 100, linestyle=style, linewidth=1.3,
                   color="#e67e22" if style == "--" else "#c0392b", label=label)
    ax.set_yscale("log")  # the tails (sags, swells) are what matters, and they are rare
    ax.set_xlabel("voltage (% of the meter's nominal)")
    ax.set_ylabel("intervals")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    averages = sum(counts["average"])
    below = sum(c[0] for c in counts.values())
    above = sum(c[-1] for c in counts.values())
    note = _p(f"{averages:,} intervals; nominal voltage from meter_registry ({default_v:g} V "
              f"for unregistered meters). Profile {name}: {band.low:.0%}–{band.high:.0%} of "
              f"nominal is normal, beyond {band.severe_low:.0%} / {band.severe_high:.0%} "
              f"is CRITICAL.")
    if below or above:
        note += _p(f"Off the chart: {below:,} values below {low:.0%} (outages, deep sags) and "
                   f"{above:,} above {high:.0%}.")
    return Section("voltage", title, _png(fig, title) + note, 1, f"{averages:,} intervals")


def latency_histogram(latency: Latency | None) -> Section:
    """Alert latency samples with their median and 99th percentile."""
    title = "Alert latency"
    if latency is None:
        return _empty("latency", title, f"no latency samples given: `make bench-detect` writes "
                      f"{LATENCY_HINT}; pass it with --latency {LATENCY_HINT}", "no latency")
    if not latency.samples_ms:
        return _empty("latency", title, f"{latency.path} holds no samples", "0 latency samples")
    import numpy as np

    samples = np.asarray(latency.samples_ms, dtype=float)
    p50, p99 = np.percentile(samples, [50, 99])
    lowest, highest = samples.min(), samples.max()
    fig, ax = _figure(height=3.2)
    # Latencies have long tails: log-spaced bins when they span two orders of magnitude.
    wide = lowest > 0 and highest / lowest >= 100
    bins = np.geomspace(lowest, highest, 40) if wide else 40
    ax.hist(samples, bins=bins, color="#5d6d7e", alpha=0.8)
    if wide:
        ax.set_xscale("log")
    ax.axvline(p50, color="#27ae60", linestyle="--", label=f"p50 {p50:,.1f} ms")
    ax.axvline(p99, color="#c0392b", linestyle="--", label=f"p99 {p99:,.1f} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("samples")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    if latency.label:
        ax.set_title(latency.label, fontsize="medium")
    table_html = _table(["samples", "p50 (ms)", "p99 (ms)", "max (ms)", "from"],
                        [(f"{len(samples):,}", f"{p50:,.1f}", f"{p99:,.1f}", f"{highest:,.1f}",
                          str(latency.path))])
    return Section("latency", title, _png(fig, title) + table_html, 1,
                   f"{len(samples):,} latency samples")


# --------------------------------------------------------------------------- drawing, HTML

def _figure(height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height), layout="constrained")
    return fig, fig.add_subplot()


def _time_axis(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.grid(alpha=0.3)


def _png(fig, alt: str) -> str:
    buffer = io.BytesIO()
    # No Software metadata: it carries a URL, and the page holds none.
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _empty(section_id: str, title: str, why: str, summary: str) -> Section:
    return Section(section_id, title, f'<p class="empty">No data: {html.escape(why)}.</p>', 0,
                   summary)


def _p(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _table(header: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _band_text(low: float, high: float) -> str:
    if math.isclose(1 - low, high - 1):
        return f"±{(high - 1) * 100:g}%"
    return f"{low:.0%}–{high:.0%}"


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta, .note { color: #555; font-size: 0.9em; }
.empty { color: #7d6608; background: #fef9e7; border: 1px solid #f4d03f; padding: 0.6em 1em; }
img.plot { max-width: 100%; display: block; }
table { border-collapse: collapse; font-size: 0.85em; margin-top: 0.6em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def render_page(sections: list[Section], meta: list[str]) -> str:
    body = "\n".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>\n{s.body}</section>'
                     for s in sections)
    header = "".join(f'<p class="meta">{html.escape(line)}</p>' for line in meta)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>gridstream report</title><style>{CSS}</style></head>\n<body>"
            f"<header><h1>gridstream report</h1>{header}</header>\n{body}\n</body></html>\n")


# --------------------------------------------------------------------------- command

def load_latency(path: Path) -> Latency:
    shape = '{"samples_ms": [milliseconds, ...], "label": "..."}'
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"--latency {path}: no such file (`make bench-detect` writes "
                          f"{LATENCY_HINT})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"--latency {path}: cannot read it ({err})") from None
    except json.JSONDecodeError as err:
        raise ReportError(f"--latency {path}: not JSON ({err.msg} at line {err.lineno}); "
                          f"expected {shape}") from None
    samples = raw.get("samples_ms") if isinstance(raw, dict) else None
    label = raw.get("label", "") if isinstance(raw, dict) else ""
    valid = isinstance(samples, list) and all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s >= 0
        for s in samples)
    if not valid or not isinstance(label, str):
        raise ReportError(f"--latency {path}: expected {shape} with finite, non-negative "
                          f"numbers")
    return Latency([float(s) for s in samples], label, path)


def parse_time(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{flag} {text!r}: not an ISO 8601 time (e.g. 2026-01-01T00:00Z)"
                          ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def check_out(path: Path) -> None:
    """Fail before any query if the report cannot be written where asked."""
    if path.is_dir():
        raise ReportError(f"--out {path}: is a folder; name a file, e.g. {path / 'report.html'}")
    folder = path.parent
    if not folder.is_dir():
        raise ReportError(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ReportError(f"--out {path}: folder {folder} is not writable")


def write_atomically(path: Path, text: str) -> None:
    """A reader never sees half a report: write beside it, then rename over it."""
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                         delete=False, encoding="utf-8") as handle:
            handle.write(text)
        os.replace(handle.name, path)
    except OSError as err:
        raise ReportError(f"--out {path}: cannot write it ({err.strerror or err})") from None


def build(conn, config: JobConfig, scope: Scope, latency: Latency | None) -> list[Section]:
    conn.execute("SET TIME ZONE 'UTC'")
    return [load_curves(conn, scope, "region"), load_curves(conn, scope, "feeder"),
            alert_timeline(conn, scope), voltage_distribution(conn, scope, config),
            latency_histogram(latency)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="job config, e.g. conf/local.yaml")
    parser.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    parser.add_argument("--latency", type=Path,
                        help=f'JSON {{"samples_ms": [...], "label": "..."}}, e.g. {LATENCY_HINT}')
    parser.add_argument("--since", help="ISO 8601 start of the window (UTC if no offset)")
    parser.add_argument("--until", help="ISO 8601 end of the window (UTC if no offset)")
    parser.add_argument("--meter-prefix", help="only meters whose id starts with this, and "
                                               "their feeders and regions")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import psycopg

    from tools.stack import pg_connect_kwargs

    try:
        config = load_config(args.config)
        scope = Scope(parse_time(args.since, "--since"), parse_time(args.until, "--until"),
                      args.meter_prefix)
        if scope.since and scope.until and scope.since >= scope.until:
            raise ReportError(f"--since {args.since} is not before --until {args.until}")
        check_out(args.out)
        latency = load_latency(args.latency) if args.latency else None
        try:
            import matplotlib
        except ImportError:
            raise ReportError("matplotlib is not installed: run `make setup`") from None
        matplotlib.use("Agg")  # no display, and no pyplot state: figures are plain objects
        with psycopg.connect(**pg_connect_kwargs(config), connect_timeout=5) as conn:
            sections = build(conn, config, scope, latency)
        pg = config.postgres
        meta = [f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from "
                f"{pg.user}@{pg.host}:{pg.port}/{pg.database} ({args.config}).",
                "Window: " + (f"{args.since or 'the beginning'} to {args.until or 'now'}"
                              if args.since or args.until else "everything in the tables")
                + (f"; meters starting with {args.meter_prefix!r}" if args.meter_prefix
                   else "") + "."]
        write_atomically(args.out, render_page(sections, meta))
    except (ReportError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as err:
        first = (str(err).strip().splitlines() or ["no detail"])[0]
        print(f"error: cannot reach PostgreSQL ({first}): start it with `make up` or fix "
              f"postgres in {args.config}", file=sys.stderr)
        return 2
    except psycopg.errors.UndefinedTable as err:
        first = str(err).strip().splitlines()[0]
        print(f"error: {first} in database {config.postgres.database}: apply schemas/sql "
              f"(`make up` does it locally)", file=sys.stderr)
        return 2
    size = args.out.stat().st_size
    print(f"report: {args.out} ({size / 1024:,.0f} KB, {sum(s.plots for s in sections)} plots;"
          f" {', '.join(s.summary for s in sections)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
