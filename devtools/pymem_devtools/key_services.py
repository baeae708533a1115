"""Root-key services to test and measure against, on this machine: a SoftHSM2 token
(a real PKCS#11 token, Debian's ``softhsm2``) and moto's KMS server (AWS itself is
not reachable from CI). Used by the root-key test suite and ``pymem-dev bench --only keys``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SOFTHSM2 = Path("/usr/lib/softhsm/libsofthsm2.so")
_conf: Path | None = None  # this process's SoftHSM2 configuration: one token directory


class ServiceMissing(RuntimeError):
    """A root-key service is not installed here; the message says what to install."""


def softhsm_token(directory: Path | None = None, labels: tuple[str, ...] = ("root-1", "root-2")) -> tuple[dict, object]:
    """A fresh SoftHSM2 token with an AES-256 key per label, made inside the token.

    Sets ``SOFTHSM2_CONF`` in this process; every token of a process is made in the first
    call's directory, and a later call re-initialises the library (its open sessions end). Returns the ``PYMEM_*`` variables of
    the ``pkcs11`` provider (current key: the first label) and the python-pkcs11 token.

    Raises:
        ServiceMissing: SoftHSM2 or python-pkcs11 is not installed.
    """
    if not SOFTHSM2.exists():
        raise ServiceMissing("SoftHSM2 is not installed (Debian's softhsm2; make test installs it)")
    try:
        import pkcs11
        from pkcs11 import KeyType
    except ImportError:
        raise ServiceMissing("python-pkcs11 is not installed (pip install 'pymem-store[pkcs11]')") from None
    global _conf
    loaded = _conf is not None
    if not loaded:  # the library reads its configuration when it initialises
        directory = Path(directory or tempfile.mkdtemp(prefix="pymem-softhsm-"))
        (directory / "tokens").mkdir(parents=True, exist_ok=True)
        _conf = directory / "softhsm2.conf"
        _conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
                         "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(_conf)
    pin, label = secrets.token_hex(8), f"pymem-{uuid.uuid4().hex[:8]}"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
                    "--so-pin", secrets.token_hex(8)], check=True, capture_output=True,
                   env={**os.environ, "SOFTHSM2_CONF": str(_conf)})
    library = pkcs11.lib(str(SOFTHSM2))
    if loaded:
        library.reinitialize()  # SoftHSM2 lists the tokens it found when it initialised
    token = library.get_token(token_label=label)
    with token.open(user_pin=pin, rw=True) as session:
        for key in labels:
            session.generate_key(KeyType.AES, 256, label=key, store=True)
    return {"PYMEM_ROOT_KEY_PROVIDER": "pkcs11", "PYMEM_PKCS11_MODULE": str(SOFTHSM2),
            "PYMEM_PKCS11_TOKEN": label, "PYMEM_PKCS11_PIN": pin, "PYMEM_PKCS11_KEY": labels[0]}, token


class KmsServer:
    """moto's KMS server on a free local port, as a process of its own.

    Raises:
        ServiceMissing: moto's server did not start (``pip install 'moto[server]'``).
    """

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ServiceMissing("moto's KMS server did not start (pip install 'moto[server]'; make test installs it)")

    @staticmethod
    def credentials() -> dict[str, str]:
        """The AWS SDK variables a local KMS needs (moto accepts any credentials)."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3
        return boto3.client("kms", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_key(self) -> str:
        """A new symmetric KMS key; its ARN."""
        return self.client().create_key(Description="pymem root key")["KeyMetadata"]["Arn"]

    def provider_settings(self, key_arn: str) -> dict[str, str]:
        """The ``aws-kms`` provider's variables with ``key_arn`` current."""
        return {"PYMEM_ROOT_KEY_PROVIDER": "aws-kms", "PYMEM_KMS_KEY_ID": key_arn, "PYMEM_KMS_ENDPOINT_URL": self.url}

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
