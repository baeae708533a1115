"""The package's face: the public API at the root, one error hierarchy, the version,
and the sync API leaving nothing unclosed behind it."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from cryptography.exceptions import InvalidTag

import pymem
from pymem import errors
from pymem.cli import main


def test_the_public_api_is_importable_from_the_package_root():
    from pymem import repository, security, tenant

    for name in pymem.__all__:
        assert hasattr(pymem, name), name
    assert pymem.query_memory is repository.query_memory and pymem.MemoryHit is repository.MemoryHit
    assert pymem.seal is security.seal and pymem.set_rls_context is tenant.set_rls_context


def test_importing_pymem_needs_no_extra():
    code = ("import sys, pymem; "
            "print(sorted(m for m in ('onnxruntime', 'prometheus_client', 'tqdm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_error_pymem_defines_derives_from_pymem_error():
    defined = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == "pymem.errors"]
    assert len(defined) >= 16
    assert all(issubclass(c, errors.PymemError) for c in defined)
    assert all(getattr(pymem, c.__name__) is c for c in defined)


@pytest.mark.parametrize("error, builtin", [
    (errors.ConfigurationError, ValueError), (errors.DuplicateId, ValueError), (errors.UnknownKeyId, ValueError),
    (errors.MissingExtra, ImportError), (errors.ChecksumMismatch, RuntimeError), (errors.StandbyBehind, RuntimeError),
    (errors.EmbeddingMismatch, InvalidTag), (errors.ModelUnavailableError, errors.ModelFileError),
])
def test_errors_keep_the_builtin_class_callers_caught(error, builtin):
    assert issubclass(error, builtin)


def test_the_modules_raise_the_hierarchys_classes():
    from pymem import distribute, migrations, reads, repository, security
    from pymem.rerank import errors as rerank_errors

    assert repository.DuplicateId is errors.DuplicateId and reads.StandbyBehind is errors.StandbyBehind
    assert security.UnknownKeyId is errors.UnknownKeyId and distribute.NotReady is errors.NotReady
    assert migrations.ChecksumMismatch is errors.ChecksumMismatch
    assert rerank_errors.DeviceUnavailableError is errors.DeviceUnavailableError


def test_a_malformed_setting_is_a_configuration_error(monkeypatch):
    from pymem.config import get_settings

    monkeypatch.setenv("PYMEM_PG_VERSION", "17")
    with pytest.raises(errors.ConfigurationError, match="PYMEM_PG_VERSION"):
        get_settings()


def test_pymem_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"pymem {pymem.__version__}"


SYNC_SCRIPT = """
import asyncio
import pymem.sync as store

async def one():
    return 1

assert store.run(one()) == 1                 # on this thread's own loop
async def inside_a_loop():
    return store.run(one())                  # from inside a running loop: on the helper thread
assert asyncio.run(inside_a_loop()) == 1
"""


def test_the_sync_api_leaves_no_unclosed_event_loop():
    done = subprocess.run([sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", SYNC_SCRIPT],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr and "unclosed" not in done.stderr
