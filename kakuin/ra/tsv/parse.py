"""Decoding and splitting a TSV file, and the checks every column gets
(required, length, characters, reserved-must-be-empty), with errors that name
the row, the column and the rule in Japanese and English."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from kakuin.errors import KakuinError
from kakuin.ra.tsv.formats import FORMATS, Charset, Column, TSVKind, kind_for_columns


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1-based line number; 0 for the whole file
    column: int | None  # 1-based column number, None for the whole row
    rule: str
    message_ja: str
    message_en: str

    def __str__(self) -> str:
        where_ja = f"{self.row}行目" + (f" {self.column}列目" if self.column else "")
        where_en = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where_ja}: {self.message_ja} / {where_en}: {self.message_en} [{self.rule}]"

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "rule": self.rule, "ja": self.message_ja, "en": self.message_en}


class TSVRefused(KakuinError):
    """The file (or, row by row, every row) was refused; ``errors`` say why."""

    code = "tsv"

    def __init__(self, errors: list[RowError]) -> None:
        first = str(errors[0]) if errors else "refused"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)
        self.errors = errors


# rule → (Japanese, English); {col_ja}/{col_en} name the column.
MESSAGES: dict[str, tuple[str, str]] = {
    "encoding": ("文字コードをShift_JISまたはUTF-8として読み取れません", "the file is neither Shift_JIS nor UTF-8"),
    "empty-file": ("申請が1行もありません", "the file holds no request"),
    "empty-row": ("空行があります", "the line is empty"),
    "unknown-kind": ("列数{count}のTSVの種類を判別できません", "cannot tell the kind of a TSV with {count} columns"),
    "column-count": (
        "列数が{count}です。{expected}列必要です(項目内にタブは使用できません)",
        "has {count} columns, {expected} expected (fields cannot contain tabs)",
    ),
    "quoted": ("{col_ja}をダブルクォートで囲むことはできません", "{col_en} must not be quoted"),
    "required": ("{col_ja}は必須です", "{col_en} is required"),
    "too-long": ("{col_ja}は{max}文字以内で指定してください", "{col_en} is longer than {max} characters"),
    "charset": (
        "{col_ja}に使用できない文字が含まれています: {ch}",
        "{col_en} contains a character that is not allowed: {ch}",
    ),
    "reserved": (
        "{col_ja}(#{no})は予約済みです。何も入力しないでください",
        "{col_en} (#{no}) is reserved and must be empty",
    ),
    "email-charset": (
        "{col_ja}に使える記号はハイフン「-」、アンダースコア「_」、アットマーク「@」、ピリオド「.」のみです",
        "{col_en} may use only - _ @ . as symbols",
    ),
}


def error(row: int, column: Column | int | None, rule: str, **params: object) -> RowError:
    col = column if isinstance(column, Column) else None
    if col is not None:
        params.setdefault("col_ja", col.name_ja)
        params.setdefault("col_en", col.name_en)
        params.setdefault("no", col.no)
    ja, en = MESSAGES[rule]
    no = col.no if col is not None else column if isinstance(column, int) else None
    return RowError(row, no, rule, ja.format(**params), en.format(**params))


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 with a BOM, else UTF-8 if it decodes, else
    Shift_JIS (Windows' cp932, which Excel writes). Raises TSVRefused naming the
    first line neither can read."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            pass
    else:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
        try:
            return data.decode("cp932"), "shift_jis"
        except UnicodeDecodeError:
            pass
    for n, line in enumerate(data.split(b"\n"), start=1):
        for enc in ("utf-8", "cp932"):
            try:
                line.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise TSVRefused([error(n, None, "encoding")])
    raise TSVRefused([error(1, None, "encoding")])  # mixed encodings across lines


@dataclass(frozen=True, slots=True)
class RawRow:
    no: int
    fields: dict[str, str]


_ASCII = re.compile(r"[\x20-\x7e]")
_EMAIL_CHAR = re.compile(r"[A-Za-z0-9\-_@.]")
_HEX = re.compile(r"(0x)?[0-9a-fA-F:]+")


def _bad_char(value: str, charset: Charset) -> str | None:
    if charset is Charset.TEXT:
        for ch in value:
            if ord(ch) < 0x20 or ord(ch) == 0x7F:
                return repr(ch)
            try:
                ch.encode("cp932")
            except UnicodeEncodeError:
                return ch
        return None
    if charset is Charset.DIGITS:
        return next((ch for ch in value if not ch.isascii() or not ch.isdigit()), None)
    if charset is Charset.HEX:
        return None if _HEX.fullmatch(value) else next((c for c in value if not _HEX.fullmatch(c)), value[:1])
    for ch in value:
        if not _ASCII.fullmatch(ch):
            return ch if ch.isprintable() else repr(ch)
    return None


def check_field(row: int, col: Column, value: str) -> RowError | None:
    if col.charset is Charset.RESERVED:
        return error(row, col, "reserved") if value != "" else None
    if value == "":
        return error(row, col, "required") if col.required else None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return error(row, col, "quoted")
    if len(value) > col.max_len:
        return error(row, col, "too-long", max=col.max_len)
    if col.charset is Charset.EMAIL:
        if next((c for c in value if not _EMAIL_CHAR.fullmatch(c)), None) is not None:
            return error(row, col, "email-charset")
        return None
    bad = _bad_char(value, col.charset)
    if bad is not None:
        return error(row, col, "charset", ch=bad)
    return None


def split(text: str, kind: TSVKind | None) -> tuple[TSVKind, list[RawRow], list[RowError]]:
    """Split into rows and fields, checking column counts and every field's
    length, characters and emptiness. Returns the rows that passed and the errors."""
    lines = text.split("\n")
    while lines and lines[-1].strip("\r") == "":
        lines.pop()  # the optional final newline (and trailing blank lines)
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not lines:
        raise TSVRefused([error(0, None, "empty-file")])
    if kind is None:
        first = lines[0].split("\t")
        guessed = kind_for_columns(len(first), first[3] if len(first) > 3 else "")
        if guessed is None:
            raise TSVRefused([error(1, None, "unknown-kind", count=len(first))])
        kind = guessed
    columns = FORMATS[kind]
    rows: list[RawRow] = []
    errors: list[RowError] = []
    for n, line in enumerate(lines, start=1):
        if line.strip() == "":
            errors.append(error(n, None, "empty-row"))
            continue
        values = line.split("\t")
        if len(values) != len(columns):
            errors.append(error(n, None, "column-count", count=len(values), expected=len(columns)))
            continue
        row_errors = [e for c, v in zip(columns, values, strict=True) if (e := check_field(n, c, v))]
        if row_errors:
            errors.extend(row_errors)
            continue
        rows.append(RawRow(n, {c.key: v for c, v in zip(columns, values, strict=True)}))
    return kind, rows, errors


def format_row(kind: TSVKind, values: dict[str, str]) -> str:
    """One line of a ``kind`` TSV from column values by key (missing: empty)."""
    return "\t".join(values.get(c.key, "") for c in FORMATS[kind])
