"""worker_service.brokers.redis: a failover's error replies are an outage (ConnectionError, connection
dropped), other errors stay errors; Sentinel URLs build a Sentinel pool (unit: no server)."""

from __future__ import annotations

import pytest
import redis

from worker_service.brokers.redis import FailoverAwareConnection, make_connection_pool


@pytest.mark.parametrize(
    "reply",
    [
        "READONLY You can't write against a read only replica.",
        "NOREPLICAS Not enough good replicas to write.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
        "ERR Error running script (call to f_1234): @user_script:5: READONLY You can't write against a read only replica.",
    ],
)
def test_a_failover_reply_is_a_connection_error_and_drops_the_connection(monkeypatch, reply):
    connection = FailoverAwareConnection()
    dropped = []
    monkeypatch.setattr(
        redis.Connection,
        "read_response",
        lambda self, *a, **k: (_ for _ in ()).throw(redis.ResponseError(reply)),
    )
    monkeypatch.setattr(connection, "disconnect", lambda *a, **k: dropped.append(True))
    with pytest.raises(redis.ConnectionError, match="failover"):
        connection.read_response()
    assert dropped == [True]


def test_other_errors_stay_errors(monkeypatch):
    connection = FailoverAwareConnection()
    monkeypatch.setattr(
        redis.Connection,
        "read_response",
        lambda self, *a, **k: (_ for _ in ()).throw(
            redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        ),
    )
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        connection.read_response()


def test_a_sentinel_url_makes_a_sentinel_pool_for_its_master():
    from redis.sentinel import SentinelConnectionPool

    pool = make_connection_pool(
        "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/3",
        socket_timeout=5,
        health_check_interval=0,
        connect_attempts=1,
        sentinel_password="sp",
    )
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "pw"
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [1, 2]
    plain = make_connection_pool(
        "redis://127.0.0.1:1/0", socket_timeout=5, health_check_interval=0, connect_attempts=1
    )
    assert plain.connection_class is FailoverAwareConnection
