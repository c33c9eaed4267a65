"""Subject DN rules, pure: no I/O, no state beyond the constant tables below.

``parse_dn`` reads the UPKI text form ("CN=…,O=…,L=…,ST=…,C=JP", CN first);
``check_subject`` refuses a subject that breaks a rule, raising
``SubjectRuleError`` with a short ``rule`` id and the ``field`` at fault;
``format_dn`` writes a name back in the UPKI text form.

Messages are English followed by Japanese in parentheses, because they reach
applicants through the portal and the CLI unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from kakuin.errors import SubjectRuleError
from kakuin.policy.prefectures import normalise_prefecture, suggest_prefecture


@dataclass(frozen=True, slots=True)
class SubjectRules:
    country: str = "JP"  # required C value
    require_locality_or_state: bool = True
    require_organization: bool = True
    # The TLS BRs forbid OU since 2022-09; the caller sets allow_ou=False for TLS.
    max_ou: int = 3
    allow_ou: bool = True
    # L=Academe was the placeholder locality of old UPKI requests, not a place.
    forbidden_localities: frozenset[str] = frozenset({"Academe"})


# Text-form type name → OID. Type names are case-insensitive (RFC 4514 §3), so
# keys are upper case and lookups upper-case the input.
_TYPES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
}

# OID → the field name used in errors and in format_dn.
_FIELDS: dict[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "emailAddress",
}

# Friendlier names for attributes we refuse, so the message says "serialNumber"
# rather than "2.5.4.5"; anything else falls back to cryptography's name or OID.
_OTHER_NAMES: dict[x509.ObjectIdentifier, str] = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.TITLE: "title",
    NameOID.GIVEN_NAME: "givenName",
    NameOID.SURNAME: "surname",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
}

# A repeated C/O/CN in the text form is a pasting mistake, so parse_dn refuses it
# as a syntax error; repeated OU is legitimate and other repeats are check_subject's.
_UNIQUE_IN_TEXT = frozenset({NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CN_CHAR = re.compile(r"[A-Za-z0-9 \-._@*'(),/]")
_OU_CHAR = re.compile(r"[A-Za-z0-9 \-.,'()&/:]")  # also used for O
_L_CHAR = re.compile(r"[A-Za-z0-9 \-.,'()]")
_EMAIL = re.compile(r"[A-Za-z0-9\-_.]+@[A-Za-z0-9\-_.]+")
# Two adjacent symbols; a space is not a symbol for this rule ("Foo - Bar" is fine).
_CONSECUTIVE_SYMBOLS = re.compile(r"[^A-Za-z0-9 ]{2}")

_CN_MAX = 64  # RFC 5280 ub-common-name
_OU_MAX = 64  # RFC 5280 ub-organizational-unit-name
_O_MAX = 64  # RFC 5280 ub-organization-name
_L_MAX = 128  # RFC 5280 ub-locality-name


# Messages by key: English, then Japanese for the parenthesis. Keys are the rule
# ids except where one rule has several messages (dn-syntax). Kept in one table
# so wording stays consistent and translators have one place to look.
_MESSAGES: dict[str, tuple[str, str]] = {
    "dn-empty": ("DN is empty", "DNが空です"),
    "dn-backslash": ("DN ends with a lone backslash", "DNの末尾に単独のバックスラッシュがあります"),
    "dn-no-equals": ("DN component {part!r} has no '='", "DNの要素 {part} に「=」がありません"),
    "dn-unknown-type": (
        "unknown attribute type {part!r} in DN",
        "DNに不明な属性 {part} があります",
    ),
    "dn-empty-value": ("{field} has an empty value", "{field}の値が空です"),
    "dn-repeated": ("{field} appears more than once in DN", "{field}がDNに複数回現れます"),
    "dn-rejected": ("{field} value is not acceptable: {part}", "{field}の値が不正です"),
    "multi-valued-rdn": (
        "each RDN must hold exactly one attribute",
        "各RDNには属性を1つだけ指定してください",
    ),
    "attribute-not-allowed": (
        "attribute {field} is not allowed in the subject",
        "サブジェクトに属性 {field} は使用できません",
    ),
    "control-character": (
        "{field} contains a control character",
        "{field}に制御文字が含まれています",
    ),
    "attribute-repeated": ("{field} may appear only once", "{field}は1つだけ指定できます"),
    "country": ("exactly one C={part} is required", "国名(C)は{part}を1つだけ指定してください"),
    "cn-missing": ("CN is required", "CNは必須です"),
    "cn-length": ("CN must be 1 to 64 characters", "CNは1〜64文字で指定してください"),
    "cn-charset": (
        "CN contains a character that is not allowed: {part!r}",
        "CNに使用できない文字が含まれています: {part}",
    ),
    "cn-wildcard": (
        "'*' is only allowed as the whole first label, as in *.example.ac.jp",
        "「*」は *.example.ac.jp のように先頭ラベル全体としてのみ使用できます",
    ),
    "cn-leading-symbol": ("CN must not start with a symbol", "CNの先頭に記号は使用できません"),
    "cn-consecutive-symbols": (
        "CN must not contain consecutive symbols {part!r}",
        "CNに記号を連続して使用できません: {part}",
    ),
    "o-missing": ("O is required", "組織名(O)は必須です"),
    "o-mismatch": (
        "O must be the registered organization name {expected!r}, not {part!r}",
        "組織名(O)は登録済みの機関名「{expected}」と一致する必要があります: {part}",
    ),
    "o-length": ("O must be 1 to 64 characters", "組織名(O)は1〜64文字で指定してください"),
    "o-charset": (
        "O contains a character that is not allowed: {part!r}",
        "組織名(O)に使用できない文字が含まれています: {part}",
    ),
    "ou-forbidden": (
        "OU is not allowed in this certificate profile",
        "このプロファイルではOUを指定できません",
    ),
    "ou-too-many": ("at most {part} OU values are allowed", "OUは最大{part}個まで指定できます"),
    "ou-length": ("each OU must be 1 to 64 characters", "OUは1〜64文字で指定してください"),
    "ou-charset": (
        "OU contains a character that is not allowed: {part!r}",
        "OUに使用できない文字が含まれています: {part}",
    ),
    "ou-only-symbols": (
        "OU must not consist only of symbols and spaces",
        "OUを記号と空白のみで構成することはできません",
    ),
    "l-or-st-missing": (
        "L or ST is required",
        "市区町村名(L)または都道府県名(ST)のいずれかが必須です",
    ),
    "l-placeholder": (
        "L={part} is a placeholder; give the real city or ward",
        "L={part}は仮の値です。実際の市区町村名を指定してください",
    ),
    "l-charset": (
        "L must be at most 128 ASCII letters, digits, spaces and - . , ' ( ); got {part!r}",
        "市区町村名(L)は英数字・空白・記号 - . , ' ( ) で128文字以内で指定してください",
    ),
    "st-prefecture": (
        "ST={part} is not a prefecture name in romaji{expected}",
        "都道府県名(ST)はローマ字で指定してください{expected_ja}",
    ),
    "email-forbidden": (
        "emailAddress is not allowed in this certificate's subject",
        "この証明書のサブジェクトにemailAddressは指定できません",
    ),
    "email-charset": (
        "emailAddress must be local@domain using letters, digits and - _ . only",
        "emailAddressは英数字と - _ . のみを使い local@domain の形式で指定してください",
    ),
}


def _fail(
    rule: str, error_field: str | None, key: str | None = None, **params: object
) -> SubjectRuleError:
    """Build the error; ``key`` picks the message when it differs from ``rule``.

    ``params`` fill the message; ``field`` in the message defaults to the error's
    field, and dn-syntax errors (field None) pass it explicitly.
    """
    english, japanese = _MESSAGES[key or rule]
    params.setdefault("field", error_field)
    message = f"{english.format(**params)} ({japanese.format(**params)})"
    return SubjectRuleError(message, rule=rule, field=error_field)


def _field_name(oid: x509.ObjectIdentifier) -> str:
    if oid in _FIELDS:
        return _FIELDS[oid]
    if oid in _OTHER_NAMES:
        return _OTHER_NAMES[oid]
    return x509.NameAttribute(oid, "x").rfc4514_attribute_name


# --------------------------------------------------------------------------- parse / format

_Chars = list[tuple[str, bool]]  # (character, was it backslash-escaped)


def _split_unescaped(text: str) -> list[_Chars]:
    """Split at unescaped commas, keeping escape marks so "\\," stays in the value."""
    parts: list[_Chars] = [[]]
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise _fail("dn-syntax", None, "dn-backslash")
            parts[-1].append((escaped, True))
        elif ch == ",":
            parts.append([])
        else:
            parts[-1].append((ch, False))
    return parts


def _strip(part: _Chars) -> str:
    """Drop unescaped whitespace at both ends (", O=…" is common); keep escaped spaces."""
    start, end = 0, len(part)
    while start < end and not part[start][1] and part[start][0].isspace():
        start += 1
    while end > start and not part[end - 1][1] and part[end - 1][0].isspace():
        end -= 1
    return "".join(ch for ch, _ in part[start:end])


def parse_dn(text: str) -> x509.Name:
    """Parse the UPKI text form, CN first and C last, into an ``x509.Name``.

    Commas inside values are written ``\\,``. The name is built in X.509 order
    (C first), so ``rfc4514_string()`` and ``format_dn`` both show CN first.
    Raises ``SubjectRuleError(rule="dn-syntax", field=None)`` on malformed
    input. A value cryptography itself refuses to build is reported under the
    field's own rule: "country" (C not two letters), "cn-length" (CN over 64).
    Policy (allowed values, whether e-mail is allowed) is ``check_subject``'s.
    """
    if not text.strip():
        raise _fail("dn-syntax", None, "dn-empty")
    attributes: list[x509.NameAttribute] = []
    seen: set[x509.ObjectIdentifier] = set()
    for component in _split_unescaped(text):
        split_at = next((i for i, (ch, esc) in enumerate(component) if ch == "=" and not esc), None)
        if split_at is None:
            raise _fail("dn-syntax", None, "dn-no-equals", part=_strip(component))
        type_name, value = _strip(component[:split_at]), _strip(component[split_at + 1 :])
        oid = _TYPES.get(type_name.upper())
        if oid is None:
            raise _fail("dn-syntax", None, "dn-unknown-type", part=type_name)
        field = _FIELDS[oid]
        if not value:
            raise _fail("dn-syntax", None, "dn-empty-value", field=field)
        if oid in _UNIQUE_IN_TEXT and oid in seen:
            raise _fail("dn-syntax", None, "dn-repeated", field=field)
        seen.add(oid)
        try:
            attributes.append(x509.NameAttribute(oid, value))
        except ValueError as exc:
            # cryptography enforces len(C) == 2 and CN <= 64 when building.
            rule = {"C": "country", "CN": "cn-length"}.get(field)
            if rule is None:
                raise _fail("dn-syntax", None, "dn-rejected", field=field, part=exc) from exc
            raise _fail(rule, field, "dn-rejected", part=exc) from exc
    attributes.reverse()  # the text is CN first; X.509 order is C first
    return x509.Name(attributes)


def _escape(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(",", "\\,")
    # parse_dn strips unescaped edge spaces, so escape them to round-trip.
    if value.startswith(" "):
        escaped = "\\" + escaped
    if value.endswith(" ") and len(value) > 1:
        escaped = escaped[:-1] + "\\ "
    return escaped


def format_dn(name: x509.Name) -> str:
    """The UPKI text form, CN first (the reverse of X.509 order)."""
    parts = []
    for rdn in reversed(list(name.rdns)):
        for attribute in rdn:
            value = attribute.value
            text = value if isinstance(value, str) else value.hex()
            parts.append(f"{_field_name(attribute.oid)}={_escape(text)}")
    return ",".join(parts)


# --------------------------------------------------------------------------- rules


def check_subject(
    name: x509.Name,
    rules: SubjectRules,
    *,
    organization: str | None,
    require_cn: bool = True,
    email_allowed: bool = False,
) -> None:
    """Refuse ``name`` if it breaks a subject rule; return None if it passes.

    ``organization`` is the institution's registered name: when given, O must
    equal it exactly. Checks run in a fixed order (structure, C, CN, O, OU,
    L/ST, e-mail) so the same subject always reports the same first fault.
    """
    values: dict[x509.ObjectIdentifier, list[str]] = {oid: [] for oid in _FIELDS}
    for rdn in name.rdns:
        if len(rdn) != 1:
            # BR 7.1.4: one attribute per RDN; the text form cannot show more either.
            raise _fail("multi-valued-rdn", None)
        for attribute in rdn:
            field = _field_name(attribute.oid)
            if attribute.oid not in _FIELDS:
                raise _fail("attribute-not-allowed", field)
            value = attribute.value
            if not isinstance(value, str) or _CONTROL.search(value):
                raise _fail("control-character", field)
            values[attribute.oid].append(value)

    _check_country(values[NameOID.COUNTRY_NAME], rules)
    _check_cn(values[NameOID.COMMON_NAME], require_cn)
    _check_organization(values[NameOID.ORGANIZATION_NAME], rules, organization)
    _check_ou(values[NameOID.ORGANIZATIONAL_UNIT_NAME], rules)
    _check_place(values[NameOID.LOCALITY_NAME], values[NameOID.STATE_OR_PROVINCE_NAME], rules)
    _check_email(values[NameOID.EMAIL_ADDRESS], email_allowed)


def _at_most_once(found: list[str], field: str) -> None:
    if len(found) > 1:
        raise _fail("attribute-repeated", field)


def _first_outside(value: str, allowed: re.Pattern[str]) -> str | None:
    """The first character of ``value`` that ``allowed`` (one-character class) refuses."""
    return next((ch for ch in value if not allowed.fullmatch(ch)), None)


def _check_country(found: list[str], rules: SubjectRules) -> None:
    if len(found) != 1 or found[0] != rules.country:
        raise _fail("country", "C", part=rules.country)


def _check_cn(found: list[str], require_cn: bool) -> None:
    if not found:
        if require_cn:
            raise _fail("cn-missing", "CN")
        return
    _at_most_once(found, "CN")
    cn = found[0]
    if not 1 <= len(cn) <= _CN_MAX:
        raise _fail("cn-length", "CN")
    bad = _first_outside(cn, _CN_CHAR)
    if bad is not None:
        raise _fail("cn-charset", "CN", part=bad)
    # A wildcard is only ever the whole leftmost label ("*.example.ac.jp").
    rest = cn[2:] if cn.startswith("*.") else cn
    if "*" in rest or not rest:
        raise _fail("cn-charset", "CN", "cn-wildcard")
    if not rest[0].isalnum():  # ASCII already, by the charset check
        raise _fail("cn-leading-symbol", "CN")
    pair = _CONSECUTIVE_SYMBOLS.search(rest)
    if pair is not None:
        raise _fail("cn-consecutive-symbols", "CN", part=pair.group())


def _check_organization(found: list[str], rules: SubjectRules, organization: str | None) -> None:
    if not found:
        if rules.require_organization:
            raise _fail("o-missing", "O")
        return
    _at_most_once(found, "O")
    o = found[0]
    # Mismatch first: the fix is to copy the registered name, which also fixes
    # any length or character problem.
    if organization is not None and o != organization:
        raise _fail("o-mismatch", "O", expected=organization, part=o)
    if not 1 <= len(o) <= _O_MAX:
        raise _fail("o-length", "O")
    bad = _first_outside(o, _OU_CHAR)
    if bad is not None:
        raise _fail("o-charset", "O", part=bad)


def _check_ou(found: list[str], rules: SubjectRules) -> None:
    if not found:
        return
    if not rules.allow_ou:
        raise _fail("ou-forbidden", "OU")
    if len(found) > rules.max_ou:
        raise _fail("ou-too-many", "OU", part=rules.max_ou)
    for ou in found:
        if not 1 <= len(ou) <= _OU_MAX:
            raise _fail("ou-length", "OU")
        bad = _first_outside(ou, _OU_CHAR)
        if bad is not None:
            raise _fail("ou-charset", "OU", part=bad)
        # After the charset check, so "情報" is reported as a charset problem.
        if not any(ch.isalnum() for ch in ou):
            raise _fail("ou-only-symbols", "OU")


def _check_place(localities: list[str], states: list[str], rules: SubjectRules) -> None:
    if rules.require_locality_or_state and not localities and not states:
        raise _fail("l-or-st-missing", "L")
    if localities:
        _at_most_once(localities, "L")
        locality = localities[0]
        # Case-insensitive: "ACADEME" is the same placeholder.
        if locality.casefold() in {p.casefold() for p in rules.forbidden_localities}:
            raise _fail("l-placeholder", "L", part=locality)
        if _first_outside(locality, _L_CHAR) is not None or not 1 <= len(locality) <= _L_MAX:
            raise _fail("l-charset", "L", part=locality)
    if states:
        _at_most_once(states, "ST")
        state = states[0]
        if normalise_prefecture(state) is None:
            guess = suggest_prefecture(state)
            expected = f"; did you mean {guess}?" if guess else ", e.g. Tokyo"
            expected_ja = f"。「{guess}」ではありませんか" if guess else "（例: Tokyo）"
            raise _fail(
                "st-prefecture", "ST", part=state, expected=expected, expected_ja=expected_ja
            )


def _check_email(found: list[str], email_allowed: bool) -> None:
    if not found:
        return
    if not email_allowed:
        raise _fail("email-forbidden", "emailAddress")
    _at_most_once(found, "emailAddress")
    if not _EMAIL.fullmatch(found[0]):
        raise _fail("email-charset", "emailAddress")
