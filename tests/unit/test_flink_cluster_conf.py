"""The local cluster's rendered configuration: one slot per TaskManager, as many TaskManagers
as GRIDSTREAM_FLINK_TASKMANAGERS says, a metrics port for each."""

import pytest
import yaml

from tools import flink_cluster
from tools.processes import StackError


@pytest.fixture
def rendered(tmp_path, monkeypatch):
    """render_conf() into a scratch folder instead of .stack/flink (a cluster may be running)."""
    monkeypatch.setattr(flink_cluster, "FLINK_STACK", tmp_path / "flink")
    monkeypatch.setattr(flink_cluster, "RENDERED_CONF", tmp_path / "flink" / "conf")

    def render():
        conf_dir = flink_cluster.render_conf()
        return (yaml.safe_load((conf_dir / "config.yaml").read_text()),
                (conf_dir / "workers").read_text().splitlines())

    return render


def test_two_taskmanagers_with_one_slot_each_by_default(rendered, monkeypatch):
    monkeypatch.delenv("GRIDSTREAM_FLINK_TASKMANAGERS", raising=False)
    monkeypatch.setenv("GRIDSTREAM_PROMETHEUS_PORT", "19249")
    conf, workers = rendered()
    assert conf["taskmanager"]["numberOfTaskSlots"] == 1
    assert workers == ["127.0.0.1", "127.0.0.1"]
    # The JobManager and each TaskManager take one port of the range.
    assert conf["metrics"]["reporter"]["prom"]["port"] == "19249-19251"
    assert flink_cluster.prometheus_urls() == [
        f"http://127.0.0.1:{port}/metrics" for port in (19249, 19250, 19251)]


def test_taskmanager_count_from_the_environment(rendered, monkeypatch):
    monkeypatch.setenv("GRIDSTREAM_FLINK_TASKMANAGERS", "4")
    monkeypatch.setenv("GRIDSTREAM_PROMETHEUS_PORT", "20000")
    conf, workers = rendered()
    assert len(workers) == 4
    assert conf["metrics"]["reporter"]["prom"]["port"] == "20000-20004"


@pytest.mark.parametrize("value", ["0", "two", "17"])
def test_a_bad_taskmanager_count_is_one_line_naming_the_variable(value, monkeypatch):
    monkeypatch.setenv("GRIDSTREAM_FLINK_TASKMANAGERS", value)
    with pytest.raises(StackError) as err:
        flink_cluster.taskmanagers()
    message = str(err.value)
    assert f"GRIDSTREAM_FLINK_TASKMANAGERS={value!r}" in message and "1-16" in message
    assert "\n" not in message
