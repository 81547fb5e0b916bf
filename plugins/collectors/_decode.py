"""Bytes of unknown encoding to text, the same way in every collector.

The order: a byte-order mark wins, then each declared charset the bytes decode under (an
HTTP header, a meta tag), then UTF-8, then detection by charset-normalizer. Standard
library only until detection is needed, so importing it stays cheap.
"""

from __future__ import annotations

import codecs
from typing import Iterable

BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
# Browsers read these labels as windows-1252 (WHATWG Encoding), and so do real pages.
AS_CP1252 = {"latin_1", "ascii", "cp1252"}
SNIFF_BYTES = 8192  # NUL bytes in this much of the start mean binary, as git decides


def looks_binary(raw: bytes) -> bool:
    """NUL bytes near the start: a binary file, not text in any 8-bit encoding."""
    return b"\x00" in raw[:SNIFF_BYTES]


def codec(label: str | None) -> str | None:
    """Python's name for a charset label, or None for an unknown or empty one."""
    try:
        return codecs.lookup(label.strip()).name if label else None
    except LookupError:
        return None


def utf8(raw: bytes) -> str | None:
    """UTF-8 text, with or without a BOM, or None: for inputs that must be UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def decode(raw: bytes, declared: Iterable[str | None] = ()) -> str | None:
    """The text of ``raw``, or None when no encoding fits.

    A declared charset the bytes do not decode under is ignored rather than trusted;
    Latin-1, ASCII and windows-1252 labels are read as windows-1252, as browsers do.
    """
    for bom, name in BOMS:
        if raw.startswith(bom):
            return raw[len(bom):].decode(name, errors="replace")
    for name in filter(None, map(codec, declared)):
        text = _decode_as(raw, name)
        if text is not None:
            return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    name = detect(raw)
    return raw.decode(name, errors="replace") if name else None


def detect(raw: bytes) -> str | None:
    """The encoding charset-normalizer finds for ``raw``, windows-1252 winning a tie; or None.

    Single-byte Latin encodings often tie on a short text: "Café crème" reads the same
    under cp1250, cp1252, cp1257 and iso8859-10 as far as charset-normalizer can tell, and
    its ``best()`` picks cp1250, turning "crème" into "crčme". windows-1252 is by far the
    most common of them, so it wins when it scores as well as the best, or is less messy
    (charset-normalizer lets coherence decide between small differences in mess).
    """
    from charset_normalizer import from_bytes

    results = from_bytes(raw)
    best = results.best()
    if best is None:
        return None
    for r in results:
        if r.encoding == "cp1252" and (r.chaos < best.chaos or (r.chaos, r.coherence) == (best.chaos, best.coherence)):
            return "cp1252"
    return best.encoding


def _decode_as(raw: bytes, name: str) -> str | None:
    if name in AS_CP1252:
        if any(b > 0x7F for b in raw):
            try:  # bytes labelled Latin-1 that are valid UTF-8 are UTF-8: the reverse is vanishingly rare
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    try:
        return raw.decode(name)
    except (UnicodeDecodeError, LookupError):
        return None
