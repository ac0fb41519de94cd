// sage-accuracy: error of each SageAttention2 variant against fp32 attention (cosine similarity, relative
// L1, RMSE) on Gaussian inputs and on inputs with DiT-like channel-wise outliers, at B=1, H=8, N=4096,
// D=64 and 128; cuDNN and FlashAttention-2 in bf16 as anchors. Prints a markdown table: the mean over inputs
// drawn from a few fixed seeds, and the range of the relative L1 over them (one draw's error strays a few percent
// from another's, which a single draw would read as a change of the kernels).
#include "bench_util.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/kernels/sage2.h"
#include "sagevid/models/attention.h"

#include <ATen/Context.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

namespace sage2 = sagevid::kernels::sage2;
using sagevid::tools::random_cuda;

struct Variant {
  std::string name;
  std::optional<sagevid::AttentionBackend> backend;  // set: a torch backend instead of sage2
  sage2::Options options;
};

std::vector<Variant> variants() {
  std::vector<Variant> list;
  const auto add = [&](sage2::KernelFamily kernel, std::string name, sage2::QkType qk, sage2::PvType pv,
                       sage2::Granularity g, bool smooth_q, bool return_lse = false,
                       sage2::PExponent p_exponent = sage2::PExponent::exact) {
    if (!sage2::kernel_family_built(kernel)) return;
    sage2::Options o;
    o.kernel = kernel;
    o.qk = qk;
    o.pv = pv;
    o.granularity = g;
    o.smooth_q = smooth_q;
    o.return_lse = return_lse;
    o.p_exponent = p_exponent;
    const char* family = kernel == sage2::KernelFamily::wgmma ? "sage2 wgmma " : "sage2 mma.sync ";
    list.push_back({family + std::move(name), std::nullopt, o});
  };
  using G = sage2::Granularity;
  using sage2::PvType;
  using sage2::QkType;
  const auto wgmma = sage2::KernelFamily::wgmma, mma = sage2::KernelFamily::mma_sync;
  add(wgmma, "int8 per-thread + fp8 PV (sm_90 default)", QkType::int8, PvType::fp8, G::per_thread, false);
  // The same with the LSE asked for, which keeps the row sums in fp32 (the default takes them from the tensor
  // cores).
  add(wgmma, "int8 per-thread + fp8 PV, with LSE", QkType::int8, PvType::fp8, G::per_thread, false, true);
  // P from linear bytes (sage2.h, PExponent; quarter- and half-linear's D128 rows are the default's call again).
  add(wgmma, "int8 per-thread + fp8 PV, quarter-linear P", QkType::int8, PvType::fp8, G::per_thread, false, false,
      sage2::PExponent::quarter_linear);
  add(wgmma, "int8 per-thread + fp8 PV, half-linear P", QkType::int8, PvType::fp8, G::per_thread, false, false,
      sage2::PExponent::half_linear);
  add(wgmma, "int8 per-thread + fp8 PV, linear P", QkType::int8, PvType::fp8, G::per_thread, false, false,
      sage2::PExponent::linear);
  add(wgmma, "int8 per-token + fp8 PV", QkType::int8, PvType::fp8, G::per_token, false);
  add(wgmma, "int8 per-thread + fp16 PV", QkType::int8, PvType::fp16, G::per_thread, false);
  add(wgmma, "int8 per-thread + fp16 PV, linear P", QkType::int8, PvType::fp16, G::per_thread, false, false,
      sage2::PExponent::linear);
  add(wgmma, "int8 per-token + fp16 PV (the high-accuracy mode)", QkType::int8, PvType::fp16, G::per_token, false);
  add(mma, "int8 per-thread + fp8 PV (the official sm_90 mode)", QkType::int8, PvType::fp8, G::per_thread, false);
  add(mma, "int8 per-token + fp16 PV", QkType::int8, PvType::fp16, G::per_token, false);
  add(mma, "int8 per-thread + fp16 PV", QkType::int8, PvType::fp16, G::per_thread, false);
  add(mma, "int8 per-token + fp8 PV", QkType::int8, PvType::fp8, G::per_token, false);
  add(mma, "int8 per-warp + fp8 PV", QkType::int8, PvType::fp8, G::per_warp, false);
  add(mma, "int8 per-block + fp8 PV", QkType::int8, PvType::fp8, G::per_block, false);
  add(mma, "int8 per-thread + smooth Q + fp8 PV", QkType::int8, PvType::fp8, G::per_thread, true);
  add(mma, "int4 per-thread + smooth Q + fp8 PV", QkType::int4, PvType::fp8, G::per_thread, true);
  add(mma, "int4 per-thread, no Q smoothing + fp8 PV", QkType::int4, PvType::fp8, G::per_thread, false);
  add(mma, "int4 per-thread + smooth Q + fp16 PV", QkType::int4, PvType::fp16, G::per_thread, true);
  list.push_back({"cuDNN bf16", sagevid::AttentionBackend::cudnn, {}});
  list.push_back({"FlashAttention-2 bf16", sagevid::AttentionBackend::flash, {}});
  return list;
}

