"""The ``lemma`` step, and what it shares with the other spaCy steps (``_spacy``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from importlib.resources import files

import pytest
from omegaconf import OmegaConf
from support import TINY, lmforge

from lmforge.contracts import Document
from lmforge.errors import ConfigError
from lmforge.plugins.preprocessors import _spacy
from lmforge.plugins.preprocessors.lemma import Lemma, LemmaConfig
from lmforge.plugins.preprocessors.normalize import Normalize, NormalizeConfig
from lmforge.plugins.preprocessors.stem import Stem
from lmforge.plugins.preprocessors.stopwords import Stopwords
from lmforge.stages import preprocess as preprocess_stage
from lmforge.stages.collect import collect
from lmforge.stages.preprocess import _shard_parts, preprocess
from lmforge.stages.shards import read_documents, shard_paths, write_shard
from lmforge.testing import PreprocessorContract

SENTENCE = "The children were running to the geese"


class TestLemmaContract(PreprocessorContract):
    component = Lemma


def run(step, *texts: str) -> tuple[list[str], Counter]:
    stats = Counter()
    docs = [Document(f"d{i}", t, "t") for i, t in enumerate(texts)]
    return [d.text for d in step.process(docs, stats)], stats


@pytest.fixture(scope="module")
def ready():
    """Set-up steps by class, shared by the tests: loading the lookup tables takes a while."""
    steps = {}

    def get(cls):
        if cls not in steps:
            steps[cls] = cls()
            steps[cls].setup()
        return steps[cls]

    return get


def preset_steps(name: str):
    return OmegaConf.load(files("lmforge.conf") / "preprocess" / f"{name}.yaml").steps


def test_the_preset_lowercases_then_lemmatizes_the_known_sentence(ready):
    steps = preset_steps("lemma")
    assert [s.name for s in steps] == ["normalize", "lemma"]
    normalize = Normalize(NormalizeConfig(**{k: v for k, v in steps[0].items() if k != "name"}))
    docs = ready(Lemma).process(normalize.process([Document("d", SENTENCE, "t")], Counter()), Counter())
    assert [d.text for d in docs] == ["the child be run to the goose\n"]


def test_the_preset_lists_every_option_with_its_default():
    assert {k: v for k, v in preset_steps("lemma")[1].items() if k != "name"} == asdict(LemmaConfig())


def test_lookup_mode_keeps_case_punctuation_and_layout(ready):
    out, _ = run(ready(Lemma), "Geese ran.\n\n    The mice  were here!\n")
    assert out == ["Geese run.\n\n    The mouse  be here!\n"]


def test_lemmas_of_split_contractions_do_not_fuse_into_one_word(ready):
    out, _ = run(ready(Lemma), "they don't know I'm here")
    assert out == ["they do not know I be here"]


@pytest.fixture(scope="module")
def rule_pipeline(tmp_path_factory):
    """A trained-pipeline stand-in on disk: part of speech from an attribute ruler, a rule
    lemmatizer, and a sentencizer that the step must leave switched off."""
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("attribute_ruler")
    nlp.add_pipe("lemmatizer", config={"mode": "rule"})
    nlp.add_pipe("sentencizer")
    nlp.initialize()  # loads the rule tables; it also clears the ruler, so patterns come after
    pos = {"the": "DET", "children": "NOUN", "were": "VERB", "running": "VERB", "to": "ADP", "geese": "NOUN"}
    for word, tag in pos.items():
        ruler.add([[{"LOWER": word}]], {"POS": tag})
    path = tmp_path_factory.mktemp("pipelines") / "en_rules"
    nlp.to_disk(path)
    return path


def test_a_named_pipeline_lemmatizes_by_rule_with_only_the_components_it_needs(rule_pipeline):
    step = Lemma(LemmaConfig(pipeline=str(rule_pipeline)))
    step.setup()
    assert step.nlp.pipe_names == ["attribute_ruler", "lemmatizer"]
    assert run(step, SENTENCE)[0] == ["the child be run to the goose"]


def test_a_missing_named_pipeline_is_refused_when_the_config_is_checked():
    from lmforge.hydra_bridge import component_config

    with pytest.raises(ConfigError, match=r"preprocess\.steps\[1\]\.pipeline: .*'en_core_web_sm'.*python -m spacy download en_core_web_sm"):
        component_config("preprocessor", {"name": "lemma", "pipeline": "en_core_web_sm"}, "preprocess.steps[1]")


def test_a_pipeline_gone_by_setup_time_is_a_config_error(rule_pipeline, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    step = Lemma(LemmaConfig(pipeline=str(gone)))
    gone.rmdir()
    with pytest.raises(ConfigError, match="python -m spacy download"):
        step.setup()


def test_the_command_line_stops_on_a_missing_pipeline_with_exit_2_before_collecting(tmp_path):
    proc = lmforge("train", "preprocess=lemma", "preprocess.steps.1.pipeline=en_core_web_sm", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, env={"LMFORGE_CACHE_DIR": str(tmp_path / "cache")}, check=False)
    assert proc.returncode == 2, proc.stderr
    output = proc.stdout + proc.stderr  # Hydra's job logging writes lmforge's error to stdout
    assert "preprocess.steps[1].pipeline" in output and "python -m spacy download en_core_web_sm" in output
    assert not (tmp_path / "cache" / "collect").exists()


def test_chunks_join_back_stay_under_the_limit_and_end_after_a_paragraph_break_where_one_is_near():
    text = "para one\n\nline two\nwords and words " * 50
    pieces = list(_spacy.chunks(text, 300))
    assert "".join(pieces) == text and all(len(p) <= 300 for p in pieces)
    assert all(p.endswith("\n\n") for p in pieces[:-1])


def test_a_single_line_is_cut_after_spaces_and_only_a_run_without_any_mid_word():
    text = "words and more words " * 40
    pieces = list(_spacy.chunks(text, 300))
    assert "".join(pieces) == text and all(p.endswith(" ") and len(p) <= 300 for p in pieces)
    assert [len(p) for p in _spacy.chunks("x" * 700, 300)] == [300, 300, 100]


@pytest.mark.parametrize("step", [Lemma, Stem, Stopwords])
def test_a_long_document_is_processed_in_chunks_as_if_whole(step, ready, monkeypatch):
    text = "The geese were running to the children. " * 2000
    whole = run(ready(step), text)[0]
    monkeypatch.setattr(_spacy, "CHUNK_CHARS", 997)
    assert run(ready(step), text)[0] == whole


@pytest.mark.parametrize("step", [Lemma, Stem, Stopwords])
def test_broken_text_is_skipped_and_counted_by_reason(step, ready):
    ordinary = "ordinary geese here, " * 10 + "one stray replacement character \ufffd and a form feed \f"
    texts = ["caf\udce9 au lait", "\ufffd\ufffd\x7f\ufffdELF", "PK\x03\x04\x00\x00\x14\x00 data", ordinary]
    out, stats = run(ready(step), *texts)
    assert len(out) == 1 and stats == Counter({"dropped:invalid_utf8": 2, "dropped:binary": 1})


def test_the_pipeline_runs_the_same_in_two_worker_processes(tmp_path):
    """The steps pickle before setup and build their pipeline in each worker."""
    from lmforge.plugins.collectors.stdlib import Stdlib, StdlibConfig

    for folder in ("src", "one", "two"):
        (tmp_path / folder).mkdir()
    collect(Stdlib(StdlibConfig(max_bytes=120_000)), tmp_path / "src", shard_bytes=30_000)
    assert len(shard_paths(tmp_path / "src")) >= 2
    steps = [Normalize(NormalizeConfig(lowercase=True)), Lemma()]
    one = preprocess(steps, tmp_path / "src", tmp_path / "one", n_workers=1)
    two = preprocess(steps, tmp_path / "src", tmp_path / "two", n_workers=2)
    assert one == {**two, "documents": one["documents"]} and one["steps"] == ["normalize", "lemma"]
    texts = [[d.text for d in read_documents([p])] for p in shard_paths(tmp_path / "one")]
    assert texts == [[d.text for d in read_documents([p])] for p in shard_paths(tmp_path / "two")]


def test_two_workers_share_parts_of_shards_and_write_the_same_bytes_as_one(tmp_path, monkeypatch):
    """Shards cut into parts for the workers are reassembled in order, counts included."""
    docs = [Document(f"d{i}", f"The geese were running to the children, number {i}. " * 40, "t") for i in range(12)]
    docs[7].text = "\ufffd" * 30 + " broken"
    (tmp_path / "src").mkdir()
    for n in range(2):
        write_shard(docs[n * 6:(n + 1) * 6], tmp_path / "src" / f"docs-{n:05d}.parquet")
    monkeypatch.setattr(preprocess_stage, "MIN_PART_CHARS", 1000)  # several parts per shard
    assert all(len(parts) >= 3 for _, parts in _shard_parts([(p, p) for p in shard_paths(tmp_path / "src")], 3000))
    steps = [Normalize(NormalizeConfig(lowercase=True)), Lemma()]
    reports = {}
    for workers in (1, 2):
        (tmp_path / str(workers)).mkdir()
        reports[workers] = preprocess(steps, tmp_path / "src", tmp_path / str(workers), n_workers=workers)
    assert reports[1] == reports[2] and reports[1]["counts"] == {"dropped:invalid_utf8": 1}
    for p in shard_paths(tmp_path / "1"):
        assert p.read_bytes() == (tmp_path / "2" / p.name).read_bytes()


def reference_rewrite(doc) -> str:
    """The lemma step's output built token by token, which its splicing must match."""
    parts: list[str] = []
    changed = glued = False
    for t in doc:
        text, lemma = t.text, t.lemma_ or t.text
        if glued and (changed or lemma != text) and lemma[0].isalnum() and parts[-1][-1:].isalnum():
            parts.append(" ")
        parts.append(lemma + t.whitespace_)
        changed, glued = lemma != text, not t.whitespace_
    return "".join(parts)


@pytest.mark.parametrize("text", [
    "", " ", "  x  y\n\n z ", "don't", "I'm sure they don't know.", "can't won't i'm geese's",
    "The mice were eating cheeses!\n\tthe children's geese", "were", "x=were(geese)+mice  ", "ca\u0301fe\u0301s were",
])
def test_splicing_lemmas_into_the_text_matches_joining_every_token(ready, text):
    doc = ready(Lemma).nlp(text)
    assert ready(Lemma).rewrite_chunk(doc, text) == reference_rewrite(doc)


def test_lmforge_train_with_the_lemma_preset_records_the_steps(tmp_path):
    short = ["collector.max_bytes=100000", "trainer.max_steps=4", "trainer.val_check_interval=2", "data.val_batches=2"]
    lmforge("train", *TINY, *short, "preprocess=lemma", "preprocess.n_workers=2", f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path, env={"LMFORGE_CACHE_DIR": str(tmp_path / "cache"), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["components"]["preprocess"] == manifest["data"]["preprocess"]["steps"] == ["normalize", "lemma"]
    assert manifest["data"]["preprocess"]["documents"] > 0
