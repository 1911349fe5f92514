"""The appliance's Ed25519 signing key: made at first start, private key 0600 in the
data folder, public key as PEM next to it (to anchor outside, and shipped in exports).
Signs audit chain heads and export manifests."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from appliance.errors import ConfigError
from appliance.secrets import write_private


def key_id(public_pem: bytes) -> str:
    """A short fingerprint: sha256 of the raw public key."""
    public = load_public(public_pem)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(public_pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the public key is not an Ed25519 key")
    return key


def verify(public_pem: bytes, data: bytes, signature_b64: str) -> bool:
    try:
        raw = base64.b64decode(signature_b64, validate=True)
        if base64.b64encode(raw).decode() != signature_b64:  # only the canonical encoding:
            return False  # unused bits in the last character would make copies that verify
        load_public(public_pem).verify(raw, data)
    except (InvalidSignature, ValueError, ConfigError):
        return False
    return True


class Signer:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_pem = pem(private.public_key())
        self.key_id = key_id(self.public_pem)

    @classmethod
    def load_or_create(cls, key_file: Path, public_file: Path) -> tuple[Signer, bool]:
        """The key in ``key_file``, made (0600) if absent; returns (signer, created)."""
        created = not key_file.exists()
        if created:
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            write_private(key_file, pem.decode())
        else:
            try:
                loaded = serialization.load_pem_private_key(key_file.read_bytes(), None)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"signing key {key_file} is unreadable: {exc}") from exc
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ConfigError(f"signing key {key_file} is not an Ed25519 key")
            private = loaded
        signer = cls(private)
        if not public_file.exists() or public_file.read_bytes() != signer.public_pem:
            public_file.write_bytes(signer.public_pem)  # public: no need for 0600
        return signer, created

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._private.sign(data)).decode()
