"""Text as parsers give it: decoding plain-text bytes, splitting form feeds, tidying layout text."""

from __future__ import annotations

import re

from ieflow.documents.parsed import ParseError


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM allowed) or BOM-marked UTF-16, newlines normalized. Anything else is an error:
    guessing a legacy encoding silently garbles names and amounts, which is worse than asking."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"text is not UTF-8 (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "re-save it as UTF-8"
            ) from exc
    if "\x00" in text:
        raise ParseError("binary content, not text (it contains NUL bytes)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_form_feeds(text: str) -> list[str]:
    return text.split("\f") if "\f" in text else [text]


_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACES = re.compile(r"[ \t]+$", re.MULTILINE)


def clean_layout(text: str) -> str:
    """Keep layout mode's columns and indentation, drop its trailing padding and blank-line runs."""
    text = _TRAILING_SPACES.sub("", text.replace("\r\n", "\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")
