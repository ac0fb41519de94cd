// sage-bench: attention throughput of our SageAttention2 kernels (preprocessing included) side by side with
// PyTorch's FlashAttention-2 and cuDNN, in one run. TOPS = 4·B·H·N_q·N_kv·D / time, halved for causal.
// Prints markdown tables (docs/PERFORMANCE.md keeps them): each call timed on its own (and sage2 against cuDNN with
// their calls in turn, so that both meet the same clocks), the same calls back to back (what is left when the
// host's time hides under the GPU's), and every mode at CogVideoX-2B.
#include "bench_util.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/kernels/sage2.h"
#include "sagevid/models/attention.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

// The back-to-back table: calls between two events, and the runs whose median it prints.
constexpr int kBackToBackCalls = 20, kBackToBackRepeats = 5;

namespace sage2 = sagevid::kernels::sage2;
using sagevid::AttentionBackend;

struct Shape {
  const char* name;
  int64_t batch, heads, len, head_dim;
  bool causal;
};

const Shape kShapes[] = {
    {"CogVideoX-2B", 2, 30, 17776, 64, false},     {"CogVideoX-5B", 2, 48, 17776, 64, false},
    {"CogVideoX1.5-5B", 1, 48, 45106, 64, false},  {"hd64 8k", 4, 32, 8192, 64, false},
    {"hd64 8k causal", 4, 32, 8192, 64, true},     {"hd64 32k", 1, 32, 32768, 64, false},
    {"hd64 32k causal", 1, 32, 32768, 64, true},   {"hd128 8k", 4, 32, 8192, 128, false},
    {"hd128 8k causal", 4, 32, 8192, 128, true},   {"hd128 32k", 1, 32, 32768, 128, false},
    {"hd128 32k causal", 1, 32, 32768, 128, true},
};

double tops(const Shape& s, double ms) {
  const double ops = 4.0 * s.batch * s.heads * double(s.len) * double(s.len) * s.head_dim * (s.causal ? 0.5 : 1.0);
  return ops / (ms * 1e-3) / 1e12;
}

// Fresh random bf16 Q, K, V of the shape.
std::array<at::Tensor, 3> random_qkv(const Shape& s) {
  const auto draw = [&] { return sagevid::tools::random_cuda({s.batch, s.heads, s.len, s.head_dim}, at::kBFloat16); };
  return {draw(), draw(), draw()};
}

struct Mode {
  const char* name;
  sage2::KernelFamily kernel;
  sage2::QkType qk;
  sage2::PvType pv;
  sage2::Granularity granularity;
  sage2::PExponent p_exponent = sage2::PExponent::exact;
};

