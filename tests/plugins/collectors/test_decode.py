import codecs

import pytest

from lmforge.plugins.collectors import _decode

FRENCH = "Café crème brûlée\n\nOur café serves crème brûlée, crêpes and a café au lait every morning.\n"
ENGLISH = "Café crème brûlée\n" + "It was a quiet evening in the small town, and the people walked slowly along the river.\n" * 10


@pytest.mark.parametrize("text", [FRENCH, ENGLISH], ids=["tie", "less_messy"])
def test_latin1_text_is_read_as_windows_1252(text):
    """cp1250, cp1257 and cp775 score as well or nearly; windows-1252 wins the tie."""
    assert _decode.decode(text.encode("latin-1")) == text


@pytest.mark.parametrize("text, encoding", [
    ("Zażółć gęślą jaźń. Wczoraj poszliśmy do sklepu, żeby kupić chleb i masło.\n" * 3, "cp1250"),
    ("Labas rytas, kaip sekasi? Šiandien graži diena, einame į parką žaisti.\n" * 3, "cp1257"),
])
def test_other_single_byte_encodings_still_win_when_they_fit_better(text, encoding):
    assert _decode.decode(text.encode(encoding)) == text


def test_a_bom_then_a_declared_charset_then_utf8_decide_before_detection():
    assert _decode.decode(codecs.BOM_UTF16_LE + "naïve".encode("utf-16-le")) == "naïve"
    assert _decode.decode("naïve".encode("cp1252"), ["iso-8859-1"]) == "naïve"
    assert _decode.decode("naïve".encode("utf-8"), ["bogus", None]) == "naïve"


def test_binary_and_strict_utf8():
    assert _decode.looks_binary(b"ab\x00cd") and not _decode.looks_binary(b"abcd")
    assert _decode.utf8(codecs.BOM_UTF8 + b"x") == "x" and _decode.utf8(b"caf\xe9") is None
