"""The audit service: the tamper-evident decision archive, its API and SIEM feeds."""
