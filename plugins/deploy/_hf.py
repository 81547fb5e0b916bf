"""lmforge's built-in architectures as stock Hugging Face classes: ``config.json`` and weights.

Each mapping takes the run's resolved architecture config and the loaded module, and
returns the ``config.json`` dict and the tensors under the Hugging Face names. They write
no ``auto_map`` and need no ``trust_remote_code``: the files load with ``transformers``
alone. ``unsupported`` says, before any weights are read, why a variant has no mapping.

What differs between the two sides, and what the mapping does about it:

- fused projections: lmforge's ``qkv`` is one (C + 2·kv, C) matrix, split into
  ``q_proj``/``k_proj``/``v_proj`` (Llama) or ``query``/``key``/``value`` (BERT); SwiGLU's
  fused ``fc`` holds the gate half first, then the up half;
- RoPE: lmforge rotates halves (``cat([-x2, x1])`` with ``cat([angles, angles])``), the
  GPT-NeoX pairing that ``LlamaForCausalLM`` also uses, so q and k need no permutation
  (a Meta-format checkpoint, interleaved pairs, would);
- GPT-2's ``Conv1D`` stores (in, out): every linear weight is transposed;
- activations: lmforge's GELU is torch's exact erf form, ``"gelu"`` in ``transformers``,
  not GPT-2's default tanh approximation ``"gelu_new"``;
- biases lmforge leaves out (``model.bias=false``) are zeros where GPT-2 always has one.
"""

from __future__ import annotations

from typing import Any

LLAMA = {"pos": "rope", "norm": "rmsnorm", "mlp": "swiglu"}
GPT2 = {"pos": "learned", "norm": "layernorm", "mlp": "gelu"}


def unsupported(name: str, config: Any) -> str | None:
    """Why the architecture ``name`` with ``config`` has no stock HF class, with the fix; None when it has one."""
    if name == "bert":
        if config.norm_position != "post":
            return (
                f"model=bert with model.norm_position={config.norm_position} has no stock Hugging Face class "
                f"(BertForMaskedLM normalises after each residual add): train with model.norm_position=post"
            )
        return None
    if name != "transformer":
        return f"model={name} has no stock Hugging Face class and does not provide export_hf"
    options = {k: getattr(config, k) for k in LLAMA}
    changes = {target: [f"model.{k}={v}" for k, v in want.items() if options[k] != v] for target, want in (("LlamaForCausalLM", LLAMA), ("GPT2LMHeadModel", GPT2))}
    target, change = min(changes.items(), key=lambda kv: len(kv[1]))
    if not change and target == "GPT2LMHeadModel" and (config.n_kv_head or config.n_head) != config.n_head:
        return (
            f"model=transformer with model.n_kv_head={config.n_kv_head} < model.n_head={config.n_head} (grouped-query "
            f"attention) has no GPT2LMHeadModel equivalent: train with model.n_kv_head=null, or with "
            f"model.pos=rope model.norm=rmsnorm model.mlp=swiglu (LlamaForCausalLM supports it)"
        )
    if not change:
        return None
    mix = ", ".join(f"model.{k}={v}" for k, v in options.items())
    return f"model=transformer with {mix} has no stock Hugging Face class: train with {' '.join(change)} ({target})"


def convert(name: str, config: Any, model, ids: dict[str, int | None]) -> tuple[dict, dict]:
    """``config.json`` and the tensors (HF names) for a supported variant; ``ids`` holds bos/eos/pad."""
    if name == "bert":
        cfg, tensors = _bert(config, model)
    elif config.pos == "rope":
        cfg, tensors = _llama(config, model)
    else:
        cfg, tensors = _gpt2(config, model)
    cfg.update({f"{role}_token_id": ids.get(role) for role in ("bos", "eos", "pad")})
    cfg["torch_dtype"] = "float32"
    return cfg, {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def _split_qkv(attn, n_embd: int, kv_dim: int, kind: str):
    sizes = [n_embd, kv_dim, kv_dim]
    weights = attn.qkv.weight.split(sizes, dim=0)
    biases = attn.qkv.bias.split(sizes, dim=0) if attn.qkv.bias is not None else (None, None, None)
    return [(kind_name, w, b) for kind_name, w, b in zip(kind, weights, biases)]


def _llama(c, model) -> tuple[dict, dict]:
    head_dim = c.n_embd // c.n_head
    n_kv = c.n_kv_head or c.n_head
    hidden = model.blocks[0].mlp.proj.in_features
    t = {"model.embed_tokens.weight": model.wte.weight, "model.norm.weight": model.norm_f.weight}
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}"
        t[f"{p}.input_layernorm.weight"] = block.norm1.weight
        t[f"{p}.post_attention_layernorm.weight"] = block.norm2.weight
        for proj, w, b in _split_qkv(block.attn, c.n_embd, n_kv * head_dim, ("q_proj", "k_proj", "v_proj")):
            t[f"{p}.self_attn.{proj}.weight"] = w
            if b is not None:
                t[f"{p}.self_attn.{proj}.bias"] = b
        named = {"self_attn.o_proj": block.attn.proj, "mlp.down_proj": block.mlp.proj}
        gate, up = block.mlp.fc.weight.chunk(2, dim=0)  # lmforge's MLP: gate half first, then up
        t[f"{p}.mlp.gate_proj.weight"], t[f"{p}.mlp.up_proj.weight"] = gate, up
        if block.mlp.fc.bias is not None:
            t[f"{p}.mlp.gate_proj.bias"], t[f"{p}.mlp.up_proj.bias"] = block.mlp.fc.bias.chunk(2, dim=0)
        for hf, linear in named.items():
            t[f"{p}.{hf}.weight"] = linear.weight
            if linear.bias is not None:
                t[f"{p}.{hf}.bias"] = linear.bias
    if not c.tie_embeddings:
        t["lm_head.weight"] = model.lm_head.weight
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": hidden,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": model.max_seq_len,
        "rms_norm_eps": model.norm_f.eps,
        "rope_theta": c.rope_theta,  # transformers < 5
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},  # transformers >= 5
        "attention_bias": c.bias,
        "mlp_bias": c.bias,
        "attention_dropout": c.dropout,
        "tie_word_embeddings": c.tie_embeddings,
        "initializer_range": 0.02,
        "use_cache": True,
    }
    return cfg, t


