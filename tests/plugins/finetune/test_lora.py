"""finetune.method=lora: adapters on every linear but the head, merged into plain weights on save."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.plugins.finetune import _lora
from lmforge.plugins.models.rnn import RNN
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

VOCAB = 64


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0)).build(vocab_size=VOCAB, max_seq_len=16).eval()


def adapted(seed: int = 0):
    """A model with LoRA adapters whose B is no longer zero, as after some training."""
    model = tiny(seed)
    names = _lora.apply(model, r=4, alpha=8, dropout=0.0, targets=None, vocab_size=VOCAB)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model, names


def test_adapters_go_on_the_attention_and_mlp_linears_and_freeze_the_rest():
    model, names = adapted()
    assert sorted({n.rsplit(".", 1)[-1] for n in names}) == ["fc", "proj", "qkv"]  # not lm_head
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)


def test_merged_weights_give_the_peft_models_logits():
    model, _ = adapted()
    ids = torch.randint(0, VOCAB, (2, 12))
    with torch.no_grad():
        expected = model(ids).logits
        plain = tiny(seed=1)  # other weights, then the merged ones loaded: the names are the architecture's own
        plain.load_state_dict(_lora.merged_state(model))
        torch.testing.assert_close(plain(ids).logits, expected, rtol=0, atol=1e-5)
        merged = _lora.merge(model)  # in place: plain nn.Linear layers back
        assert not _lora.layers(merged)
        torch.testing.assert_close(merged(ids).logits, expected, rtol=0, atol=1e-5)


def test_a_checkpoint_holds_merged_weights_and_resumes_the_adapters():
    """What MergeOnSave writes loads into the plain architecture, and restores the adapters."""
    from lmforge.engine.module import LMModule

    model, _ = adapted()
    module = LMModule(model, vocab_size=VOCAB)
    checkpoint = {"state_dict": module.state_dict()}
    _lora.MergeOnSave().on_save_checkpoint(None, module, checkpoint)
    weights = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    tiny(seed=1).load_state_dict(weights)  # strict: exactly the architecture's names
    assert "skipped_steps" in checkpoint["state_dict"]

    fresh, _ = adapted(seed=0)
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            if "lora_" in name:
                p.zero_()
    again = LMModule(fresh, vocab_size=VOCAB)
    callback = _lora.MergeOnSave()
    callback.setup(None, again, "fit")
    callback.on_load_checkpoint(None, again, checkpoint)
    for key, value in _lora.adapter_state(model).items():
        assert torch.equal(_lora.adapter_state(fresh)[key], value), key


def test_any_architecture_of_linears_gets_adapters():
    torch.manual_seed(0)
    model = RNN().build(vocab_size=VOCAB, max_seq_len=16)
    linears = _lora.linear_names(model, VOCAB)
    if not linears:
        with pytest.raises(ConfigError, match="finetune.method=full"):
            _lora.apply(model, r=2, alpha=4, dropout=0.0, targets=None, vocab_size=VOCAB)
    else:
        assert _lora.apply(model, r=2, alpha=4, dropout=0.0, targets=None, vocab_size=VOCAB) == linears


def test_unknown_targets_are_named():
    with pytest.raises(ConfigError, match="finetune.lora_targets: nope name no nn.Linear"):
        _lora.apply(tiny(), r=2, alpha=4, dropout=0.0, targets=["qkv", "nope"], vocab_size=VOCAB)
