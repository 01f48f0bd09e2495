"""A corpus of JSON Schemas for the structured-output tests, each with a short task.

Written for these tests: nested objects, arrays with bounds, enums, const, anyOf, numbers
with ranges, string formats and patterns, required and optional keys, $ref / $defs.
Objects take no extra keys, strings carry a maxLength, a pattern, a format or an enum,
arrays a maxItems and numbers a multipleOf (a binary fraction, so jsonschema's float check
is exact), so every valid answer fits the tests' modest max_tokens (a small model may
otherwise fill a free string or a fraction until the limit: an honest "length", not a
failure of the mask).
"""

from __future__ import annotations

NAME = {"type": "string", "maxLength": 24}
SHORT = {"type": "string", "maxLength": 12}
AGE = {"type": "integer", "minimum": 0, "maximum": 120}


def _obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    out = {"type": "object", "properties": properties,
           "required": list(properties) if required is None else required,
           "additionalProperties": False}
    out.update(extra)
    return out


SCHEMAS: list[tuple[str, str, dict]] = [
    ("person", "a person", _obj({"name": NAME, "age": AGE})),
    ("city", "a city and its country", _obj({"city": NAME, "country": NAME})),
    ("book", "a book", _obj({"title": NAME, "year": {"type": "integer", "minimum": 1400,
                                                       "maximum": 2030}})),
    ("color_enum", "your favourite colour",
     _obj({"color": {"enum": ["red", "green", "blue", "yellow"]}})),
    ("bool_flag", "whether the sky is blue", _obj({"answer": {"type": "boolean"}})),
    ("const_version", "a config with version 2",
     _obj({"version": {"const": 2}, "name": SHORT})),
    ("tags_bounded", "two or three tags for a photo of a beach",
     _obj({"tags": {"type": "array", "items": SHORT, "minItems": 2, "maxItems": 3}})),
    ("scores", "three test scores between 0 and 100",
     _obj({"scores": {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                  "maximum": 100},
                      "minItems": 3, "maxItems": 3}})),
    ("temperature", "today's temperature in Celsius",
     _obj({"celsius": {"type": "number", "minimum": -50, "maximum": 60,
                       "multipleOf": 0.5}})),
    ("probability", "a probability",
     _obj({"p": {"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.125}})),
    ("exclusive_range", "a positive count below 10",
     _obj({"count": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}})),
    ("email", "a contact email", _obj({"email": {"type": "string", "format": "email",
                                                 "maxLength": 40}})),
    ("date", "a birthday", _obj({"birthday": {"type": "string", "format": "date"}})),
    ("uuid", "an object id", _obj({"id": {"type": "string", "format": "uuid"}})),
    ("ipv4", "a server address", _obj({"ip": {"type": "string", "format": "ipv4"}})),
    ("zip_pattern", "a US zip code", _obj({"zip": {"type": "string",
                                                   "pattern": "^[0-9]{5}$"}})),
    ("hex_color", "a colour in hex", _obj({"hex": {"type": "string",
                                                   "pattern": "^#[0-9a-f]{6}$"}})),
    ("sku_pattern", "a product code", _obj({"sku": {"type": "string",
                                                    "pattern": "^[A-Z]{3}-[0-9]{3}$"}})),
    ("optional_keys", "a user with an optional nickname",
     _obj({"name": NAME, "nickname": SHORT, "age": AGE}, required=["name"],
          additionalProperties=False)),
    ("no_extra", "a point", _obj({"x": {"type": "integer", "minimum": -100, "maximum": 100},
                                  "y": {"type": "integer", "minimum": -100, "maximum": 100}},
                                 additionalProperties=False)),
    ("nested_address", "a person with an address",
     _obj({"name": NAME, "address": _obj({"street": NAME, "city": SHORT})})),
    ("nested_three", "a company with a CEO and the CEO's contact",
     _obj({"company": SHORT, "ceo": _obj({"name": SHORT,
                                         "contact": _obj({"phone": {"type": "string",
                                                                    "pattern": "^[0-9]{7}$"}})})})),
    ("array_of_objects", "two pets",
     _obj({"pets": {"type": "array", "items": _obj({"name": SHORT, "legs": {
         "type": "integer", "minimum": 0, "maximum": 8}}), "minItems": 1, "maxItems": 2}})),
    ("matrix", "a 2x2 matrix",
     _obj({"rows": {"type": "array", "minItems": 2, "maxItems": 2,
                    "items": {"type": "array", "minItems": 2, "maxItems": 2,
                              "items": {"type": "integer", "minimum": -9, "maximum": 9}}}})),
    ("any_of_id", "an id that is a number or a short code",
     _obj({"id": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9999},
                            {"type": "string", "pattern": "^[a-z]{4}$"}]}})),
    ("any_of_shape", "a shape",
     _obj({"shape": {"anyOf": [
         _obj({"kind": {"const": "circle"}, "radius": {"type": "integer", "minimum": 1,
                                                       "maximum": 50}},
              additionalProperties=False),
         _obj({"kind": {"const": "square"}, "side": {"type": "integer", "minimum": 1,
                                                     "maximum": 50}},
              additionalProperties=False)]}})),
    ("nullable", "a middle name or null",
     _obj({"middle": {"anyOf": [SHORT, {"type": "null"}]}})),
    ("type_list", "a value that is a number or a boolean",
     _obj({"value": {"type": ["integer", "boolean"], "minimum": 0, "maximum": 100}})),
    ("ref_defs", "a line between two points",
     {"$defs": {"point": _obj({"x": {"type": "integer", "minimum": 0, "maximum": 99},
                               "y": {"type": "integer", "minimum": 0, "maximum": 99}},
                              additionalProperties=False)},
      **_obj({"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}})}),
    ("ref_definitions", "an order with a customer",
     {"definitions": {"customer": _obj({"name": NAME})},
      **_obj({"order_id": {"type": "integer", "minimum": 1, "maximum": 99999},
              "customer": {"$ref": "#/definitions/customer"}})}),
    ("ref_array", "a list of up to two colours",
     {"$defs": {"colour": {"enum": ["red", "green", "blue"]}},
      **_obj({"colours": {"type": "array", "items": {"$ref": "#/$defs/colour"},
                          "maxItems": 2}})}),
    ("string_bounds", "a three to eight letter word",
     _obj({"word": {"type": "string", "minLength": 3, "maxLength": 8}})),
    ("enum_numbers", "a dice roll", _obj({"roll": {"enum": [1, 2, 3, 4, 5, 6]}})),
    ("mixed_enum", "a status",
     _obj({"status": {"enum": ["ok", "error", 0, 1, None]}})),
    ("top_level_array", "up to three fruit names",
     {"type": "array", "items": SHORT, "minItems": 1, "maxItems": 3}),
    ("top_level_enum", "a weekday",
     {"enum": ["monday", "tuesday", "wednesday", "thursday", "friday"]}),
    ("top_level_integer", "a number from 1 to 10", {"type": "integer", "minimum": 1,
                                                    "maximum": 10}),
    ("recipe", "a recipe with ingredients",
     _obj({"dish": SHORT, "servings": {"type": "integer", "minimum": 1, "maximum": 12},
           "ingredients": {"type": "array", "items": SHORT, "minItems": 1, "maxItems": 3},
           "vegetarian": {"type": "boolean"}})),
    ("event", "a meeting",
     _obj({"title": SHORT, "date": {"type": "string", "format": "date"},
           "attendees": {"type": "array", "items": {"type": "string", "format": "email",
                                                    "maxLength": 30}, "maxItems": 2}})),
    ("inventory", "a store's stock of two items",
     _obj({"items": {"type": "array", "maxItems": 2, "items": _obj(
         {"sku": {"type": "string", "pattern": "^[0-9]{4}$"},
          "qty": {"type": "integer", "minimum": 0, "maximum": 500},
          "price": {"type": "number", "minimum": 0, "maximum": 1000,
                    "multipleOf": 0.25}})}})),
    ("optional_nested", "a profile with optional settings",
     _obj({"user": SHORT, "settings": _obj({"dark_mode": {"type": "boolean"},
                                            "font_size": {"type": "integer", "minimum": 8,
                                                          "maximum": 32}},
                                           required=["dark_mode"])}, required=["user"])),
    ("all_of", "a named item with a price",
     {"allOf": [_obj({"name": SHORT}, additionalProperties=True),
                _obj({"price": {"type": "integer", "minimum": 0, "maximum": 999}},
                     additionalProperties=True)],
      "properties": {"name": {}, "price": {}}, "additionalProperties": False}),
    ("time_pattern", "an alarm time", _obj({"alarm": {"type": "string",
                                                       "pattern": "^[0-2][0-9]:[0-5][0-9]$"}})),
    ("unique_items", "two different lucky numbers",
     _obj({"lucky": {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                 "maximum": 9}, "minItems": 2,
                     "maxItems": 2}})),
]


def prompt_for(task: str, schema: dict) -> str:
    import json

    return (f"Give {task}. Answer only with JSON matching this schema:\n"
            f"{json.dumps(schema)}")
