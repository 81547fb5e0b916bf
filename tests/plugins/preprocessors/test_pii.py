from collections import Counter

import pytest

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.pii import Pii, PiiConfig, luhn
from lmforge.testing import PreprocessorContract


class TestPiiContract(PreprocessorContract):
    component = Pii
    sample_texts = ["Write to ada@example.org.", "def f(x):\n    return x\n"]


def scrub(text: str, **options) -> tuple[str, Counter]:
    return Pii(PiiConfig(**options)).replace(text)


@pytest.mark.parametrize(
    "text,expected,kind",
    [
        ("Write to ada.lovelace+ml@mail.example.co.uk today.", "Write to <EMAIL> today.", "email"),
        ("Call +44 20 7946 0958 now", "Call <PHONE> now", "phone"),
        ("Call +1 (555) 123-4567 now", "Call <PHONE> now", "phone"),
        ("Call (555) 123-4567 or 555.123.4567", "Call <PHONE> or <PHONE>", "phone"),
        ("Ring 020 7946 0958 or 06 12 34 56 78", "Ring <PHONE> or <PHONE>", "phone"),
        ("from 81.2.69.160 at noon", "from <IP> at noon", "ip"),
        ("from 2001:db8::8a2e:370:7334 and fe80::1", "from <IP> and <IP>", "ip"),
        ("card 4111 1111 1111 1111 exp", "card <CARD> exp", "card"),
        ("card 5555-5555-5555-4444 and 378282246310005", "card <CARD> and <CARD>", "card"),
        ("AWS_ACCESS_KEY_ID AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY_ID <SECRET>", "secret"),
        ("token ghp_" + "a1B2c3D4e5" * 4, "token <SECRET>", "secret"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----\nok", "<SECRET>\nok", "secret"),
        ('api_key = "s3cr3t-value"', 'api_key = "<SECRET>"', "secret"),
        ("db.connect(password='correcthorse')", "db.connect(password='<SECRET>')", "secret"),
        ("curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc123'", "curl -H 'Authorization: Bearer <SECRET>'", "secret"),
        ('{"client_secret": "Zx8vQ2mN7pL4kR9tW3yB6"}', '{"client_secret": "<SECRET>"}', "secret"),
        ("SESSION_TOKEN=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "SESSION_TOKEN=<SECRET>", "secret"),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder(text, expected, kind):
    out, found = scrub(text)
    assert out == expected
    assert set(found) == {kind}


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.11.7 fixed it; see version 1.2.3.4 and v2.0.1.5.",
        "Released on 2024-01-31, 31.01.2024, 01/02/2024 and 12-25-2023 at 14:30:05.",
        "x = a[1::2]; std::vector<int> v; mac 00:1a:2b:3c:4d:5e",
        "card 4111 1111 1111 1112 fails Luhn; id 573763426263223372; stamp 20100914001155",
        "pi is 3.14159265 and +3.140000; 1234567890 is a bare number",
        "password = os.environ.get('PASSWORD')\ntoken = self.tokenizer(text)\napi_key: str = None",
        'api_key = "YOUR_API_KEY"  # or "xxxxxxxxxxxx"',
        "Tokens such as 'the' and 'of' carry little meaning, said the author.",
    ],
)
def test_lookalikes_are_left_alone(text):
    assert scrub(text) == (text, Counter())


def test_only_the_configured_kinds_are_replaced():
    text = "mail ada@example.org from 81.2.69.160"
    assert scrub(text, kinds=["ip"])[0] == "mail ada@example.org from <IP>"


def test_counts_go_to_stats_and_meta():
    step = Pii()
    stats: Counter = Counter()
    docs = [Document("a", "ada@example.org, bob@example.org, 81.2.69.160", "t"), Document("b", "nothing here", "t")]
    out = list(step.process(docs, stats))
    assert stats == Counter({"pii:email": 2, "pii:ip": 1})
    assert out[0].meta["pii"] == {"email": 2, "ip": 1} and "pii" not in out[1].meta


def test_luhn():
    assert luhn("4111111111111111") and not luhn("4111111111111112")


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown.*'ssn'"):
        PiiConfig(kinds=["email", "ssn"])
