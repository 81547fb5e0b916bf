"""``lmforge finetune`` on a ``preference`` task (``task=dpo``): DPO, SimPO and ORPO.

The seam ``lmforge finetune`` calls when ``task.type == "preference"``::

    prepared = prepare(model, tokenizer, task, splits, spec, seq_len=..., run_dir=..., resumed=...)
    fitted = engine.fit(prepared.model, prepared.data, vocab_size=2, callbacks=[*prepared.callbacks, ...])
    scores = prepared.scores(fitted.metrics)

Each pair is two sequences, the prompt followed by the chosen and by the rejected reply
(``Example.segments`` and ``Example.rejected``). A sequence's log-probability
``log π(y|x)`` is the sum over its reply tokens only. With ``β = finetune.beta``:

- ``dpo`` (Rafailov et al. 2023): ``z = β·[(log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x))]``;
- ``simpo`` (Meng et al. 2024), no reference: ``z = β·(log πθ(y_w|x)/|y_w| − log πθ(y_l|x)/|y_l|) − γ``;
- ``orpo`` (Hong et al. 2024), no reference: ``z`` is the log odds ratio of the two replies'
  mean token probabilities, and the chosen reply's mean token NLL is added to the loss.

The loss is ``−log σ(z)``, plus ``finetune.sft_weight`` times the chosen reply's mean
token NLL (RPO; always 1 for ``orpo``). The reference is the base model itself, frozen:
its log-probabilities are computed once, before training, under ``torch.no_grad`` in eval
mode, and cached in ``reference_logps.npz`` in the run (a resumed run reads them back);
``finetune.reference=live`` runs a frozen copy instead, for comparison.

How it rides on the engine unchanged: ``PreferenceModel`` wraps the policy and hands
``engine.fit`` batches ``(inputs (B, 5, T), targets (B, 1))``, the rows of ``inputs`` being
the chosen inputs and targets, the rejected inputs and targets, and the pair's index
(for its cached reference log-probabilities) at ``[4, 0]``. Its logits are ``(B, 1, 2) =
[z, 0]`` and every target is 0, so the engine's cross-entropy is ``−log σ(z)`` in
validation; ``training_loss`` adds the NLL term in training. Its ``state_dict`` is the
policy's, so checkpoints load into the architecture (``Run.model()``) as any other run's.
``PreferenceMetrics`` logs, per step and per validation pass: ``reward_accuracy`` (how often
the chosen reply's implicit reward beats the rejected one's, a tie being no win),
``reward_margin`` (their mean difference), ``log_ratio`` (the mean ``log πθ(y|x) −
log π_ref(y|x)`` of the pairs' replies, 0 at the start), ``preference_accuracy`` (how often
the model gives the chosen reply a higher mean token log-probability; the base's is
measured on the same pairs) and, in validation, ``kl``: KL(πθ ‖ π_ref) of the next-token
distributions over the whole vocabulary, per reply token, against a frozen copy of the
base (kept off the optimizer and the checkpoints; in cached mode it runs in validation
only, so training steps never pay for it).
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lmforge.engine.losses import LossParts
from lmforge.errors import DataError
from lmforge.files import atomic_write

if TYPE_CHECKING:
    from lmforge.contracts import Example, Task, Tokenizer

log = logging.getLogger("lmforge")

IGNORE = -100
OBJECTIVES = ("dpo", "simpo", "orpo")
BETA = {"dpo": 0.1, "simpo": 2.0, "orpo": 0.1}  # the papers' (and TRL's) defaults; orpo's is λ
CACHE = "reference_logps.npz"
ROWS = 5  # chosen inputs, chosen targets, rejected inputs, rejected targets, the pair's index


class Objective(NamedTuple):
    name: str  # dpo | simpo | orpo
    beta: float
    gamma: float  # simpo's target margin
    sft_weight: float  # weight of the chosen reply's mean token NLL (orpo: 1)


def objective_of(finetune) -> Objective:
    name = finetune.preference
    beta = finetune.beta if finetune.beta is not None else BETA[name]
    return Objective(name, float(beta), float(finetune.simpo_gamma), 1.0 if name == "orpo" else float(finetune.sft_weight))


# The objective -------------------------------------------------------------------------

class Stats(NamedTuple):
    """One batch of pairs, each (B,): the objective's ``z``, the implicit rewards, and what the metrics read."""

    z: torch.Tensor
    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor
    log_ratio: torch.Tensor  # mean over the two replies of log πθ(y|x) − log π_ref(y|x)
    prefers_chosen: torch.Tensor  # the policy's mean token log-probability is higher for the chosen reply
    chosen_nll: torch.Tensor  # (): the chosen replies' token NLL, summed over the batch's tokens / their count
    kl: torch.Tensor  # KL(πθ ‖ π_ref) per reply token, averaged over the pair's reply tokens; nan in training


