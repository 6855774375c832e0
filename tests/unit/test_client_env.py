"""The variables user code gets, from a state.json."""

from __future__ import annotations

from stacktest.client_env import client_environment, with_client_environment

STATE = {
    "toxiproxy_api": "http://127.0.0.1:8474",
    "instances": {
        "db": {
            "service": "db",
            "fields": {"url": "postgresql://u:p@127.0.0.1:5001", "host": "127.0.0.1", "port": "5001"},
            "client_env": {"PGPORT": "5001", "DATABASE_URL": "postgresql://u:p@127.0.0.1:5001/app"},
        },
        "db-replica": {
            "service": "db-replica",
            "fields": {"url": "postgresql://u:p@127.0.0.1:5002", "host": "127.0.0.1", "port": "5002"},
            "client_env": {"PGPORT": "5002", "DATABASE_URL": "postgresql://u:p@127.0.0.1:5002/app"},
        },
        "worker.1": {"service": "worker", "fields": {"url": "http://127.0.0.1:6001", "port": "6001"}},
        "worker.2": {"service": "worker", "fields": {"url": "http://127.0.0.1:6002", "port": "6002"}},
    },
}


def test_per_service_names_and_the_first_of_each_kind() -> None:
    env = client_environment(STATE)
    assert env["DB_URL"] == "postgresql://u:p@127.0.0.1:5001" and env["DB_PORT"] == "5001"
    assert env["DB_REPLICA_PORT"] == "5002"  # '-' becomes '_'
    assert env["PGPORT"] == "5001" and env["DATABASE_URL"].endswith(":5001/app")  # the first
    assert env["WORKER_PORT"] == "6001"  # a replicated service: its first instance
    assert "WORKER_1_PORT" not in env
    assert env["TOXIPROXY_URL"] == "http://127.0.0.1:8474"


def test_what_the_caller_set_wins() -> None:
    env = with_client_environment(STATE, {"DATABASE_URL": "mine", "PATH": "/bin"})
    assert env["DATABASE_URL"] == "mine" and env["PATH"] == "/bin" and env["PGPORT"] == "5001"
