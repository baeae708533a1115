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

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pymem_devtools.citus import TEST_SHARD_COUNT

from pymem import migrations
from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.cli import main
from pymem.db import aconnect, connect
from pymem.distribute import TENANT_FUNCTIONS, NotReady, distribute
from pymem.doctor import check_schema
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from pymem.tenant import enter_tenant_call
from tests.utils import (
    TAP_FILES,
    TAP_ROLE,
    inheriting_copy,
    prepare_tap_database,
    run_file,
    vec,
)

# The Citus suite itself: collected only with --target=citus (make test-citus).
pytestmark = pytest.mark.citus

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
def test_pgtap_file_through_the_coordinator(tap_summary, cluster, tap_url, path, tmp_path):
    # The tap login inherits pymem_app and nothing else, so the files' SET ROLE
    # pymem_app lines go: Citus reaches the workers as the current user, and
    # pymem_app itself cannot log in.
    result = run_file(cluster.psql(), tap_url, inheriting_copy(path, tmp_path))
    tap_summary.append(("Citus (PG 16, coordinator + 2 workers)", path.name, len(result.passed), result.planned or 0))
    assert result.ok, f"{path.name}: failed {result.failed}; ran {result.ran} of {result.planned}\n{result.output}"


def test_tap_role_is_a_plain_app_login(cluster, tap_url):
    with psycopg.connect(cluster.url("pymem_tap_citus")) as conn:
        member_of = {r[0] for r in conn.execute(
            "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (TAP_ROLE,))}
        superuser = conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s",
                                 (TAP_ROLE,)).fetchone()[0]
    assert member_of == {"pymem_app"} and not superuser


# --------------------------------------------------------------------------- shards touched per call
class ShardLog:
    """Per API call, the distributed-table shards Citus ran it on, from its own log.

    ``citus.log_remote_commands`` (this session) shows each call the coordinator
    sends; ``citus.log_local_commands`` (set for the login on the workers) shows
    every statement a worker ran on its local shards inside that call. Shards of
    co-located tables that hold the same hash range are one shard group.
    """

    _CALL = re.compile(r"^issuing SELECT .*?\bpymem\.([a-z0-9_]+)\(")

    def __init__(self, shard_group: dict[int, str]):
        self.shard_group = shard_group  # shard id -> its hash range (None: reference table)
        self.calls: list[tuple[str, set[str]]] = []

    def __call__(self, diag) -> None:
        message = diag.message_primary or ""
        if m := self._CALL.match(message):
            self.calls.append((m.group(1), set()))
        elif self.calls:
            for shard in _SHARD.findall(message):
                group = self.shard_group.get(int(shard))
                if group is not None:
                    self.calls[-1][1].add(group)


WORKLOAD_DB = "pymem_citus_workload"


@pytest.fixture(scope="module")
def workload_db(cluster):
    admin = cluster.fresh_database(WORKLOAD_DB, embedding_dim=DIM)
    cluster.login_role("pymem_citus_app", ["pymem_app"])
    for worker in cluster.worker_urls:
        with psycopg.connect(worker, autocommit=True) as conn:
            conn.execute("ALTER ROLE pymem_citus_app SET citus.log_local_commands = on")
    return admin, cluster.url(WORKLOAD_DB, user="pymem_citus_app")


def _shard_groups(admin: str) -> dict[int, str]:
    with psycopg.connect(admin) as conn:
        return {shard: group for shard, group in conn.execute(
            "SELECT s.shardid, s.shardminvalue FROM pg_dist_shard s JOIN pg_dist_partition p USING (logicalrelid)"
            " WHERE p.partmethod = 'h' AND s.logicalrelid::text LIKE 'pymem.%'")}


def _tenant_group(admin: str, user: str) -> str:
    with psycopg.connect(admin) as conn:
        return conn.execute("SELECT shardminvalue FROM pg_dist_shard WHERE shardid ="
                            " get_shard_id_for_distribution_column('pymem.memory_chunks', %s::bpchar)",
                            (hmac_user(user),)).fetchone()[0]


TENANTS = [f"citus-tenant-{i}" for i in range(6)]


async def _mixed_workload(app: str, log: ShardLog) -> dict[str, list[uuid.UUID]]:
    conn = await aconnect(app)
    await conn.execute("SET citus.log_remote_commands = on")
    conn.add_notice_handler(log)
    kept: dict[str, list[uuid.UUID]] = {}
    try:
        for n, user in enumerate(TENANTS):
            ids = await repo.index_memory_chunks(conn, user, [ChunkInput(f"doc-{i % 3}", "s", f"{user} text {i}", vec(i, DIM))
                                                             for i in range(12)])
            hits = await repo.query_memory(conn, user, "q", vec(n, DIM), k=5, rerank=False)
            assert hits and all(h.text.startswith(f"{user} ") for h in hits)  # no other tenant's rows
            # Hybrid: the rare term "7" is in one row of this tenant's (every tenant has one).
            hybrid = await repo.query_memory(conn, user, "text 7", vec(50, DIM), k=3, rerank=False, hybrid=True)
            assert hybrid[0].text == f"{user} text 7" and hybrid[0].keyword_score
            assert (await repo.get_chunk(conn, user, ids[0])).text == f"{user} text 0"
            assert await repo.get_chunk(conn, TENANTS[(n + 1) % len(TENANTS)], ids[0]) is None
            assert await repo.delete_document(conn, user, "doc-2") == 4
            kept[user] = [i for k, i in enumerate(ids) if k % 3 != 2]
        await repo.index_memory_chunk(conn, "citus-erased", "d", "s", "gone", vec(99, DIM))
        assert await repo.erase_user(conn, "citus-erased") == 1
    finally:
        await conn.close()
    return kept


@pytest.fixture(scope="module")
def workload(workload_db):
    admin, app = workload_db
    log = ShardLog(_shard_groups(admin))
    kept = asyncio.run(_mixed_workload(app, log))
    return admin, app, log, kept


def test_every_api_call_runs_on_exactly_one_shard_group(report, workload):
    admin, _, log, _ = workload
    names = {name for name, _ in log.calls}
    assert {"write_chunks_v3", "read_intent", "search_chunks_v3", "get_chunks_v3",
            "delete_document", "erase_tenant"} <= names
    assert names <= set(TENANT_FUNCTIONS)
    one_group = [groups for _, groups in log.calls if len(groups) == 1]
    report["citus: API calls in the mixed workload (counted from Citus' command log)"] = len(log.calls)
    report["citus: calls that touched exactly one shard group"] = len(one_group)
    assert len(one_group) == len(log.calls), [c for c in log.calls if len(c[1]) != 1]


def test_each_call_ran_on_its_tenants_shard_group(workload):
    admin, _, log, _ = workload
    tenant_groups = {_tenant_group(admin, user) for user in [*TENANTS, "citus-erased"]}
    assert {group for _, groups in log.calls for group in groups} <= tenant_groups


def test_every_write_and_read_left_its_audit_row(workload):
    admin, _, log, _ = workload
    with connect(admin) as conn:
        rows = dict(conn.execute("SELECT phase, count(*) FROM pymem.audit_log GROUP BY phase").fetchall())
    calls = [name for name, _ in log.calls]
    assert rows["intent"] == calls.count("read_intent")
    assert rows["result"] == calls.count("search_chunks_v3") + calls.count("get_chunks_v3")
    # An erasure writes two (the rows' delete and the data keys' destruction); a key load
    # (data_keys_of) and a key made or handed back (create_data_key) one each.
    assert rows["write"] == (calls.count("write_chunks_v3") + calls.count("delete_document")
                             + 2 * calls.count("erase_tenant") + calls.count("data_keys_of")
                             + calls.count("create_data_key"))
    assert verify_audit_log(connect(admin)) == []


def test_a_shard_move_keeps_every_row_open_and_the_audit_log_intact(report, cluster, workload):
    admin, app, _, kept = workload
    with psycopg.connect(admin, autocommit=True) as conn:
        # The worker holding the first tenant's shards is the source (so something
        # always moves, whatever the run's HMAC key hashed the tenants to); every
        # shard group with tenant data on it moves to the other worker.
        source = conn.execute(
            "SELECT n.nodename || ':' || n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)"
            " WHERE p.shardid = get_shard_id_for_distribution_column('pymem.memory_chunks', %s::bpchar)",
            (hmac_user(TENANTS[0]),)).fetchone()
        target = conn.execute(
            "SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid <> 0 AND nodename || ':' || nodeport <> %s",
            (source[0],)).fetchone()
        shards = [r[0] for r in conn.execute(
            "SELECT DISTINCT s.shardid FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)"
            " JOIN pg_dist_node n ON n.groupid = p.groupid"
            " WHERE s.logicalrelid = 'pymem.memory_chunks'::regclass AND n.nodename || ':' || n.nodeport = %s"
            "   AND s.shardid IN (SELECT get_shard_id_for_distribution_column('pymem.memory_chunks', h)"
            "                       FROM unnest(%s::bpchar[]) AS h)", (source[0], [hmac_user(u) for u in TENANTS]))]
        assert shards
        (src_host, src_port), (dst_host, dst_port) = (s[0].split(":") for s in (source, target))
        for shard in shards:
            conn.execute("SELECT citus_move_shard_placement(%s, %s, %s, %s, %s, shard_transfer_mode => 'block_writes')",
                         (shard, src_host, int(src_port), dst_host, int(dst_port)))

    async def reopen() -> tuple[int, int]:
        conn = await aconnect(app)
        opened = failed = 0
        try:
            for user, ids in kept.items():
                for chunk_id in ids:
                    hit = await repo.get_chunk(conn, user, chunk_id)
                    opened += hit is not None and hit.text.startswith(f"{user} ")
                    failed += hit is None
                # New writes and reads after the move land on the moved shards.
                await repo.index_memory_chunk(conn, user, "after-move", "s", f"{user} after", vec(7, DIM))
                assert any(h.doc_id == "after-move" for h in await repo.query_memory(conn, user, "q", vec(7, DIM), k=3,
                                                                                      rerank=False))
        finally:
            await conn.close()
        return opened, failed

    opened, failed = asyncio.run(reopen())
    problems = verify_audit_log(connect(admin))
    report["citus: shard groups moved"] = len(shards)
    report["citus: rows that failed to open after the move"] = failed
    report["citus: audit-verify problems after the move"] = len(problems)
    assert (opened, failed) == (sum(len(ids) for ids in kept.values()), 0)
    assert problems == []


def test_distribute_is_idempotent(workload_db, monkeypatch, capsys):
    admin, _ = workload_db
    report = distribute(admin)
    assert (report.tables_distributed, report.functions_delegated, report.workers) == (0, len(TENANT_FUNCTIONS), 2)
    monkeypatch.setenv("PYMEM_DATABASE_URL", admin)
    assert main(["distribute"]) == 0
    assert f"distributed over 2 workers, 8 shards per table; {len(TENANT_FUNCTIONS)} API functions" in capsys.readouterr().out


def test_distribute_refuses_a_schema_before_0006(cluster):
    admin = cluster.fresh_database("pymem_citus_0005", embedding_dim=DIM, migrate=False)
    migrations.upgrade(admin, revision="0005", embedding_dim=DIM)
    with pytest.raises(NotReady, match="predates migration 0006"):
        distribute(admin)


def test_a_null_tenant_argument_is_refused_and_the_coordinator_survives(cluster, workload_db):
    # Stock Citus 14.0.1 crashes the backend here (pymem_devtools/patches/citus-14.0.1-null-distribution-argument.patch).
    _, app = workload_db
    with psycopg.connect(app) as conn:
        conn.execute(*enter_tenant_call(hmac_user("citus-tenant-0")))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pymem.search_chunks(NULL, 'aaaaaaaa-0000-0000-0000-000000000001', %s, 3)",
                         (str(vec(1, DIM).tolist()),))
    with psycopg.connect(app) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_no_pymem_function_is_executable_by_public_on_any_node(cluster, workload_db):
    admin, _ = workload_db
    nodes = [admin, *(make_conninfo(w, dbname=WORKLOAD_DB) for w in cluster.worker_urls)]
    granted = []
    for url in nodes:
        with psycopg.connect(url) as conn:
            public = conn.execute("SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'pymem'::regnamespace"
                                  " AND has_function_privilege('public', p.oid, 'EXECUTE')").fetchone()[0]
            assert public == 0, url
            granted.append(sorted(r[0] for r in conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'pymem'::regnamespace"
                " AND has_function_privilege('pymem_app', p.oid, 'EXECUTE')")))
    assert granted[0] and all(g == granted[0] for g in granted)  # the app's door is the same on every node


