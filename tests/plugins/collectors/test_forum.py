"""``collector=forum``: generic, Reddit and Stack Exchange dumps the tests write."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
from collections import Counter

import pytest

from lmforge.errors import ConfigError
from lmforge.plugins.collectors import _forum, _forum_read
from lmforge.plugins.collectors.forum import Forum, ForumConfig
from lmforge.testing import CollectorContract

SALT = "test-salt"
REAL_NAMES = ["alice_real", "bob_real", "carol_real", "dave_real", "erin_real", "frank_real"]


def pseudonym(name: str, salt: str = SALT) -> str:
    return "user_" + hmac.new(salt.encode(), name.casefold().encode(), hashlib.sha256).hexdigest()[:6]


def collect(tmp_path, **options):
    stats: Counter = Counter()
    docs = list(Forum(ForumConfig(salt=SALT, **options)).documents(tmp_path / "work", stats))
    return docs, stats


# Reddit ------------------------------------------------------------------------------

# Two threads, interleaved in the file as in a real dump, with a comment read before its
# submission. Thread A: a[dave] gets a [deleted] reply (with a live reply of its own) and a
# [removed] one.
REDDIT = [
    {"id": "b1", "link_id": "t3_bbb", "parent_id": "t3_bbb", "author": "erin_real", "body": "First!", "created_utc": 205, "subreddit": "cooking"},
    {"id": "aaa", "name": "t3_aaa", "title": "How do I parse JSON?", "selftext": "I tried json.loads &amp; failed",
     "author": "alice_real", "created_utc": 100, "subreddit": "python", "is_self": True},
    {"id": "c1", "link_id": "t3_aaa", "parent_id": "t3_aaa", "author": "bob_real", "body": "Read the docs, u/alice_real", "created_utc": 110, "subreddit": "python"},
    {"id": "bbb", "name": "t3_bbb", "title": "Best pan?", "selftext": "", "url": "https://example.com/pans",
     "author": "frank_real", "created_utc": 200, "subreddit": "cooking", "is_self": False},
    {"id": "c5", "link_id": "t3_aaa", "parent_id": "t1_c1", "author": "dave_real", "body": "[removed]", "created_utc": 150, "subreddit": "python"},
    {"id": "c3", "link_id": "t3_aaa", "parent_id": "t3_aaa", "author": "[deleted]", "body": "[deleted]", "created_utc": 120, "subreddit": "python"},
    {"id": "c2", "link_id": "t3_aaa", "parent_id": "t1_c1", "author": "Alice_Real", "body": "Thanks, that works", "created_utc": 130, "subreddit": "python"},
    {"id": "c4", "link_id": "t3_aaa", "parent_id": "t1_c3", "author": "carol_real", "body": "Reply to a deleted comment\nover two lines", "created_utc": 140, "subreddit": "python"},
]


def write_zst(path, records, window_log=31):
    """Compress like Pushshift: a streamed frame with a 2 GiB window, beyond zstd's default limit."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log)
    with open(path, "wb") as f, zstandard.ZstdCompressor(compression_params=params).stream_writer(f) as out:
        for record in records:
            out.write((json.dumps(record) + "\n").encode())
    return path


@pytest.fixture
def reddit_dump(tmp_path):
    return write_zst(tmp_path / "RC_2020-01.zst", REDDIT)


def test_reddit_threads_are_rebuilt_as_trees_in_dump_order(tmp_path, reddit_dump):
    docs, _ = collect(tmp_path, paths=[str(reddit_dump)])
    assert [d.id for d in docs] == ["forum/reddit/t3_bbb", "forum/reddit/t3_aaa"]  # first post read first
    alice, bob, carol = pseudonym("alice_real"), pseudonym("bob_real"), pseudonym("carol_real")
    assert docs[1].text == (
        "How do I parse JSON?\n"
        f"{alice}: I tried json.loads & failed\n\n"
        f"{bob}: Read the docs, u/{alice}\n\n"
        f"  {alice}: Thanks, that works\n\n"
        f"  {carol}: Reply to a deleted comment\n"
        "  over two lines\n"
    )
    assert docs[0].text == f"Best pan?\n{pseudonym('frank_real')}: https://example.com/pans\n\n{pseudonym('erin_real')}: First!\n"
    assert docs[1].uri == "https://www.reddit.com/r/python/comments/aaa/"
    assert docs[1].meta == {"format": "reddit", "thread": "t3_aaa", "posts": 4, "authors": [alice, bob, carol], "created": 100, "subreddit": "python"}
    assert all(d.source == "forum" for d in docs)


def test_reddit_deleted_and_removed_comments_are_dropped_and_counted(tmp_path, reddit_dump):
    docs, stats = collect(tmp_path, paths=[str(reddit_dump)])
    assert stats["skipped:deleted"] == 1 and stats["skipped:removed"] == 1
    assert not any("[deleted]" in d.text or "[removed]" in d.text for d in docs)


