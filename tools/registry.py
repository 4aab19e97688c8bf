"""Load the meter registry from CSV into PostgreSQL (upsert on meter_id).

    python -m tools.registry load path/to/meters.csv [--config conf/local.yaml]

Required columns: meter_id, feeder_id, region, nominal_voltage_v. Optional: has_generation,
service_limit_kw, interval_minutes, customer_class, register_max_kwh. Any other column goes
into the JSONB `attributes`. A bad row stops the load with its line number and the problem.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from jobs.config import REPO_ROOT, ConfigError, load_config
from tools.processes import StackError

REQUIRED = ("meter_id", "feeder_id", "region", "nominal_voltage_v")
OPTIONAL = ("has_generation", "service_limit_kw", "interval_minutes", "customer_class",
            "register_max_kwh")
COLUMNS = REQUIRED + OPTIONAL + ("attributes",)
TRUE, FALSE = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0", ""}


class RegistryError(ValueError):
    pass


def _number(value: str, where: str, *, integer: bool = False, optional: bool = True):
    if value == "" and optional:
        return None
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        raise RegistryError(f"{where}: {value!r} is not a number") from None
    if number <= 0:
        raise RegistryError(f"{where}: must be > 0")
    return number


def read_registry(path: Path) -> Iterator[tuple]:
    """Validated rows in COLUMNS order."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise RegistryError(f"{path}: missing column(s) {', '.join(missing)} "
                                f"(required: {', '.join(REQUIRED)})")
        extra = [c for c in header if c not in REQUIRED + OPTIONAL]
        for row in reader:
            line = reader.line_num
            where = f"{path} line {line}"
            if not row["meter_id"] or not row["feeder_id"] or not row["region"]:
                raise RegistryError(f"{where}: meter_id, feeder_id and region must not be empty")
            generation = (row.get("has_generation") or "").strip().lower()
            if generation not in TRUE | FALSE:
                raise RegistryError(f"{where}: has_generation: {generation!r} is not true/false")
            yield (
                row["meter_id"], row["feeder_id"], row["region"],
                _number(row["nominal_voltage_v"], f"{where}: nominal_voltage_v", optional=False),
                generation in TRUE,
                _number(row.get("service_limit_kw") or "", f"{where}: service_limit_kw"),
                _number(row.get("interval_minutes") or "15", f"{where}: interval_minutes",
                        integer=True),
                row.get("customer_class") or None,
                _number(row.get("register_max_kwh") or "", f"{where}: register_max_kwh"),
                json.dumps({c: row[c] for c in extra if row.get(c) not in (None, "")}),
            )


def load(config, path: Path) -> int:
    """Upsert every row of `path` into meter_registry; returns the number of rows."""
    import psycopg

    from tools.stack import pg_connect_kwargs

    rows = list(read_registry(path))
    cols = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
    with psycopg.connect(**pg_connect_kwargs(config)) as conn:
        conn.execute("CREATE TEMP TABLE registry_load (LIKE meter_registry INCLUDING DEFAULTS) "
                     "ON COMMIT DROP")
        with conn.cursor().copy(f"COPY registry_load ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(f"INSERT INTO meter_registry ({cols}) SELECT {cols} FROM registry_load "
                     f"ON CONFLICT (meter_id) DO UPDATE SET {updates}, updated_at = now()")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.registry",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    loader = sub.add_parser("load", help="upsert a registry CSV into meter_registry")
    loader.add_argument("csv", type=Path)
    loader.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    args = parser.parse_args(argv)
    import psycopg

    try:
        config = load_config(args.config)
        if not args.csv.exists():
            raise RegistryError(f"{args.csv}: no such file")
        count = load(config, args.csv)
    except (RegistryError, ConfigError, StackError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as err:
        first = str(err).strip().splitlines()[0]
        print(f"error: cannot reach PostgreSQL ({first}): start it with `make up` or fix "
              f"postgres in {args.config}", file=sys.stderr)
        return 2
    print(f"registry: {count} meters loaded from {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
