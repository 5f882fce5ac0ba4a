"""How the OpenAPI document describes what Pydantic does not validate: documents handed on as sent, extra media types.

- ``DescribedBy(Model)`` on a ``dict[str, Any]`` body field: Pydantic checks only that the value
  is a JSON object (the error is the one a plain ``dict`` field gives), the route receives it
  as sent, and the document shows ``Model``'s schema (its nested models become components as
  usual). For signed or digested documents that the domain parses itself.
- ``inline_schema(Model)``: ``Model``'s schema with its definitions inlined, for a
  ``responses=`` entry of another media type (``application/geo+json``): FastAPI copies such a
  schema as it is, where a ``#/$defs/...`` reference would not resolve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


@dataclass(frozen=True)
class DescribedBy:
    """Marks a ``dict[str, Any]`` field as a JSON object whose shape ``model`` describes in the OpenAPI
    document, while the value reaches the route as sent (see the module docstring)."""

    model: type[BaseModel]

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(self.model.__pydantic_core_schema__)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its definitions inlined, for a ``responses=`` entry (whose schema
    FastAPI copies as it is, so a ``#/$defs/...`` reference there would not resolve)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)
