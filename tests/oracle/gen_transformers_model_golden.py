#!/usr/bin/env python3
"""Outside-oracle golden for the WHOLE V4 model, from Hugging Face transformers.

Writes tests/data/transformers_v4_model/ (read by tests/oracle/test_transformers_model_golden.cc;
CI only reads the committed files, nothing in the product or in CI needs torch):
  ckpt/                 save_pretrained(save_original_format=False) of a tiny random
                        DeepseekV4ForCausalLM: config.json (transformers' spelling) and
                        model.safetensors (transformers' names, float32) - our loader reads it
                        through its transformers name map
  golden.safetensors    prompt [T] I32, tokens [G] I32 (greedy continuation), logits
                        [T + G - 1, V] F64 (row t: the logits after token t of prompt ++
                        tokens[:G-1]), metadata (versions, seed, config, probes, checks)

Steps (docs/oracles.md, "Whole-model golden", explains each):
  1. Refuse unpinned versions (--force overrides and is recorded; the C++ test rejects it).
  2. Check the float64 replacements of the port's float32 islands (tf_common.Float64Numerics,
     mHC and hc_head included) against the shipped functions.
  3. For seeds BASE_SEED, BASE_SEED + 1, ...: build the model (every parameter and buffer
     random and float32-representable; tid2eid rows hold distinct experts), save it, load it
     back with from_pretrained (bit for bit), convert to float64, run the prompt and the greedy
     continuation, and keep the first seed whose
       - greedy path has a top-1 / top-2 logit margin >= GREEDY_MARGIN_MIN at every step,
       - CSA selections have a relative score gap >= TOPK_GAP_REL at the k-th entry (all rows),
       - score-routed MoE selections have a gap >= ROUTE_GAP between the k-th and (k+1)-th
         score + bias (all tokens),
       - SwiGLU clamp engages in routed and shared experts (so the clamp is tested).
  4. Probes on that run (abort if one fails): every decoder layer against numpy spec §3.1
     (mHC pre/post/Sinkhorn/transposed mixing, with the three historical bug variants shown
     to be far away), every MoE against numpy spec §3.2 (sqrt-softplus scores, bias for
     selection only, hash routing, normalised weights x route_scale, clamp on routed and
     shared experts), the head against numpy hc_head -> norm -> head, the attention
     visibility (window, HCA blocks, CSA own top-k) from the attention probabilities, the
     RoPE table kind of every attention / compressor / indexer.
  5. Greedy tokens: the port's generate() (cached decode) must equal a manual argmax loop over
     stateless full forwards; the port's cached path in float64 (one prefill, and prefill in
     chunks 97 / 128 / 145, then decode) must give the stateless logits.
  6. The golden (float64 islands replaced) against the port as shipped (float32 islands):
     logits within the float32 bound, same greedy tokens.
Run: python3 tests/oracle/gen_transformers_model_golden.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tf_common import (PINNED, U32, Float64Numerics, ProbeFailure, check_versions, fmt,  # noqa: E402
                       layer_inv_freq, write_safetensors)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "data" / "transformers_v4_model"

GOLDEN = dict(
    vocab=128, dim=64, heads=4, head_dim=64, rope_dim=32, q_rank=32, o_groups=2, o_rank=32,
    window=128,
    ratios=[0, 4, 128, 4],   # window-only, CSA, HCA, CSA
    n_hash=2,                # layers 0 and 1 hash-routed (tid2eid), 2 and 3 score-routed
    index_heads=16, index_dim=64,  # 16 heads: an all-zero ReLU score (a tie at 0) has p = 2^-16
    index_topk=8,            # < visible CSA entries for every query t >= 35
    n_experts=8, n_active=2, moe_inter=16, route_scale=1.5,
    swiglu_limit=2.0,        # low enough that the clamp engages (real models: 10)
    hc_mult=4, hc_iters=20, hc_eps=1e-6, eps=1e-6,
    rope_theta=10000.0, compress_rope_theta=160000.0, yarn_factor=16.0, yarn_orig=65536,
    beta_fast=32.0, beta_slow=1.0,
)
T_PROMPT = 370   # 2 complete HCA blocks + 114; the third completes during decode (t = 383)
N_GEN = 20
BASE_SEED = 20240710
MAX_SEED_TRIES = 200
GREEDY_MARGIN_MIN = 0.05   # logits are O(1); see docs/oracles.md for the test's tolerance
TOPK_GAP_REL = 1e-4        # CSA: (k-th - (k+1)-th score) / max |score| of the row
ROUTE_GAP = 1e-4           # MoE: k-th - (k+1)-th of score + bias (scores are O(1))
SPEC_TOL = 1e-10           # numpy spec vs the float64 port (relative to the max |value|)

LAYER_KIND = {0: "sliding_attention", 4: "compressed_sparse_attention",
              128: "heavily_compressed_attention"}


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
def make_config(g: dict):
    from transformers import DeepseekV4Config
    n = len(g["ratios"])
    cfg = DeepseekV4Config(
        vocab_size=g["vocab"], hidden_size=g["dim"], moe_intermediate_size=g["moe_inter"],
        num_hidden_layers=n, num_attention_heads=g["heads"], num_key_value_heads=1,
        head_dim=g["head_dim"], q_lora_rank=g["q_rank"], num_experts_per_tok=g["n_active"],
        n_routed_experts=g["n_experts"], n_shared_experts=1, routed_scaling_factor=g["route_scale"],
        scoring_func="sqrtsoftplus",
        layer_types=[LAYER_KIND[r] for r in g["ratios"]],
        mlp_layer_types=["hash_moe" if i < g["n_hash"] else "moe" for i in range(n)],
        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 128},
        rope_theta=g["rope_theta"], compress_rope_theta=g["compress_rope_theta"],
        rope_parameters={"rope_type": "yarn", "factor": g["yarn_factor"],
                         "original_max_position_embeddings": g["yarn_orig"],
                         "beta_fast": g["beta_fast"], "beta_slow": g["beta_slow"]},
        partial_rotary_factor=g["rope_dim"] / g["head_dim"], sliding_window=g["window"],
        o_groups=g["o_groups"], o_lora_rank=g["o_rank"], index_n_heads=g["index_heads"],
        index_head_dim=g["index_dim"], index_topk=g["index_topk"], rms_norm_eps=g["eps"],
        hc_eps=g["hc_eps"], hc_mult=g["hc_mult"], hc_sinkhorn_iters=g["hc_iters"],
        swiglu_limit=g["swiglu_limit"], max_position_embeddings=1 << 20,
        num_nextn_predict_layers=0, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    cfg._attn_implementation = "eager"      # the only backend with sinks + compressor masks
    cfg._experts_implementation = "eager"   # grouped_mm has no float64 kernel
    rp = cfg.rope_parameters["compress"]
    if (rp.get("rope_type") != "yarn" or rp.get("attention_factor") != 1.0
            or cfg.rope_parameters["main"].get("rope_type") != "default"):
        raise ProbeFailure(f"unexpected rope_parameters {cfg.rope_parameters}")
    if cfg.qk_rope_head_dim != g["rope_dim"]:
        raise ProbeFailure(f"qk_rope_head_dim {cfg.qk_rope_head_dim} != {g['rope_dim']}")
    return cfg


def randomize(model, g: dict, seed: int):
    """Every parameter and stored buffer random (float32 values), none left at its default."""
    import torch
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            leaf = name.split(".")[-1]
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                v = uniform(p.shape, 0.6, 1.4)
            elif leaf == "sinks":
                v = normal(p.shape, 0.5, 0.3)
            elif leaf == "position_bias":
                v = normal(p.shape, 0.5)
            elif name.endswith("_hc.fn") or name.endswith("hc_head.hc_fn"):
                v = normal(p.shape, 0.5 / math.sqrt(p.shape[1]))
            elif name.endswith("_hc.base") or name.endswith("hc_head.hc_base"):
                v = normal(p.shape, 0.5)
            elif name.endswith("_hc.scale") or name.endswith("hc_head.hc_scale"):
                v = uniform(p.shape, 0.5, 1.5)
            elif name.endswith("embed_tokens.weight"):
                v = normal(p.shape, 1.0)
            elif p.dim() >= 2:  # linear weights [.., out, in] (packed experts too)
                v = normal(p.shape, 1.0 / math.sqrt(p.shape[-1]))
            else:
                raise ProbeFailure(f"no initialisation rule for parameter {name} {tuple(p.shape)}")
            p.copy_(v)
        for name, b in sorted(model.named_buffers()):
            if name.endswith("e_score_correction_bias"):
                b.copy_(normal(b.shape, 0.1))
            elif name.endswith("tid2eid"):  # distinct experts per row (official: no duplicates)
                rows, k = b.shape
                b.copy_(torch.stack([torch.randperm(g["n_experts"], generator=gen)[:k]
                                     for _ in range(rows)]))


def persistent_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def build_and_save(g: dict, seed: int, ckpt_dir: Path):
    """Random float32 model -> save_pretrained -> from_pretrained (bit-exact) -> float64."""
    import torch
    from transformers import DeepseekV4ForCausalLM
    cfg = make_config(g)
    model = DeepseekV4ForCausalLM(cfg).eval()
    randomize(model, g, seed)
    state = persistent_state(model)
    if any(v.dtype not in (torch.float32, torch.int64) for v in state.values()):
        raise ProbeFailure("unexpected dtype in the state dict")
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    model.save_pretrained(ckpt_dir, save_original_format=False)
    back, info = DeepseekV4ForCausalLM.from_pretrained(
        ckpt_dir, dtype=torch.float32, output_loading_info=True, attn_implementation="eager",
        experts_implementation="eager")
    left = {k: v for k, v in info.items() if v}
    if left:
        raise ProbeFailure(f"from_pretrained: {left}")
    st2 = persistent_state(back)
    if set(st2) != set(state) or any(st2[k].dtype != state[k].dtype or not torch.equal(st2[k], state[k])
                                     for k in state):
        raise ProbeFailure("from_pretrained does not reproduce the saved model bit for bit")
    back.config._experts_implementation = "eager"
    back = back.double().eval()
    return back, len(state)


# ---------------------------------------------------------------------------------------
# One forward with captures
# ---------------------------------------------------------------------------------------
def run_captured(model, ids):
    """Stateless forward of ids [1, N]; logits [N, V] and, per layer, what the probes need."""
    import torch
    inner = model.model
    caps = [dict() for _ in inner.layers]
    top = {}
    hooks = []

    def keep(d, key):
        def fn(mod, args, out):
            d[key] = out
        return fn

    for L, layer in enumerate(inner.layers):
        c = caps[L]
        hooks.append(layer.register_forward_pre_hook(
            lambda m, a, c=c: c.__setitem__("X_in", a[0][0].detach().clone())))
        hooks.append(layer.register_forward_hook(
            lambda m, a, o, c=c: c.__setitem__("X_out", o[0].detach().clone())))
        att = layer.self_attn
        hooks.append(att.register_forward_pre_hook(
            lambda m, a, c=c: c.__setitem__("attn_in", a[0][0].detach().clone())))

        def attn_post(m, a, o, c=c):
            c["attn_out"] = o[0][0].detach().clone()
            c["probs"] = o[1][0].detach().clone()
        hooks.append(att.register_forward_hook(attn_post))
        mlp = layer.mlp
        hooks.append(mlp.register_forward_pre_hook(
            lambda m, a, c=c: c.__setitem__("mlp_in", a[0][0].detach().clone())))
        hooks.append(mlp.register_forward_hook(
            lambda m, a, o, c=c: c.__setitem__("mlp_out", o[0].detach().clone())))

        def gate_hook(m, a, o, c=c):
            c["route_w"], c["route_idx"] = o[1].detach().clone(), o[2].detach().clone()
        hooks.append(mlp.gate.register_forward_hook(gate_hook))
        if att.compressor is not None and getattr(att.compressor, "indexer", None) is not None:
            idx = att.compressor.indexer

            def topk_hook(m, a, o, c=c):
                c["topk"] = o[0].detach().clone()
            hooks.append(idx.register_forward_hook(topk_hook))

            def score_hook(m, a, o, c=c):
                c["index_scores"] = o[0].detach().clone()
            hooks.append(idx.scorer.register_forward_hook(score_hook))
    hooks.append(inner.hc_head.register_forward_pre_hook(
        lambda m, a: top.__setitem__("X_final", a[0][0].detach().clone())))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return out.logits[0].detach().clone(), caps, top


# ---------------------------------------------------------------------------------------
# Independent numpy math from docs/v4-architecture.md §3 (float64)
# ---------------------------------------------------------------------------------------
def np_rmsnorm(x, w, eps):
    import numpy as np
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * (1.0 if w is None else w)


def np_mhc(X, fn, base, scale, g, variant="spec"):
    """§3.1 pre-mix of streams X [S, n, D]: pre [S, n], post [S, n], M [S, n, n].
    variant: 'post_no_x2' / 'sigmoid_start' are historical port bugs, 'sinkhorn_minus_1' one
    iteration short (non-vacuity)."""
    import numpy as np
    S, n, D = X.shape
    v = X.reshape(S, n * D)
    r = 1.0 / np.sqrt((v * v).mean(-1, keepdims=True) + g["eps"])
    mu = r * (v @ fn.T)
    sig = lambda t: 1.0 / (1.0 + np.exp(-t))
    eps = g["hc_eps"]
    pre = sig(scale[0] * mu[:, :n] + base[:n]) + eps
    post = (1.0 if variant == "post_no_x2" else 2.0) * sig(scale[1] * mu[:, n:2 * n] + base[n:2 * n])
    Lg = (scale[2] * mu[:, 2 * n:] + base[2 * n:]).reshape(S, n, n)
    if variant == "sigmoid_start":
        Mx = sig(Lg) + eps
    else:
        e = np.exp(Lg - Lg.max(-1, keepdims=True))
        Mx = e / e.sum(-1, keepdims=True) + eps
    Mx = Mx / (Mx.sum(-2, keepdims=True) + eps)
    for _ in range(g["hc_iters"] - (2 if variant == "sinkhorn_minus_1" else 1)):
        Mx = Mx / (Mx.sum(-1, keepdims=True) + eps)
        Mx = Mx / (Mx.sum(-2, keepdims=True) + eps)
    return pre, post, Mx


def np_post(X, f, post, M, transposed=True):
    """X'_k = post_k f + sum_j M_jk X_j (spec); transposed=False is the historical bug."""
    import numpy as np
    mix = np.einsum("sjk,sjd->skd", M, X) if transposed else np.einsum("skj,sjd->skd", M, X)
    return post[:, :, None] * f[:, None, :] + mix


