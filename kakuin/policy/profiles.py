"""Certificate profiles, declarative and pure.

A ``Profile`` says what a certificate of one kind looks like; ``extensions_for``
turns it, the subject key, the issuer and the names into cryptography extension
objects. Nothing here signs or stores anything.

House rule (the 2020 incident, see PRODUCT.md §2): an issuing intermediate
never carries id-kp-OCSPSigning. ``Profile.__post_init__`` refuses to build such
a profile, and ``ca.lint`` refuses such a certificate a second time.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from kakuin.errors import ConfigError
from kakuin.policy.keys import KeyRules

# CA/B Forum reserved policy identifiers (BR 7.1.6.1, S/MIME BR 7.1.6.1, CS BR 7.1.6.1)
DV_POLICY = ObjectIdentifier("2.23.140.1.2.1")
OV_POLICY = ObjectIdentifier("2.23.140.1.2.2")
SMIME_MAILBOX_STRICT = ObjectIdentifier("2.23.140.1.5.1.3")
CODE_SIGNING_POLICY = ObjectIdentifier("2.23.140.1.4.1")
# RFC 5612: enterprise number 32473 is reserved for documentation; operators set
# their own CP/CPS OID in kakuin.toml (policy.cps_oid).
DEFAULT_CPS_OID = "1.3.6.1.4.1.32473.1.1"

OCSP_SIGNING = ExtendedKeyUsageOID.OCSP_SIGNING


class Kind(enum.StrEnum):
    ROOT = "root"
    SUB_CA = "sub-ca"
    SERVER_OV = "server-ov"
    SERVER_DV = "server-dv"
    CLIENT = "client"
    SMIME = "smime"
    CODE_SIGNING = "code-signing"
    OCSP_RESPONDER = "ocsp-responder"
    TSA = "tsa"


class Purpose(enum.StrEnum):
    """What an issuing intermediate is for; one purpose per intermediate."""

    TLS_RSA = "tls-rsa"
    TLS_ECDSA = "tls-ecdsa"
    CLIENT = "client"
    SMIME = "smime"
    CODE_SIGNING = "code-signing"
    TSA = "tsa"


class Linter(enum.StrEnum):
    SERVERAUTH = "serverauth"  # pkilint lint_cabf_serverauth_cert
    SMIME = "smime"  # pkilint lint_cabf_smime_cert
    PKIX = "pkix"  # pkilint lint_pkix_cert


class ValidityKind(enum.StrEnum):
    TLS_SCHEDULE = "tls-schedule"  # policy.validity.TLS_SCHEDULE
    MONTHS = "months"
    DAYS = "days"


# Which EKU an intermediate of each purpose carries (BR 7.1.2.10.6 for TLS;
# never OCSPSigning, never anyExtendedKeyUsage).
PURPOSE_EKU: dict[Purpose, tuple[ObjectIdentifier, ...]] = {
    Purpose.TLS_RSA: (ExtendedKeyUsageOID.SERVER_AUTH,),
    Purpose.TLS_ECDSA: (ExtendedKeyUsageOID.SERVER_AUTH,),
    Purpose.CLIENT: (ExtendedKeyUsageOID.CLIENT_AUTH,),
    Purpose.SMIME: (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
    Purpose.CODE_SIGNING: (ExtendedKeyUsageOID.CODE_SIGNING,),
    Purpose.TSA: (ExtendedKeyUsageOID.TIME_STAMPING,),
}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: Kind
    linter: Linter
    eku: tuple[ObjectIdentifier, ...] = ()
    eku_critical: bool = False
    policies: tuple[ObjectIdentifier, ...] = ()
    validity: ValidityKind = ValidityKind.DAYS
    validity_value: int = 0  # days or months, per ``validity``
    key_rules: KeyRules = field(default_factory=KeyRules)
    purposes: tuple[Purpose, ...] = ()  # which intermediates may issue it
    subject_rules: bool = True  # apply policy.subject rules (OV-style DN)
    dns_names: bool = False  # carries dNSName SANs
    emails: bool = False  # carries rfc822Name SANs
    with_ski: bool = True
    with_aia: bool = True
    with_crldp: bool = True
    ocsp_nocheck: bool = False
    is_ca: bool = False
    path_length: int | None = None

    def __post_init__(self) -> None:
        if self.kind in (Kind.SUB_CA, Kind.ROOT) and OCSP_SIGNING in self.eku:
            # PRODUCT.md §2: the 2020 incident. Delegated responders only.
            raise ConfigError(f"profile {self.name}: an intermediate must never carry id-kp-OCSPSigning")
        if OCSP_SIGNING in self.eku and self.kind is not Kind.OCSP_RESPONDER:
            raise ConfigError(f"profile {self.name}: id-kp-OCSPSigning only in responder profiles")
        if self.kind is Kind.TSA and not self.eku_critical:
            # RFC 3161 §2.3: the timeStamping EKU MUST be critical.
            raise ConfigError(f"profile {self.name}: the TSA EKU must be critical (RFC 3161 §2.3)")
        if self.validity is not ValidityKind.TLS_SCHEDULE and self.validity_value <= 0:
            raise ConfigError(f"profile {self.name}: needs a positive validity")


@dataclass(frozen=True, slots=True)
class IssuerInfo:
    """What a child certificate needs to know of its issuer."""

    name: x509.Name
    public_key: object
    ca_issuers_url: str | None
    ocsp_url: str | None
    crl_url: str | None


def _key_usage(kind: Kind, rsa_key: bool) -> x509.KeyUsage:
    ca = kind in (Kind.ROOT, Kind.SUB_CA)
    key_encipherment = rsa_key and kind in (Kind.SERVER_OV, Kind.SERVER_DV, Kind.CLIENT, Kind.SMIME)
    return x509.KeyUsage(
        digital_signature=kind is not Kind.ROOT,
        content_commitment=kind is Kind.TSA,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def extensions_for(
    profile: Profile,
    *,
    subject_public_key: object,
    issuer: IssuerInfo | None,
    dns_names: Sequence[str] = (),
    emails: Sequence[str] = (),
    subject_is_empty: bool = False,
    extra_eku: Sequence[ObjectIdentifier] = (),
) -> list[tuple[x509.ExtensionType, bool]]:
    """The extensions of a certificate of ``profile``, with their criticality.

    ``issuer`` is None for a self-signed root.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    exts: list[tuple[x509.ExtensionType, bool]] = []
    is_ca = profile.kind in (Kind.ROOT, Kind.SUB_CA)
    # RFC 5280 §4.2.1.9: basicConstraints MUST be critical in CA certificates.
    if is_ca:
        exts.append((x509.BasicConstraints(ca=True, path_length=profile.path_length), True))
    elif profile.kind is not Kind.OCSP_RESPONDER:
        exts.append((x509.BasicConstraints(ca=False, path_length=None), True))
    exts.append((_key_usage(profile.kind, isinstance(subject_public_key, rsa.RSAPublicKey)), True))
    eku = tuple(profile.eku) + tuple(e for e in extra_eku if e not in profile.eku)
    if eku:
        if OCSP_SIGNING in eku and profile.kind is not Kind.OCSP_RESPONDER:
            raise ConfigError("id-kp-OCSPSigning is only for delegated OCSP responders")
        exts.append((x509.ExtendedKeyUsage(list(eku)), profile.eku_critical))
    if profile.with_ski:
        exts.append((x509.SubjectKeyIdentifier.from_public_key(subject_public_key), False))  # type: ignore[arg-type]
    # RFC 5280 §4.2.1.1 / BR 7.1.2.1.3: AKI keyIdentifier; a root names its own key.
    aki_key = issuer.public_key if issuer is not None else subject_public_key
    exts.append((x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_key), False))  # type: ignore[arg-type]
    if issuer is not None:
        if profile.with_aia:
            access = []
            if issuer.ocsp_url and profile.kind is not Kind.OCSP_RESPONDER:
                access.append(
                    x509.AccessDescription(
                        x509.AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(issuer.ocsp_url),
                    )
                )
            if issuer.ca_issuers_url:
                access.append(
                    x509.AccessDescription(
                        x509.AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(issuer.ca_issuers_url),
                    )
                )
            if access:
                exts.append((x509.AuthorityInformationAccess(access), False))
        if profile.with_crldp and issuer.crl_url:
            exts.append(
                (
                    x509.CRLDistributionPoints(
                        [
                            x509.DistributionPoint(
                                full_name=[x509.UniformResourceIdentifier(issuer.crl_url)],
                                relative_name=None,
                                reasons=None,
                                crl_issuer=None,
                            )
                        ]
                    ),
                    False,
                )
            )
    if profile.policies:
        exts.append(
            (
                x509.CertificatePolicies([x509.PolicyInformation(oid, None) for oid in profile.policies]),
                False,
            )
        )
    sans: list[x509.GeneralName] = []
    if profile.dns_names:
        sans += [x509.DNSName(n) for n in dns_names]
    if profile.emails:
        sans += [x509.RFC822Name(e) for e in emails]
    if sans:
        # RFC 5280 §4.2.1.6: critical when the subject is empty.
        exts.append((x509.SubjectAlternativeName(sans), subject_is_empty))
    if profile.ocsp_nocheck:
        # RFC 6960 §4.2.2.2.1: id-pkix-ocsp-nocheck, value NULL.
        exts.append((x509.OCSPNoCheck(), False))
    return exts


