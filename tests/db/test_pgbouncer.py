"""pymem behind a real transaction-mode pgbouncer (Debian's package), with the
settings the README documents: ``prepare_threshold=None`` on pymem's connections
(pgbouncer 1.18 cannot keep a prepared statement on the server connection the
next transaction gets) and ``server_reset_query_always = 1`` with ``DISCARD ALL``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.db import aconnect, connect, environment_without_secrets
from tests.utils import vec

CONFIG = """[databases]
pymem_test = host={socket_dir} port={port} dbname=pymem_test

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {run_dir}/users.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
server_reset_query = DISCARD ALL
server_reset_query_always = 1
ignore_startup_parameters = extra_float_digits,options
logfile = {run_dir}/pgbouncer.log
pidfile = {run_dir}/pgbouncer.pid
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pgbouncer_url(cluster, app_url):
    """DSN of the app login through a fresh transaction-mode pgbouncer on 127.0.0.1."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed: apt-get install pgbouncer (make test does this)")
    server = conninfo_to_dict(cluster.admin_url)
    # In /tmp itself: pytest's own temp dirs are private to root, and pgbouncer
    # runs as another user.
    run_dir = Path(tempfile.mkdtemp(prefix="pymem-pgbouncer-"))
    listen_port = _free_port()
    (run_dir / "users.txt").write_text('"pymem_test_app" ""\n')
    (run_dir / "pgbouncer.ini").write_text(CONFIG.format(
        socket_dir=server["host"], port=server.get("port", 5432), listen_port=listen_port, run_dir=run_dir))
    # pgbouncer refuses to run as root; the embedded server's system user runs it.
    user = "pgserver" if os.geteuid() == 0 else None
    if user:
        shutil.chown(run_dir, user)
    proc = subprocess.Popen([binary, str(run_dir / "pgbouncer.ini")], user=user, env=environment_without_secrets(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = make_conninfo(host="127.0.0.1", port=listen_port, dbname="pymem_test", user="pymem_test_app")
    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"pgbouncer did not start: {proc.stderr.read().decode()[-500:]}") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(run_dir, ignore_errors=True)


async def test_mixed_workload_through_transaction_mode_pgbouncer(report, pgbouncer_url, admin_url):
    run = uuid.uuid4().hex[:6]
    tenants = [f"bouncer-{run}-{i}" for i in range(16)]
    tally = {"ops": 0, "errors": 0, "cross": 0}

    async def client(number: int, tenant: str):
        conn = await aconnect(pgbouncer_url, prepare_threshold=None)
        try:
            ids = []
            for step in range(30):
                try:
                    if step % 3 == 0:
                        ids.append(await repo.index_memory_chunk(conn, tenant, f"d{step % 4}", "s",
                                                                 f"{tenant}|{step}", vec(number * 1000 + step)))
                    elif step % 3 == 1:
                        hits = await repo.query_memory(conn, tenant, "q", vec(step), k=5, rerank=False)
                        tally["cross"] += sum(not h.text.startswith(tenant + "|") for h in hits)
                    elif ids:
                        hit = await repo.get_chunk(conn, tenant, ids[-1])
                        tally["cross"] += hit is None or not hit.text.startswith(tenant + "|")
                        if step % 6 == 5:
                            await repo.delete_document(conn, tenant, f"d{step % 4}")
                except psycopg.Error:
                    tally["errors"] += 1
                tally["ops"] += 1
        finally:
            await conn.close()

    await asyncio.gather(*(client(i, t) for i, t in enumerate(tenants)))
    assert tally["ops"] == 16 * 30
    assert tally["errors"] == 0
    assert tally["cross"] == 0
    with connect(admin_url) as conn:
        assert verify_audit_log(conn) == []
    report["pgbouncer (transaction mode): operations"] = tally["ops"]
    report["pgbouncer (transaction mode): failed operations"] = tally["errors"]
