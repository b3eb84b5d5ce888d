#!/usr/bin/env python3
"""A tiny DeepSeek-V4 checkpoint written by Hugging Face transformers' save_pretrained, and
the same weights under the official names (docs/v4-architecture.md §7).

Writes tests/data/transformers_v4_ckpt/, read by tests/model/test_checkpoint.cc (CI only
reads the committed files; nothing in the product or in CI needs torch or transformers):

  transformers/           save_pretrained(save_original_format=False): transformers' own
                          names (model.layers.L.self_attn.q_a_proj.weight, packed experts
                          mlp.experts.gate_up_proj [E, 2I, D] / down_proj [E, D, I], ...)
                          and its config.json (layer_types, mlp_layer_types, rope_parameters)
  transformers_original/  save_pretrained() with its default save_original_format=True:
                          transformers' reversal of its DeepSeek conversion mapping
  official/               the same tensors under the official flat names, per-expert
                          w1/w2/w3, written by this script with the map below, and a
                          config.json in DeepSeek's Hugging Face spelling (compress_ratios,
                          num_hash_layers)

The official map is checked against transformers' own loader: from_pretrained(official/)
must rebuild every parameter and buffer of the model bit for bit (transformers applies its
conversion_mapping "deepseek_v4" renames to official names when loading), and
from_pretrained of each save_pretrained directory must too. The script aborts, writing
nothing, if a check fails.

Model: D = 32, H = 2, head_dim 32 (RoPE 16), q_rank 16, 2 output groups of rank 16, window
128, layers of ratio 0 / 4 / 128, indexer 2 heads x 32, top-k 4, 4 routed experts (2 active,
width 16) + 1 shared, layer 0 hash-routed, vocab 64, hc_mult 4, no MTP (transformers has no
MTP module). Every parameter and buffer is random (tid2eid rows hold distinct experts).
Float32 storage; about 300 KB per directory.

Run: python3 tests/oracle/gen_transformers_checkpoint.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

PINNED = {"torch": "2.15", "transformers": "5.24", "safetensors": "0.8"}
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "data" / "transformers_v4_ckpt"
SEED = 20240607

TINY = dict(vocab=64, dim=32, heads=2, head_dim=32, rope_dim=16, q_rank=16, o_groups=2, o_rank=16,
            window=128, ratios=[0, 4, 128], index_heads=2, index_dim=32, index_topk=4,
            n_experts=4, n_active=2, moe_inter=16, n_hash=1, hc_mult=4, eps=1e-6,
            rope_theta=10000.0, compress_rope_theta=160000.0, yarn_factor=16.0,
            yarn_orig=65536, beta_fast=32.0, beta_slow=1.0, swiglu_limit=10.0, route_scale=1.5)

# transformers suffix inside model.layers.L. -> official suffix inside layers.L.
LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_a_proj.weight": "attn.wq_a.weight",
    "self_attn.q_a_norm.weight": "attn.q_norm.weight",
    "self_attn.q_b_proj.weight": "attn.wq_b.weight",
    "self_attn.kv_proj.weight": "attn.wkv.weight",
    "self_attn.kv_norm.weight": "attn.kv_norm.weight",
    "self_attn.o_a_proj.weight": "attn.wo_a.weight",
    "self_attn.o_b_proj.weight": "attn.wo_b.weight",
    "self_attn.sinks": "attn.attn_sink",
    "self_attn.compressor.kv_proj.weight": "attn.compressor.wkv.weight",
    "self_attn.compressor.gate_proj.weight": "attn.compressor.wgate.weight",
    "self_attn.compressor.position_bias": "attn.compressor.ape",
    "self_attn.compressor.kv_norm.weight": "attn.compressor.norm.weight",
    "self_attn.compressor.indexer.q_b_proj.weight": "attn.indexer.wq_b.weight",
    "self_attn.compressor.indexer.scorer.weights_proj.weight": "attn.indexer.weights_proj.weight",
    "self_attn.compressor.indexer.kv_proj.weight": "attn.indexer.compressor.wkv.weight",
    "self_attn.compressor.indexer.gate_proj.weight": "attn.indexer.compressor.wgate.weight",
    "self_attn.compressor.indexer.position_bias": "attn.indexer.compressor.ape",
    "self_attn.compressor.indexer.kv_norm.weight": "attn.indexer.compressor.norm.weight",
    "attn_hc.fn": "hc_attn_fn",
    "attn_hc.base": "hc_attn_base",
    "attn_hc.scale": "hc_attn_scale",
    "ffn_hc.fn": "hc_ffn_fn",
    "ffn_hc.base": "hc_ffn_base",
    "ffn_hc.scale": "hc_ffn_scale",
    "mlp.gate.weight": "ffn.gate.weight",
    "mlp.gate.e_score_correction_bias": "ffn.gate.bias",
    "mlp.gate.tid2eid": "ffn.gate.tid2eid",
    "mlp.shared_experts.gate_proj.weight": "ffn.shared_experts.w1.weight",
    "mlp.shared_experts.down_proj.weight": "ffn.shared_experts.w2.weight",
    "mlp.shared_experts.up_proj.weight": "ffn.shared_experts.w3.weight",
}
GLOBAL_MAP = {
    "model.embed_tokens.weight": "embed.weight",
    "lm_head.weight": "head.weight",
    "model.norm.weight": "norm.weight",
    "model.hc_head.hc_fn": "hc_head_fn",
    "model.hc_head.hc_base": "hc_head_base",
    "model.hc_head.hc_scale": "hc_head_scale",
}


def check_versions(force: bool) -> dict:
    import numpy
    import safetensors
    import torch
    import transformers
    found = {"torch": torch.__version__, "transformers": transformers.__version__,
             "safetensors": safetensors.__version__}
    bad = [f"{k} {found[k]} (pinned {p}.x)" for k, p in PINNED.items()
           if ".".join(found[k].split("+")[0].split(".")[:2]) != p]
    if bad and not force:
        sys.exit("gen_transformers_checkpoint: version mismatch: " + ", ".join(bad) +
                 "; pass --force to run anyway")
    found["numpy"] = numpy.__version__
    found["python"] = sys.version.split()[0]
    found["forced"] = bool(bad)
    return found


def make_config():
    from transformers import DeepseekV4Config
    g = TINY
    kinds = {0: "sliding_attention", 4: "compressed_sparse_attention", 128: "heavily_compressed_attention"}
    n = len(g["ratios"])
    cfg = DeepseekV4Config(
        vocab_size=g["vocab"], hidden_size=g["dim"], moe_intermediate_size=g["moe_inter"],
        num_hidden_layers=n, num_attention_heads=g["heads"], num_key_value_heads=1,
        head_dim=g["head_dim"], q_lora_rank=g["q_rank"], num_experts_per_tok=g["n_active"],
        n_routed_experts=g["n_experts"], n_shared_experts=1, routed_scaling_factor=g["route_scale"],
        layer_types=[kinds[r] for r in g["ratios"]],
        mlp_layer_types=["hash_moe" if i < g["n_hash"] else "moe" for i in range(n)],
        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 128},
        rope_theta=g["rope_theta"], compress_rope_theta=g["compress_rope_theta"],
        rope_parameters={"rope_type": "yarn", "factor": g["yarn_factor"],
                         "original_max_position_embeddings": g["yarn_orig"],
                         "beta_fast": g["beta_fast"], "beta_slow": g["beta_slow"]},
        partial_rotary_factor=g["rope_dim"] / g["head_dim"], sliding_window=g["window"],
        o_groups=g["o_groups"], o_lora_rank=g["o_rank"], index_n_heads=g["index_heads"],
        index_head_dim=g["index_dim"], index_topk=g["index_topk"], rms_norm_eps=g["eps"],
        hc_eps=1e-6, hc_mult=g["hc_mult"], hc_sinkhorn_iters=20, swiglu_limit=g["swiglu_limit"],
        max_position_embeddings=1 << 20, tie_word_embeddings=False)
    if cfg.qk_rope_head_dim != g["rope_dim"]:
        raise RuntimeError(f"qk_rope_head_dim {cfg.qk_rope_head_dim} != {g['rope_dim']}")
    return cfg


def official_config() -> dict:
    """config.json in DeepSeek's Hugging Face spelling (spec §9)."""
    g = TINY
    return {
        "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
        "vocab_size": g["vocab"], "hidden_size": g["dim"], "num_hidden_layers": len(g["ratios"]),
        "num_nextn_predict_layers": 0, "num_attention_heads": g["heads"], "num_key_value_heads": 1,
        "head_dim": g["head_dim"], "qk_rope_head_dim": g["rope_dim"], "q_lora_rank": g["q_rank"],
        "o_groups": g["o_groups"], "o_lora_rank": g["o_rank"], "sliding_window": g["window"],
        "compress_ratios": g["ratios"], "compress_rope_theta": g["compress_rope_theta"],
        "rope_theta": g["rope_theta"],
        "rope_scaling": {"type": "yarn", "factor": g["yarn_factor"],
                         "original_max_position_embeddings": g["yarn_orig"],
                         "beta_fast": g["beta_fast"], "beta_slow": g["beta_slow"]},
        "index_n_heads": g["index_heads"], "index_head_dim": g["index_dim"], "index_topk": g["index_topk"],
        "n_routed_experts": g["n_experts"], "n_shared_experts": 1, "num_experts_per_tok": g["n_active"],
        "moe_intermediate_size": g["moe_inter"], "num_hash_layers": g["n_hash"],
        "routed_scaling_factor": g["route_scale"], "scoring_func": "sqrtsoftplus",
        "swiglu_limit": g["swiglu_limit"], "hc_mult": g["hc_mult"], "hc_sinkhorn_iters": 20, "hc_eps": 1e-6,
        "rms_norm_eps": g["eps"], "max_position_embeddings": 1 << 20, "bos_token_id": 0, "eos_token_id": 1,
    }


