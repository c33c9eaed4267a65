"""The VA's non-public-address rule against a real BIND 9 on loopback: a name that
resolves (authoritatively, without DNSSEC) to 127.0.0.1 is refused for http-01 and
tls-alpn-01 before any connection, unless ``[va] allow_private_targets`` is set."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

from kakuin.clock import SystemClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority
from tests.bind import BindServer, Zone, free_port


def test_loopback_answers_are_never_dialled_unless_allowed(tmp_path: Path) -> None:
    # A public-looking name (not .test: special-use names are refused before any
    # lookup) whose authoritative answer is loopback, as a hostile zone could give.
    bind = BindServer(tmp_path / "bind", [Zone("jp", records=["$TTL 300", "www.evil.ac.jp. IN A 127.0.0.1",
                                                                "meta.evil.ac.jp. IN A 169.254.169.254"])],
                      free_port()).start()
    seen: list[str] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            seen.append(peer[0])
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        def va(allow: bool) -> ValidationAuthority:
            return ValidationAuthority(VAConfig(resolver=bind.resolver, timeout_seconds=3, dnssec=False,
                                                http01_port=port, tlsalpn01_port=port,
                                                allow_private_targets=allow), SystemClock())

        strict = va(False)
        http = asyncio.run(strict.validate_http01("www.evil.ac.jp", "tok", "tok.thumb"))
        alpn = asyncio.run(strict.validate_tlsalpn01("www.evil.ac.jp", "tok.thumb"))
        for rec in (http, alpn):
            assert not rec.ok and rec.problem == "dns" and "non-public" in (rec.error or ""), rec
        assert seen == []
        # The same lookups with the switch on do connect (and fail on the bare listener).
        lax = asyncio.run(va(True).validate_http01("www.evil.ac.jp", "tok", "tok.thumb"))
        assert not lax.ok and seen, lax
        meta = asyncio.run(strict.validate_http01("meta.evil.ac.jp", "tok", "tok.thumb"))
        assert not meta.ok and "non-public" in (meta.error or "")
    finally:
        listener.close()
        bind.stop()
