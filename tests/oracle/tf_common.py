"""Helpers shared by the transformers oracle generators (tests/oracle/gen_transformers_*.py).

Nothing here touches the network or the repository; each generator decides what to write.
  check_versions    refuse unpinned torch / transformers / safetensors (--force overrides)
  spec_inv_freq     the RoPE frequencies of spec §2.7 (float64), layer_inv_freq per ratio
  Float64Numerics   scoped float64 replacements of the port's float32 islands, each checked
                    against the shipped function before use
  write_safetensors deterministic writer (sorted names and metadata), read back and compared
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

PINNED = {"torch": "2.15", "transformers": "5.24", "safetensors": "0.8"}
U32 = 2.0 ** -24  # float32 unit roundoff


class ProbeFailure(RuntimeError):
    pass


def fmt(x: float) -> str:
    """Stable short form for recorded error figures (2 significant digits)."""
    return f"{float(x):.2g}"


def check_versions(tool: str, force: bool) -> dict:
    import numpy
    import safetensors
    import torch
    import transformers

    found = {"torch": torch.__version__, "transformers": transformers.__version__,
             "safetensors": safetensors.__version__}
    bad = []
    for k, pin in PINNED.items():
        mm = ".".join(found[k].split("+")[0].split(".")[:2])
        if mm != pin:
            bad.append(f"{k} {found[k]} (pinned {pin}.x)")
    if bad and not force:
        sys.exit(f"{tool}: version mismatch: " + ", ".join(bad) +
                 ". Re-run the probes and review docs/oracles.md before trusting another "
                 "version; pass --force to run anyway.")
    found["numpy"] = numpy.__version__
    found["python"] = sys.version.split()[0]
    found["forced"] = bool(bad)
    return found


# ---------------------------------------------------------------------------------------
# RoPE tables of spec §2.7 (float64)
# ---------------------------------------------------------------------------------------
def spec_inv_freq(rope_dim: int, theta: float, yarn: dict | None):
    """§2.7: f_i = theta^(-2i/d_r); YaRN blends f_i and f_i/factor over [low, high]."""
    import numpy as np
    i = np.arange(rope_dim // 2, dtype=np.float64)
    f = theta ** (-2.0 * i / rope_dim)
    if yarn is not None:
        def corr(rot):
            return rope_dim * math.log(yarn["orig"] / (rot * 2 * math.pi)) / (2 * math.log(theta))
        low = max(math.floor(corr(yarn["beta_fast"])), 0)
        high = min(math.ceil(corr(yarn["beta_slow"])), rope_dim - 1)
        span = 0.001 if high == low else float(high - low)
        s = 1.0 - np.clip((i - low) / span, 0.0, 1.0)
        f = f * s + f / yarn["factor"] * (1.0 - s)
    return f


def layer_inv_freq(g: dict, ratio: int):
    """Window-only layers: plain theta; compressed layers: compress theta with YaRN."""
    if ratio == 0:
        return spec_inv_freq(g["rope_dim"], g["rope_theta"], None)
    return spec_inv_freq(g["rope_dim"], g["compress_rope_theta"],
                         {"factor": g["yarn_factor"], "orig": g["yarn_orig"],
                          "beta_fast": g["beta_fast"], "beta_slow": g["beta_slow"]})


# ---------------------------------------------------------------------------------------
# float64 replacements of the port's float32 islands
# ---------------------------------------------------------------------------------------
class Float64Numerics:
    """Scoped removal of transformers' float32 islands (the shipped code stays in use outside
    the `with` block). Each replacement computes the same function as the shipped one in
    float64; check() proves it on random inputs before use:
      DeepseekV4RMSNorm.forward            shipped: casts the input to float32
      DeepseekV4UnweightedRMSNorm.forward  shipped: rsqrt of the mean square in float32
      apply_rotary_pos_emb                 shipped: rotates float32 copies of the input
      Tensor.softmax(dtype=float32)        shipped compressors ask for float32 weights
      DeepseekV4RotaryEmbedding.forward    shipped: float32 inv_freq and angles; replaced by
                                           the spec table in float64 (install_tables checks
                                           the shipped table against it, 2 float32 ulp)
    and with mhc=True also
      DeepseekV4HyperConnection.forward    shipped: mHC weights (norm, projection, sigmoid,
                                           softmax, Sinkhorn) in float32
      DeepseekV4HyperHead.forward          shipped: hc_head weights in float32
    Not replaced: the indexer scorer's float32 scores (they only choose entries; generators
    require a clear score gap at the k-th entry)."""

    def __init__(self, g, mhc: bool = False):
        self.g = g
        self.mhc = mhc
        self.saved = None

    # -- replacements ---------------------------------------------------------------
    @staticmethod
    def rmsnorm(self, h):
        import torch
        var = h.pow(2).mean(-1, keepdim=True)
        return self.weight * (h * torch.rsqrt(var + self.variance_epsilon))

    @staticmethod
    def unweighted_rmsnorm(self, x):
        import torch
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps)

    @staticmethod
    def rotary_apply(x, cos, sin, unsqueeze_dim=1):
        import torch
        from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
        cos = cos.repeat_interleave(2, dim=-1).unsqueeze(unsqueeze_dim)
        sin = sin.repeat_interleave(2, dim=-1).unsqueeze(unsqueeze_dim)
        rd = cos.shape[-1]
        nope, rope = x[..., :-rd], x[..., -rd:]
        return torch.cat([nope, rope * cos + M.rotate_half(rope) * sin], dim=-1)

    @staticmethod
    def rotary_forward(self, x, position_ids, layer_type=None):
        import torch
        inv = getattr(self, f"{layer_type}_inv_freq").to(torch.float64)
        scale = getattr(self, f"{layer_type}_attention_scaling")
        freqs = position_ids[..., None].to(torch.float64) * inv
        return (freqs.cos() * scale).to(x.dtype), (freqs.sin() * scale).to(x.dtype)

    @staticmethod
    def hyper_connection(self, hidden_streams):
        """The shipped DeepseekV4HyperConnection.forward without its .float() casts."""
        import torch
        import torch.nn.functional as F
        b, s = hidden_streams.shape[:2]
        hc = self.hc_mult
        flat = self.input_norm(hidden_streams.reshape(b, s, -1))
        mixes = F.linear(flat, self.fn)
        pre_w, post_w, comb_w = mixes.split([hc, hc, hc * hc], dim=-1)
        pre_b, post_b, comb_b = self.base.split([hc, hc, hc * hc])
        pre_s, post_s, comb_s = self.scale.unbind(0)
        comb_w = comb_w.view(*comb_w.shape[:-1], hc, hc)
        comb_b = comb_b.view(hc, hc)
        pre = torch.sigmoid(pre_w * pre_s + pre_b) + self.hc_eps
        post = 2 * torch.sigmoid(post_w * post_s + post_b)
        comb = torch.softmax(comb_w * comb_s + comb_b, dim=-1) + self.hc_eps
        comb = comb / (comb.sum(dim=-2, keepdim=True) + self.hc_eps)
        for _ in range(self.hc_sinkhorn_iters - 1):
            comb = comb / (comb.sum(dim=-1, keepdim=True) + self.hc_eps)
            comb = comb / (comb.sum(dim=-2, keepdim=True) + self.hc_eps)
        collapsed = (pre.unsqueeze(-1) * hidden_streams).sum(dim=2)
        return post, comb, collapsed

    @staticmethod
    def hyper_head(self, x):
        """The shipped DeepseekV4HyperHead.forward without its .float() casts."""
        import torch
        import torch.nn.functional as F
        flat = self.input_norm(x.flatten(2))
        mixes = F.linear(flat, self.hc_fn)
        pre = torch.sigmoid(mixes * self.hc_scale + self.hc_base) + self.eps
        return (pre.unsqueeze(-1) * x).sum(dim=2)

    def install_tables(self, model):
        """The spec's float64 tables in every rotary module of model (after checking the
        shipped table against them to 2 float32 ulp)."""
        import torch
        from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
        tables = {"main": layer_inv_freq(self.g, 0), "compress": layer_inv_freq(self.g, 4)}
        for mod in model.modules():
            if isinstance(mod, M.DeepseekV4RotaryEmbedding):
                for kind, tab in tables.items():
                    new = torch.tensor(tab, dtype=torch.float64)
                    got = getattr(mod, f"{kind}_inv_freq").double()
                    if float((got / new - 1).abs().max()) > 4e-7:
                        raise ProbeFailure("RoPE table differs from the spec table")
                    setattr(mod, f"{kind}_inv_freq", new)

    # -- scope ----------------------------------------------------------------------
    def _targets(self):
        import torch
        from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
        t = [(M.DeepseekV4RMSNorm, "forward"), (M.DeepseekV4UnweightedRMSNorm, "forward"),
             (M, "apply_rotary_pos_emb"), (torch.Tensor, "softmax"),
             (M.DeepseekV4RotaryEmbedding, "forward")]
        if self.mhc:
            t += [(M.DeepseekV4HyperConnection, "forward"), (M.DeepseekV4HyperHead, "forward")]
        return t

    def __enter__(self):
        import torch
        from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
        self.saved = [(obj, name, getattr(obj, name)) for obj, name in self._targets()]
        shipped_softmax = torch.Tensor.softmax

        def softmax64(t, dim=None, dtype=None):
            if t.dtype == torch.float64 and dtype == torch.float32:
                dtype = None
            return shipped_softmax(t, dim=dim, dtype=dtype)

        M.DeepseekV4RMSNorm.forward = Float64Numerics.rmsnorm
        M.DeepseekV4UnweightedRMSNorm.forward = Float64Numerics.unweighted_rmsnorm
        M.apply_rotary_pos_emb = Float64Numerics.rotary_apply
        torch.Tensor.softmax = softmax64
        M.DeepseekV4RotaryEmbedding.forward = Float64Numerics.rotary_forward
        if self.mhc:
            M.DeepseekV4HyperConnection.forward = Float64Numerics.hyper_connection
            M.DeepseekV4HyperHead.forward = Float64Numerics.hyper_head
        return self

    def __exit__(self, *exc):
        for obj, name, fn in self.saved:
            setattr(obj, name, fn)
        self.saved = None
        return False

    def check(self, seed, rotary, positions: int) -> dict:
        """Each replacement equals the shipped function to a few float32 ulp (relative to
        the output's largest element); RoPE to the float32-angle bound 4 * positions * u32.
        rotary: a DeepseekV4RotaryEmbedding of the model's config."""
        import torch
        from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
        gen = torch.Generator().manual_seed(seed)
        rnd = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)
        rel = lambda a, b: float((a - b).abs().max() / b.abs().max())
        res = {}
        norm = M.DeepseekV4RMSNorm(128, eps=1e-6).double()
        with torch.no_grad():
            norm.weight.copy_(rnd(128).abs() + 0.5)
        unw = M.DeepseekV4UnweightedRMSNorm(eps=1e-6)
        x = rnd(3, 5, 128)
        cos_sin_angles = rnd(1, 5, 32) * 3
        logits = rnd(2, 8, 4, 16) * 3
        pos = torch.arange(positions)[None]

        def run():
            out = {
                "rmsnorm": norm(x), "unweighted_rmsnorm": unw(x),
                "rotary_apply": M.apply_rotary_pos_emb(x[None], cos_sin_angles.cos(),
                                                       cos_sin_angles.sin()),
                "softmax_f32": logits.softmax(dim=2, dtype=torch.float32).to(torch.float64),
                "rope_cos_sin": torch.cat(rotary(x, pos, "compress") + rotary(x, pos, "main"), -1),
            }
            if self.mhc:
                out.update(self._mhc_outputs(seed))
            return {k: v.detach().to(torch.float64) for k, v in out.items()}

        shipped = run()
        self.install_tables(rotary)
        with self:
            mine = run()
            if logits.softmax(dim=2, dtype=torch.float32).dtype != torch.float64:
                raise ProbeFailure("float64 softmax replacement not active")
        bounds = {k: 8 * U32 for k in shipped}
        bounds["rope_cos_sin"] = 4.0 * positions * U32 + 1e-6
        bounds.update({k: 64 * U32 for k in shipped if k.startswith("hc_")})  # Sinkhorn chain
        for k in shipped:
            e = rel(shipped[k], mine[k])
            res[k] = fmt(e)
            if not e <= bounds[k]:
                raise ProbeFailure(f"float64 replacement of {k} differs from the shipped code by {e:.3g}")
            if k != "rope_cos_sin" and e == 0.0:
                raise ProbeFailure(f"float64 replacement of {k} is not active")
        return res

    def _mhc_outputs(self, seed):
        """Outputs of a random HyperConnection and HyperHead (float64 modules, float64
        streams); the shipped forwards compute them in float32 internally."""
        import torch
        from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
        if not hasattr(self, "_mhc_mods"):
            from transformers import DeepseekV4Config
            cfg = DeepseekV4Config(hidden_size=32, hc_mult=4, hc_sinkhorn_iters=20, hc_eps=1e-6,
                                   rms_norm_eps=1e-6)
            gen = torch.Generator().manual_seed(seed + 1)
            hc = M.DeepseekV4HyperConnection(cfg).double()
            head = M.DeepseekV4HyperHead(cfg).double()
            with torch.no_grad():
                for mod in (hc, head):
                    for name, p in mod.named_parameters():
                        p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) *
                                (0.5 / math.sqrt(p.shape[-1]) if p.dim() == 2 else 0.5) +
                                (1.0 if "scale" in name else 0.0))
            streams = torch.randn(1, 7, 4, 32, generator=gen, dtype=torch.float64)
            self._mhc_mods = (hc, head, streams)
        hc, head, streams = self._mhc_mods
        post, comb, collapsed = hc(streams)
        return {"hc_post": post, "hc_comb": comb, "hc_collapsed": collapsed,
                "hc_head": head(streams)}


# ---------------------------------------------------------------------------------------
# Deterministic safetensors writer
# ---------------------------------------------------------------------------------------
def write_safetensors(tensors: dict, meta: dict, path: Path):
    """Sorted names, sorted metadata, header padded to 8 bytes (the safetensors library
    orders metadata by hash, so two runs would differ). Read back with the safetensors
    library and compared before it replaces `path`."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file
    dt = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int32): "I32",
          np.dtype(np.int64): "I64"}
    header, blobs, off = {"__metadata__": dict(sorted(meta.items()))}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(h).to_bytes(8, "little"))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        back = load_file(tmp)
        with safe_open(tmp, "np") as f:
            if f.metadata() != meta:
                raise ProbeFailure("safetensors read-back: metadata differs")
        if sorted(back) != sorted(tensors) or any(
                back[k].dtype != tensors[k].dtype or not np.array_equal(back[k], tensors[k])
                for k in tensors):
            raise ProbeFailure("safetensors read-back differs from what was written")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
