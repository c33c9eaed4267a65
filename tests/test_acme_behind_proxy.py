"""kakuin behind a TLS-terminating nginx, configured as docs/acme.md tells an
operator: nginx ends TLS for /acme/ and passes the requests on, over keep-alive
HTTP, to kakuin on another port; `server.base_url` is nginx's https URL. certbot
registers with EAB and gets a certificate through it (it trusts nginx's
certificate through REQUESTS_CA_BUNDLE). Every URL kakuin hands out is the
https one, and a JWS whose url names kakuin's own port is refused."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.acme_client import Key, jws
from tests.acme_server import DOMAIN, Server, free_port, require_tool, start_server
from tests.test_acme_certbot import certbot, certonly_args, lint
from tests.tls_proxy import start_nginx

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxied(template_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    require_tool(shutil.which("nginx") or "/usr/sbin/nginx")
    port, public = free_port(), free_port()
    proxy, cert = start_nginx(tmp_path / "nginx", public, port)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # certbot's trust in nginx's certificate
    try:
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
