"""One checker per TSV kind. Each turns a ``RawRow`` into its checked row model
or into ``RowError``s, using the same rules as every other entry point:
``parse_dn``/``check_subject`` (policy.subject), ``parse_csr`` (ca.csr),
``check_key`` (policy.keys), ``check_dns_name``/``check_within``/``check_email``
(policy.names), ``parse_reason`` and the revocation comment rule (ra.revocation).
What needs the store or DNS comes in through ``CheckEnv``."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kakuin.ca.csr import parse_csr
from kakuin.errors import BadCSR, KakuinError, PolicyError
from kakuin.policy.keys import check_key
from kakuin.policy.names import check_dns_name, check_email, check_within
from kakuin.policy.prefectures import normalise_prefecture
from kakuin.policy.profiles import Kind, Profile
from kakuin.policy.subject import SubjectRules, check_subject, parse_dn
from kakuin.ra.pkcs12 import check_pin
from kakuin.ra.revocation import RevocationService
from kakuin.ra.tsv.formats import DOWNLOAD_METHODS, FORMATS, PROFILE_IDS, Column, ProfileID, TSVKind
from kakuin.ra.tsv.messages import policy_message, row_message
from kakuin.ra.tsv.parse import RawRow, RowError


@dataclass(frozen=True, slots=True)
class InstitutionView:
    id: int
    name_en: str
    prefecture: str | None
    city: str | None
    domains: tuple[str, ...]  # approved only


@dataclass(frozen=True, slots=True)
class CertView:
    serial: str
    institution_id: int | None
    subject: x509.Name
    spki_sha256: str
    issued: bool
    revoked: bool


@dataclass(frozen=True, slots=True)
class CheckEnv:
    institution: InstitutionView
    country: str
    profiles: dict[str, Profile]
    is_blocked: Callable[[str], bool]
    certificate: Callable[[str], CertView | None]
    # names → {name: error text or None}; None when CAA is not checked here.
    caa: Callable[[list[str]], dict[str, str | None]] | None = None


@dataclass(frozen=True, slots=True)
class Subscriber:
    name: str
    affiliation: str
    email: str


@dataclass(frozen=True, slots=True)
class ServerRow:
    row: int
    profile_id: ProfileID
    subject: x509.Name
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    dns_names: tuple[str, ...]  # the FQDN first
    subscriber: Subscriber
    software: str
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class ClientRow:
    row: int
    profile_id: ProfileID
    subject: x509.Name
    download: str  # p12-individual | p12-bulk | browser
    subscriber: Subscriber
    p12_name: str | None
    pin: str | None
    dn: str = ""  # column 1 as written (stored for enrollment in the browser, parsed again then)


@dataclass(frozen=True, slots=True)
class RevokeRow:
    row: int
    serial: str
    reason: int
    comment: str | None


@dataclass(frozen=True, slots=True)
class EABRow:
    row: int
    name: str
    email: str
    domains: tuple[str, ...]
    days: int | None


CheckedRow = ServerRow | ClientRow | RevokeRow | EABRow


class _Refuse(Exception):
    def __init__(self, err: RowError) -> None:
        self.err = err


def _col(kind: TSVKind, key: str) -> Column:
    return next(c for c in FORMATS[kind] if c.key == key)


def norm_serial(value: str) -> str:
    return value.strip().lower().removeprefix("0x").replace(":", "")


class Checker:
    def __init__(self, kind: TSVKind, env: CheckEnv) -> None:
        self.kind = kind
        self.env = env
        self._seen: set[str] = set()
        self._bulk_names: set[str] = {"manifest.tsv"}  # file names in the P12一括 archive

    def fail(self, row: int, key: str, rule: str, **params: object) -> _Refuse:
        return _Refuse(row_message(row, _col(self.kind, key), rule, **params))

    def policy(self, row: int, key: str, exc: KakuinError) -> _Refuse:
        return _Refuse(policy_message(row, _col(self.kind, key), exc))

    def check(self, raw: RawRow) -> CheckedRow | RowError:
        try:
            if self.kind in (TSVKind.SERVER_ISSUE, TSVKind.SERVER_RENEW):
                return self._server(raw)
            if self.kind is TSVKind.CLIENT_ISSUE:
                return self._client(raw)
            if self.kind is TSVKind.REVOKE:
                return self._revoke(raw)
            return self._eab(raw)
        except _Refuse as r:
            return r.err

    # -- shared pieces --------------------------------------------------------
    def _profile_id(self, raw: RawRow) -> ProfileID:
        pid = PROFILE_IDS[self.kind].get(raw.fields["profile_id"])
        if pid is None:
            known = ", ".join(PROFILE_IDS[self.kind])
            raise self.fail(raw.no, "profile_id", "unknown-profile", value=raw.fields["profile_id"], known=known)
        return pid

    def _subject(self, raw: RawRow, profile: Profile) -> x509.Name:
        n = raw.no
        try:
            name = parse_dn(raw.fields["dn"])
        except PolicyError as exc:
            raise self.policy(n, "dn", exc) from None
        order = [a.oid for a in reversed(list(name))]  # text order, CN first
        rank = {
            NameOID.COMMON_NAME: 0,
            NameOID.ORGANIZATIONAL_UNIT_NAME: 1,
            NameOID.ORGANIZATION_NAME: 2,
            NameOID.LOCALITY_NAME: 3,
            NameOID.STATE_OR_PROVINCE_NAME: 3,
            NameOID.COUNTRY_NAME: 4,
        }
        ranks = [rank.get(o, 5) for o in order]
        if ranks != sorted(ranks):
            raise self.fail(n, "dn", "dn-order")
        # The same rules ca.issuer applies (BR 7.1.4.2.2(i): no OU in TLS certificates).
        rules = SubjectRules(country=self.env.country, allow_ou=profile.kind is not Kind.SERVER_OV)
        try:
            check_subject(
                name, rules, organization=self.env.institution.name_en, email_allowed=profile.kind is Kind.CLIENT
            )
        except PolicyError as exc:
            raise self.policy(n, "dn", exc) from None
        inst = self.env.institution
        for st in name.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME):
            want = normalise_prefecture(inst.prefecture) if inst.prefecture else None
            if want is not None and normalise_prefecture(str(st.value)) != want:
                raise self.fail(n, "dn", "st-mismatch", value=st.value, expected=inst.prefecture)
        for loc in name.get_attributes_for_oid(NameOID.LOCALITY_NAME):
            if inst.city and str(loc.value).casefold() != inst.city.casefold():
                raise self.fail(n, "dn", "l-mismatch", value=loc.value, expected=inst.city)
        return name

    def _subscriber(self, raw: RawRow) -> Subscriber:
        email = raw.fields["subscriber_email"]
        try:
            check_email(email)
        except PolicyError as exc:
            raise self.policy(raw.no, "subscriber_email", exc) from None
        return Subscriber(raw.fields["subscriber_name"], raw.fields["subscriber_affiliation"], email)

    def _within(self, row: int, key: str, name: str) -> None:
        try:
            check_dns_name(name)
            check_within(name, list(self.env.institution.domains))
        except PolicyError as exc:
            raise self.policy(row, key, exc) from None

    def _once(self, row: int, key: str, serial: str) -> None:
        if serial in self._seen:
            raise self.fail(row, key, "duplicate-serial", serial=serial)
        self._seen.add(serial)

    # -- kinds ----------------------------------------------------------------
    def _server(self, raw: RawRow) -> ServerRow:
        n, f = raw.no, raw.fields
        pid = self._profile_id(raw)
        profile = self.env.profiles[pid.profile]
        subject = self._subject(raw, profile)
        cn = str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        if cn != f["fqdn"]:
            raise self.fail(n, "fqdn", "cn-fqdn-mismatch", cn=cn, fqdn=f["fqdn"])
        csr = self._csr(raw)
        if _name_key(csr.subject) != _name_key(subject):
            raise self.fail(n, "csr", "csr-dn-mismatch", dn=csr.subject.rfc4514_string())
        key = csr.public_key()
        try:
            spki = check_key(key, profile.key_rules, self.env.is_blocked)
        except PolicyError as exc:
            raise self.policy(n, "csr", exc) from None
        is_p384 = isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
        if (pid.key == "rsa") != isinstance(key, rsa.RSAPublicKey) or (pid.key == "ec-p384" and not is_p384):
            raise self.fail(n, "profile_id", "profile-key-mismatch", value=pid.id, label=pid.label_en)
        names = [f["fqdn"]] + [d for d in re.split(r"[\s,]+", f["dns_names"]) if d]
        self._within(n, "fqdn", names[0])
        for extra in names[1:]:
            self._within(n, "dns_names", extra)
        subscriber = self._subscriber(raw)
        replaces = None
        if self.kind is TSVKind.SERVER_RENEW:
            replaces = self._renewable(raw, subject, spki)
        if self.env.caa is not None:
            for name, problem in self.env.caa(list(dict.fromkeys(names))).items():
                if problem:
                    key_col = "fqdn" if name == names[0] else "dns_names"
                    raise self.fail(n, key_col, "caa", name=name, detail=problem)
        return ServerRow(n, pid, subject, key, tuple(dict.fromkeys(names)), subscriber, f["software"], replaces)

    def _csr(self, raw: RawRow) -> x509.CertificateSigningRequest:
        text = raw.fields["csr"]
        body = re.sub(r"-----[A-Z ]+-----", "", text)  # markers, with or without their spaces
        try:
            der = base64.b64decode(re.sub(r"\s+", "", body), validate=True)
            return parse_csr(der)
        except (binascii.Error, ValueError):
            raise self.fail(raw.no, "csr", "csr-invalid", detail="not base64") from None
        except BadCSR as exc:
            raise self.fail(raw.no, "csr", "csr-invalid", detail=exc.message) from None

    def _renewable(self, raw: RawRow, subject: x509.Name, spki: str) -> str:
        n = raw.no
        serial = norm_serial(raw.fields["replaces"])
        self._once(n, "replaces", serial)
        old = self.env.certificate(serial)
        if old is None or not old.issued:
            raise self.fail(n, "replaces", "unknown-serial", serial=serial)
        if old.institution_id != self.env.institution.id:
            raise self.fail(n, "replaces", "other-institution", serial=serial)
        if old.revoked:
            raise self.fail(n, "replaces", "already-revoked", serial=serial)
        if _name_key(old.subject) != _name_key(subject):
            raise self.fail(n, "dn", "renew-dn-mismatch", dn=old.subject.rfc4514_string())
        if old.spki_sha256 == spki:
            raise self.fail(n, "csr", "renew-same-key", serial=serial)
        return serial

    def _client(self, raw: RawRow) -> ClientRow:
        n, f = raw.no, raw.fields
        pid = self._profile_id(raw)
        method = DOWNLOAD_METHODS.get(f["download"])
        if method is None:
            raise self.fail(n, "download", "unknown-download", value=f["download"])
        subject = self._subject(raw, self.env.profiles["client"])
        subscriber = self._subscriber(raw)
        if pid.profile == "smime":
            # S/MIME BR 3.2.2: the mailbox domain is one the institution controls.
            self._within(n, "subscriber_email", subscriber.email.rpartition("@")[2].lower())
        p12 = f["p12_name"] or None
        if p12 is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", p12):
            raise self.fail(n, "p12_name", "p12-name")
        if p12 is not None and method[0] == "p12-bulk":
            if p12.casefold() in self._bulk_names:
                raise self.fail(n, "p12_name", "p12-name-duplicate", name=p12)
            self._bulk_names.add(p12.casefold())
        pin = f["pin"] or None
        if pin is not None:
            try:
                check_pin(pin)
            except PolicyError as exc:
                raise self.policy(n, "pin", exc) from None
        return ClientRow(n, pid, subject, method[0], subscriber, p12, pin, f["dn"])

    def _revoke(self, raw: RawRow) -> RevokeRow:
        n, f = raw.no, raw.fields
        serial = norm_serial(f["serial"])
        self._once(n, "serial", serial)
        cert = self.env.certificate(serial)
        if cert is None or not cert.issued:
            raise self.fail(n, "serial", "unknown-serial", serial=serial)
        if cert.institution_id != self.env.institution.id:
            raise self.fail(n, "serial", "other-institution", serial=serial)
        if cert.revoked:
            raise self.fail(n, "serial", "already-revoked", serial=serial)
        comment = f["comment"] or None
        try:
            reason = RevocationService._check_reason(f["reason"], comment)
        except PolicyError as exc:
            raise self.policy(n, "comment" if exc.rule == "revocation-comment" else "reason", exc) from None
        return RevokeRow(n, serial, reason, comment)

    def _eab(self, raw: RawRow) -> EABRow:
        n, f = raw.no, raw.fields
        try:
            check_email(f["subscriber_email"])
        except PolicyError as exc:
            raise self.policy(n, "subscriber_email", exc) from None
        domains = tuple(d.lower() for d in re.split(r"[\s,]+", f["domains"]) if d)
        for d in domains:
            self._within(n, "domains", d)
        days = int(f["days"]) if f["days"] else None
        if days is not None and not 1 <= days <= 3650:
            raise self.fail(n, "days", "days-range")
        return EABRow(n, f["subscriber_name"], f["subscriber_email"], domains, days)


def _name_key(name: x509.Name) -> list[tuple[str, str]]:
    """Attributes in order, compared by type and value (string encodings may differ)."""
    return [(a.oid.dotted_string, str(a.value)) for a in name]
