"""The registry enforces BACKWARD compatibility on greenlane's subjects."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from greenlane.streams.runtime import admin
from greenlane.streams.settings import load_settings, schema_path

pytestmark = pytest.mark.integration


def test_incompatible_change_is_refused_and_compatible_one_accepted():
    s = load_settings(env=dict(os.environ, GREENLANE_TOPIC_PREFIX=f"it-{uuid.uuid4().hex[:8]}."))
    client = admin.registry_client(s)
    ids = admin.register_schemas(s, client).ids
    assert admin.register_schemas(s, client).ids == ids  # idempotent
    subject = admin.subject_for(s.topics.name("pre_arrival"))
    assert client.get_compatibility(subject) == "BACKWARD"

    schema = json.loads(schema_path("pre_arrival").read_text())
    breaking = json.loads(json.dumps(schema))
    breaking["fields"].append({"name": "declarant_id", "type": "string", "doc": "no default"})
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subject, Schema(json.dumps(breaking), "AVRO"))
    assert err.value.http_status_code == 409

    compatible = json.loads(json.dumps(schema))
    compatible["fields"].append(
        {"name": "declarant_id", "type": ["null", "string"], "default": None, "doc": "optional"}
    )
    new_id = client.register_schema(subject, Schema(json.dumps(compatible), "AVRO"))
    assert new_id != ids["pre_arrival"]
