"""Strategy adapters: small idempotent adapters that grant and revoke one target for one person.

The protocol they implement, and the values that cross it, live in `core.strategy`.
"""
