"""The whole CA hierarchy with its keys on a PKCS#11 token (SoftHSM2), configured
through kakuin.toml; a leaf issued from it verifies with openssl."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.serialization import Encoding

from kakuin.ca.issuer import IssueRequest
from kakuin.clock import UTC, FixedClock
from kakuin.context import Context, init_data_dir
from tests.helpers import all_roots_pem, ec_key, ov_name, run
from tests.softhsm import make_token


def test_hierarchy_and_issuance_on_softhsm(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    module, label, pin, _env = make_token(tmp_path)
    d = tmp_path / "data"
    init_data_dir(d)
    cfg = (d / "kakuin.toml").read_text()
    cfg = cfg.replace('backend = "file"', f'backend = "pkcs11"\npkcs11_module = "{module}"\npkcs11_token = "{label}"')
    (d / "kakuin.toml").write_text(cfg)
    monkeypatch.setenv("KAKUIN_PKCS11_PIN", pin)
    ctx = Context.open(d, clock=FixedClock(dt.datetime(2026, 11, 25, tzinfo=UTC)))
    assert ctx.keys.name == "pkcs11"
    ctx.hierarchy().ensure()
    assert not (d / "keys").exists()  # no key material on disk
    issued = ctx.issuance.issue(IssueRequest(profile="server-dv", public_key=ec_key().public_key(),
                                             subject=ov_name(), dns_names=("www.example.ac.jp",)))
    (tmp_path / "leaf.pem").write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in issued.chain))
    (tmp_path / "roots.pem").write_bytes(all_roots_pem(ctx))
    res = run(["openssl", "verify", "-CAfile", tmp_path / "roots.pem", "-untrusted", tmp_path / "chain.pem",
               tmp_path / "leaf.pem"])
    assert res.returncode == 0, res.stdout + res.stderr
    ctx.db.dispose()


def test_missing_pin_is_one_clear_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from kakuin.errors import ConfigError

    d = tmp_path / "data"
    init_data_dir(d)
    cfg = (d / "kakuin.toml").read_text().replace(
        'backend = "file"', 'backend = "pkcs11"\npkcs11_module = "/nonexistent.so"\npkcs11_token = "x"')
    (d / "kakuin.toml").write_text(cfg)
    monkeypatch.delenv("KAKUIN_PKCS11_PIN", raising=False)
    ctx = Context.open(d)
    with pytest.raises(ConfigError, match="KAKUIN_PKCS11_PIN"):
        _ = ctx.keys
