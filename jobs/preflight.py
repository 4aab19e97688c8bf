"""Checks a job makes before it starts Flink, so that an unreachable broker or database is one
clear line instead of a job that restarts forever with a Java stack trace in its log."""

from __future__ import annotations

import socket

from jobs.config import JobConfig


class PreflightError(RuntimeError):
    pass


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_services(config: JobConfig, config_path: str) -> None:
    """Fail if no Kafka bootstrap server or the PostgreSQL server accepts TCP connections."""
    servers = [s.strip() for s in config.kafka.bootstrap_servers.split(",") if s.strip()]
    addresses = []
    for server in servers:
        host, _, port = server.rpartition(":")
        if not port.isdigit():
            raise PreflightError(f"kafka.bootstrap_servers: {server!r} is not host:port "
                                 f"(fix it in {config_path})")
        addresses.append((host.strip("[]"), int(port)))
    if not any(_reachable(host, port) for host, port in addresses):
        raise PreflightError(f"Kafka at {config.kafka.bootstrap_servers} is not reachable: start "
                             f"it (`make up` for the local stack) or fix kafka.bootstrap_servers "
                             f"in {config_path}")
    pg = config.postgres
    if not _reachable(pg.host, pg.port):
        raise PreflightError(f"PostgreSQL at {pg.host}:{pg.port} is not reachable: start it "
                             f"(`make up` for the local stack) or fix postgres.host/port in "
                             f"{config_path}")
