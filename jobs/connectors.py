"""Connector options derived from a JobConfig: Kafka and JDBC tables for Flink SQL.

One place turns the config's Kafka security block and PostgreSQL settings into the option maps
the Flink connectors want, so every job connects the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jobs.config import JobConfig, KafkaConfig, PostgresConfig

# flink-sql-connector-kafka relocates the Kafka client; JAAS login modules must name the
# relocated classes or the connector fails with "No LoginModule found".
_KAFKA_PACKAGE = "org.apache.kafka."
_SHADED_KAFKA_PACKAGE = "org.apache.flink.kafka.shaded.org.apache.kafka."


def kafka_client_properties(kafka: KafkaConfig) -> dict[str, str]:
    """Java Kafka client properties (bootstrap, security, extras) for any client."""
    sec = kafka.security
    props = {"bootstrap.servers": kafka.bootstrap_servers, "security.protocol": sec.protocol}
    optional = {
        "sasl.mechanism": sec.sasl_mechanism,
        "sasl.jaas.config": sec.sasl_jaas_config,
        "ssl.truststore.location": sec.ssl_truststore_location,
        "ssl.truststore.password": sec.ssl_truststore_password,
        "ssl.truststore.type": sec.ssl_truststore_type,
        "ssl.keystore.location": sec.ssl_keystore_location,
        "ssl.keystore.password": sec.ssl_keystore_password,
        "ssl.key.password": sec.ssl_key_password,
        "ssl.endpoint.identification.algorithm": sec.ssl_endpoint_identification_algorithm,
    }
    props.update({k: str(v) for k, v in optional.items() if v is not None})
    props.update(kafka.properties)
    return props


def _shade_jaas(jaas: str) -> str:
    if jaas.startswith(_KAFKA_PACKAGE):
        return _SHADED_KAFKA_PACKAGE + jaas[len(_KAFKA_PACKAGE):]
    return jaas


def kafka_table_options(kafka: KafkaConfig, topic: str) -> dict[str, str]:
    """Options common to every Kafka table (source or sink) of the SQL connector."""
    options = {"connector": "kafka", "topic": topic}
    for key, value in kafka_client_properties(kafka).items():
        if key == "sasl.jaas.config":
            value = _shade_jaas(value)
        options[f"properties.{key}"] = value
    return options


def jdbc_url(pg: PostgresConfig) -> str:
    url = f"jdbc:postgresql://{pg.host}:{pg.port}/{pg.database}"
    params = {"user": pg.user} if pg.password is None else {}
    # reWriteBatchedInserts turns a JDBC batch into multi-row statements: several times faster.
    params["reWriteBatchedInserts"] = "true"
    # Strings are sent untyped so PostgreSQL casts them to the column's type (jsonb, say).
    params["stringtype"] = "unspecified"
    if pg.sslmode:
        params["sslmode"] = pg.sslmode
    return url + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def jdbc_table_options(config: JobConfig, table: str) -> dict[str, str]:
    """A Flink JDBC sink on a PostgreSQL table; with a PRIMARY KEY in the DDL it upserts."""
    pg, sink = config.postgres, config.jdbc_sink
    options = {
        "connector": "jdbc",
        "url": jdbc_url(pg),
        "table-name": table,
        "sink.buffer-flush.max-rows": str(sink.batch_size),
        "sink.buffer-flush.interval": f"{int(sink.flush_interval)} ms",
        "sink.max-retries": str(sink.max_retries),
    }
    # The connector takes user and password together or neither; a password-less local server
    # (trust auth on loopback) gets the user through the URL instead.
    if pg.password is not None:
        options.update({"username": pg.user, "password": pg.password})
    return options


def create_table_ddl(name: str, columns: Iterable[str], options: Mapping[str, str], *,
                     partitioned_by: Iterable[str] = ()) -> str:
    """CREATE TEMPORARY TABLE statement; column strings may include WATERMARK / PRIMARY KEY."""
    cols = ",\n  ".join(columns)
    opts = ",\n  ".join(f"'{_escape(k)}' = '{_escape(v)}'" for k, v in options.items())
    partitions = ", ".join(f"`{column}`" for column in partitioned_by)
    partitioning = f"\nPARTITIONED BY ({partitions})" if partitions else ""
    return (f"CREATE TEMPORARY TABLE `{name}` (\n  {cols}\n){partitioning}"
            f" WITH (\n  {opts}\n)")


def _escape(text: str) -> str:
    return str(text).replace("'", "''")
