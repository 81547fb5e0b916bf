import json
import logging
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from lmforge.errors import ConfigError
from lmforge.plugins.collectors import _books
from lmforge.plugins.collectors.books import Books, BooksConfig
from lmforge.testing import CollectorContract

GUTENBERG = """\ufeffThe Project Gutenberg eBook of A Tiny Tale

This ebook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions
whatsoever.

Title: A Tiny Tale

Author: Mary Example

Release date: January 1, 2020 [eBook #99999]

Language: English

*** START OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***

Produced by Jane Volunteer and the Online Distributed
Proofreading Team.

CHAPTER I

It was the best of times, it was the worst
of times, and the hero walked
slowly home.

The second paragraph is short.

*** END OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***

Updating: editions will replace the previous one--the old editions will
be renamed.

START: FULL LICENSE

THE FULL PROJECT GUTENBERG LICENSE
"""

OLD_GUTENBERG = """The Project Gutenberg Etext of An Old Book
Title: An Old Book
Author: Sam Elder

**Welcome To The World of Free Plain Vanilla Electronic Texts**

*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

Once upon a time
there was a book.

End of the Project Gutenberg Etext of An Old Book
"""

MARKDOWN = """# Field Notes

Some notes written with
hard wrapped lines.

- a list item that
  wraps onto the next line
- another item

```python
def keep(me):
    return me
```
"""

HTML = """<html><head><title>An Article</title><meta name="author" content="Bob Reporter">
<script>var tracking = 1;</script></head>
<body><article><h1>An Article</h1>
<p>The first paragraph of the article is written
over two lines in the source.</p>
<p>The second paragraph ends it.</p></article></body></html>
"""

PDF_PARAGRAPHS = [
    "This is the first paragraph of a small paper, written over several lines with an exam-",
    "ple of a word split by the typesetter, and a well-known compound that keeps its hyphen.",
    "",
    "The second paragraph continues the argu-",
    "ment for another line.",
]


