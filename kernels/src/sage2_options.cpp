// Defaults of the SageAttention2 options per compute capability, and validation of the rest.
#include "sagevid/kernels/sage2.h"

#include <cmath>
#include <stdexcept>

namespace sagevid::kernels::sage2 {

Options resolve(const Options& options, int compute_capability) {
  Options resolved = options;
  // INT4 mma.sync is emulated on Hopper (~20x slower than INT8), so sm_90+ defaults to INT8.
  if (!resolved.qk) resolved.qk = compute_capability >= 90 ? QkType::int8 : QkType::int4;
  // FP8 MMA exists from sm_89 (Ada) on and is twice FP16's rate there. On Hopper our (mma.sync) kernel runs
  // FP16 P·V faster than FP8 (measured 287 vs 244 TOPS per-thread at the CogVideoX-2B shape: the FP8 variant
  // spills registers) and about 4x more accurately, so only Ada defaults to FP8; sm_80/86 have no FP8 MMA.
  if (!resolved.pv) resolved.pv = compute_capability == 89 ? PvType::fp8 : PvType::fp16;
  if (*resolved.pv == PvType::fp8 && compute_capability < 89) {
    throw std::invalid_argument("sage2: FP8 P·V needs compute capability 8.9 or newer, this device is " +
                                std::to_string(compute_capability / 10) + "." +
                                std::to_string(compute_capability % 10) + " (use PvType::fp16)");
  }
  // FP16 P·V adds little error of its own, so with INT8 what is left is the Q·Kᵀ quantization: per-token
  // scales cut it by about a sixth for ~3% of the kernel's time (INT4's error is its 15 levels, not the scale).
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
