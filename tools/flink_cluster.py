"""A local standalone Flink cluster from the PyFlink distribution's own scripts.

    python -m tools.flink_cluster up|down|status          (make cluster-up / cluster-down)
    python -m tools.flink_cluster submit ingest -- --config conf/local.yaml

The cluster runs with the repo's conf/flink/config.yaml, rendered into .stack/flink/conf with
the ports from GRIDSTREAM_FLINK_PORT (REST, default 18081) and GRIDSTREAM_FLINK_RPC_PORT
(default 16123) and with checkpoint and savepoint folders under .stack/flink. It exposes its
metrics, the jobs' own included (jobs/job_metrics.py), through Flink's Prometheus reporter:
the JobManager on GRIDSTREAM_PROMETHEUS_PORT (default 19249), the TaskManagers on the ports
after it, at /metrics.

It starts GRIDSTREAM_FLINK_TASKMANAGERS TaskManagers (default 2, one per core here) with one
slot each, not one TaskManager with two slots: in thread mode a TaskManager's Python code runs
in one interpreter embedded in its JVM, under one lock, so two slots of one TaskManager take
turns at Python. Measured (a keyed Python function with ValueState, 600,000 records, p2):
11,948 records/s on one TaskManager with two slots, 37,557/s on two with one slot each.
`submit` prints
and runs the exact `flink run` command line, so it can be reused against any cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import yaml

from jobs.config import REPO_ROOT
from jobs.runtime import FLINK_CONF_DIR, JARS_DIR, PYTHON_PACKAGES, SetupError, connector_jars
from tools.processes import (
    STACK_DIR,
    StackError,
    env_port,
    java_executable,
    process_matches,
    require_free_port,
    stop_pid,
    wait_until,
)

FLINK_STACK = STACK_DIR / "flink"
RENDERED_CONF = FLINK_STACK / "conf"
SUBMIT_TIMEOUT_S = 300
PROCESS_MARKERS = ("StandaloneSessionClusterEntrypoint", "TaskManagerRunner")


def flink_home() -> Path:
    spec = find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("PyFlink is not installed in this Python: run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def rest_port() -> int:
    return env_port("GRIDSTREAM_FLINK_PORT", 18081)


def rest_url() -> str:
    return f"http://127.0.0.1:{rest_port()}"


def taskmanagers() -> int:
    value = os.environ.get("GRIDSTREAM_FLINK_TASKMANAGERS", "2")
    if not value.isdigit() or not 1 <= int(value) <= 16:
        raise StackError(f"GRIDSTREAM_FLINK_TASKMANAGERS={value!r} is not a TaskManager count: "
                         f"set it to 1-16 (one per core is the usual choice)")
    return int(value)


def prometheus_ports() -> range:
    """The reporter's ports: the JobManager takes the first, each TaskManager one after."""
    first = env_port("GRIDSTREAM_PROMETHEUS_PORT", 19249)
    return range(first, first + taskmanagers() + 1)


def prometheus_urls() -> list[str]:
    return [f"http://127.0.0.1:{port}/metrics" for port in prometheus_ports()]


def render_conf() -> Path:
    """The repo's Flink config with this machine's ports and folders, for the cluster scripts."""
    conf = yaml.safe_load((FLINK_CONF_DIR / "config.yaml").read_text())
    conf["rest"]["port"] = rest_port()
    conf["jobmanager"]["rpc"]["port"] = env_port("GRIDSTREAM_FLINK_RPC_PORT", 16123)
    conf["env"]["pid"] = {"dir": str(FLINK_STACK / "run")}
    conf["env"]["log"] = {"dir": str(FLINK_STACK / "log")}
    checkpointing = conf.setdefault("execution", {}).setdefault("checkpointing", {})
    checkpointing["dir"] = (FLINK_STACK / "checkpoints").as_uri()
    checkpointing["savepoint-dir"] = (FLINK_STACK / "savepoints").as_uri()
    # Per-host working folders (blobs, RocksDB) under .stack, not /tmp.
    conf.setdefault("io", {})["tmp"] = {"dirs": str(FLINK_STACK / "tmp")}
    ports = prometheus_ports()
    conf.setdefault("metrics", {})["reporter"] = {"prom": {
        "factory": {"class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"},
        "port": f"{ports[0]}-{ports[-1]}"}}
    for folder in ("run", "log", "checkpoints", "savepoints", "tmp"):
        (FLINK_STACK / folder).mkdir(parents=True, exist_ok=True)
    RENDERED_CONF.mkdir(parents=True, exist_ok=True)
    header = "# Rendered by tools/flink_cluster.py from conf/flink/config.yaml; edit that file.\n"
    (RENDERED_CONF / "config.yaml").write_text(header + yaml.safe_dump(conf, sort_keys=False))
    for name in ("log4j.properties", "log4j-cli.properties", "log4j-console.properties"):
        shutil.copy(FLINK_CONF_DIR / name, RENDERED_CONF / name)
    # start-cluster.sh starts one TaskManager per line.
    (RENDERED_CONF / "workers").write_text("127.0.0.1\n" * taskmanagers())
    (RENDERED_CONF / "masters").write_text(f"127.0.0.1:{rest_port()}\n")
    return RENDERED_CONF