def write_pdf(path: Path, lines: list[str], password: str = "") -> None:
    from fpdf import FPDF

    pdf = FPDF()
    if password:
        pdf.set_encryption(owner_password="owner", user_password=password)
    pdf.set_title("A Small Paper")
    pdf.set_author("Ada Lovelace")
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for line in lines:
        if line:
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.ln(6)
    pdf.add_page()  # a second page, whose number line is not text
    pdf.cell(0, 6, "The conclusion sits on page two.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(-20)
    pdf.cell(0, 6, "2", align="C")
    pdf.output(str(path))


def write_epub(path: Path) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("lmforge-test-epub")
    book.set_title("The Test Novel")
    book.set_language("en")
    book.add_author("Jane Writer")
    chapters = []
    for i, body in enumerate(
        [
            "<h1>Chapter One</h1><p>It was a dark\nand stormy night.</p><p>The rain fell.</p>",
            "<h1>Chapter Two</h1><p>Morning came at last.</p>",
        ],
        start=1,
    ):
        chapter = epub.EpubHtml(title=f"Chapter {i}", file_name=f"c{i}.xhtml", lang="en")
        chapter.content = f"<html><body>{body}</body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = tuple(chapters)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)


def make_library(root: Path) -> Path:
    """A folder with one file of every format, a sub-folder, and files to skip."""
    (root / "fiction").mkdir(parents=True)
    (root / "fiction" / "tale.txt").write_text(GUTENBERG, encoding="utf-8")
    write_epub(root / "fiction" / "novel.epub")
    (root / "notes.md").write_text(MARKDOWN)
    (root / "article.html").write_text(HTML)
    write_pdf(root / "paper.pdf", PDF_PARAGRAPHS)
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not a PDF at all\n")
    write_pdf(root / "locked.pdf", ["A secret."], password="secret")
    (root / "broken.epub").write_bytes(b"PK\x03\x04 not a zip archive")
    (root / "data.txt").write_bytes(b"\x00\x01\x02binary\x00")
    (root / "slides.pptx").write_bytes(b"not a book format")
    (root / ".hidden.txt").write_text("a hidden file is not read")
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return make_library(tmp_path_factory.mktemp("lib") / "library")


def collect(*paths, **options) -> tuple[dict[str, object], Counter]:
    stats: Counter = Counter()
    with tempfile.TemporaryDirectory() as workdir:
        docs = Books(BooksConfig(paths=[str(p) for p in paths], **options)).documents(Path(workdir), stats)
        return {d.id: d for d in docs}, stats


class TestBooksContract(CollectorContract):
    component = Books

    @pytest.fixture(autouse=True, scope="class")
    def _point_at_the_library(self, request, library):
        request.cls.config = BooksConfig(paths=[str(library)])


def test_reads_every_format_in_sorted_order_and_counts_the_skips(library):
    """Corrupt, encrypted and binary files are counted; other types and hidden files are not read."""
    docs, stats = collect(library)
    assert list(docs) == [
        "books/library/article.html",
        "books/library/fiction/novel.epub",
        "books/library/fiction/tale.txt",
        "books/library/notes.md",
        "books/library/paper.pdf",
    ]
    assert stats == Counter({"skipped:corrupt": 2, "skipped:encrypted": 1, "skipped:binary": 1})
    doc = docs["books/library/paper.pdf"]
    assert doc.source == "books" and doc.uri == (library / "paper.pdf").resolve().as_uri()
    assert doc.meta["format"] == "pdf" and doc.meta["path"] == "library/paper.pdf"


def test_gutenberg_header_and_licence_are_cut_and_title_and_author_kept(library):
    doc = collect(library / "fiction" / "tale.txt")[0]["books/fiction/tale.txt"]
    assert doc.text == (
        "CHAPTER I\n\n"
        "It was the best of times, it was the worst of times, and the hero walked slowly home.\n\n"
        "The second paragraph is short."
    )
    assert doc.meta["title"] == "A Tiny Tale" and doc.meta["author"] == "Mary Example"


def test_older_gutenberg_markers_are_cut():
    body, meta, found = _books.strip_gutenberg(OLD_GUTENBERG)
    assert found and _books.reflow(body) == "Once upon a time there was a book."
    assert meta == {"title": "An Old Book", "author": "Sam Elder"}


def test_text_without_gutenberg_markers_is_left_alone():
    assert _books.strip_gutenberg("Title: Mine\n\nJust a text.") == ("Title: Mine\n\nJust a text.", {}, False)


def test_pdf_lines_are_reflowed_into_paragraphs_and_split_words_mended(library):
    doc = collect(library / "paper.pdf")[0]["books/library/paper.pdf"]
    assert doc.text == (
        "This is the first paragraph of a small paper, written over several lines with an example "
        "of a word split by the typesetter, and a well-known compound that keeps its hyphen.\n\n"
        "The second paragraph continues the argument for another line. The conclusion sits on page two."
    )
    assert doc.meta["title"] == "A Small Paper" and doc.meta["author"] == "Ada Lovelace"


def test_dehyphenation_keeps_real_hyphens_and_dashes():
    assert _books.dehyphenate("an exam-\nple") == "an example"
    assert _books.dehyphenate("a well-known word") == "a well-known word"
    assert _books.dehyphenate("in 1990-\n1999") == "in 1990-\n1999"
    assert _books.dehyphenate("and then--\nsilence") == "and then--\nsilence"
    assert _books.dehyphenate("North-\nAmerica") == "North-\nAmerica"


def test_epub_chapters_in_reading_order_with_metadata(library):
    doc = collect(library / "fiction" / "novel.epub")[0]["books/fiction/novel.epub"]
    assert doc.text == (
        "Chapter One\n\nIt was a dark and stormy night.\n\nThe rain fell.\n\nChapter Two\n\nMorning came at last."
    )
    assert doc.meta["title"] == "The Test Novel" and doc.meta["author"] == "Jane Writer"


def test_html_keeps_the_article_and_its_title(library):
    doc = collect(library / "article.html")[0]["books/library/article.html"]
    assert "The first paragraph of the article is written over two lines in the source.\n\nThe second paragraph ends it." in doc.text
    assert "tracking" not in doc.text
    assert doc.meta["title"] == "An Article" and doc.meta["author"] == "Bob Reporter"


def test_markdown_title_is_the_first_heading_and_code_stays_verbatim(library):
    doc = collect(library / "notes.md")[0]["books/library/notes.md"]
    assert doc.meta["title"] == "Field Notes"
    assert doc.text == (
        "# Field Notes\n\nSome notes written with hard wrapped lines.\n\n"
        "- a list item that wraps onto the next line\n\n- another item\n\n"
        "```python\ndef keep(me):\n    return me\n```"
    )


def test_a_legacy_encoding_is_detected(tmp_path):
    text = "Le café était fermé, alors nous sommes allés à la bibliothèque près de l'église.\n" * 5
    (tmp_path / "french.txt").write_bytes(text.encode("cp1252"))
    doc = collect(tmp_path / "french.txt")[0][f"books/{tmp_path.name}/french.txt"]
    assert "café était fermé" in doc.text


LATIN1_MENU = (
    "Café crème brûlée\n\n"
    "Our café serves crème brûlée, crêpes and a café au lait every morning.\n"
    "The pâtissier bakes the brioche and the éclairs before dawn.\n"
)


def test_a_latin1_book_is_decoded_as_windows_1252_not_central_european(tmp_path):
    """charset-normalizer's best() ties cp1250 with cp1252 here and picks cp1250 ("crčme")."""
    (tmp_path / "menu.txt").write_bytes(LATIN1_MENU.encode("latin-1"))
    doc = collect(tmp_path / "menu.txt")[0][f"books/{tmp_path.name}/menu.txt"]
    assert doc.text.startswith("Café crème brûlée\n\nOur café serves crème brûlée, crêpes")
    assert "pâtissier" in doc.text and "éclairs" in doc.text


def test_globs_and_extensions_select_files(library):
    docs, _ = collect(f"{library}/**/*.epub", f"{library}/*.md")
    assert list(docs) == ["books/library/fiction/novel.epub", "books/library/notes.md"]
    docs, stats = collect(library, extensions=["pdf"])
    assert list(docs) == ["books/library/paper.pdf"]
    assert stats == Counter({"skipped:corrupt": 1, "skipped:encrypted": 1})


def test_a_file_reached_twice_is_read_once(library):
    docs, _ = collect(library, library / "notes.md")
    assert len(docs) == 5


def test_missing_paths_and_unknown_extensions_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="collector.paths is empty"):
        list(Books(BooksConfig()).documents(tmp_path, Counter()))
    with pytest.raises(ConfigError, match="nowhere"):
        list(Books(BooksConfig(paths=[str(tmp_path / "nowhere")])).documents(tmp_path, Counter()))
    with pytest.raises(ValueError, match=r"\.docx"):
        BooksConfig(paths=["x"], extensions=[".docx"])


