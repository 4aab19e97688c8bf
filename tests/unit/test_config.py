"""Job config loading: golden fixtures, each kind of error, interpolation, secrets."""

import json
from pathlib import Path

import pytest

from jobs.config import (
    ConfigError,
    Duration,
    JobConfig,
    Secret,
    load_config,
    parse_config,
    to_dict,
    with_flink_options,
)
from jobs.connectors import jdbc_table_options, kafka_table_options

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "config"
REPO = Path(__file__).resolve().parents[2]

FULL_ENV = {
    "TEST_KAFKA_BOOTSTRAP": "k1:9093,k2:9093",
    "TEST_JAAS": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                 'username="u" password="p";',
    "TEST_TRUSTSTORE_PASSWORD": "ts",
    "TEST_KEYSTORE_PASSWORD": "ks",
    "TEST_KEY_PASSWORD": "kp",
    "TEST_PGPASSWORD": "pw",
}

MINIMAL = {"kafka": {"bootstrap_servers": "b:9092"}, "postgres": {"host": "db"}}


def with_keys(**sections) -> dict:
    """MINIMAL with some sections replaced or added."""
    return {**MINIMAL, **sections}


@pytest.mark.parametrize("name, env", [("minimal", {}), ("full", FULL_ENV)])
def test_golden_fixture_loads_to_expected_values(name, env):
    config = load_config(FIXTURES / f"{name}.yaml", env)
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    assert to_dict(config) == expected


def test_minimal_config_takes_every_default():
    config = parse_config(MINIMAL, {})
    assert config.topics.readings.name == "meter.readings"
    assert config.topics.dead_letters.name == "meter.readings.dlq"
    assert config.event_time.max_out_of_orderness == 30_000
    assert config.flink.python_execution_mode == "thread"
    assert config.postgres.password is None


@pytest.mark.parametrize("path", sorted((REPO / "conf").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    env = {"KAFKA_BOOTSTRAP": "b:9093", "KAFKA_SASL_JAAS_CONFIG": "x", "KAFKA_TRUSTSTORE": "/t",
           "KAFKA_TRUSTSTORE_PASSWORD": "p", "PGHOST": "db", "PGPASSWORD": "pw"}
    assert isinstance(load_config(path, env), JobConfig)


@pytest.mark.parametrize("raw, message", [
    (with_keys(kafka={"bootstrap_servers": "b:9092", "group": "x"}),
     "kafka.group: unknown key (expected one of: bootstrap_servers, group_id"),
    (with_keys(topics={"readings": {"name": "r", "partitions": "four"}}),
     "topics.readings.partitions: expected an integer; got str 'four'"),
    (with_keys(topics={"readings": {"name": "r", "partitions": True}}),
     "topics.readings.partitions: expected an integer; got bool True"),
    ({"kafka": {"bootstrap_servers": "b:9092"}}, "postgres: required key is missing"),
    ({"kafka": {}, "postgres": {"host": "db"}}, "kafka.bootstrap_servers: required key is missing"),
    (with_keys(kafka={"bootstrap_servers": "b", "security": {"protocol": "TLS"}}),
     "kafka.security.protocol: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL; "
     "got 'TLS'"),
    (with_keys(event_time={"idle_timeout": "soon"}),
     "event_time.idle_timeout: expected a duration such as 500ms, 30s, 5min, 2h or 1d; "
     "got 'soon'"),
    (with_keys(event_time={"idle_timeout": 60}),
     "event_time.idle_timeout: expected a duration such as 500ms, 30s, 5min; got int 60"),
    (with_keys(flink={"options": {"a": {"nested": 1}}}), "flink.options.a: expected a scalar"),
    (with_keys(postgres="db"), "postgres: expected a mapping; got str 'db'"),
    (["not", "a", "mapping"], "<top>: expected a mapping; got list"),
    (with_keys(aggregate={"parquet": {"enabled": True, "path": "/data/cold"}}),
     "aggregate.parquet.path: expected a URI starting with file://, s3://, s3a://, hdfs://; "
     "got '/data/cold'"),
])
def test_each_kind_of_error_names_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, {})
    assert message in str(err.value)


def test_missing_environment_variable_names_key_and_variable():
    raw = with_keys(postgres={"host": "db", "password": "${PG_SECRET}"})
    with pytest.raises(ConfigError, match=r"postgres.password: environment variable PG_SECRET "
                                          r"is not set"):
        parse_config(raw, {})


def test_interpolation_default_and_typed_value_from_environment():
    raw = with_keys(postgres={"host": "${H:-localhost}", "port": "${P:-5433}"})
    assert parse_config(raw, {}).postgres.port == 5433
    config = parse_config(raw, {"H": "db.example", "P": "6000"})
    assert (config.postgres.host, config.postgres.port) == ("db.example", 6000)


def test_empty_optional_secret_from_environment_is_absent():
    raw = with_keys(postgres={"host": "db", "password": "${PW:-}"})
    assert parse_config(raw, {}).postgres.password is None
    assert parse_config(raw, {"PW": "s3cret"}).postgres.password == "s3cret"


def test_secrets_never_print_in_clear():
    raw = with_keys(postgres={"host": "db", "password": "${PW}"})
    config = parse_config(raw, {"PW": "hunter2"})
    assert isinstance(config.postgres.password, Secret)
    assert "hunter2" not in repr(config)
    assert to_dict(config)["postgres"]["password"] == "***"


def test_literal_yaml_string_is_not_a_number():
    # Only values from the environment are read as numbers; a quoted YAML string stays a string.
    with pytest.raises(ConfigError, match=r"postgres\.port: expected an integer"):
        parse_config(with_keys(postgres={"host": "db", "port": "5432"}), {})


def test_unreadable_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)


def test_error_from_file_is_prefixed_with_its_path(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("kafka: {bootstrap_servers: b}\npostgres: {host: db, prot: 1}\n")
    with pytest.raises(ConfigError, match=r"job.yaml: postgres.prot: unknown key"):
        load_config(path)


@pytest.mark.parametrize("text, millis", [("500ms", 500), ("30s", 30_000), ("5min", 300_000),
                                          ("2h", 7_200_000), ("1d", 86_400_000)])
def test_duration_units(text, millis):
    assert Duration.parse(text) == millis


def test_command_line_flink_options_override():
    config = with_flink_options(parse_config(MINIMAL, {}), ["restart-strategy.type=none"])
    assert config.flink.options == {"restart-strategy.type": "none"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        with_flink_options(config, ["novalue"])


def test_kafka_security_passes_through_to_connector_options():
    config = load_config(FIXTURES / "full.yaml", FULL_ENV)
    options = kafka_table_options(config.kafka, "east.readings")
    assert options["properties.security.protocol"] == "SASL_SSL"
    assert options["properties.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["properties.ssl.truststore.location"] == "/etc/grid/truststore.jks"
    assert options["properties.ssl.truststore.password"] == "ts"
    assert options["properties.fetch.max.bytes"] == "52428800"
    # The SQL connector relocates the Kafka client; the login module must name the shaded class.
    assert options["properties.sasl.jaas.config"].startswith(
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule")


def test_jdbc_options_carry_credentials_only_when_a_password_exists():
    local = parse_config(MINIMAL, {})
    assert "username" not in jdbc_table_options(local, "t")
    assert "user=gridstream" in jdbc_table_options(local, "t")["url"]
    full = load_config(FIXTURES / "full.yaml", FULL_ENV)
    options = jdbc_table_options(full, "t")
    assert (options["username"], options["password"]) == ("flink", "pw")
    assert "sslmode=verify-full" in options["url"]
