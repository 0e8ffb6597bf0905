"""The decider service: pure rule evaluation, verdicts by request-reply."""
