"""SQLite persistence: the Store (one writer thread), requests, the audit trail, identity overrides."""

from storage.audit import AuditLog
from storage.db import Store, from_db_time, to_db_time
from storage.identities import IdentityImportError, IdentityOverride, IdentityStore
from storage.requests import GrantSchedule, PendingTimeout, RequestRepo

__all__ = [
    "AuditLog",
    "GrantSchedule",
    "IdentityImportError",
    "IdentityOverride",
    "IdentityStore",
    "PendingTimeout",
    "RequestRepo",
    "Store",
    "from_db_time",
    "to_db_time",
]
