"""Property tests of request parsing (resolver classify and understand, interceptor
scope): whatever a client sends, no exception escapes and every request is given an
action."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.contracts import Action, InterceptedRequest
from services.interceptor.scope import action_class, canonical_path, route
from services.interceptor.settings import ACTION_CLASSES
from services.resolver.classify import classify
from services.resolver.enrich import understand
from tests.fuzz.strategies import HOSTS, METHODS, fuzz, message_bodies, paths, requests

FUZZ = fuzz(1.5)


@FUZZ
@given(st.sampled_from(METHODS), st.sampled_from(HOSTS), paths, message_bodies)
def test_classification_never_raises_and_always_names_an_action(method, host, path, body):
    parsed = classify(method, host, path, body)
    assert isinstance(parsed.action, Action)
    assert "?" not in parsed.path


@FUZZ
@given(requests)
def test_understanding_a_request_never_raises(request: InterceptedRequest):
    event, parsed, tokens = understand(request)
    assert event.action is parsed.action
    assert event.id == request.id
    for token in tokens:
        assert token.raw not in event.model_dump_json()


@FUZZ
@given(st.sampled_from(METHODS), st.sampled_from(HOSTS), paths, message_bodies, st.booleans())
def test_the_interceptor_routes_every_request_without_raising(method, host, path, body, reads):
    decided = route(method, host, path, consumer=True, decide_reads=reads)
    assert isinstance(decided.decide, bool)
    assert action_class(method, path, body) in ACTION_CLASSES


@FUZZ
@given(st.sampled_from(METHODS), st.sampled_from(HOSTS), paths)
def test_a_path_is_decided_whenever_the_path_a_server_resolves_it_to_would_be(
    method, host, path
):
    resolved = route(method, host, canonical_path(path), consumer=True)
    if resolved.decide:
        assert route(method, host, path, consumer=True).decide
