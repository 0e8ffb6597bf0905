"""The middle tier's answers (protocol notes §6.4, §5.14) and the token exchange
(§2.4): profiles with and without tenant ids, external search, tenants, authz."""

from __future__ import annotations

from collections.abc import Callable

from tfw.sim import views
from tfw.sim.org import Org
from tfw.sim.tokens import mint_skypetoken
from tfw.sim.wire import Call, Refused, SimResponse, Switches, json_body

SKYPETOKEN_LIFETIME_S = 86399


def _mris(call: Call) -> list[str]:
    body = json_body(call.request)
    if not isinstance(body, list) or not all(isinstance(m, str) for m in body):
        raise Refused(400, "Expected a JSON array of MRIs")
    return body


def fetch_short_profile(org: Org, switches: Switches, call: Call) -> SimResponse:
    """Profiles without ``tenantId``, as Teams answers (unknown MRIs are left out)."""
    found = [org.account_by_mri(mri) for mri in _mris(call)]
    profiles = [views.short_profile(a) for a in found if a is not None]
    return SimResponse(200, {"type": views.SHORT_PROFILE_TYPE, "value": profiles})


def fetch_federated(org: Org, switches: Switches, call: Call) -> SimResponse:
    """Profiles with ``tenantId``; a bare array when the quirk is switched on."""
    mris = _mris(call)
    if any("@" in mri for mri in mris):
        raise Refused(400, "fetchFederated takes MRIs, not email addresses")
    found = [org.account_by_mri(mri) for mri in mris]
    profiles = [views.federated_profile(a) for a in found if a is not None]
    if switches.federated_bare_array:
        return SimResponse(200, profiles)
    return SimResponse(200, {"type": views.FEDERATED_TYPE, "value": profiles})


def external_search(org: Org, switches: Switches, call: Call) -> SimResponse:
    if switches.federation_blocked:
        raise Refused(403, "Federation is blocked for this tenant")
    found = [a for a in org.accounts_by_email(call.rest[0]) if a.tenant.id != call.caller.tenant_id]
    return SimResponse(200, [views.external_search_entry(a) for a in found])


def tenants(org: Org, switches: Switches, call: Call) -> SimResponse:
    account = call.caller.account
    accounts = [account] if account else []
    if account and account.email:
        accounts = org.accounts_by_email(account.email)
    return SimResponse(200, views.tenants_of(accounts))


def authz(org: Org, switches: Switches, call: Call) -> SimResponse:
    """A skypetoken for the bearer's user, with the region's service map."""
    tenant = org.tenant_by_id(call.caller.tenant_id)
    if tenant is None:
        raise Refused(401, "Authentication failed: unknown tenant")
    token = mint_skypetoken(call.caller.oid, tenant.id, tenant.region, SKYPETOKEN_LIFETIME_S)
    return SimResponse(200, views.authz(tenant, token, SKYPETOKEN_LIFETIME_S))


HANDLERS: dict[str, Callable[[Org, Switches, Call], SimResponse]] = {
    "mt.fetchShortProfile": fetch_short_profile,
    "mt.fetchFederated": fetch_federated,
    "mt.externalsearchv3": external_search,
    "mt.tenants": tenants,
    "authz": authz,
}
