"""Feeder correlation: half a feeder (and at least three meters) losing power within a minute is
one FEEDER_OUTAGE; the member OUTAGEs after it are folded into it; it clears with the last."""

from __future__ import annotations

import pickle

import pytest

from udfs.alert_record import Alert, alert_id
from udfs.detection_thresholds import DetectionThresholds
from udfs.feeder_correlation import FeederCorrelator, FeederState, suppresses_meter_outage

SEC = 1000
T0 = 1_767_225_600_000
NOW = T0 + 86_400_000
FEEDER, REGION = "R01-F001", "R01"


def outage(meter: str, ts: int, state: str = "OPEN", feeder: str = FEEDER) -> Alert:
    """A meter's OUTAGE alert as MeterDetector makes it."""
    opened = ts if state == "OPEN" else T0
    return Alert(alert_id(meter, "OUTAGE", opened), meter, feeder, REGION, "OUTAGE", "CRITICAL",
                 state, ts, NOW, 0.0, 11.5, "power failure (last gasp)")


class Feeder:
    def __init__(self, registered: int, thresholds=None, feeder: str = FEEDER):
        self.correlator = FeederCorrelator(thresholds)
        self.registered, self.feeder = registered, feeder
        self.state: FeederState | None = None
        self.emitted: list[Alert] = []

    def send(self, alert: Alert) -> list[tuple]:
        self.state, out = self.correlator.on_meter_outage(self.state, alert, self.registered,
                                                          NOW)
        self.emitted += out
        return [(a.type, a.state, a.meter_id, a.event_ts) for a in out]

    def fail(self, meter: str, ts: int) -> list[tuple]:
        return self.send(outage(meter, ts, feeder=self.feeder))

    def restore(self, meter: str, ts: int) -> list[tuple]:
        return self.send(outage(meter, ts, "CLEARED", feeder=self.feeder))


def test_a_single_outage_passes_through_opened_and_cleared():
    feeder = Feeder(10)
    assert feeder.fail("m1", T0) == [("OUTAGE", "OPEN", "m1", T0)]
    assert feeder.restore("m1", T0 + 600 * SEC) == [("OUTAGE", "CLEARED", "m1", T0 + 600 * SEC)]
    assert not suppresses_meter_outage(feeder.state)


def test_half_the_feeder_within_a_minute_opens_one_feeder_outage():
    feeder = Feeder(10)  # needs 5
    for k in range(4):
        assert feeder.fail(f"m{k}", T0 + k * SEC) == [("OUTAGE", "OPEN", f"m{k}", T0 + k * SEC)]
    assert not suppresses_meter_outage(feeder.state)
    assert feeder.fail("m4", T0 + 4 * SEC) == [("FEEDER_OUTAGE", "OPEN", None, T0)]
    assert suppresses_meter_outage(feeder.state)
    (alert,) = feeder.emitted[-1:]
    assert alert == Alert(alert_id(FEEDER, "FEEDER_OUTAGE", T0), None, FEEDER, REGION,
                          "FEEDER_OUTAGE", "CRITICAL", "OPEN", T0, NOW, 5.0, 5.0,
                          f"5 of 10 meters of feeder {FEEDER} lost power within 60 s: "
                          f"m0, m1, m2, m3, m4")
    # Later members are folded in: no storm.
    assert feeder.fail("m5", T0 + 9 * SEC) == []
    assert feeder.fail("m6", T0 + 300 * SEC) == []


def test_the_feeder_outage_clears_when_its_last_member_is_restored():
    feeder = Feeder(6)  # needs 3
    feeder.fail("m0", T0)
    feeder.fail("m1", T0 + 2 * SEC)
    feeder.fail("m2", T0 + 5 * SEC)   # completes the group: folded
    feeder.fail("m3", T0 + 8 * SEC)   # joins it: folded
    back = T0 + 3_600 * SEC
    # Meters whose OUTAGE went out get their CLEARED; folded ones do not.
    assert feeder.restore("m2", back) == []
    assert feeder.restore("m0", back + SEC) == [("OUTAGE", "CLEARED", "m0", back + SEC)]
    assert feeder.restore("m3", back + 2 * SEC) == []
    assert feeder.restore("m1", back + 9 * SEC) == [
        ("OUTAGE", "CLEARED", "m1", back + 9 * SEC),
        ("FEEDER_OUTAGE", "CLEARED", None, back + 9 * SEC)]
    opened, cleared = [a for a in feeder.emitted if a.type == "FEEDER_OUTAGE"]
    assert opened.alert_id == cleared.alert_id
    assert not suppresses_meter_outage(feeder.state)
    # The feeder is back to normal: the next outage is a meter's own.
    assert feeder.fail("m4", back + 7_200 * SEC) == [("OUTAGE", "OPEN", "m4", back + 7_200 * SEC)]


@pytest.mark.parametrize("registered, needed", [(4, 3), (5, 3), (6, 3), (7, 4), (11, 6)])
def test_at_the_share_and_at_the_minimum_count(registered, needed):
    feeder = Feeder(registered)
    for k in range(needed - 1):
        assert feeder.fail(f"m{k}", T0 + k * SEC)[0][0] == "OUTAGE"
    assert feeder.fail("last", T0 + 30 * SEC) == [("FEEDER_OUTAGE", "OPEN", None, T0)]
    assert feeder.emitted[-1].threshold == needed


