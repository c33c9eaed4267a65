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
    return lines
