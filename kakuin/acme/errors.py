"""ACME protocol refusals: members of kakuin's one error hierarchy.

::

    KakuinError
    └── ACMEError                   a request the ACME protocol refuses
        ├── Malformed               (also: bad JSON, bad JWS)
        │   └── UnsupportedMediaType a POST whose Content-Type is not application/jose+json
        ├── BadNonce                missing, unknown or already used nonce
        ├── BadSignatureAlgorithm   alg not in the allow-list or not the key's
        ├── BadPublicKey            an account key kakuin does not accept
        ├── AccountDoesNotExist     onlyReturnExisting / unknown kid
        ├── AccountDeactivated      a request by (or newAccount with the key of) a deactivated account
        ├── ExternalAccountRequired no (or a bad) EAB when one is required
        ├── InvalidContact / UnsupportedContact
        ├── UnsupportedIdentifier   identifier type other than "dns"
        ├── OrderNotReady           finalize before every authorization is valid
        ├── BadRevocationReason / AlreadyRevoked
        ├── Conflict                key already used by another account (409)
        ├── AlreadyReplaced         RFC 9773: the replaced certificate has a successor
        └── RateLimited             a rate limit (kakuin.acme.limits) is reached

``kakuin.acme.problems`` maps these, and the foundation's errors, to problem
documents in one table; nothing here knows about HTTP.
"""

from __future__ import annotations

from kakuin.errors import KakuinError


class ACMEError(KakuinError):
    code = "acme"


class Malformed(ACMEError):
    code = "acme-malformed"


class UnsupportedMediaType(Malformed):
    """RFC 8555 §6.2: a POST without ``Content-Type: application/jose+json`` gets
    415 (Unsupported Media Type); the problem type stays ``malformed``, as
    Pebble's and Boulder's."""

    code = "acme-unsupported-media-type"


class AccountDeactivated(ACMEError):
    """RFC 8555 §7.3.6: a POST or POST-as-GET from a deactivated account gets 401
    (Unauthorized), type unauthorized; its key authorizes nothing more, so a
    newAccount signed with it is refused the same way (Boulder and Pebble refuse
    that one too)."""

    code = "acme-account-deactivated"


class BadNonce(ACMEError):
    code = "acme-bad-nonce"


class BadSignatureAlgorithm(ACMEError):
    code = "acme-bad-alg"


class BadPublicKey(ACMEError):
    code = "acme-bad-public-key"


class AccountDoesNotExist(ACMEError):
    code = "acme-no-account"


class ExternalAccountRequired(ACMEError):
    code = "acme-eab-required"


class InvalidContact(ACMEError):
    code = "acme-invalid-contact"


class UnsupportedContact(ACMEError):
    code = "acme-unsupported-contact"


class UnsupportedIdentifier(ACMEError):
    code = "acme-unsupported-identifier"


class OrderNotReady(ACMEError):
    code = "acme-order-not-ready"


class BadRevocationReason(ACMEError):
    code = "acme-bad-revocation-reason"


class AlreadyRevoked(ACMEError):
    code = "acme-already-revoked"


class Conflict(ACMEError):
    code = "acme-conflict"

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.location = location


class AlreadyReplaced(ACMEError):
    code = "acme-already-replaced"


class RateLimited(ACMEError):
    """RFC 8555 §6.6: a limit is reached; ``retry_after`` is the whole seconds
    until the oldest counted event leaves the limit's window."""

    code = "acme-rate-limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
