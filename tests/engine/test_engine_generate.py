"""``lmforge.engine.generate``: sampling settings, streaming, batching with padding, stop sequences."""

import pytest
import torch

from lmforge.engine import Sampling, complete, stream
from lmforge.errors import ConfigError, DataError
from lmforge.plugins.models.rnn import RNN, RNNConfig
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

V, T = 300, 48


class Bytes:
    """A byte-level tokenizer: one token per UTF-8 byte, so characters split across tokens."""

    special_ids = {"eos": 256}

    def encode_batch(self, texts):
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class Scripted(torch.nn.Module):
    """A model that always predicts the next id of a fixed script, whatever the input."""

    supports_cache = False
    max_seq_len = 64

    def __init__(self, script):
        super().__init__()
        self.script = script
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, *, cache=None, return_attention=False, **_):
        from lmforge.contracts import LMOutput

        B, S = idx.shape
        logits = torch.full((B, S, V), -10.0)
        step = S - self.prompt_len
        logits[:, -1, self.script[min(step, len(self.script) - 1)]] = 10.0
        return LMOutput(logits=logits)


def transformer(pos="rope", seed=0):
    torch.manual_seed(seed)
    config = TransformerConfig(n_layer=2, n_head=4, n_embd=64, pos=pos)
    return Transformer(config).build(vocab_size=V, max_seq_len=T).eval()


def prompts(lengths=(3, 11, 7, 1), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_a_batch_of_prompts_of_different_lengths_gives_each_prompt_its_own_tokens(pos):
    """Left padding with a key mask and per-row positions changes nothing a row decodes (greedy)."""
    model, rows = transformer(pos), prompts()
    greedy = Sampling(max_tokens=20, temperature=0)
    together = complete(model, Bytes(), rows, greedy, stop_at_eos=False)
    for prompt, batched in zip(rows, together):
        alone = complete(model, Bytes(), [prompt], greedy, stop_at_eos=False)[0]
        assert batched.token_ids == alone.token_ids and len(alone.token_ids) == 20
        assert batched.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def test_padded_logits_equal_the_row_alone_with_and_without_cache():
    """The contract's key_mask and positions: a padded row's real positions score as the row alone."""
    for pos in ("rope", "learned"):
        model = transformer(pos)
        short = torch.tensor([prompts((5,))[0]])
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)
        key_mask = torch.tensor([[False] * 3 + [True] * 5])
        positions = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4]])
        alone = model(short).logits
        masked = model(padded, key_mask=key_mask, positions=positions).logits[:, 3:]
        torch.testing.assert_close(masked, alone, atol=1e-5, rtol=1e-5)
        cache = model.init_cache(1, 10)
        model(padded, cache=cache, key_mask=key_mask, positions=positions)
        step = model(torch.tensor([[7]]), cache=cache, key_mask=torch.cat([key_mask, torch.ones(1, 1, dtype=torch.bool)], 1), positions=torch.tensor([[5]]))
        full = model(torch.cat([short, torch.tensor([[7]])], 1)).logits[:, -1]
        torch.testing.assert_close(step.logits[:, -1], full, atol=1e-5, rtol=1e-5)


def test_a_model_without_padding_decodes_rows_of_different_lengths_apart():
    """The rnn's state would run through left padding: each length decodes on its own, with the same tokens."""
    torch.manual_seed(0)
    model = RNN(RNNConfig(n_layer=1, n_embd=32, hidden=32)).build(vocab_size=V, max_seq_len=T).eval()
    assert not getattr(model, "supports_padding", False)
    rows, greedy = prompts((4, 9, 4)), Sampling(max_tokens=10, temperature=0)
    together = complete(model, Bytes(), rows, greedy, stop_at_eos=False)
    for prompt, batched in zip(rows, together):
        assert batched.token_ids == complete(model, Bytes(), [prompt], greedy, stop_at_eos=False)[0].token_ids


def test_the_same_seed_gives_the_same_text():
    model, rows = transformer(), prompts((4, 6))
    runs = [complete(model, Bytes(), rows, Sampling(max_tokens=16, temperature=1.0, top_k=0, seed=s), stop_at_eos=False) for s in (3, 3, 4)]
    assert [c.token_ids for c in runs[0]] == [c.token_ids for c in runs[1]]
    assert [c.token_ids for c in runs[0]] != [c.token_ids for c in runs[2]]


