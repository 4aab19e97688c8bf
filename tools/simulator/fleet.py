"""The meter fleet: topology (regions, feeders), customers, and the registry CSV.

Per-meter attributes are numpy arrays indexed by meter number, so that every 15-minute step
computes the whole fleet at once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.simulator import randomness
from tools.simulator.profiles import CLEAN_VOLTAGE_SPREAD, PowerProfile
from tools.simulator.settings import Settings

FEEDER_SIZE = (50, 400)
FEEDERS_PER_REGION = 20
REGISTRY_COLUMNS = ("meter_id", "feeder_id", "region", "nominal_voltage_v", "has_generation",
                    "service_limit_kw", "interval_minutes", "customer_class", "register_max_kwh",
                    "latitude", "longitude")
RESIDENTIAL_LIMITS_KW = (14.5, 17.3, 24.0)  # 63 A single-phase, 3 x 25 A, 100 A services
# A commercial service is sized with headroom over its average load, and never tiny.
COMMERCIAL_HEADROOM, COMMERCIAL_MIN_LIMIT_KW = 4.0, 50.0
# Where the regions lie, per profile: (latitude range, longitude range).
TERRITORY = {"en50160": ((47.0, 54.0), (2.0, 16.0)), "ansi": ((33.0, 45.0), (-120.0, -75.0))}


@dataclass(frozen=True)
class Fleet:
    ids: list[str]
    keys: list[bytes]
    feeder_ids: list[str]         # per feeder number
    region_ids: list[str]         # per region number
    feeder_region: np.ndarray     # region number per feeder
    feeder: np.ndarray            # feeder number per meter
    region: np.ndarray            # region number per meter
    commercial: np.ndarray        # bool
    generation: np.ndarray        # bool: solar on site (exports)
    interval_min: np.ndarray      # 15 or 30
    rfc3339: np.ndarray           # bool: sends ts as an RFC 3339 string
    utc_offset_min: np.ndarray    # local time of the meter's region
    mean_kw: np.ndarray           # average load
    pv_kw: np.ndarray             # peak solar output (0 without generation)
    limit_kw: np.ndarray          # service limit
    register_max_wh: np.ndarray   # int64: the import register wraps to 0 here
    register0_wh: np.ndarray      # int64: import register at the start
    seq0: np.ndarray              # int64: first message counter
    shape_shift: np.ndarray       # slots the meter's daily routine runs early (-) or late (+)
    power_factor: np.ndarray
    voltage_offset: np.ndarray    # fraction of nominal: position on the feeder
    latitude: np.ndarray
    longitude: np.ndarray
    nominal_v: float
    nominal_hz: float

    def __len__(self) -> int:
        return len(self.ids)

    def feeder_members(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.feeder == f) for f in range(len(self.feeder_ids))]

    def interval_ms(self, meter: int) -> int:
        return int(self.interval_min[meter]) * 60_000


def build_fleet(settings: Settings, profile: PowerProfile) -> Fleet:
    rng = randomness.stream(settings.seed, randomness.FLEET)
    n = settings.meters
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(FEEDER_SIZE[0], FEEDER_SIZE[1] + 1)))
    sizes[-1] -= sum(sizes) - n
    feeder = np.repeat(np.arange(len(sizes)), sizes)
    feeder_region = np.arange(len(sizes)) // FEEDERS_PER_REGION
    region = feeder_region[feeder]
    prefix = settings.id_prefix
    region_ids = [f"{prefix}R{r + 1:02d}" for r in range(int(feeder_region.max()) + 1)]
    feeder_ids = [f"{region_ids[feeder_region[f]]}-F{f % FEEDERS_PER_REGION + 1:03d}"
                  for f in range(len(sizes))]

    commercial = rng.random(n) < settings.share_commercial
    generation = ~commercial & (rng.random(n) < settings.share_generation)
    # Residential 0.3-1.0 kW average (7-24 kWh a day); commercial 3-40 kW, log-uniform.
    mean_kw = np.where(commercial, np.exp(rng.uniform(np.log(3), np.log(40), n)),
                       rng.uniform(0.3, 1.0, n))
    limit_kw = np.where(commercial,
                        np.maximum(COMMERCIAL_MIN_LIMIT_KW,
                                   np.ceil(mean_kw * COMMERCIAL_HEADROOM / 10) * 10),
                        rng.choice(RESIDENTIAL_LIMITS_KW, n))
    register_max_wh = np.where(rng.random(n) < 0.1, 100_000, 1_000_000).astype(np.int64) * 1000
    register0_wh = (rng.uniform(1_000, 40_000, n) * 1000).astype(np.int64)

    offsets = np.asarray(profile.utc_offsets_min)
    (lat0, lat1), (lon0, lon1) = TERRITORY[profile.name]
    region_lat = rng.uniform(lat0, lat1, len(region_ids))
    region_lon = rng.uniform(lon0, lon1, len(region_ids))
    feeder_lat = region_lat[feeder_region] + rng.uniform(-0.3, 0.3, len(sizes))
    feeder_lon = region_lon[feeder_region] + rng.uniform(-0.3, 0.3, len(sizes))
    # A feeder's voltage sits a little off nominal, and meters further down it a little lower;
    # the sum stays inside the clean spread with room for load and noise.
    feeder_v = rng.uniform(-0.35, 0.35, len(sizes)) * CLEAN_VOLTAGE_SPREAD
    ids = [f"{prefix}MTR-{i + 1:07d}" for i in range(n)]
    return Fleet(
        ids=ids,
        keys=[meter_id.encode() for meter_id in ids],
        feeder_ids=feeder_ids,
        region_ids=region_ids,
        feeder_region=feeder_region,
        feeder=feeder,
        region=region,
        commercial=commercial,
        generation=generation,
        interval_min=np.where(rng.random(n) < settings.share_30min, 30, 15),
        rfc3339=rng.random(n) < settings.share_rfc3339,
        utc_offset_min=offsets[region % len(offsets)],
        mean_kw=mean_kw,
        pv_kw=np.where(generation, rng.uniform(3.0, 8.0, n), 0.0),
        limit_kw=limit_kw,
        register_max_wh=register_max_wh,
        register0_wh=register0_wh,
        seq0=rng.integers(0, 100_000, n),
        shape_shift=rng.integers(-3, 4, n),
        power_factor=np.where(commercial, rng.uniform(0.85, 0.95, n), rng.uniform(0.93, 0.99, n)),
        voltage_offset=feeder_v[feeder] - rng.uniform(0, 0.2, n) * CLEAN_VOLTAGE_SPREAD,
        latitude=np.round(feeder_lat[feeder] + rng.uniform(-0.03, 0.03, n), 5),
        longitude=np.round(feeder_lon[feeder] + rng.uniform(-0.03, 0.03, n), 5),
        nominal_v=profile.nominal_v,
        nominal_hz=profile.nominal_hz,
    )


def registry_rows(fleet: Fleet):
    for i, meter_id in enumerate(fleet.ids):
        yield (meter_id, fleet.feeder_ids[fleet.feeder[i]], fleet.region_ids[fleet.region[i]],
               f"{fleet.nominal_v:g}", "true" if fleet.generation[i] else "false",
               f"{fleet.limit_kw[i]:g}", int(fleet.interval_min[i]),
               "commercial" if fleet.commercial[i] else "residential",
               int(fleet.register_max_wh[i]) // 1000, f"{fleet.latitude[i]:.5f}",
               f"{fleet.longitude[i]:.5f}")


def write_registry(fleet: Fleet, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REGISTRY_COLUMNS)
        writer.writerows(registry_rows(fleet))
