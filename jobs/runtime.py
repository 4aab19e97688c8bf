"""The Flink environment every job runs in, built from the repo's Flink config and a JobConfig.

The same code path serves the embedded MiniCluster (`python -m jobs.<name>`) and a cluster
submission (`flink run -pym jobs.<name>`): in the latter, the client JVM already exists and
the cluster's own configuration applies; the options set here are per job.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

from jobs.config import REPO_ROOT, JobConfig

FLINK_CONF_DIR = REPO_ROOT / "conf" / "flink"
# GRIDSTREAM_JARS_DIR points at jars resolved elsewhere (an offline machine, a shared cache).
JARS_DIR = Path(os.environ.get("GRIDSTREAM_JARS_DIR", REPO_ROOT / "build" / "jars"))
CONNECTOR_JARS_DIR = JARS_DIR / "flink"
LOG_DIR = REPO_ROOT / ".stack" / "log"
LOCAL_CHECKPOINTS = REPO_ROOT / ".stack" / "checkpoints"
# Python packages shipped to the Python workers next to the job.
PYTHON_PACKAGES = ("jobs", "udfs")


class SetupError(RuntimeError):
    """Something the user must set up before a job can run; the message says what and how."""


def connector_jars() -> list[Path]:
    jars = sorted(CONNECTOR_JARS_DIR.glob("*.jar"))
    if not jars:
        raise SetupError(f"connector jars not found in {CONNECTOR_JARS_DIR}: run `make jars`")
    return jars


def format_jars(name: str) -> list[Path]:
    """Jars of an optional format (build/jars/<name>), added only to jobs that use it."""
    jars = sorted((JARS_DIR / name).glob("*.jar"))
    if not jars:
        raise SetupError(f"{name} format jars not found in {JARS_DIR / name}: run `make jars`")
    return jars


def _prepare_process_environment() -> None:
    # The gateway JVM that PyFlink launches for a local run reads these; the repo's Flink
    # config (checkpointing, restart strategy, JVM flags) then applies instead of the defaults
    # bundled in site-packages.
    os.environ.setdefault("FLINK_CONF_DIR", str(FLINK_CONF_DIR))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(LOG_DIR))


def python_worker_path() -> str:
    """PYTHONPATH for Python workers; thread mode runs inside the JVM and needs it spelled out
    or it fails with "No module named 'pemja'" under a virtual environment."""
    paths = [str(REPO_ROOT), *site.getsitepackages()]
    return os.pathsep.join(dict.fromkeys(paths))


def running_locally() -> bool:
    """True for an embedded MiniCluster run; False under `flink run`, whose client process
    hands PyFlink an existing gateway through PYFLINK_GATEWAY_PORT."""
    return "PYFLINK_GATEWAY_PORT" not in os.environ


def execute(statements) -> None:
    """Run a job's StatementSet: until it ends, or, under `flink run --detached`, until the
    cluster has accepted it (waiting there would keep the client running with the job)."""
    result = statements.execute()
    if not _submitted_detached():
        result.wait()


def _submitted_detached() -> bool:
    if running_locally():
        return False
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.java_gateway import get_gateway

    attached = get_gateway().jvm.org.apache.flink.configuration.DeploymentOptions.ATTACHED
    env = StreamExecutionEnvironment.get_execution_environment()
    return not env._j_stream_execution_environment.getConfiguration().get(attached)


def create_table_env(config: JobConfig, job_name: str, *, streaming: bool = True,
                     extra_jars: list[Path] | tuple[Path, ...] = ()):
    """A StreamTableEnvironment configured for `config`."""
    _prepare_process_environment()
    jars = [*connector_jars(), *extra_jars]
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    settings = (EnvironmentSettings.in_streaming_mode() if streaming
                else EnvironmentSettings.in_batch_mode())
    t_env = StreamTableEnvironment.create(env, environment_settings=settings)
    conf = t_env.get_config()
    flink = config.flink
    options = {
        "pipeline.name": job_name,
        "pipeline.jars": ";".join(jar.as_uri() for jar in jars),
        "parallelism.default": str(flink.parallelism),
        # Event time is UTC end to end; TIMESTAMP columns written to PostgreSQL are UTC.
        "table.local-time-zone": "UTC",
        "python.execution-mode": flink.python_execution_mode,
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.pythonpath": python_worker_path(),
    }
    if streaming and flink.checkpoint_interval > 0:
        options["execution.checkpointing.interval"] = f"{int(flink.checkpoint_interval)} ms"
        if running_locally():
            # The MiniCluster's default checkpoint storage is the JobManager's heap, capped at
            # 5 MB of state; a cluster brings its own storage (conf/flink, or flink.options).
            options["execution.checkpointing.dir"] = (LOCAL_CHECKPOINTS / job_name).as_uri()
    options.update(flink.options)
    for key, value in options.items():
        conf.set(key, value)
    for package in PYTHON_PACKAGES:
        t_env.add_python_file(str(REPO_ROOT / package))
    return t_env
