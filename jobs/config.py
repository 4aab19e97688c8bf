"""Typed, validated job configuration loaded from conf/*.yaml.

Every default lives in the dataclasses below and nowhere else. Loading is strict: an unknown
key, a missing required key or a value of the wrong type is a ConfigError whose message names
the file and the key path (``kafka.security.protocol``). Strings may reference the environment
as ``${VAR}`` (required) or ``${VAR:-default}``; that is how hosts and secrets get in, so that
no secret ever lives in a YAML file. Secrets load as ``Secret`` and never print in clear.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from udfs.detection_thresholds import DetectionThresholds

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A configuration problem, stated as one line that names the key."""


class Secret(str):
    """A string that must not appear in logs, reprs or error messages."""

    def __repr__(self) -> str:
        return "Secret('***')"


class Duration(int):
    """Milliseconds, written in YAML as ``500ms``, ``30s``, ``5min``, ``2h`` or ``1d``."""

    _UNITS: typing.ClassVar[dict[str, int]] = {
        "ms": 1, "s": 1000, "min": 60_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000
    }
    _PATTERN = re.compile(r"^\s*(\d+)\s*(ms|s|min|m|h|d)\s*$")

    @classmethod
    def parse(cls, text: str) -> Duration:
        match = cls._PATTERN.match(text)
        if not match:
            raise ValueError(
                f"expected a duration such as 500ms, 30s, 5min, 2h or 1d; got {text!r}")
        return cls(int(match.group(1)) * cls._UNITS[match.group(2)])

    @property
    def seconds(self) -> float:
        return self / 1000

    def __repr__(self) -> str:
        return f"Duration({int(self)}ms)"


# --------------------------------------------------------------------------- the schema

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"]
StartupMode = Literal["earliest-offset", "latest-offset", "group-offsets"]