def prepare_lib() -> Path:
    """The cluster's lib/: PyFlink's own jars plus flink-python, which a cluster running Python
    UDFs needs on its classpath (the pip distribution keeps it in opt/)."""
    lib = FLINK_STACK / "lib"
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    home = flink_home()
    for jar in [*sorted((home / "lib").glob("*.jar")), *(home / "opt").glob("flink-python-*.jar")]:
        (lib / jar.name).symlink_to(jar)
    # Reporters load as plugins, each from its own folder.
    reporter = sorted((JARS_DIR / "metrics").glob("flink-metrics-prometheus-*.jar"))
    if not reporter:
        raise StackError(f"the Prometheus reporter jar is not in {JARS_DIR / 'metrics'}: "
                         f"run `make jars`")
    plugin = FLINK_STACK / "plugins" / "metrics-prometheus"
    if plugin.exists():
        shutil.rmtree(plugin)
    plugin.mkdir(parents=True)
    (plugin / reporter[-1].name).symlink_to(reporter[-1])
    return lib


def cluster_env() -> dict[str, str]:
    env = dict(os.environ)
    env["FLINK_CONF_DIR"] = str(RENDERED_CONF)
    env["FLINK_LIB_DIR"] = str(FLINK_STACK / "lib")
    env["FLINK_PLUGINS_DIR"] = str(FLINK_STACK / "plugins")
    env["FLINK_LOG_DIR"] = str(FLINK_STACK / "log")
    # The scripts must find this Python's `java` and PyFlink's own FLINK_HOME.
    env["FLINK_HOME"] = str(flink_home())
    env["JAVA_HOME"] = env.get("JAVA_HOME") or str(Path(java_executable(11)).resolve().parents[1])
    # TaskManagers start Python workers from this interpreter's environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _rest_json(path: str, timeout_s: float = 5) -> dict | None:
    """GET `path` from the cluster's REST API; None when the cluster does not answer."""
    try:
        with urllib.request.urlopen(f"{rest_url()}{path}", timeout=timeout_s) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def overview() -> dict | None:
    return _rest_json("/overview", timeout_s=2)


