"""The ``lmforge.stages`` package itself: a light import, and the old module names kept alive."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_the_package_loads_neither_numpy_nor_pyarrow():
    code = "import sys, lmforge.stages; print(sorted({'numpy', 'pyarrow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("lmforge.corpus", "read_documents", "lmforge.stages.shards"),
        ("lmforge.corpus", "write_shard", "lmforge.stages.shards"),
        ("lmforge.corpus", "collect", "lmforge.stages.collect"),
        ("lmforge.corpus", "preprocess", "lmforge.stages.preprocess"),
        ("lmforge.tokens", "split_tokens", "lmforge.stages.tokenize"),
        ("lmforge.tokens", "tokenize", "lmforge.stages.tokenize"),
        ("lmforge.tokens", "load_shards", "lmforge.stages.tokenize"),
    ],
)
def test_the_old_modules_still_give_the_old_names_with_a_deprecation_warning(old, name, new):
    import importlib

    with pytest.deprecated_call(match=new):
        found = getattr(importlib.import_module(old), name)
    assert found is getattr(importlib.import_module(new), name)


def test_the_atomic_writers_of_the_old_stages_module_forward_to_lmforge_files(tmp_path):
    import lmforge.files
    import lmforge.stages

    with pytest.deprecated_call(match="lmforge.files.atomic_write_json"):
        write = lmforge.stages.atomic_write_json
    assert write is lmforge.files.atomic_write_json
    with pytest.deprecated_call():
        lmforge.stages.atomic_write_text(tmp_path / "a.txt", "text")
    assert (tmp_path / "a.txt").read_text() == "text"


def test_a_name_the_old_modules_never_had_is_still_an_attribute_error():
    import lmforge.corpus

    with pytest.raises(AttributeError):
        lmforge.corpus.no_such_name  # noqa: B018
