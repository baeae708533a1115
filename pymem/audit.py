"""Reading and verifying the audit log (as ``pymem_auditor``).

Each tenant's audit rows form a hash chain: a row's ``row_hash`` covers its
predecessor's hash and its own canonical fields. ``pymem.audit_verify()`` walks
every chain and reports, per chain, the first row that is modified, missing a
predecessor (deleted) or out of order (reordered).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class AuditProblem:
    """The first row of one chain that does not verify."""

    user_hash: str | None
    seq: int
    chain_pos: int
    problem: str

    @property
    def chain_label(self) -> str:
        return "(no tenant)" if self.user_hash is None else f"{self.user_hash[:12]}…"


def verify_audit_log(conn: psycopg.Connection) -> list[AuditProblem]:
    """Run ``pymem.audit_verify()`` as pymem_auditor; an empty list means intact.

    Args:
        conn: a connection whose role is, or may SET ROLE to, ``pymem_auditor``.
    """
    with conn.transaction():
        conn.execute("SET LOCAL ROLE pymem_auditor")
        rows = conn.execute("SELECT user_hash, seq, chain_pos, problem FROM pymem.audit_verify()").fetchall()
    return [AuditProblem(*row) for row in rows]
