"""A Redis server of a test's own (another port, its own options), and a self-signed CA.

Used to check TLS for real and the persistence warning without touching the shared Redis.
Skips the test when ``redis-server`` or ``openssl`` is missing, or when the server was built
without TLS.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_certificates(directory: Path) -> Certificates:
    """A throw-away CA and a server certificate for localhost and 127.0.0.1, signed by it."""
    openssl = _binary("openssl")
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    new_key = ["-newkey", "rsa:2048", "-nodes", "-days", "1"]
    sign = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1", "-extfile", extensions]
    commands = [
        ["req", "-x509", *new_key, "-keyout", ca_key, "-out", ca, "-subj", "/CN=infinitic CA"],
        ["req", *new_key, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, *sign, "-out", cert],
    ]
    for command in commands:
        args = [openssl, *(str(c) for c in command)]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
    return Certificates(ca, cert, key)


@contextmanager
def private_redis(directory: Path, *options: str, tls: Certificates | None = None) -> Iterator[int]:
    """Run ``redis-server`` on a free loopback port with ``options``; yield the port.

    With ``tls``, the port speaks TLS only (no plaintext port at all).
    """
    server = _binary("redis-server")
    port = free_port()
    args = [server, "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", *options]
    if tls is None:
        args += ["--port", str(port)]
    else:
        args += ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
        args += ["--tls-cert-file", str(tls.server_cert), "--tls-key-file", str(tls.server_key)]
        args += ["--tls-ca-cert-file", str(tls.ca)]
    log = directory / f"redis-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                text = log.read_text(errors="replace")
                if tls is not None and "tls" in text.lower():
                    pytest.skip(f"redis-server was built without TLS support: {text[-300:]}")
                pytest.fail(f"redis-server exited: {text[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not listen within 10 s")
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
