"""Body features: message type, text, files, mentions, importance; never an exception."""

from __future__ import annotations

import orjson
import pytest

from services.resolver.body import MAX_DEPTH, parse_body, plain_text

MENTIONS = [{"@type": "http://schema.skype.com/Mention", "itemid": 0, "mri": "8:orgid:b0b"}]
FILE = {"@type": "http://schema.skype.com/File", "title": "Positions.XLSX", "state": "active"}


@pytest.mark.parametrize("as_string", [True, False], ids=["new client", "legacy client"])
def test_files_and_mentions_are_read_as_json_strings_or_arrays(as_string: bool) -> None:
    def wrap(value: object) -> object:
        return orjson.dumps(value).decode() if as_string else value

    body = {
        "messagetype": "RichText/Html",
        "content": "<p>see <b>file</b> &amp; note</p>",
        "properties": {"files": wrap([FILE]), "mentions": wrap(MENTIONS), "importance": "HIGH"},
    }
    features = parse_body(orjson.dumps(body)).features
    assert features.message_type == "RichText/Html"
    assert features.text == "see file & note"
    assert [(f.name, f.extension) for f in features.files] == [("Positions.XLSX", "xlsx")]
    assert features.has_files
    assert features.mentions == ["8:orgid:b0b"]
    assert features.importance == "high"


def test_an_empty_files_list_is_no_file_share() -> None:
    body = {"messagetype": "Text", "properties": {"files": "[]", "mentions": "[]"}}
    features = parse_body(orjson.dumps(body)).features
    assert not features.has_files
    assert features.mentions == []


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{not json", "body is not JSON"),
        (b"[" * 200 + b"]" * 200, "body nested too deeply"),
    ],
)
def test_a_bad_body_is_reported_not_raised(raw: bytes, error: str) -> None:
    assert parse_body(raw).features.parse_error == error


def _nested(containers: int, leaf: object = "deep") -> bytes:
    """A body with ``containers`` nested under ``properties``: its innermost value sits
    at depth ``containers + 1`` (the top object is depth 0)."""
    value: object = leaf
    for level in range(containers):
        value = [value] if level % 2 else {"k": value}
    return orjson.dumps({"messagetype": "Text", "content": "x", "properties": value})


@pytest.mark.parametrize("wide", [False, True], ids=["few brackets", "many brackets"])
def test_nesting_is_refused_one_level_past_the_limit_and_not_at_it(wide: bool) -> None:
    """With many brackets elsewhere in the body, its depth is walked, not inferred from
    the count of brackets."""

    def body(containers: int, leaf: object = "deep") -> bytes:
        data = orjson.loads(_nested(containers, leaf))
        if wide:
            data["mentions"] = [[] for _ in range(100)]
        return orjson.dumps(data)

    assert parse_body(body(MAX_DEPTH - 1)).features.parse_error is None
    # An empty list at the deepest allowed level: nothing sits past the limit.
    assert parse_body(body(MAX_DEPTH - 1, [])).features.parse_error is None
    assert parse_body(body(MAX_DEPTH)).features.parse_error == "body nested too deeply"
    assert parse_body(body(MAX_DEPTH - 1, [1])).features.parse_error == "body nested too deeply"


def test_many_brackets_side_by_side_are_not_depth() -> None:
    """A wide body (hundreds of small objects) is read; only depth is refused."""
    files = [{"title": f"f{i}.pdf"} for i in range(300)]
    features = parse_body(orjson.dumps({"properties": {"files": files}})).features
    assert features.parse_error is None
    assert len(features.files) == 300


def test_broken_property_strings_are_ignored() -> None:
    body = {"messagetype": "Text", "properties": {"files": "[{broken", "mentions": 7}}
    features = parse_body(orjson.dumps(body)).features
    assert features.files == [] and features.mentions == []


def test_plain_text_strips_markup_and_decodes_entities() -> None:
    assert plain_text("<div>a&lt;b<br/>c</div>") == "a<b c"
