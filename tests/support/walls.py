"""The small case the end-to-end tests share: Alice of firm sends in her direct chat
with Bob (allowed), or edits a message while working in a partner's tenant (blocked by
the one rule of ``RULES``)."""

from __future__ import annotations

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
PARTNER = "9a3f1e55-7c2d-4e8b-a1f0-3b6c9d2e4f33"
ALICE = "a11ce000-0000-4000-8000-000000000001"
CONV = (
    "19%3Aa11ce000-0000-4000-8000-000000000001_"
    "b0b00000-0000-4000-8000-000000000002%40unq.gbl.spaces"
)
SEND = f"https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations/{CONV}/messages"
EDIT = f"{SEND}/1764493200123"

RULES = f"""
internal_tenants: [{FIRM}]
rules:
  - name: No edits abroad
    when: {{actions: [message.edit], location: external}}
    then: [block]
"""
