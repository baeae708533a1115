"""Root keys kept outside the process: a PKCS#11 token (SoftHSM2, a real token) and
AWS KMS (moto's KMS server: AWS itself cannot be reached from CI). Each suite writes
and reads through the store, rotates to a new root key held there, retires and
destroys the old one, and shows a wrapped key changed in the database does not
unwrap; the KMS suite also takes the KMS down under warm and cold tenants.

Neither suite is skipped: ``make test`` installs SoftHSM2 and moto, and a missing one
fails here with what to install."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from pymem_devtools.key_services import KmsServer, ServiceMissing, softhsm_token

from pymem import sync
from pymem.db import connect
from pymem.errors import RootKeyUnavailable, WrappedKeyInvalid
from pymem.root_keys import reset_providers
from pymem.security import hmac_user
from pymem.tenant_keys import forget, forget_all, key_metrics
from tests.db.test_tenant_keys import chunks, read_all, table, write
from tests.utils import DIM


@pytest.fixture
def store(cluster):
    name = f"pymem_rk_{uuid.uuid4().hex[:12]}"
    cluster.fresh_database(name, embedding_dim=DIM)
    cluster.login_role("pymem_test_ops", ["pymem_app", "pymem_maintainer"])
    yield cluster.url(name), cluster.url(name, user="pymem_test_ops")
    forget_all()


@pytest.fixture
def provider_env(monkeypatch):
    """Set root-key variables for one test; the built providers and cached keys go with them."""
    def use(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        reset_providers()
        forget_all()
    yield use
    monkeypatch.undo()
    reset_providers()
    forget_all()


# ---------------------------------------------------------------------------
# PKCS#11 (SoftHSM2)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def softhsm(tmp_path_factory):
    """A SoftHSM2 token of this run, with two AES-256 root keys made inside it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", "")  # softhsm_token sets it; restored after the module
        try:
            yield softhsm_token(tmp_path_factory.mktemp("softhsm"))
        except ServiceMissing as missing:
            pytest.fail(str(missing))


def test_data_keys_are_wrapped_in_a_pkcs11_token_and_root_rotation_moves_them_to_another_token_key(
        store, softhsm, provider_env):
    admin_url, url = store
    settings, token = softhsm
    provider_env(**settings)
    users = [f"hsm-{n}" for n in range(4)]
    for n, user in enumerate(users):
        write(url, user, 2, seed=n)
    assert {r[0] for r in table(admin_url, "SELECT root_key FROM pymem.data_keys")} == {"pkcs11:root-1"}
    assert read_all(url, users[0]) == [f"{users[0]} secret {i}" for i in range(2)]
    provider_env(PYMEM_PKCS11_KEY="root-2", PYMEM_PKCS11_OLD_KEYS="root-1")
    with connect(url) as conn:
        report = sync.rotate_root_key(conn, batch_size=3)
        assert (report.root_key, report.rewrapped) == ("pkcs11:root-2", 4)
        sync.retire_root_key(conn, "pkcs11:root-1", lambda message: True)
    from pkcs11 import KeyType
    with token.open(rw=True) as session:  # the provider's session logged this process in
        session.get_key(label="root-1", key_type=KeyType.AES).destroy()  # destroyed where it was kept
    provider_env(PYMEM_PKCS11_OLD_KEYS="")
    for user in users:
        assert read_all(url, user) == [f"{user} secret {i}" for i in range(2)]


def test_a_pkcs11_wrapped_key_changed_in_the_database_or_a_destroyed_token_key_fails_closed(
        store, softhsm, provider_env):
    admin_url, url = store
    settings, _ = softhsm
    provider_env(**{**settings, "PYMEM_PKCS11_KEY": "root-2"})
    write(url, "hsm-tampered")
    forget_all()
    with psycopg.connect(admin_url) as admin:  # a superuser flips one bit of the wrapped key
        admin.execute("UPDATE pymem.data_keys SET wrapped = set_byte(wrapped, 20, get_byte(wrapped, 20) # 1)")
    with connect(url) as conn, pytest.raises(WrappedKeyInvalid):
        sync.list_memory_chunks(conn, "hsm-tampered")
    with psycopg.connect(admin_url) as admin:  # ... or at a label it did not configure, or one destroyed
        admin.execute("UPDATE pymem.data_keys SET root_key = 'pkcs11:root-1'")
    with connect(url) as conn, pytest.raises(RootKeyUnavailable, match="not one of the configured"):
        sync.list_memory_chunks(conn, "hsm-tampered")
    provider_env(PYMEM_PKCS11_OLD_KEYS="gone")
    with psycopg.connect(admin_url) as admin:
        admin.execute("UPDATE pymem.data_keys SET root_key = 'pkcs11:gone'")
    with connect(url) as conn, pytest.raises(RootKeyUnavailable, match="not in the token"):
        sync.list_memory_chunks(conn, "hsm-tampered")


