"""Subject DN rules: each rule refuses with its id and field, good DNs pass."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from kakuin.errors import SubjectRuleError
from kakuin.policy.subject import SubjectRules, check_subject, format_dn, parse_dn

ORG = "Example University"
VALID = "CN=www.example.ac.jp,O=Example University,L=Chiyoda-ku,ST=Tokyo,C=JP"
TAIL = "O=Example University,L=Chiyoda-ku,ST=Tokyo,C=JP"  # everything after CN


RULE_FIELDS = set(SubjectRules.__dataclass_fields__)


def check(dn: str | x509.Name, opts: dict[str, Any] | None = None) -> None:
    """check_subject with the defaults most cases want (registered O is ORG).

    ``opts`` mixes SubjectRules fields and check_subject keywords, to keep the
    tables below one line per case.
    """
    opts = dict(opts or {})
    rules = SubjectRules(**{k: opts.pop(k) for k in list(opts) if k in RULE_FIELDS})
    opts.setdefault("organization", ORG)
    check_subject(parse_dn(dn) if isinstance(dn, str) else dn, rules, **opts)


OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}
BASE = (("C", "JP"), ("ST", "Tokyo"), ("L", "Chiyoda-ku"), ("O", ORG))


def build(*pairs: tuple[str | x509.ObjectIdentifier, str]) -> x509.Name:
    """An x509.Name in X.509 order (C first), for shapes parse_dn cannot produce."""
    return x509.Name(
        [x509.NameAttribute(OIDS[k] if isinstance(k, str) else k, v) for k, v in pairs]
    )


def extra(*pairs: tuple[str | x509.ObjectIdentifier, str]) -> x509.Name:
    """BASE plus ``pairs`` plus CN=a.jp."""
    return build(*BASE, *pairs, ("CN", "a.jp"))


NO_ORG = {"organization": None}
EMAIL = {"email_allowed": True}
EX = "O=Example University"  # the registered O, for DNs that vary L/ST/C

# --------------------------------------------------------------------------- passing


@pytest.mark.parametrize(
    ("dn", "opts"),
    [
        (VALID, {}),
        (f"CN=*.example.ac.jp,{TAIL}", {}),
        (f"CN=www-1.example.ac.jp,{TAIL}", {}),
        (f"CN=Taro Yamada (Lab),{TAIL}", {}),
        (f"CN=user_1@example.ac.jp,{TAIL}", {}),
        (f"CN=a.jp,OU=Dept. of CS & Eng: Lab/2,OU=Library,OU=IT,{TAIL}", {}),
        (f"CN=www.example.ac.jp,{EX},L=Chiyoda-ku,C=JP", {}),  # L only
        (f"CN=www.example.ac.jp,{EX},ST=Toukyou,C=JP", {}),  # ST only, a variant
        (f"CN=www.example.ac.jp,{EX},ST=Hyougo,C=JP", {}),
        (f"CN=www.example.ac.jp,{EX},C=JP", {"require_locality_or_state": False}),
        ("CN=www.example.ac.jp,L=Chiyoda-ku,C=JP", {"require_organization": False}),
        ("CN=x.example.jp,O=Any Co.\\, Ltd.,L=Minato-ku,C=JP", NO_ORG),
        (TAIL, {"require_cn": False}),
        (f"E=admin@example.ac.jp,CN=Taro Yamada,{TAIL}", EMAIL),
        (f"emailAddress=a.b-c_d@example.ac.jp,{TAIL}", {**EMAIL, "require_cn": False}),
        (f"CN=www.example.ac.jp,{EX},ST=Tokyo,C=US", {"country": "US"}),
    ],
)
def test_good_subject_passes(dn: str, opts: dict[str, Any]) -> None:
    check(dn, opts)


# --------------------------------------------------------------------------- refusals

SERIAL, STREET, POSTAL = NameOID.SERIAL_NUMBER, NameOID.STREET_ADDRESS, NameOID.POSTAL_CODE
MULTI_VALUED = x509.Name(
    [
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")]),
        x509.RelativeDistinguishedName(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Tokyo"),
            ]
        ),
    ]
)

# (id, dn, opts, rule, field)
REFUSALS: list[tuple[str, str | x509.Name, dict[str, Any], str, str | None]] = [
    ("c-wrong", f"CN=www.example.ac.jp,{EX},ST=Tokyo,C=US", {}, "country", "C"),
    ("c-missing", f"CN=www.example.ac.jp,{EX},ST=Tokyo", {}, "country", "C"),
    ("c-twice", build(("C", "JP"), ("C", "JP"), ("O", ORG), ("CN", "a.jp")), {}, "country", "C"),
    ("cn-missing", TAIL, {}, "cn-missing", "CN"),
    ("cn-twice", build(*BASE, ("CN", "a.jp"), ("CN", "b.jp")), {}, "attribute-repeated", "CN"),
    ("cn-bang", f"CN=www.exa!mple.ac.jp,{TAIL}", {}, "cn-charset", "CN"),
    ("cn-non-ascii", f"CN=東京大学,{TAIL}", {}, "cn-charset", "CN"),
    ("cn-colon", f"CN=www.example.ac.jp:443,{TAIL}", {}, "cn-charset", "CN"),
    ("cn-star-inner", f"CN=www.*.example.ac.jp,{TAIL}", {}, "cn-charset", "CN"),
    ("cn-star-partial", f"CN=a*.example.ac.jp,{TAIL}", {}, "cn-charset", "CN"),
    ("cn-star-alone", f"CN=*,{TAIL}", {}, "cn-charset", "CN"),
    ("cn-star-twice", f"CN=*.*.example.ac.jp,{TAIL}", {}, "cn-charset", "CN"),
    ("cn-lead-dash", f"CN=-www.example.ac.jp,{TAIL}", {}, "cn-leading-symbol", "CN"),
    ("cn-lead-dot", f"CN=.example.ac.jp,{TAIL}", {}, "cn-leading-symbol", "CN"),
    ("cn-lead-space", f"CN=\\ www.example.ac.jp,{TAIL}", {}, "cn-leading-symbol", "CN"),
    ("cn-lead-after-star", f"CN=*.-x.example.ac.jp,{TAIL}", {}, "cn-leading-symbol", "CN"),
    ("cn-dot-dot", f"CN=www..example.ac.jp,{TAIL}", {}, "cn-consecutive-symbols", "CN"),
    ("cn-dot-dash", f"CN=www.-example.ac.jp,{TAIL}", {}, "cn-consecutive-symbols", "CN"),
    ("cn-dash-dash", f"CN=www--1.example.ac.jp,{TAIL}", {}, "cn-consecutive-symbols", "CN"),
    ("cn-under-under", f"CN=a__b.example.ac.jp,{TAIL}", {}, "cn-consecutive-symbols", "CN"),
    ("o-missing", "CN=www.example.ac.jp,L=Chiyoda-ku,C=JP", {}, "o-missing", "O"),
    ("o-mismatch", "CN=a.jp,O=Other University,ST=Tokyo,C=JP", {}, "o-mismatch", "O"),
    ("o-twice", extra(("O", ORG)), {}, "attribute-repeated", "O"),
    ("o-bang", "CN=a.jp,O=Example!,ST=Tokyo,C=JP", NO_ORG, "o-charset", "O"),
    ("o-star", "CN=a.jp,O=Ex*ample,ST=Tokyo,C=JP", NO_ORG, "o-charset", "O"),
    ("o-long", f"CN=a.jp,O={'A' * 65},ST=Tokyo,C=JP", NO_ORG, "o-length", "O"),
    ("ou-forbidden", f"CN=a.jp,OU=IT,{TAIL}", {"allow_ou": False}, "ou-forbidden", "OU"),
    ("ou-too-many", f"CN=a.jp,OU=A,OU=B,OU=C,OU=D,{TAIL}", {}, "ou-too-many", "OU"),
    ("ou-over-max", f"CN=a.jp,OU=A,OU=B,{TAIL}", {"max_ou": 1}, "ou-too-many", "OU"),
    ("ou-long", f"CN=a.jp,OU={'A' * 65},{TAIL}", {}, "ou-length", "OU"),
    ("ou-symbols", f"CN=a.jp,OU=- . -,{TAIL}", {}, "ou-only-symbols", "OU"),
    ("ou-at", f"CN=a.jp,OU=Dept@CS,{TAIL}", {}, "ou-charset", "OU"),
    ("ou-non-ascii", f"CN=a.jp,OU=情報学部,{TAIL}", {}, "ou-charset", "OU"),
    ("l-or-st", f"CN=www.example.ac.jp,{EX},C=JP", {}, "l-or-st-missing", "L"),
    ("l-academe", f"CN=a.jp,{EX},L=Academe,C=JP", {}, "l-placeholder", "L"),
    ("l-academe-case", f"CN=a.jp,{EX},L=ACADEME,C=JP", {}, "l-placeholder", "L"),
    ("l-slash", f"CN=a.jp,{EX},L=Chiyoda/1,C=JP", {}, "l-charset", "L"),
    ("l-non-ascii", f"CN=a.jp,{EX},L=千代田区,C=JP", {}, "l-charset", "L"),
    ("l-long", f"CN=a.jp,{EX},L={'a' * 129},C=JP", {}, "l-charset", "L"),
    ("l-twice", extra(("L", "Minato-ku")), {}, "attribute-repeated", "L"),
    ("st-suffix", f"CN=a.jp,{EX},ST=Tokyo-to,C=JP", {}, "st-prefecture", "ST"),
    ("st-case", f"CN=a.jp,{EX},ST=TOKYO,C=JP", {}, "st-prefecture", "ST"),
    ("st-bogus", f"CN=a.jp,{EX},ST=Atlantis,C=JP", {}, "st-prefecture", "ST"),
    ("st-twice", extra(("ST", "Osaka")), {}, "attribute-repeated", "ST"),
    ("email-forbidden", f"E=a@example.ac.jp,CN=a.jp,{TAIL}", {}, "email-forbidden", "emailAddress"),
    ("email-plus", f"E=a+b@example.ac.jp,CN=a.jp,{TAIL}", EMAIL, "email-charset", "emailAddress"),
    ("email-no-at", f"E=nobody,CN=a.jp,{TAIL}", EMAIL, "email-charset", "emailAddress"),
    ("serial", extra((SERIAL, "1")), {}, "attribute-not-allowed", "serialNumber"),
    ("street", extra((STREET, "1-1")), {}, "attribute-not-allowed", "street"),
    ("postal", extra((POSTAL, "100-0001")), {}, "attribute-not-allowed", "postalCode"),
    ("ctrl-tab", "CN=a.jp,O=Example\tUniversity,ST=Tokyo,C=JP", NO_ORG, "control-character", "O"),
    ("ctrl-del", f"CN=a.jp,{EX},L=Chiyoda\x7fku,C=JP", {}, "control-character", "L"),
    ("ctrl-nul", f"CN=a\x00.jp,{TAIL}", {}, "control-character", "CN"),
    ("multi-valued", MULTI_VALUED, {}, "multi-valued-rdn", None),
]


@pytest.mark.parametrize(
    ("dn", "opts", "rule", "field"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_bad_subject_is_refused(
    dn: str | x509.Name, opts: dict[str, Any], rule: str, field: str | None
) -> None:
    with pytest.raises(SubjectRuleError) as caught:
        check(dn, opts)
    assert (caught.value.rule, caught.value.field) == (rule, field)
    # English first, Japanese in parentheses.
    assert caught.value.message.endswith(")") and " (" in caught.value.message


def test_mismatch_message_names_both_organizations() -> None:
    with pytest.raises(SubjectRuleError) as caught:
        check("CN=a.example.ac.jp,O=Other University,ST=Tokyo,C=JP")
    assert "Other University" in caught.value.message
    assert ORG in caught.value.message


@pytest.mark.parametrize(("value", "hint"), [("Tokyo-to", "Tokyo"), ("OSAKA", "Osaka")])
def test_prefecture_refusal_suggests_spelling(value: str, hint: str) -> None:
    with pytest.raises(SubjectRuleError) as caught:
        check(f"CN=a.jp,O=Example University,ST={value},C=JP")
    assert f"did you mean {hint}?" in caught.value.message


def test_ou_forbidden_even_within_max() -> None:
    # TLS profiles: BR 7.1.2.7.2 forbids OU altogether.
    with pytest.raises(SubjectRuleError) as caught:
        check(f"CN=a.jp,OU=IT,{TAIL}", {"allow_ou": False, "max_ou": 3})
    assert caught.value.rule == "ou-forbidden"


# --------------------------------------------------------------------------- parse / format


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "CN=www.example.ac.jp,O",  # no '='
        "CN=www.example.ac.jp,,C=JP",  # empty component
        "CN=www.example.ac.jp,C=JP,",  # trailing comma
        "XX=foo,C=JP",  # unknown type
        "serialNumber=1,C=JP",  # not a type the text form knows
        "CN=a.jp,CN=b.jp,C=JP",
        "CN=a.jp,O=A,O=B,C=JP",
        "CN=a.jp,C=JP,C=JP",
        "CN=,C=JP",  # empty value
        "CN=a.jp\\",  # lone trailing backslash
    ],
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(SubjectRuleError) as caught:
        parse_dn(text)
    assert (caught.value.rule, caught.value.field) == ("dn-syntax", None)


@pytest.mark.parametrize(
    ("text", "rule", "field"),
    [("CN=a.jp,C=JPN", "country", "C"), (f"CN={'a' * 65},{TAIL}", "cn-length", "CN")],
)
def test_parse_reports_values_cryptography_refuses(text: str, rule: str, field: str) -> None:
    with pytest.raises(SubjectRuleError) as caught:
        parse_dn(text)
    assert (caught.value.rule, caught.value.field) == (rule, field)


def test_parse_builds_x509_order() -> None:
    name = parse_dn(VALID)
    oids = [attribute.oid for attribute in name]
    assert oids == [OIDS[k] for k in ("C", "ST", "L", "O", "CN")]
    assert name.rfc4514_string() == VALID


def test_parse_unescapes_and_trims() -> None:
    name = parse_dn("cn = www.example.ac.jp , OU=Dept\\, of CS, o=Example University ,c=JP")
    assert name.get_attributes_for_oid(OIDS["OU"])[0].value == "Dept, of CS"
    assert name.get_attributes_for_oid(OIDS["CN"])[0].value == "www.example.ac.jp"
    assert name.get_attributes_for_oid(OIDS["O"])[0].value == ORG


@pytest.mark.parametrize("type_name", ["E", "emailAddress", "EMAILADDRESS"])
def test_parse_email_type_names(type_name: str) -> None:
    name = parse_dn(f"{type_name}=a@example.ac.jp,C=JP")
    assert name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == "a@example.ac.jp"


@pytest.mark.parametrize(
    "text",
    [
        VALID,
        f"CN=*.example.ac.jp,OU=Dept\\, of CS,OU=Library,{TAIL}",
        f"emailAddress=a@example.ac.jp,CN=Taro Yamada,{TAIL}",
        "CN=back\\\\slash,O=\\ edge spaces\\ ,C=JP",
        "CN=x.jp,C=JP",
    ],
)
def test_round_trip(text: str) -> None:
    name = parse_dn(text)
    assert format_dn(name) == text
    assert parse_dn(format_dn(name)) == name


def test_format_names_unknown_attributes() -> None:
    name = build(("C", "JP"), (NameOID.SERIAL_NUMBER, "42"), ("CN", "a.jp"))
    assert format_dn(name) == "CN=a.jp,serialNumber=42,C=JP"