def preference_z(objective: Objective, policy: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z`` and the chosen and rejected implicit rewards, from summed reply log-probabilities.

    ``policy`` and ``reference`` are (B, 2): log π(y_w|x), log π(y_l|x) summed over the reply
    tokens; ``lengths`` (B, 2) the reply token counts.
    """
    beta = objective.beta
    if objective.name == "dpo":
        rewards = beta * (policy - reference)
        return rewards[:, 0] - rewards[:, 1], rewards[:, 0], rewards[:, 1]
    mean = policy / lengths.clamp(min=1)
    if objective.name == "simpo":
        rewards = beta * mean
        return rewards[:, 0] - rewards[:, 1] - objective.gamma, rewards[:, 0], rewards[:, 1]
    # orpo: log odds of the mean token probability p, log(p / (1 - p)), with log p = mean < 0
    log_odds = mean - torch.log1p(-torch.exp(mean.clamp(max=-1e-6)))
    rewards = beta * mean
    return log_odds[:, 0] - log_odds[:, 1], rewards[:, 0], rewards[:, 1]


def preference_loss(z: torch.Tensor) -> torch.Tensor:
    """``−log σ(z)`` per pair, stably."""
    return F.softplus(-z)


def reply_logps(model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's summed log-probability of its target tokens, and their count: (N,), (N,)."""
    logits = model(ids).logits if logits is None else logits  # (N, T, V)
    token = -F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="none")
    mask = targets != IGNORE
    return (token.view_as(targets) * mask).sum(1), mask.sum(1)


def token_kl(policy_logits: torch.Tensor, reference_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,): KL(πθ ‖ π_ref) of the next-token distributions, over the whole vocabulary, summed
    over each row's target positions."""
    p = F.log_softmax(policy_logits.float(), -1)
    q = F.log_softmax(reference_logits.float(), -1)
    kl = (p.exp() * (p - q)).sum(-1)  # (N, T)
    return (kl * (targets != IGNORE)).sum(1)


def as_pairs(values: torch.Tensor, b: int) -> torch.Tensor:
    """(2B,) per sequence, chosen rows first -> (B, 2): each pair's chosen, rejected."""
    return torch.stack([values[:b], values[b:]], 1)


def split_batch(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 5, T) -> the 2B sequences (chosen rows first), their targets, and the pairs' indices (B,)."""
    ids = torch.cat([inputs[:, 0], inputs[:, 2]])
    targets = torch.cat([inputs[:, 1], inputs[:, 3]])
    return ids, targets, inputs[:, 4, 0]


class _Output(NamedTuple):
    logits: torch.Tensor