def test_real_names_never_appear_in_text_or_meta(tmp_path, reddit_dump):
    docs, _ = collect(tmp_path, paths=[str(reddit_dump)])
    dumped = json.dumps([[d.id, d.text, d.uri, d.meta] for d in docs]).lower()
    assert not [name for name in REAL_NAMES if name in dumped]
    # nor in the index left in the work folder
    index = next((tmp_path / "work").glob("forum-index-*.sqlite")).read_bytes().lower()
    assert not [name for name in REAL_NAMES if name.encode() in index]


def test_pseudonyms_are_stable_across_runs_and_keyed_by_the_salt(tmp_path, reddit_dump):
    first, _ = collect(tmp_path / "a", paths=[str(reddit_dump)])
    second, _ = collect(tmp_path / "b", paths=[str(reddit_dump)])
    assert [d.text for d in first] == [d.text for d in second]
    other = list(Forum(ForumConfig(paths=[str(reddit_dump)], salt="another")).documents(tmp_path / "c", Counter()))
    assert pseudonym("alice_real") not in other[1].text and pseudonym("alice_real", "another") in other[1].text


def test_the_default_zstd_window_limit_would_refuse_a_pushshift_dump(reddit_dump):
    import zstandard

    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().stream_reader(open(reddit_dump, "rb")).read()
    assert _forum_read.detect_format(reddit_dump) == "reddit"


def test_submissions_and_comments_from_separate_files_form_one_thread(tmp_path):
    submissions = write_zst(tmp_path / "RS_2020-01.zst", [r for r in REDDIT if "title" in r])
    comments = write_zst(tmp_path / "RC_2020-01.zst", [r for r in REDDIT if "title" not in r])
    docs, _ = collect(tmp_path, paths=[str(submissions), str(comments)])
    assert [d.id for d in docs] == ["forum/reddit/t3_aaa", "forum/reddit/t3_bbb"]
    assert docs[0].meta["posts"] == 4


def test_a_resumed_collection_reuses_the_finished_index_and_its_counts(tmp_path, reddit_dump, monkeypatch):
    docs, stats = collect(tmp_path, paths=[str(reddit_dump)])

    def must_not_rebuild(*args, **kwargs):
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(_forum.Index, "build", must_not_rebuild)
    again, again_stats = collect(tmp_path, paths=[str(reddit_dump)])
    assert [d.text for d in again] == [d.text for d in docs] and again_stats == stats


# Generic dumps: one field mapping, three formats -------------------------------------

ROWS = [
    {"post_id": 1, "body": "Is tea better than coffee?", "user": "alice_real", "reply_to": None, "ts": "2021-01-01T10:00", "gone": False, "subject": "Tea"},
    {"post_id": 2, "body": "Standalone post", "user": "bob_real", "reply_to": None, "ts": "2021-01-01T09:00", "gone": False, "subject": None},
    {"post_id": 3, "body": "Coffee, obviously", "user": "bob_real", "reply_to": 1, "ts": "2021-01-01T11:00", "gone": False, "subject": None},
    {"post_id": 4, "body": "Rude words", "user": "carol_real", "reply_to": 1, "ts": "2021-01-01T11:30", "gone": True, "subject": None},
    {"post_id": 5, "body": "Tea has less caffeine", "user": "alice_real", "reply_to": 3, "ts": "2021-01-01T12:00", "gone": False, "subject": None},
]
MAPPING = {"id": "post_id", "text": "body", "author": "user", "parent": "reply_to", "created": "ts", "deleted": "gone", "title": "subject"}


def write_generic(tmp_path, fmt: str):
    path = tmp_path / f"dump.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif fmt == "csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(ROWS[0]))
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in ROWS)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_generic_dumps_are_threaded_through_the_field_mapping(tmp_path, fmt):
    docs, stats = collect(tmp_path, paths=[str(write_generic(tmp_path, fmt))], fields=MAPPING)
    alice, bob = pseudonym("alice_real"), pseudonym("bob_real")
    assert [d.id for d in docs] == ["forum/generic/1", "forum/generic/2"]
    assert docs[0].text == f"Tea\n{alice}: Is tea better than coffee?\n\n{bob}: Coffee, obviously\n\n  {alice}: Tea has less caffeine\n"
    assert docs[1].text == f"{bob}: Standalone post\n"
    assert stats["skipped:deleted"] == 1
    assert docs[0].meta["posts"] == 3 and docs[0].uri.endswith(f"dump.{fmt}#1")