def test_cache_token_follows_the_files(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    books = Books(BooksConfig(paths=[str(tmp_path)]))
    before = books.cache_token()
    assert books.cache_token() == before
    (tmp_path / "b.txt").write_text("two")
    assert books.cache_token() != before


def test_skipped_files_are_named_with_their_reason_beside_the_report(library, tmp_path):
    """The collect stage gathers the collector's list into skipped.jsonl and names it in the report."""
    from lmforge.stages.collect import collect as run_collect

    report = run_collect(Books(BooksConfig(paths=[str(library)])), tmp_path)
    assert report["skipped_files"] == "skipped.jsonl"
    lines = [json.loads(line) for line in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    named = {(Path(r["path"]).name, r["reason"]) for r in lines}
    assert named == {("broken.pdf", "corrupt"), ("broken.epub", "corrupt"), ("locked.pdf", "encrypted"), ("data.txt", "binary")}
    assert sum(v for k, v in report["counts"].items() if k.startswith("skipped:") and k != "skipped:duplicate_content") == len(lines)


def test_pypdf_warnings_name_the_pdf(tmp_path, caplog):
    write_pdf(tmp_path / "paper.pdf", ["A paragraph of text.", "", "Another one."])
    raw = (tmp_path / "paper.pdf").read_bytes()
    offset = re.search(rb"startxref\s+(\d+)", raw)
    (tmp_path / "bent.pdf").write_bytes(raw[: offset.start(1)] + str(int(offset.group(1)) + 7).encode() + raw[offset.end(1):])
    with caplog.at_level(logging.WARNING):
        docs, _ = collect(tmp_path / "bent.pdf")
    assert docs, "pypdf recovers from the bad pointer"
    warned = [r.getMessage() for r in caplog.records if "startxref" in r.getMessage()]
    assert warned and all(str(tmp_path / "bent.pdf") in m for m in warned), warned