def test_an_app_login_on_a_worker_cannot_call_internal_functions(cluster, workload_db):
    _, app = workload_db
    login = conninfo_to_dict(app)["user"]
    worker = make_conninfo(cluster.worker_urls[0], dbname=WORKLOAD_DB, user=login)
    victim = hmac_user("citus-tenant-1")
    for statement in ("SELECT pymem.audit_append(%s, 'delete', 'write', NULL, NULL, '{}')",
                      "SELECT * FROM pymem.search_rows(%s, '[1,1,1,1,1,1,1,1]', 3)",
                      "SELECT pymem.delete_chunks(%s, NULL)", "SELECT pymem.audit_lock_chain(%s)"):
        with psycopg.connect(worker) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement, (victim,))


def _ticket_seen(app: str, cluster, user: str) -> tuple[bool, bool]:
    """A tenant transaction leaves its context's SET LOCALs as the last statement of its
    worker connection; a keyless session of the same login looks for its hash, ticket
    and read-digest key in citus_stat_activity and, connected straight to each worker,
    in pg_stat_activity. Returns (seen through the coordinator, seen on a worker)."""
    login = conninfo_to_dict(app)["user"]
    user_hash = hmac_user(user)
    with connect(app) as victim, connect(app) as attacker:
        with victim.transaction():
            victim.execute(*enter_tenant_call(user_hash))
            victim.execute("SELECT pymem.delete_document(%s::bpchar, 'none')", (user_hash,))
            victim.execute(*enter_tenant_call(user_hash))  # forwarded at once to the open worker connection
            secrets = [user_hash, *victim.execute("SELECT current_setting('app.tenant_ticket'),"
                                                  " current_setting('app.read_digest_key')").fetchone()]
            texts = [row[0] or "" for row in attacker.execute("SELECT query FROM citus_stat_activity")]
            through_coordinator = any(secret in t for t in texts for secret in secrets)
            on_worker = False
            for url in cluster.worker_urls:
                with psycopg.connect(make_conninfo(url, dbname=WORKLOAD_DB, user=login)) as direct:
                    texts = [row[0] or "" for row in direct.execute("SELECT query FROM pg_stat_activity")]
                on_worker = on_worker or any(secret in t for t in texts for secret in secrets)
    return through_coordinator, on_worker


