"""A throwaway GitHub App (RSA key pair) for the installation-token tests."""

from __future__ import annotations

import functools
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

APP_ID = 12345
INSTALLATION_ID = 42


@functools.cache
def key_pair() -> tuple[str, str]:
    """(private PEM, public PEM), generated once per test process."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def configure_app(gh) -> str:
    """Register the app with the emulator; return its private key."""
    private, public = key_pair()
    gh.app = (APP_ID, public, INSTALLATION_ID)
    return private


def app_jwt(private_key: str, iss: str = str(APP_ID), expires_in: int = 300) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now - 60, "exp": now + expires_in, "iss": iss}, private_key, algorithm="RS256")
