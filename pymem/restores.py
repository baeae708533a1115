"""A pymem database restored without pymem's roles, told apart from one that was migrated.

Roles are the cluster's, not the database's: ``pg_dump`` holds none of them. Restored into a
server that lacks ``pymem_owner``, ``pymem_app``, ``pymem_maintainer`` and ``pymem_auditor``,
every object stays owned by whoever ran the restore (the ``ALTER ... OWNER TO`` statements
fail), and each function's grants fail with them: PostgreSQL's default, EXECUTE for PUBLIC,
stays on SECURITY DEFINER functions that run as a superuser. The schema looks migrated, at
its revision, and ``pymem migrate`` would have nothing to do.

:func:`restore_problems` names what such a restore leaves; ``pymem migrate`` refuses to run
on it and ``pymem doctor`` reports it, both with the fix: drop the database, create the roles
(``pg_dumpall --roles-only`` from the source, or the roles' statements in docs/schema.sql),
and restore again (docs/operations.md, "Backups").
"""

from __future__ import annotations

# One row: the owner of schema pymem, the pymem roles missing (pymem_maintainer is left out:
# revision 0001 had none, and a restore without roles lacks the other three as well), the owners
# of pymem's objects other than pymem_owner, how many of its functions PUBLIC may execute, and its
# tables whose row security is not forced. Every name qualified, no parameter: it runs through
# psycopg and SQLAlchemy alike.
RESTORE_CHECK_SQL = """
SELECT (SELECT pg_catalog.pg_get_userbyid(n.nspowner)::pg_catalog.text FROM pg_catalog.pg_namespace n
         WHERE n.nspname OPERATOR(pg_catalog.=) 'pymem'),
       ARRAY(SELECT r FROM pg_catalog.unnest(ARRAY['pymem_owner', 'pymem_app', 'pymem_auditor']::pg_catalog.text[]) AS r
              WHERE pg_catalog.to_regrole(r) IS NULL),
       ARRAY(SELECT DISTINCT o FROM (
               SELECT pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text AS o FROM pg_catalog.pg_class c
                WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace('pymem')
               UNION ALL
               SELECT pg_catalog.pg_get_userbyid(p.proowner)::pg_catalog.text FROM pg_catalog.pg_proc p
                WHERE p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace('pymem')
               UNION ALL
               SELECT pg_catalog.pg_get_userbyid(n.nspowner)::pg_catalog.text FROM pg_catalog.pg_namespace n
                WHERE n.nspname OPERATOR(pg_catalog.=) 'pymem') AS owners
              WHERE o OPERATOR(pg_catalog.<>) 'pymem_owner' ORDER BY 1),
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc p,
               pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS a
         WHERE p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace('pymem')
           AND a.grantee OPERATOR(pg_catalog.=) 0 AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'),
       ARRAY(SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_class c
              WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace('pymem')
                AND c.relkind IN ('r', 'p') AND NOT c.relforcerowsecurity ORDER BY 1)
"""

FIX = ("this looks like a restore without pymem's roles: drop the database, create the roles first"
       " (pg_dumpall --roles-only on the source server, or the CREATE ROLE statements of docs/schema.sql),"
       " then restore again (docs/operations.md, Backups)")


def restore_problems(row: tuple) -> list[str]:
    """What :data:`RESTORE_CHECK_SQL`'s row shows is wrong with a database restored without
    pymem's roles: [] unless a pymem role is missing or another role owns the schema.

    A single object changed on a database pymem migrated (a function's owner, a grant, row
    security) is tampering, not a restore: doctor's fingerprints name it, and
    ``pymem migrate --reapply-functions`` may repair it, which a refusal here would block.
    """
    schema_owner, missing, owners, public_execute, unforced = row
    if not missing and schema_owner in (None, "pymem_owner"):
        return []
    problems = []
    if missing:
        problems.append(f"roles missing: {', '.join(missing)}")
    if owners:
        problems.append(f"objects of schema pymem owned by {', '.join(owners)} instead of pymem_owner")
    if public_execute:
        problems.append(f"{public_execute} functions of schema pymem executable by PUBLIC")
    if unforced:
        problems.append(f"row security not forced on {', '.join(unforced)}")
    return problems
