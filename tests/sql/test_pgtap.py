"""Run the pgTAP isolation suites in tests/sql/ as pymem_app, on PG 16 and PG 18.

Each file is one property; its assertions are checked inside the file by pgTAP.
A second test breaks RLS on purpose (NO FORCE, DROP POLICY, DISABLE) and shows
that the same suites then fail: they would catch a regression.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.utils import (
    SERVER_VERSIONS,
    TAP_DIR,
    TAP_FILES,
    prepare_tap_database,
    run_file,
)


@pytest.fixture(scope="session", params=SERVER_VERSIONS, ids=lambda v: "external" if v is None else f"pg{v}")
def tap_database(cluster_for, request):
    """(cluster, DSN as the tap role) for a prepared pgTAP database on one PG version."""
    cluster = cluster_for(request.param)
    return cluster, prepare_tap_database(cluster, "pymem_tap")


def test_there_are_enough_suites():
    assert len(TAP_FILES) >= 6


@pytest.mark.parametrize("path", TAP_FILES, ids=lambda p: p.stem)
def test_pgtap_file(tap_summary, tap_database, path):
    cluster, tap_url = tap_database
    result = run_file(cluster.psql(), tap_url, path)
    server = "external" if cluster.pg_version is None else f"PostgreSQL {cluster.pg_version}"
    tap_summary.append((server, path.name, len(result.passed), result.planned or 0))
    assert result.ok, f"{path.name}: failed {result.failed}; ran {result.ran} of {result.planned}\n{result.output}"


SABOTAGE = {
    "no_force": "ALTER TABLE pymem.memory_chunks NO FORCE ROW LEVEL SECURITY",
    "drop_policy": "DROP POLICY tenant_isolation ON pymem.memory_chunks",
    "disable_rls": "ALTER TABLE pymem.memory_chunks DISABLE ROW LEVEL SECURITY",
}
ISOLATION_FILES = ["02_no_context_sees_nothing", "03_tenant_sees_own_rows", "04_cross_tenant_writes",
                   "06_hnsw_path_isolation"]


@pytest.mark.parametrize("sabotage", sorted(SABOTAGE))
def test_suites_fail_when_rls_is_broken(cluster_for, sabotage):
    cluster = cluster_for(SERVER_VERSIONS[-1])
    name = f"pymem_tap_{sabotage}"
    tap_url = prepare_tap_database(cluster, name)
    with psycopg.connect(cluster.url(name), autocommit=True) as conn:
        conn.execute(SABOTAGE[sabotage])
    failures = {f: run_file(cluster.psql(), tap_url, TAP_DIR / f"{f}.sql").failed for f in ISOLATION_FILES}
    broken = [f for f, failed in failures.items() if failed]
    # Every isolation property must notice; a suite that stays green here tests nothing.
    assert "03_tenant_sees_own_rows" in broken, failures
    assert len(broken) >= 3, failures
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
