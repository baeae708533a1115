"""The one place where pymem reads environment variables.

Every other module asks :func:`get_settings` (or :func:`key_material`) instead of
touching ``os.environ``, so the full list of knobs lives here and is documented once.

Environment variables
---------------------
Database
    ``PYMEM_DATABASE_URL``   libpq DSN/URL of your Postgres. Unset: an embedded server.
    ``PYMEM_HOME``           state dir for the embedded server (default ``~/.pymem``).
    ``PYMEM_PG_VERSION``     embedded Postgres major version, 16 or 18 (default 18).
    ``PYMEM_EMBEDDING_DIM``  embedding dimension of a new schema (default 384; at most 2000,
                             or 4000 with halfvec); a database created with another one refuses
                             to migrate with it.
    ``PYMEM_EMBEDDING_TYPE`` how the searchable copy of embeddings is stored: ``vector``
                             (float32, the default) or ``halfvec`` (float16: half the memory, up
                             to 4000 dimensions); chosen when the schema is created, or when
                             upgrading to revision 0023, and fixed afterwards.
    ``PYMEM_MAX_TEXT_BYTES`` largest accepted chunk text in UTF-8 bytes (default 65536).
    ``PYMEM_TERM_TAGS``      write each row's keyword terms as keyed tags, for hybrid search
                             (default true; false: rows get none and hybrid search is refused).
    ``PYMEM_TERM_LANGUAGE``  the Snowball stemmer of keyword terms (default english); terms
                             stemmed under another language never match, so set it once.
    ``PYMEM_IDLE_IN_TRANSACTION_TIMEOUT_S`` seconds a transaction pymem opened may wait on the client
                             before the server ends the session (default 10; pinned in each
                             transaction: a frozen or cut-off client cannot hold a tenant's
                             audit chain head).
    ``PYMEM_TRANSACTION_TIMEOUT_S`` PostgreSQL 17 and later: the longest a transaction pymem opened
                             may last, 0 for no limit (default 300; pinned in each transaction).
    ``PYMEM_POOL_CHECK_TIMEOUT_S`` seconds a pooled connection has to answer the pool's check and
                             reset (:mod:`pymem.connections`, default 5): one that does not, on a
                             silent network, is closed and replaced, not waited on.
Keys (see :mod:`pymem.security`)
    ``MEMORY_ENCRYPTION_KEY``      active AES-256 key, base64 of exactly 32 bytes.
    ``MEMORY_ENCRYPTION_KEY_ID``   its integer id (default 1).
    ``MEMORY_ENCRYPTION_OLD_KEYS`` keys kept for opening only: ``"ID:BASE64,ID:BASE64"``.
    ``MEMORY_TENANT_HMAC_KEY``     HMAC-SHA256 key for tenant ids, base64 of 32 bytes.
    ``MEMORY_TENANT_HMAC_KEY_NEW`` the next HMAC key, read only by ``pymem rotate-tenant-key``.
Root keys and tenant data keys (see :mod:`pymem.root_keys`, :mod:`pymem.tenant_keys`)
    ``PYMEM_ROOT_KEY_PROVIDER``    where the root key that wraps tenant data keys is kept: ``local``
                                   (default; derived from ``MEMORY_ENCRYPTION_KEY``), ``pkcs11`` or ``aws-kms``.
    ``PYMEM_PKCS11_MODULE``        pkcs11: the token's PKCS#11 library (a ``.so`` path).
    ``PYMEM_PKCS11_TOKEN``         pkcs11: the token's label.
    ``PYMEM_PKCS11_PIN``           pkcs11: the user PIN (a secret).
    ``PYMEM_PKCS11_KEY``           pkcs11: the label of the AES-256 root key new data keys are wrapped under.
    ``PYMEM_PKCS11_OLD_KEYS``      pkcs11: older labels data keys may still be under (comma-separated).
    ``PYMEM_KMS_KEY_ID``           aws-kms: the key id or ARN new data keys are wrapped under.
    ``PYMEM_KMS_OLD_KEY_IDS``      aws-kms: older keys data keys may still be under (comma-separated);
                                   no other key unwraps, whatever the database names.
    ``PYMEM_KMS_ENDPOINT_URL``     aws-kms: another endpoint than AWS's (a VPC endpoint, a local KMS);
                                   region and credentials come from the AWS SDK's usual settings.
    ``PYMEM_DATA_KEY_CACHE_SIZE``  tenants whose unwrapped data keys a process keeps (default 10000).
    ``PYMEM_DATA_KEY_CACHE_TTL_S`` seconds a tenant's unwrapped keys are kept (default 300).
Audit checkpoints (see :mod:`pymem.audit`)
    ``PYMEM_AUDIT_SIGNING_KEY``    Ed25519 private key (base64 of 32 bytes) that signs checkpoints.
    ``PYMEM_AUDIT_VERIFY_KEY``     its public key (base64 of 32 bytes), enough to verify them.
Reranker (see :mod:`pymem.rerank`)
    ``RERANK_ENABLED``                  true/false (default true); read on every call, so
                                        changing it in a running process takes effect at once.
    ``RERANK_CIRCUIT_MS``               latency budget per rerank call (default 250).
    ``PYMEM_RERANK_MODEL``              exported model dir (default ``$PYMEM_HOME/models/ms-marco-TinyBERT-L2-v2``;
                                        a relative path is taken from the working directory when the
                                        settings are read: the reranker reads them when it is first built).
    ``PYMEM_RERANK_DEVICE``             auto, cuda or cpu (default auto).
    ``PYMEM_RERANK_CUDA_DEVICE``        the GPU's CUDA device id (default 0).
    ``PYMEM_RERANK_THREADS``            CPU intra-op threads, 0 = ONNX Runtime's choice (default 0).
    ``PYMEM_RERANK_MAX_LENGTH``         token truncation length (default 256).
    ``PYMEM_RERANK_BATCH_SIZE``         pairs per inference batch (default 32).
    ``PYMEM_RERANK_BREAKER_THRESHOLD``  consecutive failures that open the breaker (default 3).
    ``PYMEM_RERANK_BREAKER_COOLDOWN_S`` seconds the breaker stays open (default 30).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError

#: The embedding dimension of a new schema when none is asked for.
DEFAULT_EMBEDDING_DIM = 384
EMBEDDING_TYPES = ("vector", "halfvec")
# HNSW indexes vector of up to 2,000 dimensions and halfvec of up to 4,000 (pgvector).
MAX_VECTOR_DIM, MAX_HALFVEC_DIM = 2000, 4000
#: The reranker's directory under ``$PYMEM_HOME/models`` unless PYMEM_RERANK_MODEL says otherwise.
DEFAULT_RERANKER_NAME = "ms-marco-TinyBERT-L2-v2"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be one of true/false/1/0/yes/no/on/off")


def _env_number(name: str, default: float, kind: type, minimum: float, maximum: float):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return kind(default)
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be a {kind.__name__}") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} must be between {minimum} and {maximum}")
    return value


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    """A snapshot of pymem's non-secret settings (see the module docstring)."""

    database_url: str | None
    home: Path
    pg_version: int
    embedding_dim: int | None
    embedding_type: str | None
    max_text_bytes: int
    rerank_enabled: bool
    rerank_circuit_ms: float
    rerank_model_dir: Path
    rerank_device: str
    rerank_cuda_device: int
    rerank_threads: int
    rerank_max_length: int
    rerank_batch_size: int
    rerank_breaker_threshold: int
    rerank_breaker_cooldown_s: float
    root_key_provider: str = "local"
    data_key_cache_size: int = 10_000
    data_key_cache_ttl_s: float = 300.0
    term_tags: bool = True
    term_language: str = "english"


