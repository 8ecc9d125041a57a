"""Input that breaks the OpenAPI document, said in plain words: "unit_cost is required", "name may not
contain < > ; -- or a backslash", "limit must be a whole number".

Both validators the API uses (openapi-core's jsonschema for requests, fastjsonschema for uploads)
report a rule that failed, the field, the rule's value and the schema around it; ``describe`` turns
that into one sentence whose subject is the field. No regular expression or schema keyword reaches a
person: a pattern is described by the ``x-rule`` the document gives it beside the pattern (every
pattern has one; tests/unit/test_wording.py checks), and any rule not known here reads "is not valid".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

KINDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}
# A number's bounds, by the rule that sets them: "<field> must be at least 1".
BOUNDS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}
FORMATS = {"date": "a date written YYYY-MM-DD", "date-time": "a date and time (ISO 8601)"}


def kind(schema_type: Any) -> str:
    """``"integer"`` → "a whole number"; several types → "a number or text"."""
    types = schema_type if isinstance(schema_type, list) else [schema_type]
    return " or ".join(KINDS.get(str(each), str(each)) for each in types)


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000 else str(value)


def _alternatives(options: Sequence[Mapping[str, Any]]) -> str:
    said = [str(option.get("x-rule", "")).removeprefix("must be ") or kind(option.get("type", "object")) for option in options]
    return " or ".join(dict.fromkeys(said))


def describe(field: str, rule: str, rule_value: Any, schema: Mapping[str, Any], value: Any) -> str:
    """One sentence about ``value`` in ``field`` breaking ``rule`` (whose value is ``rule_value``) of ``schema``."""
    if rule == "required":
        return f"{field} is required"
    if rule == "type":
        return f"{field} must be {kind(rule_value)}"
    if rule in BOUNDS:
        return f"{field} must be {BOUNDS[rule]} {_number(rule_value)}"
    if rule == "minLength":
        return f"{field} may not be empty" if rule_value == 1 else f"{field} must be at least {rule_value} characters long"
    if rule == "maxLength":
        return f"{field} may be at most {_number(rule_value)} characters long"
    if rule == "minItems":
        return f"{field} needs at least {_number(rule_value)} item{'s' if rule_value != 1 else ''}"
    if rule == "maxItems":
        return f"{field} may hold at most {_number(rule_value)} items"
    if rule == "enum":
        return f"{field} must be one of: {', '.join(str(option) for option in rule_value)}"
    if rule in ("pattern", "format") and schema.get("x-rule"):
        return f"{field} {schema['x-rule']}"
    if rule == "format":
        return f"{field} must be {FORMATS.get(str(rule_value), 'in the expected form')}"
    if rule in ("oneOf", "anyOf"):
        return f"{field} {schema['x-rule']}" if schema.get("x-rule") else f"{field} must be {_alternatives(rule_value)}"
    if rule == "additionalProperties":
        return unknown_fields(field, value, schema)
    return f"{field} is not valid"


def unknown_fields(field: str, value: Any, schema: Mapping[str, Any]) -> str:
    known = list(schema.get("properties", {}))
    extra = [name for name in value if name not in known] if isinstance(value, Mapping) else []
    where = "" if field in ("", "body") else f" in {field}"
    names = ", ".join(repr(name) for name in extra[:3]) or "a field"
    return f"unknown field{'s' if len(extra) > 1 else ''} {names}{where} (expected: {', '.join(known)})"


def missing_property(value: Any, rule_value: Sequence[str]) -> str | None:
    """The first property ``required`` names that ``value`` lacks (validators report it on the parent)."""
    if isinstance(value, Mapping):
        return next((name for name in rule_value if name not in value), None)
    return None
