"""Print the Kubernetes Secrets TeamsFirewall needs, with fresh random values.

Nothing secret is kept in git: run this once per installation and pipe it to
kubectl, or to your secret store's sealing tool (kubeseal, SOPS ...):

    python deploy/k8s/scripts/make_secrets.py | kubectl apply -f -
    python deploy/k8s/scripts/make_secrets.py --only tfw-token-key | kubectl apply -f -

Secrets made (the manifests reference them by these names):
  tfw-nats-users    one NATS password per user of components/nats/accounts.conf
  tfw-token-key     token-key: the AES-GCM key (base64 of 32 bytes) tokens are sealed with
  tfw-mitmproxy-ca  mitmproxy-ca.pem (key and certificate, read by every interceptor) and
                    mitmproxy-ca-cert.pem (the certificate alone, for the clients' trust
                    store); --ca-file reuses an existing CA instead of making one
  tfw-proxyauth     proxyauth: user:password clients present to the proxy (--proxyauth)
  tfw-mongodb       uri: the MongoDB connection string (--mongodb-uri; prod only, the
                    dev overlay makes its own)
  tfw-tls-ca        nats-ca.crt, mongodb-ca.crt: CAs of external servers (--nats-ca,
                    --mongodb-ca; prod)
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import tempfile
from pathlib import Path

import yaml

NATS_USERS = ("interceptor", "resolver", "decider", "audit", "siem", "admin", "system")
CA_ORGANIZATION = "TeamsFirewall"


def nats_password() -> str:
    """A password nats-server accepts from an environment variable: a letter, then hex.

    The server parses an expanded variable as a configuration value; a value that
    starts with a digit and goes on with letters does not parse.
    """
    return "t" + secrets.token_hex(20)


def token_key() -> str:
    """A fresh AES-256-GCM key, base64."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def mitmproxy_ca(common_name: str) -> tuple[bytes, bytes]:
    """A new CA in mitmproxy's own format: (key and certificate, certificate alone)."""
    from mitmproxy.certs import CertStore

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        CertStore.create_store(path, "mitmproxy", 2048, CA_ORGANIZATION, common_name)
        return (path / "mitmproxy-ca.pem").read_bytes(), (
            path / "mitmproxy-ca-cert.pem"
        ).read_bytes()


def certificate_of(combined: bytes) -> bytes:
    """The certificate blocks of a PEM file holding a key and a certificate."""
    marker = b"-----BEGIN CERTIFICATE-----"
    start = combined.find(marker)
    if start < 0:
        raise ValueError("no certificate in the CA file")
    return combined[start:]


def secret(name: str, namespace: str, data: dict[str, bytes]) -> dict[str, object]:
    """One Opaque Secret manifest."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "teamsfirewall"},
        },
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def build(args: argparse.Namespace) -> list[dict[str, object]]:
    """Every Secret the arguments ask for."""
    made = []
    passwords = {user: nats_password().encode() for user in NATS_USERS}
    made.append(secret("tfw-nats-users", args.namespace, dict(passwords)))
    made.append(secret("tfw-token-key", args.namespace, {"token-key": token_key().encode()}))

    if args.ca_file:
        combined = Path(args.ca_file).read_bytes()
        certificate = certificate_of(combined)
    else:
        combined, certificate = mitmproxy_ca(args.ca_name)
    made.append(
        secret(
            "tfw-mitmproxy-ca",
            args.namespace,
            {"mitmproxy-ca.pem": combined, "mitmproxy-ca-cert.pem": certificate},
        )
    )

    if args.proxyauth:
        if ":" not in args.proxyauth:
            raise ValueError("--proxyauth must be user:password")
        made.append(secret("tfw-proxyauth", args.namespace, {"proxyauth": args.proxyauth.encode()}))
    if args.mongodb_uri:
        made.append(secret("tfw-mongodb", args.namespace, {"uri": args.mongodb_uri.encode()}))
    tls: dict[str, bytes] = {}
    if args.nats_ca:
        tls["nats-ca.crt"] = Path(args.nats_ca).read_bytes()
    if args.mongodb_ca:
        tls["mongodb-ca.crt"] = Path(args.mongodb_ca).read_bytes()
    if tls:
        made.append(secret("tfw-tls-ca", args.namespace, tls))

    if args.only:
        made = [item for item in made if item["metadata"]["name"] in args.only]  # type: ignore[index]
    return made


def parser() -> argparse.ArgumentParser:
    """The command line."""
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--namespace", default="teamsfirewall")
    parse.add_argument("--only", action="append", help="print only this Secret (repeatable)")
    parse.add_argument("--ca-file", help="an existing mitmproxy-ca.pem (key and certificate)")
    parse.add_argument("--ca-name", default="TeamsFirewall proxy CA", help="CA common name")
    parse.add_argument("--proxyauth", help="user:password for proxy authentication")
    parse.add_argument("--mongodb-uri", help="MongoDB connection string (prod)")
    parse.add_argument("--nats-ca", help="CA certificate of the external NATS (prod)")
    parse.add_argument("--mongodb-ca", help="CA certificate of the external MongoDB (prod)")
    return parse


def main(argv: list[str] | None = None) -> int:
    """Print the Secrets as one YAML stream on standard output."""
    args = parser().parse_args(argv)
    try:
        made = build(args)
    except (OSError, ValueError) as exc:
        print(f"make_secrets: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(made, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
