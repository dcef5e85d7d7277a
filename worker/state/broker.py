"""kombu's Redis transport with :mod:`worker.state.connections`' failover rule.

Celery's broker connections are made by kombu, not by :func:`redis_client`; this transport
gives them the same connection classes, so a worker holding a connection to a primary that a
failover demoted (it answers ``READONLY``: its BRPOP, its acks) drops it. The error then reaches
kombu as a lost connection and Celery rebuilds every broker connection, to the new primary.
``app.py`` names this class in ``broker_transport`` for ``redis://`` and ``rediss://`` URLs.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

from worker.state.connections import PrimaryConnection, PrimarySSLConnection


class Channel(kombu_redis.Channel):
    connection_class = PrimaryConnection
    connection_class_ssl = PrimarySSLConnection


class Transport(kombu_redis.Transport):
    Channel = Channel


#: The dotted path Celery's ``broker_transport`` setting takes.
TRANSPORT = "worker.state.broker:Transport"
