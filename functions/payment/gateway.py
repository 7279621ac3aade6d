"""The simulated payment gateway: deterministic rules, configured from the environment.

Checked in this order; the first that applies declines the payment:

1. ``customer_blocked``: the customer id is in ``PAYMENT_BLOCKED_CUSTOMERS`` (comma-separated,
   default ``cust-blocked``).
2. ``amount_over_limit``: the amount is above ``PAYMENT_LIMIT_CENTS`` (default 100000, i.e.
   1000.00 EUR; the price list's LAPTOP alone is over it).

Everything else is authorized.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from functions.shop.events import DeclineReason

__all__ = ["DEFAULT_BLOCKED", "DEFAULT_LIMIT_CENTS", "Decline", "GatewayRules"]

DEFAULT_LIMIT_CENTS = 100_000
DEFAULT_BLOCKED = "cust-blocked"


@dataclass(frozen=True)
class Decline:
    reason: DeclineReason
    message: str


@dataclass(frozen=True)
class GatewayRules:
    limit_cents: int = DEFAULT_LIMIT_CENTS
    blocked_customers: frozenset[str] = frozenset({DEFAULT_BLOCKED})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewayRules:
        """Rules from ``PAYMENT_LIMIT_CENTS`` and ``PAYMENT_BLOCKED_CUSTOMERS``."""
        env = os.environ if environ is None else environ
        raw_limit = env.get("PAYMENT_LIMIT_CENTS", "").strip()
        try:
            limit = int(raw_limit) if raw_limit else DEFAULT_LIMIT_CENTS
        except ValueError:
            raise ValueError(f"PAYMENT_LIMIT_CENTS={raw_limit!r}: not a whole number") from None
        if limit < 0:
            raise ValueError(f"PAYMENT_LIMIT_CENTS={raw_limit!r}: must be >= 0")
        blocked = env.get("PAYMENT_BLOCKED_CUSTOMERS", DEFAULT_BLOCKED)
        return cls(limit, frozenset(c.strip() for c in blocked.split(",") if c.strip()))

    def decide(self, customer_id: str, amount_cents: int) -> Decline | None:
        """None to authorize, else why the payment is declined."""
        if customer_id in self.blocked_customers:
            return Decline("customer_blocked", f"customer {customer_id} is blocked")
        if amount_cents > self.limit_cents:
            return Decline(
                "amount_over_limit",
                f"{amount_cents / 100:.2f} is over the limit of {self.limit_cents / 100:.2f}",
            )
        return None
