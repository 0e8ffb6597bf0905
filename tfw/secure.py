"""The secure profile of ``tfw up --secure``: NATS with TLS and one user per service.

The permission model is the one shipped for Kubernetes
(``deploy/k8s/components/nats/accounts.conf``), used as it is: only the resolver may
read the subjects that carry Teams tokens (``<prefix>.v1.intercepted`` and
``<prefix>.v1.observed``), each service publishes only what it must, and streams and
the rule bucket are made by the ``admin`` user (``deploy/nats/bootstrap.py``), never by
a service. On top of that the server speaks TLS only, under a certificate for
127.0.0.1 signed by a local CA made for this run.

Passwords are fresh random words for every run. They reach nats-server and the
services through their environment (nats-server expands ``$TFW_NATS_<USER>_PASSWORD``)
and are never written to disk. Private keys are written with mode 0600 in a 0700
directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.contracts import Subjects

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS_FILE = ROOT / "deploy" / "k8s" / "components" / "nats" / "accounts.conf"
BOOTSTRAP_SCRIPT = ROOT / "deploy" / "nats" / "bootstrap.py"
USERS = ("interceptor", "resolver", "decider", "audit", "siem", "admin", "system")
SERVICE_USERS = {
    "interceptor": "interceptor",
    "resolver": "resolver",
    "decider": "decider",
    "audit": "audit",
}
CERT_LIFETIME = datetime.timedelta(days=30)
BOOTSTRAP_TIMEOUT_S = 60.0


class SecureProfileError(RuntimeError):
    """The secure profile cannot be prepared; the message says what is missing."""


def nats_password() -> str:
    """A password nats-server accepts from an environment variable: a letter, then hex
    (as ``deploy/k8s/scripts/make_secrets.py`` makes them)."""
    return "t" + secrets.token_hex(20)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by this user only, replacing any older file."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TeamsFirewall local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A local CA and a server certificate for 127.0.0.1 and localhost signed by it.

    Returns the CA certificate, the server certificate and the server key paths. The
    CA key is not kept: nothing else is ever signed with it.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("TeamsFirewall local NATS CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Key identifiers: clients that verify strictly (Python 3.13's default context
        # does) refuse a chain without them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "nats-ca.pem"
    cert_file = directory / "nats-server.pem"
    key_file = directory / "nats-server-key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_file,
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return ca_file, cert_file, key_file


def accounts_for_prefix(text: str, prefix: str) -> str:
    """The shipped accounts file with its default names (``tfw.`` subjects, the
    ``TFW_DECISIONS`` stream, the ``tfw_rules`` bucket) replaced for ``prefix``."""
    if prefix == "tfw":
        return text
    subjects = Subjects(prefix)
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            lines.append(line)
            continue
        line = line.replace("TFW_DECISIONS", subjects.decision_stream)
        line = line.replace("tfw_rules", subjects.rules_bucket)
        line = line.replace('"tfw.', f'"{prefix}.')
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class SecureNats:
    """Everything a secured local NATS needs: its configuration, CA and passwords."""

    directory: Path
    port: int
    config: Path
    ca_file: Path
    passwords: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    def server_env(self) -> dict[str, str]:
        """The environment nats-server expands the passwords from."""
        env = dict(os.environ)
        env.update({f"TFW_NATS_{user.upper()}_PASSWORD": pw for user, pw in self.passwords.items()})
        return env

    def user_env(self, user: str) -> dict[str, str]:
        """The ``TFW_NATS_*`` settings of a process that connects as ``user``."""
        return {
            "TFW_NATS_URL": self.url,
            "TFW_NATS_USER": user,
            "TFW_NATS_PASSWORD": self.passwords[user],
            "TFW_NATS_TLS_CA": str(self.ca_file),
        }

    def service_env(self, service: str) -> dict[str, str]:
        """The settings of one of the four services (each is its own NATS user)."""
        return self.user_env(SERVICE_USERS[service])


def prepare(data_dir: Path, port: int, prefix: str = "tfw") -> SecureNats:
    """Write the TLS files, the accounts and a server configuration under
    ``<data_dir>/nats-secure`` for a nats-server on 127.0.0.1:``port``."""
    if not ACCOUNTS_FILE.is_file():
        raise SecureProfileError(
            f"the NATS accounts file {ACCOUNTS_FILE} is missing: the secure profile "
            "runs from a source checkout"
        )
    directory = data_dir / "nats-secure"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_file, cert_file, key_file = make_tls_files(directory)
    accounts = directory / "accounts.conf"
    accounts.write_text(
        accounts_for_prefix(ACCOUNTS_FILE.read_text(encoding="utf-8"), prefix), encoding="utf-8"
    )
    config = directory / "nats.conf"
    config.write_text(
        "# Written by tfw up --secure; the passwords come from the environment.\n"
        f"listen: 127.0.0.1:{port}\n"
        "max_payload: 8MB\n"
        "tls {\n"
        f'  cert_file: "{cert_file}"\n'
        f'  key_file: "{key_file}"\n'
        "  timeout: 5\n"
        "}\n"
        # The store directory is given on the command line (tfw.stack); JetStream
        # reserves each stream's max_bytes up front against this limit.
        "jetstream {\n"
        "  max_file_store: 1TB\n"
        "}\n"
        "include ./accounts.conf\n",
        encoding="utf-8",
    )
    passwords = {user: nats_password() for user in USERS}
    return SecureNats(directory, port, config, ca_file, passwords)


def bootstrap(secure: SecureNats, prefix: str = "tfw") -> None:
    """Create the decision stream and the rule bucket as the ``admin`` user, with the
    same script the Kubernetes bootstrap Job runs."""
    env = {
        **os.environ,
        **secure.user_env("admin"),
        "TFW_SUBJECT_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    try:
        completed = subprocess.run(
            [sys.executable, str(BOOTSTRAP_SCRIPT), "--timeout", str(BOOTSTRAP_TIMEOUT_S)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=BOOTSTRAP_TIMEOUT_S + 10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SecureProfileError("the NATS bootstrap did not finish in time") from None
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise SecureProfileError("the NATS bootstrap failed: " + " | ".join(tail))
