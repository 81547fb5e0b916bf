"""``LmforgeLM``: lm-eval-harness's model interface over an lmforge run.

The run is opened through ``lmforge.runs.Run`` (a run directory, a checkpoint inside one,
or a folder ``lmforge export`` wrote), so the model and tokenizer are the run's own:

- ``loglikelihood``: each (context, continuation) is tokenized as lm-eval's ``hf`` model
  tokenizes it (``TemplateLM._encode_pair``: the whole text, split where the context's
  tokens end), the requests are sorted longest first and scored ``batch_size`` rows per
  forward pass, right-padded (a causal model's real positions never see the padding).
  Each gives the continuation's summed log-probability and whether greedy decoding
  would have produced it;
- ``loglikelihood_rolling``: a whole text's log-probability, over disjoint windows of the
  model's context (``data.seq_len``), the first one after the eos token;
- ``generate_until``: greedy (or sampled, when a task asks) decoding through the shared
  generation code, ``lmforge.engine.complete``: batched, over the KV cache, ending at
  any of the ``until`` texts (which are not returned), at eos or after ``max_gen_toks``.

Harness text goes to the run's tokenizer as it is, without the run's preprocessing
steps. The benchmark's prompts and answer choices are the task; the run's filters
(quality, dedup, PII...) would drop or rewrite requests, and the harness needs one score
per request. This also keeps the numbers equal to the ``hf`` model's on an export.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from lmforge.errors import ConfigError
from lmforge.runs import Run

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's hf model's default


class LmforgeLM(TemplateLM):
    """An lmforge run as an lm-eval model: ``--model lmforge --model_args pretrained=<run>``.

    Arguments (lm-eval's ``model_args``): ``pretrained``, the run directory, checkpoint
    or export; ``checkpoint``, another checkpoint of the run; ``batch_size``, requests per
    forward pass (``auto`` means 16); ``device`` (default: cuda when there is one);
    ``max_gen_toks``, new tokens at most when a task sets none (256).
    """

    backend = "causal"

    def __init__(
        self,
        pretrained: str,
        checkpoint: str | None = None,
        batch_size: int | str = 16,
        max_batch_size: int | None = None,
        device: str | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ConfigError(
                f"lm-eval model_args {', '.join(sorted(unknown))}: not an argument of the lmforge model; it takes "
                f"pretrained, checkpoint, batch_size, device and max_gen_toks"
            )
        self.run = Run.open(pretrained)
        if self.run.spec.model.entry.cls.objective != "causal":
            raise ConfigError(
                f"{pretrained}: model={self.run.spec.model.name} is a masked LM; lm-eval's log-likelihoods and generation "
                f"need a causal model (model=transformer or model=rnn)"
            )
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.run.model(checkpoint, device=self._device)
        self.tok = self.run.tokenizer
        size = str(batch_size).split(":")[0]  # lm-eval writes "auto:N"
        self.batch_size = 16 if size == "auto" else max(1, int(size))
        self.max_length = int(self.model.max_seq_len)
        self.max_gen_toks = int(max_gen_toks)
        ids = self.tok.special_ids
        self._eot = ids.get("eos", ids.get("sep"))
        self._prefix = ids.get("bos", self._eot)

    @property
    def eot_token_id(self) -> int:
        if self._eot is None:
            raise ConfigError(f"{self.run.dir}: the run's tokenizer has no eos token, which lm-eval needs before an empty context")
        return self._eot

    @property
    def prefix_token_id(self) -> int:
        return self.eot_token_id if self._prefix is None else self._prefix

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return f"lmforge-{self.run.spec.tokenizer.name}-{self.run.name}"

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tok.encode_batch([string])[0]

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tok.decode(list(tokens))

    @torch.inference_mode()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, cache: bool = True, **kwargs: Any) -> list[tuple[float, bool]]:
        """``requests``: ((context, continuation), context ids, continuation ids) each."""
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="lmforge loglikelihood", disable=disable_tqdm or len(batches) < 2):
            rows = []
            for i in batch:
                _, context, continuation = requests[i]
                whole = (context + continuation)[-(self.max_length + 1) :]  # the window ends with the continuation
                inputs, n = whole[:-1], min(len(continuation), len(whole) - 1)
                rows.append((inputs, whole[len(whole) - n :]))
            width = max(len(inputs) for inputs, _ in rows)
            idx = torch.zeros(len(rows), width, dtype=torch.long)
            for b, (inputs, _) in enumerate(rows):
                idx[b, : len(inputs)] = torch.tensor(inputs)
            logits = self.model(idx.to(self._device)).logits  # (B, T, V)
            for b, (i, (inputs, targets)) in enumerate(zip(batch, rows)):
                end = len(inputs)
                logprobs = F.log_softmax(logits[b, end - len(targets) : end].float(), dim=-1)  # (n, V)
                target = torch.tensor(targets, device=logprobs.device)
                answer = (float(logprobs.gather(1, target[:, None]).sum()), bool((logprobs.argmax(-1) == target).all()))
                results[i] = answer
                if cache:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for r, request in enumerate(requests):
            (text,) = request.args
            for context, target in map(make_disjoint_window, get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1,
            )):
                windows.append(((None, None), context, target))
                owner.append(r)
        totals = [0.0] * len(requests)
        for r, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm, cache=False)):
            totals[r] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lmforge.engine import Sampling, complete

        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}  # requests that decode alike go together
        settings = [self._sampling(request.args[1]) for request in requests]
        for i, sampling in enumerate(settings):
            groups.setdefault(repr(sampling), []).append(i)
        batches = [rows[k : k + self.batch_size] for rows in groups.values() for k in range(0, len(rows), self.batch_size)]
        for batch in tqdm(batches, desc="lmforge generate_until", disable=disable_tqdm or len(batches) < 2):
            sampling = settings[batch[0]]
            room = max(1, self.max_length - sampling.max_tokens)  # the context keeps its end, as lm-eval's hf model does
            prompts = [(self.tok_encode(requests[i].args[0]) or [self.prefix_token_id])[-room:] for i in batch]
            for i, done in zip(batch, complete(self.model, self.tok, prompts, sampling)):
                results[i] = done.text
                self.cache_hook.add_partial("generate_until", requests[i].args, done.text)
        return results  # type: ignore[return-value]

    def _sampling(self, gen_kwargs: dict):
        """lm-eval's generation arguments as lmforge's ``Sampling``; greedy unless ``do_sample``."""
        from lmforge.engine import Sampling

        kwargs = dict(gen_kwargs or {})
        until = kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_tokens = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
        max_tokens = max(1, min(max_tokens, self.max_length - 1))
        sample = bool(kwargs.pop("do_sample", False)) and float(kwargs.get("temperature", 1.0)) > 0
        return Sampling(
            max_tokens=max_tokens,
            temperature=float(kwargs.get("temperature", 1.0)) if sample else 0.0,
            top_k=int(kwargs["top_k"]) if sample and kwargs.get("top_k") else None,
            top_p=float(kwargs.get("top_p") or 1.0) if sample else 1.0,
            stop=tuple(u for u in until if u),
            seed=1234 if sample else None,  # lm-eval seeds its own generators with 1234 too
        )
