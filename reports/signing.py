"""Owners' Ed25519 keys and signatures over a report's digest.

An owner makes a key pair on their own machine (``continuity keygen``): the private key stays
there (a PEM file readable by its owner only), the public key (``ed25519:`` and 32 bytes in
base64) is registered for their classes in the project file. A sign-off signs the canonical
JSON of what it binds: report digest, class, owner, decision, comment and time.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from continuity.domain.errors import ConfigError

PREFIX = "ed25519:"

#: What a sign-off's signature covers, in this order of keys (canonical JSON).
SIGNED_FIELDS = ("project", "report_digest", "class", "owner", "decision", "comment", "signed_at")


def generate(folder: Path, name: str) -> tuple[Path, Path, str]:
    """Write ``name.key`` (private, mode 0600) and ``name.pub`` into ``folder``; never
    overwrite. Returns both paths and the public key text."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} already exists: a key is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = public_text(key.public_key())
    public_path.write_text(public + "\n", encoding="utf-8")
    return private_path, public_path, public


def public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PREFIX + base64.b64encode(raw).decode("ascii")


def read_private(path: Path) -> Ed25519PrivateKey:
    """An owner's private key file; anything else is a one-line ConfigError."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the key: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted Ed25519 private key (PEM)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def read_public(text: str) -> Ed25519PublicKey:
    """A registered public key (``ed25519:BASE64``)."""
    if not text.startswith(PREFIX):
        raise ValueError(f"a public key starts with {PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc


def message(fields: dict[str, Any]) -> bytes:
    """The bytes a sign-off signs."""
    return json.dumps(
        {k: fields.get(k) for k in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")


def sign(key: Ed25519PrivateKey, fields: dict[str, Any]) -> str:
    return base64.b64encode(key.sign(message(fields))).decode("ascii")


def valid(public: str, signature: str, fields: dict[str, Any]) -> bool:
    """Whether ``signature`` is ``public``'s over ``fields``."""
    try:
        read_public(public).verify(base64.b64decode(signature, validate=True), message(fields))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