def np_moe(x, ids, P, L, g, hash_layer, shared_clamp=True, clamp=True):
    """§3.2: returns y [S, D], chosen experts [S, k], the selection gap, clamp counts."""
    import numpy as np
    pre = f"model.layers.{L}.mlp."
    E, k, I = g["n_experts"], g["n_active"], g["moe_inter"]
    lim = g["swiglu_limit"]
    s = x @ P[pre + "gate.weight"].T
    score = np.sqrt(np.logaddexp(0.0, s))  # sqrt(softplus)
    gap = math.inf
    if hash_layer:
        chosen = P[pre + "gate.tid2eid"][ids]
    else:
        biased = score + P[pre + "gate.e_score_correction_bias"][None, :]
        order = np.argsort(-biased, axis=1, kind="stable")
        chosen = order[:, :k]
        srt = np.take_along_axis(biased, order, 1)
        gap = float((srt[:, k - 1] - srt[:, k]).min())
    w = np.take_along_axis(score, chosen, 1)
    w = w / w.sum(1, keepdims=True) * g["route_scale"]
    counts = {"routed_clamped": 0, "routed_values": 0, "shared_clamped": 0, "shared_values": 0}

    def swiglu(xx, w1, w3, w2, weight, which, do_clamp):
        a, b = xx @ w1.T, xx @ w3.T
        counts[which + "_clamped"] += int((a > lim).sum() + (np.abs(b) > lim).sum())
        counts[which + "_values"] += a.size + b.size
        if do_clamp:
            a, b = np.minimum(a, lim), np.clip(b, -lim, lim)
        h = a / (1.0 + np.exp(-a)) * b * weight[:, None]
        return h @ w2.T

    y = np.zeros_like(x)
    gu, dn = P[pre + "experts.gate_up_proj"], P[pre + "experts.down_proj"]
    for c in range(k):
        for e in range(E):
            rows = np.nonzero(chosen[:, c] == e)[0]
            if len(rows):
                y[rows] += swiglu(x[rows], gu[e, :I], gu[e, I:], dn[e], w[rows, c], "routed", clamp)
    y += swiglu(x, P[pre + "shared_experts.gate_proj.weight"], P[pre + "shared_experts.up_proj.weight"],
                P[pre + "shared_experts.down_proj.weight"], np.ones(len(x)), "shared",
                clamp and shared_clamp)
    return y, chosen, gap, counts


