"""The committed Pub/Sub stubs are exactly what `make proto` makes of the committed .proto."""

from __future__ import annotations

from pathlib import Path

from worker.salesforce.events import pubsub_pb2 as pb
from worker.salesforce.events.generate import GENERATED, HERE, generate


def test_regenerating_the_stubs_changes_nothing(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert [path.name for path in written] == list(GENERATED)
    for path in written:
        committed = HERE / path.name
        assert path.read_bytes() == committed.read_bytes(), (
            f"{committed.name} differs from what the .proto generates: run `make proto`"
        )


def test_the_wire_names_and_field_numbers_are_the_documented_ones() -> None:
    """The wire format is the interface: package, service, method and field numbers."""
    service = pb.DESCRIPTOR.services_by_name["PubSub"]
    assert service.full_name == "eventbus.v1.PubSub"
    assert sorted(m.name for m in service.methods) == ["GetSchema", "GetTopic", "Subscribe"]
    numbers = {
        message: {f.name: f.number for f in pb.DESCRIPTOR.message_types_by_name[message].fields}
        for message in pb.DESCRIPTOR.message_types_by_name
    }
    assert numbers["FetchRequest"] == {
        "topic_name": 1,
        "replay_preset": 2,
        "replay_id": 3,
        "num_requested": 4,
        "auth_refresh": 5,
    }
    assert numbers["FetchResponse"] == {
        "events": 1,
        "latest_replay_id": 2,
        "rpc_id": 3,
        "pending_num_requested": 4,
    }
    assert numbers["ConsumerEvent"] == {"event": 1, "replay_id": 2}
    assert numbers["ProducerEvent"] == {"id": 1, "schema_id": 2, "payload": 3, "headers": 4}
    assert numbers["TopicInfo"] == {
        "topic_name": 1,
        "tenant_guid": 2,
        "can_publish": 3,
        "can_subscribe": 4,
        "schema_id": 5,
        "rpc_id": 6,
    }
    assert numbers["SchemaInfo"] == {"schema_json": 1, "schema_id": 2, "rpc_id": 3}
    assert (pb.LATEST, pb.EARLIEST, pb.CUSTOM) == (0, 1, 2)