// Every kernel family / Q·Kᵀ / P·V / granularity mode at one shape: what each costs against the default.
void bench_modes(const Shape& s) {
  using G = sage2::Granularity;
  using sage2::PvType;
  using sage2::QkType;
  const auto wgmma = sage2::KernelFamily::wgmma, mma = sage2::KernelFamily::mma_sync;
  const Mode modes[] = {
      {"wgmma int8 per-thread + fp8 PV (sm_90 default)", wgmma, QkType::int8, PvType::fp8, G::per_thread},
      {"wgmma int8 per-thread + fp8 PV, quarter-linear P", wgmma, QkType::int8, PvType::fp8, G::per_thread,
       sage2::PExponent::quarter_linear},
      {"wgmma int8 per-thread + fp8 PV, half-linear P", wgmma, QkType::int8, PvType::fp8, G::per_thread,
       sage2::PExponent::half_linear},
      {"wgmma int8 per-thread + fp8 PV, linear P", wgmma, QkType::int8, PvType::fp8, G::per_thread,
       sage2::PExponent::linear},
      {"wgmma int8 per-token + fp8 PV", wgmma, QkType::int8, PvType::fp8, G::per_token},
      {"wgmma int8 per-thread + fp16 PV", wgmma, QkType::int8, PvType::fp16, G::per_thread},
      {"wgmma int8 per-thread + fp16 PV, linear P", wgmma, QkType::int8, PvType::fp16, G::per_thread,
       sage2::PExponent::linear},
      {"wgmma int8 per-token + fp16 PV (high accuracy)", wgmma, QkType::int8, PvType::fp16, G::per_token},
      {"mma.sync int8 per-thread + fp8 PV (the official sm_90 mode)", mma, QkType::int8, PvType::fp8, G::per_thread},
      {"mma.sync int8 per-token + fp16 PV", mma, QkType::int8, PvType::fp16, G::per_token},
      {"mma.sync int4 per-thread + fp8 PV (INT4 emulated on sm_90)", mma, QkType::int4, PvType::fp8, G::per_thread},
  };
  std::printf(
      "\n%s (B=%lld H=%lld N=%lld D=%lld), preprocessing included; call MiB: the most memory one call holds "
      "beyond its inputs and output:\n\n| mode | prep ms | ms | TOPS | call MiB |\n|---|---|---|---|---|\n",
      s.name, (long long)s.batch, (long long)s.heads, (long long)s.len, (long long)s.head_dim);
  const auto [q, k, v] = random_qkv(s);
  for (const Mode& mode : modes) {
    sage2::Options options;
    options.kernel = mode.kernel;
    options.qk = mode.qk;
    options.pv = mode.pv;
    options.granularity = mode.granularity;
    options.p_exponent = mode.p_exponent;
    if (auto reason = sage2::unsupported_reason(q, k, v, options)) {
      std::printf("| %s | not run: %s | | |\n", mode.name, reason->c_str());
      continue;
    }
    const double prep_ms = sagevid::tools::median_ms([&] { sage2::prepare(q, k, v, options); });
    const double ms = sagevid::tools::median_ms([&] { sage2::attention(q, k, v, options); });
    const at::Tensor out = at::empty_like(q);
    const int64_t before = sagevid::tools::allocated_bytes();
    c10::cuda::CUDACachingAllocator::resetPeakStats(0);
    sage2::attention(q, k, v, options, std::nullopt, out);
    const double call_mib = double(sagevid::tools::peak_allocated_bytes() - before) / (1 << 20);
    std::printf("| %s | %.3f | %.3f | %.0f | %.0f |\n", mode.name, prep_ms, ms, tops(s, ms), call_mib);
    std::fflush(stdout);
  }
}

// The default mode's preprocessing alone, a few times at one shape: what to run under a profiler. Twice on Gaussian
// inputs, then twice with every head of V flagged (a value far past its channel's sampled keys, at a key they
// skip: sage2_layout.h), whose heads are quantized again with their exact absmax.
void profile_preprocessing(const Shape& s) {
  const auto [q, k, v] = random_qkv(s);
  sage2::Options options;
  options.causal = s.causal;
  for (int i = 0; i < 2; ++i) sage2::prepare(q, k, v, options);
  v.select(2, 1).select(2, 0).fill_(1000.0f);  // [B, H, N, D]: key 1, channel 0 of every head
  for (int i = 0; i < 2; ++i) sage2::prepare(q, k, v, options);
  SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
}

// Where a lone call's time goes (--lone-check): sage2's call, its preprocessing alone and cuDNN's, each timed lone
// (drained first, as the first table), lone behind a long memset (every launch of the call queued before the GPU
// reaches it: what the host's time between launches leaves idle drops out), and back to back. After two seconds of
// the row's calls back to back, the settings take turns (the same clocks); medians of 20 after 5.
void lone_check(const Shape& s) {
  const auto [q, k, v] = random_qkv(s);
  sage2::Options options;
  options.causal = s.causal;
  sagevid::AttentionParams params;
  params.causal = s.causal;
  const sagevid::Attention cudnn(sagevid::AttentionConfig{AttentionBackend::cudnn, std::nullopt, {}});
  const std::pair<const char*, std::function<void()>> calls[] = {
      {"sage2", [&] { sage2::attention(q, k, v, options); }},
      {"sage2 prep", [&] { sage2::prepare(q, k, v, options); }},
      {"cuDNN", [&] { cudnn(q, k, v, params); }}};
  // Set in longer than a call's host time takes.
  const at::Tensor filler = at::empty({int64_t(2) << 30}, q.options().dtype(at::kByte));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  sagevid::tools::EventTimer timer;
  const auto lone_ms = [&](const std::function<void()>& fn, bool behind_memset) {
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
    if (behind_memset) SAGEVID_CUDA_CHECK(cudaMemsetAsync(filler.data_ptr(), 1, filler.numel(), stream));
    return timer.ms(fn);
  };
  const auto heat_until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < heat_until) {
    for (int i = 0; i < 10; ++i) calls[0].second(), calls[2].second();
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
  }
  for (const auto& [name, fn] : calls) {
    std::vector<double> lone, behind;
    for (int i = 0; i < 25; ++i) {
      const double a = lone_ms(fn, false), b = lone_ms(fn, true);
      if (i >= 5) lone.push_back(a), behind.push_back(b);
    }
    using sagevid::tools::median;
    std::printf("| %s | %s | %.3f | %.3f | %.3f | %.0f |\n", s.name, name, median(lone), median(behind),
                sagevid::tools::back_to_back_ms(fn, kBackToBackCalls, kBackToBackRepeats), sagevid::tools::host_us(fn));
    std::fflush(stdout);
  }
}

