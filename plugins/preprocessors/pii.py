"""``pii``: personal data and credentials replaced by placeholders.

Kinds, each replaced by its placeholder and counted as ``stats["pii:<kind>"]``; a
document that had any also records ``meta["pii"] = {kind: count}``:

``secret`` -> ``<SECRET>``
    Private key blocks, AWS access key ids, GitHub, Slack, Stripe and Google API
    tokens, ``Bearer`` tokens, and values assigned to key-like names
    (``api_key = "..."``, ``"client_secret": "..."``, ``PASSWORD=...``). Only the
    value is replaced, so ``api_key=<SECRET>`` keeps the code readable.
``email`` -> ``<EMAIL>``
``ip`` -> ``<IP>``
    IPv4 in dotted quads and IPv6 (checked by ``ipaddress``). Three-part version
    numbers (``3.11.7``) are no IPv4 address; a four-part one is.
``card`` -> ``<CARD>``
    13 to 19 digits, optionally grouped by spaces or dashes, with the prefix and length
    of a major card network, passing the Luhn check.
``phone`` -> ``<PHONE>``
    International numbers (``+44 20 7946 0958``), North American ones
    (``(555) 123-4567``, ``555-123-4567``) and national ones with a trunk 0
    (``020 7946 0958``): 7 to 15 digits. Bare digit runs and anything shaped like a
    date (``2024-01-31``, ``31.01.2024``) are left alone.

Regular expressions are fast and predictable but not exhaustive: they favour precision
on code and prose over catching every format.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List

from lmforge import hookimpl
from lmforge.contracts import Document, Preprocessor

KINDS = ("secret", "email", "ip", "card", "phone")  # the order they are replaced in

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b")

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d|\w)")
# candidates only; ipaddress decides
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")

CARD = re.compile(r"(?<![\d.-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d-]|\.\d)")

_SEP = r"[ .-]"
PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    rf"\+\d{{1,3}}{_SEP}?\(?\d{{1,4}}\)?(?:{_SEP}?\(?\d{{2,4}}\)?){{1,5}}"  # +44 20 7946 0958, +1 (555) 123-4567
    rf"|(?:\(\d{{3}}\)\s?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}"  # (555) 123-4567, 555.123.4567
    rf"|\(?0\d{{1,4}}\)?(?:{_SEP}\d{{2,4}}){{2,4}}"  # 020 7946 0958, 06 12 34 56 78
    r")(?![\w-]|\.\d)"
)
# what a phone candidate must not start with or be: a numeric date, a dotted quad
NOT_PHONE = re.compile(r"\d{4}([./-])\d{1,2}\1\d{1,2}|\d{1,2}([./-])\d{1,2}\2(?:\d{4}|\d{2})(?!\d)|\d{1,3}(?:\.\d{1,3}){3}$|\+?\d+\.\d+$")
# words before a dotted number that make it a version, not an IPv4 address
VERSION_CONTEXT = re.compile(r"(?i)\b(?:v|version|release|build|python|ver\.?)\s*$")

PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----.*?-----END \1PRIVATE KEY\2-----", re.DOTALL
)
TOKENS = re.compile(
    r"\b(?:"
    r"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r")\b"
)
BEARER = re.compile(r"(?<=\b[Bb]earer )[A-Za-z0-9._~+/-]{16,}=*")
# a key-like word, assignment, optional quote, value: "api_key = 'abc'", "SECRET_KEY: abc", '"token": "abc"'
ASSIGNED = re.compile(
    r"""(?ix)
    (?P<name>(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|access[_-]?key|private[_-]?key|auth|credential)[\w-]*)
    ["']?\s*(?::=|=>|[:=])\s*
    (?P<q>["']?)(?P<value>[A-Za-z0-9+/=_.~!@#$%^&*-]{8,})(?P=q)
    (?![\w(\[.])
    """
)
# names whose literal value is a secret whatever it looks like
EXPLICIT = re.compile(r"(?i)api[_-]?key|apikey|api[_-]?secret|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|passw(?:or)?d|pwd")
# YOUR_API_KEY, xxxxxxxx, ********: examples, not secrets
PLACEHOLDER_VALUE = re.compile(r"^(?:[A-Z_]+|[xX]+|(.)\1*)$")
HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass
class PiiConfig:
    kinds: List[str] = field(default_factory=lambda: list(KINDS))
    min_entropy: float = 3.0  # bits per character a value of a key-like name needs to count as a secret
    record_meta: bool = True  # add meta["pii"] = {kind: count} to documents that had any

    def __post_init__(self) -> None:
        if unknown := sorted(set(self.kinds) - set(KINDS)):
            raise ValueError(f"kinds: unknown {unknown}; choose from {list(KINDS)}")
        if self.min_entropy < 0:
            raise ValueError(f"min_entropy={self.min_entropy}: bits per character, 0 or more; e.g. min_entropy=3.0")


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


def _valid_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    # "1::2" is as likely a slice as an address: a compressed one needs a 4-digit group or 3 groups
    groups = [g for g in re.split(r"::?", text) if g]
    return "::" not in text or len(groups) >= 3 or any(len(g) == 4 for g in groups)


def _ipv4(m: re.Match) -> bool:
    return not VERSION_CONTEXT.search(m.string[max(0, m.start() - 12) : m.start()])


def _phone(m: re.Match) -> bool:
    text = m.group()
    digits = [ch for ch in text if ch.isdigit()]
    separated = len(text) - len(digits) > (1 if text.startswith("+") else 0)
    return 7 <= len(digits) <= 15 and separated and len(set(digits)) > 2 and not NOT_PHONE.match(text)


def _issued_length(digits: str) -> bool:
    """Whether the number starts like a card of a major network and has that network's length."""
    n = len(digits)
    two, three, four = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return n == 16
    if two in (34, 37):  # American Express
        return n == 15
    if four == 6011 or two in (62, 65) or 644 <= three <= 649 or two == 35:  # Discover, UnionPay, JCB
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= three <= 305:  # Diners Club
        return 14 <= n <= 19
    return False


def _card(m: re.Match) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return _issued_length(digits) and len(set(digits)) > 1 and luhn(digits)


def _whole_name(m: re.Match) -> str:
    """The name the match's key word is part of: "client_secret" for "secret"."""
    start = m.start("name")
    while start and (m.string[start - 1].isalnum() or m.string[start - 1] in "_.-"):
        start -= 1
    return m.string[start : m.end("name")]


class Pii(Preprocessor):
    name = "pii"
    Config = PiiConfig

    def _secret_value(self, m: re.Match) -> bool:
        value, quoted = m.group("value"), bool(m.group("q"))
        if PLACEHOLDER_VALUE.match(value) or value.lower() in ("none", "null", "true", "false", "password"):
            return False
        has_digit, has_alpha = any(c.isdigit() for c in value), any(c.isalpha() for c in value)
        if EXPLICIT.search(_whole_name(m)) and (quoted or (has_digit and has_alpha)):
            return True
        # any other key-like name: only long, random-looking values
        if not (has_digit and has_alpha):
            return False
        if HEX.match(value):
            return len(value) >= 32 and entropy(value) >= self.config.min_entropy
        return len(value) >= 20 and entropy(value) >= self.config.min_entropy

    def replace(self, text: str) -> tuple[str, Counter]:
        """``text`` with the configured kinds replaced, and how many of each were found."""
        found: Counter = Counter()

        def sub(kind: str, pattern: re.Pattern, keep: Callable[[re.Match], bool] = lambda m: True, group: str | int = 0) -> None:
            nonlocal text

            def one(m: re.Match) -> str:
                if not keep(m):
                    return m.group()
                found[kind] += 1
                start, end = m.start(group) - m.start(), m.end(group) - m.start()
                return m.group()[:start] + f"<{kind.upper()}>" + m.group()[end:]

            text = pattern.sub(one, text)

        kinds = set(self.config.kinds)
        if "secret" in kinds:
            sub("secret", PRIVATE_KEY)
            sub("secret", TOKENS)
            sub("secret", BEARER)
            sub("secret", ASSIGNED, self._secret_value, "value")
        if "email" in kinds:
            sub("email", EMAIL)
        if "ip" in kinds:
            sub("ip", IPV4, _ipv4)
            sub("ip", IPV6, lambda m: _valid_ipv6(m.group()))
        if "card" in kinds:
            sub("card", CARD, _card)
        if "phone" in kinds:
            sub("phone", PHONE, _phone)
        return text, found

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        for doc in docs:
            doc.text, found = self.replace(doc.text)
            for kind, n in found.items():
                stats[f"pii:{kind}"] += n
            if found and self.config.record_meta:
                doc.meta["pii"] = dict(sorted(found.items()))
            yield doc


@hookimpl
def register_preprocessors(register):
    register(Pii)