def cluster_pids() -> list[int]:
    """Pids of this project's JobManager and TaskManager processes (by their conf dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if (any(process_matches(pid, m) for m in PROCESS_MARKERS)
                and process_matches(pid, str(RENDERED_CONF))):
            pids.append(pid)
    return pids


def up() -> None:
    java_executable(11)
    if cluster_pids() and overview():
        print(f"flink: already running, web UI {rest_url()}")
        return
    require_free_port("127.0.0.1", rest_port(), "the Flink REST endpoint", "GRIDSTREAM_FLINK_PORT")
    require_free_port("127.0.0.1", env_port("GRIDSTREAM_FLINK_RPC_PORT", 16123),
                      "the Flink JobManager", "GRIDSTREAM_FLINK_RPC_PORT")
    for port in prometheus_ports():
        require_free_port("127.0.0.1", port, "the Prometheus metrics endpoint",
                          "GRIDSTREAM_PROMETHEUS_PORT")
    render_conf()
    prepare_lib()
    print(f"flink: starting a standalone cluster (logs in {FLINK_STACK / 'log'})")
    result = subprocess.run([str(flink_home() / "bin" / "start-cluster.sh")], env=cluster_env(),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"start-cluster.sh failed: {result.stderr.strip()[:300]}")

    def ready() -> bool:
        # A TaskManager shows in the overview a moment before its slot does.
        info = overview()
        return bool(info and info.get("taskmanagers", 0) >= taskmanagers()
                    and info.get("slots-total", 0) >= taskmanagers())

    took = wait_until(ready, 120, "the Flink cluster", alive=lambda: bool(cluster_pids()),
                      log=FLINK_STACK / "log")
    info = overview() or {}
    print(f"flink: ready in {took:.1f}s, {info.get('slots-total')} slots, web UI {rest_url()}, "
          f"metrics {' '.join(prometheus_urls())}")


def down() -> None:
    pids = cluster_pids()
    if not pids:
        print("flink: not running")
        return
    if RENDERED_CONF.exists():
        subprocess.run([str(flink_home() / "bin" / "stop-cluster.sh")], env=cluster_env(),
                       capture_output=True, text=True)
    for pid in cluster_pids():
        stop_pid(pid, str(RENDERED_CONF), timeout=20)
    print(f"flink: stopped ({len(pids)} processes)")


def status_row() -> tuple:
    pids = cluster_pids()
    healthy = bool(pids) and overview() is not None
    return ("flink", pids[0] if pids else None, f"127.0.0.1:{rest_port()}", healthy, FLINK_STACK)


def flink_run_command(job: str, job_args: list[str], *, detached: bool = False) -> list[str]:
    """`flink run` for jobs/<job>.py: ships jobs/ and udfs/, the connector jars and this
    interpreter (same machine); on a remote cluster use python.archives instead (runbook)."""
    try:
        jars = connector_jars()  # fail early, before the client starts
    except SetupError as err:
        raise StackError(str(err)) from None
    command = [str(flink_home() / "bin" / "flink"), "run"]
    if detached:
        command.append("--detached")
    command += [
        "--pyModule", f"jobs.{job}",
        "--pyFiles", ",".join(str(REPO_ROOT / p) for p in PYTHON_PACKAGES),
        "--pyClientExecutable", sys.executable,
        "--pyExecutable", sys.executable,
    ]
    # The job sets pipeline.jars itself (jobs/runtime.py); the client uploads them with the job.
    del jars
    return [*command, *job_args]


# What `flink run` prints once the cluster has the job, attached or detached.
SUBMITTED_ID = re.compile(r"JobID ([0-9a-f]{32})")


def submission(job: str, job_args: list[str], detached: bool) -> list[str]:
    """The `flink run` command for the running local cluster, its conf and lib in place."""
    if not overview():
        raise StackError(f"no Flink cluster answers at {rest_url()}: run `make cluster-up`")
    render_conf()
    if not (FLINK_STACK / "lib").exists():
        prepare_lib()
    return flink_run_command(job, job_args, detached=detached)


def submit(job: str, job_args: list[str], *, detached: bool = False) -> int:
    command = submission(job, job_args, detached)
    print("$ FLINK_CONF_DIR=" + str(RENDERED_CONF) + " " + " ".join(command), flush=True)
    return subprocess.run(command, env=cluster_env(), cwd=REPO_ROOT).returncode


def submit_detached(job: str, job_args: list[str]) -> str:
    """`flink run --detached`; returns the job's id once the cluster has accepted it."""
    command = submission(job, job_args, detached=True)
    try:
        result = subprocess.run(command, env=cluster_env(), cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise StackError(f"`flink run --detached` of jobs.{job} did not return within "
                         f"{SUBMIT_TIMEOUT_S} s; see {FLINK_STACK / 'log'}") from None
    found = SUBMITTED_ID.search(result.stdout)
    if result.returncode != 0 or not found:
        raise StackError(f"`flink run` of jobs.{job} failed: "
                         f"{_cause(result.stdout + result.stderr)}")
    return found.group(1)


def _cause(output: str) -> str:
    """The line of a failed submission that says why: the job's own `error:` line, else the
    deepest Java cause, else the last exception the job's Python raised."""
    lines = [line.strip() for line in output.splitlines()]
    own = [line for line in lines if line.startswith("error: ")]
    if own:
        return own[0]
    causes = [line.removeprefix("Caused by: ") for line in lines
              if line.startswith("Caused by: ") and "Python process exits" not in line]
    if causes:
        return causes[-1]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", line)
              and "ProgramAbortException" not in line]
    return raised[-1] if raised else next((line for line in reversed(lines) if line),
                                          "no output")


