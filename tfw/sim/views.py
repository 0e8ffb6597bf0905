"""The JSON shapes the simulated Teams answers with, from the protocol notes.

Pure functions of the organisation: thread properties, member pages, consumption
horizons, the conversation view, middle-tier profiles and the authz answer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

from tfw.sim.org import Account, Conversation, Org, Tenant

PRODUCT_THREAD_TYPES = {
    "direct-legacy": "OneToOneChat",
    "direct": "OneToOneChat",
    "group": "Chat",
    "meeting": "Meeting",
    "team": "TeamsTeam",
    "channel": "TeamsStandardChannel",
    "private-channel": "TeamsPrivateChannel",
}
SHORT_PROFILE_TYPE = "Microsoft.SkypeSpaces.MiddleTier.Models.IUserIdentity"
FEDERATED_TYPE = "Microsoft.SkypeSpaces.MiddleTier.Models.FederatedUser"
# Larger rosters are only complete through the paged members endpoint.
THREAD_VIEW_MEMBER_CAP = 100
CREATED_AT = 1764000000000


def now_ms() -> int:
    return int(time.time() * 1000)


def role_of(roster: list[Account], account: Account) -> str:
    """The creator (first of the roster) is Admin; guests are Guest; the rest User."""
    if roster and roster[0] is account:
        return "Admin"
    return "Guest" if account.type == "Guest" else "User"


def member_entry(roster: list[Account], account: Account, base: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": account.mri,
        "role": role_of(roster, account),
        "userLink": f"{base}/v1/users/ME/contacts/{account.mri}",
        "linkedMri": "",
        "friendlyName": account.name,
    }
    return entry


def thread_properties(org: Org, conversation: Conversation) -> dict[str, str]:
    """``properties`` of ``GET /v1/threads/{id}``: what TFW and PT classify by."""
    roster = org.members(conversation)
    properties = {
        "creator": conversation.created_by or (roster[0].mri if roster else ""),
        "tenantid": conversation.tenant.id,
        "createdat": str(CREATED_AT),
        "historydisclosed": "false",
    }
    kind = conversation.kind
    if kind in ("direct", "direct-legacy"):
        properties |= {"threadType": "chat", "uniquerosterthread": "true", "fixedRoster": "true"}
    elif kind == "group":
        properties["threadType"] = "chat"
    elif kind == "meeting":
        properties["threadType"] = "meeting"
    elif kind == "team":
        properties |= {"threadType": "space", "spaceType": "standard"}
        properties["groupId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, conversation.id))
    elif kind == "channel":
        team = org.conversations[conversation.team or ""]
        properties |= {"threadType": "topic", "spaceId": team.id}
    elif kind == "private-channel":
        team = org.conversations[conversation.team or ""]
        properties |= {
            "threadType": "space",
            "spaceTypes": "private",
            "parentSpaces": team.id,
        }
    if conversation.topic:
        properties["topic"] = conversation.topic
    return properties


def thread(org: Org, conversation: Conversation, base: str) -> dict[str, Any]:
    """The thread resource; members are included only for rosters of up to 100."""
    roster = org.members(conversation)
    body: dict[str, Any] = {
        "id": conversation.id,
        "type": "Thread",
        "version": now_ms(),
        "properties": thread_properties(org, conversation),
    }
    if len(roster) <= THREAD_VIEW_MEMBER_CAP:
        body["members"] = [member_entry(roster, a, base) for a in roster]
    return body


def members_page(
    org: Org, conversation: Conversation, base: str, offset: int, page_size: int
) -> dict[str, Any]:
    """One page of ``GET /v1/threads/{id}/members``, with an absolute ``nextLink``."""
    roster = org.members(conversation)
    page = roster[offset : offset + page_size]
    body: dict[str, Any] = {"members": [member_entry(roster, a, base) for a in page]}
    following = offset + page_size
    if following < len(roster):
        body["nextLink"] = (
            f"{base}/v1/threads/{quote(conversation.id, safe='')}/members"
            f"?view=msnp24Equivalent&pageSize={page_size}&skipToken={following}"
        )
    return body


def consumption_horizons(org: Org, conversation: Conversation) -> dict[str, Any]:
    stamp = CREATED_AT
    return {
        "id": conversation.id,
        "version": now_ms(),
        "consumptionhorizons": [
            {
                "id": account.mri,
                "consumptionhorizon": f"{stamp};{stamp};0",
                "messageVisibilityTime": stamp,
            }
            for account in org.members(conversation)
            if not account.is_bot
        ],
    }


def conversation_view(org: Org, conversation: Conversation, caller: Account | None) -> dict:
    """``GET /v1/users/ME/conversations/{id}?view=msnp24Equivalent``."""
    properties = thread_properties(org, conversation)
    thread_properties_view: dict[str, Any] = {
        "threadType": properties.get("threadType"),
        "productThreadType": PRODUCT_THREAD_TYPES[conversation.kind],
        "topic": conversation.topic or "",
        "uniquerosterthread": properties.get("uniquerosterthread", "false"),
        "rosterVersion": CREATED_AT,
    }
    if "spaceId" in properties:
        thread_properties_view["spaceId"] = properties["spaceId"]
    role = role_of(org.members(conversation), caller) if caller else "User"
    return {
        "id": conversation.id,
        "type": "Conversation",
        "version": now_ms(),
        "threadProperties": thread_properties_view,
        "memberProperties": {"role": role},
        "lastMessage": {},
    }


def short_profile(account: Account) -> dict[str, Any]:
    """A fetchShortProfile entry: note there is no ``tenantId``."""
    given, _, surname = account.name.partition(" ")
    return {
        "mri": account.mri,
        "objectId": account.oid,
        "email": account.email,
        "userPrincipalName": account.email,
        "displayName": account.name,
        "givenName": given,
        "surname": surname,
        "userType": "Bot" if account.is_bot else account.type,
        "type": "Bot" if account.is_bot else "ADUser",
        "tenantName": account.tenant.name,
        "companyName": account.tenant.name,
        "jobTitle": "",
        "department": account.department or "",
        "isShortProfile": True,
        "accountEnabled": True,
    }


def federated_profile(account: Account) -> dict[str, Any]:
    return {
        "mri": account.mri,
        "objectId": account.oid,
        "email": account.email,
        "userPrincipalName": account.email,
        "tenantId": account.tenant.id,
        "type": "Federated",
        "displayName": account.name,
        "userType": account.type,
        "isShortProfile": False,
    }


def external_search_entry(account: Account) -> dict[str, Any]:
    return {
        "tenantId": account.tenant.id,
        "mri": account.mri,
        "objectId": account.oid,
        "userPrincipalName": account.email,
        "email": account.email,
        "displayName": account.name,
        "type": "Federated",
        "isShortProfile": True,
        "accountEnabled": True,
        "featureSettings": {"coExistenceMode": "TeamsOnly", "enableChat": True},
    }


def region_gtms(region: str) -> dict[str, str]:
    """The service map authz hands the client (a subset of the real keys)."""
    web = "https://teams.microsoft.com"
    return {
        "chatService": f"https://{region}.ng.msg.teams.microsoft.com",
        "chatServiceAfd": f"{web}/api/chatsvc/{region}",
        "chatServiceAggregator": "https://chatsvcagg.teams.microsoft.com",
        "chatSvcAggAfd": f"{web}/api/csa/{region}",
        "middleTier": f"{web}/api/mt/part/{region}-02",
        "ams": f"https://{region}-api.asm.skype.com",
        "amsV2": f"https://{region}-prod.asyncgw.teams.microsoft.com",
        "teamsAndChannelsService": f"{web}/api/mt/part/{region}-02",
        "unifiedPresence": "https://presence.teams.microsoft.com",
        "search": f"{web}/api/search/{region}",
        "urlp": "https://urlp.asm.skype.com",
        "calling_callControllerServiceUrl": "https://api.flightproxy.teams.microsoft.com/api/v2/ep/cc",
        "calling_conversationServiceUrl": "https://api.flightproxy.teams.microsoft.com/api/v2/ep/conv",
        "calling_trouterUrl": "https://go.trouter.teams.microsoft.com/v4/c",
    }


def authz(tenant: Tenant, skypetoken: str, expires_in: int) -> dict[str, Any]:
    region = tenant.region
    return {
        "tokens": {"skypeToken": skypetoken, "expiresIn": expires_in, "tokenType": "SkypeToken"},
        "region": region,
        "partition": f"{region}01",
        "regionGtms": region_gtms(region),
        "regionSettings": {"isFederationEnabled": True, "isTeamsFederationEnabled": True},
        "licenseDetails": {"isFreemium": False, "isTrial": False, "isAdvComms": False},
    }


def tenants_of(accounts: list[Account]) -> list[dict[str, Any]]:
    """``GET users/tenants``: every tenant the person has an account in."""
    return [
        {
            "tenantId": account.tenant.id,
            "userId": account.oid,
            "tenantName": account.tenant.name,
            "userType": account.type,
            "isInvitationRedeemed": True,
            "countryLetterCode": "",
        }
        for account in accounts
    ]
