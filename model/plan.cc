#include "model/plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>

#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "reference/errors.h"

namespace dsv4 {

namespace {

enum class Shard { replicated, tp, ep };

// How one tensor of the checkpoint is placed (plan.h); `expert` gets the routed expert index.
Shard shard_of(const std::string& name, int64_t* expert) {
  static const std::regex kExpert(R"(\.ffn\.experts\.([0-9]+)\.)");
  std::smatch m;
  if (std::regex_search(name, m, kExpert)) {
    *expert = std::stoll(m[1].str());
    return Shard::ep;
  }
  auto ends = [&](const char* s) {
    const std::string x(s);
    return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
  };
  if (name == "embed.weight" || name == "head.weight") return Shard::tp;
  if (name.find(".indexer.") != std::string::npos || name.find(".compressor.") != std::string::npos)
    return Shard::replicated;
  if (ends("attn.wq_b.weight") || ends("attn.wo_a.weight") || ends("attn.wo_b.weight") || ends("attn.attn_sink"))
    return Shard::tp;
  if (name.find(".ffn.shared_experts.") != std::string::npos) return Shard::tp;
  return Shard::replicated;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

RankMemory plan_layout(const ModelConfig& c, const PlanRequest& r, int64_t tp, int64_t ep) {
  require(c.arch == Arch::v4, "plan: '" + c.name + "' is not a V4 model");
  require(r.gpus > 0 && r.gpu_bytes > 0 && r.context > 0 && r.batch > 0,
                      "plan: --gpus, --gpu-mem, --context and --batch must be positive");
  auto bad = [&](const std::string& why) {
    throw InputError("plan: layout tp=" + std::to_string(tp) + " ep=" + std::to_string(ep) + " on " +
                     std::to_string(r.gpus) + " GPUs: " + why);
  };
  if (tp <= 0 || ep <= 0) bad("tp and ep must be positive");
  if (r.gpus % tp) bad("tp must divide the number of GPUs");
  if (r.gpus % ep) bad("ep must divide the number of GPUs");
  if (c.n_heads % tp) bad("tp must divide the " + std::to_string(c.n_heads) + " query heads");
  if (c.o_groups % tp) bad("tp must divide the " + std::to_string(c.o_groups) + " output groups");
  if (c.n_routed_experts % ep) bad("ep must divide the " + std::to_string(c.n_routed_experts) + " routed experts");

  RankMemory m;
  m.tp = tp, m.ep = ep, m.dp = r.gpus / tp;
  // Rank 0 of its EP group holds experts [0, E/ep); every EP shard has the same sizes.
  const int64_t per_shard = c.n_routed_experts / ep;
  for (const TensorSpec& s : expected_tensors(c)) {
    const int64_t bytes = stored_shape(c, s, release_encoding(c, s.role)).bytes;
    int64_t expert = -1;
    switch (shard_of(s.name, &expert)) {
      case Shard::replicated:
        m.weights_replicated += bytes;
        break;
      case Shard::tp:
        m.weights_tp += ceil_div(bytes, tp);
        break;
      case Shard::ep:
        if (expert < per_shard) m.weights_ep += bytes;
        break;
    }
  }
  m.weights = m.weights_replicated + m.weights_tp + m.weights_ep;
  m.sequences = ceil_div(r.batch, m.dp);
  m.kv = m.sequences * kv_bytes_analytic(c, r.context, KvLayout::fp8).total();
  // Workspace (plan.h): one chunk through one layer.
  constexpr int64_t kF32 = 4, kBf16 = 2;
  const int64_t C = std::min(kWorkspaceChunk, r.context), keys = r.context / kCsaRatio;
  const int64_t routed = ceil_div(C * c.experts_per_token, tp);  // routed tokens reaching a rank
  m.workspace = 2 * C * c.hc_mult * c.dim * kF32 + 2 * C * (c.n_heads / tp) * c.head_dim * kBf16 +
                C * std::min(keys, kScoreTile) * kF32 + routed * (c.dim + 3 * c.moe_inter_dim) * kBf16 +
                ceil_div(c.vocab_size, tp) * kF32;
  m.fits = double(m.total()) <= (1 - kReserve) * double(r.gpu_bytes);
  return m;
}

std::vector<RankMemory> plan_layouts(const ModelConfig& c, const PlanRequest& r) {
  std::vector<RankMemory> out;
  for (int64_t tp = 1; tp <= r.gpus; ++tp)
    for (int64_t ep = 1; ep <= r.gpus; ++ep) {
      if (r.gpus % tp || r.gpus % ep || c.n_heads % tp || c.o_groups % tp || c.n_routed_experts % ep) continue;
      out.push_back(plan_layout(c, r, tp, ep));
    }
  require(!out.empty(), "plan: no valid layout on " + std::to_string(r.gpus) + " GPUs");
  std::stable_sort(out.begin(), out.end(), [](const RankMemory& a, const RankMemory& b) {
    if (a.fits != b.fits) return a.fits;
    if (a.fits) return a.tp != b.tp ? a.tp < b.tp : a.ep > b.ep;
    return a.total() < b.total();
  });
  return out;
}

int64_t parse_bytes(const std::string& s) {
  static const std::regex kBytes(R"(^\s*([0-9]+(\.[0-9]+)?)\s*([KMGT]?)(i?)(B?)\s*$)", std::regex::icase);
  std::smatch m;
  if (!std::regex_match(s, m, kBytes)) throw InputError("'" + s + "' is not a size (e.g. 141GiB, 80GB, 1073741824)");
  const double v = std::stod(m[1].str());
  const char unit = m[3].length() ? char(std::toupper(static_cast<unsigned char>(m[3].str()[0]))) : 0;
  const bool binary = m[4].length() > 0 || (unit && m[5].length() == 0);  // "G" alone: GiB
  const double base = binary ? 1024.0 : 1000.0;
  const int power = unit == 'K' ? 1 : unit == 'M' ? 2 : unit == 'G' ? 3 : unit == 'T' ? 4 : 0;
  const double bytes = v * std::pow(base, power);
  if (!(bytes >= 1) || bytes > 9e18) throw InputError("'" + s + "' is not a size in [1 B, 8 EiB]");
  return int64_t(bytes);
}

}  // namespace dsv4