#: The root-key providers pymem ships (:mod:`pymem.root_keys`); others are registered there.
ROOT_KEY_PROVIDERS = ("local", "pkcs11", "aws-kms")


def _root_key_provider() -> str:
    name = os.environ.get("PYMEM_ROOT_KEY_PROVIDER", "").strip().lower() or "local"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        raise ConfigurationError("PYMEM_ROOT_KEY_PROVIDER must name a root-key provider: "
                                 + ", ".join(ROOT_KEY_PROVIDERS) + ", or one registered with"
                                 " pymem.root_keys.register_provider")
    return name


def _term_language() -> str:
    name = os.environ.get("PYMEM_TERM_LANGUAGE", "").strip().lower() or "english"
    if not re.fullmatch(r"[a-z_]{2,32}", name):
        raise ConfigurationError("PYMEM_TERM_LANGUAGE must name a Snowball stemmer (english, german, ...)")
    return name


def rerank_enabled_now(default: bool) -> bool:
    """``RERANK_ENABLED`` as it is now (the kill switch needs no restart); ``default`` when unset.

    Raises:
        ValueError: the variable is set but not a boolean.
    """
    return _env_bool("RERANK_ENABLED", default)


def transaction_limits() -> tuple[float, float]:
    """``PYMEM_IDLE_IN_TRANSACTION_TIMEOUT_S`` and ``PYMEM_TRANSACTION_TIMEOUT_S``, validated: read
    alone, without the rest of :func:`get_settings`, by every transaction pymem opens.

    Raises:
        ConfigurationError: either is malformed or out of range.
    """
    return (_env_number("PYMEM_IDLE_IN_TRANSACTION_TIMEOUT_S", 10.0, float, 0.05, 3_600.0),
            _env_number("PYMEM_TRANSACTION_TIMEOUT_S", 300.0, float, 0.0, 86_400.0))


