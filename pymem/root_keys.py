"""Root keys: what wraps each tenant's data keys, kept where the database never sees it.

A provider wraps and unwraps 32-byte data keys under root keys it keeps and never
gives out. It names each root key with a reference, ``<provider>:<name>``, which is
stored beside every wrapped data key (``pymem.data_keys.root_key``), so that a data
key wrapped under an older root key still unwraps after the current one changed.

Every wrap is bound to its tenant and version (:class:`KeyContext`): as AES-GCM
associated data (local, PKCS#11) or as the KMS encryption context (AWS KMS). A
wrapped key moved to another tenant or version in the database no longer unwraps.

Providers (``PYMEM_ROOT_KEY_PROVIDER``, see :mod:`pymem.config`):

``local`` (the default)
    ``local:<id>``: a key derived from the environment's ``MEMORY_ENCRYPTION_KEY``
    (id ``MEMORY_ENCRYPTION_KEY_ID``) or one of ``MEMORY_ENCRYPTION_OLD_KEYS``
    (:func:`pymem.security.local_root_key`). AES-256-GCM in the process.
``pkcs11`` (:mod:`pymem.root_keys_pkcs11`)
    ``pkcs11:<label>``: an AES-256 key inside a PKCS#11 token (an HSM; SoftHSM2 in
    the tests), which encrypts with CKM_AES_GCM itself: the key never leaves it.
``aws-kms`` (:mod:`pymem.root_keys_kms`)
    ``aws-kms:<key id or ARN>``: a KMS key; ``Encrypt``/``Decrypt`` with the tenant
    and version as the encryption context (logged by CloudTrail on AWS).

Another KMS (Vault transit, Google Cloud KMS, Azure Key Vault) is a subclass of
:class:`RootKeyProvider` with the three methods below, registered with
:func:`register_provider`.

Errors: a wrapped key that does not unwrap under its root key for its tenant and
version raises :class:`~pymem.errors.WrappedKeyInvalid`; a root key that cannot be
used (the provider is down, the key is not configured, disabled or destroyed)
raises :class:`~pymem.errors.RootKeyUnavailable`. Neither carries key bytes.
"""

from __future__ import annotations

import abc
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from .config import get_settings
from .errors import ConfigurationError, RootKeyUnavailable, UnknownKeyId, WrappedKeyInvalid
from .security import keyring, open_with, seal_with

__all__ = ["KeyContext", "LocalRootKeys", "RootKeyProvider", "provider", "provider_of", "register_provider",
           "reset_providers"]

DATA_KEY_BYTES = 32
_TENANT_HASH = re.compile(r"[0-9a-f]{64}")
_MAX_VERSION = 2**31 - 1  # memory_chunks.key_id (int4) names a data key as -version


@dataclass(frozen=True)
class KeyContext:
    """What a wrapped data key is bound to: its tenant and its version."""

    user_hash: str
    version: int

    def __post_init__(self) -> None:
        # Both come from the database, which is checked, not trusted: a version that is not an
        # int (a replaced function returning 1.4 or '1') formats as another one in the AAD
        # below, and no longer equals the version an erasure recorded as destroyed.
        if (type(self.user_hash) is not str or not _TENANT_HASH.fullmatch(self.user_hash)
                or type(self.version) is not int or not 1 <= self.version <= _MAX_VERSION):
            raise WrappedKeyInvalid("the database named a data key by a tenant hash or a version that is not one")

    def aad(self) -> bytes:
        """``pymem:data-key:v1|<user_hash>|<version>``: the associated data of a wrap."""
        return b"pymem:data-key:v1|%s|%d" % (self.user_hash.encode("ascii"), self.version)

    def encryption_context(self) -> dict[str, str]:
        """The same binding as a KMS encryption context."""
        return {"pymem": "data-key-v1", "tenant": self.user_hash, "version": str(self.version)}

    def not_authentic(self) -> WrappedKeyInvalid:
        """The error of a wrapped key that does not unwrap for this context (never naming a key byte)."""
        return WrappedKeyInvalid(f"a data key of tenant {self.user_hash[:12]}... (version {self.version}) does not"
                                 " unwrap under its root key: it was changed or moved")