def _gpt2(c, model) -> tuple[dict, dict]:
    import torch

    def bias(module, size):
        return module.bias if getattr(module, "bias", None) is not None else torch.zeros(size)

    hidden = model.blocks[0].mlp.proj.in_features
    t = {"transformer.wte.weight": model.wte.weight, "transformer.wpe.weight": model.wpe.weight}
    norms = {"ln_f": model.norm_f}
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}"
        norms |= {f"h.{i}.ln_1": block.norm1, f"h.{i}.ln_2": block.norm2}
        linears = {"attn.c_attn": block.attn.qkv, "attn.c_proj": block.attn.proj, "mlp.c_fc": block.mlp.fc, "mlp.c_proj": block.mlp.proj}
        for hf, linear in linears.items():
            t[f"{p}.{hf}.weight"] = linear.weight.t()  # Conv1D stores (in, out)
            t[f"{p}.{hf}.bias"] = bias(linear, linear.out_features)
    for hf, norm in norms.items():
        t[f"transformer.{hf}.weight"] = norm.weight
        t[f"transformer.{hf}.bias"] = bias(norm, c.n_embd)
    if not c.tie_embeddings:
        t["lm_head.weight"] = model.lm_head.weight
    cfg = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": model.vocab_size,
        "n_positions": model.max_seq_len,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": hidden,
        "activation_function": "gelu",  # torch's exact GELU, as lmforge's MLP; GPT-2's own is gelu_new
        "layer_norm_epsilon": model.norm_f.eps,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "scale_attn_weights": True,
        "tie_word_embeddings": c.tie_embeddings,
        "initializer_range": 0.02,
        "use_cache": True,
    }
    return cfg, t


def _bert(c, model) -> tuple[dict, dict]:
    import torch

    e = "bert.embeddings"
    t = {
        f"{e}.word_embeddings.weight": model.wte.weight,
        f"{e}.position_embeddings.weight": model.wpe.weight,
        f"{e}.token_type_embeddings.weight": torch.zeros(1, c.n_embd),  # lmforge has no segments: one all-zero type
        f"{e}.LayerNorm.weight": model.norm_emb.weight,
        f"{e}.LayerNorm.bias": model.norm_emb.bias,
        "cls.predictions.transform.dense.weight": model.head.dense.weight,
        "cls.predictions.transform.dense.bias": model.head.dense.bias,
        "cls.predictions.transform.LayerNorm.weight": model.head.norm.weight,
        "cls.predictions.transform.LayerNorm.bias": model.head.norm.bias,
        "cls.predictions.bias": model.head.bias,
    }
    for i, block in enumerate(model.blocks):
        p = f"bert.encoder.layer.{i}"
        for proj, w, b in _split_qkv(block.attn, c.n_embd, c.n_embd, ("query", "key", "value")):
            t[f"{p}.attention.self.{proj}.weight"], t[f"{p}.attention.self.{proj}.bias"] = w, b
        named = {
            "attention.output.dense": block.attn.proj,
            "attention.output.LayerNorm": block.norm1,  # post-LN: after the attention's residual add
            "intermediate.dense": block.mlp.fc,
            "output.dense": block.mlp.proj,
            "output.LayerNorm": block.norm2,
        }
        for hf, module in named.items():
            t[f"{p}.{hf}.weight"], t[f"{p}.{hf}.bias"] = module.weight, module.bias
    if not c.tie_embeddings:
        t["cls.predictions.decoder.weight"] = model.head.decoder.weight
    cfg = {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": model.vocab_size,
        "hidden_size": c.n_embd,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "intermediate_size": model.blocks[0].mlp.fc.out_features,
        "hidden_act": "gelu",
        "max_position_embeddings": model.max_seq_len,
        "type_vocab_size": 1,
        "layer_norm_eps": model.norm_emb.eps,
        "hidden_dropout_prob": c.dropout,  # what fine-tuning in transformers trains with; eval ignores it
        "attention_probs_dropout_prob": c.dropout,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": c.tie_embeddings,
        "initializer_range": 0.02,
        "is_decoder": False,
    }
    return cfg, t
