"""Import a 2021 TeamsFirewall XML configuration into the YAML rule language.

Maps internal tenants, lifetimes, AddXFFHeader and every rule, and reports what it
mapped, what it could not map, and problems in the file. A BLOCK is never dropped
(the 2021 tool itself silently discarded BLOCK rules): a condition that cannot be
mapped is left out, which makes a blocking rule broader, never weaker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

import yaml

from services.decider.rules import compile_rules

EVENTS = {
    "MSGSND": ["message.send"],
    "MSGEDIT": ["message.edit"],
    "MSGDEL": ["message.delete"],
    "MSGUDEL": ["message.undelete"],
    "MSGEMO": ["reaction.add", "reaction.remove"],
    "MSGTYP": ["typing"],
}
# The 2021 tool only ever saw these actions, so a rule without EVENT meant all of them.
ALL_2021_ACTIONS = [action for actions in EVENTS.values() for action in actions]
CONVERSATION_TYPES = {
    "DIRECTCHAT": "direct",
    "GROUPCHAT": "group",
    "TEAMCHATSTD": "channel",
    "TEAMCHATPRIV": "private_channel",
    "MEETINGCHAT": "meeting",
}
LIFETIMES = {  # 2021 setting (minutes) -> our key (seconds)
    "ConversationMapLifetime": "conversation_map_s",
    "UserLifetime": "user_s",
    "APITokenPurgeInterval": "token_purge_interval_s",
}
KEY_ORDER = ("actions", "conversation_types", "location", "federated", "actors", "participants")
_TENANT_ID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class LegacyError(ValueError):
    """A file that is not a readable 2021 configuration."""


@dataclass
class Element:
    tag: str
    line: int
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find(self, tag: str) -> Element | None:
        return next((c for c in self.children if c.tag == tag), None)

    def all(self, tag: str) -> list[Element]:
        return [c for c in self.children if c.tag == tag]

    def value(self, tag: str) -> str | None:
        child = self.find(tag)
        return child.text.strip() if child is not None else None


@dataclass
class ImportReport:
    mapped: list[str] = field(default_factory=list)
    not_mapped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = []
        for title, items in (
            ("Mapped", self.mapped),
            ("Not mapped", self.not_mapped),
            ("Problems", self.problems),
        ):
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  - {item}" for item in items] or ["  (none)"]
        return "\n".join(lines)


def parse_xml(text: str) -> Element:
    """Parse XML with line numbers. Document type declarations (and so entity
    expansion) are refused."""
    parser = expat.ParserCreate()
    stack: list[Element] = []
    root: list[Element] = []

    def start(tag: str, _attrs: dict[str, str]) -> None:
        element = Element(tag, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(element)
        else:
            root.append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    def doctype(*_args: Any) -> None:
        raise LegacyError("document type declarations are not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(text, True)
    except UnicodeEncodeError:
        raise LegacyError("not XML: the text holds characters that are not valid Unicode") from None
    except expat.ExpatError as exc:
        raise LegacyError(
            f"not XML: {expat.errors.messages[exc.code]} at line {exc.lineno}, "
            f"column {exc.offset + 1}"
        ) from None
    if not root or root[0].tag != "Settings":
        raise LegacyError("not a TeamsFirewall configuration (no <Settings> root)")
    return root[0]


def import_xml(text: str, source_name: str = "") -> tuple[str, ImportReport]:
    """Convert a 2021 configuration to YAML; the report says what happened."""
    settings = parse_xml(text)
    report = ImportReport()
    document: dict[str, Any] = {"format": 1}
    general = settings.find("GeneralSettings") or Element("GeneralSettings", 0)
    _general(general, document, report)
    rules = []
    rules_element = settings.find("Rules")
    names: set[str] = set()
    for index, element in enumerate(rules_element.all("Rule") if rules_element else []):
        rule = _rule(index, element, report)
        # Names identify rules in verdicts and records, so they must be unique; the
        # 2021 file did not require it.
        name, number = rule["name"], 2
        while name.casefold() in names:
            name, number = f"{rule['name']} ({number})", number + 1
        if name != rule["name"]:
            report.problems.append(
                f"line {element.line}: a second rule named {rule['name']!r}, renamed {name!r}"
            )
            rule["name"] = name
        names.add(name.casefold())
        rules.append(rule)
    document["rules"] = rules
    header = f"# Imported from the 2021 TeamsFirewall configuration {source_name}\n"
    output = header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    compile_rules(output)  # the importer's own output must always be a valid rule set
    return output, report


def _general(general: Element, document: dict[str, Any], report: ImportReport) -> None:
    tenants = []
    ids = general.find("InternalTenantIds")
    for element in ids.all("TenantId") if ids else []:
        value = element.text.strip()
        if _TENANT_ID.match(value):
            tenants.append(value.lower())
        else:
            report.problems.append(
                f"line {element.line}: internal tenant id {value!r} is not a tenant id "
                "(a placeholder?); it was left out: set internal_tenants before use"
            )
    document["internal_tenants"] = tenants
    report.mapped.append(f"InternalTenantIds -> internal_tenants ({len(tenants)})")
    if not tenants:
        report.problems.append("no internal tenant: every actor will count as external")

    xff = general.value("AddXFFHeader")
    if xff is not None:
        document["x_forwarded_for"] = xff.upper() == "TRUE"
        report.mapped.append(f"AddXFFHeader {xff} -> x_forwarded_for: {xff.upper() == 'TRUE'}")

    lifetimes = {}
    for name, key in LIFETIMES.items():
        minutes = general.value(name)
        if minutes is None:
            continue
        value = minutes
        if value.isdigit():
            lifetimes[key] = int(value) * 60
            report.mapped.append(f"{name} {value} min -> lifetimes.{key}: {int(value) * 60}")
        else:
            report.problems.append(f"{name} {value!r} is not a number of minutes; left out")
    if lifetimes:
        document["lifetimes"] = lifetimes
    if general.find("MaxAPIUserLookupThreads") is not None:
        report.not_mapped.append(
            "MaxAPIUserLookupThreads: lookup concurrency is a resolver setting, not a rule"
        )
    if general.find("LogLevels") is not None:
        report.not_mapped.append("LogLevels: logging is set per service (TFW_LOG_LEVEL)")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _rule(index: int, element: Element, report: ImportReport) -> dict[str, Any]:
    name = element.value("RuleName") or f"Imported rule {index + 1}"
    if not element.value("RuleName"):
        report.problems.append(f"line {element.line}: a rule without a name, called {name!r}")
    where = f"rule '{name}' (line {element.line})"
    when: dict[str, Any] = {}
    conditions = element.find("Conditions")
    for condition in conditions.all("Condition") if conditions else []:
        _condition(condition, when, where, report)
    if "actions" not in when:
        when["actions"] = list(ALL_2021_ACTIONS)
        report.mapped.append(f"{where}: no EVENT, so every 2021 event kind (MSGSND ... MSGTYP)")
    when = {key: when[key] for key in KEY_ORDER if key in when}

    then: list[Any] = []
    actions = element.find("Actions")
    for action in actions.all("Action") if actions else []:
        _action(action, then, where, report)
    if not then:
        then.append({"log": f"imported rule '{name}' had no usable action"})
        report.problems.append(f"{where}: no usable action; imported as log only")
    effects = ", ".join(e if isinstance(e, str) else next(iter(e)) for e in then)
    report.mapped.append(f"{where}: {', '.join(when)} -> {effects}")
    return {"name": name, "when": when, "then": then}


def _condition(condition: Element, when: dict[str, Any], where: str, report: ImportReport) -> None:
    kind = (condition.value("Type") or "").upper()
    value = condition.value("Value") or ""
    if kind == "EVENT":
        actions = []
        for code in _split(value.upper()):
            if code in EVENTS:
                actions += EVENTS[code]
            else:
                report.problems.append(f"{where}: unknown event code {code!r} left out")
        if actions:
            _merge(when, "actions", actions, where, report)
    elif kind == "CONVERSATIONTYPE":
        types = []
        for code in _split(value.upper()):
            if code in CONVERSATION_TYPES:
                types.append(CONVERSATION_TYPES[code])
            else:
                report.problems.append(f"{where}: unknown conversation type {code!r} left out")
        if types:
            _merge(when, "conversation_types", types, where, report)
    elif kind == "LOCATION" and value.upper() in ("INTERNAL", "EXTERNAL"):
        when["location"] = value.lower()
    elif kind == "FEDERATED" and value.upper() in ("TRUE", "FALSE"):
        when["federated"] = value.upper() == "TRUE"
    elif kind in ("ACTORS", "PARTICIPANTS") and _split(value):
        _merge(when, kind.lower(), _split(value), where, report)
    else:
        report.not_mapped.append(
            f"{where}: condition {kind or '(no type)'}={value!r} could not be mapped and was "
            "left out (the rule is broader)"
        )


def _merge(
    when: dict[str, Any], key: str, values: list[str], where: str, report: ImportReport
) -> None:
    if key in when:
        report.problems.append(f"{where}: {key} given twice; the lists were merged")
        values = when[key] + [v for v in values if v not in when[key]]
    when[key] = list(dict.fromkeys(values))


def _action(action: Element, then: list[Any], where: str, report: ImportReport) -> None:
    kind = (action.value("Type") or "").upper()
    params = [p.text.strip() for p in action.all("Param1")]
    param2 = action.value("Param2")
    if kind in ("BLOCK", "DROP"):
        if "block" not in then:
            then.insert(0, "block")
        if kind == "DROP":
            report.problems.append(f"{where}: DROP read as BLOCK")
    elif kind == "LOG":
        then.append({"log": params[0] if params else ""})
    elif kind == "ADDHEADER":
        if len(params) == 2 and param2 is None:
            report.problems.append(
                f"{where}: ADDHEADER at line {action.line} has two Param1 and no Param2; "
                f"read as header {params[0]!r} with value {params[1]!r}"
            )
            name, value = params[0], params[1]
        else:
            name, value = (params[0] if params else ""), param2 or ""
        if not name or not value or not _HEADER.match(name) or "\n" in value:
            report.not_mapped.append(f"{where}: ADDHEADER without a valid name and value")
            return
        then.append({"add_header": {name: value}})
    else:
        report.not_mapped.append(f"{where}: action {kind or '(no type)'} is unknown")
