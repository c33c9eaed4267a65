"""TSV decoding and splitting: encodings, line ends, column counts and the
per-column rules, with the exact errors (row, column, rule, Japanese, English)."""

from __future__ import annotations

import pytest

from kakuin.ra.tsv.formats import TSVKind
from kakuin.ra.tsv.parse import RowError, TSVRefused, decode, split

REVOKE = [["1a2b", "4", "入れ替えのため"], ["3c4d", "0", "サーバ廃止"]]


def _file(rows, enc="cp932", nl="\r\n", final=True, bom=False) -> bytes:  # type: ignore[no-untyped-def]
    data = (nl.join("\t".join(r) for r in rows) + (nl if final else "")).encode(enc)
    return b"\xef\xbb\xbf" + data if bom else data


@pytest.mark.parametrize(
    "enc,bom,expected",
    [("cp932", False, "shift_jis"), ("utf-8", False, "utf-8"), ("utf-8", True, "utf-8-sig")],
)
@pytest.mark.parametrize("nl", ["\r\n", "\n"])
@pytest.mark.parametrize("final", [True, False])
def test_encodings_and_line_ends(enc, bom, expected, nl, final) -> None:  # type: ignore[no-untyped-def]
    text, used = decode(_file(REVOKE, enc, nl, final, bom))
    assert used == expected
    kind, rows, errors = split(text, None)
    assert kind is TSVKind.REVOKE and not errors
    assert [r.fields for r in rows] == [
        {"serial": "1a2b", "reason": "4", "comment": "入れ替えのため"},
        {"serial": "3c4d", "reason": "0", "comment": "サーバ廃止"},
    ]
    assert "\r" not in rows[-1].fields["comment"]


def test_undecodable_file_names_the_row() -> None:
    data = _file([["1a2b", "4", "ok"]], "utf-8") + b"3c4d\t4\t\x81\x20\r\n"
    with pytest.raises(TSVRefused) as e:
        decode(data)
    assert e.value.errors == [
        RowError(
            2,
            None,
            "encoding",
            "文字コードをShift_JISまたはUTF-8として読み取れません",
            "the file is neither Shift_JIS nor UTF-8",
        )
    ]


def test_tab_in_field_is_a_wrong_column_count() -> None:
    text, _ = decode(_file([["1a2b", "4", "a\tb"]]))
    _, rows, errors = split(text, TSVKind.REVOKE)
    assert not rows
    assert errors == [
        RowError(
            1,
            None,
            "column-count",
            "列数が4です。3列必要です(項目内にタブは使用できません)",
            "has 4 columns, 3 expected (fields cannot contain tabs)",
        )
    ]


def test_wrong_column_count_for_server_issue() -> None:
    _, _, errors = split("\t".join(["x"] * 12), TSVKind.SERVER_ISSUE)
    assert [(e.row, e.column, e.rule) for e in errors] == [(1, None, "column-count")]
    assert errors[0].message_en == "has 12 columns, 13 expected (fields cannot contain tabs)"


def test_reserved_column_filled() -> None:
    row = [
        "CN=a.example.ac.jp,O=X,ST=Tokyo,C=JP",
        "1",
        "",
        "",
        "oops",
        "",
        "csr",
        "n",
        "a",
        "t@example.ac.jp",
        "a.example.ac.jp",
        "nginx",
        "",
    ]
    _, _, errors = split("\t".join(row), TSVKind.SERVER_ISSUE)
    assert errors == [
        RowError(
            1,
            5,
            "reserved",
            "予約済(#5)は予約済みです。何も入力しないでください",
            "reserved (#5) is reserved and must be empty",
        )
    ]


def test_email_with_a_bad_symbol() -> None:
    row = [
        "CN=a.example.ac.jp,O=X,ST=Tokyo,C=JP",
        "1",
        "",
        "",
        "",
        "",
        "csr",
        "n",
        "a",
        "taro+x@example.ac.jp",
        "a.example.ac.jp",
        "nginx",
        "",
    ]
    _, _, errors = split("\t".join(row), TSVKind.SERVER_ISSUE)
    assert errors == [
        RowError(
            1,
            10,
            "email-charset",
            "利用管理者E-mailに使える記号はハイフン「-」、アンダースコア「_」、アットマーク「@」、ピリオド「.」のみです",
            "subscriber e-mail may use only - _ @ . as symbols",
        )
    ]


def test_quoted_field_and_required_and_empty_row() -> None:
    text = '"1a2b"\t4\tx\n\n\t4\tx\n'
    _, rows, errors = split(text, TSVKind.REVOKE)
    assert not rows
    assert [(e.row, e.column, e.rule) for e in errors] == [(1, 1, "quoted"), (2, None, "empty-row"), (3, 1, "required")]
    assert errors[2].message_ja == "失効対象証明書シリアル番号は必須です"


def test_unknown_kind_and_empty_file() -> None:
    with pytest.raises(TSVRefused) as e:
        split("a\tb\n", None)
    assert e.value.errors[0].rule == "unknown-kind"
    with pytest.raises(TSVRefused) as e:
        split("\r\n", None)
    assert e.value.errors[0].rule == "empty-file"


def test_full_width_characters_outside_shift_jis_are_refused() -> None:
    _, _, errors = split("1a2b\t4\t絵文字😀\n", TSVKind.REVOKE)
    assert [(e.column, e.rule) for e in errors] == [(3, "charset")]
    assert "😀" in errors[0].message_ja
