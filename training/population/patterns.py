"""The fraud patterns the generator embeds, by name and by code (the `fraud_pattern` column's values)."""

from __future__ import annotations

NO_FRAUD = "none"
FRAUD_PATTERNS = (
    "account_takeover",
    "card_testing",
    "spending_spike",
    "compromised_merchant",
    "velocity_burst",
)
PATTERNS: tuple[str, ...] = (NO_FRAUD, *FRAUD_PATTERNS)
# Codes index PATTERNS, so they follow the order of FRAUD_PATTERNS.
NONE, TAKEOVER, CARD_TESTING, SPIKE, COMPROMISED, VELOCITY = range(len(PATTERNS))
PATTERN_SHARE = {TAKEOVER: 0.2, CARD_TESTING: 0.25, SPIKE: 0.1, COMPROMISED: 0.2, VELOCITY: 0.25}
"""Share of the fraudulent rows each pattern contributes."""
BURST_SIZE = {TAKEOVER: (3, 8), CARD_TESTING: (5, 15), SPIKE: (1, 1), VELOCITY: (10, 30)}
"""Transactions per fraud event, inclusive range."""
