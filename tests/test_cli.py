"""The command line as an operator meets it: real subprocesses, real files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import PASSPHRASE
from tests.helpers import ec_key, make_csr, ov_name, rsa_key


def kakuin(
    *args: str | Path, data: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "KAKUIN_CA_PASSPHRASE": PASSPHRASE, "COLUMNS": "200", **(env or {})}
    cmd = [sys.executable, "-m", "kakuin", *map(str, args)]
    if data is not None:
        cmd += ["--data-dir", str(data)]
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120)


@pytest.fixture
def data(template_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "data"
    shutil.copytree(template_dir, d)
    return d


def test_help_is_the_map() -> None:
    res = kakuin("--help")
    assert res.returncode == 0
    for cmd in ("init", "ca", "issue", "show", "list", "serve", "run", "institution"):
        assert cmd in res.stdout


def test_init_creates_everything(tmp_path: Path) -> None:
    d = tmp_path / "new"
    res = kakuin("init", data=d, env={"KAKUIN_CA_PASSPHRASE": ""})
    assert res.returncode == 0, res.stderr
    assert (d / "kakuin.toml").exists() and (d / "kakuin.db").exists()
    assert oct((d / "secrets" / "ca-passphrase").stat().st_mode & 0o777) == "0o600"
    keys = list((d / "keys").glob("*.key.pem"))
    assert len(keys) == 8
    for k in keys:
        assert b"ENCRYPTED PRIVATE KEY" in k.read_bytes()  # never unencrypted on disk
        assert oct(k.stat().st_mode & 0o777) == "0o600"
    assert "TLS ECC P-384 CA - G1" in res.stdout and "issues now" in res.stdout
    again = kakuin("init", data=d, env={"KAKUIN_CA_PASSPHRASE": ""})
    assert again.returncode == 0 and "hierarchy already complete" in again.stdout


def test_ca_list_shows_tree(data: Path) -> None:
    res = kakuin("ca", "list", data=data)
    assert res.returncode == 0
    for slug in (
        "root-rsa",
        "root-ecc",
        "tls-rsa-g1",
        "tls-ecdsa-g1",
        "client-g1",
        "smime-g1",
        "code-signing-g1",
        "tsa-g1",
    ):
        assert slug in res.stdout


def test_issue_show_list(data: Path, tmp_path: Path) -> None:
    assert kakuin("institution", "add", "Example University", "--domain", "example.ac.jp", data=data).returncode == 0
    csr = tmp_path / "req.csr"
    csr.write_bytes(make_csr(rsa_key(), ov_name(), ["www.example.ac.jp"]))
    out = tmp_path / "out"
    res = kakuin(
        "issue", "--csr", csr, "--profile", "server-ov", "--institution", "Example University", "--out", out, data=data
    )
    assert res.returncode == 0, res.stderr
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    serial = format(cert.serial_number, "x")
    assert serial in res.stdout and "tls-rsa-g1" in res.stdout
    assert (out / "fullchain.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 2
    shown = kakuin("show", serial, data=data)
    assert shown.returncode == 0 and "issued" in shown.stdout and "www.example.ac.jp" in shown.stdout
    listed = kakuin("list", "--profile", "server-ov", "--json", data=data)
    assert serial in listed.stdout
    pem = kakuin("issue", "--csr", csr, "--profile", "server-dv", data=data)
    assert pem.returncode == 0 and pem.stdout.count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["show", "deadbeef"], "no certificate with serial deadbeef"),
        (["issue", "--csr", "CSR", "--profile", "nope"], "unknown profile 'nope'"),
        (["issue", "--csr", "GARBAGE", "--profile", "server-dv"], "cannot parse CSR"),
        (["issue", "--csr", "ACADEME", "--profile", "server-ov"], "rule l-placeholder"),
        (["issue", "--csr", "WEAK", "--profile", "server-dv"], "rule rsa-size"),
        (["list", "--issuer", "nope"], "no CA named 'nope'"),
    ],
)
def test_errors_are_one_line_and_nonzero(data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    files = {
        "CSR": make_csr(ec_key(), ov_name(), ["www.example.ac.jp"]),
        "GARBAGE": b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "ACADEME": make_csr(ec_key(), ov_name(l="Academe", st=None), ["www.example.ac.jp"]),
        "WEAK": make_csr(rsa_key(1024), ov_name(), ["www.example.ac.jp"]),
    }
    real = []
    for a in args:
        if a in files:
            p = tmp_path / a
            p.write_bytes(files[a])
            real.append(str(p))
        else:
            real.append(a)
    res = kakuin(*real, data=data)
    assert res.returncode == 1, res.stdout + res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0


def test_missing_data_dir_and_bad_config(tmp_path: Path, data: Path) -> None:
    res = kakuin("ca", "list", data=tmp_path / "nowhere")
    assert res.returncode == 1 and "not a kakuin data directory" in res.stderr
    cfg = data / "kakuin.toml"
    cfg.write_text(cfg.read_text() + "\n[bogus]\nx = 1\n")
    res = kakuin("ca", "list", data=data)
    assert res.returncode == 1 and "bogus: unknown key" in res.stderr
    cfg.write_text(
        cfg.read_text().replace("[bogus]\nx = 1\n", "").replace('over_limit = "shorten"', 'over_limit = "maybe"')
    )
    res = kakuin("ca", "list", data=data)
    assert res.returncode == 1 and "policy.over_limit" in res.stderr


def test_wrong_passphrase_is_clear(data: Path, tmp_path: Path) -> None:
    csr = tmp_path / "r.csr"
    csr.write_bytes(make_csr(ec_key(), ov_name(), ["www.example.ac.jp"]))
    res = kakuin(
        "issue", "--csr", csr, "--profile", "server-dv", data=data, env={"KAKUIN_CA_PASSPHRASE": "a-wrong-passphrase"}
    )
    assert res.returncode == 1 and "wrong passphrase" in res.stderr


def test_eab_new_prints_a_certbot_command_that_parses(data: Path) -> None:
    """The HMAC key is base64url and may start with '-': the printed command
    uses --eab-hmac-key=KEY, which certbot's argparse reads in every case."""
    assert kakuin("institution", "add", "Example University", "--domain", "example.ac.jp", data=data).returncode == 0
    res = kakuin("eab", "new", "--institution", "Example University", data=data)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if "certbot register" in ln)
    key = next(ln for ln in res.stdout.splitlines() if "HMAC key:" in ln).split()[2]
    assert f"--eab-hmac-key={key}" in line