@dataclass(frozen=True)
class KafkaSecurity:
    """Client security settings, passed through to every Kafka client and connector."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_jaas_config: Secret | None = None
    ssl_truststore_location: str | None = None
    ssl_truststore_password: Secret | None = None
    ssl_truststore_type: str | None = None
    ssl_keystore_location: str | None = None
    ssl_keystore_password: Secret | None = None
    ssl_key_password: Secret | None = None
    ssl_endpoint_identification_algorithm: str | None = None


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    group_id: str = "gridstream"
    startup_mode: StartupMode = "group-offsets"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    # Extra client properties (e.g. fetch.max.bytes) for advanced tuning; applied to every client.
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int = 1
    replication_factor: int = 1


@dataclass(frozen=True)
class Topics:
    readings: Topic = field(default_factory=lambda: Topic("meter.readings", 4))
    dead_letters: Topic = field(default_factory=lambda: Topic("meter.readings.dlq", 1))
    late: Topic = field(default_factory=lambda: Topic("meter.readings.late", 1))
    alerts: Topic = field(default_factory=lambda: Topic("meter.alerts", 2))
    # CRITICAL alerts again, written at once without a transaction (detect.critical_fast_path):
    # what pagers subscribe to. meter.alerts stays the complete, exactly-once record.
    critical_alerts: Topic = field(default_factory=lambda: Topic("meter.alerts.critical", 2))


@dataclass(frozen=True)
class PostgresConfig:
    host: str
    port: int = 5432
    database: str = "gridstream"
    user: str = "gridstream"
    password: Secret | None = None
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = None


@dataclass(frozen=True)
class EventTimeConfig:
    # How far a reading may arrive behind the newest one seen and still count as on time.
    max_out_of_orderness: Duration = Duration(30_000)
    # A partition silent this long stops holding the watermark back.
    idle_timeout: Duration = Duration(60_000)
    # on-periodic: every pipeline.auto-watermark-interval (200 ms), cheap. on-event: after every
    # reading that moves it; deterministic lateness decisions (tests) at a per-record cost.
    watermark_emission: Literal["on-periodic", "on-event"] = "on-periodic"


@dataclass(frozen=True)
class IngestionConfig:
    # A reading dated further than this after its arrival is dead-lettered: its clock is wrong.
    max_future_skew: Duration = Duration(300_000)
    # A reading with the meter_id and ts of one seen within this horizon is a duplicate and
    # dropped (counted as the dedup operator's records in minus records out). Keyed state grows
    # with meters x readings per horizon; keep it at least out-of-orderness + allowed lateness,
    # since anything older is late anyway.
    dedup_horizon: Duration = Duration(7_200_000)


@dataclass(frozen=True)
class RegistryConfig:
    """Meter metadata lookups (table meter_registry) and what an unknown meter gets. These
    defaults are the jobs' (the enrichment applies them); detect.rules.default_* only serve
    the rules used as a library."""

    # None: the nominal voltage of detect.rules.voltage_profile (230 V EN 50160, 120 V ANSI).
    default_nominal_voltage_v: float | None = None
    default_interval_minutes: int = 15
    # Registry rows cached per TaskManager; a change in the table shows within cache_ttl.
    cache_rows: int = 2_000_000
    cache_ttl: Duration = Duration(3_600_000)


PARQUET_SCHEMES = ("file://", "s3://", "s3a://", "hdfs://")


@dataclass(frozen=True)
class ParquetConfig:
    """Cold storage of the interval rows, partitioned by date and region (dt=.../region=...)."""

    enabled: bool = False
    # Local folder (file:///...) or s3://bucket/prefix. s3:// needs Flink's S3 filesystem
    # plugin on the cluster (docs/runbook.md); files appear as checkpoints complete.
    path: str = "file:///tmp/gridstream/intervals"
    rolling_interval: Duration = Duration(300_000)

    def __post_init__(self) -> None:
        if not self.path.startswith(PARQUET_SCHEMES):
            raise ValueError(f"path: expected a URI starting with {', '.join(PARQUET_SCHEMES)};"
                             f" got {self.path!r}")


@dataclass(frozen=True)
class AggregateConfig:
    # Per-meter energy interval; 30min for meters billed half-hourly.
    interval: Duration = Duration(900_000)
    # Feeder and region load period.
    load_period: Duration = Duration(3_600_000)
    # A reading this far behind the watermark still counts in its interval; interval rows are
    # written once it has passed. Anything later goes to the late topic.
    allowed_lateness: Duration = Duration(1_800_000)
    # Register maximum for meters whose registry row does not say (rollover detection).
    default_register_max_kwh: float = 1_000_000.0
    # A gap between readings up to this many intervals is spread evenly (quality 'estimated');
    # a longer gap is not, and the next interval has no energy value.
    max_gap_intervals: int = 96
    parquet: ParquetConfig = field(default_factory=ParquetConfig)


@dataclass(frozen=True)
class DetectConfig:
    # Every rule threshold, with DESIGN's defaults (udfs/detection_thresholds.py); *_ms keys
    # take durations (24h).
    rules: DetectionThresholds = field(default_factory=DetectionThresholds)
    # meter.alerts: exactly-once through Kafka transactions (visible to read_committed
    # consumers when the checkpoint completes), or at-least-once (visible at once; a restart
    # may repeat an alert, with the same alert_id).
    delivery: Literal["exactly-once", "at-least-once"] = "exactly-once"
    # CRITICAL alerts (outages, severe voltage) also go to topics.critical_alerts at once,
    # at-least-once, visible within milliseconds whatever the checkpoint interval. Not on
    # meter.alerts itself: a read_committed consumer cannot read past an open transaction, so
    # on the transactional topic they would wait for the checkpoint all the same (measured).
    critical_fast_path: bool = True
    # This job's checkpoint interval (flink.checkpoint_interval is the other jobs'): with
    # exactly-once delivery, an alert on meter.alerts waits for the next checkpoint, so the
    # interval plus a checkpoint's duration is that topic's latency. At 5,000 readings/s on two
    # cores, 500 ms kept its p99 under a second (runbook, section 7).
    checkpoint_interval: Duration = Duration(500)
    # Least time from one checkpoint's end to the next one's start (conf/flink says 1 s for the
    # other jobs): a short one, so that a slow checkpoint does not push the next one a second
    # out; long enough that checkpoints cannot take all of a busy job's time.
    checkpoint_min_pause: Duration = Duration(100)
    # How long a network buffer may wait before it is sent downstream (Flink default 100ms).
    buffer_timeout: Duration = Duration(10)


@dataclass(frozen=True)
class JdbcSinkConfig:
    batch_size: int = 5000
    flush_interval: Duration = Duration(1_000)
    max_retries: int = 3


@dataclass(frozen=True)
class FlinkConfig:
    parallelism: int = 1
    checkpoint_interval: Duration = Duration(10_000)
    python_execution_mode: Literal["thread", "process"] = "thread"
    # Raw Flink options (key: value) applied last, for anything not modelled above.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobConfig:
    kafka: KafkaConfig
    postgres: PostgresConfig
    topics: Topics = field(default_factory=Topics)
    event_time: EventTimeConfig = field(default_factory=EventTimeConfig)
    ingestion: IngestionConfig = field(default_factory=IngestionConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    aggregate: AggregateConfig = field(default_factory=AggregateConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    jdbc_sink: JdbcSinkConfig = field(default_factory=JdbcSinkConfig)
    flink: FlinkConfig = field(default_factory=FlinkConfig)


# --------------------------------------------------------------------------- loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _FromEnv(str):
    """A string produced by interpolation; it may be read as a number or a boolean."""


def interpolate(text: str, path: str, environ: typing.Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (export it, or give "
                          f"a default as ${{{name}:-value}})")

    result = _VAR.sub(substitute, text)
    return _FromEnv(result) if result != text else result


def load_config(path: str | Path, environ: typing.Mapping[str, str] | None = None) -> JobConfig:
    """Read, interpolate and validate a job config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    try:
        return parse_config(raw, environ if environ is not None else os.environ)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def parse_config(raw: Any, environ: typing.Mapping[str, str]) -> JobConfig:
    if raw is None:
        raw = {}
    return _convert(raw, JobConfig, "", environ)


