"""Root keys in a PKCS#11 token (an HSM): ``PYMEM_ROOT_KEY_PROVIDER=pkcs11``.

Each root key is an AES-256 secret key in the token, found by its label
(``pkcs11:<label>``), created by the security team with the token's own tools,
sensitive and not extractable. The token encrypts each data key with CKM_AES_GCM
itself, under a random 96-bit IV, with :meth:`KeyContext.aad` as associated data:
the wrapped bytes are ``iv(12) || ciphertext || tag(16)``. The root key never leaves
the token; access is logged there.

Through python-pkcs11 (extra ``pkcs11``). One logged-in session is kept per
process and used under a lock (a PKCS#11 session is not for concurrent use); a
session the token dropped is opened again once per call.

Settings: ``PYMEM_PKCS11_MODULE``, ``PYMEM_PKCS11_TOKEN``, ``PYMEM_PKCS11_PIN``,
``PYMEM_PKCS11_KEY`` and ``PYMEM_PKCS11_OLD_KEYS`` (labels data keys may still be under
during a root rotation; no other label unwraps) (:mod:`pymem.config`). Tested against SoftHSM2.
"""

from __future__ import annotations

import os
import threading

from .config import root_key_settings
from .errors import ConfigurationError, RootKeyUnavailable
from .extras import require
from .root_keys import KeyContext, RootKeyProvider

pkcs11 = require("pkcs11", "pkcs11", "root keys in a PKCS#11 token")
from pkcs11 import KeyType, Mechanism  # noqa: E402 (after the check above)
from pkcs11.exceptions import NoSuchKey, PKCS11Error, UserAlreadyLoggedIn  # noqa: E402
from pkcs11.mechanisms import GCMParams  # noqa: E402

_IV_BYTES = 12
# What a decryption with the right key reports when the bytes or the AAD are not
# the ones it was made with (SoftHSM2 says CKR_GENERAL_ERROR; others the two named).
_NOT_AUTHENTIC = tuple(getattr(pkcs11.exceptions, name) for name in (
    "EncryptedDataInvalid", "EncryptedDataLenRange", "GeneralError", "FunctionFailed")
    if hasattr(pkcs11.exceptions, name))


class Pkcs11RootKeys(RootKeyProvider):
    """Root keys in one PKCS#11 token."""

    name = "pkcs11"

    def __init__(self) -> None:
        settings = root_key_settings()
        missing = [variable for variable, value in (
            ("PYMEM_PKCS11_MODULE", settings.pkcs11_module), ("PYMEM_PKCS11_TOKEN", settings.pkcs11_token),
            ("PYMEM_PKCS11_PIN", settings.pkcs11_pin), ("PYMEM_PKCS11_KEY", settings.pkcs11_key)) if not value]
        if missing:
            raise ConfigurationError(f"the pkcs11 root-key provider needs {', '.join(missing)}")
        self._module, self._token_label = settings.pkcs11_module, settings.pkcs11_token
        self._pin, self._current = settings.pkcs11_pin, settings.pkcs11_key
        self.allowed = frozenset({self._current, *settings.pkcs11_old_keys})  # never a label the database names
        self._session = None
        self._keys: dict[str, object] = {}
        self._lock = threading.Lock()

    def current(self) -> str:
        return f"pkcs11:{self._current}"

    def _open(self):
        try:
            token = pkcs11.lib(self._module).get_token(token_label=self._token_label)
            try:
                return token.open(user_pin=self._pin)
            except UserAlreadyLoggedIn:  # a login is the process's: another session of it made one
                return token.open()
        except (PKCS11Error, RuntimeError, OSError) as error:
            raise RootKeyUnavailable(f"the PKCS#11 token {self._token_label!r} cannot be opened"
                                     f" ({type(error).__name__})") from None

    def _key(self, label: str):
        key = self._keys.get(label)
        if key is None:
            if self._session is None:
                self._session = self._open()
            try:
                key = self._keys[label] = self._session.get_key(label=label, key_type=KeyType.AES)
            except NoSuchKey:
                raise RootKeyUnavailable(f"root key 'pkcs11:{label}' is not in the token (destroyed, or never"
                                         " made)") from None
        return key

    def _call(self, root_key: str, operation):
        """Run ``operation(key)`` under the lock; after a session error, once more on a new session."""
        label = self._name_of(root_key)
        with self._lock:
            for attempt in (1, 2):
                key = self._key(label)
                try:
                    return operation(key)
                except _NOT_AUTHENTIC:
                    raise
                except PKCS11Error as error:
                    self._session, self._keys = None, {}
                    if attempt == 2:
                        raise RootKeyUnavailable(f"the PKCS#11 token failed with root key {root_key!r}"
                                                 f" ({type(error).__name__})") from None

    def wrap(self, root_key: str, data_key: bytes, context: KeyContext) -> bytes:
        iv = os.urandom(_IV_BYTES)
        try:
            return iv + self._call(root_key, lambda key: key.encrypt(
                data_key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, context.aad())))
        except _NOT_AUTHENTIC as error:
            raise RootKeyUnavailable(f"the PKCS#11 token refused to wrap under {root_key!r}"
                                     f" ({type(error).__name__})") from None

    def unwrap(self, root_key: str, wrapped: bytes, context: KeyContext) -> bytes:
        iv, sealed = wrapped[:_IV_BYTES], wrapped[_IV_BYTES:]
        try:
            data_key = self._call(root_key, lambda key: key.decrypt(
                sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, context.aad())))
        except _NOT_AUTHENTIC:
            data_key = None
        if data_key is None or len(data_key) != 32:
            raise context.not_authentic()
        return bytes(data_key)