def test_eab_flags_and_revoking_the_bound_account(data: Path) -> None:
    assert kakuin("institution", "add", "Example University", "--domain", "example.ac.jp", data=data).returncode == 0
    for bad in (["--expires", "99999999999d"], ["--domains", "*.example.ac.jp"]):
        res = kakuin("eab", "new", "--institution", "Example University", *bad, data=data)
        assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # A credential that bound an account: revoking it says so; --revoke-account stops the account.
    import json

    from starlette.testclient import TestClient

    from kakuin.app import create_app
    from kakuin.context import Context
    from tests.acme_client import Client

    cred = json.loads(kakuin("eab", "new", "--institution", "Example University", "--json", data=data).stdout)
    os.environ.setdefault("KAKUIN_CA_PASSPHRASE", PASSPHRASE)
    ctx = Context.open(data)
    with TestClient(create_app(ctx), base_url="http://127.0.0.1:8080") as http:
        c = Client(http, "http://127.0.0.1:8080/acme/directory")
        assert c.register((cred["kid"], cred["hmac_key"])).status_code == 201
        res = kakuin("eab", "revoke", cred["kid"], data=data)
        assert res.returncode == 0 and "keeps working" in res.stderr, res.stderr
        assert c.new_order(["www.example.ac.jp"]).status_code == 201
        res = kakuin("eab", "revoke", cred["kid"], "--revoke-account", data=data)
        assert res.returncode == 0 and "revoked ACME account" in res.stdout, res.stdout
        refused = c.new_order(["www.example.ac.jp"])
        assert refused.status_code == 401 and refused.json()["type"] == "urn:ietf:params:acme:error:unauthorized"
    ctx.db.dispose()
