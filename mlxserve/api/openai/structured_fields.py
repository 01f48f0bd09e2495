"""Structured-output request fields, shared by chat and completions: OpenAI's
``response_format`` and vLLM's ``structured_outputs`` / ``guided_json`` / ``guided_regex``
/ ``guided_choice`` / ``guided_grammar``. At most one of them may constrain a request."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from mlxserve.errors import InvalidRequest
from mlxserve.structured.spec import (CHOICE, GRAMMAR, JSON_OBJECT, JSON_SCHEMA, REGEX,
                                      StructuredOutput)

_VLLM_KEYS = {"json": JSON_SCHEMA, "regex": REGEX, "choice": CHOICE, "grammar": GRAMMAR,
              "json_object": JSON_OBJECT}


def _schema_value(value: Any, param: str) -> dict[str, Any]:
    """A JSON Schema given as an object or as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidRequest(f"'{param}' is not valid JSON: {e}", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be a JSON Schema object", param=param)
    return value


def _spec(kind: str, value: Any, param: str) -> StructuredOutput:
    if kind == JSON_SCHEMA:
        return StructuredOutput(JSON_SCHEMA, schema=_schema_value(value, param), param=param)
    if kind == CHOICE:
        if not isinstance(value, list):
            raise InvalidRequest(f"'{param}' must be an array of strings", param=param)
        return StructuredOutput(CHOICE, choices=tuple(value), param=param)
    if kind == JSON_OBJECT:
        return StructuredOutput(JSON_OBJECT, param=param)
    if kind == REGEX:
        return StructuredOutput(REGEX, regex=value, param=param)
    return StructuredOutput(GRAMMAR, grammar=value, param=param)


def response_format_spec(response_format: dict[str, Any] | None) -> StructuredOutput | None:
    param = "response_format"
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == JSON_OBJECT:
        return StructuredOutput(JSON_OBJECT, param=param)
    if kind != JSON_SCHEMA:
        raise InvalidRequest("response_format type must be 'text', 'json_object' or "
                             "'json_schema'", param=param)
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        raise InvalidRequest("response_format 'json_schema' needs a 'json_schema' object "
                             "with a 'schema'", param="response_format.json_schema")
    schema = _schema_value(spec["schema"], "response_format.json_schema.schema")
    return StructuredOutput(JSON_SCHEMA, schema=schema, name=spec.get("name"), param=param)


def structured_outputs_spec(value: dict[str, Any]) -> StructuredOutput | None:
    """vLLM's ``structured_outputs``: {json | regex | choice | grammar | json_object}."""
    given = [k for k in _VLLM_KEYS if value.get(k) not in (None, False)]
    if len(given) > 1:
        raise InvalidRequest("'structured_outputs' takes one of json, regex, choice, grammar "
                             f"or json_object (got {', '.join(given)})", param="structured_outputs")
    if not given:
        return None
    key = given[0]
    return _spec(_VLLM_KEYS[key], value[key], f"structured_outputs.{key}")


class StructuredFields(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    response_format: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None

    def structured_output(self) -> StructuredOutput | None:
        """The one StructuredOutput these fields ask for (400 when several do)."""
        found = [s for s in (response_format_spec(self.response_format),
                             structured_outputs_spec(self.structured_outputs or {}),
                             *self._guided()) if s is not None]
        if len(found) > 1:
            names = ", ".join(s.param for s in found)
            raise InvalidRequest(f"only one structured output may be given (got {names})",
                                 param=found[1].param)
        return found[0] if found else None

    def _guided(self) -> list[StructuredOutput | None]:
        fields = ((self.guided_json, JSON_SCHEMA, "guided_json"),
                  (self.guided_regex, REGEX, "guided_regex"),
                  (self.guided_choice, CHOICE, "guided_choice"),
                  (self.guided_grammar, GRAMMAR, "guided_grammar"))
        return [_spec(kind, value, param) for value, kind, param in fields if value is not None]
