from collections import Counter

from lmforge.plugins.collectors.stdlib import Stdlib, StdlibConfig
from lmforge.testing import CollectorContract


class TestStdlibContract(CollectorContract):
    component = Stdlib
    config = StdlibConfig(max_bytes=200_000)


def test_reads_about_12_mb_of_code_without_test_folders():
    files = Stdlib(StdlibConfig()).files()
    size = sum(f.stat().st_size for f in files)
    assert 8e6 < size < 20e6, size
    rel = [f.relative_to(Stdlib(StdlibConfig()).root).parts for f in files]
    assert not any({"test", "tests", "idle_test"} & set(parts[:-1]) for parts in rel)
    assert any(parts[-1] == "os.py" for parts in rel)


def test_include_tests_reads_the_test_folders_too():
    without = len(Stdlib(StdlibConfig()).files())
    with_tests = Stdlib(StdlibConfig(include_tests=True)).files()
    assert len(with_tests) > without
    assert any("test" in f.parts for f in with_tests)


def test_globs_select_files():
    files = Stdlib(StdlibConfig(globs=["json/*.py"])).files()
    assert files and all(f.parent.name == "json" for f in files)


def test_max_bytes_caps_the_corpus(tmp_path):
    docs = list(Stdlib(StdlibConfig(max_bytes=100_000)).documents(tmp_path, Counter()))
    assert docs
    assert sum(len(d.text.encode()) for d in docs) <= 100_000


def test_documents_carry_provenance(tmp_path):
    doc = next(Stdlib(StdlibConfig(globs=["json/__init__.py"])).documents(tmp_path, Counter()))
    assert doc.id == "stdlib/json/__init__.py"
    assert doc.uri.startswith("file://") and doc.license == "PSF-2.0"
    assert doc.meta["python"] in Stdlib(StdlibConfig()).cache_token()