def np_head(X, P, g):
    """§3.1 last line: hc_head -> norm -> head."""
    import numpy as np
    S, n, D = X.shape
    v = X.reshape(S, n * D)
    r = 1.0 / np.sqrt((v * v).mean(-1, keepdims=True) + g["eps"])
    mu = r * (v @ P["model.hc_head.hc_fn"].T)
    pre = 1.0 / (1.0 + np.exp(-(P["model.hc_head.hc_scale"][0] * mu + P["model.hc_head.hc_base"]))) + g["hc_eps"]
    u = np_rmsnorm((pre[:, :, None] * X).sum(1), P["model.norm.weight"], g["eps"])
    return u @ P["lm_head.weight"].T


def rel_err(a, b) -> float:
    import numpy as np
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def probe_model(model, g, ids, logits, caps, top) -> dict:
    """Every block (mHC + MoE) and the head against numpy spec §3, on the golden run."""
    import numpy as np
    P = {k: v.detach().double().numpy() if v.is_floating_point() else v.detach().numpy()
         for k, v in model.state_dict().items()}
    ids_np = ids[0].numpy()
    res = {"mhc_max_rel_err": 0.0, "moe_max_rel_err": 0.0, "route_gap_min": math.inf,
           "distance_post_no_x2": math.inf, "distance_sigmoid_start": math.inf,
           "distance_untransposed": math.inf, "distance_sinkhorn_minus_1": math.inf,
           "distance_no_clamp": math.inf,
           "distance_no_shared_clamp": math.inf}
    clamp_tot = {"routed_clamped": 0, "routed_values": 0, "shared_clamped": 0, "shared_values": 0}
    for L, c in enumerate(caps):
        pfx = f"model.layers.{L}."
        X = c["X_in"].numpy()
        fa, fm = c["attn_out"].numpy(), c["mlp_out"].numpy()

        def block(variant):
            pre1, post1, M1 = np_mhc(X, P[pfx + "attn_hc.fn"], P[pfx + "attn_hc.base"],
                                     P[pfx + "attn_hc.scale"], g, variant)
            a_in = np_rmsnorm((pre1[:, :, None] * X).sum(1), P[pfx + "input_layernorm.weight"], g["eps"])
            X1 = np_post(X, fa, post1, M1, variant != "untransposed")
            pre2, post2, M2 = np_mhc(X1, P[pfx + "ffn_hc.fn"], P[pfx + "ffn_hc.base"],
                                     P[pfx + "ffn_hc.scale"], g, variant)
            m_in = np_rmsnorm((pre2[:, :, None] * X1).sum(1), P[pfx + "post_attention_layernorm.weight"],
                              g["eps"])
            return a_in, m_in, np_post(X1, fm, post2, M2, variant != "untransposed")

        a_in, m_in, X2 = block("spec")
        err = max(rel_err(c["attn_in"].numpy(), a_in), rel_err(c["mlp_in"].numpy(), m_in),
                  rel_err(c["X_out"].numpy(), X2))
        res["mhc_max_rel_err"] = max(res["mhc_max_rel_err"], err)
        for v in ("post_no_x2", "sigmoid_start", "untransposed", "sinkhorn_minus_1"):
            res["distance_" + v] = min(res["distance_" + v], rel_err(block(v)[2], X2))

        x = c["mlp_in"].numpy()
        hash_layer = L < g["n_hash"]
        y, chosen, gap, counts = np_moe(x, ids_np, P, L, g, hash_layer)
        res["moe_max_rel_err"] = max(res["moe_max_rel_err"], rel_err(fm, y))
        got = np.sort(c["route_idx"].numpy(), 1)
        if not (got == np.sort(chosen, 1)).all():
            raise ProbeFailure(f"layer {L}: the port routes to other experts than spec §3.2")
        if hash_layer and any(len(set(r)) != len(r) for r in P[pfx + "mlp.gate.tid2eid"].tolist()):
            raise ProbeFailure(f"layer {L}: tid2eid has a row with a duplicated expert")
        res["route_gap_min"] = min(res["route_gap_min"], gap)
        for k2 in clamp_tot:
            clamp_tot[k2] += counts[k2]
        res["distance_no_clamp"] = min(res["distance_no_clamp"],
                                       rel_err(np_moe(x, ids_np, P, L, g, hash_layer, clamp=False)[0], y))
        res["distance_no_shared_clamp"] = min(
            res["distance_no_shared_clamp"],
            rel_err(np_moe(x, ids_np, P, L, g, hash_layer, shared_clamp=False)[0], y))
    head = np_head(top["X_final"].numpy(), P, g)
    res["head_max_rel_err"] = rel_err(logits.numpy(), head)
    res.update({k: v for k, v in clamp_tot.items()})
    for k in ("mhc_max_rel_err", "moe_max_rel_err", "head_max_rel_err"):
        if not res[k] <= SPEC_TOL:
            raise ProbeFailure(f"{k} = {res[k]:.3g} > {SPEC_TOL}: the port differs from spec §3")
    # One Sinkhorn iteration more or less is recorded, not required: with these (unpeaked)
    # mixing logits Sinkhorn has converged to ~1e-13 by iteration 20.
    for k in [k for k in res if k.startswith("distance_") and k != "distance_sinkhorn_minus_1"]:
        if not res[k] >= 1e4 * SPEC_TOL:
            raise ProbeFailure(f"probe cannot tell '{k}' apart ({res[k]:.3g})")
    if clamp_tot["routed_clamped"] == 0 or clamp_tot["shared_clamped"] == 0:
        raise ProbeFailure("the SwiGLU clamp never engages")
    return res