class PreferenceModel(torch.nn.Module):
    """The policy, trained on preference pairs through ``engine.fit``; see the module docstring."""

    def __init__(self, policy: torch.nn.Module, objective: Objective, reference: torch.Tensor, frozen: torch.nn.Module, live: bool = False) -> None:
        super().__init__()
        self.policy, self.objective, self.live = policy, objective, live
        self.register_buffer("reference", reference, persistent=False)  # (N, 2): every pair's, train then validation
        # the base, frozen: a copy no optimizer sees and no checkpoint holds (no submodule). It scores
        # the reference in training only under finetune.reference=live, and the KL in validation
        object.__setattr__(self, "frozen", frozen.eval().requires_grad_(False))
        self.max_seq_len = getattr(policy, "max_seq_len", None)
        self.last: Stats | None = None
        self.register_load_state_dict_pre_hook(_policy_keys)

    def flops_per_token(self, seq_len: int) -> float:
        return self.policy.flops_per_token(seq_len)

    def state_dict(self, *args, **kwargs):
        """The policy's, under this module's prefix: a checkpoint holds the architecture's weights only."""
        return self.policy.state_dict(*args, **kwargs)

    def stats(self, inputs: torch.Tensor) -> Stats:
        ids, targets, index = split_batch(inputs)
        b = inputs.shape[0]
        logits = self.policy(ids).logits
        logp, count = reply_logps(self.policy, ids, targets, logits)
        policy, lengths = as_pairs(logp, b), as_pairs(count, b)
        reference, kl = self.reference[index], torch.full((b,), float("nan"), device=ids.device)
        if self.live or not self.training:
            with torch.no_grad():
                frozen = self._frozen(ids.device)(ids).logits
            if self.live:
                reference = as_pairs(reply_logps(self.frozen, ids, targets, frozen)[0], b)
            if not self.training:
                kl = as_pairs(token_kl(logits.detach(), frozen, targets), b).sum(1) / lengths.sum(1).clamp(min=1)
        z, chosen, rejected = preference_z(self.objective, policy, reference, lengths)
        mean = policy / lengths.clamp(min=1)
        nll = -policy[:, 0].sum() / lengths[:, 0].sum().clamp(min=1)
        return Stats(z, chosen, rejected, (policy - reference).mean(1), mean[:, 0] > mean[:, 1], nll, kl)

    def _frozen(self, device: torch.device) -> torch.nn.Module:
        if next(self.frozen.parameters()).device != device:
            self.frozen.to(device)
        return self.frozen

    def forward(self, inputs: torch.Tensor) -> _Output:
        stats = self.stats(inputs)
        self.last = Stats(*(t.detach() for t in stats))
        return _Output(torch.stack([stats.z, torch.zeros_like(stats.z)], -1).unsqueeze(1))  # (B, 1, 2)

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> LossParts:
        stats = self.stats(inputs)
        self.last = Stats(*(t.detach() for t in stats))
        per_pair = preference_loss(stats.z)
        loss = per_pair.mean()
        if self.objective.sft_weight:
            loss = loss + self.objective.sft_weight * stats.chosen_nll
        zero = torch.zeros((), device=loss.device)
        return LossParts(loss, per_pair.sum().detach(), zero, torch.tensor(per_pair.numel(), device=loss.device))


def _policy_keys(module, state_dict, prefix, *args) -> None:
    """A checkpoint's ``model.<name>`` is the policy's ``<name>``: load it there."""
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "policy.")]:
        state_dict[prefix + "policy." + key[len(prefix):]] = state_dict.pop(key)


# Metrics ---------------------------------------------------------------------------------

METRICS = ("reward_accuracy", "reward_margin", "log_ratio", "preference_accuracy", "kl")  # kl: validation only


def batch_metrics(stats: Stats) -> torch.Tensor:
    """(5,): summed over the batch's pairs, in the order of ``METRICS``."""
    return torch.stack([
        (stats.chosen_reward > stats.rejected_reward).float().sum(), (stats.chosen_reward - stats.rejected_reward).sum(),
        stats.log_ratio.sum(), stats.prefers_chosen.float().sum(), stats.kl.sum(),
    ])


