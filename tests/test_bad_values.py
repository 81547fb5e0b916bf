"""Every bad value fails in the config check, before any data stage, naming the key and value.

The issue's probes (and one per component group) run through the real CLI; every case,
those included, runs in-process through ``hydra_bridge.check``.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from support import TINY, lmforge

from lmforge import hydra_bridge
from lmforge.engine.config import DataConfig, SampleConfig, TrainerConfig
from lmforge.errors import ConfigError
from lmforge.plugins.collectors.books import BooksConfig
from lmforge.plugins.collectors.code import CodeConfig
from lmforge.plugins.collectors.forum import ForumConfig
from lmforge.plugins.collectors.hf import HfConfig
from lmforge.plugins.collectors.mix import MixConfig
from lmforge.plugins.collectors.stdlib import StdlibConfig
from lmforge.plugins.collectors.web import WebConfig
from lmforge.plugins.models.rnn import RNNConfig
from lmforge.plugins.models.transformer import TransformerConfig
from lmforge.plugins.preprocessors.quality import QualityConfig
from lmforge.plugins.tokenizers.unigram import UnigramConfig
from lmforge.plugins.tuners.bayes import BayesConfig

# (overrides, key, value as the message shows it); the first ones are the probes
CLI_CASES = [
    (["model.n_layer=0"], "model.n_layer", "0"),
    (["model.n_layer=-1"], "model.n_layer", "-1"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches", "0"),
    (["trainer.max_steps=0"], "trainer.max_steps", "0"),
    (["trainer.max_steps=-5"], "trainer.max_steps", "-5"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval", "0"),
    (["model.dropout=2"], "model.dropout", "2"),
    (["model.n_embd=-8"], "model.n_embd", "-8"),
    (["trainer.precision=banana"], "trainer.precision", "banana"),
    (["data.num_workers=-1"], "data.num_workers", "-1"),
    (["trainer.devices=0"], "trainer.devices", "0"),
    (["trainer.checkpoint_top_k=-2"], "trainer.checkpoint_top_k", "-2"),
    (["seed=abc"], "seed", "abc"),
    (["sample.top_k=0"], "sample.top_k", "0"),
    (["preprocess=clean_web", "preprocess.steps.1.min_words=-3"], "preprocess.steps[1].min_words", "-3"),
    (["collector.max_bytes=0"], "collector.max_bytes", "0"),
    (["collector=web", "collector.seeds=[http://127.0.0.1:1/]", "collector.max_pages=0"], "collector.max_pages", "0"),
]

MORE_CASES = [
    # data, trainer, loss, sample
    (["data.seq_len=0"], "data.seq_len", "0"),
    (["data.batch_size=-4"], "data.batch_size", "-4"),
    (["data.val_batches=-1"], "data.val_batches", "-1"),
    (["data.val_fraction=0"], "data.val_fraction", "0"),
    (["data.val_fraction=1.5"], "data.val_fraction", "1.5"),
    (["trainer.accelerator=gpux"], "trainer.accelerator", "gpux"),
    (["trainer.devices=[]"], "trainer.devices", "[]"),
    (["trainer.devices=-2"], "trainer.devices", "-2"),
    (["trainer.devices='0'"], "trainer.devices", "0"),
    (["trainer.num_nodes=0"], "trainer.num_nodes", "0"),
    (["trainer.strategy=''"], "trainer.strategy", "''"),
    (["trainer.limit_val_batches=-1"], "trainer.limit_val_batches", "-1"),
    (["trainer.limit_val_batches=1.5"], "trainer.limit_val_batches", "1.5"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps", "0"),
    (["trainer.gradient_clip_val=0"], "trainer.gradient_clip_val", "0"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val", "-1"),
    (["trainer.deterministic=maybe"], "trainer.deterministic", "maybe"),
    (["trainer.num_sanity_val_steps=-2"], "trainer.num_sanity_val_steps", "-2"),
    (["trainer.checkpoint_every_n_steps=0"], "trainer.checkpoint_every_n_steps", "0"),
    (["loss.label_smoothing=1"], "loss.label_smoothing", "1"),
    (["loss.z_loss=-1"], "loss.z_loss", "-1"),
    (["sample.max_new_tokens=0"], "sample.max_new_tokens", "0"),
    (["sample.temperature=-0.5"], "sample.temperature", "-0.5"),
    (["preprocess.n_workers=0"], "preprocess.n_workers", "0"),
    # models
    (["model.n_head=0"], "model.n_head", "0"),
    (["model.n_kv_head=0"], "model.n_kv_head", "0"),
    (["model.mlp_ratio=0"], "model.mlp_ratio", "0"),
    (["model.rope_theta=-1"], "model.rope_theta", "-1"),
    (["model=rnn", "model.hidden=0"], "model.hidden", "0"),
    (["model=rnn", "model.dropout=1"], "model.dropout", "1"),
    (["model=bert", "model.n_layer=0"], "model.n_layer", "0"),
    (["model=bert", "model.dropout=-0.1"], "model.dropout", "-0.1"),
    # tokenizers
    (["tokenizer.vocab_size=10"], "tokenizer.vocab_size", "10"),
    (["tokenizer.min_frequency=0"], "tokenizer.min_frequency", "0"),
    (["tokenizer.special_tokens.pad=''"], "tokenizer.special_tokens.pad", "''"),
    (["tokenizer=unigram", "tokenizer.shrinking_factor=1"], "tokenizer.shrinking_factor", "1"),
    (["tokenizer=unigram", "tokenizer.max_piece_length=0"], "tokenizer.max_piece_length", "0"),
    (["tokenizer=wordpiece", "tokenizer.limit_alphabet=0"], "tokenizer.limit_alphabet", "0"),
    (["tokenizer=wordpiece", "tokenizer.continuing_subword_prefix=''"], "tokenizer.continuing_subword_prefix", "''"),
    (["tokenizer=word", "tokenizer.lang=zz"], "tokenizer.lang", "'zz'"),
    # optimizer, scheduler, logger
    (["optimizer.lr=0"], "optimizer.lr", "0"),
    (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay", "-0.1"),
    (["optimizer.eps=0"], "optimizer.eps", "0"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas", "[0.9, 1.0]"),
    (["optimizer=sgd", "optimizer.momentum=1"], "optimizer.momentum", "1"),
    (["optimizer=sgd", "optimizer.dampening=-1"], "optimizer.dampening", "-1"),
    (["optimizer=adafactor", "optimizer.d=0"], "optimizer.d", "0"),
    (["scheduler.warmup_steps=-1"], "scheduler.warmup_steps", "-1"),
    (["scheduler.min_lr_ratio=2"], "scheduler.min_lr_ratio", "2"),
    (["scheduler=wsd", "scheduler.decay_fraction=0"], "scheduler.decay_fraction", "0"),
    (["logger=wandb", "logger.project=''"], "logger.project", "''"),
    # tuners
    (["tuner=grid", "tuner.num=0"], "tuner.num", "0"),
    (["tuner=bayes", "tuner.init_budget=0"], "tuner.init_budget", "0"),
    (["tuner=bayes", "tuner.alpha=0"], "tuner.alpha", "0"),
    (["tuner=bayes", "tuner.kappa=-1"], "tuner.kappa", "-1"),
    (["tuner=nevergrad", "tuner.optimizer=''"], "tuner.optimizer", "''"),
    # preprocess steps, by their place in the pipeline
    (["preprocess=clean_web", "preprocess.steps.1.max_dup_line_fraction=1.5"], "preprocess.steps[1].max_dup_line_fraction", "1.5"),
    (["preprocess=clean_web", "preprocess.steps.3.min_entropy=-1"], "preprocess.steps[3].min_entropy", "-1"),
    (["preprocess=clean_web", "preprocess.steps.4.max_count=-1"], "preprocess.steps[4].max_count", "-1"),
    (["preprocess=clean_web", "preprocess.steps.4.threshold=1"], "preprocess.steps[4].threshold", "1"),
    (["preprocess=stopwords", "preprocess.steps.1.lang=klingon"], "preprocess.steps[1].lang", "klingon"),
    (["preprocess=stem", "preprocess.steps.1.language=englsh"], "preprocess.steps[1].language", "englsh"),
    # collectors
    (["collector.max_bytes=-1"], "collector.max_bytes", "-1"),
    (["collector.globs=[]"], "collector.globs", "[]"),
    (["collector.globs=['**/*.py','']"], "collector.globs", "''"),
    (["collector=code", "collector.repos=['']"], "collector.repos", "''"),
    (["collector=code", "collector.languages=[]"], "collector.languages", "[]"),
    (["collector=code", "collector.max_file_bytes=0"], "collector.max_file_bytes", "0"),
    (["collector=code", "collector.max_line_length=0"], "collector.max_line_length", "0"),
    (["collector=code", "collector.max_avg_line_length=-1"], "collector.max_avg_line_length", "-1"),
    (["collector=books", "collector.paths=['~/books','']"], "collector.paths", "''"),
    (["collector=books", "collector.extensions=[]"], "collector.extensions", "[]"),
    (["collector=forum", "collector.paths=['']"], "collector.paths", "''"),
    (["collector=forum", "collector.format=xml"], "collector.format", "xml"),
    (["collector=forum", "collector.fields.text=''"], "collector.fields.text", "''"),
    (["collector=forum", "collector.salt=''"], "collector.salt", "''"),
    (["collector=hf", "collector.split=''"], "collector.split", "''"),
    (["collector=hf", "collector.text_field=''"], "collector.text_field", "''"),
    (["collector=hf", "collector.path=''"], "collector.path", "''"),
    (["collector=hf", "collector.id_field=''"], "collector.id_field", "''"),
    (["collector=hf", "collector.data_files=['']"], "collector.data_files", "''"),
    (["collector=hf", "collector.max_documents=0"], "collector.max_documents", "0"),
    (["collector=web", "collector.seeds=[ftp://example.org/]"], "collector.seeds", "ftp://example.org/"),
    (["collector=web", "collector.max_depth=-1"], "collector.max_depth", "-1"),
    (["collector=web", "collector.max_pages=0"], "collector.max_pages", "0"),
    (["collector=web", "collector.max_bytes=0"], "collector.max_bytes", "0"),
    (["collector=web", "collector.delay=-1"], "collector.delay", "-1"),
    (["collector=web", "collector.concurrency=0"], "collector.concurrency", "0"),
    (["collector=web", "collector.max_retries=-1"], "collector.max_retries", "-1"),
    (["collector=web", "collector.max_redirects=-1"], "collector.max_redirects", "-1"),
    (["collector=web", "collector.user_agent=''"], "collector.user_agent", "''"),
    (["collector=web", "collector.connect_timeout=0"], "collector.connect_timeout", "0"),
    (["collector=web", "collector.read_timeout=-1"], "collector.read_timeout", "-1"),
    (["collector=web", "collector.fetch_timeout=0"], "collector.fetch_timeout", "0"),
    (["collector=web", "collector.max_body_bytes=0"], "collector.max_body_bytes", "0"),
    (["collector=web", "collector.max_extract_bytes=0"], "collector.max_extract_bytes", "0"),
    (["collector=web", "collector.backoff=-1"], "collector.backoff", "-1"),
    (["collector=web", "collector.max_backoff=0.5"], "collector.max_backoff", "0.5"),
    (["collector=web", "collector.warc_path=''"], "collector.warc_path", "''"),
    (["collector=mix", "collector.max_bytes=0"], "collector.max_bytes", "0"),
    (["collector=mix", "collector.max_documents=0"], "collector.max_documents", "0"),
    (["collector=mix", "collector.sources=[{collector:{name:stdlib},weight:0}]"], "collector.sources[0].weight", "0"),
    (["collector=mix", "collector.sources=[{collector:{name:stdlib},label:'../up'}]"], "collector.sources[0].label", "../up"),
    (["collector=mix", "collector.sources=[{collector:{name:stdlib,max_bytes:0}}]"], "collector.sources[0].collector.max_bytes", "0"),
    (["collector=mix", "collector.sources=[{collector:{name:web,seeds:['ftp://example.org/']}}]"], "collector.sources[0].collector.seeds", "ftp://"),
]


def check(*overrides: str):
    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        return hydra_bridge.check(compose("train", overrides=list(overrides)))


def case_id(case) -> str:
    return " ".join(case[0])


@pytest.mark.parametrize("overrides, key, value", CLI_CASES, ids=map(case_id, CLI_CASES))
def test_the_cli_refuses_a_bad_value_before_any_stage(tmp_path, overrides, key, value):
    proc = lmforge("train", *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert f"{key}={value}" in out
    assert "Traceback" not in out
    assert "building stage" not in out and "reusing cached stage" not in out


@pytest.mark.parametrize("overrides, key, value", CLI_CASES + MORE_CASES, ids=map(case_id, CLI_CASES + MORE_CASES))
def test_the_config_check_names_the_key_and_the_value(overrides, key, value):
    with pytest.raises(ConfigError) as caught:
        check(*overrides)
    message = str(caught.value)
    assert key in message and value in message, message


@pytest.mark.parametrize("override", ["model.n_layer=0", "trainer.precision=banana", "trainer.devices=0", "collector.max_bytes=0", "collector.globs=[]"])
def test_the_message_says_what_is_allowed_and_gives_an_example(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=\S+: .+; e\.g\. {key}=\S+$"):
        check(override)


@pytest.mark.parametrize(
    "devices", [1, 2, -1, "auto", "-1", "2", "0,1", "1,", [0], [0, 1]],
)
def test_every_devices_form_lightning_takes_is_accepted(devices):
    assert TrainerConfig(devices=devices).devices == devices


@pytest.mark.parametrize("precision", ["auto", "32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine"])
def test_every_lightning_precision_is_accepted(precision):
    assert TrainerConfig(precision=precision).precision == precision


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: TrainerConfig(max_steps=0), r"^max_steps=0: must be at least 1; e\.g\. max_steps=1000$"),
        (lambda: TrainerConfig(limit_val_batches=0.5, checkpoint_top_k=-3), r"^checkpoint_top_k=-3: must be -1 \(keep all\)"),
        (lambda: DataConfig(num_workers=-1), r"^num_workers=-1: must be 0 or more"),
        (lambda: SampleConfig(top_k=0), r"^top_k=0: must be at least 1, or null"),
        (lambda: TransformerConfig(n_embd=-8), r"^model\.n_embd=-8: must be at least 1"),
        (lambda: TransformerConfig(n_head=0), r"^model\.n_head=0: must be at least 1"),
        (lambda: RNNConfig(n_layer=0), r"^model\.n_layer=0: must be at least 1"),
        (lambda: UnigramConfig(n_sub_iterations=0), r"^n_sub_iterations=0: must be at least 1; e\.g\. n_sub_iterations=2$"),
        (lambda: QualityConfig(max_dup_para_fraction=2.0), r"^max_dup_para_fraction=2\.0: a share, from 0 to 1"),
        (lambda: BayesConfig(gp_restarts=-1), r"^tuner\.gp_restarts=-1: must be 0 or more"),
        (lambda: StdlibConfig(max_bytes=0), r"^max_bytes=0: must be at least 1, or null; e\.g\. max_bytes=10000000$"),
        (lambda: CodeConfig(max_line_length=0), r"^max_line_length=0: must be at least 1; e\.g\. max_line_length=1000$"),
        (lambda: BooksConfig(paths=[""]), r"^paths=\[''\]: an entry is empty"),
        (lambda: ForumConfig(paths=["a.jsonl", " "]), r"^paths=\[a\.jsonl,' '\]: an entry is empty"),
        (lambda: HfConfig(text_field=""), r"^text_field='': must not be empty; e\.g\. text_field=text$"),
        (lambda: WebConfig(concurrency=0), r"^concurrency=0: must be at least 1; e\.g\. concurrency=8$"),
        (lambda: WebConfig(max_redirects=-1), r"^max_redirects=-1: must be 0 or more; e\.g\. max_redirects=5$"),
        (lambda: WebConfig(backoff=5.0, max_backoff=2.0), r"^max_backoff=2\.0: must be at least backoff=5\.0; e\.g\. max_backoff=60\.0$"),
        (lambda: MixConfig(max_documents=0), r"^max_documents=0: must be at least 1, or null"),
    ],
)
def test_a_config_built_directly_is_checked_too(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_the_collectors_edge_values_are_accepted():
    """0 where 0 means something: seeds only, no delay, no retries, no waits."""
    WebConfig(max_depth=0, delay=0.0, max_retries=0, max_redirects=0, backoff=0.0, max_backoff=0.0)
    StdlibConfig(max_bytes=1)
    MixConfig(sources=[{"collector": {"name": "stdlib"}, "weight": 0.5, "label": "py-code.v2"}])