def _describe(value: Any) -> str:
    if isinstance(value, Secret):
        return "a secret"
    return f"{type(value).__name__} {value!r}"


def _convert(value: Any, hint: Any, path: str, environ: typing.Mapping[str, str]) -> Any:
    where = path or "<top>"
    if isinstance(value, str) and not isinstance(value, _FromEnv):
        value = interpolate(value, where, environ)

    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, _FromEnv) and value == ""):
            return None
        return _convert(value, options[0], path, environ)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, allowed))}; "
                              f"got {value!r}")
        return str(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping; got {_describe(value)}")
        out = {}
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                raise ConfigError(f"{path}.{key}: expected a scalar value")
            item = interpolate(str(item), f"{path}.{key}", environ) if item is not None else ""
            out[str(key)] = str(item)
        return out
    if dataclasses.is_dataclass(hint):
        return _convert_dataclass(value, hint, path, environ)
    if hint is Secret:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string; got {_describe(value)}")
        return Secret(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string; got {_describe(value)}")
        return str(value)
    if hint is Duration:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a duration such as 500ms, 30s, 5min; "
                              f"got {_describe(value)}")
        try:
            return Duration.parse(value)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    if hint is bool:
        if isinstance(value, _FromEnv) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false; got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, _FromEnv) and re.fullmatch(r"-?\d+", value):
            value = int(value)
        elif isinstance(value, str) and where.endswith("_ms"):
            # Millisecond fields of the pure-logic dataclasses (udfs/) take durations too.
            try:
                value = int(Duration.parse(value))
            except ValueError as err:
                raise ConfigError(f"{where}: {err}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer; got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, _FromEnv):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number; got {_describe(value)}")
        return float(value)
    raise TypeError(f"unsupported config type {hint!r} at {where}")  # a bug in the schema


def _convert_dataclass(value: Any, cls: type, path: str, environ: typing.Mapping[str, str]) -> Any:
    where = path or "<top>"
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping; got {_describe(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            raise ConfigError(f"{_join(path, str(key))}: unknown key (expected one of: "
                              f"{', '.join(fields)})")
    kwargs = {}
    for name, spec in fields.items():
        key_path = _join(path, name)
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], key_path, environ)
        elif (spec.default is dataclasses.MISSING
              and spec.default_factory is dataclasses.MISSING):
            raise ConfigError(f"{key_path}: required key is missing")
    try:
        return cls(**kwargs)
    except ValueError as err:  # a value check in the dataclass; its message starts with the key
        raise ConfigError(f"{_join(path, str(err))}") from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def with_flink_options(config: JobConfig, assignments: typing.Iterable[str]) -> JobConfig:
    """`config` with extra raw Flink options given as KEY=VALUE (command-line -D)."""
    options = dict(config.flink.options)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-D {assignment}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    return dataclasses.replace(config, flink=dataclasses.replace(config.flink, options=options))


def to_dict(config: Any) -> Any:
    """A plain, JSON-friendly view of a config (secrets masked), for golden tests and logs."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, Secret):
        return "***"
    if isinstance(config, Duration):
        return f"{int(config)}ms"
    return config