def pool_check_timeout() -> float:
    """``PYMEM_POOL_CHECK_TIMEOUT_S``, validated: read alone by each pool check and reset.

    Raises:
        ConfigurationError: it is malformed or out of range.
    """
    return _env_number("PYMEM_POOL_CHECK_TIMEOUT_S", 5.0, float, 0.05, 3_600.0)


def get_settings() -> Settings:
    """Read and validate the settings from the environment.

    Raises:
        ValueError: a variable is present but malformed (the message names the
            variable, never its value).
    """
    pg_version = _env_number("PYMEM_PG_VERSION", 18, int, 16, 18)
    if pg_version not in (16, 18):
        raise ConfigurationError("PYMEM_PG_VERSION must be 16 or 18")
    home = Path(os.environ.get("PYMEM_HOME") or Path.home() / ".pymem").expanduser().absolute()
    return Settings(
        database_url=os.environ.get("PYMEM_DATABASE_URL") or None,
        home=home,
        pg_version=pg_version,
        embedding_dim=(_env_number("PYMEM_EMBEDDING_DIM", DEFAULT_EMBEDDING_DIM, int, 1, MAX_HALFVEC_DIM)
                       if os.environ.get("PYMEM_EMBEDDING_DIM", "").strip() else None),
        embedding_type=(_env_choice("PYMEM_EMBEDDING_TYPE", "vector", EMBEDDING_TYPES)
                        if os.environ.get("PYMEM_EMBEDDING_TYPE", "").strip() else None),
        max_text_bytes=_env_number("PYMEM_MAX_TEXT_BYTES", 64 * 1024, int, 1, 1 << 30),
        rerank_enabled=_env_bool("RERANK_ENABLED", True),
        rerank_circuit_ms=_env_number("RERANK_CIRCUIT_MS", 250.0, float, 1.0, 60_000.0),
        # Absolute, so that where the app was started does not decide whether it reranks,
        # and an error names the directory it looked in.
        rerank_model_dir=(Path(os.environ["PYMEM_RERANK_MODEL"]).expanduser().absolute()
                          if os.environ.get("PYMEM_RERANK_MODEL") else home / "models" / DEFAULT_RERANKER_NAME),
        rerank_device=_env_choice("PYMEM_RERANK_DEVICE", "auto", ("auto", "cuda", "cpu")),
        rerank_cuda_device=_env_number("PYMEM_RERANK_CUDA_DEVICE", 0, int, 0, 1024),
        rerank_threads=_env_number("PYMEM_RERANK_THREADS", 0, int, 0, 256),
        rerank_max_length=_env_number("PYMEM_RERANK_MAX_LENGTH", 256, int, 8, 4096),
        rerank_batch_size=_env_number("PYMEM_RERANK_BATCH_SIZE", 32, int, 1, 1024),
        rerank_breaker_threshold=_env_number("PYMEM_RERANK_BREAKER_THRESHOLD", 3, int, 1, 1000),
        rerank_breaker_cooldown_s=_env_number(
            "PYMEM_RERANK_BREAKER_COOLDOWN_S", 30.0, float, 0.0, 86_400.0
        ),
        root_key_provider=_root_key_provider(),
        data_key_cache_size=_env_number("PYMEM_DATA_KEY_CACHE_SIZE", 10_000, int, 1, 10_000_000),
        data_key_cache_ttl_s=_env_number("PYMEM_DATA_KEY_CACHE_TTL_S", 300.0, float, 1.0, 86_400.0),
        term_tags=_env_bool("PYMEM_TERM_TAGS", True),
        term_language=_term_language(),
    )


