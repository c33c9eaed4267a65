"""The portal in a real browser: Debian chromium (headless) driven by
playwright-core (tests/browser/portal_flow.mjs) against ``kakuin serve`` with
the mutual-TLS portal on.

An officer signs in with the PKCS#12 that ``add_officer`` made, uploads a TSV
with an error and sees the row error (row, column, rule, message), uploads
the fixed file and issues; the subscriber opens the retrieval link from the
mail and downloads the certificate. A browser without a certificate is
refused. Screenshots go to artifacts/ (dashboard.png and the other pages in
both languages)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kakuin.ra.services import RA
from tests.helpers import ec_key
from tests.portal_helpers import INST_A, PIN, PortalServer, two_institutions
from tests.ra_helpers import outbox, server_fields, token_of, tsv

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    assert node and npm, "Node.js and npm are required for the browser test (apt-get install nodejs npm)"
    assert CHROMIUM.exists(), "Debian chromium is required (apt-get install chromium)"
    if not (BROWSER / "node_modules" / "playwright-core").exists():
        done = subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=BROWSER, capture_output=True)
        assert done.returncode == 0, f"npm ci in tests/browser failed: {done.stderr.decode()[-2000:]}"
    return node


def drive(node: str, script: str = "portal_flow.mjs", **plan: object) -> dict[str, object]:
    done = subprocess.run(
        [node, str(BROWSER / script), json.dumps(plan)],
        cwd=BROWSER,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "HOME": str(BROWSER), "CHROMIUM": str(CHROMIUM)},
    )
    assert done.returncode == 0, f"browser run failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_officer_uploads_fixes_issues_and_subscriber_downloads(node: str, make_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    ra = RA(ctx)
    a, _b = two_institutions(ra)
    pfx = tmp_path / "officer.p12"
    pfx.write_bytes(a.p12)
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(tsv([server_fields(ec_key(ec.SECP384R1()), email_addr="taro+x@example.ac.jp")]))
    good = tmp_path / "good.tsv"
    good.write_bytes(tsv([server_fields(ec_key(ec.SECP384R1()))]))
    ARTIFACTS.mkdir(exist_ok=True)

    with PortalServer(ctx.config.data_dir) as server:
        anon = drive(node, mode="anonymous", url=server.portal_url)
        assert anon["status"] == 403
        assert "クライアント証明書が提示されていません" in str(anon["text"])
        assert "No client certificate was presented" in str(anon["text"])

        seen = drive(
            node,
            mode="officer",
            url=server.portal_url,
            pfx=str(pfx),
            passphrase=PIN,
            badTsv=str(bad),
            goodTsv=str(good),
            artifacts=str(ARTIFACTS),
        )
        assert seen["dashboardStatus"] == 200
        assert "Taro Kokuritsu" in str(seen["signedInAs"]) and INST_A in str(seen["signedInAs"])
        # Row 1, column 10 (subscriber e-mail), the rule and the message.
        [row] = seen["errorRows"]  # type: ignore[misc]
        assert row[0] == "1" and row[1] == "10" and row[2] == "email-charset", row
        assert "ハイフン" in row[3]
        assert "1行すべて問題ありません" in str(seen["checkOk"])
        assert "申請を受け付けました" in str(seen["applied"])
        serial = str(seen["serial"])
        assert serial and serial in str(seen["detailTitle"])
        assert seen["eabKid"] and seen["eabKeyShownAgain"] is False
        assert "ダッシュボード" in str(seen["dashboardText"]) and seen["chartBars"] == 12
        assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

        # The subscriber: the link from the mail, then the download.
        mails = [m for m in outbox(ctx, "retrieval") if m["To"] == "taro@example.ac.jp"]
        assert len(mails) == 1
        link = f"{server.url}/retrieve/{token_of(mails[0])}"
        got = tmp_path / "downloaded.pem"
        sub = drive(node, mode="subscriber", link=link, downloadTo=str(got))
        assert "一度だけ" in str(sub["pageText"])
        certs = x509.load_pem_x509_certificates(got.read_bytes())
        assert format(certs[0].serial_number, "x") == serial
        assert len(certs) >= 2  # with the intermediate to install