def test_an_unmapped_dump_makes_one_document_per_row(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n" + "not json\n" + json.dumps({"text": "two", "author": "x"}) + "\n")
    docs, stats = collect(tmp_path, paths=[str(path)])
    assert [d.text.split(": ", 1)[1] for d in docs] == ["one\n", "two\n"]
    assert len({d.id for d in docs}) == 2 and stats["skipped:bad_record"] == 1


def test_a_windows_1252_csv_export_is_decoded(tmp_path):
    """A spreadsheet's CSV is often windows-1252: it goes through the collectors' shared decoder."""
    path = tmp_path / "export.csv"
    path.write_bytes("id,text\n1,Café crème brûlée\n2,“Quoted” … and the naïve garçon\n".encode("cp1252"))
    docs, _ = collect(tmp_path, paths=[str(path)])
    texts = [d.text.split(": ", 1)[1] for d in docs]
    assert texts == ["Café crème brûlée\n", "“Quoted” … and the naïve garçon\n"]


# Stack Exchange ----------------------------------------------------------------------

POSTS_XML = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" AcceptedAnswerId="3" CreationDate="2020-01-01T10:00:00.000" Score="10"
       Body="&lt;p&gt;How do I boil an &lt;code&gt;egg&lt;/code&gt;?&lt;/p&gt;&lt;pre&gt;&lt;code&gt;pot = water()&#xA;  pot.boil()&#xA;&lt;/code&gt;&lt;/pre&gt;"
       OwnerUserId="17" Title="Boiling eggs" Tags="&lt;eggs&gt;&lt;boiling&gt;" AnswerCount="3" />
  <row Id="2" PostTypeId="2" ParentId="1" CreationDate="2020-01-01T11:00:00.000" Score="1"
       Body="&lt;p&gt;Use a pot.&lt;/p&gt;" OwnerUserId="23" />
  <row Id="5" PostTypeId="1" CreationDate="2020-01-02T10:00:00.000" Score="2"
       Body="&lt;p&gt;Salt or not?&lt;/p&gt;" OwnerUserId="23" Title="Salting water" Tags="|salt|" />
  <row Id="3" PostTypeId="2" ParentId="1" CreationDate="2020-01-01T12:00:00.000" Score="5"
       Body="&lt;ul&gt;&lt;li&gt;Boil water&lt;/li&gt;&lt;li&gt;Wait &amp;amp; see&lt;/li&gt;&lt;/ul&gt;" OwnerUserId="42" />
  <row Id="4" PostTypeId="2" ParentId="1" CreationDate="2020-01-01T13:00:00.000" Score="0"
       DeletionDate="2020-01-03T00:00:00.000" Body="&lt;p&gt;spam&lt;/p&gt;" OwnerUserId="99" />
  <row Id="6" PostTypeId="5" CreationDate="2020-01-01T13:00:00.000" Body="&lt;p&gt;Tag wiki&lt;/p&gt;" />
</posts>
"""


def test_stack_exchange_questions_come_with_their_answers_best_first(tmp_path):
    site = tmp_path / "cooking.stackexchange.com"
    site.mkdir()
    (site / "Posts.xml").write_text(POSTS_XML)
    docs, stats = collect(tmp_path, paths=[str(site / "Posts.xml")], license="CC-BY-SA-4.0")
    assert [d.id for d in docs] == ["forum/stackexchange/cooking.stackexchange.com/1", "forum/stackexchange/cooking.stackexchange.com/5"]
    q, a2, a3 = pseudonym("17"), pseudonym("23"), pseudonym("42")
    assert docs[0].text == (
        "Boiling eggs\n"
        f"{q}: How do I boil an `egg`?\n\npot = water()\n  pot.boil()\n\n"
        f"{a3}: - Boil water\n- Wait & see\n\n"
        f"{a2}: Use a pot.\n"
    )
    assert docs[0].meta["tags"] == ["eggs", "boiling"] and docs[1].meta["tags"] == ["salt"]
    assert docs[0].uri == "https://cooking.stackexchange.com/q/1" and docs[0].license == "CC-BY-SA-4.0"
    assert stats["skipped:deleted"] == 1 and stats["skipped:not_question_or_answer"] == 1
    assert "spam" not in docs[0].text


def test_html_bodies_become_text():
    assert _forum_read.html_to_text("<p>a&nbsp;<b>b</b></p>\n<p>c<br>d</p>") == "a b\n\nc\nd"  # no-break spaces fold like any space


# Config and errors -------------------------------------------------------------------


def test_empty_paths_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="collector.paths"):
        collect(tmp_path, paths=[])


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.jsonl"):
        collect(tmp_path, paths=[str(tmp_path / "nope.jsonl")])


def test_an_unknown_extension_asks_for_the_format(tmp_path):
    (tmp_path / "dump.bin").write_bytes(b"\0")
    with pytest.raises(ConfigError, match="collector.format"):
        collect(tmp_path, paths=[str(tmp_path / "dump.bin")])


@pytest.mark.parametrize("options,key", [({"format": "xml"}, "format"), ({"fields": {"body": "text"}}, "body")])
def test_bad_options_fail_when_the_config_is_built(options, key):
    with pytest.raises(ValueError, match=key):
        ForumConfig(**options)


class TestForumContract(CollectorContract):
    component = Forum

    @pytest.fixture(autouse=True)
    def _dump(self, tmp_path_factory):
        path = tmp_path_factory.mktemp("contract") / "RC.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in REDDIT))
        self.config = ForumConfig(paths=[str(path)], salt=SALT)