class PreferenceMetrics(Callback):
    """``train/<metric>`` every logged step, ``val/<metric>`` over each validation pass."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stats = pl_module.model.last
        if stats is not None:
            values = batch_metrics(stats) / stats.z.numel()
            pl_module.log_dict({f"train/{k}": v for k, v in zip(METRICS[:-1], values[:-1])})

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.sums = torch.zeros(len(METRICS) + 1, device=pl_module.device)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        stats = pl_module.model.last
        self.sums += torch.cat([batch_metrics(stats), torch.tensor([stats.z.numel()], device=self.sums.device, dtype=self.sums.dtype)])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        total = trainer.strategy.reduce(self.sums, reduce_op="sum")
        values = total[:-1] / total[-1].clamp(min=1)
        pl_module.log_dict({f"val/{k}": v for k, v in zip(METRICS, values)})


# Data ------------------------------------------------------------------------------------

def targets_of(inputs: np.ndarray) -> np.ndarray:
    """(N, 1) zeros: the class of ``z`` in the logits ``[z, 0]``, so cross-entropy is ``−log σ(z)``."""
    return np.zeros((len(inputs), 1), dtype=np.int32)


def encode_pairs(examples: list["Example"], tokenizer: "Tokenizer", *, seq_len: int, overlong: str, offset: int) -> tuple[list, dict]:
    """Each pair's chosen and rejected ``(inputs, targets)``, fitted to ``seq_len``; pairs whose
    index starts at ``offset``. A pair losing either reply to ``overlong=drop`` is dropped."""
    from lmforge.contracts import Example as Ex
    from lmforge.plugins.finetune import _data

    eos = tokenizer.special_ids.get("eos")
    chosen = _data.encode([Ex(e.id, e.segments) for e in examples], tokenizer, eos)
    rejected = _data.encode([Ex(e.id, e.rejected) for e in examples], tokenizer, eos)
    counts = {"examples": len(examples), "truncated": 0, "dropped": 0, "no_target": 0}
    rows = []
    for i, (c, r) in enumerate(zip(chosen, rejected)):
        fitted = [_data.fit_length(x, seq_len, overlong) for x in (c, r)]
        if any(f is None for f in fitted):
            counts["dropped"] += 1
            continue
        counts["truncated"] += any(f is not x for f, x in zip(fitted, (c, r)))
        pair = [_data.pairs(f.ids, f.target) for f in fitted]
        if any(all(t == IGNORE for t in targets) for _, targets in pair):
            counts["no_target"] += 1  # a cut that left a reply no token
            continue
        rows.append((offset + i, pair))
    return rows, counts


def layout(rows: list, width: int, pad: int) -> np.ndarray:
    out = np.full((len(rows), ROWS, width), pad, dtype=np.int32)
    out[:, 1], out[:, 3], out[:, 4] = IGNORE, IGNORE, 0
    for n, (index, ((ci, ct), (ri, rt))) in enumerate(rows):
        out[n, 0, : len(ci)], out[n, 1, : len(ct)], out[n, 2, : len(ri)], out[n, 3, : len(rt)] = ci, ct, ri, rt
        out[n, 4, 0] = index
    return out


# The reference ---------------------------------------------------------------------------

@torch.no_grad()
def reference_logps(model: torch.nn.Module, inputs: np.ndarray, *, batch_size: int, device: str | torch.device) -> np.ndarray:
    """(N, 2): the model's summed reply log-probabilities of every pair, in eval mode, no gradient."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(inputs), 2), dtype=np.float32)
    try:
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(inputs[start : start + batch_size].astype(np.int64)).to(device)
            ids, targets, _ = split_batch(batch)
            logp, _ = reply_logps(model, ids, targets)
            out[start : start + len(batch)] = as_pairs(logp, len(batch)).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def cache_key(inputs: np.ndarray, base_checkpoint: str) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(inputs).tobytes())
    digest.update(str(base_checkpoint).encode())
    return digest.hexdigest()


def read_cache(paths: list[Path], key: str, n: int) -> np.ndarray | None:
    for path in paths:
        try:
            with np.load(path) as found:
                if str(found["key"]) == key and found["logps"].shape == (n, 2):
                    return found["logps"]
        except (OSError, KeyError, ValueError):
            continue  # missing, torn or from other data: computed again
    return None


def write_cache(path: Path, key: str, logps: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), logps=logps)
    atomic_write(path, buffer.getvalue())


# The seam --------------------------------------------------------------------------------

@dataclass
class Prepared:
    model: PreferenceModel
    data: Any  # engine.window_data over the pair rows: (inputs (B, 5, T), targets (B, 1)) batches
    callbacks: list
    counts: dict[str, dict]
    base: dict[str, float]  # the base model's metrics on the validation pairs

    vocab_size: int = 2


