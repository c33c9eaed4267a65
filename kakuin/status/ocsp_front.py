"""What every HTTP face of the OCSP responder shares, whatever serves it.

Two transports answer OCSP: the raw ASGI handler in the main app
(``status.http.OCSPEndpoint``) and the lean listener on its own port
(``status.ocsp_server``, ``[server] ocsp_port``). Both take the request out
of the HTTP message the same way (RFC 6960 Appendix A.1), answer it through
``OCSPFront`` (the in-memory fast path first, the full path in a worker thread
otherwise) and send the same RFC 5019 §6 cache headers.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.utils
import logging

from kakuin.clock import Clock
from kakuin.status.ocsp import INTERNAL_ERROR, MALFORMED_REQUEST, Answer, OCSPService

log = logging.getLogger(__name__)

MAX_OCSP_REQUEST = 4096  # a single-CertID request with a nonce is ~100 bytes
OCSP_MAX_AGE = 3600  # caches re-ask hourly; revocations also re-sign at once
MALFORMED = Answer(MALFORMED_REQUEST)
ALLOWED_METHODS = b"GET, HEAD, POST"
CONTENT_TYPE = b"application/ocsp-response"


def http_date(t: dt.datetime) -> str:
    return email.utils.format_datetime(t.astimezone(dt.UTC), usegmt=True)


def request_from_get(encoded: bytes) -> bytes:
    """The DER request of ``GET /ocsp/{encoded}``: RFC 6960 A.1, the base64 of the
    DER request (already URL-decoded); b"" when it is not base64."""
    try:
        return binascii.a2b_base64(encoded + b"==")
    except binascii.Error:
        return b""


class OCSPFront:
    """The OCSP answer to a request body and its cache headers."""

    def __init__(self, service: OCSPService, clock: Clock) -> None:
        self.service = service
        self.clock = clock
        self._fixed: dict[str, tuple[list[tuple[bytes, bytes]], float]] = {}

    def fast(self, body: bytes) -> Answer | None:
        """The answer without touching the database or signing (a parse error or a
        fresh in-memory hit), or None: then call ``slow`` off the event loop."""
        if not body:
            return MALFORMED
        try:
            parsed = self.service.parse(body)
            if isinstance(parsed, Answer):
                return parsed
            key, nonce = parsed
            return self.service.cached(key) if nonce is None else None
        except Exception:  # never a 500 (main port) or a 400 and a closed connection (lean listener)
            log.exception("OCSP request failed")
            return Answer(INTERNAL_ERROR)

    def slow(self, body: bytes) -> Answer:
        """The full path (database, signing); never raises."""
        try:
            return self.service.respond(body)
        except Exception:
            log.exception("OCSP response failed")
            return Answer(INTERNAL_ERROR)

    def cache_headers(self, answer: Answer, now: float) -> list[tuple[bytes, bytes]]:
        """RFC 5019 §6: Cache-Control max-age (never past nextUpdate), ETag,
        Last-Modified (thisUpdate), Expires (nextUpdate); no-store when uncacheable
        (errors, nonces). ``now`` is a POSIX timestamp."""
        if not answer.cacheable or answer.next_update is None or answer.this_update is None:
            return [(b"cache-control", b"no-store")]
        hit = self._fixed.get(answer.etag)
        if hit is None:
            if len(self._fixed) > 100_000:
                self._fixed.clear()
            fixed = [
                (b"etag", answer.etag.encode()),
                (b"last-modified", http_date(answer.this_update).encode()),
                (b"expires", http_date(answer.next_update).encode()),
            ]
            hit = self._fixed[answer.etag] = (fixed, answer.next_update.timestamp())
        fixed, expires = hit
        max_age = max(0, min(OCSP_MAX_AGE, int(expires - now)))
        cc = b"max-age=%d, public, no-transform, must-revalidate" % max_age
        return [(b"cache-control", cc), *fixed]
