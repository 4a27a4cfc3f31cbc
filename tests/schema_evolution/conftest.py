"""The decoder tests' real registry and serializers (confluent-kafka's AvroSerializer), reused as they are."""

from tests.decode.conftest import avro_values, client, columnar, store

__all__ = ["avro_values", "client", "columnar", "store"]
