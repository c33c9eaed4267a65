"""kakuin behind a TLS-terminating nginx, configured as docs/acme.md tells an
operator: nginx ends TLS for /acme/ and passes the requests on, over keep-alive
HTTP, to kakuin on another port; `server.base_url` is nginx's https URL. certbot
registers with EAB and gets a certificate through it (it trusts nginx's
certificate through REQUESTS_CA_BUNDLE). Every URL kakuin hands out is the
https one, and a JWS whose url names kakuin's own port is refused."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.acme_client import Key, jws
from tests.acme_server import DOMAIN, Server, free_port, require_tool, start_server
from tests.test_acme_certbot import certbot, certonly_args, lint

pytestmark = pytest.mark.e2e

NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream kakuin {{ server 127.0.0.1:{port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{public} ssl;
        ssl_certificate     {cert};
        ssl_certificate_key {key};
        location /acme/ {{
            proxy_pass http://kakuin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
"""


def tls_files(work: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           False)
            .sign(key, hashes.SHA256()))
    (work / "proxy.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (work / "proxy.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return work / "proxy.pem", work / "proxy.key"


@pytest.fixture
def proxied(template_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    nginx = require_tool(shutil.which("nginx") or "/usr/sbin/nginx")
    work = tmp_path / "nginx"
    work.mkdir()
    cert, key = tls_files(work)
    port, public = free_port(), free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=port, public=public, cert=cert, key=key))
    proxy = subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # certbot's trust in nginx's certificate
    try:
        for _ in range(100):
            if proxy.poll() is not None:
                raise AssertionError(f"nginx exited: {proxy.stderr.read().decode() if proxy.stderr else ''}")
            try:
                with socket.create_connection(("127.0.0.1", public), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield from start_server(template_dir, tmp_path, port=port, base_url=f"https://127.0.0.1:{public}")
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def test_certbot_through_nginx(proxied: Server, tmp_path: Path) -> None:
    import ssl

    trust = ssl.create_default_context(cafile=str(tmp_path / "nginx" / "proxy.pem"))
    with urllib.request.urlopen(proxied.directory, context=trust, timeout=10) as r:
        directory = json.load(r)
    assert all(v.startswith(proxied.url + "/acme/") for k, v in directory.items() if k != "meta"), directory

    kid, hmac = proxied.eab()
    r = certbot(proxied, tmp_path, "register", "--eab-kid", kid, f"--eab-hmac-key={hmac}")
    assert r.returncode == 0, r.stdout + r.stderr
    r = certbot(proxied, tmp_path, *certonly_args(proxied, f"proxied.{DOMAIN}"))
    assert r.returncode == 0, r.stdout + r.stderr
    live = tmp_path / "cb" / "config" / "live" / "www"
    lint(live / "cert.pem")
    assert len(x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())) == 2


def test_a_jws_must_name_the_public_url(proxied: Server) -> None:
    """Straight to kakuin's own port, a JWS whose url names that port is refused:
    the url must be base_url's (RFC 8555 §6.4), whatever address the request
    came in on."""
    import httpx

    direct = f"http://{proxied.ctx.config.server.listen}/acme/new-account"
    with httpx.Client(timeout=10) as http:
        nonce = http.head(direct.replace("new-account", "new-nonce")).headers["Replay-Nonce"]
        body = jws(Key.es256(), direct, {"termsOfServiceAgreed": True}, nonce=nonce, kid=None)
        r = http.post(direct, content=json.dumps(body), headers={"Content-Type": "application/jose+json"})
    assert r.status_code == 401, r.text
    assert r.json()["type"] == "urn:ietf:params:acme:error:unauthorized"
