"""REDIS_SENTINELS becomes one redis-sentinel:// URL, and each client library gets it in its
own form (kombu's sentinel:// list, redbeat's sentinel options)."""

from __future__ import annotations

import pytest

from worker.app import redis_conf
from worker.settings import Settings, SettingsError, load_settings
from worker.settings.sentinel import parse_sentinel_url
from worker.state.connections import PrimaryConnection


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_sentinels_and_password_make_one_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch,
        REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26380",
        REDIS_SENTINEL_MASTER="crmsync",
        REDIS_PASSWORD="p@ss word",
        REDIS_SENTINEL_PASSWORD="sentinel-secret",
        REDIS_SENTINEL_TLS="true",
    )
    assert settings.redis_url is not None
    target = parse_sentinel_url(settings.redis_url)
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert target.service_name == "crmsync"
    assert target.password == "p@ss word"
    assert target.sentinel_password == "sentinel-secret"
    assert target.tls
    assert "sentinel-secret" not in repr(settings)


def test_a_plain_url_beside_sentinels_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises((SettingsError, ValueError), match="REDIS_SENTINELS and REDIS_URL"):
        _settings(
            monkeypatch,
            REDIS_SENTINELS="10.0.0.1:26379",
            REDIS_SENTINEL_MASTER="crmsync",
            REDIS_URL="redis://10.0.0.9:6379/0",
        )


def test_sentinels_need_the_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises((SettingsError, ValueError), match="REDIS_SENTINEL_MASTER"):
        _settings(monkeypatch, REDIS_SENTINELS="10.0.0.1:26379")


def test_every_celery_client_gets_the_sentinels() -> None:
    url = "redis-sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/0?service_name=crmsync"
    conf = redis_conf(url, 600)
    assert conf["broker_url"] == ("sentinel://:pw@10.0.0.1:26379/0;sentinel://:pw@10.0.0.2:26379/0")
    assert conf["broker_transport"] is None  # kombu's sentinel transport, from the scheme
    assert conf["broker_transport_options"]["master_name"] == "crmsync"
    assert conf["broker_transport_options"]["visibility_timeout"] == 600
    assert conf["result_backend_transport_options"]["master_name"] == "crmsync"
    assert conf["redbeat_redis_url"] == "redis-sentinel://"
    options = conf["redbeat_redis_options"]
    assert options["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert options["service_name"] == "crmsync" and options["password"] == "pw"


def test_a_plain_url_keeps_our_transport() -> None:
    conf = redis_conf("redis://127.0.0.1:6379/0")
    assert conf["broker_transport"] == "worker.state.broker:Transport"
    assert conf["broker_transport_options"]["retry_on_timeout"] is False
    # beat's redbeat client also drops a connection to a demoted primary
    assert conf["redbeat_redis_options"]["connection_class"] is PrimaryConnection
