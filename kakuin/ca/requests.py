"""Issuance requests and the policy checks applied to them before anything is recorded.

Pure functions of the request, the profile and the configuration (the
institution's name and domains are looked up by the caller); the pipeline in
``issuer`` calls them in order and records nothing for a refused request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kakuin.ca.keystore import PublicKey
from kakuin.config import Config, PolicyConfig
from kakuin.errors import KeyRuleError, NameRuleError, NotFound, PolicyError
from kakuin.policy import names as name_rules
from kakuin.policy.profiles import Kind, Profile, Purpose, ValidityKind
from kakuin.policy.subject import SubjectRules, check_subject
from kakuin.policy.validity import decide_exact_not_after, decide_validity, max_tls_validity_days


@dataclass(frozen=True, slots=True)
class IssueRequest:
    profile: str
    public_key: PublicKey
    subject: x509.Name
    dns_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    institution: str | None = None  # registered English name
    requested_days: int | None = None
    # An exact notAfter (ACME's newOrder notAfter): valid from issuance until then,
    # refused when beyond the limit; exclusive with requested_days.
    requested_not_after: dt.datetime | None = None
    requested_by: str = ""
    purpose: Purpose | None = None
    extra_extensions: tuple[tuple[x509.ExtensionType, bool], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Issued:
    serial: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    issuer_slug: str
    note: str | None = None


def purpose_for(profile: Profile, req: IssueRequest) -> Purpose:
    """Which intermediate issues: TLS by the subscriber key's family, else the profile's."""
    if req.purpose is not None:
        if req.purpose not in profile.purposes:
            raise KeyRuleError(f"profile {profile.name} is not issued by {req.purpose} CAs", rule="purpose")
        return req.purpose
    if profile.purposes == (Purpose.TLS_RSA, Purpose.TLS_ECDSA):
        is_ec = isinstance(req.public_key, ec.EllipticCurvePublicKey)
        return Purpose.TLS_ECDSA if is_ec else Purpose.TLS_RSA
    if not profile.purposes:
        raise NotFound(f"profile {profile.name} is not issued by an intermediate")
    return profile.purposes[0]


def subject_for(config: Config, profile: Profile, req: IssueRequest, organization: str | None) -> x509.Name:
    """The subject to certify, after the subject rules (policy/subject.py)."""
    if profile.kind is Kind.SERVER_DV:
        # BR 7.1.4.2.2 / Boulder: a DV subject is only the CN, taken from the SANs.
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, req.dns_names[0])])
    if profile.kind is Kind.SMIME:
        mailbox = req.emails[0]
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, mailbox),
                x509.NameAttribute(NameOID.EMAIL_ADDRESS, mailbox),
            ]
        )
    if profile.subject_rules:
        rules = SubjectRules(
            country=config.policy.country,
            allow_ou=profile.kind not in (Kind.SERVER_OV,),  # BR 7.1.4.2.2(i): no OU
        )
        check_subject(
            req.subject,
            rules,
            organization=organization,
            email_allowed=profile.kind is Kind.CLIENT,
        )
    return req.subject


def check_names(profile: Profile, req: IssueRequest, allowed_domains: list[str] | None) -> None:
    """dNSName and rfc822Name SANs: syntax, the institution's domains, CN among the SANs."""
    if profile.dns_names:
        if not req.dns_names:
            raise NameRuleError("a server certificate needs at least one DNS name", rule="san-missing")
        for n in req.dns_names:
            name_rules.check_dns_name(n)
            if allowed_domains is not None:
                name_rules.check_within(n, allowed_domains)
        if profile.kind is Kind.SERVER_OV:
            cns = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if cns and str(cns[0].value).lower() not in {d.lower() for d in req.dns_names}:
                raise NameRuleError(
                    "the subject CN must also be one of the DNS names (BR 7.1.4.3)",
                    rule="cn-not-in-san",
                    field="CN",
                )
    elif req.dns_names:
        raise NameRuleError(f"profile {profile.name} carries no DNS names", rule="san-not-allowed")
    if profile.emails:
        if profile.kind is Kind.SMIME and not req.emails:
            raise NameRuleError("an S/MIME certificate needs a mailbox address", rule="email-missing")
        for e in req.emails:
            name_rules.check_email(e)
    elif req.emails:
        raise NameRuleError(f"profile {profile.name} carries no e-mail addresses", rule="email-not-allowed")


def validity_limits(config: Config, profile: Profile, now: dt.datetime) -> tuple[int | None, int | None]:
    """(days, months): the longest validity ``profile`` allows for issuance at ``now``."""
    if profile.validity is ValidityKind.TLS_SCHEDULE:
        return max_tls_validity_days(now), None
    if profile.validity is ValidityKind.MONTHS:
        months = config.policy.client_validity_months if profile.kind is Kind.CLIENT else profile.validity_value
        return None, months
    return profile.validity_value, None


def validity_for(
    config: Config, profile: Profile, req: IssueRequest, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime, str | None]:
    """notBefore, notAfter and a note when the request was shortened (policy/validity.py)."""
    limit_days, limit_months = validity_limits(config, profile, now)
    if req.requested_not_after is not None:
        if req.requested_days is not None:
            raise ValueError("requested_days and requested_not_after are exclusive")
        e = decide_exact_not_after(
            now=now, limit_days=limit_days, limit_months=limit_months, not_after=req.requested_not_after
        )
        return e.not_before, e.not_after, None
    d = decide_validity(
        now=now,
        limit_days=limit_days,
        limit_months=limit_months,
        requested_days=req.requested_days,
        default_days=None,
        over_limit=config.policy.over_limit,
    )
    return d.not_before, d.not_after, d.note


def check_institution_confirmed(
    name: str, confirmed_until: dt.datetime | None, now: dt.datetime, policy: PolicyConfig
) -> None:
    """The yearly confirmation of the institution (UPKI: the CA confirms the
    organisation at registration and every year after) must be current."""
    if confirmed_until is None:
        if policy.require_institution_confirmation:
            raise PolicyError(
                f"institution {name!r} has never been confirmed; its responsible person must confirm it "
                f"(機関「{name}」の確認が完了していないため発行できません)",
                rule="institution-unconfirmed",
            )
        return
    until = confirmed_until if confirmed_until.tzinfo else confirmed_until.replace(tzinfo=dt.UTC)
    if until < now:
        raise PolicyError(
            f"institution {name!r} was confirmed until {until:%Y-%m-%d}; its yearly confirmation has lapsed "
            f"(機関「{name}」の年次確認の期限 {until:%Y-%m-%d} が過ぎているため発行できません)",
            rule="institution-unconfirmed",
        )
