"""Detect job scenarios on the real broker and database, with exact expected alerts.

One fleet of small stories runs through one bounded job per parallelism; each test asserts on
its own meters. Alerts are read back as a read_committed consumer would (the non-critical
ones go through Kafka transactions) and from the alerts table.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import MIN, T0, reading
from tools import registry
from udfs.alert_record import alert_id

pytestmark = pytest.mark.integration

Q = 15 * MIN  # one interval
S = 1_000     # one second

REGISTRY = """meter_id,feeder_id,region,nominal_voltage_v
{steady},{F1},{north},230
{sag},{F1},{north},230
{severe},{F1},{north},230
{outage},{F1},{north},230
{rollback},{F1},{north},230
{fa},{F2},{north},230
{fb},{F2},{north},230
{fc},{F2},{north},230
{fd},{F2},{north},230
"""
METERS = ("steady", "sag", "severe", "outage", "rollback", "fa", "fb", "fc", "fd", "stranger")


def normal(meter: str, ts: int, kwh: float, **fields) -> tuple[str, bytes]:
    return reading(meter, ts, **{"kwh_import": kwh, "voltage_v": 231.0, "frequency_hz": 50.0,
                                 "power_factor": 0.97, **fields})


def stories(m) -> list:
    records = []
    for i in range(4):
        t = T0 + i * Q
        records += [normal(m(name), t, 100.0 + i) for name in
                    ("steady", "fd", "stranger")]
    records += [
        normal(m("sag"), T0, 10.0),
        normal(m("sag"), T0 + Q, 11.0, voltage_v=200.0),   # below 207 V: MAJOR
        normal(m("sag"), T0 + Q, 11.0, voltage_v=200.0),   # its duplicate
        normal(m("sag"), T0 + 2 * Q, 12.0),
        normal(m("severe"), T0, 10.0),
        normal(m("severe"), T0 + Q, 11.0, voltage_v=190.0),  # below 195.5 V: CRITICAL
        normal(m("severe"), T0 + 2 * Q, 12.0),
        normal(m("outage"), T0, 10.0),
        reading(m("outage"), T0 + Q - 7 * MIN, kwh_import=10.5, voltage_v=0.0,
                status=["POWER_FAIL"]),
        reading(m("outage"), T0 + 2 * Q + 3 * MIN, kwh_import=10.5, voltage_v=229.0,
                status=["POWER_RESTORED"]),
        normal(m("rollback"), T0, 500.0),
        normal(m("rollback"), T0 + Q, 450.0),
        normal(m("rollback"), T0 + 2 * Q, 460.0),
    ]
    # Three of feeder F2's four meters lose supply within 20 s: a feeder outage.
    for name in ("fa", "fb", "fc"):
        records.append(normal(m(name), T0, 10.0))
    for k, name in enumerate(("fa", "fb", "fc")):
        records.append(reading(m(name), T0 + Q + k * 10 * S, kwh_import=10.2, voltage_v=0.0,
                               status=["POWER_FAIL"]))
    for k, name in enumerate(("fa", "fb", "fc")):
        records.append(reading(m(name), T0 + 3 * Q + k * MIN, kwh_import=10.2,
                               voltage_v=230.0, status=["POWER_RESTORED"]))
    return records


def alerts_of(records: list[dict], subject: str) -> list[tuple]:
    return sorted((r["type"], r["severity"], r["state"], r["event_ts"] - T0, r["alert_id"])
                  for r in records if (r["meter_id"] or r["feeder_id"]) == subject)


def expected(subject: str, kind: str, severity: str, opened: int, cleared: int) -> list[tuple]:
    ident = alert_id(subject, kind, T0 + opened)
    return [(kind, severity, "CLEARED", cleared, ident), (kind, severity, "OPEN", opened, ident)]


@pytest.fixture(scope="module", params=[1, 2], ids=["parallelism-1", "parallelism-2"])
def detected(request, module_scenario):
    scenario = module_scenario(f"detect-p{request.param}", partitions=1)
    m = scenario.meter_named
    csv = scenario.tmp / "registry.csv"
    csv.write_text(REGISTRY.format(**{s: m(s) for s in (*METERS, "F1", "F2", "north")}))
    registry.load(scenario.config, csv)
    scenario.produce(stories(m))
    scenario.run_job("detect", parallelism=request.param)
    alerts = scenario.consume(scenario.config.topics.alerts.name, 20, read_committed=True)
    return scenario, alerts


def test_clean_meters_raise_nothing(detected):
    scenario, alerts = detected
    for name in ("steady", "fd", "stranger"):  # stranger is not in the registry
        assert alerts_of(alerts, scenario.meter_named(name)) == []


def test_sag_opens_once_and_clears_despite_the_duplicate(detected):
    scenario, alerts = detected
    meter = scenario.meter_named("sag")
    assert alerts_of(alerts, meter) == expected(meter, "VOLTAGE_SAG", "MAJOR", Q, 2 * Q)


def test_severe_sag_is_critical(detected):
    scenario, alerts = detected
    meter = scenario.meter_named("severe")
    assert alerts_of(alerts, meter) == expected(meter, "VOLTAGE_SAG", "CRITICAL", Q, 2 * Q)


def test_last_gasp_opens_an_outage_and_restoration_clears_it(detected):
    scenario, alerts = detected
    meter = scenario.meter_named("outage")
    assert alerts_of(alerts, meter) == expected(meter, "OUTAGE", "CRITICAL", Q - 7 * MIN,
                                                2 * Q + 3 * MIN)


def test_rollback_opens_and_the_next_reading_clears_it(detected):
    scenario, alerts = detected
    meter = scenario.meter_named("rollback")
    assert alerts_of(alerts, meter) == expected(meter, "REGISTER_ROLLBACK", "MAJOR", Q, 2 * Q)


def test_feeder_outage_is_one_alert_instead_of_a_storm(detected):
    scenario, alerts = detected
    feeder = scenario.meter_named("F2")
    # Opens at the first member's last gasp; clears at the last member's restoration.
    assert alerts_of(alerts, feeder) == expected(feeder, "FEEDER_OUTAGE", "CRITICAL", Q,
                                                 3 * Q + 2 * MIN)
    # OUTAGE is CRITICAL at once: the first two (half the feeder) go out before anything can
    # know it is a feeder outage; the third completes the group and is folded into it.
    members = {scenario.meter_named(n): k for k, n in enumerate(("fa", "fb", "fc"))}
    paged = {r["meter_id"] for r in alerts if r["meter_id"] in members}
    assert len(paged) == 2
    for meter in paged:
        k = members[meter]
        assert alerts_of(alerts, meter) == expected(meter, "OUTAGE", "CRITICAL", Q + k * 10 * S,
                                                    3 * Q + k * MIN)


def test_alerts_table_holds_each_alert_once_in_its_last_state(detected):
    scenario, alerts = detected
    rows = scenario.query(
        "SELECT alert_id, type, state, (extract(epoch FROM opened_ts) * 1000)::bigint,"
        " (extract(epoch FROM cleared_ts) * 1000)::bigint FROM alerts WHERE feeder_id LIKE %s",
        f"{scenario.tag}-%")
    opened = {r["alert_id"]: r["event_ts"] for r in alerts if r["state"] == "OPEN"}
    cleared = {r["alert_id"]: r["event_ts"] for r in alerts if r["state"] == "CLEARED"}
    assert sorted(rows) == sorted(
        (ident, next(r["type"] for r in alerts if r["alert_id"] == ident), "CLEARED",
         opened[ident], cleared[ident]) for ident in opened)


def test_critical_alerts_also_go_to_the_pagers_topic_at_once(detected):
    # Written without a transaction, so a read_committed pager never waits for a checkpoint.
    scenario, alerts = detected
    critical = sorted((r["alert_id"], r["state"]) for r in alerts if r["severity"] == "CRITICAL")
    paged = scenario.consume(scenario.config.topics.critical_alerts.name, len(critical),
                             read_committed=True)
    assert sorted((r["alert_id"], r["state"]) for r in paged) == critical


def test_replay_gives_the_same_alert_ids(detected):
    scenario, alerts = detected
    # Which feeder-outage members are paged before the feeder alert opens depends on the order
    # their outages reach the correlator (at parallelism 2, from different subtasks); every
    # other alert, the feeder's included, is the same on a replay.
    members = {scenario.meter_named(n) for n in ("fa", "fb", "fc")}

    def stable(records) -> list[tuple]:
        return sorted((r["alert_id"], r["state"]) for r in records
                      if not (r["type"] == "OUTAGE" and r["meter_id"] in members))

    tag = f"{scenario.tag}-%"
    sql = "SELECT alert_id, state, type, meter_id FROM alerts WHERE feeder_id LIKE %s"
    before = [{"alert_id": a, "state": s, "type": t, "meter_id": m}
              for a, s, t, m in scenario.query(sql, tag)]
    scenario.run_job("detect")  # a new consumer group: the whole topic again
    again = scenario.consume(scenario.config.topics.alerts.name, 2 * len(alerts),
                             read_committed=True)
    assert stable(again) == sorted(2 * stable(alerts))
    after = [{"alert_id": a, "state": s, "type": t, "meter_id": m}
             for a, s, t, m in scenario.query(sql, tag)]
    assert stable(after) == stable(before)


def test_stale_meter_fires_while_its_partition_is_quiet(module_scenario):
    # The stale meter's partition goes quiet; once it is idle (1 s), the other partition's
    # readings alone move the watermark past the stale deadline (last reading + 3 intervals).
    scenario = module_scenario("detect-stale", partitions=2,
                               overrides={"event_time": {"idle_timeout": "1s"}})
    stale, busy = scenario.meter_named("quiet"), scenario.meter_named("busy")
    scenario.produce([normal(stale, T0 + i * Q, 10.0 + i) for i in range(2)], partition=0)
    scenario.produce([normal(busy, T0 + i * Q, 10.0 + i) for i in range(8)], partition=1)
    topic = scenario.config.topics.alerts.name
    with scenario.running_job("detect", parallelism=2):
        opened = _wait_for(scenario, topic, 1)
        assert alerts_of(opened, stale) == [
            ("STALE_METER", "MINOR", "OPEN", 4 * Q, alert_id(stale, "STALE_METER", T0 + 4 * Q))]
        scenario.produce([normal(stale, T0 + 9 * Q, 12.0)], partition=0)
        both = _wait_for(scenario, topic, 2)
    assert alerts_of(both, stale) == expected(stale, "STALE_METER", "MINOR", 4 * Q, 9 * Q)
    assert alerts_of(both, busy) == []


def _wait_for(scenario, topic: str, count: int, timeout_s: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        records = scenario.consume(topic, count, timeout_s=5, read_committed=True)
        if len(records) >= count or time.monotonic() > deadline:
            return records


def test_simulated_fleet_scores_95_percent_on_every_alert_type(local_stack, tmp_path):
    """200 meters x 3 days with every anomaly type and data fault at the default rates through
    the real broker, the job (parallelism 2) and PostgreSQL, scored against the ground truth."""
    from jobs.config import REPO_ROOT
    from tools.detection_score import table
    from tools.score_detection import score_fleet

    run = score_fleet(REPO_ROOT / "conf" / "local.yaml", meters=200, days=3, seed=7,
                      profile="en50160", clean=False, parallelism=2, workdir=tmp_path,
                      progress=lambda _: None)
    scores = run.scores
    assert all(s.expected >= 1 for s in scores.values()), table(scores)
    assert all(s.precision >= 0.95 and s.recall >= 0.95 for s in scores.values()), table(scores)
    # The table holds every alert once, in its last state, as the topic tells it.
    last = {a.alert_id: a.state for a in sorted(run.alerts, key=lambda a: a.state == "CLEARED")}
    rows = query(run.config, "SELECT alert_id, state FROM alerts WHERE feeder_id LIKE %s",
                          run.config.topics.alerts.name.split(".")[0] + ":%")
    assert dict(rows) == last


def test_a_clean_fleet_raises_no_alert(local_stack, tmp_path):
    from jobs.config import REPO_ROOT
    from tools.score_detection import score_fleet

    run = score_fleet(REPO_ROOT / "conf" / "local.yaml", meters=100, days=2, seed=11,
                      profile="ansi", clean=True, parallelism=2, workdir=tmp_path,
                      progress=lambda _: None)
    assert run.alerts == []
    assert run.summary["records"] > 100 * 2 * 96 * 0.9


def query(config, sql: str, *params) -> list[tuple]:
    import psycopg

    from tools import stack

    with psycopg.connect(**stack.pg_connect_kwargs(config)) as conn:
        return conn.execute(sql, params).fetchall()