def test_a_keyless_app_login_sees_no_tenant_ticket_on_any_node(report, cluster, workload_db):
    """A1 on Citus: the context reaches the workers as SET LOCAL text on connections of
    the app's login; pymem distribute turns track_activities off there. The control
    turns it back on for a moment and shows the same poll finding the ticket."""
    admin, app = workload_db
    assert _ticket_seen(app, cluster, "citus-tenant-2") == (False, False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT run_command_on_workers('SET citus.enable_ddl_propagation TO off;"
                     f" ALTER DATABASE {WORKLOAD_DB} RESET track_activities')")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:  # new worker connections for the control
            conn.execute("SELECT run_command_on_workers($$SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         f" WHERE datname = '{WORKLOAD_DB}' AND pid <> pg_backend_pid()$$)")
        assert _ticket_seen(app, cluster, "citus-tenant-2") == (True, True)
    finally:
        distribute(admin, shard_count=TEST_SHARD_COUNT)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT run_command_on_workers($$SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         f" WHERE datname = '{WORKLOAD_DB}' AND pid <> pg_backend_pid()$$)")
    report["citus: tenant tickets seen by a keyless login polling every node"] = 0


def test_a_distributed_database_upgrades_and_every_node_runs_the_new_definitions(cluster):
    """0013, distributed, then upgraded to head: the bundle's CREATE OR REPLACE reaches the workers."""
    admin = cluster.fresh_database("pymem_citus_upgrade", embedding_dim=DIM, migrate=False)
    migrations.upgrade(admin, revision="0013", embedding_dim=DIM)
    distribute(admin, shard_count=TEST_SHARD_COUNT)
    migrations.upgrade(admin)
    distribute(admin, shard_count=TEST_SHARD_COUNT)  # what docs/citus.md asks after an upgrade
    definitions = ("SELECT md5(string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.oid::regprocedure::text))"
                   " FROM pg_proc p WHERE p.pronamespace = 'pymem'::regnamespace")
    with psycopg.connect(admin, autocommit=True) as conn:
        assert all(f.ok for f in check_schema(conn)), check_schema(conn)
        coordinator = conn.execute(definitions).fetchone()[0]
        on_workers = conn.execute("SELECT result FROM run_command_on_workers(%s)", (definitions,)).fetchall()
    assert len(on_workers) == 2 and all(row[0] == coordinator for row in on_workers)
    cluster.login_role("pymem_upgrade_app", ["pymem_app"])
    app = cluster.url("pymem_citus_upgrade", user="pymem_upgrade_app")

    async def use() -> list:
        conn = await aconnect(app)
        try:
            await repo.index_memory_chunk(conn, "upgraded-tenant", "d", "s", "after the upgrade", vec(3, DIM))
            return await repo.query_memory(conn, "upgraded-tenant", "q", vec(3, DIM), k=1, rerank=False)
        finally:
            await conn.close()

    [hit] = asyncio.run(use())
    assert hit.text == "after the upgrade"


async def test_a_tenants_solo_graph_is_on_its_shard_where_its_search_walks_it(cluster):
    """Revision 0017 on Citus: `pymem solo-graphs` on the coordinator builds the tenant's
    graph on the shards, and the tenant's search, delegated to the worker holding its
    shard, walks the copy there (that worker's scan counter for it goes up); the search
    answers exactly."""
    import time

    from pymem.solo_graphs import apply_solo_graphs, plan_solo_graphs

    admin = cluster.fresh_database("pymem_citus_solo", embedding_dim=DIM)
    cluster.login_role("pymem_citus_app", ["pymem_app"])
    app = await aconnect(cluster.url("pymem_citus_solo", user="pymem_citus_app"))
    user = "citus-solo"
    try:
        mine = await repo.index_memory_chunks(app, user, [ChunkInput("d", "s", f"t{i}", vec(i, DIM))
                                                          for i in range(40)])
        with connect(admin) as conn:
            conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 30, exact_search_max_rows = 0")
            assert apply_solo_graphs(conn, plan_solo_graphs(conn), progress=False).built == 1
            port, graph = conn.execute(
                "SELECT p.nodeport, pymem.solo_graph_name(%s::bpchar) || '_' || p.shardid"
                " FROM pg_dist_shard_placement p WHERE p.shardid ="
                " get_shard_id_for_distribution_column('pymem.memory_chunks', %s::bpchar)",
                (hmac_user(user), hmac_user(user))).fetchone()
        (worker,) = [w for w in cluster.worker_urls if int(conninfo_to_dict(w)["port"]) == port]
        with psycopg.connect(make_conninfo(worker, dbname="pymem_citus_solo"), autocommit=True) as conn:
            # Shards are hidden from a worker's catalog queries except in Citus's own
            # sessions, such as the one that runs the delegated search.
            conn.execute("SET citus.override_table_visibility = off")
            scans = "SELECT coalesce(sum(idx_scan), -1) FROM pg_stat_user_indexes WHERE indexrelname = %s"
            before = conn.execute(scans, (graph,)).fetchone()[0]
            assert before >= 0, "the solo graph is on the tenant's shard"
            hits = await repo.query_memory(app, user, "q", vec(3, DIM), k=5, rerank=False)
            deadline = time.monotonic() + 30  # the worker's backend reports its counters within 10 s
            while conn.execute(scans, (graph,)).fetchone()[0] == before and time.monotonic() < deadline:
                conn.execute("SELECT pg_stat_clear_snapshot()")
                time.sleep(0.5)
            assert conn.execute(scans, (graph,)).fetchone()[0] == before + 1
    finally:
        await app.close()
    exact = sorted(range(40), key=lambda i: -float(vec(i, DIM) @ vec(3, DIM)))[:5]
    assert [h.id for h in hits] == [mine[i] for i in exact]
