"""The 47 prefectures and the romanisations accepted for the subject ST attribute.

Applicants (UPKI and otherwise) spell prefecture names in several real
romanisation systems. We accept those variants and map them to one canonical
spelling: macron-less Hepburn with the usual capitalisation ("Tokyo",
"Hyogo"), which is how certificates should read.

Accepted for each prefecture, and nothing else:

- macron-less Hepburn: ``Tokyo``, ``Osaka``, ``Kochi``;
- long vowels written as in kana (wapuro style): ``Toukyou`` (とうきょう),
  ``Oosaka`` (おおさか), ``Kouchi`` (こうち);
- long vowels written doubled: ``Tookyoo``, ``Koochi``;
- Kunrei-shiki consonants (shi→si, chi→ti, tsu→tu, fu→hu, ji→zi) combined with
  each of the above, with the circumflex dropped: ``Kôti`` → ``Koti``/``Kouti``;
- traditional Hepburn ``Gumma`` (n before m written m).

Long vowels are written the same way throughout one name: mixed forms such as
``Toukyo`` belong to no system and are refused. The "-to/-fu/-ken/-do" suffix
is never accepted ("Tokyo-to" is refused), and matching is case-sensitive:
only the capitalised form (first letter upper, rest lower) is accepted, so
that what the certificate says is predictable. ``suggest_prefecture`` gives
the lenient "did you mean" guess for error messages; it never approves.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prefecture:
    name: str  # canonical spelling, macron-less Hepburn
    accepted: frozenset[str]  # every accepted spelling, including ``name``
    code: int  # JIS X 0401 prefecture code, 1..47


# (JIS X 0401 code, marked spelling, extra spellings).
# In the marked spelling "[ou]" is a long o written おう in kana and "[oo]" one
# written おお: the kana decides the wapuro form (Toukyou but Oosaka).
_TABLE: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "Hokkaid[ou]", ()),
    (2, "Aomori", ()),
    (3, "Iwate", ()),
    (4, "Miyagi", ()),
    (5, "Akita", ()),
    (6, "Yamagata", ()),
    (7, "Fukushima", ()),
    (8, "Ibaraki", ()),
    (9, "Tochigi", ()),
    (10, "Gunma", ("Gumma",)),  # traditional Hepburn, still on old documents
    (11, "Saitama", ()),
    (12, "Chiba", ()),
    (13, "T[ou]ky[ou]", ()),
    (14, "Kanagawa", ()),
    (15, "Niigata", ()),  # the ii is two kana (にい), not a long vowel: no variants
    (16, "Toyama", ()),
    (17, "Ishikawa", ()),
    (18, "Fukui", ()),
    (19, "Yamanashi", ()),
    (20, "Nagano", ()),
    (21, "Gifu", ()),
    (22, "Shizuoka", ()),
    (23, "Aichi", ()),
    (24, "Mie", ()),
    (25, "Shiga", ()),
    (26, "Ky[ou]to", ()),
    (27, "[Oo]saka", ()),
    (28, "Hy[ou]go", ()),
    (29, "Nara", ()),
    (30, "Wakayama", ()),
    (31, "Tottori", ()),
    (32, "Shimane", ()),
    (33, "Okayama", ()),
    (34, "Hiroshima", ()),
    (35, "Yamaguchi", ()),
    (36, "Tokushima", ()),
    (37, "Kagawa", ()),
    (38, "Ehime", ()),
    (39, "K[ou]chi", ()),
    (40, "Fukuoka", ()),
    (41, "Saga", ()),
    (42, "Nagasaki", ()),
    (43, "Kumamoto", ()),
    (44, "[Oo]ita", ()),
    (45, "Miyazaki", ()),
    (46, "Kagoshima", ()),
    (47, "Okinawa", ()),
)

_LONG_VOWEL = re.compile(r"\[(ou|oo|Oo)\]")

# Hepburn → Kunrei-shiki for the syllables that occur in prefecture names.
# The i-row comes first so that "shi" is not half-rewritten by "sh" + vowel.
_KUNREI: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile("shi"), "si"),
    (re.compile("chi"), "ti"),
    (re.compile("tsu"), "tu"),
    (re.compile("fu"), "hu"),
    (re.compile("ji"), "zi"),
    (re.compile("sh([auo])"), r"sy\1"),
    (re.compile("ch([auo])"), r"ty\1"),
    (re.compile("j([auo])"), r"zy\1"),
)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:].lower()


def _long_vowel_forms(marked: str) -> set[str]:
    """Plain, kana-faithful and doubled forms, one style per whole name."""
    plain = _LONG_VOWEL.sub(lambda m: m.group(1)[0], marked)
    kana = _LONG_VOWEL.sub(lambda m: m.group(1), marked)
    doubled = _LONG_VOWEL.sub(lambda m: m.group(1)[0] + "o", marked)
    return {_capitalise(plain), _capitalise(kana), _capitalise(doubled)}


def _kunrei(hepburn: str) -> str:
    text = hepburn.lower()
    for pattern, replacement in _KUNREI:
        text = pattern.sub(replacement, text)
    return _capitalise(text)


def _build() -> tuple[Prefecture, ...]:
    prefectures = []
    for code, marked, extras in _TABLE:
        forms = _long_vowel_forms(marked)
        forms |= {_kunrei(form) for form in forms}
        forms |= set(extras)
        canonical = _capitalise(_LONG_VOWEL.sub(lambda m: m.group(1)[0], marked))
        prefectures.append(Prefecture(name=canonical, accepted=frozenset(forms), code=code))
    return tuple(prefectures)


PREFECTURES: tuple[Prefecture, ...] = _build()

# Exact spelling → canonical name. Built once; tests check no spelling is shared.
_BY_SPELLING: dict[str, str] = {
    spelling: prefecture.name for prefecture in PREFECTURES for spelling in prefecture.accepted
}
# Case-folded spelling → canonical name, only for suggestions.
_BY_FOLDED: dict[str, str] = {spelling.casefold(): name for spelling, name in _BY_SPELLING.items()}

# Suffixes people add to the name; stripped only when guessing a suggestion.
_SUFFIXES = ("prefecture", "metropolis", "ken", "fu", "to", "do")


def normalise_prefecture(value: str) -> str | None:
    """The canonical spelling if ``value`` is an accepted romanisation, else None.

    Exact and case-sensitive: ``"Toukyou"`` → ``"Tokyo"``, ``"TOKYO"`` → None.
    """
    return _BY_SPELLING.get(value)


def suggest_prefecture(value: str) -> str | None:
    """A lenient guess at the prefecture meant, for "did you mean" messages.

    Ignores case, spaces, hyphens, diacritics (Tōkyō, Hyôgo) and a trailing
    -to/-fu/-ken/-do or "Prefecture". Never use this to accept a value.
    """
    decomposed = unicodedata.normalize("NFKD", value)
    key = "".join(ch for ch in decomposed if ch.isalpha() and not unicodedata.combining(ch))
    key = key.casefold()
    if not key:
        return None
    if key in _BY_FOLDED:
        return _BY_FOLDED[key]
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and key[: -len(suffix)] in _BY_FOLDED:
            return _BY_FOLDED[key[: -len(suffix)]]
    return None
