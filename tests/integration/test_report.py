"""The HTML report from rows in the real PostgreSQL, checked in a real headless browser.

Rows go in under the scenario's own meter, feeder and region ids, and the report runs with
--meter-prefix, so other tests' rows in the shared database neither show up nor matter.
Chromium (Debian's package; .ci/run installs it) loads the page with every host name
unresolvable, and a probe script appended to a copy of the page reports, per section, the
images that decoded and laid out, and every resource the page tried to fetch.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from jobs.config import REPO_ROOT
from tests.conftest import LOCAL_CONFIG, T0
from tools.stack import pg_connect_kwargs

pytestmark = pytest.mark.integration

START = datetime.fromtimestamp(T0 / 1000, timezone.utc)
Q = timedelta(minutes=15)
HOUR = timedelta(hours=1)
SECTIONS = ("load-region", "load-feeder", "alerts", "voltage", "latency")

# Runs after the load event: by then every <img> has decoded (or failed to). The size alone
# is not enough (a truncated PNG has its width from the header and no pixels), so each image
# is painted on a canvas: a plot is opaque all over (white figure background) and has ink.
PROBE = """<script>
function painted(img) {
  if (!img.complete || img.naturalWidth === 0 || img.getBoundingClientRect().width === 0) {
    return false;
  }
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let opaque = 0, ink = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] === 255) opaque++;
    if (pixels[i] + pixels[i + 1] + pixels[i + 2] < 600) ink++;
  }
  const total = pixels.length / 4;
  return opaque === total && ink > total / 100;
}
window.addEventListener('load', () => {
  const result = {sections: {}, images: 0, rendered: 0};
  for (const section of document.querySelectorAll('section')) {
    const ok = [...section.querySelectorAll('img')].filter(painted);
    result.sections[section.id] = ok.length;
    result.rendered += ok.length;
  }
  result.images = document.images.length;
  result.fetched = performance.getEntriesByType('resource').map(entry => entry.name)
    .filter(name => !name.startsWith('data:'));
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def run_report(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.report", "--config", str(LOCAL_CONFIG),
                           *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def browser_probe(page, tmp_path) -> dict:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium not found: apt-get install chromium (.ci/run installs it)")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}",
         # Offline: any host name fails to resolve, so a page that needs the network shows it.
         "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, (f"no probe output from chromium:\n{result.stdout[-2000:]}\n"
                   f"{result.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))


def insert_rows(conn, tag: str) -> None:
    """Two regions, a feeder each, three meters a feeder; four hours of data with a sag, a
    swell, an outage and a feeder outage. Plus one meter of another prefix, to be left out."""
    meters = {f"{tag}-m{n}": (f"{tag}-F{1 + (n > 3)}", f"{tag}-{'north' if n <= 3 else 'south'}")
              for n in range(1, 7)}
    outsider = f"x{tag}-m1"
    registry = [(m, f, r) for m, (f, r) in meters.items()]
    registry.append((outsider, f"x{tag}-F9", f"x{tag}-west"))
    conn.cursor().executemany(
        "INSERT INTO meter_registry (meter_id, feeder_id, region, nominal_voltage_v) "
        "VALUES (%s, %s, %s, 230)", registry)
    intervals = []
    for meter, feeder, region in registry:
        for k in range(16):
            start = START + k * Q
            volts = 230 + (k % 5) - 2
            if meter == f"{tag}-m2" and k == 6:
                volts = 201  # a sag below 207 V
            if meter == f"{tag}-m5" and k == 9:
                volts = 258  # a swell above 253 V
            intervals.append((meter, start, start + Q, feeder, region, 0.5 + k / 40, volts - 3,
                              volts + 2, volts))
    conn.cursor().executemany(
        "INSERT INTO meter_intervals (meter_id, interval_start, interval_end, feeder_id, region, "
        "kwh_import, voltage_min, voltage_max, voltage_avg, reading_count, quality) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, 'complete')", intervals)
    loads = {f"{tag}-F1": f"{tag}-north", f"{tag}-F2": f"{tag}-south", f"x{tag}-F9": f"x{tag}-west"}
    for h in range(4):
        start = START + h * HOUR
        for i, (feeder, region) in enumerate(loads.items()):
            kwh = 6.0 + h + 3 * i
            row = (start, start + HOUR, kwh, 0.0, kwh * 1.4, kwh, 3, 3)
            conn.execute("INSERT INTO feeder_load (feeder_id, region, period_start, period_end, "
                         "kwh_import, kwh_export, peak_kw, avg_kw, meters_reporting, "
                         "meters_registered) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         (feeder, region, *row))
            conn.execute("INSERT INTO region_load (region, period_start, period_end, kwh_import, "
                         "kwh_export, peak_kw, avg_kw, meters_reporting, meters_registered) "
                         "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", (region, *row))
    alerts = [
        (f"{tag}-a1", f"{tag}-m2", f"{tag}-F1", f"{tag}-north", "VOLTAGE_SAG", "MAJOR", "CLEARED",
         START + 7 * Q, START + 8 * Q),
        (f"{tag}-a2", f"{tag}-m5", f"{tag}-F2", f"{tag}-south", "VOLTAGE_SWELL", "MAJOR",
         "CLEARED", START + 10 * Q, START + 11 * Q),
        (f"{tag}-a3", f"{tag}-m4", f"{tag}-F2", f"{tag}-south", "OUTAGE", "CRITICAL", "OPEN",
         START + 12 * Q, None),
        (f"{tag}-a4", None, f"{tag}-F2", f"{tag}-south", "FEEDER_OUTAGE", "CRITICAL", "CLEARED",
         START + 13 * Q, START + 14 * Q),
        (f"{tag}-a5", f"{tag}-m3", f"{tag}-F1", f"{tag}-north", "CONSUMPTION_SPIKE", "MINOR",
         "CLEARED", START + 2 * Q, START + 3 * Q),
        (f"x{tag}-a9", outsider, f"x{tag}-F9", f"x{tag}-west", "REGISTER_ROLLBACK", "MAJOR",
         "OPEN", START, None),
    ]
    conn.cursor().executemany(
        "INSERT INTO alerts (alert_id, meter_id, feeder_id, region, type, severity, state, "
        "opened_ts, cleared_ts, detected_ts, message) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now(), 'inserted by test_report')", alerts)


@pytest.fixture
def report_rows(scenario):
    """The scenario's rows in the real tables; removed afterwards (they share a database)."""
    kwargs = pg_connect_kwargs(scenario.config)
    with psycopg.connect(**kwargs) as conn:
        insert_rows(conn, scenario.tag)
    yield scenario.tag
    with psycopg.connect(**kwargs) as conn:
        for prefix in (scenario.tag, f"x{scenario.tag}"):
            like = prefix + "%"
            conn.execute("DELETE FROM alerts WHERE alert_id LIKE %s", (like,))
            conn.execute("DELETE FROM meter_intervals WHERE meter_id LIKE %s", (like,))
            conn.execute("DELETE FROM feeder_load WHERE feeder_id LIKE %s", (like,))
            conn.execute("DELETE FROM region_load WHERE region LIKE %s", (like,))
            conn.execute("DELETE FROM meter_registry WHERE meter_id LIKE %s", (like,))


def test_report_renders_every_plot_in_a_browser(report_rows, tmp_path):
    tag = report_rows
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps({"samples_ms": [40 + (i * 37) % 400 for i in range(500)],
                                   "label": "detect, test samples"}))
    out = tmp_path / "report.html"
    result = run_report("--out", str(out), "--latency", str(latency), "--meter-prefix", tag)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"report: {out} (") and "5 plots" in lines[0]

    page = out.read_text()
    # Self-contained: nothing to fetch, no script, no stylesheet link, no URL at all.
    assert not re.search(r"https?:|<link|<script|@import|url\(|src=\"(?!data:image/png)", page)
    for name in (f"{tag}-north", f"{tag}-south", f"{tag}-F1", f"{tag}-F2", "VOLTAGE_SAG",
                 "VOLTAGE_SWELL", "OUTAGE", "FEEDER_OUTAGE", "CONSUMPTION_SPIKE"):
        assert f"<td>{name}</td>" in page, name
    # Another prefix's meter, feeder, region and alert are out of scope.
    assert f"x{tag}" not in page and "REGISTER_ROLLBACK" not in page
    assert 'class="empty"' not in page

    probe = browser_probe(out, tmp_path)
    assert probe["fetched"] == []
    assert probe["images"] == len(SECTIONS) == probe["rendered"], probe
    for section in SECTIONS:
        assert probe["sections"].get(section) == 1, (section, probe)


def test_report_without_data_says_so_per_section(local_stack, tmp_path):
    out = tmp_path / "empty.html"
    result = run_report("--out", str(out), "--meter-prefix", "no-such-meter-",
                        "--since", "2026-01-01T00:00Z", "--until", "2026-01-02T00:00Z")
    assert result.returncode == 0, result.stderr
    assert "0 plots" in result.stdout
    page = out.read_text()
    assert page.count('class="empty"') == len(SECTIONS) and "<img" not in page
    assert "make bench-detect" in page and ".stack/bench/detect-latency.json" in page


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("args", "env", "expected"), [
    (("--out", "{tmp}/r.html"), {"GRIDSTREAM_PG_PORT": "{port}"}, "cannot reach PostgreSQL"),
    (("--out", "{tmp}/no-folder/r.html"), {}, "folder {tmp}/no-folder does not exist"),
    (("--out", "{tmp}"), {}, "is a folder"),
    (("--out", "{tmp}/r.html", "--since", "yesterday"), {}, "not an ISO 8601 time"),
    (("--out", "{tmp}/r.html", "--latency", "{tmp}/none.json"), {}, "make bench-detect"),
    (("--out", "{tmp}/r.html", "--latency", "{tmp}/bad.json"), {}, "not JSON"),
], ids=["database-down", "no-folder", "out-is-folder", "bad-time", "no-latency-file",
        "bad-latency-file"])
def test_user_errors_are_one_line(tmp_path, args, env, expected):
    (tmp_path / "bad.json").write_text('{"samples_ms": [1,')
    values = {"tmp": tmp_path, "port": free_port()}
    result = run_report(*(a.format(**values) for a in args),
                        **{k: v.format(**values) for k, v in env.items()})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected.format(**values) in lines[0]
