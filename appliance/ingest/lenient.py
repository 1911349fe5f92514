"""Lenient OTLP message classes: the official trace descriptors with every ``string``
field turned into ``bytes``, and every ``attributes`` list into a list of still-encoded
KeyValues.

Why: the collector's otlphttp exporter drops a batch for good on any 4xx/5xx other than
429/502/503/504, so decoding must accept everything the collector could accept. Go does
not validate UTF-8 in protobuf strings, python upb does. ``bytes`` has the same wire format
as ``string`` (and as an embedded message), so these classes parse any OTLP payload; text
is decoded later with ``errors="replace"`` (``appliance.ingest.attributes``), and an
attribute is parsed only when it is read, often from a cache of its encoded bytes.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def _lenient_classes() -> tuple[type[Message], type[Message]]:
    """ExportTraceServiceRequest and KeyValue from a private descriptor pool."""
    kind = descriptor_pb2.FieldDescriptorProto
    key_value = "." + common_pb2.KeyValue.DESCRIPTOR.full_name

    def strings_to_bytes(msg: descriptor_pb2.DescriptorProto) -> None:
        for field in msg.field:
            if field.type == kind.TYPE_STRING:
                field.type = kind.TYPE_BYTES
            elif field.name == "attributes" and field.type_name == key_value:
                field.type = kind.TYPE_BYTES  # same wire format: length-delimited
                field.ClearField("type_name")
        for nested in msg.nested_type:
            strings_to_bytes(nested)

    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        for msg in proto.message_type:
            strings_to_bytes(msg)
        pool.Add(proto)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(cls.DESCRIPTOR.full_name))
        for cls in (trace_service_pb2.ExportTraceServiceRequest, common_pb2.KeyValue))


LenientRequest, LenientKeyValue = _lenient_classes()
