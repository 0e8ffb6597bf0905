"""The chat service's answers (protocol notes §5 and §6): sends, edits, deletes,
reactions, receipts, new chats, members, topics, and the thread lookups."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from tfw.sim import views
from tfw.sim.org import Conversation, Org
from tfw.sim.wire import Call, Refused, SimResponse, json_body

MAX_PAGE_SIZE = 1000


def send(org: Org, call: Call) -> SimResponse:
    json_body(call.request)
    arrival = views.now_ms()
    location = f"{call.base}/v1/users/ME/conversations/{call.rest[0]}/messages/{arrival}"
    return SimResponse(201, {"OriginalArrivalTime": arrival}, {"Location": location})


def messages(org: Org, call: Call) -> SimResponse:
    return SimResponse(200, {"messages": [], "_metadata": {"backwardLink": "", "syncState": ""}})


def edit(org: Org, call: Call) -> SimResponse:
    json_body(call.request)
    return SimResponse(200, {"edittime": views.now_ms()})


def delete(org: Org, call: Call) -> SimResponse:
    return SimResponse(200, None)


def accepted(org: Org, call: Call) -> SimResponse:
    """Reactions, read receipts: 200 once the body is JSON."""
    json_body(call.request)
    return SimResponse(200, {})


def conversation(org: Org, call: Call) -> SimResponse:
    return SimResponse(200, views.conversation_view(org, call.thread, call.caller.account))


def thread(org: Org, call: Call) -> SimResponse:
    return SimResponse(200, views.thread(org, call.thread, call.base))


def members(org: Org, call: Call) -> SimResponse:
    try:
        page_size = int(call.query.get("pageSize") or 100)
        offset = int(call.query.get("skipToken") or 0)
    except ValueError:
        raise Refused(400, "pageSize and skipToken must be numbers") from None
    if not 1 <= page_size <= MAX_PAGE_SIZE or offset < 0:
        raise Refused(400, f"pageSize must be 1..{MAX_PAGE_SIZE}")
    return SimResponse(200, views.members_page(org, call.thread, call.base, offset, page_size))


def consumption_horizons(org: Org, call: Call) -> SimResponse:
    return SimResponse(200, views.consumption_horizons(org, call.thread))


def member(org: Org, call: Call) -> SimResponse:
    account = org.account_by_mri(call.rest[-1])
    if account is None:
        raise Refused(404, "User not found")
    if call.request.method == "PUT":
        json_body(call.request)
        org.add_member(call.thread, account)
    else:
        org.remove_member(call.thread, account)
    return SimResponse(200, {})


def thread_properties(org: Org, call: Call) -> SimResponse:
    body = json_body(call.request)
    if call.query.get("name") == "topic" and isinstance(body, dict):
        call.thread.topic = str(body.get("topic") or "")
    return SimResponse(200, {})


def create(org: Org, call: Call) -> SimResponse:
    """``POST /v1/threads``: 201 with the new thread in ``Location`` and an empty body."""
    body = json_body(call.request)
    if not isinstance(body, dict) or not isinstance(body.get("members"), list):
        raise Refused(400, "A thread needs a members list")
    properties = body.get("properties") or {}
    one_to_one = str(properties.get("uniquerosterthread", "")).lower() == "true"
    suffix = "uni01_" + secrets.token_hex(20) if one_to_one else secrets.token_hex(16)
    keys = []
    for entry in body["members"]:
        account = org.account_by_mri(str((entry or {}).get("id", "")))
        if account is not None:
            keys.append(account.key)
    caller = call.caller
    tenant = caller.account.tenant if caller.account else next(iter(org.tenants.values()))
    created = Conversation(
        key=f"created-{suffix[-8:]}",
        id=f"19:{suffix}@thread.v2",
        kind="direct" if one_to_one else "group",
        tenant=tenant,
        topic=properties.get("topic"),
        members=keys,
        created_by=caller.mri,
    )
    org.add_conversation(created)
    return SimResponse(201, {}, {"Location": f"{call.base}/v1/threads/{created.id}"})


HANDLERS: dict[str, Callable[[Org, Call], SimResponse]] = {
    "send": send,
    "messages": messages,
    "edit": edit,
    "delete": delete,
    "message_properties": accepted,
    "conversation_properties": accepted,
    "conversation": conversation,
    "thread": thread,
    "members": members,
    "consumptionhorizons": consumption_horizons,
    "member": member,
    "thread_properties": thread_properties,
}
