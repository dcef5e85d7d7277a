"""Salesforce change events: our own Pub/Sub API client and the ``crmsync listen`` listener.

Reading order: ``pubsub.proto`` (the wire interface) → ``client.py`` (the gRPC edge) →
``schemas.py`` / ``changes.py`` (Avro payload → header) → ``relevance.py`` (which events can
change a customer) → ``stream.py`` (one topic's subscription) → ``listener.py`` (lease,
coalescing, enqueue, replay ids) → ``dispatch.py`` (the poll's own publishing path).
"""