def test_two_meters_are_never_a_feeder_outage_even_on_a_tiny_feeder():
    feeder = Feeder(2)
    assert [a[0] for a in feeder.fail("m0", T0) + feeder.fail("m1", T0 + SEC)] == [
        "OUTAGE", "OUTAGE"]


def test_outages_must_fall_within_the_window():
    feeder = Feeder(4)  # needs 3
    feeder.fail("m0", T0)
    feeder.fail("m1", T0 + 30 * SEC)
    assert feeder.fail("m2", T0 + 61 * SEC) == [("OUTAGE", "OPEN", "m2", T0 + 61 * SEC)]
    # Exactly a minute after m1 still counts (m1, m2 and this one).
    assert feeder.fail("m3", T0 + 90 * SEC) == [("FEEDER_OUTAGE", "OPEN", None, T0 + 30 * SEC)]


def test_restored_meters_no_longer_count():
    feeder = Feeder(4)
    feeder.fail("m0", T0)
    feeder.restore("m0", T0 + 10 * SEC)
    feeder.fail("m1", T0 + 20 * SEC)
    assert feeder.fail("m2", T0 + 30 * SEC) == [("OUTAGE", "OPEN", "m2", T0 + 30 * SEC)]


def test_unknown_feeders_and_feeders_without_registered_meters_never_correlate():
    for feeder in (Feeder(10, feeder="unknown"), Feeder(0)):
        out = [feeder.fail(f"m{k}", T0 + k * SEC) for k in range(6)]
        assert all(o[0][:2] == ("OUTAGE", "OPEN") for o in out)


def test_a_cleared_outage_the_feeder_never_saw_passes_through():
    feeder = Feeder(10)
    assert feeder.restore("m9", T0) == [("OUTAGE", "CLEARED", "m9", T0)]


def test_the_share_and_window_come_from_the_thresholds():
    feeder = Feeder(10, DetectionThresholds(feeder_outage_share=0.3,
                                            feeder_outage_window_ms=5_000))
    feeder.fail("m0", T0)
    feeder.fail("m1", T0 + 6 * SEC)
    feeder.fail("m2", T0 + 7 * SEC)
    assert feeder.fail("m3", T0 + 8 * SEC) == [("FEEDER_OUTAGE", "OPEN", None, T0 + 6 * SEC)]


def test_replay_gives_the_same_feeder_alert_id_and_the_state_pickles():
    def run() -> Feeder:
        feeder = Feeder(6)
        for k in range(4):
            feeder.fail(f"m{k}", T0 + 3 * k * SEC)
        return feeder
    first, second = run(), run()
    assert first.emitted == second.emitted
    copy = pickle.loads(pickle.dumps(first.state))
    assert suppresses_meter_outage(copy) and copy.group == first.state.group


def test_only_outage_alerts_are_correlated():
    with pytest.raises(ValueError):
        Feeder(10).send(outage("m0", T0)._replace(type="VOLTAGE_SAG"))


def test_a_restoration_that_arrives_before_the_other_outages_still_counts():
    # Meters on different Kafka partitions: in a catch-up, m0's whole outage can arrive before
    # m1's and m2's last gasps. In event time all three were out together.
    feeder = Feeder(4)  # needs 3
    minute = 60 * SEC
    assert feeder.fail("m0", T0) == [("OUTAGE", "OPEN", "m0", T0)]
    assert feeder.restore("m0", T0 + 30 * minute) == [("OUTAGE", "CLEARED", "m0", T0 + 30 * minute)]
    assert feeder.fail("m1", T0 + 10 * SEC) == [("OUTAGE", "OPEN", "m1", T0 + 10 * SEC)]
    assert feeder.fail("m2", T0 + 20 * SEC) == [("FEEDER_OUTAGE", "OPEN", None, T0)]
    assert feeder.restore("m1", T0 + 40 * minute) == [
        ("OUTAGE", "CLEARED", "m1", T0 + 40 * minute)]
    # m2's outage was folded into the feeder's; its restoration, the last, clears the feeder.
    assert feeder.restore("m2", T0 + 45 * minute) == [
        ("FEEDER_OUTAGE", "CLEARED", None, T0 + 45 * minute)]
    assert not suppresses_meter_outage(feeder.state)


def test_a_feeder_outage_found_after_members_were_restored_clears_at_the_latest_restoration():
    feeder = Feeder(3)  # needs 3
    for k in range(2):
        feeder.fail(f"m{k}", T0 + k * SEC)
        feeder.restore(f"m{k}", T0 + 600 * SEC + k * SEC)
    assert feeder.fail("m2", T0 + 2 * SEC) == [("FEEDER_OUTAGE", "OPEN", None, T0)]
    # m2 comes back first in event time; the feeder's last meter came back at 601 s.
    assert feeder.restore("m2", T0 + 300 * SEC) == [
        ("FEEDER_OUTAGE", "CLEARED", None, T0 + 601 * SEC)]