@dataclass(frozen=True)
class KeyMaterial:
    """Raw key strings from the environment, not yet decoded or validated.

    ``repr`` is redacted so that a stray log line or traceback never shows a key.
    """

    encryption_key: str | None
    encryption_key_id: str | None
    old_encryption_keys: str | None
    tenant_hmac_key: str | None
    new_tenant_hmac_key: str | None = None
    audit_signing_key: str | None = None
    audit_verify_key: str | None = None

    def __repr__(self) -> str:
        return "KeyMaterial(<redacted>)"


@dataclass(frozen=True)
class RootKeySettings:
    """Where the PKCS#11 token and the AWS KMS key are; ``repr`` is redacted (the PIN)."""

    pkcs11_module: str | None
    pkcs11_token: str | None
    pkcs11_pin: str | None
    pkcs11_key: str | None
    pkcs11_old_keys: tuple[str, ...]
    kms_key_id: str | None
    kms_old_key_ids: tuple[str, ...]
    kms_endpoint_url: str | None

    def __repr__(self) -> str:
        return "RootKeySettings(<redacted>)"


def root_key_settings() -> RootKeySettings:
    """Return the PKCS#11 and AWS KMS variables; :mod:`pymem.root_keys` checks them."""
    def listed(variable: str) -> tuple[str, ...]:
        return tuple(k.strip() for k in (os.environ.get(variable) or "").split(",") if k.strip())

    return RootKeySettings(pkcs11_old_keys=listed("PYMEM_PKCS11_OLD_KEYS"),
                           kms_old_key_ids=listed("PYMEM_KMS_OLD_KEY_IDS"),
                           **{field: os.environ.get(f"PYMEM_{field.upper()}") or None for field in (
                               "pkcs11_module", "pkcs11_token", "pkcs11_pin", "pkcs11_key", "kms_key_id",
                               "kms_endpoint_url")})


def key_material() -> KeyMaterial:
    """Return the raw key variables; :mod:`pymem.security` validates them."""
    return KeyMaterial(
        encryption_key=os.environ.get("MEMORY_ENCRYPTION_KEY"),
        encryption_key_id=os.environ.get("MEMORY_ENCRYPTION_KEY_ID"),
        old_encryption_keys=os.environ.get("MEMORY_ENCRYPTION_OLD_KEYS"),
        tenant_hmac_key=os.environ.get("MEMORY_TENANT_HMAC_KEY"),
        new_tenant_hmac_key=os.environ.get("MEMORY_TENANT_HMAC_KEY_NEW"),
        audit_signing_key=os.environ.get("PYMEM_AUDIT_SIGNING_KEY"),
        audit_verify_key=os.environ.get("PYMEM_AUDIT_VERIFY_KEY"),
    )
