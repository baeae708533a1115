"""Keys for one process, for the demo and the benchmarks."""

from __future__ import annotations

import os

from pymem.security import generate_key, reload_keys


def ephemeral_keys() -> list[str]:
    """Generate any missing MEMORY_* key for this process only; return their names.

    For the demo and benchmarks: keys live in this process's environment and are
    never written anywhere, so what they seal cannot be opened by a later run.
    """
    generated = []
    for name in ("MEMORY_ENCRYPTION_KEY", "MEMORY_TENANT_HMAC_KEY"):
        if not os.environ.get(name):
            os.environ[name] = generate_key()
            generated.append(name)
    reload_keys()
    return generated
