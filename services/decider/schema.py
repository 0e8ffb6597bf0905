"""The published JSON Schema of the rule language, and a YAML reader that remembers
where every value was written so errors can name a line and a column.

``python -m services.decider.schema`` writes the schema to ``docs/rules.schema.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from services.common.contracts import Action, ConversationType

ACTIONS = [a.value for a in Action]
CONVERSATION_TYPES = [t.value for t in ConversationType]
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_names = {"type": "array", "items": {"type": "string", "minLength": 1}}
_selectors = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
    "description": "email/UPN patterns with * (anchored, case-insensitive), MRIs, "
    "group:NAME, domain:DOMAIN, tenant:ID",
}
_when: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "actions": {"type": "array", "minItems": 1, "items": {"enum": ACTIONS}},
        "conversation_types": {
            "type": "array",
            "minItems": 1,
            "items": {"enum": CONVERSATION_TYPES},
        },
        "location": {"enum": ["internal", "external"]},
        "federated": {"type": "boolean"},
        "actors": _selectors,
        "not_actors": _selectors,
        "participants": {
            "oneOf": [
                _selectors,
                {
                    "type": "object",
                    "additionalProperties": False,
                    "minProperties": 1,
                    "properties": {"any": _selectors, "all": _selectors, "none": _selectors},
                },
            ]
        },
        "external_participants": {"type": "boolean"},
        "time": {
            "type": "object",
            "additionalProperties": False,
            "required": ["tz"],
            "properties": {
                "tz": {"type": "string", "description": "IANA time zone, e.g. Europe/London"},
                "days": {"type": "array", "minItems": 1, "items": {"enum": DAY_NAMES}},
                "from": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                "to": {"type": "string", "pattern": "^([01][0-9]|2[0-4]):[0-5][0-9]$"},
            },
        },
        "text": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {"keywords": _names, "regex": _names},
        },
        "files": {
            "oneOf": [
                {"type": "boolean"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["extensions"],
                    "properties": {"extensions": {**_names, "minItems": 1}},
                },
            ]
        },
    },
}
_effect = {
    "oneOf": [
        {"enum": ["block", "allow"]},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["log"],
            "properties": {"log": {"type": "string"}},
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["add_header"],
            "properties": {
                "add_header": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"},
                    "additionalProperties": {"type": "string", "pattern": "^[^\\r\\n]*$"},
                }
            },
        },
    ]
}
_mode = {"enum": ["enforce", "monitor"]}
_unresolved = {
    "enum": ["auto", "match", "ignore"],
    "description": "when a fact the rule needs is unknown: auto (match if the rule "
    "blocks), match, or ignore (never match)",
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://teamsfirewall.example/schema/rules.schema.json",
    "title": "TeamsFirewall rule set",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "format": {"const": 1},
        "internal_tenants": _names,
        "default": {"enum": ["allow", "block"]},
        "unidentified_actor": {"enum": ["block", "evaluate"]},
        "x_forwarded_for": {"type": "boolean"},
        "lifetimes": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "conversation_map_s": {"type": "integer", "minimum": 0},
                "user_s": {"type": "integer", "minimum": 0},
                "token_purge_interval_s": {"type": "integer", "minimum": 0},
            },
        },
        "groups": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z0-9_.-]+$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {"people": _names, "domains": _names, "tenants": _names},
            },
        },
        "walls": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "oneOf": [{"required": ["between"]}, {"required": ["from", "to"]}],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "between": {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {"type": "string"},
                    },
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "actions": {"type": "array", "minItems": 1, "items": {"enum": ACTIONS}},
                    "mode": _mode,
                    "unresolved": _unresolved,
                    "message": {"type": "string"},
                },
            },
        },
        "exceptions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "rules", "until"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "rules": {**_names, "minItems": 1},
                    "when": _when,
                    "until": {"description": "ISO 8601 time with a UTC offset"},
                    "reason": {"type": "string"},
                },
            },
        },
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "then"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "description": {"type": "string"},
                    "mode": _mode,
                    "unresolved": _unresolved,
                    "when": _when,
                    "then": {"type": "array", "minItems": 1, "items": _effect},
                },
            },
        },
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "event", "expect"],
                "properties": {
                    "name": {"type": "string"},
                    "event": {"type": "object"},
                    "expect": {"type": "object"},
                },
            },
        },
    },
}


class Located:
    """A YAML document with the position of each value, keyed by its path."""

    def __init__(self, data: Any, marks: dict[tuple[Any, ...], tuple[int, int]]) -> None:
        self.data = data
        self.marks = marks

    def where(self, path: tuple[Any, ...]) -> tuple[int, int] | None:
        """Line and column (1-based) of the value at ``path``, or its nearest parent."""
        while True:
            if path in self.marks:
                return self.marks[path]
            if not path:
                return None
            path = path[:-1]


# A rule set holds hundreds of values; YAML aliases must not expand it past this (an
# alias "bomb" of nested anchors expands exponentially when walked or validated).
MAX_VALUES = 100_000


def load_located(source: str) -> Located:
    """Parse YAML safely, recording where each value starts. Raises ``yaml.YAMLError``,
    also for nesting too deep to parse, a recursive alias, or aliases that expand past
    ``MAX_VALUES`` values."""
    # Parsed once, with libyaml when present: a 1,000-rule file parses in a fraction
    # of the pure-Python time, and the nodes that give positions also give the data.
    loader = _LOADER(source)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise yaml.YAMLError("nested too deeply") from None
        if node is None:
            return Located({}, {})
        marks: dict[tuple[Any, ...], tuple[int, int]] = {}
        _walk(node, (), marks, [MAX_VALUES], set())
        try:
            data = loader.construct_document(node)
        except RecursionError:
            raise yaml.YAMLError("nested too deeply") from None
        return Located(data, marks)
    finally:
        loader.dispose()


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _walk(
    node: yaml.Node,
    path: tuple[Any, ...],
    marks: dict[tuple[Any, ...], tuple[int, int]],
    budget: list[int],
    ancestors: set[int],
) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise yaml.YAMLError(f"aliases expand the document past {MAX_VALUES} values")
    if id(node) in ancestors:
        raise yaml.YAMLError("a recursive alias (a value that contains itself)")
    if len(path) > 64:
        raise yaml.YAMLError("nested too deeply")
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        ancestors.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                _walk(value, (*path, key.value), marks, budget, ancestors)
                start = key.start_mark
                marks.setdefault((*path, key.value, "<key>"), (start.line + 1, start.column + 1))
        else:
            for index, item in enumerate(node.value):
                _walk(item, (*path, index), marks, budget, ancestors)
        ancestors.discard(id(node))


def write_schema(path: Path) -> None:
    """Write the schema as pretty JSON."""
    path.write_bytes(orjson.dumps(SCHEMA, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/rules.schema.json")
    write_schema(target)
    print(f"wrote {target}")
