// Defaults of the SageAttention2 options per architecture (one table), and validation of the rest.
#include "sagevid/kernels/sage2.h"

#include "sage2_kernels.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace sagevid::kernels::sage2 {
namespace {

// What each architecture runs by default, per kernel family, most preferred family first. The
// measurements behind each choice are in docs/PERFORMANCE.md.
struct ArchDefaults {
  int min_cc, max_cc;
  KernelFamily kernel;
  QkType qk;
  PvType pv;
};
constexpr ArchDefaults kArchDefaults[] = {
    // Hopper: wgmma + TMA; FP8 P·V is the faster mode there (INT4 MMA is emulated from Hopper on).
    {90, 90, KernelFamily::wgmma, QkType::int8, PvType::fp8},
    // Hopper and newer on mma.sync (bias, Q smoothing, builds without sm_90a): FP16 P·V outruns FP8 there.
    {90, 1000, KernelFamily::mma_sync, QkType::int8, PvType::fp16},
    // Ada: FP8 MMA runs at twice FP16's rate.
    {89, 89, KernelFamily::mma_sync, QkType::int4, PvType::fp8},
    // Ampere: no FP8 MMA.
    {80, 88, KernelFamily::mma_sync, QkType::int4, PvType::fp16},
};

std::string capability_name(int cc) { return std::to_string(cc / 10) + "." + std::to_string(cc % 10); }

// Why `family` cannot take these options on this architecture, or an empty string.
std::string family_refusal(KernelFamily family, const Options& o, int cc, bool has_bias) {
  if (!kernel_family_built(family)) return "this build has no sm_90a (wgmma) kernels";
  if (family == KernelFamily::mma_sync) return "";
  if (cc != 90) return "the wgmma kernels need compute capability 9.0, this device is " + capability_name(cc);
  if (o.qk == QkType::int4) return "the wgmma kernels take INT8 Q·Kᵀ only";
  if (o.smooth_q == true) return "the wgmma kernels take no Q smoothing";
  if (has_bias) return "the wgmma kernels take no bias";
  if (o.pv_flush_tiles != 1) return "the wgmma kernels add P·V into FP32 every tile (pv_flush_tiles 1)";
  // The row max is taken before the (positive) scale is applied.
  if (o.scale && !(*o.scale > 0)) return "the wgmma kernels need a positive scale";
  return "";
}

const ArchDefaults& defaults_for(int cc, KernelFamily family) {
  for (const ArchDefaults& row : kArchDefaults)
    if (cc >= row.min_cc && cc <= row.max_cc && row.kernel == family) return row;
  throw std::invalid_argument("sage2: no kernels for compute capability " + capability_name(cc));
}

KernelFamily default_family(const Options& o, int cc, bool has_bias) {
  for (const ArchDefaults& row : kArchDefaults)
    if (cc >= row.min_cc && cc <= row.max_cc && family_refusal(row.kernel, o, cc, has_bias).empty()) return row.kernel;
  throw std::invalid_argument("sage2: no kernels for compute capability " + capability_name(cc));
}

}  // namespace

bool kernel_family_built(KernelFamily family) { return detail::built(family); }

Options resolve(const Options& options, int compute_capability, bool has_bias) {
  const int cc = compute_capability;
  Options resolved = options;
  if (!resolved.kernel) resolved.kernel = default_family(options, cc, has_bias);
  if (const std::string refusal = family_refusal(*resolved.kernel, options, cc, has_bias); !refusal.empty())
    throw std::invalid_argument("sage2: " + refusal);
  const ArchDefaults& defaults = defaults_for(cc, *resolved.kernel);
  if (!resolved.qk) resolved.qk = defaults.qk;
  if (!resolved.pv) resolved.pv = defaults.pv;
  if (*resolved.pv == PvType::fp8 && cc < 89) {
    throw std::invalid_argument("sage2: FP8 P·V needs compute capability 8.9 or newer, this device is " +
                                capability_name(cc) + " (use PvType::fp16)");
  }
  // FP16 P·V adds little error of its own, so with INT8 what is left is the Q·Kᵀ quantization: per-token
  // scales cut it by about a sixth (INT4's error is its 15 levels, not the scale).
  if (!resolved.granularity) {
    const bool high_accuracy = *resolved.qk == QkType::int8 && *resolved.pv == PvType::fp16;
    resolved.granularity = high_accuracy ? Granularity::per_token : Granularity::per_thread;
  }
  // INT4 loses too much without Q smoothing; for INT8 it costs time for little accuracy.
  if (!resolved.smooth_q) resolved.smooth_q = *resolved.qk == QkType::int4;
  if (resolved.pv_flush_tiles < 1) {
    throw std::invalid_argument("sage2: pv_flush_tiles must be at least 1, got " +
                                std::to_string(resolved.pv_flush_tiles));
  }
  if (resolved.scale && !std::isfinite(*resolved.scale)) {
    throw std::invalid_argument("sage2: scale must be finite");
  }
  return resolved;
}

}  // namespace sagevid::kernels::sage2
