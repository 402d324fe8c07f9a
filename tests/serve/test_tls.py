"""``des serve --tls-cert/--tls-key``: HTTPS with a certificate made for the test."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from connector.client import Datas3tClient, ServerError

from .conftest import start_server


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_with_a_given_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    running = start_server(tmp_path, str(tmp_path / "root"), ["--no-auth", "--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        assert running.url.startswith("https://127.0.0.1:")
        client = Datas3tClient(running.url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        client.create_dataset("secure")
        client.upload_records("secure", [{"a": 1}])
        assert client.download_bytes("secure", 0, 0) == b'{"a":1}\n'
        with pytest.raises(ServerError) as untrusted:  # a client that does not trust the certificate
            Datas3tClient(running.url).list_datasets()
        assert untrusted.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.value.message
    finally:
        assert running.stop() == 0