# ---------------------------------------------------------------------------
# AWS KMS (moto's server)
# ---------------------------------------------------------------------------
@pytest.fixture
def kms(monkeypatch):
    try:
        server = KmsServer()
    except ServiceMissing as missing:
        pytest.fail(str(missing))
    for name, value in KmsServer.credentials().items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def test_data_keys_are_wrapped_by_kms_bound_to_their_tenant_and_move_to_a_new_kms_key(store, kms, provider_env):
    admin_url, url = store
    first = kms.new_key()
    provider_env(**kms.provider_settings(first))
    for n, user in enumerate(("kms-a", "kms-b")):
        write(url, user, 2, seed=n)
    [(root_key, wrapped)] = table(admin_url, "SELECT root_key, wrapped FROM pymem.data_keys WHERE user_hash = %s",
                                  (hmac_user("kms-a"),))
    assert root_key == f"aws-kms:{first}"
    # KMS itself refuses the wrapped key for another tenant or version (the encryption context).
    wrong = {"pymem": "data-key-v1", "tenant": hmac_user("kms-b"), "version": "1"}
    with pytest.raises(Exception, match="InvalidCiphertext"):
        kms.client().decrypt(CiphertextBlob=bytes(wrapped), EncryptionContext=wrong, KeyId=first)
    second = kms.new_key()
    provider_env(PYMEM_KMS_KEY_ID=second)
    with connect(url) as conn, pytest.raises(RootKeyUnavailable, match="not one of the configured"):
        sync.rotate_root_key(conn)  # the old key is no longer allowed to unwrap until it is listed
    provider_env(PYMEM_KMS_OLD_KEY_IDS=first)
    with connect(url) as conn:
        assert sync.rotate_root_key(conn).rewrapped == 2
        sync.retire_root_key(conn, f"aws-kms:{first}", lambda message: True)
    provider_env()
    assert read_all(url, "kms-b") == ["kms-b secret 0", "kms-b secret 1"]


def test_a_kms_key_the_database_names_unwraps_nothing_unless_it_is_configured(store, kms, provider_env):
    """A superuser points a tenant's current data key at a KMS key of its own (which the
    app's role may use), wrapping a data key it chose: the app refuses to unwrap it."""
    admin_url, url = store
    provider_env(**kms.provider_settings(kms.new_key()))
    write(url, "victim", 1)
    theirs = kms.new_key()
    context = {"pymem": "data-key-v1", "tenant": hmac_user("victim"), "version": "2"}
    wrapped = kms.client().encrypt(KeyId=theirs, Plaintext=bytes(32), EncryptionContext=context)["CiphertextBlob"]
    with psycopg.connect(admin_url) as admin:
        admin.execute("UPDATE pymem.data_keys SET retired_at = now() WHERE user_hash = %s", (hmac_user("victim"),))
        admin.execute("INSERT INTO pymem.data_keys (user_hash, version, root_key, wrapped) VALUES (%s, 2, %s, %s)",
                      (hmac_user("victim"), f"aws-kms:{theirs}", wrapped))
    forget_all()
    with connect(url) as conn, pytest.raises(RootKeyUnavailable, match="not one of the configured"):
        sync.index_memory_chunks(conn, "victim", chunks("victim", 1, seed=3))
    assert table(admin_url, "SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                 (hmac_user("victim"),)) == [(1,)]


def test_a_kms_outage_keeps_warm_tenants_working_and_fails_cold_ones_closed(store, kms, provider_env):
    admin_url, url = store
    provider_env(**kms.provider_settings(kms.new_key()))
    write(url, "warm", 2)
    write(url, "cold", 2, seed=1)
    forget(hmac_user("cold"))
    errors = key_metrics()["provider_errors"]
    kms.stop()
    assert read_all(url, "warm") == ["warm secret 0", "warm secret 1"]
    with connect(url) as conn:
        sync.upsert_memory_chunks(conn, "warm", chunks("warm", 1, seed=5))
        with pytest.raises(RootKeyUnavailable, match="KMS"):
            sync.list_memory_chunks(conn, "cold")
        with pytest.raises(RootKeyUnavailable):
            sync.index_memory_chunks(conn, "new-tenant", chunks("new-tenant", 1))
    assert key_metrics()["provider_errors"] >= errors + 2
    assert table(admin_url, "SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                 (hmac_user("new-tenant"),)) == [(0,)]
