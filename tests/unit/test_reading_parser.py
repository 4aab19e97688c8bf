"""The reading validator: what DESIGN's meter.readings contract accepts and what it rejects."""

import json
import random

import pytest

from udfs.reading_parser import Reading, Rejection, parse_reading, reason_kind

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def payload(**fields) -> bytes:
    reading = {"meter_id": "MTR-0001", "ts": T0, "kwh_import": 1234.5}
    reading.update(fields)
    return json.dumps({k: v for k, v in reading.items() if v is not ...}).encode()


def rejected(raw, **kwargs) -> str:
    result = parse_reading(raw, **kwargs)
    assert isinstance(result, Rejection), result
    return result.reason


def test_minimal_valid_reading():
    assert parse_reading(payload()) == Reading("MTR-0001", T0, None, 1234.5, None, None, None,
                                               None, None, ())


def test_full_valid_reading_keeps_every_field_and_unknown_status_codes():
    result = parse_reading(payload(seq=7, kwh_export=3.0, voltage_v=229.8, current_a=4.2,
                                   power_factor=-0.95, frequency_hz=50.01,
                                   status=["POWER_RESTORED", "FIRMWARE_X"], extra="ignored"))
    assert result == Reading("MTR-0001", T0, 7, 1234.5, 3.0, 229.8, 4.2, -0.95, 50.01,
                             ("POWER_RESTORED", "FIRMWARE_X"))


@pytest.mark.parametrize("ts, expected_ms", [
    ("2023-11-14T22:13:20Z", T0),
    ("2023-11-14T23:13:20+01:00", T0),
    ("2023-11-14T16:43:20-05:30", T0),
    ("2023-11-14T22:13:20.5Z", T0 + 500),
    ("2023-11-14T22:13:20.123456+00:00", T0 + 123),
    (T0, T0),
    (0, 0),
])
def test_event_time_is_utc_epoch_millis(ts, expected_ms):
    assert parse_reading(payload(ts=ts)).ts_ms == expected_ms


@pytest.mark.parametrize("ts", ["2023-11-14 22:13:20Z", "2023-11-14T22:13:20", "yesterday",
                                "2023-02-30T00:00:00Z", "1700000000000", 1.7e12, True, -1,
                                [T0], "2023-11-14T25:00:00Z"])
def test_bad_event_time_is_rejected(ts):
    assert rejected(payload(ts=ts)).startswith("ts: ")


@pytest.mark.parametrize("fields, reason", [
    ({"kwh_import": -0.1}, "kwh_import: negative"),
    ({"kwh_import": ...}, "kwh_import: missing"),
    ({"kwh_import": "12"}, "kwh_import: expected a number, got string"),
    ({"kwh_import": True}, "kwh_import: expected a number, got boolean"),
    ({"power_factor": 3}, "power_factor: above 1"),
    ({"power_factor": -1.5}, "power_factor: below -1"),
    ({"frequency_hz": 0}, "frequency_hz: must be > 0"),
    ({"voltage_v": -230}, "voltage_v: negative"),
    ({"meter_id": ...}, "meter_id: missing"),
    ({"meter_id": 42}, "meter_id: expected a string, got number"),
    ({"meter_id": ""}, "meter_id: must be 1-64 characters"),
    ({"meter_id": "x" * 65}, "meter_id: must be 1-64 characters"),
    ({"meter_id": "zähler-1"}, "meter_id: must be 1-64 characters"),
    ({"ts": ...}, "ts: missing"),
    ({"ts": "soon"}, "ts: neither RFC 3339 nor epoch ms"),
    ({"seq": -1}, "seq: expected an integer >= 0"),
    ({"status": "POWER_FAIL"}, "status: expected an array of strings"),
    ({"status": [1]}, "status: expected an array of strings"),
])
def test_field_problems_name_the_field(fields, reason):
    assert rejected(payload(**fields)).startswith(reason)


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "not JSON"),
    (b'{"meter_id": "m", "ts": 1, "kwh_import": NaN}', "not JSON"),
    (b'{"meter_id": "m", "ts": 1, "kwh_import": Infinity}', "not JSON"),
    (b'{"meter_id": "m", "ts": 1, "kwh_import": 1e400}', "not JSON"),
    (b"[1, 2]", "not a JSON object: got array"),
    (b"", "not JSON"),
    (None, "not JSON: empty payload"),
    (b"\xff\xfe", "not JSON"),
])
def test_payloads_that_are_not_a_json_object(raw, reason):
    assert rejected(raw).startswith(reason)


def test_huge_but_finite_register_is_accepted():
    assert parse_reading(payload(kwh_import=1.5e300)).kwh_import == 1.5e300


def test_empty_status_and_null_optionals_are_absent():
    result = parse_reading(payload(status=[], voltage_v=None))
    assert result.status == () and result.voltage_v is None


def test_reading_from_the_future_is_rejected_beyond_the_skew():
    skew = 300_000
    assert parse_reading(payload(ts=T0 + skew), received_ms=T0, max_future_skew_ms=skew).ts_ms
    assert rejected(payload(ts=T0 + skew + 1), received_ms=T0,
                    max_future_skew_ms=skew).startswith("ts: more than 300000 ms after arrival")


def test_random_bytes_never_raise():
    rng = random.Random(20261204)
    for _ in range(5000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        assert isinstance(parse_reading(raw), (Reading, Rejection))
    for _ in range(2000):
        doc = {rng.choice(["meter_id", "ts", "kwh_import", "status", "x"]):
               rng.choice([None, -1, 0, 1.5, "a", [], {}, True, "2023-01-01T00:00:00Z"])
               for _ in range(5)}
        assert isinstance(parse_reading(json.dumps(doc)), (Reading, Rejection))


@pytest.mark.parametrize("raw, kind", [
    (b"{not json", "not_json"),
    (b"[1, 2]", "not_a_json_object"),
    (payload(kwh_import=-4), "kwh_import"),
    (payload(ts="soon"), "ts"),
    (payload(meter_id=42), "meter_id"),
])
def test_reason_kind_is_a_small_label_naming_the_field_or_the_problem(raw, kind):
    # The dead-letter metric's label: one value per field, never the free-text detail.
    assert reason_kind(rejected(raw)) == kind