def job_details(job_id: str) -> dict | None:
    """The REST API's /jobs/<id>: state, duration (ms from submission), vertices..."""
    return _rest_json(f"/jobs/{job_id}")


# A job in one of these states (or unknown to the cluster: None) is gone for good.
ENDED_STATES = (None, "CANCELED", "FINISHED", "FAILED")


def job_state(job_id: str) -> str | None:
    details = job_details(job_id)
    return details.get("state") if details else None


def active_jobs(name: str) -> list[str]:
    """Ids of the cluster's jobs called `name` that have not ended."""
    jobs = (_rest_json("/jobs/overview") or {}).get("jobs", [])
    return [job["jid"] for job in jobs
            if job.get("name") == name and job.get("state") not in ENDED_STATES]


def cancel(job_id: str, timeout_s: float = 60) -> None:
    """Cancel a job and wait until it is gone (its checkpoints are kept, conf/flink)."""
    request = urllib.request.Request(f"{rest_url()}/jobs/{job_id}?mode=cancel", method="PATCH")
    with contextlib.suppress(urllib.error.URLError, OSError):
        urllib.request.urlopen(request, timeout=10).close()
    wait_until(lambda: job_state(job_id) in ENDED_STATES,
               timeout_s, f"job {job_id} to stop")


OPERATOR_METRIC = "flink_taskmanager_job_task_operator_"
OWN_LABELS = ("reason", "type", "severity", "state")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict
    value: float


_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(prefix: str = OPERATOR_METRIC) -> list[Sample]:
    """The cluster's metrics whose names start with `prefix`, read from its Prometheus
    endpoints as Prometheus reads them (text exposition format)."""
    samples = []
    for url in prometheus_urls():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            continue
        for line in text.splitlines():
            match = _SAMPLE.match(line) if line.startswith(prefix) else None
            if match:
                samples.append(Sample(match.group(1), dict(_LABEL.findall(match.group(2) or "")),
                                      float(match.group(3))))
    return samples


def job_metrics() -> dict[str, dict[tuple, float]]:
    """The running jobs' own metrics (jobs/job_metrics.py) and the readings their Kafka source
    counted (as readings_in), summed over subtasks: {job name: {(metric, ((label, value),
    ...)): value}}, with the job name as given (gridstream-detect)."""
    out: dict[str, dict[tuple, float]] = {}
    for sample in scrape(OPERATOR_METRIC):
        name = sample.name.removeprefix(OPERATOR_METRIC)
        if name == "numRecordsIn" and sample.labels.get("operator_name", "").startswith(
                "Source:_readings_raw"):
            name = "readings_in"
        elif name.startswith("gridstream_"):
            # A labelled group also names its key: gridstream_reason_dead_letters{reason=...}
            name = name.removeprefix("gridstream_")
            while any(name.startswith(f"{label}_") for label in OWN_LABELS):
                name = name.split("_", 1)[1]
        else:
            continue
        # The reporter spells the job name with "_" for "-".
        job = sample.labels.get("job_name", "").replace("_", "-")
        key = (name, tuple(sorted((k, v) for k, v in sample.labels.items() if k in OWN_LABELS)))
        values = out.setdefault(job, {})
        values[key] = values.get(key, 0) + sample.value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.flink_cluster",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    run = sub.add_parser("submit", help="flink run a job from jobs/ on the local cluster")
    run.add_argument("job", help="module name in jobs/, e.g. ingest")
    run.add_argument("--detached", action="store_true")
    run.add_argument("job_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            _, pid, address, healthy, _ = status_row()
            print(f"flink: {'up' if healthy else 'down'} {address} pid={pid or '-'}")
        else:
            job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
            return submit(args.job, job_args, detached=args.detached)
        return 0
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
