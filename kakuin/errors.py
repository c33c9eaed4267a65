"""One error hierarchy for kakuin, with no HTTP in it.

::

    KakuinError
    ├── ConfigError            configuration is invalid (names the key)
    ├── NotFound               a serial, CA, institution … does not exist
    ├── Unauthorized           the actor may not do this
    ├── AlreadyRevokedError    the certificate was revoked already (decided by the database)
    ├── PolicyError            a request breaks a rule (has ``rule`` and ``field``)
    │   ├── SubjectRuleError   a subject DN field breaks a subject rule
    │   ├── KeyRuleError       the public key breaks a key rule
    │   ├── BlockedKeyError    the key is on the compromised-key blocklist
    │   ├── ValidityError      the requested lifetime is over the limit
    │   ├── NameRuleError      a SAN / identifier is not acceptable
    │   └── CAAError           CAA forbids issuance (error code 338)
    ├── BadCSR                 the CSR cannot be parsed or its signature is bad
    ├── LintError              pkilint found ERROR/FATAL findings: nothing signed
    └── IssuanceError          the pipeline failed after the intent was recorded

Transport layers (ACME, portal, CLI) map these once into problem documents,
HTML messages or exit codes; internals never reach a client.
"""

from __future__ import annotations


class KakuinError(Exception):
    """Base of every error kakuin raises on purpose."""

    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(KakuinError):
    code = "config"


class AlreadyRevokedError(KakuinError):
    code = "already-revoked"


class NotFound(KakuinError):
    code = "not-found"


class Unauthorized(KakuinError):
    code = "unauthorized"


class BadCSR(KakuinError):
    code = "bad-csr"


class PolicyError(KakuinError):
    """A request broke a named rule; ``field`` says where, ``rule`` says which."""

    code = "policy"

    def __init__(self, message: str, *, rule: str, field: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field


class SubjectRuleError(PolicyError):
    code = "subject"


class KeyRuleError(PolicyError):
    code = "key"


class BlockedKeyError(KeyRuleError):
    code = "blocked-key"


class ValidityError(PolicyError):
    code = "validity"


class NameRuleError(PolicyError):
    code = "name"


class CAAError(PolicyError):
    """CAA forbids issuance. 338 is the reference service's error code for it."""

    code = "caa"
    error_code = 338


class LintError(KakuinError):
    code = "lint"

    def __init__(self, message: str, findings: list[str]) -> None:
        super().__init__(message)
        self.findings = findings


class IssuanceError(KakuinError):
    code = "issuance"