def scripted(text: str, prompt=(104, 105)):
    model = Scripted(list(text.encode("utf-8")) + [256])
    model.prompt_len = len(prompt)
    return model, [list(prompt)]


def test_streamed_text_never_splits_a_character_and_ends_at_eos():
    model, rows = scripted("né ✓ 🙂 done")
    chunks = list(stream(model, Bytes(), rows, Sampling(max_tokens=40, temperature=0)))
    assert "".join(c.text for c in chunks) == "né ✓ 🙂 done"
    assert all("\ufffd" not in c.text for c in chunks)
    assert "" in [c.text for c in chunks]  # bytes held back until their character completes
    assert chunks[-1].finish_reason == "stop" and chunks[-1].token_id == 256
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)


def test_a_stop_sequence_ends_the_row_and_is_not_emitted():
    model, rows = scripted("a = 1\nUser: hi\n")
    chunks = list(stream(model, Bytes(), rows, Sampling(max_tokens=40, temperature=0, stop=("\nUser:",))))
    assert "".join(c.text for c in chunks) == "a = 1"
    assert chunks[-1].finish_reason == "stop"


def test_max_tokens_ends_the_row_with_length():
    model, rows = scripted("abcdefgh")
    done = complete(model, Bytes(), rows, Sampling(max_tokens=3, temperature=0))[0]
    assert done.text == "abc" and done.finish_reason == "length" and len(done.token_ids) == 3


def test_logprobs_report_the_chosen_token_and_the_likeliest_alternatives():
    done = complete(transformer(), Bytes(), prompts((5,)), Sampling(max_tokens=4, temperature=0, logprobs=3), stop_at_eos=False)[0]
    for token, lp, top in zip(done.token_ids, done.logprobs, done.top_logprobs):
        assert len(top) == 3 and top[0][0] == token and top[0][1] == pytest.approx(lp)
        assert lp <= 0 and top[0][1] >= top[1][1] >= top[2][1]


def test_top_p_and_repetition_penalty_change_sampling_as_documented():
    from lmforge.engine.generate import _pick

    logits = torch.tensor([[3.0, 2.9, -5.0, -5.0]])
    g = torch.Generator().manual_seed(0)
    assert {int(_pick(logits, temperature=1.0, top_p=0.5, generator=g)) for _ in range(30)} == {0}
    seen = torch.tensor([[True, False, False, False]])
    assert int(_pick(logits, temperature=0, penalty=2.0, seen=seen)) == 1


@pytest.mark.parametrize(
    "settings,flag",
    [
        (dict(max_tokens=0), "--max-tokens"),
        (dict(temperature=-1), "--temperature"),
        (dict(top_k=-2), "--top-k"),
        (dict(top_p=0), "--top-p"),
        (dict(top_p=1.5), "--top-p"),
        (dict(repetition_penalty=0), "--repetition-penalty"),
        (dict(stop=("",)), "--stop"),
        (dict(seed="x"), "--seed"),
        (dict(logprobs=21), "--logprobs"),
    ],
)
def test_bad_sampling_settings_name_their_flag(settings, flag):
    with pytest.raises(ConfigError, match=flag):
        Sampling(**settings)


def test_an_empty_prompt_or_one_that_fills_the_context_is_refused():
    model = transformer()
    with pytest.raises(DataError, match="prompt 2 is empty"):
        complete(model, Bytes(), [[1], []])
    with pytest.raises(DataError, match=rf"prompt 1 has {T} tokens, but the model's context \(data.seq_len\) is {T}"):
        complete(model, Bytes(), [[1] * T])


def test_a_row_stops_with_length_when_its_context_is_full():
    done = complete(transformer(), Bytes(), [[1] * (T - 5)], Sampling(max_tokens=50, temperature=0), stop_at_eos=False)[0]
    assert len(done.token_ids) == 5 and done.finish_reason == "length"


def test_the_stream_restores_the_model_mode():
    model = transformer().train()
    complete(model, Bytes(), prompts((3,)), Sampling(max_tokens=2))
    assert model.training