def prepare(model, tokenizer, task: "Task", splits: dict[str, list], spec, *, seq_len: int, run_dir: Path,
            resumed: str | None, base_checkpoint: str, device: str) -> Prepared:
    from lmforge import engine

    objective = objective_of(spec.finetune)
    overlong = getattr(task.config, "overlong", "truncate")
    train, val = splits.get("train") or [], splits.get("validation") or []
    if not train or not val:
        raise DataError(f"task={task.name}: the {'train' if not train else 'validation'} split holds no pair: give the task more data or change task.split")
    rows_train, c_train = encode_pairs(train, tokenizer, seq_len=seq_len, overlong=overlong, offset=0)
    rows_val, c_val = encode_pairs(val, tokenizer, seq_len=seq_len, overlong=overlong, offset=len(train))
    if not rows_train or not rows_val:
        raise DataError(f"task={task.name}: no {'training' if not rows_train else 'validation'} pair is left ({'dropped as overlong' if overlong == 'drop' else 'none has a reply token'}): set task.overlong=truncate or raise finetune.seq_len")
    width = max(len(ids) for _, pair in rows_train + rows_val for ids, _ in pair)  # pad no further than the longest reply needs
    special = tokenizer.special_ids
    pad = special.get("pad", special.get("eos", 0))
    inputs = {"train": layout(rows_train, width, pad), "validation": layout(rows_val, width, pad)}
    for name, c in (("train", c_train), ("validation", c_val)):
        log.info("%s split: %d pairs, %d truncated, %d dropped as longer than %d tokens (task.overlong=%s)%s", name,
                 c["examples"], c["truncated"], c["dropped"], seq_len, overlong, f", {c['no_target']} with no reply token left" if c["no_target"] else "")
    # every pair's reference log-probabilities, indexed as layout() numbered them
    table = np.zeros((len(train) + len(val), 2), dtype=np.float32)
    everything = np.concatenate([inputs["train"], inputs["validation"]])
    key = cache_key(everything, base_checkpoint)
    places = [run_dir / CACHE] + ([Path(resumed).parent.parent / CACHE] if resumed else [])
    found = read_cache(places, key, len(everything))
    if found is None:
        log.info("reference: the base model's log-probabilities of %d pairs' replies, computed once (cached in %s)", len(everything), CACHE)
        found = reference_logps(model.to(device), everything, batch_size=spec.finetune.batch_size, device=device)
        model.cpu()
    else:
        log.info("reference: %d pairs' log-probabilities read from %s", len(everything), CACHE)
    write_cache(run_dir / CACHE, key, found)
    table[everything[:, 4, 0]] = found
    import copy

    wrapped = PreferenceModel(model, objective, torch.from_numpy(table), copy.deepcopy(model), live=spec.finetune.reference == "live")
    base = base_metrics(objective, found[len(rows_train):], inputs["validation"])
    data = engine.window_data(
        (inputs["train"], targets_of(inputs["train"])), (inputs["validation"], targets_of(inputs["validation"])),
        batch_size=spec.finetune.batch_size, seed=spec.seed, max_steps=spec.trainer.max_steps,
        accumulate=spec.trainer.accumulate_grad_batches, val_batches=spec.finetune.val_batches, what="finetune.batch_size",
        tokens_per_window=2 * width,  # a pair is two sequences
    )
    log.info("preference: %s, beta %g%s%s; reference %s", objective.name, objective.beta,
             f", gamma {objective.gamma:g}" if objective.name == "simpo" else "",
             f", sft_weight {objective.sft_weight:g}" if objective.sft_weight else "",
             "none (reference-free; its log-probabilities only measure kl)" if objective.name != "dpo" else spec.finetune.reference)
    return Prepared(wrapped, data, [PreferenceMetrics()], {"train": c_train, "validation": c_val}, base)


def base_metrics(objective: Objective, reference: np.ndarray, inputs: np.ndarray) -> dict[str, float]:
    """The base model's metrics on the validation pairs: it is its own reference, so its
    DPO rewards and log-ratio are 0; ``preference_accuracy`` is what it starts from."""
    lengths = torch.from_numpy((inputs[:, [1, 3]] != IGNORE).sum(-1).astype(np.float32))
    ref = torch.from_numpy(reference)
    z, chosen, rejected = preference_z(objective, ref, ref, lengths)
    mean = ref / lengths.clamp(min=1)
    return {
        "loss": float(preference_loss(z).mean()), "reward_accuracy": float((chosen > rejected).float().mean()),
        "reward_margin": float((chosen - rejected).mean()), "log_ratio": 0.0, "kl": 0.0,
        "preference_accuracy": float((mean[:, 0] > mean[:, 1]).float().mean()),
    }


def scores(metrics: dict[str, float]) -> dict[str, float]:
    """The run's preference metrics on the validation pairs, from the final validation."""
    return {k: float(metrics[f"val_{k}"]) for k in METRICS if f"val_{k}" in metrics}
