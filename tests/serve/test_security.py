"""Exposed servers: TLS plus a bearer token; the CLI refuses to expose without them."""

import datetime

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swansphere.cli import main
from swansphere.serve.client import Client
from swansphere.serve.grpc_service import start_server


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_tls_and_bearer_token(registry):
    cert, key = _self_signed()
    server = start_server(registry, "127.0.0.1:0", tls=(cert, key), token="s3cret")
    try:
        target = f"127.0.0.1:{server.port}"
        good = Client(target, token="s3cret", root_cert=cert, server_name="localhost")
        assert good.list_models().models[0].name == "tiny-random"
        for bad in (Client(target, token="wrong", root_cert=cert, server_name="localhost"),
                    Client(target, root_cert=cert, server_name="localhost")):  # fmt: skip
            with pytest.raises(grpc.RpcError) as info:
                bad.list_models(timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # Health checks stay open (load balancers do not carry tokens).
            health = health_pb2_grpc.HealthStub(bad.channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
            bad.close()
        good.close()
    finally:
        server.stop(0, wait_s=1.0)


def test_cli_refuses_to_expose_without_tls_and_token(capsys, monkeypatch):
    monkeypatch.delenv("SWANSPHERE_TOKEN", raising=False)
    assert main(["serve", "--bind", "0.0.0.0", "--no-warmup"]) == 2
    assert "--tls-cert" in capsys.readouterr().err
    assert main(["serve", "--grpc", "nonsense", "--no-warmup"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
