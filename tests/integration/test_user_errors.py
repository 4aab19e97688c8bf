"""Errors a user can provoke are one line on stderr naming the cause and the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import yaml

from jobs.config import REPO_ROOT
from tests.conftest import LOCAL_CONFIG

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def other_stack(tmp_path) -> dict[str, str]:
    """Environment for a second stack in a temporary folder on unused ports."""
    return {"GRIDSTREAM_STACK_DIR": str(tmp_path / "stack"),
            "GRIDSTREAM_KAFKA_PORT": str(free_port()), "GRIDSTREAM_PG_PORT": str(free_port())}


def test_port_in_use(other_stack):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        line = one_line_error(run("tools.stack", "up",
                                  **{**other_stack, "GRIDSTREAM_KAFKA_PORT": str(port)}))
    assert f"port {port} on 127.0.0.1 (for Kafka) is in use" in line
    assert "GRIDSTREAM_KAFKA_PORT=<port>" in line


def test_metrics_port_in_use_stops_the_cluster_start(other_stack):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        line = one_line_error(run("tools.flink_cluster", "up", **other_stack,
                                  GRIDSTREAM_FLINK_PORT=str(free_port()),
                                  GRIDSTREAM_FLINK_RPC_PORT=str(free_port()),
                                  GRIDSTREAM_PROMETHEUS_PORT=str(port)))
    assert f"port {port} on 127.0.0.1 (for the Prometheus metrics endpoint) is in use" in line
    assert "GRIDSTREAM_PROMETHEUS_PORT=<port>" in line


def test_java_missing(other_stack, tmp_path):
    line = one_line_error(run("tools.stack", "up", **other_stack,
                              JAVA_HOME=str(tmp_path / "no-java")))
    assert "Java 17+ not found" in line and "JAVA_HOME" in line


def test_jars_not_resolved(other_stack, tmp_path):
    line = one_line_error(run("tools.stack", "up", **other_stack,
                              GRIDSTREAM_JARS_DIR=str(tmp_path / "no-jars")))
    assert "Kafka broker jars are missing" in line and "make jars" in line
    line = one_line_error(run("jobs.ingest", "--config", str(LOCAL_CONFIG),
                              GRIDSTREAM_JARS_DIR=str(tmp_path / "no-jars")))
    assert "connector jars not found" in line and "make jars" in line


def test_stale_pid_file_is_cleared_with_a_note(other_stack):
    kafka_dir = os.path.join(other_stack["GRIDSTREAM_STACK_DIR"], "kafka")
    os.makedirs(kafka_dir)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(os.path.join(kafka_dir, "broker.pid"), "w") as f:
        f.write(str(dead.pid))
    result = run("tools.stack", "status", **other_stack)
    assert result.returncode == 0, result.stderr
    assert f"removed stale pid file {kafka_dir}/broker.pid (process {dead.pid}" in result.stdout
    assert not os.path.exists(os.path.join(kafka_dir, "broker.pid"))


def test_broker_down_stops_the_job_before_it_starts(tmp_path):
    raw = yaml.safe_load(LOCAL_CONFIG.read_text())
    port = free_port()
    raw["kafka"]["bootstrap_servers"] = f"127.0.0.1:{port}"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    line = one_line_error(run("jobs.ingest", "--config", str(path)))
    assert f"Kafka at 127.0.0.1:{port} is not reachable" in line and "make up" in line


def test_bad_config_key_names_the_key(tmp_path):
    raw = yaml.safe_load(LOCAL_CONFIG.read_text())
    raw["kafka"]["bootstrap"] = raw["kafka"].pop("bootstrap_servers")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    line = one_line_error(run("jobs.ingest", "--config", str(path)))
    assert "kafka.bootstrap: unknown key" in line and str(path) in line
