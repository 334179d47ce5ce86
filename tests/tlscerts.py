"""Test certificates for the peer port's mutual TLS, issued with the `cryptography` package.

A `CertificateAuthority` signs leaf certificates usable both as a TLS server and as a TLS client
(the peers of a cluster dial and accept with the same certificate). A leaf names "localhost" and
127.0.0.1, and optionally the node identity URI `consensus://<cluster_id>/node/<id>` that binds a
certificate to one node id of one cluster (docs/wire-format.md §9). Everything is written as PEM
files into a directory chosen by the caller, and the functions return their paths.

Tests import it as ``from tlscerts import ...`` (tests/ is on sys.path under pytest's default
import mode).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consensus.transport.handshake import identity_uri

PathLike = Union[str, Path]

#: A leaf is valid from a day ago (clock skew between test machines) for this many days.
VALIDITY_DAYS = 365


def node_uri(cluster_id: str, node_id: int) -> str:
    """The URI SAN that identifies node `node_id` of cluster `cluster_id`."""
    return identity_uri(cluster_id, node_id)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(
        now + datetime.timedelta(days=VALIDITY_DAYS)
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class CertificateAuthority:
    """A self-signed CA whose certificate is written to ``<directory>/<name>.pem``."""

    def __init__(self, directory: PathLike, name: str = "ca") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = _key()
        subject = _name(f"consensus test CA {name}")
        builder = (
            _validity(x509.CertificateBuilder())
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
        )
        self._cert = builder.sign(self._key, hashes.SHA256())
        self.cert_path = self.directory / f"{name}.pem"
        _write_cert(self._cert, self.cert_path)

    def issue(
        self,
        name: str,
        *,
        cluster_id: Optional[str] = None,
        node_id: Optional[int] = None,
        uris: Iterable[str] = (),
        directory: Optional[PathLike] = None,
    ) -> Tuple[str, str]:
        """Issue a leaf certificate; return (cert path, key path), written as ``<name>.pem`` and
        ``<name>.key``.

        With both `cluster_id` and `node_id`, the leaf carries `node_uri(cluster_id, node_id)` as a
        URI SAN; `uris` adds more URI SANs (to test certificates that claim several identities
        or malformed ones)."""
        if (cluster_id is None) != (node_id is None):
            raise ValueError("give both cluster_id and node_id, or neither")
        uri_names: List[str] = [] if cluster_id is None else [node_uri(cluster_id, node_id)]  # type: ignore[arg-type]
        uri_names += list(uris)
        alternative_names: List[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        alternative_names += [x509.UniformResourceIdentifier(uri) for uri in uri_names]
        key = _key()
        cert = (
            _validity(x509.CertificateBuilder())
            .subject_name(_name(name))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        target = Path(directory) if directory is not None else self.directory
        target.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = target / f"{name}.pem", target / f"{name}.key"
        _write_cert(cert, cert_path)
        _write_key(key, key_path)
        return str(cert_path), str(key_path)


def issue_cluster(
    directory: PathLike, cluster_id: str, node_ids: Iterable[int]
) -> Tuple[str, Dict[int, Tuple[str, str]]]:
    """A CA and one identity certificate per node: (CA path, {id: (cert path, key path)}); the
    files are ``ca.pem``, ``node<id>.pem`` and ``node<id>.key`` in `directory`."""
    ca = CertificateAuthority(directory)
    leaves = {node: ca.issue(f"node{node}", cluster_id=cluster_id, node_id=node) for node in node_ids}
    return str(ca.cert_path), leaves


__all__ = ["CertificateAuthority", "issue_cluster", "node_uri"]
