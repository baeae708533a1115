"""Tenant data keys (revision 0019), measured in one run against their baselines:

* sealing and opening 1 KiB with a cached data key, against raw AES-GCM;
* ingest (``index_memory_chunks``) and ``query_memory`` (rows opened, rerank off), against
  the path before 0019 (one ring key: rows sealed with it; ``query_memory`` with no live-key
  read and no data-key lookup, :func:`pymem_devtools.ring_rows.reads_before_data_keys`), both
  tenants holding the same rows;
* a cold tenant's first access (one ``data_keys_of`` round trip and one unwrap), per provider;
* root rotation at N tenants, per provider (``local``: the issue's 100,000-tenant goal at
  ``--scale full``; SoftHSM2 and moto's KMS, the local stand-ins for an HSM and AWS KMS,
  at fewer tenants: each key costs them two provider calls);
* ``erase_user`` of a tenant of 10 rows.

``pymem-dev bench --scale full --only keys``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import time

import numpy as np
import psycopg

from pymem import repository as repo
from pymem.chunks import ChunkInput
from pymem.db import aconnect
from pymem.root_keys import KeyContext, provider, reset_providers
from pymem.root_rotation import rotate_root_key
from pymem.security import generate_key, hmac_user, keyring, open_with, reload_keys, seal_with
from pymem.tenant_keys import TenantKeys, forget_all, keys_for_writing, tenant_keys
from pymem_devtools.bench.common import bench_cluster, markdown_table, percentiles_ms, ratio, time_each, unit_vectors
from pymem_devtools.bench.crowding import search_bucket
from pymem_devtools.key_services import KmsServer, ServiceMissing, softhsm_token
from pymem_devtools.keys import ephemeral_keys
from pymem_devtools.ring_rows import reads_before_data_keys, write_ring_rows

DIM = 384
# Tenants whose keys a root rotation re-wraps, per provider and scale.
ROTATION_TENANTS = {"tiny": {"local": 200, "pkcs11": 100, "aws-kms": 50},
                    "quick": {"local": 5_000, "pkcs11": 2_000, "aws-kms": 300},
                    "full": {"local": 100_000, "pkcs11": 10_000, "aws-kms": 2_000}}
SEAL_OPS = {"tiny": 2_000, "quick": 50_000, "full": 200_000}
ROUNDS = {"tiny": 3, "quick": 10, "full": 20}
# Batches each ingest path writes, timed one by one: a batch's time varies by a few per cent
# on this shared machine, so the p50 needs more of them than the other measures.
INGEST_BATCHES = {"tiny": 3, "quick": 20, "full": 60}
# Searches per path (each path's p50 over them): the two differ by about 0.1 ms of 5 to 8.
SEARCHES = {"tiny": 30, "quick": 200, "full": 1000}
BATCH = 100


def _crypto(scale: str) -> dict:
    """seal/open through a tenant's cached data key against raw AES-GCM, interleaved."""
    keys = TenantKeys("a" * 64, 1, 1, frozenset(), {-1: keyring().root_aead()})  # any AES-256 key
    aead, urandom = keys.aead(-1), os.urandom
    payload, aad = urandom(1024), b"pymem:v2|" + b"a" * 64 + b"|00000000-0000-0000-0000-000000000000|text|1:d|1:s"
    blob = seal_with(aead, payload, aad)

    def raw_seal():
        nonce = urandom(12)
        return nonce + aead.encrypt(nonce, payload, aad)

    # "key in hand": pymem's seal_with/open_with (the row format, its checks) with no key lookup,
    # which tells the format's Python call from the data key's lookup.
    cases = {"raw AESGCM seal": raw_seal, "seal_with, key in hand": lambda: seal_with(aead, payload, aad),
             "data key seal": lambda: keys.seal(-1, payload, aad),
             "raw AESGCM open": lambda: aead.decrypt(blob[:12], blob[12:], aad),
             "open_with, key in hand": lambda: open_with(aead, blob, aad),
             "data key open": lambda: keys.open(-1, blob, aad)}
    n = SEAL_OPS[scale]
    for fn in cases.values():  # warm up
        time_each(fn, 1000)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS[scale]):
        for name, fn in cases.items():
            samples[name] += time_each(fn, n // ROUNDS[scale])
    out = {name: round(len(s) / sum(s)) for name, s in samples.items()}
    out["seal_ratio"] = ratio(out["data key seal"], out["raw AESGCM seal"])
    out["open_ratio"] = ratio(out["data key open"], out["raw AESGCM open"])
    out["seal_ratio_key_in_hand"] = ratio(out["seal_with, key in hand"], out["raw AESGCM seal"])
    out["open_ratio_key_in_hand"] = ratio(out["open_with, key in hand"], out["raw AESGCM open"])
    return out


async def _paths(url: str, scale: str) -> dict:
    """Ingest and search+open, tenant data keys against one ring key, interleaved rounds."""
    conn = await aconnect(url)
    try:
        batches = INGEST_BATCHES[scale]
        vectors = unit_vectors(BATCH * batches * 2 + 200, DIM, seed=7)
        times = {"ingest, data keys": [], "ingest, one ring key (before 0019)": [],
                 "search + open, data keys": [], "search + open, one ring key (before 0019)": []}
        await keys_for_writing(conn, hmac_user("bench-dk"))  # made once, as a live tenant has it
        # The ring tenant in the data-key tenant's search bucket: with the same rows, both
        # searches then walk one graph (a duplicate vector is one graph element).
        ring_user = next(name for name in (f"bench-ring-{i}" for i in itertools.count())
                         if search_bucket(hmac_user(name)) == search_bucket(hmac_user("bench-dk")))

        async def write(user: str, batch: int) -> float:
            items = [ChunkInput("d", "s", f"text {batch}.{i}", vectors[batch * BATCH + i]) for i in range(BATCH)]
            start = time.perf_counter()
            if user == "bench-dk":
                await repo.index_memory_chunks(conn, user, items)
            else:
                await write_ring_rows(conn, user, items)
            return (time.perf_counter() - start) / BATCH

        for r in range(batches):  # each tenant its own vectors: no duplicate in the graph
            times["ingest, data keys"].append(await write("bench-dk", 2 * r))
            times["ingest, one ring key (before 0019)"].append(await write(ring_user, 2 * r + 1))
        for r in range(batches):  # then each the other's (untimed): both search the same rows
            await write("bench-dk", 2 * r + 1)
            await write(ring_user, 2 * r)
        for r in range(SEARCHES[scale]):
            query = vectors[-(r % 200) - 1]
            start = time.perf_counter()
            hits = await repo.query_memory(conn, "bench-dk", "q", query, k=10, rerank=False)
            times["search + open, data keys"].append(time.perf_counter() - start)
            with reads_before_data_keys():
                start = time.perf_counter()
                ring_hits = await repo.query_memory(conn, ring_user, "q", query, k=10, rerank=False)
                times["search + open, one ring key (before 0019)"].append(time.perf_counter() - start)
            assert len(hits) == len(ring_hits) == 10
    finally:
        await conn.close()
    out = {name: percentiles_ms(s) for name, s in times.items()}
    out["ingest_ratio_p50"] = ratio(out["ingest, data keys"]["p50"], out["ingest, one ring key (before 0019)"]["p50"])
    out["search_ratio_p50"] = ratio(out["search + open, data keys"]["p50"],
                                    out["search + open, one ring key (before 0019)"]["p50"])
    return out


async def _make_tenants(url: str, admin_url: str, n: int) -> list[str]:
    """n tenants with one data key each under the current root: wrapped here and loaded with
    COPY (as the app would have made them one by one), their proofs registered."""
    root, root_key = provider(), provider().current()
    hashes = [hmac_user(f"rot-{root_key}-{i}") for i in range(n)]
    ring = keyring()
    wrapped = [root.wrap(root_key, os.urandom(32), KeyContext(h, 1)) for h in hashes]
    with psycopg.connect(admin_url) as admin:
        with admin.cursor().copy("COPY pymem.data_keys (user_hash, version, root_key, wrapped) FROM STDIN") as copy:
            for h, w in zip(hashes, wrapped):
                copy.write_row((h, 1, root_key, w))
        with admin.cursor().copy("COPY pymem.tenant_proofs (user_hash, proof_digest) FROM STDIN") as copy:
            for h in hashes:
                copy.write_row((h, hashlib.sha256(ring.tenant_proof(h)).digest()))
        admin.execute("INSERT INTO pymem.encryption_keys (key_id) VALUES (-1) ON CONFLICT DO NOTHING")
    return hashes


async def _first_access_and_rotation(cluster, name: str, settings: dict, tenants: int, new_root: dict) -> dict:
    """On a fresh database: a cold tenant's key load (p50/p95 over 50), then a root rotation
    of ``tenants`` data keys to the root in ``new_root``."""
    os.environ.update(settings)
    reset_providers()
    forget_all()
    dbname = f"pymem_bench_keys_{name.replace('-', '_')}"
    admin_url = cluster.fresh_database(dbname, embedding_dim=DIM)
    cluster.login_role("pymem_bench_ops", ["pymem_app", "pymem_maintainer"])
    url = cluster.url(dbname, user="pymem_bench_ops")
    hashes = await _make_tenants(url, admin_url, tenants)
    conn = await aconnect(url)
    try:
        loads = []
        for h in hashes[:50]:
            forget_all()
            start = time.perf_counter()
            await tenant_keys(conn, h)
            loads.append(time.perf_counter() - start)
        os.environ.update(new_root)
        reload_keys()  # the local provider's root keys are the ring's
        reset_providers()
        start = time.perf_counter()
        report = await rotate_root_key(conn, batch_size=500)
        seconds = time.perf_counter() - start
    finally:
        await conn.close()
    assert report.rewrapped == tenants
    return {"first_access_ms": percentiles_ms(loads), "rotation_tenants": tenants,
            "rotation_s": round(seconds, 2), "rotation_keys_per_s": round(tenants / seconds)}


async def _erase(url: str) -> dict:
    conn = await aconnect(url)
    try:
        samples = []
        for t in range(30):
            user = f"erase-{t}"
            await repo.index_memory_chunks(conn, user, [ChunkInput("d", "s", f"t{i}", np.ones(DIM, dtype=np.float32))
                                                        for i in range(10)])
            start = time.perf_counter()
            assert await repo.erase_user(conn, user) == 10
            samples.append(time.perf_counter() - start)
    finally:
        await conn.close()
    return percentiles_ms(samples)


def run(scale: str) -> dict:
    ephemeral_keys()
    cluster = bench_cluster(scale)
    cluster.fresh_database("pymem_bench_keys", embedding_dim=DIM)
    cluster.login_role("pymem_bench_ops", ["pymem_app", "pymem_maintainer"])
    url = cluster.url("pymem_bench_keys", user="pymem_bench_ops")
    results: dict = {"crypto": _crypto(scale), "paths": asyncio.run(_paths(url, scale)),
                     "erase_user_ms": asyncio.run(_erase(url))}
    saved = dict(os.environ)
    counts, providers = ROTATION_TENANTS[scale], {}
    try:
        old_id = keyring().active_key_id
        providers["local"] = asyncio.run(_first_access_and_rotation(
            cluster, "local", {"PYMEM_ROOT_KEY_PROVIDER": "local"}, counts["local"],
            {"MEMORY_ENCRYPTION_KEY": generate_key(), "MEMORY_ENCRYPTION_KEY_ID": str(old_id + 1),
             "MEMORY_ENCRYPTION_OLD_KEYS": f"{old_id}:{os.environ['MEMORY_ENCRYPTION_KEY']}"}))
        try:
            settings, _ = softhsm_token()
            providers["pkcs11 (SoftHSM2)"] = asyncio.run(_first_access_and_rotation(
                cluster, "pkcs11", settings, counts["pkcs11"],
                {"PYMEM_PKCS11_KEY": "root-2", "PYMEM_PKCS11_OLD_KEYS": "root-1"}))
        except ServiceMissing as missing:
            providers["pkcs11 (SoftHSM2)"] = {"not measured": str(missing)}
        try:
            kms = KmsServer()
        except ServiceMissing as missing:
            providers["aws-kms (moto)"] = {"not measured": str(missing)}
        else:
            try:
                os.environ.update(KmsServer.credentials())
                first, second = kms.new_key(), kms.new_key()
                providers["aws-kms (moto)"] = asyncio.run(_first_access_and_rotation(
                    cluster, "aws-kms", kms.provider_settings(first), counts["aws-kms"],
                    {"PYMEM_KMS_KEY_ID": second, "PYMEM_KMS_OLD_KEY_IDS": first}))
            finally:
                kms.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reload_keys()
        reset_providers()
        forget_all()
    results["providers"] = providers
    return {"name": "keys", "results": results, "markdown": _markdown(results)}


def _markdown(results: dict) -> str:
    crypto, paths = results["crypto"], results["paths"]
    parts = [markdown_table(["1 KiB, 1 thread", "ops/s"], [[name, f"{crypto[name]:,}"] for name in (
        "raw AESGCM seal", "seal_with, key in hand", "data key seal", "raw AESGCM open", "open_with, key in hand",
        "data key open")]),
        f"\nseal = {crypto['seal_ratio']}x raw, open = {crypto['open_ratio']}x raw (goal >= 0.9x); with the key in"
        f" hand (no lookup) {crypto['seal_ratio_key_in_hand']}x and {crypto['open_ratio_key_in_hand']}x\n",
        markdown_table(["path", "p50 ms", "p95 ms"], [[name, paths[name]["p50"], paths[name]["p95"]] for name in (
            "ingest, data keys", "ingest, one ring key (before 0019)", "search + open, data keys",
            "search + open, one ring key (before 0019)")]),
        f"\ningest (per chunk, batches of {BATCH}) = {paths['ingest_ratio_p50']}x, search + open (k = 10 of 24"
        f" candidates, rerank off) = {paths['search_ratio_p50']}x the path before 0019, p50 (goal <= 1.05x)\n"]
    rows = []
    for name, r in results["providers"].items():
        if "not measured" in r:
            rows.append([name, "not measured", "", "", "", r["not measured"]])
        else:
            rows.append([name, r["first_access_ms"]["p50"], r["first_access_ms"]["p95"], f"{r['rotation_tenants']:,}",
                         r["rotation_s"], f"{r['rotation_keys_per_s']:,}"])
    parts.append(markdown_table(["root keys", "cold tenant p50 ms", "p95 ms", "root rotation: tenants", "seconds",
                                 "keys/s"], rows))
    parts.append("\nA cold tenant: one `data_keys_of` round trip and one unwrap. Rotation: every data key unwrapped"
                 " and wrapped again, a batch of 500 per transaction, each recorded in its tenant's chain (goal at"
                 " 100,000 tenants with `local`: under 5 minutes). SoftHSM2 and moto's KMS stand in for an HSM and"
                 " AWS KMS: a real KMS adds its network round trips and request quotas.")
    erase = results["erase_user_ms"]
    parts.append(f"\n`erase_user` of a tenant of 10 rows (rows and data keys, one transaction): p50 {erase['p50']} ms,"
                 f" p95 {erase['p95']} ms.")
    return "\n".join(parts)
