"""seal/open of 1 KiB payloads vs raw AESGCM, measured in the same run.

The raw baseline does the same work a caller would do by hand: draw a 12-byte
nonce, encrypt, and concatenate (or split and decrypt).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pymem.security import keyring, open_sealed, seal
from pymem_devtools.bench.common import markdown_table, percentiles_ms, ratio, time_each
from pymem_devtools.keys import ephemeral_keys

OPS = {"tiny": 2_000, "quick": 50_000, "full": 200_000}
PAYLOAD = 1024
ROUNDS = 10


def run(scale: str) -> dict:
    ephemeral_keys()
    n = OPS[scale]
    aead: AESGCM = keyring().aead()
    payload, aad = os.urandom(PAYLOAD), b"pymem:v1|" + b"a" * 64 + b"|00000000-0000-0000-0000-000000000000|text"
    blob = seal(payload, aad)
    urandom = os.urandom

    def raw_seal():
        nonce = urandom(12)
        return nonce + aead.encrypt(nonce, payload, aad)

    def raw_open():
        return aead.decrypt(blob[:12], blob[12:], aad)

    cases = {
        "raw AESGCM seal": raw_seal,
        "pymem seal": lambda: seal(payload, aad),
        "raw AESGCM open": raw_open,
        "pymem open_sealed": lambda: open_sealed(blob, aad),
    }
    for fn in cases.values():  # warm up
        time_each(fn, 1000)
    # Interleaved rounds: drift on a shared machine (frequency, neighbours) then hits
    # every case alike, so the ratios compare like with like.
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, fn in cases.items():
            samples[name] += time_each(fn, n // ROUNDS)
    results = {name: {"ops_per_s": round(len(s) / sum(s)), "latency_ms": percentiles_ms(s)}
               for name, s in samples.items()}
    results["seal_ratio_vs_raw"] = ratio(results["pymem seal"]["ops_per_s"], results["raw AESGCM seal"]["ops_per_s"])
    results["open_ratio_vs_raw"] = ratio(results["pymem open_sealed"]["ops_per_s"],
                                         results["raw AESGCM open"]["ops_per_s"])
    rows = [[name, f"{r['ops_per_s']:,}", r["latency_ms"]["p50"], r["latency_ms"]["p95"]]
            for name, r in results.items() if isinstance(r, dict)]
    table = markdown_table(["1 KiB payload, 1 thread", "ops/s", "p50 ms", "p95 ms"], rows)
    table += (f"\n\nseal = {results['seal_ratio_vs_raw']}x raw, open = {results['open_ratio_vs_raw']}x raw"
              " (goal >= 0.7x; seed floor >= 5,000 ops/s with p95 < 1 ms)")
    return {"name": "crypto", "results": {"ops": n, "payload_bytes": PAYLOAD, **results}, "markdown": table}
