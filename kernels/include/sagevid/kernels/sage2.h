#pragma once
// SageAttention2 host API: attention with INT8/INT4 Q·Kᵀ (smoothed; per-thread, per-token, per-warp or
// per-block scales) and FP8/FP16 P·V, on the current CUDA stream. Inputs fp16/bf16, [B, H, N, D] or
// [B, N, H, D] (last dim contiguous), head dim 64 or 128, grouped-query (H_q a multiple of H_kv), causal or
// not, optional additive bias and LSE.
#include "sagevid/kernels/sage2_layout.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sagevid::kernels::sage2 {

enum class QkType { int8, int4 };
enum class PvType { fp8, fp16 };
enum class Layout { bhnd, bnhd };  // [B, H, N, D] ("HND") or [B, N, H, D] ("NHD")
// How P is made from the scores: exp2 then rounding (`exact`), or, for a quarter, half or all of the scores, P's bits
// read off the exponent with a mantissa linear in its fraction (2^f ≈ 1 + f), which spares the exponential unit at
// some accuracy (docs/accuracy.md). The linear bits apply where that unit weighs on the kernel: the wgmma kernel
// without the LSE, on key tiles every row sees whole; with FP8 P·V as E4M3 bytes (quarter_linear and half_linear
// at head dim 64 only), with FP16 P·V per thread as fp16 bits (`linear`, head dim 64), which stays more accurate
// than FP8 P·V with exact P. Other calls: exact.
enum class PExponent { exact, quarter_linear, half_linear, linear };
inline constexpr std::array<std::pair<std::string_view, PExponent>, 4> kPExponentNames = {
    {{"exact", PExponent::exact},
     {"quarter_linear", PExponent::quarter_linear},
     {"half_linear", PExponent::half_linear},
     {"linear", PExponent::linear}}};

// Unset options take the defaults of the device's architecture (resolve(); the table is in sage2_options.cpp).
struct Options {
  std::optional<KernelFamily> kernel;  // default: wgmma on sm_90 where the build has it and the call allows
                                       // (INT8, no Q smoothing; a call with a bias runs mma.sync), else mma.sync
  std::optional<QkType> qk;      // default: INT8 on sm_90 (INT4 is emulated there), INT4 on sm_80/86/89
  std::optional<PvType> pv;      // default: per architecture and kernel family
  std::optional<Granularity> granularity;  // default: per-token for INT8 + FP16 P·V (the high-accuracy mode,
                                          // limited by the Q·Kᵀ error), per-thread otherwise
  bool smooth_k = true;
  std::optional<bool> smooth_q;  // default: on for INT4, off for INT8
  bool smooth_v = false;
  int pv_flush_tiles = 1;        // FP8 P·V: key tiles accumulated in the MMA before adding into FP32
  Layout layout = Layout::bhnd;
  bool causal = false;           // top-left aligned: query i sees keys 0..i
  std::optional<double> scale;   // default 1/sqrt(D)
  // The LSE keeps the wgmma kernel's row sums in fp32; without it, with FP8 P·V (at head dim 128 not per token),
  // they come from the tensor cores (faster, the output as accurate, their sums a little short).
  bool return_lse = false;  // natural-log LSE of the scaled, biased scores, [B, H_q, N_q] fp32
  PExponent p_exponent = PExponent::exact;
};

// The options with every default resolved for a device of this compute capability (major*10+minor). A call
// with a bias passes has_bias, which keeps the default kernel family on mma.sync.
Options resolve(const Options& options, int compute_capability, bool has_bias = false);

// Whether this build holds the family's kernels (the wgmma ones only in builds for sm_90a).
bool kernel_family_built(KernelFamily family);

struct Result {
  at::Tensor out;  // same shape, dtype and layout as q
  at::Tensor lse;  // defined when options.return_lse
};

// What the attention kernel reads, as the preprocessing kernels write it (layouts in sage2_layout.h).
struct Quantized {
  KernelFamily kernel;            // the family these were prepared for (its V layout)
  at::Tensor q_values, q_scales;  // int8 [B, H_q, Nq_pad, D] (INT4: [.., D/2], low nibble = even channel)
  at::Tensor k_values, k_scales;  // int8 [B, H_kv, Nk_pad, D or D/2]
  at::Tensor k_mean, q_mean, v_mean;  // fp32, as in sage2_reference.h; undefined when not smoothing
  at::Tensor q_mean_values, q_mean_scales;  // Q smoothing: q_mean in INT8, one scale per block (ΔS in the kernel)
  at::Tensor k_int8_values, k_int8_scales;  // Q smoothing with INT4 Q·Kᵀ: smoothed K in INT8 too, for ΔS
  at::Tensor v_values;            // FP8: uint8 E4M3 Vᵀ [B, H_kv, D, Nk_pad], keys permuted; FP16:
                                  // [B, H_kv, Nk_pad, D], or Vᵀ [B, H_kv, D, Nk_pad] for the wgmma family
  at::Tensor v_scales;            // FP8: [B, H_kv, D]
};

// Device bytes a call without bias holds at its peak beyond q, k, v and its output (the preprocessing's
// buffers), for resolved options and H_q = H_kv = heads: what a caller budgets for.
int64_t workspace_bytes(const Options& resolved, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len,
                        int64_t head_dim);

// The preprocessing alone (options resolved here, as for a call without bias), for tests and for measuring it.
Quantized prepare(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options);

// bias: additive, broadcastable to [B, H_q, N_q, N_kv] as [N_q, N_kv], [H_q|1, N_q, N_kv] or
// [B|1, H_q|1, N_q, N_kv]; fp32, fp16 or bf16. out: optional preallocated output shaped and typed like q.
Result attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options,
                 const std::optional<at::Tensor>& bias = std::nullopt,
                 const std::optional<at::Tensor>& out = std::nullopt);

// Why the kernels cannot run this call (device, dtype, head dim, layout, options the chosen kernel family
// does not take), or nullopt.
std::optional<std::string> unsupported_reason(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                              const Options& options, bool has_bias = false);
// The part of unsupported_reason that needs no tensors: why the kernels cannot run on `device` in `dtype` at
// all (not CUDA, not fp16/bf16, older than sm_80), or nullopt. A cuda device without an index means device 0.
std::optional<std::string> device_unsupported_reason(const at::Device& device, at::ScalarType dtype);

}  // namespace sagevid::kernels::sage2
