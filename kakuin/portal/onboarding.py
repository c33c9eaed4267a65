"""What ``kakuin run`` and ``kakuin serve`` say about the portal, and the dev
officer ``kakuin run`` makes for the demo institution."""

from __future__ import annotations

from kakuin.context import Context
from kakuin.errors import NotFound
from kakuin.ra.actors import Actor
from kakuin.ra.services import RA

DEV_OFFICER_EMAIL = "officer@demo.example.ac.jp"
DEV_OFFICER_NAME = "Demo Officer"


def ensure_dev_officer(ctx: Context) -> list[str]:
    """Development only (``kakuin run``): the demo institution (Tokyo, confirmed)
    with one officer whose PKCS#12 is written to ``portal/dev-officer.p12``.
    The PIN is printed once, when the certificate is made."""
    from kakuin.onboarding import DEMO_DOMAIN, DEMO_INSTITUTION

    ra, op = RA(ctx), Actor.operator("operator:kakuin run")
    try:
        info = ra.institutions.get(DEMO_INSTITUTION, actor=op)
    except NotFound:
        info = ra.institutions.register(
            DEMO_INSTITUTION, actor=op, prefecture="Tokyo", city="Chiyoda-ku", domains=(DEMO_DOMAIN,)
        )
    if info.confirmed_until is None:
        ra.institutions.confirm(DEMO_INSTITUTION, actor=op)
    path = ctx.config.data_dir / "portal" / "dev-officer.p12"
    officer = next((p for p in info.people if p.role == "officer" and p.email == DEV_OFFICER_EMAIL), None)
    if officer is not None and path.exists():
        return [
            f"  dev officer:      {DEV_OFFICER_EMAIL}, PKCS#12 {path}",
            "                    (its PIN was shown when it was made; `kakuin officer add` makes a new one)",
        ]
    if info.prefecture is None and info.city is None:
        return ["  dev officer:      the demo institution has no prefecture or city; add an officer by hand"]
    e = ra.institutions.add_officer(DEMO_INSTITUTION, name=DEV_OFFICER_NAME, email=DEV_OFFICER_EMAIL, actor=op)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(e.pkcs12)
    path.chmod(0o600)
    return [
        f"  dev officer:      {DEV_OFFICER_EMAIL} ({DEMO_INSTITUTION}), certificate {e.serial}",
        f"    PKCS#12:        {path}",
        f"    PIN (shown once): {e.pin}",
    ]


def portal_steps(ctx: Context) -> list[str]:
    if not ctx.config.portal.enabled:
        return []
    from kakuin.portal.app import portal_url

    cfg = ctx.config.portal
    host = cfg.listen.rpartition(":")[0].strip("[]")
    url = portal_url(ctx)
    base = ctx.config.server.base_url
    return [
        f"  officers' portal: {url}   (mutual TLS; REST API: {url}api/v1/openapi.json)",
        f"    name:           {cfg.server_name} must reach {host} (development: a line in /etc/hosts)",
        f"    trust:          import the roots ({base}/ca/root-rsa.pem, {base}/ca/root-ecc.pem) as CAs",
        "    sign in:        import the officer PKCS#12 into the browser (Chromium: Settings → Privacy and "
        "security → Security → Manage certificates → Your certificates → Import; Firefox: Settings → "
        "Certificates → Your Certificates → Import) and enter its PIN",
    ]
