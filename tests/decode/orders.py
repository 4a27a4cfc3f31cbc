"""Order events: the benchmark's data set and the tests' realistic record (every kind of Avro type)."""

from __future__ import annotations

import datetime
import decimal
import random
from typing import Any

ORDER: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {
            "name": "customer",
            "type": {
                "type": "record",
                "name": "Customer",
                "fields": [{"name": "id", "type": "long"}, {"name": "country", "type": "string"}],
            },
        },
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Item",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "qty", "type": "int"},
                        {"name": "price", "type": "double"},
                    ],
                },
            },
        },
        {"name": "attributes", "type": {"type": "map", "values": "string"}},
        {"name": "note", "type": ["null", "string"]},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "total", "type": "double"},
    ],
}

WIDE_EXTRA_FIELDS = 40
"""The wide variant adds this many string and long fields (about 1 KiB per record in all)."""

WIDE_ORDER: dict[str, Any] = {
    **ORDER,
    "name": "WideOrder",
    "fields": [
        *ORDER["fields"],
        *({"name": f"label_{i}", "type": "string"} for i in range(WIDE_EXTRA_FIELDS)),
        *({"name": f"counter_{i}", "type": "long"} for i in range(WIDE_EXTRA_FIELDS)),
    ],
}

_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def order(i: int, rnd: random.Random) -> dict[str, Any]:
    """Order event number ``i``: 60-100 bytes of Avro."""
    return {
        "order_id": f"o-{i:010d}",
        "customer": {"id": rnd.randrange(10**7), "country": rnd.choice(["DE", "US", "FR", "BR"])},
        "items": [
            {"sku": f"sku-{rnd.randrange(10**4)}", "qty": rnd.randrange(1, 5), "price": round(rnd.random() * 100, 2)}
            for _ in range(rnd.randrange(1, 3))
        ],
        "attributes": {"channel": "web"} if i % 2 else {},
        "note": None if i % 3 else "gift wrap",
        "status": rnd.choice(["NEW", "PAID", "SHIPPED"]),
        "created_at": _EPOCH + datetime.timedelta(milliseconds=i * 37),
        "amount": decimal.Decimal(rnd.randrange(10**6)) / 100,
        "total": rnd.random() * 1000,
    }


def wide_order(i: int, rnd: random.Random) -> dict[str, Any]:
    """Order event number ``i`` with the wide variant's extra fields: about 1 KiB of Avro."""
    extra_strings = {f"label_{k}": f"value-{k}-{rnd.randrange(10**6):06d}" for k in range(WIDE_EXTRA_FIELDS)}
    extra_longs = {f"counter_{k}": rnd.randrange(2**40) for k in range(WIDE_EXTRA_FIELDS)}
    return {**order(i, rnd), **extra_strings, **extra_longs}


def as_json(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a JSON producer would write it: timestamps as ISO strings, decimals as numbers."""
    return {
        **event,
        "created_at": event["created_at"].isoformat(),
        "amount": float(event["amount"]),
    }