// The names --p-exponent takes (sage2.h's table), joined by `separator`.
std::string p_exponent_names(const char* separator) {
  std::string names;
  for (const auto& [name, value] : sage2::kPExponentNames)
    names += (names.empty() ? "" : separator) + std::string(name);
  return names;
}

// A row's name as --row takes it: underscores for spaces (one shell word).
std::string row_name(std::string name) {
  std::replace(name.begin(), name.end(), '_', ' ');
  return name;
}

// Every row's name as --row takes it, comma-separated.
std::string row_names() {
  std::string names;
  for (const Shape& s : kShapes) {
    std::string name = s.name;
    std::replace(name.begin(), name.end(), ' ', '_');
    names += (names.empty() ? "" : ", ") + name;
  }
  return names;
}

}  // namespace

// sage-bench [--quick | --long | --row NAME [--row NAME]...] [--p-exponent exact|quarter_linear|half_linear|linear]
//            [--profile-preprocessing] [--lone-check]
int main(int argc, char** argv) {
  // --quick: only the rows up to CogVideoX-2B's length (kShapes[0]'s); --long: only the others; --row: only the rows
  // named (underscores for spaces, e.g. hd128_32k: a row or two interleaved across builds in little device time),
  // without the modes table.
  bool quick = false, long_only = false;
  std::vector<std::string> rows;
  sage2::PExponent p_exponent = sage2::PExponent::exact;  // the sage2 column's P (sage2.h)
  std::string p_exponent_name = "exact";
  std::string diagnostic;  // --profile-preprocessing or --lone-check: that alone instead of the tables
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--long") {
      long_only = true;
    } else if (arg == "--row" && i + 1 < argc) {
      rows.push_back(row_name(argv[++i]));
      if (std::none_of(std::begin(kShapes), std::end(kShapes), [&](const Shape& s) { return rows.back() == s.name; })) {
        std::fprintf(stderr, "sage-bench: no row \"%s\"; the rows: %s\n", rows.back().c_str(), row_names().c_str());
        return 2;
      }
    } else if (arg == "--profile-preprocessing" || arg == "--lone-check") {
      diagnostic = arg;
    } else if (arg == "--p-exponent" && i + 1 < argc) {
      p_exponent_name = argv[++i];
      const auto found = std::find_if(sage2::kPExponentNames.begin(), sage2::kPExponentNames.end(),
                                      [&](const auto& choice) { return choice.first == p_exponent_name; });
      if (found == sage2::kPExponentNames.end()) {
        std::fprintf(stderr, "sage-bench: --p-exponent takes %s\n", p_exponent_names(", ").c_str());
        return 2;
      }
      p_exponent = found->second;
    } else {
      std::fprintf(stderr,
                   "usage: sage-bench [--quick | --long | --row NAME [--row NAME]...] [--p-exponent %s] "
                   "[--profile-preprocessing] [--lone-check]\n",
                   p_exponent_names("|").c_str());
      return 2;
    }
  }
  if (int(quick) + int(long_only) + int(!rows.empty()) > 1) {
    std::fprintf(stderr, "sage-bench: --quick, --long and --row exclude each other\n");
    return 2;
  }
  const auto devices = sagevid::kernels::cuda_devices();
  if (devices.empty()) {
    std::fprintf(stderr, "sage-bench: no CUDA device\n");
    return 1;
  }
  if (diagnostic == "--profile-preprocessing") {  // at the 8k shapes of both head dims
    for (const Shape& s : kShapes)
      if (s.len == 8192 && !s.causal) profile_preprocessing(s);
    return 0;
  }
  if (diagnostic == "--lone-check") {  // at the 8k shapes
    std::printf(
        "device: %s\n\n| shape | call | lone ms | lone behind a memset | back to back | host µs |\n"
        "|---|---|---|---|---|---|\n",
        devices[0].name.c_str());
    for (const Shape& s : kShapes)
      if (s.len == 8192) lone_check(s);
    return 0;
  }
  std::printf("device: %s (sm_%d), bf16 inputs, median of 20 runs after 5 warm-ups, sage2 P exponent: %s\n\n",
              devices[0].name.c_str(), devices[0].compute_capability, p_exponent_name.c_str());
  // sage2: the default mode of this device; "other P·V": the same with the other P·V type.
  std::printf(
      "| shape | B | H | N | D | causal | sage2 prep ms | sage2 ms | sage2 TOPS | other P·V TOPS | FA2 TOPS "
      "| cuDNN TOPS | sage2/FA2 | sage2/cuDNN | sage2/cuDNN in turn |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::string back_to_back;  // the second table's rows
  for (const Shape& s : kShapes) {
    const bool long_row = s.len > kShapes[0].len;
    if ((quick && long_row) || (long_only && !long_row)) continue;
    if (!rows.empty() && std::find(rows.begin(), rows.end(), s.name) == rows.end()) continue;
    const auto [q, k, v] = random_qkv(s);
    sage2::Options options;
    options.causal = s.causal;
    options.p_exponent = p_exponent;
    sage2::Options other = sage2::resolve(options, devices[0].compute_capability);
    other.pv = other.pv == sage2::PvType::fp8 ? sage2::PvType::fp16 : sage2::PvType::fp8;
    other.granularity.reset();  // the other mode's own default
    sagevid::AttentionParams params;
    params.causal = s.causal;
    const sagevid::Attention flash(sagevid::AttentionConfig{AttentionBackend::flash, std::nullopt, {}});
    const sagevid::Attention cudnn(sagevid::AttentionConfig{AttentionBackend::cudnn, std::nullopt, {}});
    // The calls each table times.
    const auto prep = [&] { sage2::prepare(q, k, v, options); };
    const auto sage = [&] { sage2::attention(q, k, v, options); };
    const auto sage_other = [&] { sage2::attention(q, k, v, other); };
    const auto flash_call = [&] { flash(q, k, v, params); };
    const auto cudnn_call = [&] { cudnn(q, k, v, params); };

    using sagevid::tools::median_ms;
    const double prep_ms = median_ms(prep), sage_ms = median_ms(sage), other_ms = median_ms(sage_other);
    const double flash_ms = median_ms(flash_call), cudnn_ms = median_ms(cudnn_call);
    const double in_turn = sagevid::tools::median_ratio(sage, cudnn_call);
    std::printf(
        "| %s | %lld | %lld | %lld | %lld | %s | %.3f | %.3f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f |\n",
        s.name, (long long)s.batch, (long long)s.heads, (long long)s.len, (long long)s.head_dim,
        s.causal ? "yes" : "no", prep_ms, sage_ms, tops(s, sage_ms), tops(s, other_ms), tops(s, flash_ms),
        tops(s, cudnn_ms), flash_ms / sage_ms, cudnn_ms / sage_ms, in_turn);
    std::fflush(stdout);

    const auto back_to_back_ms = [](const std::function<void()>& fn) {
      return sagevid::tools::back_to_back_ms(fn, kBackToBackCalls, kBackToBackRepeats);
    };
    const double queued_prep_ms = back_to_back_ms(prep), queued_sage_ms = back_to_back_ms(sage);
    const double queued_cudnn_ms = back_to_back_ms(cudnn_call);
    const double sage_host_us = sagevid::tools::host_us(sage), cudnn_host_us = sagevid::tools::host_us(cudnn_call);
    char row[256];
    std::snprintf(row, sizeof row, "| %s | %.3f | %.3f | %.0f | %.0f | %.2f | %.0f | %.0f |\n", s.name, queued_prep_ms,
                  queued_sage_ms, tops(s, queued_sage_ms), tops(s, queued_cudnn_ms), queued_cudnn_ms / queued_sage_ms,
                  sage_host_us, cudnn_host_us);
    back_to_back += row;
  }
  std::printf(
      "\nThe same calls back to back, %d between two events (the host's time per call hidden under the GPU's), "
      "median of %d; host µs: the host's time in one call, the device idle before it:\n\n"
      "| shape | sage2 prep ms | sage2 ms | sage2 TOPS | cuDNN TOPS | sage2/cuDNN | sage2 host µs | cuDNN host µs |\n"
      "|---|---|---|---|---|---|---|---|\n%s",
      kBackToBackCalls, kBackToBackRepeats, back_to_back.c_str());
  if (rows.empty()) bench_modes(kShapes[0]);
  return 0;
}
