"""The one mapping from kakuin's errors to ACME problem documents (RFC 8555 §6.7,
RFC 7807). The first matching class wins, so subclasses come first. Details of
internal failures never reach the client: they get a fixed sentence."""

from __future__ import annotations

from dataclasses import dataclass

from kakuin.acme import errors as E
from kakuin.acme.jws import ALGORITHMS, UrlMismatch
from kakuin.errors import (
    AlreadyRevokedError,
    BadCSR,
    CAAError,
    KakuinError,
    KeyRuleError,
    NameRuleError,
    NotFound,
    PolicyError,
    SubjectRuleError,
    Unauthorized,
    ValidityError,
)

ACME_NS = "urn:ietf:params:acme:error:"

# (error class, ACME type, HTTP status)
MAPPING: tuple[tuple[type[BaseException], str, int], ...] = (
    (E.BadNonce, "badNonce", 400),
    (E.BadSignatureAlgorithm, "badSignatureAlgorithm", 400),
    (E.BadPublicKey, "badPublicKey", 400),
    (E.AccountDoesNotExist, "accountDoesNotExist", 400),
    (E.AccountDeactivated, "unauthorized", 401),  # RFC 8555 §7.3.6
    (E.ExternalAccountRequired, "externalAccountRequired", 400),
    (E.InvalidContact, "invalidContact", 400),
    (E.UnsupportedContact, "unsupportedContact", 400),
    (E.UnsupportedIdentifier, "unsupportedIdentifier", 400),
    (E.OrderNotReady, "orderNotReady", 403),
    (E.BadRevocationReason, "badRevocationReason", 400),
    (E.AlreadyRevoked, "alreadyRevoked", 400),
    (AlreadyRevokedError, "alreadyRevoked", 400),  # decided by the database (a concurrent revocation)
    (E.AlreadyReplaced, "alreadyReplaced", 409),  # RFC 9773 §7.4
    (E.RateLimited, "rateLimited", 429),  # RFC 8555 §6.6, with Retry-After
    (E.Conflict, "malformed", 409),  # RFC 8555 §7.3.5: 409 with the other account's URL
    (UrlMismatch, "unauthorized", 401),  # RFC 8555 §6.4
    (E.UnsupportedMediaType, "malformed", 415),  # RFC 8555 §6.2
    (E.Malformed, "malformed", 400),
    (Unauthorized, "unauthorized", 403),
    (NotFound, "malformed", 404),
    (CAAError, "caa", 403),
    # Boulder: a bad or blocked key in a CSR is badCSR.
    (KeyRuleError, "badCSR", 400),
    (SubjectRuleError, "badCSR", 400),
    (BadCSR, "badCSR", 400),
    (NameRuleError, "rejectedIdentifier", 400),
    (ValidityError, "malformed", 400),
    (PolicyError, "malformed", 400),
)


@dataclass(frozen=True, slots=True)
class Problem:
    type: str
    status: int
    detail: str
    extra: dict[str, object]
    headers: dict[str, str]


def problem_for(exc: BaseException) -> Problem:
    for cls, suffix, status in MAPPING:
        if isinstance(exc, cls):
            assert isinstance(exc, KakuinError)
            detail = exc.message
            extra: dict[str, object] = {}
            headers: dict[str, str] = {}
            if isinstance(exc, CAAError):
                # The reference service's code for a CAA refusal, quoted for operators.
                detail = f"{detail} (error {CAAError.error_code})"
            if isinstance(exc, E.BadSignatureAlgorithm):
                extra["algorithms"] = list(ALGORITHMS)
            if isinstance(exc, E.RateLimited):
                headers["Retry-After"] = str(exc.retry_after)
            if isinstance(exc, E.Conflict) and exc.location:
                headers["Location"] = exc.location
            return Problem(ACME_NS + suffix, status, detail, extra, headers)
    return Problem(
        ACME_NS + "serverInternal",
        500,
        "the server could not complete the request; it has been logged",
        {},
        {},
    )