struct Inputs {
  at::Tensor q, k, v;
};

// Channel-wise outliers like DiT activations: K with a large per-channel bias, Q and V with per-channel
// scales and offsets.
Inputs make_inputs(bool outliers, int64_t head_dim, int64_t n) {
  const int64_t b = 1, h = 8;
  at::Tensor q = random_cuda({b, h, n, head_dim}, at::kFloat), k = random_cuda({b, h, n, head_dim}, at::kFloat),
             v = random_cuda({b, h, n, head_dim}, at::kFloat);
  if (outliers) {
    k = k + random_cuda({1, h, 1, head_dim}, at::kFloat) * 8;
    q = q * (random_cuda({1, h, 1, head_dim}, at::kFloat).abs() * 2) + random_cuda({1, h, 1, head_dim}, at::kFloat);
    v = v * (random_cuda({1, h, 1, head_dim}, at::kFloat).abs() * 2) + random_cuda({1, h, 1, head_dim}, at::kFloat);
  }
  return {q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16)};
}

// One variant's errors against the reference, summed over the seeds so far.
struct Errors {
  double cosine = 0.0, rel_l1 = 0.0, rmse = 0.0;
  double rel_l1_min = 1e300, rel_l1_max = 0.0;

  void add(const at::Tensor& out, const at::Tensor& ref) {
    const at::Tensor a = out.to(at::kDouble).flatten(), r = ref.to(at::kDouble).flatten();
    cosine += sagevid::tools::cosine_similarity(a, r);
    const double l1 = ((a - r).abs().sum() / r.abs().sum()).item<double>();
    rel_l1 += l1;
    rel_l1_min = std::min(rel_l1_min, l1);
    rel_l1_max = std::max(rel_l1_max, l1);
    rmse += (a - r).pow(2).mean().sqrt().item<double>();
  }
};

}  // namespace

// sage-accuracy [--n N] [--seeds S]   (N: the sequence length, default 4096, the fp32 reference holding 8·N²
// scores; S: the draws of inputs, seeds 0 to S − 1, default 4)
int main(int argc, char** argv) {
  int64_t n = 4096, seeds = 4;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--n" && i + 1 < argc) {
      n = std::strtoll(argv[++i], nullptr, 10);
    } else if (arg == "--seeds" && i + 1 < argc) {
      seeds = std::strtoll(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: sage-accuracy [--n N] [--seeds S]\n");
      return 2;
    }
  }
  if (n < 1 || seeds < 1) {
    std::fprintf(stderr, "sage-accuracy: --n and --seeds must be positive\n");
    return 2;
  }
  const auto devices = sagevid::kernels::cuda_devices();
  if (devices.empty()) {
    std::fprintf(stderr, "sage-accuracy: no CUDA device\n");
    return 1;
  }
  std::printf(
      "device: %s; B=1 H=8 N=%lld, bf16 inputs drawn from seeds 0-%lld, reference: fp32 attention of the same bf16 "
      "inputs; each error the mean over the draws\n\n",
      devices[0].name.c_str(), static_cast<long long>(n), static_cast<long long>(seeds - 1));
  std::printf("| inputs | D | variant | cosine | rel. L1 | rel. L1 range | RMSE |\n|---|---|---|---|---|---|---|\n");
  const std::vector<Variant> list = variants();
  for (bool outliers : {false, true}) {
    for (int64_t head_dim : {64, 128}) {
      std::vector<Errors> errors(list.size());
      for (int64_t seed = 0; seed < seeds; ++seed) {
        at::manual_seed(uint64_t(seed));
        const Inputs in = make_inputs(outliers, head_dim, n);
        const at::Tensor ref = sagevid::Attention()(in.q.to(at::kFloat), in.k.to(at::kFloat), in.v.to(at::kFloat));
        for (size_t i = 0; i < list.size(); ++i) {
          const Variant& variant = list[i];
          const at::Tensor out =
              variant.backend
                  ? sagevid::Attention(sagevid::AttentionConfig{*variant.backend, std::nullopt, {}})(in.q, in.k, in.v)
                  : sage2::attention(in.q, in.k, in.v, variant.options).out;
          errors[i].add(out, ref);
        }
      }
      const double draws = double(seeds);
      for (size_t i = 0; i < list.size(); ++i) {
        const Errors& e = errors[i];
        std::printf("| %s | %lld | %s | %.6f | %.4f | %.4f-%.4f | %.5f |\n", outliers ? "outliers" : "Gaussian",
                    (long long)head_dim, list[i].name.c_str(), e.cosine / draws, e.rel_l1 / draws, e.rel_l1_min,
                    e.rel_l1_max, e.rmse / draws);
      }
    }
  }
  return 0;
}
