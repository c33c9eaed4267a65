"""The prefecture table: 47 entries, JIS X 0401 codes, accepted romanisations."""

from __future__ import annotations

import pytest

from kakuin.policy.prefectures import (
    PREFECTURES,
    Prefecture,
    normalise_prefecture,
    suggest_prefecture,
)

# JIS X 0401 order, canonical (macron-less Hepburn) spelling.
CANONICAL = [
    "Hokkaido", "Aomori", "Iwate", "Miyagi", "Akita", "Yamagata", "Fukushima",
    "Ibaraki", "Tochigi", "Gunma", "Saitama", "Chiba", "Tokyo", "Kanagawa",
    "Niigata", "Toyama", "Ishikawa", "Fukui", "Yamanashi", "Nagano", "Gifu",
    "Shizuoka", "Aichi", "Mie", "Shiga", "Kyoto", "Osaka", "Hyogo", "Nara",
    "Wakayama", "Tottori", "Shimane", "Okayama", "Hiroshima", "Yamaguchi",
    "Tokushima", "Kagawa", "Ehime", "Kochi", "Fukuoka", "Saga", "Nagasaki",
    "Kumamoto", "Oita", "Miyazaki", "Kagoshima", "Okinawa",
]  # fmt: skip


def test_table_has_47_prefectures_in_jis_order() -> None:
    assert len(PREFECTURES) == 47
    assert [p.code for p in PREFECTURES] == list(range(1, 48))
    assert [p.name for p in PREFECTURES] == CANONICAL
    assert all(isinstance(p, Prefecture) for p in PREFECTURES)


@pytest.mark.parametrize(("code", "name"), list(enumerate(CANONICAL, start=1)))
def test_canonical_name_is_accepted(code: int, name: str) -> None:
    assert normalise_prefecture(name) == name
    prefecture = PREFECTURES[code - 1]
    assert prefecture.code == code
    assert name in prefecture.accepted


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Toukyou", "Tokyo"),  # long vowels as in kana (とうきょう)
        ("Tookyoo", "Tokyo"),  # long vowels doubled
        ("Oosaka", "Osaka"),  # おおさか
        ("Ooita", "Oita"),
        ("Kouchi", "Kochi"),
        ("Koochi", "Kochi"),
        ("Koti", "Kochi"),  # Kunrei Kôti without the circumflex
        ("Kouti", "Kochi"),
        ("Hyougo", "Hyogo"),  # Kunrei Hyôgo
        ("Hyoogo", "Hyogo"),
        ("Hokkaidou", "Hokkaido"),
        ("Hokkaidoo", "Hokkaido"),
        ("Kyouto", "Kyoto"),
        ("Gumma", "Gunma"),  # traditional Hepburn
        ("Tiba", "Chiba"),  # Kunrei
        ("Hukuoka", "Fukuoka"),
        ("Sizuoka", "Shizuoka"),
        ("Gihu", "Gifu"),
        ("Yamaguti", "Yamaguchi"),
        ("Hukusima", "Fukushima"),
    ],
)
def test_variant_normalises_to_canonical(spelling: str, canonical: str) -> None:
    assert normalise_prefecture(spelling) == canonical


@pytest.mark.parametrize(
    "spelling",
    [
        "Tokyo-to",  # suffixes are never accepted
        "Osaka-fu",
        "Kyoto-fu",
        "Hyogo-ken",
        "Hokkaido-do",
        "Tokyoto",
        "Tokyo Prefecture",
        "TOKYO",  # only the capitalised form
        "tokyo",
        " Tokyo",
        "Tokyo ",
        "Tōkyō",  # macrons are not ASCII; certificates read "Tokyo"
        "Hyôgo",
        "Toukyo",  # mixed long-vowel styles belong to no system
        "Ousaka",  # おおさか, never おうさか
        "Tokio",
        "東京都",
        "",
        "Atlantis",
    ],
)
def test_non_romanisation_is_refused(spelling: str) -> None:
    assert normalise_prefecture(spelling) is None


def test_no_spelling_belongs_to_two_prefectures() -> None:
    seen: dict[str, str] = {}
    for prefecture in PREFECTURES:
        for spelling in prefecture.accepted:
            assert spelling not in seen, (spelling, seen.get(spelling), prefecture.name)
            seen[spelling] = prefecture.name


@pytest.mark.parametrize("prefecture", PREFECTURES, ids=lambda p: p.name)
def test_every_accepted_spelling_is_capitalised_ascii(prefecture: Prefecture) -> None:
    for spelling in prefecture.accepted:
        assert spelling.isascii() and spelling.isalpha()
        assert spelling == spelling[0].upper() + spelling[1:].lower()
        assert normalise_prefecture(spelling) == prefecture.name


@pytest.mark.parametrize(
    ("value", "suggestion"),
    [
        ("tokyo", "Tokyo"),
        ("TOKYO", "Tokyo"),
        ("Tokyo-to", "Tokyo"),
        ("Tokyo To", "Tokyo"),
        ("Osaka-fu", "Osaka"),
        ("Hyogo Prefecture", "Hyogo"),
        ("Hyogo-ken", "Hyogo"),
        ("Tōkyō", "Tokyo"),
        ("Hyôgo", "Hyogo"),
        ("toukyou-to", "Tokyo"),
        ("Atlantis", None),
        ("", None),
        ("東京都", None),
    ],
)
def test_suggestion(value: str, suggestion: str | None) -> None:
    assert suggest_prefecture(value) == suggestion
