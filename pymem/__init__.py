"""pymem: an encrypted, multi-tenant memory store for AI applications, built around Postgres.

Start with :mod:`pymem.repository` (index, query, get, delete, erase), :mod:`pymem.security`
(seal/open, hmac_user, keys) and :mod:`pymem.tenant` (set_rls_context). The README has the
security model and the DBA guide.
"""

__version__ = "0.1.0"