def default_profiles(
    *,
    cps_oid: str = DEFAULT_CPS_OID,
    client_months: int = 52,
    smime_days: int = 824,
    code_signing_days: int = 459,
    ocsp_days: int = 30,
    tsa_months: int = 60,
    tls_ecdsa_curves: frozenset[str] = frozenset({"secp256r1", "secp384r1"}),
) -> dict[str, Profile]:
    """The built-in leaf and CA profiles. Limits are BR maxima minus one day."""
    cps = ObjectIdentifier(cps_oid)
    tls_keys = KeyRules(curves=tls_ecdsa_curves)
    profiles = [
        Profile(
            name="server-ov",
            kind=Kind.SERVER_OV,
            linter=Linter.SERVERAUTH,
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
            policies=(OV_POLICY,),
            validity=ValidityKind.TLS_SCHEDULE,
            key_rules=tls_keys,
            purposes=(Purpose.TLS_RSA, Purpose.TLS_ECDSA),
            dns_names=True,
            with_ski=False,  # BR 7.1.2.7.6: SKI NOT RECOMMENDED in subscriber certificates
        ),
        Profile(
            name="server-dv",
            kind=Kind.SERVER_DV,
            linter=Linter.SERVERAUTH,
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
            policies=(DV_POLICY,),
            validity=ValidityKind.TLS_SCHEDULE,
            key_rules=tls_keys,
            purposes=(Purpose.TLS_RSA, Purpose.TLS_ECDSA),
            subject_rules=False,
            dns_names=True,
            with_ski=False,
        ),
        Profile(
            name="client",
            kind=Kind.CLIENT,
            linter=Linter.PKIX,
            eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            policies=(cps,),
            validity=ValidityKind.MONTHS,
            validity_value=client_months,
            purposes=(Purpose.CLIENT,),
            emails=True,
        ),
        Profile(
            name="smime",
            kind=Kind.SMIME,
            linter=Linter.SMIME,
            eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,),
            policies=(SMIME_MAILBOX_STRICT,),
            validity=ValidityKind.DAYS,
            validity_value=smime_days,  # S/MIME BR 6.3.2: 825 days
            purposes=(Purpose.SMIME,),
            subject_rules=False,  # mailbox-validated: subject is the mailbox only
            emails=True,
        ),
        Profile(
            name="code-signing",
            kind=Kind.CODE_SIGNING,
            linter=Linter.PKIX,
            eku=(ExtendedKeyUsageOID.CODE_SIGNING,),
            policies=(CODE_SIGNING_POLICY, cps),
            validity=ValidityKind.DAYS,
            validity_value=code_signing_days,  # CS BR 6.3.2: 460 days
            # CS BR 6.1.5: RSA ≥ 3072 or ECDSA P-256/P-384 — checked in ca.issuer
            purposes=(Purpose.CODE_SIGNING,),
        ),
        Profile(
            name="ocsp-responder",
            kind=Kind.OCSP_RESPONDER,
            linter=Linter.SERVERAUTH,
            eku=(OCSP_SIGNING,),
            validity=ValidityKind.DAYS,
            validity_value=ocsp_days,
            subject_rules=False,
            with_aia=False,
            with_crldp=False,
            ocsp_nocheck=True,
        ),
        Profile(
            name="tsa",
            kind=Kind.TSA,
            linter=Linter.PKIX,
            eku=(ExtendedKeyUsageOID.TIME_STAMPING,),
            eku_critical=True,  # RFC 3161 §2.3
            policies=(cps,),
            validity=ValidityKind.MONTHS,
            validity_value=tsa_months,
            purposes=(Purpose.TSA,),
        ),
        Profile(
            name="sub-ca",
            kind=Kind.SUB_CA,
            linter=Linter.SERVERAUTH,
            validity=ValidityKind.MONTHS,
            validity_value=120,
            subject_rules=False,
            is_ca=True,
            path_length=0,
        ),
        Profile(
            name="root",
            kind=Kind.ROOT,
            linter=Linter.SERVERAUTH,
            validity=ValidityKind.MONTHS,
            validity_value=300,
            subject_rules=False,
            with_aia=False,
            with_crldp=False,
            is_ca=True,
        ),
    ]
    return {p.name: p for p in profiles}


def sub_ca_profile(purpose: Purpose, *, months: int, path_length: int | None = 0) -> Profile:
    """The profile of an issuing intermediate for ``purpose``."""
    # BR 7.1.2.10.5: an intermediate operated by the same CA (an Affiliate) may
    # assert anyPolicy; one reserved OID alone would forbid issuing both DV and OV.
    policies = (x509.oid.CertificatePoliciesOID.ANY_POLICY,)
    return Profile(
        name=f"sub-ca-{purpose.value}",
        kind=Kind.SUB_CA,
        linter=Linter.SERVERAUTH if purpose in (Purpose.TLS_RSA, Purpose.TLS_ECDSA) else Linter.PKIX,
        eku=PURPOSE_EKU[purpose],
        policies=policies,
        validity=ValidityKind.MONTHS,
        validity_value=months,
        subject_rules=False,
        is_ca=True,
        path_length=path_length,
    )
