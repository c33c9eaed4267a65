"""What ``kakuin run`` prints for a new user: where things are, what to do next.

Each capability adds its lines here (the ACME directory and EAB credential,
the certbot command, the CRL and OCSP URLs)."""

from __future__ import annotations

from kakuin.context import Context


def next_steps(ctx: Context) -> list[str]:
    base = ctx.config.server.base_url
    lines = [
        f"kakuin is serving on {base}",
        f"  data directory:   {ctx.config.data_dir}",
        f"  database:         {ctx.db.engine.url.render_as_string(hide_password=True)}",
        f"  CA certificates:  {base}/ca/<slug>.pem   (kakuin ca list shows the slugs)",
    ]
    lines += acme_steps(ctx)
    from kakuin.portal.onboarding import portal_steps

    lines += portal_steps(ctx)
    return lines


DEMO_INSTITUTION = "kakuin Demo University"
DEMO_DOMAIN = "demo.example.ac.jp"  # pkilint refuses internal names such as .test


def acme_steps(ctx: Context) -> list[str]:
    """The ACME directory, a fresh EAB credential for the demo institution (made
    if missing) and the exact certbot commands that use it."""
    if not ctx.config.acme.enabled:
        return []
    from kakuin.errors import NotFound
    from kakuin.store.repos import InstitutionRepo

    with ctx.db.session() as s:
        try:
            InstitutionRepo(s).by_name(DEMO_INSTITUTION)
        except NotFound:
            InstitutionRepo(s).add(DEMO_INSTITUTION, domains=[DEMO_DOMAIN], now=ctx.clock.now())
    cred = ctx.acme.eab.new(DEMO_INSTITUTION, created_by="kakuin run")
    directory = ctx.acme.service.urls.directory
    port = ctx.config.va.http01_port
    # certbot keeps its state in a directory of ours, so no root is needed.
    state = ctx.config.data_dir / "certbot"
    cb = f"certbot --config-dir {state} --work-dir {state} --logs-dir {state}/logs --server {directory}"
    lines = [
        f"  ACME directory:   {directory}",
        f"  EAB credential for {DEMO_INSTITUTION} ({DEMO_DOMAIN}), shown once:",
        f"    key identifier: {cred.kid}",
        f"    HMAC key:       {cred.hmac_key}",
        "  certbot (in the virtualenv: . .venv/bin/activate):",
        f"    {cb} register --non-interactive --agree-tos --email admin@{DEMO_DOMAIN} "
        # "=" form: an HMAC key in base64url may begin with "-".
        f"--eab-kid={cred.kid} --eab-hmac-key={cred.hmac_key}",
        f"    {cb} certonly --non-interactive --standalone --http-01-port {port} -d www.{DEMO_DOMAIN}",
    ]
    if ctx.config.dev.dns:
        lines.append(
            f"  ({DEMO_DOMAIN} resolves to {ctx.config.dev.dns_address} through the development DNS "
            f"server on {ctx.config.dev.dns}; the VA fetches http-01 on port {port})"
        )
    else:
        lines.append(f"  ({DEMO_DOMAIN} must resolve to this machine for the VA; va.http01_port = {port})")
    return lines