def probe_attention(model, g, caps, N) -> dict:
    """Visibility from the attention probabilities (window ∪ completed HCA blocks / the
    query's own CSA top-k) and the RoPE table kind of every rotation site."""
    import numpy as np
    res = {}
    W, k = g["window"], g["index_topk"]
    t = np.arange(N)
    win = (t[None, :] <= t[:, None]) & (t[None, :] > t[:, None] - W)
    for L, (layer, ratio) in enumerate(zip(model.model.layers, g["ratios"])):
        att = layer.self_attn
        want_kind = "main" if ratio == 0 else "compress"
        kinds = [att.rope_layer_type]
        if att.compressor is not None:
            kinds.append(att.compressor.rope_layer_type)
            if getattr(att.compressor, "indexer", None) is not None:
                kinds.append(att.compressor.indexer.rope_layer_type)
        if any(x != want_kind for x in kinds):
            raise ProbeFailure(f"layer {L}: RoPE table kinds {kinds}, spec §2.7 needs {want_kind}")
        nz = caps[L]["probs"].numpy() > 0
        if not (nz == nz[:1]).all():
            raise ProbeFailure(f"layer {L}: heads see different entries")
        nz = nz[0]
        if not (nz[:, :N] == win).all():
            raise ProbeFailure(f"layer {L}: window visibility is not [t-{W - 1}, t]")
        n_ent = nz.shape[1] - N
        if ratio == 0:
            if n_ent:
                raise ProbeFailure(f"layer {L}: window-only layer has compressed entries")
            continue
        if n_ent != N // ratio:
            raise ProbeFailure(f"layer {L}: {n_ent} compressed entries, expected {N // ratio}")
        vis = np.arange(n_ent)[None, :] < ((t + 1) // ratio)[:, None]
        if ratio == 128:
            if not (nz[:, N:] == vis).all():
                raise ProbeFailure(f"layer {L}: HCA queries see entries other than completed blocks")
        else:
            topk = caps[L]["topk"].numpy()
            want = np.zeros((N, n_ent), dtype=bool)
            for r in range(N):
                sel = topk[r][topk[r] >= 0]
                if len(set(sel.tolist())) != len(sel) or len(sel) != min(k, (r + 1) // 4) or \
                        (sel >= (r + 1) // 4).any():
                    raise ProbeFailure(f"layer {L} row {r}: CSA selection {sel.tolist()}")
                want[r, sel] = True
            if not (nz[:, N:] == want).all():
                raise ProbeFailure(f"layer {L}: a CSA query sees entries outside its own top-k")
            res[f"layer{L}_rows_with_more_visible_entries_than_topk"] = int(((t + 1) // 4 > k).sum())
        res[f"layer{L}_visibility"] = "ok"
    return res


def topk_gap(g, caps) -> float:
    """Smallest relative gap between the k-th and (k+1)-th visible index score (CSA layers,
    rows with more than k visible entries)."""
    import numpy as np
    k, worst = g["index_topk"], math.inf
    for L, ratio in enumerate(g["ratios"]):
        if ratio != 4:
            continue
        s = caps[L]["index_scores"].numpy()
        for r in range(s.shape[0]):
            nv = (r + 1) // 4
            if nv <= k:
                continue
            v = np.sort(s[r, :nv])[::-1]
            worst = min(worst, float((v[k - 1] - v[k]) / np.abs(v).max()))
    return worst


def margins(logits) -> "np.ndarray":
    import numpy as np
    srt = np.sort(logits, axis=1)
    return srt[:, -1] - srt[:, -2]


# ---------------------------------------------------------------------------------------
# Greedy continuation
# ---------------------------------------------------------------------------------------
def greedy_manual(model, prompt, n):
    """Argmax loop over stateless full forwards (ties: lowest id, as torch.argmax and our
    sampler)."""
    import torch
    seq = prompt.clone()
    for _ in range(n):
        with torch.no_grad():
            lg = model(input_ids=seq, use_cache=False).logits[0, -1]
        nxt = int(torch.argmax(lg))
        seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
    return seq[0, prompt.shape[1]:].tolist()


def greedy_port(model, prompt, n):
    """The port's own generate(): greedy, cached decode. Its per-step logits come back as
    float32 (GenerationMixin casts them), so they are only used as a cross-check."""
    import torch
    from transformers import GenerationConfig
    gc = GenerationConfig(max_new_tokens=n, min_new_tokens=0, do_sample=False, num_beams=1,
                          eos_token_id=None, pad_token_id=0, bos_token_id=0,
                          output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                             generation_config=gc)
    toks = out.sequences[0, prompt.shape[1]:].tolist()
    return toks, torch.stack([x[0] for x in out.logits]).double()


def cached_logits(model, prompt, toks, chunks):
    """The port's cached path in float64: prefill in the given chunks (sizes summing to the
    prompt length), then decode toks[:-1] one at a time; the logits of the last prompt row
    and of every decode step [len(toks), V]."""
    import torch
    cache, rows, pos = None, [], 0
    with torch.no_grad():
        for c in chunks:
            out = model(input_ids=prompt[:, pos:pos + c], cache=cache, use_cache=True)
            cache, pos = out.cache, pos + c
        rows.append(out.logits[0, -1])
        for t in toks[:-1]:
            out = model(input_ids=torch.tensor([[t]]), cache=cache, use_cache=True)
            cache = out.cache
            rows.append(out.logits[0, -1])
    if pos != prompt.shape[1]:
        raise ProbeFailure("chunk sizes do not sum to the prompt length")
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------
# Golden
# ---------------------------------------------------------------------------------------
def attempt(g, seed, ckpt_dir, f64):
    """Build + save + reload one model and run everything the selection criteria need."""
    import numpy as np
    import torch
    model, n_state = build_and_save(g, seed, ckpt_dir)
    f64.install_tables(model)
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, g["vocab"], (1, T_PROMPT), generator=gen)
    with f64:
        toks = greedy_manual(model, prompt, N_GEN)
        full = torch.cat([prompt, torch.tensor([toks[:-1]])], 1)
        logits, caps, top = run_captured(model, full)
    lg = logits.numpy()
    m = margins(lg)
    info = {
        "greedy_margin_min": float(m[T_PROMPT - 1:].min()),
        "all_rows_margin_min": float(m.min()),
        "topk_gap_rel_min": topk_gap(g, caps),
        # stateless forwards of growing prefixes must agree with the one of the whole sequence
        "argmax_consistent": bool((lg[T_PROMPT - 1:].argmax(1) == np.array(toks)).all()),
    }
    return model, n_state, prompt, toks, full, logits, caps, top, info


def golden(g, versions, out_dir: Path) -> dict:
    import numpy as np
    import torch
    from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M

    f64 = Float64Numerics(g, mhc=True)
    checks = {}
    checks["float64_replacements_max_rel_diff_vs_shipped"] = f64.check(
        BASE_SEED + 5000, M.DeepseekV4RotaryEmbedding(make_config(g)), T_PROMPT + N_GEN)

    work = Path(tempfile.mkdtemp(prefix="tf_model_golden_"))
    try:
        ckpt = work / "ckpt"
        chosen, tries = None, []
        for i in range(MAX_SEED_TRIES):
            seed = BASE_SEED + i
            r = attempt(g, seed, ckpt, f64)
            model, n_state, prompt, toks, full, logits, caps, top, info = r
            with f64:
                try:
                    pm = probe_model(model, g, full, logits, caps, top)
                except ProbeFailure as e:
                    if "clamp never engages" in str(e):
                        tries.append((seed, "clamp"))
                        continue
                    raise
            info["route_gap_min"] = pm["route_gap_min"]
            ok = (info["greedy_margin_min"] >= GREEDY_MARGIN_MIN and
                  info["topk_gap_rel_min"] >= TOPK_GAP_REL and info["route_gap_min"] >= ROUTE_GAP)
            if ok and not info["argmax_consistent"]:
                raise ProbeFailure(f"seed {seed}: the manual greedy tokens are not the argmax of the "
                                   "stateless forward of the whole sequence (a query sees the future?)")
            tries.append((seed, {k: fmt(v) for k, v in info.items()}))
            print(f"seed {seed}: {tries[-1][1]}{'  <- chosen' if ok else ''}", flush=True)
            if ok:
                chosen = (seed, r, pm)
                break
        if chosen is None:
            raise ProbeFailure("no seed satisfied the margin / gap requirements")
        seed, (model, n_state, prompt, toks, full, logits, caps, top, info), pm = chosen
        N = full.shape[1]
        probes = {"model_vs_spec3": {k: (fmt(v) if isinstance(v, float) else v) for k, v in pm.items()}}
        probes["attention"] = probe_attention(model, g, caps, N)
        probes["all_ok"] = True

        # The port's own generate (cached decode) = the manual loop; its cached prefill (whole,
        # or in chunks) + decode logits = the stateless ones.
        lmax = float(logits.abs().max())
        with f64:
            ptoks, plog = greedy_port(model, prompt, N_GEN)
            if ptoks != toks:
                raise ProbeFailure(f"port generate {ptoks} != manual argmax loop {toks}")
            gdiff = float((plog - logits[T_PROMPT - 1:]).abs().max())
            checks["port_generate_equals_manual_argmax"] = True
            checks["port_generate_logits_max_abs_diff"] = fmt(gdiff)  # float32-rounded by generate
            if gdiff > 2 * U32 * lmax:
                raise ProbeFailure(f"generate() logits differ from the stateless ones by {gdiff:.3g}")
            for name, chunks in (("whole", [T_PROMPT]), ("chunked_97_128_145", [97, 128, 145])):
                dec = float((cached_logits(model, prompt, toks, chunks) - logits[T_PROMPT - 1:]).abs().max())
                checks[f"cached_{name}_prefill_decode_vs_stateless_max_abs_diff"] = fmt(dec)
                if dec > 1e-11 * lmax:
                    raise ProbeFailure(f"cached ({name}) logits differ from stateless ones by {dec:.3g}")

        # The port as shipped (float32 islands, float32 RoPE angles) on the same tokens.
        # Bound: kSafety * (per layer: mHC x2, norms, RoPE, softmax ~ 8 steps; angles 2 N) *
        # u32 * max|logit| * L -- each float32 island perturbs its output by a few u32
        # relative, the RoPE angles by N u32 absolute; L layers chain them.
        from transformers import DeepseekV4ForCausalLM
        shipped = DeepseekV4ForCausalLM.from_pretrained(
            ckpt, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
        shipped.config._experts_implementation = "eager"
        shipped = shipped.double().eval()
        with torch.no_grad():
            slog = shipped(input_ids=full, use_cache=False).logits[0]
        sdiff = float((slog - logits).abs().max())
        L = len(g["ratios"])
        sbound = 8.0 * L * (8 + 2 * N) * U32 * lmax
        checks["shipped_port_logits_max_abs_diff"] = fmt(sdiff)
        checks["shipped_port_logits_bound"] = fmt(sbound)
        if not sdiff <= sbound:
            raise ProbeFailure(f"shipped port differs from the float64 golden by {sdiff:.3g} > {sbound:.3g}")
        stoks, _ = greedy_port(shipped, prompt, N_GEN)
        checks["shipped_port_greedy_tokens_equal"] = stoks == toks
        if stoks != toks:
            raise ProbeFailure("the shipped port generates other tokens")

        lg = logits.numpy()
        m = margins(lg)
        checks.update({
            "seed_attempts": len(tries),
            "greedy_margin_min": fmt(info["greedy_margin_min"]),
            "greedy_margins": [fmt(x) for x in m[T_PROMPT - 1:]],
            "greedy_margin_required": fmt(GREEDY_MARGIN_MIN),
            "all_rows_margin_min": fmt(info["all_rows_margin_min"]),
            "prompt_rows_margin_min": fmt(float(m[:T_PROMPT].min())),
            "topk_gap_rel_min": fmt(info["topk_gap_rel_min"]),
            "topk_gap_required": fmt(TOPK_GAP_REL),
            "route_gap_min": fmt(info["route_gap_min"]),
            "route_gap_required": fmt(ROUTE_GAP),
            "logits_max_abs": fmt(lmax),
            "state_tensors": n_state,
        })

        # Files: the checkpoint as saved, and the golden.
        config = dict(g)
        config.update({"T": T_PROMPT, "n_generate": N_GEN, "rows": N,
                       "layer_types": [LAYER_KIND[r] for r in g["ratios"]]})
        meta = {
            "format": "dsv4 transformers whole-model golden v1",
            "generator": "tests/oracle/gen_transformers_model_golden.py",
            "config": json.dumps(config, sort_keys=True),
            "versions": json.dumps(versions, sort_keys=True),
            "pinned": json.dumps(PINNED, sort_keys=True),
            "probes": json.dumps(probes, sort_keys=True),
            "checks": json.dumps(checks, sort_keys=True),
            "seed": str(seed),
            "T": str(T_PROMPT),
            "n_generate": str(N_GEN),
            "numerics": ("model float64 (weights float32 values), eager attention and experts, no "
                         "quantisation simulation; transformers' float32 steps (RMSNorm, per-head q "
                         "rsqrt, RoPE input, compressor softmax, RoPE angles, mHC and hc_head "
                         "weights) replaced by the same functions in float64 (checked against the "
                         "shipped ones); indexer scores stay float32 (selection only, clear gap)"),
            "layout": ("prompt [T] I32; tokens [G] I32 = greedy continuation; logits [T+G-1, V] "
                       "F64, row t = logits after token t of prompt ++ tokens[:G-1] (stateless "
                       "full forward); rows T-1.. are the greedy steps"),
        }
        tensors = {
            "prompt": prompt[0].numpy().astype(np.int32),
            "tokens": np.array(toks, dtype=np.int32),
            "logits": np.ascontiguousarray(lg.astype(np.float64)),
        }
        stage = work / "out"
        stage.mkdir()
        shutil.copytree(ckpt, stage / "ckpt")
        write_safetensors(tensors, meta, stage / "golden.safetensors")
        for p in stage.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)  # save_pretrained leaves 0600 files
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage, out_dir)
        sizes = {str(p.relative_to(out_dir)): p.stat().st_size for p in sorted(out_dir.rglob("*"))
                 if p.is_file()}
        return {"seed": seed, "tries": tries, "checks": checks, "probes": probes, "sizes": sizes,
                "total_bytes": sum(sizes.values())}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true",
                    help="run even if the installed versions differ from the pinned ones")
    args = ap.parse_args()
    versions = check_versions("gen_transformers_model_golden", args.force)
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        info = golden(dict(GOLDEN), versions, args.out)
    except ProbeFailure as e:
        sys.exit(f"gen_transformers_model_golden: check failed, nothing written: {e}")
    print(json.dumps(info, indent=1, sort_keys=True))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
