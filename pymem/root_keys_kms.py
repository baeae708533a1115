"""Root keys in AWS KMS: ``PYMEM_ROOT_KEY_PROVIDER=aws-kms``.

Each root key is a KMS key (``aws-kms:<key id or ARN>``). A data key is wrapped
with ``Encrypt`` and unwrapped with ``Decrypt``, the tenant and version as the
encryption context (:meth:`KeyContext.encryption_context`): KMS refuses a
ciphertext given with another context, and CloudTrail logs each call with it.
This is the envelope the AWS Encryption SDK builds with its KMS keyring; pymem
calls KMS through boto3 directly because the SDK's message format is not the
seed's row format, which every sealed field keeps.

Settings: ``PYMEM_KMS_KEY_ID`` (the current key), ``PYMEM_KMS_OLD_KEY_IDS`` (keys data
keys may still be wrapped under, during a root rotation; comma-separated) and
``PYMEM_KMS_ENDPOINT_URL`` (optional). No other key unwraps, whatever the database
names; region and credentials are the AWS SDK's own (``AWS_REGION``, roles,
profiles). Calls time out after 2 s to connect and 5 s to answer, with 2 attempts,
so that an outage fails a cold tenant in seconds instead of hanging it.

AWS itself cannot be reached from pymem's CI: the tests run against moto's KMS
server, which implements the same API, encryption context included.
"""

from __future__ import annotations

from .config import root_key_settings
from .errors import ConfigurationError, RootKeyUnavailable
from .extras import require
from .root_keys import KeyContext, RootKeyProvider

boto3 = require("boto3", "aws-kms", "root keys in AWS KMS")
from botocore.config import Config  # noqa: E402 (after the check above)
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

# What KMS answers when the ciphertext or its context is not the one it made.
_NOT_AUTHENTIC = ("InvalidCiphertextException", "IncorrectKeyException")
_TIMEOUTS = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})


class AwsKmsRootKeys(RootKeyProvider):
    """Root keys in AWS KMS (or a service with its API)."""

    name = "aws-kms"

    def __init__(self) -> None:
        settings = root_key_settings()
        if not settings.kms_key_id:
            raise ConfigurationError("the aws-kms root-key provider needs PYMEM_KMS_KEY_ID")
        self._current = settings.kms_key_id
        # Only these keys unwrap: a root key reference comes from the database, and a
        # superuser could otherwise point a tenant at a KMS key of its own that the app's
        # role may use (a key policy, IAM "Resource": "*") and have the app seal under it.
        self.allowed = frozenset({self._current, *settings.kms_old_key_ids})
        try:
            self._client = boto3.client("kms", endpoint_url=settings.kms_endpoint_url, config=_TIMEOUTS)
        except BotoCoreError as error:  # no region, a malformed endpoint
            raise ConfigurationError(f"the aws-kms root-key provider cannot be set up ({type(error).__name__};"
                                     " set AWS_REGION)") from None

    def current(self) -> str:
        return f"aws-kms:{self._current}"

    def _call(self, root_key: str, method: str, **arguments) -> dict:
        try:
            return getattr(self._client, method)(**arguments)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _NOT_AUTHENTIC:
                raise
            raise RootKeyUnavailable(f"KMS refused {method} with root key {root_key!r} ({code})") from None
        except BotoCoreError as error:
            raise RootKeyUnavailable(f"KMS cannot be reached for root key {root_key!r}"
                                     f" ({type(error).__name__})") from None

    def wrap(self, root_key: str, data_key: bytes, context: KeyContext) -> bytes:
        try:
            return self._call(root_key, "encrypt", KeyId=self._name_of(root_key), Plaintext=data_key,
                              EncryptionContext=context.encryption_context())["CiphertextBlob"]
        except ClientError as error:
            raise RootKeyUnavailable(f"KMS refused to wrap under {root_key!r}"
                                     f" ({error.response['Error']['Code']})") from None

    def unwrap(self, root_key: str, wrapped: bytes, context: KeyContext) -> bytes:
        try:
            answer = self._call(root_key, "decrypt", KeyId=self._name_of(root_key), CiphertextBlob=wrapped,
                                EncryptionContext=context.encryption_context())
        except ClientError:
            answer = None
        # KMS names the key that decrypted: it must be the one asked for (an ARN ends in the id).
        used = "" if answer is None else answer.get("KeyId", "")
        name = self._name_of(root_key)
        if answer is None or len(answer["Plaintext"]) != 32 or not (used == name or used.endswith("/" + name)):
            raise context.not_authentic()
        return answer["Plaintext"]