def randomize(model, seed: int):
    """Every parameter and buffer that is stored gets a random value."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.state_dict(keep_vars=True).items()):
            if p.dtype == torch.long:  # tid2eid: distinct experts per row
                rows, k = p.shape
                v = torch.stack([torch.randperm(TINY["n_experts"], generator=gen)[:k] for _ in range(rows)])
            elif name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                v = torch.rand(p.shape, generator=gen) * 0.8 + 0.6
            elif p.dim() >= 2:
                v = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1])
            else:
                v = torch.randn(p.shape, generator=gen) * 0.5
            p.copy_(v.to(p.dtype))


def to_official(state: dict) -> dict:
    import torch
    out = {}
    E, I = TINY["n_experts"], TINY["moe_inter"]
    for name, t in state.items():
        if name in GLOBAL_MAP:
            out[GLOBAL_MAP[name]] = t
            continue
        parts = name.split(".")
        if parts[:2] != ["model", "layers"]:
            raise RuntimeError(f"unmapped tensor {name}")
        layer, rest = parts[2], ".".join(parts[3:])
        p = f"layers.{layer}."
        if rest == "mlp.experts.gate_up_proj":  # [E, 2I, D]: rows 0..I-1 = w1, I..2I-1 = w3
            for e in range(E):
                out[p + f"ffn.experts.{e}.w1.weight"] = t[e, :I].contiguous()
                out[p + f"ffn.experts.{e}.w3.weight"] = t[e, I:].contiguous()
        elif rest == "mlp.experts.down_proj":  # [E, D, I]
            for e in range(E):
                out[p + f"ffn.experts.{e}.w2.weight"] = t[e].contiguous()
        elif rest in LAYER_MAP:
            out[p + LAYER_MAP[rest]] = t
        else:
            raise RuntimeError(f"unmapped tensor {name}")
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def same_state(a: dict, b: dict, what: str):
    import torch
    if set(a) != set(b):
        raise RuntimeError(f"{what}: names differ: {sorted(set(a) ^ set(b))[:8]}")
    for k in a:
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k], b[k]):
            raise RuntimeError(f"{what}: tensor {k} differs")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true", help="run with unpinned versions")
    args = ap.parse_args()
    versions = check_versions(args.force)

    import torch
    from safetensors.torch import save_file
    from transformers import DeepseekV4ForCausalLM
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)

    cfg = make_config()
    model = DeepseekV4ForCausalLM(cfg).eval()
    randomize(model, SEED)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd) / "out"
        tmp.mkdir()
        model.save_pretrained(tmp / "transformers", save_original_format=False)
        model.save_pretrained(tmp / "transformers_original")
        off = tmp / "official"
        off.mkdir()
        # one metadata key: safetensors orders several by hash, and the bytes should repeat
        save_file(to_official(state), str(off / "model.safetensors"), metadata={"format": "pt"})
        (off / "config.json").write_text(json.dumps(official_config(), indent=2, sort_keys=True) + "\n")

        # transformers' own loader must rebuild the model from every directory, bit for bit
        for d in ["transformers", "transformers_original", "official"]:
            m2, info = DeepseekV4ForCausalLM.from_pretrained(tmp / d, dtype=torch.float32,
                                                             output_loading_info=True)
            left = {k: v for k, v in info.items() if v}
            if left:
                raise RuntimeError(f"from_pretrained({d}): {left}")
            same_state(state, {k: v.detach() for k, v in m2.state_dict().items()}, f"from_pretrained({d})")
        (tmp / "README.md").write_text(
            "Generated by tests/oracle/gen_transformers_checkpoint.py (see its docstring); "
            f"versions: {json.dumps(versions, sort_keys=True)}; seed {SEED}.\n")
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(tmp, args.out)
    for p in args.out.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # save_pretrained leaves 0600 files
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total / 1e3:.0f} KB); from_pretrained of all three directories "
          f"reproduces the {len(state)} tensors exactly")


if __name__ == "__main__":
    main()
