"""nginx ending TLS in front of kakuin, configured as docs/acme.md tells an
operator (TLS for /acme/, keep-alive HTTP on to kakuin), and a throwaway
certificate for it. Used by tests/test_acme_behind_proxy.py and by
bench/acme_load.py --kakuin-tls."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
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


def throwaway_tls(work: Path, name: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for localhost and 127.0.0.1, a day long,
    and its key: ``work/name.pem`` and ``work/name.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (work / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (work / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return work / f"{name}.pem", work / f"{name}.key"


def start_nginx(work: Path, public: int, port: int, stderr: IO[bytes] | int = subprocess.DEVNULL
                ) -> tuple[subprocess.Popen[bytes], Path]:
    """nginx on 127.0.0.1:``public`` (TLS) in front of kakuin on 127.0.0.1:``port``,
    its files under ``work``; returns the process, once it accepts connections,
    and the certificate it presents (to trust)."""
    work.mkdir(parents=True, exist_ok=True)
    cert, key = throwaway_tls(work, "proxy")
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=port, public=public, cert=cert, key=key))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work)],
                            stdout=subprocess.DEVNULL, stderr=stderr)
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited (see {work}/error.log)")
        try:
            with socket.create_connection(("127.0.0.1", public), timeout=1):
                return proc, cert
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("nginx did not start")
