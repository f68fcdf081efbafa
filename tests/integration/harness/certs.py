"""TLS material no client trusts: a self-signed certificate made at test time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["self_signed_certificate"]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed cert for localhost/127.0.0.1 and its key; return both paths.

    Everything but the issuer is right (names, dates, key usage), so a client that
    refuses it refuses it for being untrusted.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl is needed to generate an untrusted certificate")
    cert, key = directory / "untrusted.pem", directory / "untrusted.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
