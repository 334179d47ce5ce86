"""Peer identity on the peer port: mutual TLS certificates bind a node id (docs/wire-format.md §9),
refusals reveal nothing, and the test certificates of tests/tlscerts.py.

Waits poll with generous timeouts only to avoid hangs; nothing asserts on timing.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from tlscerts import CertificateAuthority, issue_cluster, node_uri

from consensus.transport import tls_contexts

CLUSTER = "test-cluster"


def test_test_certificates_carry_the_node_uri_and_load_as_mutual_tls_contexts(tmp_path: Path) -> None:
    ca_path, leaves = issue_cluster(tmp_path, CLUSTER, [1, 2])
    cert = x509.load_pem_x509_certificate(Path(leaves[2][0]).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["consensus://test-cluster/node/2"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for node in (1, 2):
        tls_contexts(leaves[node][0], leaves[node][1], ca_path)
    anonymous = CertificateAuthority(tmp_path / "other").issue("anonymous")
    anonymous_cert = x509.load_pem_x509_certificate(Path(anonymous[0]).read_bytes())
    sans = anonymous_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == []
    assert node_uri("c", 7) == "consensus://c/node/7"
