"""JSON Schema (draft 2020-12) of the wire format, generated from the dataclasses' type hints.

The generated schema is kept in the repository as `atp/flexoffer/flexoffer.schema.json`;
a test regenerates it and compares, so model and schema cannot drift.
`goflex-atp schema` prints it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

from atp.flexoffer.codec import MAX_ABS_NUMBER, MAX_SAFE_INTEGER, _field_specs, _optional_inner
from atp.flexoffer.model import FlexOffer, Measurement, Schedule

__all__ = ["SCHEMA_PATH", "flexoffer_schema", "schema_json"]

SCHEMA_PATH = Path(__file__).with_name("flexoffer.schema.json")
_ID = "https://goflex-twin.example/schema/flexoffer-v1.json"


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    inner = _optional_inner(tp)
    if inner is not None:
        return {"anyOf": [_type_schema(inner, defs), {"type": "null"}]}
    if tp is float:
        return {"type": "number", "minimum": -MAX_ABS_NUMBER, "maximum": MAX_ABS_NUMBER}
    if tp is int:
        return {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER}
    if tp is str:
        return {"type": "string"}
    if tp is datetime:
        return {"type": "string", "format": "date-time"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0], defs)}
        return {
            "type": "array",
            "prefixItems": [_type_schema(a, defs) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    raise TypeError(f"no schema for {tp!r}")


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    props = {name: _type_schema(tp, defs) for name, tp, _ in _field_specs(cls)}
    required = [name for name, _, req in _field_specs(cls) if req]
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    return {
        "type": "object",
        "description": doc,
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def flexoffer_schema() -> dict[str, Any]:
    """The schema: a FlexOffer at the root; Schedule and Measurement under `$defs`."""
    defs: dict[str, Any] = {}
    root = _object_schema(FlexOffer, defs)
    for cls in (Schedule, Measurement):
        _type_schema(cls, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": _ID,
        "title": "GOFLEX Flex-Offer (wire format v1)",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def schema_json() -> str:
    """The schema as the text kept in the repository."""
    return json.dumps(flexoffer_schema(), indent=2, sort_keys=False) + "\n"