class RootKeyProvider(abc.ABC):
    """Wraps and unwraps data keys under root keys that it keeps.

    Subclasses set ``name`` (the prefix of their references) and implement
    :meth:`current`, :meth:`wrap` and :meth:`unwrap`; each may be called from
    several threads at once.
    """

    name: str = ""
    #: The key names (after ``name:``) it may use; None: any it can find. A reference comes
    #: from the database, so a provider whose keys a superuser could add to (a KMS key policy,
    #: a token's other labels) lists the configured ones: only those unwrap or wrap.
    allowed: frozenset[str] | None = None

    @abc.abstractmethod
    def current(self) -> str:
        """The reference of the root key new data keys are wrapped under.

        Raises:
            ConfigurationError: the provider's settings are missing or malformed.
        """

    @abc.abstractmethod
    def wrap(self, root_key: str, data_key: bytes, context: KeyContext) -> bytes:
        """Wrap ``data_key`` under ``root_key``, bound to ``context``.

        Raises:
            RootKeyUnavailable: the root key cannot be used.
        """

    @abc.abstractmethod
    def unwrap(self, root_key: str, wrapped: bytes, context: KeyContext) -> bytes:
        """The data key ``wrapped`` holds, if it was wrapped under ``root_key`` for ``context``.

        Raises:
            WrappedKeyInvalid: it was not (changed, or another tenant's or version's).
            RootKeyUnavailable: the root key cannot be used.
        """

    def handles(self, root_key: str) -> bool:
        """Whether ``root_key`` is one of this provider's references (and, with ``allowed``, listed)."""
        return root_key.startswith(self.name + ":") and (
            self.allowed is None or root_key[len(self.name) + 1:] in self.allowed)

    def _name_of(self, root_key: str) -> str:
        if not self.handles(root_key):
            raise RootKeyUnavailable(f"root key {root_key!r} is not one of the configured {self.name} keys")
        return root_key[len(self.name) + 1:]


class LocalRootKeys(RootKeyProvider):
    """Root keys derived from the environment's key ring (``local:<key id>``).

    The key ring is read when each call is made, so ``pymem.reload_keys()`` picks up
    a new ``MEMORY_ENCRYPTION_KEY`` at once. Retiring ``local:<id>`` is removing key
    ``<id>`` from ``MEMORY_ENCRYPTION_OLD_KEYS``.
    """

    name = "local"

    def current(self) -> str:
        return f"local:{keyring().active_key_id}"

    def _aead(self, root_key: str):
        name = self._name_of(root_key)
        try:
            return keyring().root_aead(int(name))
        except (ValueError, UnknownKeyId):
            raise RootKeyUnavailable(f"root key {root_key!r} is not in the key ring: its key id is neither"
                                     " MEMORY_ENCRYPTION_KEY_ID nor in MEMORY_ENCRYPTION_OLD_KEYS") from None

    def wrap(self, root_key: str, data_key: bytes, context: KeyContext) -> bytes:
        return seal_with(self._aead(root_key), data_key, context.aad())

    def unwrap(self, root_key: str, wrapped: bytes, context: KeyContext) -> bytes:
        aead = self._aead(root_key)
        try:
            return open_with(aead, wrapped, context.aad())
        except InvalidTag:
            raise context.not_authentic() from None


_FACTORIES: dict[str, Callable[[], RootKeyProvider]] = {"local": LocalRootKeys}
_providers: dict[str, RootKeyProvider] = {}
_lock = threading.Lock()


def register_provider(name: str, factory: Callable[[], RootKeyProvider]) -> None:
    """Make ``PYMEM_ROOT_KEY_PROVIDER=name`` build its provider with ``factory``."""
    with _lock:
        _FACTORIES[name] = factory
        _providers.pop(name, None)


def _built_in(name: str) -> Callable[[], RootKeyProvider]:
    if name == "pkcs11":
        from .root_keys_pkcs11 import Pkcs11RootKeys
        return Pkcs11RootKeys
    if name == "aws-kms":
        from .root_keys_kms import AwsKmsRootKeys
        return AwsKmsRootKeys
    raise ConfigurationError(f"no root-key provider is named {name!r}")


def _get(name: str) -> RootKeyProvider:
    with _lock:
        built = _providers.get(name)
        if built is None:
            built = _providers[name] = (_FACTORIES.get(name) or _built_in(name))()
        return built


def provider() -> RootKeyProvider:
    """The configured provider (``PYMEM_ROOT_KEY_PROVIDER``), built once per process.

    Raises:
        ConfigurationError: unknown provider, or its settings are missing.
        MissingExtra: its extra (``pkcs11``, ``aws-kms``) is not installed.
    """
    return _get(get_settings().root_key_provider)


def provider_of(root_key: str) -> RootKeyProvider:
    """The provider that can unwrap under ``root_key``: the configured one, or the local
    one for ``local:`` references (data keys made before a move to a KMS or an HSM).
    A reference comes from the database: a provider handles only the keys it was
    configured with, never one the database names.

    Raises:
        RootKeyUnavailable: no configured provider handles it.
    """
    configured = provider()
    if configured.handles(root_key):
        return configured
    if root_key.startswith("local:"):
        return _get("local")
    raise RootKeyUnavailable(f"root key {root_key!r} is not one of the configured root keys"
                             f" (PYMEM_ROOT_KEY_PROVIDER is {configured.name!r})")


def reset_providers() -> None:
    """Forget the built providers, so that changed settings are read again (and tokens
    and clients are opened again)."""
    with _lock:
        _providers.clear()


def new_data_key() -> bytes:
    """A fresh data key: 32 random bytes from the operating system."""
    return os.urandom(DATA_KEY_BYTES)
