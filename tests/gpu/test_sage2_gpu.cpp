// SageAttention2 kernels on the GPU: preprocessing bit-exact against the reference, attention tightly
// against the simulated-quantization reference and loosely against fp32 attention, over the shapes and
// options the kernels promise. Outputs are poisoned before the kernel writes them.
#include "catch.h"
#include "poisoned.h"
#include "test_random.h"

#include "sagevid/kernels/cuda_check.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/kernels/sage2.h"
#include "sagevid/kernels/sage2_reference.h"
#include "sagevid/models/attention.h"

#include <ATen/ops/allclose.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace sage2 = sagevid::kernels::sage2;

namespace {

struct Case {
  int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
};

struct Inputs {
  at::Tensor q, k, v;  // in the case's layout
};

at::Tensor make(sagevid::test::Random& rng, int64_t b, int64_t h, int64_t n, int64_t d, sage2::Layout layout,
                at::ScalarType dtype) {
  const at::Tensor x = rng.normal({b, h, n, d}, at::TensorOptions().device(at::kCUDA).dtype(dtype));
  return layout == sage2::Layout::bhnd ? x : x.transpose(1, 2).contiguous();
}

Inputs make_inputs(sagevid::test::Random& rng, const Case& c, sage2::Layout layout, at::ScalarType dtype) {
  return {make(rng, c.batch, c.q_heads, c.q_len, c.head_dim, layout, dtype),
          make(rng, c.batch, c.kv_heads, c.kv_len, c.head_dim, layout, dtype),
          make(rng, c.batch, c.kv_heads, c.kv_len, c.head_dim, layout, dtype)};
}

struct Errors {
  double cosine, relative_l1;
};

Errors compare(const at::Tensor& out, const at::Tensor& ref) {
  const at::Tensor a = out.to(at::kDouble).flatten(), b = ref.to(at::kDouble).flatten();
  return {(a.dot(b) / (a.norm() * b.norm())).item<double>(), ((a - b).abs().sum() / b.abs().sum()).item<double>()};
}

// The kernel's output against the simulated one, each element's difference less its slack: what the P̃ values that
// may round either way can move it by (reference::Simulated). Without it a causal row over its first few keys, whose
// output is several times longer than a row over hundreds, would outweigh every other row with one such value.
Errors compare_simulated(const at::Tensor& out, const sage2::reference::Simulated& want) {
  const at::Tensor ref = want.out.to(at::kDouble), difference = out.to(at::kDouble) - ref;
  const at::Tensor beyond_slack = (difference.abs() - want.slack.to(at::kDouble)).clamp_min(0);
  return compare(ref + difference.sign() * beyond_slack, ref);
}

at::Tensor full_precision(const Inputs& in, sage2::Layout layout, bool causal, std::optional<double> scale = {},
                          const std::optional<at::Tensor>& bias = std::nullopt) {
  const auto bhnd = [&](const at::Tensor& x) { return sage2::reference::to_bhnd_float(x, layout); };
  sagevid::AttentionParams params;
  params.causal = causal;
  params.scale = scale;
  if (bias) params.bias = bias->to(at::kFloat);
  const at::Tensor out = sagevid::Attention()(bhnd(in.q), bhnd(in.k), bhnd(in.v), params);
  return layout == sage2::Layout::bhnd ? out : out.transpose(1, 2);
}

// Unpacks INT4 pairs (low nibble = even channel) into one signed value per byte.
at::Tensor unpack_int4(const at::Tensor& packed) {
  const at::Tensor bytes = packed.to(at::kInt);
  const at::Tensor lo = (bytes.bitwise_and(15) ^ 8) - 8, hi = ((bytes.bitwise_right_shift(4)).bitwise_and(15) ^ 8) - 8;
  return at::stack({lo, hi}, -1).flatten(-2).to(at::kChar);
}

// The kernel's Vᵀ FP8 bytes back to [B, H, N_pad, D] floats in key order.
at::Tensor unpermute_v(const at::Tensor& v_t) {
  const int64_t padded = v_t.size(3);
  std::vector<int64_t> order(static_cast<size_t>(padded));
  for (int64_t key = 0; key < padded; ++key)
    order[size_t(key)] = (key & ~int64_t(31)) | sage2::kv_permuted_position(int(key & 31));
  const at::Tensor index = at::tensor(at::ArrayRef<int64_t>(order), at::kLong).to(v_t.device());
  return v_t.view(at::kFloat8_e4m3fn).to(at::kFloat).index_select(3, index).transpose(2, 3);
}

// Whether this build and device run the wgmma family (sm_90a code runs on compute capability 9.0 only).
bool wgmma_here() {
  return sage2::kernel_family_built(sage2::KernelFamily::wgmma) && sagevid::kernels::compute_capability(0) == 90;
}

// Whether a call takes its rows' softmax sums from the tensor cores (sage2.h, return_lse): the wgmma kernel with
// FP8 P·V, without the LSE (at head dim 128 not with per-token k-scales). The FP8 accumulator adds them at less
// than fp32 precision, which the reference does not model (a tile's sum can come out a few percent short; the
// output, normalized by the sum of the same products, much less).
bool tensor_core_sums(const sage2::Options& resolved, int64_t head_dim) {
  return wgmma_here() && resolved.kernel == sage2::KernelFamily::wgmma && resolved.pv == sage2::PvType::fp8 &&
         !resolved.return_lse && (head_dim == 64 || resolved.granularity != sage2::Granularity::per_token);
}

// Bounds on the output's distance from the simulated reference: FP8 P·V's MMA accumulates at less than fp32
// precision, tensor-core row sums add to that (an earlier version of them measured 5.2e-3).
double reference_l1_bound(const sage2::Options& resolved, int64_t head_dim) {
  if (tensor_core_sums(resolved, head_dim)) return 8e-3;
  return resolved.pv == sage2::PvType::fp8 ? 4e-3 : 2e-3;
}
double reference_cosine_bound(const sage2::Options& resolved, int64_t head_dim) {
  return tensor_core_sums(resolved, head_dim) ? 0.9999 : 0.99999;
}

// A call with P from linear bits (options.p_exponent), into a poisoned output that it must fill with finite values.
at::Tensor linear_p_attention(const Inputs& in, const sage2::Options& options) {
  const at::Tensor out = sagevid::test::poisoned_like(in.q);
  sage2::attention(in.q, in.k, in.v, options, std::nullopt, out);
  REQUIRE(at::isfinite(out).all().item<bool>());
  return out;
}

// With the LSE the sums are fp32, which linear P bits cannot feed: the same call makes P exactly, to the bit.
void check_lse_call_takes_exact_p(const Inputs& in, sage2::Options options) {
  options.return_lse = true;
  const sage2::Result with_lse = sage2::attention(in.q, in.k, in.v, options);
  options.p_exponent = sage2::PExponent::exact;
  CHECK(at::equal(with_lse.out, sage2::attention(in.q, in.k, in.v, options).out));
}

}  // namespace

TEST_CASE("sage2 preprocessing matches the reference bit for bit", "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto qk = GENERATE(sage2::QkType::int8, sage2::QkType::int4);
  const auto granularity = GENERATE(sage2::Granularity::per_thread, sage2::Granularity::per_warp,
                                    sage2::Granularity::per_block, sage2::Granularity::per_token);
  const auto layout = GENERATE(sage2::Layout::bhnd, sage2::Layout::bnhd);
  // None (V's sampled scale the only statistic); K alone, as by default (its mean beside V's sampled scale); Q, K
  // and V (smoothed FP8 V's absmax pass between the statistics and the quantization).
  const int smoothing = GENERATE(0, 1, 2);
  const bool smooth_k = smoothing > 0, smooth_qv = smoothing == 2;
  const int kv_len = GENERATE(201, 2100);  // one chunk of token statistics, and three folded
  // A value of V far past its channel's sampled keys (sage2_layout.h) at a key they skip, in two heads: those heads
  // alone take the exact absmax (unsmoothed FP8 V; smoothed V's is exact anyway).
  const bool v_outlier = GENERATE(false, true);
  const Case c{2, 4, 2, 129, kv_len, qk == sage2::QkType::int4 ? 64 : 128};
  CAPTURE(int(qk), int(granularity), int(layout), smoothing, v_outlier);
  Inputs in = make_inputs(rng, c, layout, at::kBFloat16);
  in.k = in.k + rng.normal({c.head_dim}, in.k.options()) * 20;  // channel offsets that smoothing removes
  if (v_outlier) {
    sage2::reference::bhnd_view(in.v, layout)[1][0][kv_len - 2][7].fill_(-300.0f);
    sage2::reference::bhnd_view(in.v, layout)[0][1][3][c.head_dim - 1].fill_(250.0f);
  }
  sage2::Options options;
  options.qk = qk;
  options.pv = sage2::PvType::fp8;
  options.granularity = granularity;
  options.layout = layout;
  options.smooth_k = smooth_k;
  options.smooth_q = smooth_qv;
  options.smooth_v = smooth_qv;
  const sage2::Options resolved = sage2::resolve(options, 90);
  const sage2::Quantized got = sage2::prepare(in.q, in.k, in.v, options);
  // The means come from a reduction in another order than torch's: equal to rounding, then shared so that
  // everything quantized after them is compared bit for bit.
  const sage2::reference::Preprocessed want =
      sage2::reference::preprocess(in.q, in.k, in.v, resolved, {got.k_mean, got.v_mean});
  SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());

  const auto values = [&](const at::Tensor& t) { return qk == sage2::QkType::int4 ? unpack_int4(t) : t; };
  CHECK(values(got.q_values).equal(want.q.values.to(at::kChar)));
  CHECK(got.q_scales.equal(want.q.scales));
  CHECK(values(got.k_values).equal(want.k.values.to(at::kChar)));
  CHECK(got.k_scales.equal(want.k.scales));
  CHECK(got.v_scales.equal(want.v.scales));
  const at::Tensor v = unpermute_v(got.v_values).narrow(2, 0, c.kv_len);
  CHECK(v.equal(want.v.values));
  const auto bhnd = [&](const at::Tensor& x) { return sage2::reference::bhnd_view(x, layout); };
  if (smooth_k) CHECK(at::allclose(got.k_mean, sage2::reference::key_mean(bhnd(in.k)), 1e-5, 1e-5));
  if (smooth_qv) {
    CHECK(at::allclose(got.v_mean, sage2::reference::token_mean(bhnd(in.v)), 1e-5, 1e-5));
    CHECK(got.q_mean.equal(want.q_mean));
    // What the kernel computes ΔS from: the INT8 block means, and K' in INT8 where Q·Kᵀ is INT4.
    CHECK(got.q_mean_values.equal(want.q_mean_int8.values));
    CHECK(got.q_mean_scales.equal(want.q_mean_int8.scales));
    if (qk == sage2::QkType::int4) {
      CHECK(got.k_int8_values.equal(want.k_int8.values));
      CHECK(got.k_int8_scales.equal(want.k_int8.scales));
    } else {
      CHECK_FALSE(got.k_int8_values.defined());
    }
  }
}

TEST_CASE("sage2 FP16 V is laid out for the kernel family: V for mma.sync, Vᵀ for wgmma", "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto kernel = GENERATE(sage2::KernelFamily::mma_sync, sage2::KernelFamily::wgmma);
  const bool smooth_v = GENERATE(false, true);
  if (kernel == sage2::KernelFamily::wgmma && !wgmma_here()) return;
  CAPTURE(int(kernel), smooth_v);
  const Case c{2, 4, 2, 70, 201, 64};
  const Inputs in = make_inputs(rng, c, sage2::Layout::bnhd, at::kHalf);
  sage2::Options options;
  options.kernel = kernel;
  options.qk = sage2::QkType::int8;
  options.pv = sage2::PvType::fp16;
  options.layout = sage2::Layout::bnhd;
  options.smooth_v = smooth_v;
  const sage2::Quantized got = sage2::prepare(in.q, in.k, in.v, options);
  const sage2::reference::Preprocessed want =
      sage2::reference::preprocess(in.q, in.k, in.v, sage2::resolve(options, 90), {got.k_mean, got.v_mean});
  CHECK(got.kernel == kernel);
  const at::Tensor v = kernel == sage2::KernelFamily::wgmma ? got.v_values.transpose(2, 3) : got.v_values;
  REQUIRE(v.size(2) == sage2::round_up(c.kv_len, sage2::kKBlock));
  CHECK(v.narrow(2, 0, c.kv_len).to(at::kFloat).equal(want.v.values));
  CHECK(v.narrow(2, c.kv_len, v.size(2) - c.kv_len).eq(0).all().item<bool>());  // padding keys are 0
}

TEST_CASE("sage2 preprocessing reads rows its 16-byte loads cannot reach as it reads aligned ones", "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t head_dim = GENERATE(64, 128);
  const bool smooth = GENERATE(false, true);
  const auto pv = GENERATE(sage2::PvType::fp8, sage2::PvType::fp16);
  CAPTURE(head_dim, smooth, int(pv));
  // Rows head_dim + 1 elements apart: no 8-channel chunk starts on a 16-byte boundary, so the statistics and the
  // quantization kernels take their element-wise loads.
  const Case c{2, 4, 2, 129, 2100, head_dim};
  const Inputs aligned = make_inputs(rng, c, sage2::Layout::bhnd, at::kBFloat16);
  const auto odd_rows = [](const at::Tensor& x) {
    at::Tensor wide = at::zeros({x.size(0), x.size(1), x.size(2), x.size(3) + 1}, x.options());
    wide.narrow(3, 0, x.size(3)).copy_(x);
    return wide.narrow(3, 0, x.size(3));
  };
  const Inputs unaligned{odd_rows(aligned.q), odd_rows(aligned.k), odd_rows(aligned.v)};
  REQUIRE(unaligned.q.stride(2) == head_dim + 1);
  sage2::Options options;
  options.pv = pv;
  options.smooth_k = smooth;
  options.smooth_v = smooth;
  const sage2::Quantized want = sage2::prepare(aligned.q, aligned.k, aligned.v, options);
  const sage2::Quantized got = sage2::prepare(unaligned.q, unaligned.k, unaligned.v, options);
  const auto same = [](const at::Tensor& a, const at::Tensor& b) {
    return a.defined() == b.defined() && (!a.defined() || at::equal(a, b));
  };
  CHECK(same(got.q_values, want.q_values));
  CHECK(same(got.q_scales, want.q_scales));
  CHECK(same(got.k_values, want.k_values));
  CHECK(same(got.k_scales, want.k_scales));
  CHECK(same(got.k_mean, want.k_mean));  // the same loads' values in the same order: the same bits
  CHECK(same(got.v_mean, want.v_mean));
  CHECK(same(got.v_scales, want.v_scales));
  CHECK(same(got.v_values.view(at::kByte), want.v_values.view(at::kByte)));
}

TEST_CASE("sage2 attention matches the simulated reference and fp32 attention", "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t sms = sagevid::kernels::multiprocessor_count(0);
  const Case c =
      GENERATE_COPY(Case{1, 2, 2, 1, 1, 64}, Case{1, 2, 2, 17, 17, 128}, Case{2, 3, 3, 127, 127, 64},
                    Case{1, 2, 2, 128, 128, 128}, Case{1, 4, 2, 129, 129, 64}, Case{1, 2, 1, 1000, 1000, 128},
                    Case{1, 2, 2, 4096, 4096, 64}, Case{1, 2, 2, 300, 1000, 64}, Case{1, 2, 2, 1000, 300, 128},
                    Case{4, 32, 16, 600, 600, 64},   // more CTAs than fit the device at once
                    Case{4, 32, 16, 600, 600, 128},  // more work tiles than persistent CTAs, each runs several
                    // a round of whole work tiles, then a last round split into parts of a tile's warpgroups
                    // (sm90/work_plan.h) on 114 to 132 multiprocessors; fewer tiles than those split them all
                    Case{1, 136, 136, 256, 300, 64}, Case{1, 136, 136, 256, 300, 128},
                    // each head's last work tile ragged (one query block of four, two of four, one of three)
                    // with the whole tiles filling one round of the multiprocessors (as many heads as those):
                    // the ragged-tail kernel beside the main kernel, its idle warpgroups sharing the blocks' key
                    // tiles (more sharers than key tiles, then many each); other head counts keep their ragged
                    // tiles in the main kernel
                    Case{1, sms, sms, 320, 300, 64}, Case{1, sms, sms, 320, 2000, 64}, Case{1, sms, sms, 384, 700, 64},
                    Case{1, sms, sms, 256, 2000, 128}, Case{1, 30, 30, 1300, 2000, 64},
                    // causal calls take the persistent CTAs from 16k keys on at head dim 64, at any length at 128
                    Case{1, 2, 1, 1000, 16384, 64}, Case{1, 2, 2, 700, 16384, 128});
  const auto kernel = GENERATE(sage2::KernelFamily::mma_sync, sage2::KernelFamily::wgmma);
  const auto qk = GENERATE(sage2::QkType::int8, sage2::QkType::int4);
  const auto pv = GENERATE(sage2::PvType::fp8, sage2::PvType::fp16);
  const bool causal = GENERATE(false, true);
  const bool return_lse = GENERATE(true, false);
  if (kernel == sage2::KernelFamily::wgmma && (qk == sage2::QkType::int4 || !wgmma_here())) return;
  // Without the LSE only the wgmma kernel's FP8 mode computes differently (tensor_core_sums).
  if (!return_lse && (kernel != sage2::KernelFamily::wgmma || pv != sage2::PvType::fp8)) return;
  const auto layout = c.q_len == 129 ? sage2::Layout::bnhd : sage2::Layout::bhnd;
  const auto dtype = c.head_dim == 64 ? at::kBFloat16 : at::kHalf;
  CAPTURE(c.batch, c.q_heads, c.kv_heads, c.q_len, c.kv_len, c.head_dim, int(kernel), int(qk), int(pv), causal,
          int(layout), return_lse);
  const Inputs in = make_inputs(rng, c, layout, dtype);
  sage2::Options options;
  options.kernel = kernel;
  options.qk = qk;
  options.pv = pv;
  options.causal = causal;
  options.layout = layout;
  options.return_lse = return_lse;

  const at::Tensor out = sagevid::test::poisoned_like(in.q);
  const sage2::Result got = sage2::attention(in.q, in.k, in.v, options, std::nullopt, out);
  const sage2::Options resolved = sage2::resolve(options, 90);
  // The token means from the call's own preprocessing (a reduction in another order than torch's: equal to rounding),
  // so that both sides quantize the same values and only the kernel's arithmetic differs.
  const sage2::Quantized prepared = sage2::prepare(in.q, in.k, in.v, options);
  const sage2::reference::Simulated want =
      sage2::reference::attention(in.q, in.k, in.v, resolved, std::nullopt, {prepared.k_mean, prepared.v_mean});
  REQUIRE(got.out.data_ptr() == out.data_ptr());
  REQUIRE(at::isfinite(got.out).all().item<bool>());

  // Without the slack the cosine fell to 0.9999866 on one P̃ value of a causal row over its first 3 keys (wgmma FP8
  // causal with the LSE, 1000 queries over 300 keys, SAGEVID_TEST_SEED=11996910929479847428), as the reference does
  // with its exponents moved by 1e-5.
  const Errors vs_reference = compare_simulated(got.out, want), without_slack = compare(got.out, want.out);
  CAPTURE(vs_reference.cosine, vs_reference.relative_l1, without_slack.cosine);  // (`-s` prints them on a pass too)
  CHECK(vs_reference.cosine > reference_cosine_bound(resolved, c.head_dim));
  CHECK(vs_reference.relative_l1 < reference_l1_bound(resolved, c.head_dim));
  // When each side smoothed K with its own mean (equal to rounding), a few quantized values differed, and a row whose
  // scores one of them dominated (a causal row's first keys) moved by its step: the worst row of the 76,800 in the
  // 4×32×600 case measured 5.7e-3 and 6.6e-3 with INT4 (mma.sync INT4 + FP8, SAGEVID_TEST_SEED=1276160246583773538),
  // 3.0e-3 with INT8 (wgmma FP8 causal, SAGEVID_TEST_SEED=17685490442853882030). The bounds stay as they were set then.
  if (return_lse) {
    const at::Tensor lse_error = (got.lse - want.lse).abs();
    CHECK(lse_error.max().item<double>() < 1e-2);
    if (qk == sage2::QkType::int8) CHECK((lse_error > 2e-3).to(at::kFloat).mean().item<double>() < 1e-3);
  }

  const at::Tensor exact = full_precision(in, layout, causal);
  const Errors vs_exact = compare(got.out, exact);
  CAPTURE(vs_exact.cosine, vs_exact.relative_l1);
  // INT4 (±7) on Gaussian Q, K costs about 1-2% in cosine (measured 0.981-0.990 on the H100); INT8 far less.
  CHECK(vs_exact.cosine > (qk == sage2::QkType::int4 ? 0.975 : 0.999));
  if (tensor_core_sums(resolved, c.head_dim)) {
    // As accurate as the same call with fp32 row sums.
    options.return_lse = true;
    const double fp32_sums = compare(sage2::attention(in.q, in.k, in.v, options).out, exact).relative_l1;
    CAPTURE(fp32_sums);
    CHECK(vs_exact.relative_l1 < 1.1 * fp32_sums + 1e-4);
  }
}

TEST_CASE("sage2's linear P bytes cost a bounded share of accuracy, and only where they apply", "[gpu][sage2]") {
  if (!wgmma_here()) return;
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // Whole key tiles (where the linear bytes apply) and edge tiles; causal rows see whole tiles below the diagonal.
  const Case c = GENERATE(Case{1, 4, 4, 1000, 1000, 64}, Case{2, 4, 2, 300, 2048, 64}, Case{1, 2, 2, 4096, 4096, 64},
                          Case{1, 4, 4, 1000, 1000, 128});
  const bool causal = GENERATE(false, true);
  const auto p_exponent =
      GENERATE(sage2::PExponent::quarter_linear, sage2::PExponent::half_linear, sage2::PExponent::linear);
  CAPTURE(c.batch, c.q_heads, c.kv_heads, c.q_len, c.kv_len, c.head_dim, causal, int(p_exponent));
  const Inputs in = make_inputs(rng, c, sage2::Layout::bhnd, at::kBFloat16);
  sage2::Options options;
  options.kernel = sage2::KernelFamily::wgmma;
  options.causal = causal;
  const at::Tensor exact_p = sage2::attention(in.q, in.k, in.v, options).out;
  options.p_exponent = p_exponent;
  const at::Tensor out = linear_p_attention(in, options);
  if (c.head_dim != 64 && p_exponent != sage2::PExponent::linear) {  // exact everywhere else, to the bit
    CHECK(at::equal(out, exact_p));
    return;
  }
  CHECK_FALSE(at::equal(out, exact_p));
  const at::Tensor exact = full_precision(in, sage2::Layout::bhnd, causal);
  const Errors linear = compare(out, exact), reference = compare(exact_p, exact);
  CAPTURE(linear.cosine, linear.relative_l1, reference.cosine, reference.relative_l1);
  CHECK(linear.cosine > 0.999);
  // The byte's linear mantissa (within 6%) adds to E4M3's rounding: measured 1.04–1.07× (half) and 1.09–1.14× (all)
  // on random data (docs/accuracy.md; the harness's cases in docs/PERFORMANCE.md); a quarter, about half of half's.
  const double bound = p_exponent == sage2::PExponent::linear        ? 1.25
                       : p_exponent == sage2::PExponent::half_linear ? 1.15
                                                                     : 1.10;
  CHECK(linear.relative_l1 < bound * reference.relative_l1);
  check_lse_call_takes_exact_p(in, options);
}

TEST_CASE("sage2's fp16 P from linear exponentials stays more accurate than the FP8 default", "[gpu][sage2]") {
  if (!wgmma_here()) return;
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const Case c = GENERATE(Case{1, 4, 4, 1000, 1000, 64}, Case{2, 4, 2, 300, 2048, 64}, Case{1, 4, 4, 1000, 1000, 128});
  const bool causal = GENERATE(false, true);
  CAPTURE(c.batch, c.q_heads, c.kv_heads, c.q_len, c.kv_len, c.head_dim, causal);
  const Inputs in = make_inputs(rng, c, sage2::Layout::bhnd, at::kBFloat16);
  sage2::Options options;
  options.kernel = sage2::KernelFamily::wgmma;
  options.causal = causal;
  const at::Tensor fp8_default = sage2::attention(in.q, in.k, in.v, options).out;
  options.pv = sage2::PvType::fp16;
  options.granularity = sage2::Granularity::per_thread;
  const at::Tensor exact_p = sage2::attention(in.q, in.k, in.v, options).out;
  options.p_exponent = sage2::PExponent::linear;
  const at::Tensor out = linear_p_attention(in, options);
  if (c.head_dim != 64) {  // exact P there, to the bit
    CHECK(at::equal(out, exact_p));
    return;
  }
  CHECK_FALSE(at::equal(out, exact_p));
  const at::Tensor exact = full_precision(in, sage2::Layout::bhnd, causal);
  const Errors linear = compare(out, exact), fp8 = compare(fp8_default, exact);
  CAPTURE(linear.cosine, linear.relative_l1, fp8.cosine, fp8.relative_l1);
  // Measured 0.58x the FP8 default's rel. L1 on Gaussian inputs (docs/accuracy.md).
  CHECK(linear.relative_l1 < 0.75 * fp8.relative_l1);
  check_lse_call_takes_exact_p(in, options);
}

TEST_CASE("sage2 takes a broadcast bias and an unscaled call like T5's", "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const Case c{2, 8, 8, 226, 226, 64};
  const Inputs in = make_inputs(rng, c, sage2::Layout::bhnd, at::kBFloat16);
  const int rank = GENERATE(2, 3, 4);
  const auto qk = GENERATE(sage2::QkType::int8, sage2::QkType::int4);  // INT4: with Q smoothing (its default)
  CAPTURE(rank, int(qk));
  at::Tensor bias = rank == 2   ? rng.normal({226, 226})
                    : rank == 3 ? rng.normal({8, 226, 226})
                                : rng.normal({1, 8, 226, 226});
  bias = (bias * 3).to(at::kCUDA);
  sage2::Options options;
  options.qk = qk;
  options.scale = 1.0;
  const sage2::Result got = sage2::attention(in.q * 0.125, in.k, in.v, options, bias);
  const sage2::reference::Simulated want =
      sage2::reference::attention(in.q * 0.125, in.k, in.v, sage2::resolve(options, 90, /*has_bias=*/true), bias);
  CHECK(compare_simulated(got.out, want).cosine > 0.99999);
  const Errors vs_exact =
      compare(got.out, full_precision({in.q * 0.125, in.k, in.v}, sage2::Layout::bhnd, false, 1.0, bias));
  CAPTURE(vs_exact.cosine, vs_exact.relative_l1);
  CHECK(vs_exact.cosine > (qk == sage2::QkType::int4 ? 0.975 : 0.999));
}

TEST_CASE("sage2 refuses a bias that does not fit the call instead of reading past it", "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const Inputs in = make_inputs(rng, Case{1, 8, 8, 130, 130, 64}, sage2::Layout::bhnd, at::kBFloat16);
  const auto refuses = [&](const at::Tensor& bias, const std::string& message) {
    CAPTURE(message);
    REQUIRE_THROWS_AS(sage2::attention(in.q, in.k, in.v, {}, bias), std::invalid_argument);
    REQUIRE_THROWS_WITH(sage2::attention(in.q, in.k, in.v, {}, bias), ContainsSubstring(message));
  };
  refuses(rng.normal({130, 129}).to(at::kCUDA), "does not broadcast to [1, 8, 130, 130]");
  refuses(rng.normal({4, 130, 130}).to(at::kCUDA), "does not broadcast");
  refuses(rng.normal({130, 130}), "bias is on cpu");
}

TEST_CASE("K smoothing absorbs huge per-channel offsets", "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const Case c{1, 4, 4, 1000, 1000, 64};
  Inputs in = make_inputs(rng, c, sage2::Layout::bhnd, at::kBFloat16);
  const at::Tensor plain_exact = full_precision(in, sage2::Layout::bhnd, false);
  sage2::Options options;
  options.qk = sage2::QkType::int8;
  const double plain = compare(sage2::attention(in.q, in.k, in.v, options).out, plain_exact).relative_l1;
  in.k = (in.k.to(at::kFloat) + rng.normal({1, 4, 1, 64}).to(at::kCUDA) * 100).to(at::kBFloat16);
  const at::Tensor offset_exact = full_precision(in, sage2::Layout::bhnd, false);
  const double smoothed = compare(sage2::attention(in.q, in.k, in.v, options).out, offset_exact).relative_l1;
  options.smooth_k = false;
  const double unsmoothed = compare(sage2::attention(in.q, in.k, in.v, options).out, offset_exact).relative_l1;
  CAPTURE(plain, smoothed, unsmoothed);
  CHECK(smoothed < 2 * plain + 0.01);
  CHECK(unsmoothed > 2 * smoothed);
}

TEST_CASE("the sage2 backend serves the attention layer, GQA and bias included", "[gpu][sage2][attention]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor q = rng.normal({2, 8, 300, 64}, options), k = rng.normal({2, 4, 300, 64}, options),
                   v = rng.normal({2, 4, 300, 64}, options);
  sagevid::AttentionConfig config;
  config.backend = sagevid::AttentionBackend::sage2;
  const sagevid::Attention attention(config);
  sagevid::AttentionParams params;
  params.bias = rng.normal({8, 300, 300}, options);
  const at::Tensor out = attention(q, k, v, params);
  params.bias = params.bias->to(at::kFloat);
  const at::Tensor ref = sagevid::Attention()(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), params);
  CHECK(compare(out, ref).cosine > 0.999);
  CHECK(attention.fallback_count() == 0);
  // Head dim 96 has no kernel: a clear reason, served by the fallback when configured.
  const at::Tensor q96 = rng.normal({1, 2, 50, 96}, options);
  REQUIRE_THROWS_WITH(attention(q96, q96, q96), ContainsSubstring("head dim 96"));
  config.fallback = sagevid::AttentionBackend::cudnn;
  const sagevid::Attention with_fallback(config);
  with_fallback(q96, q96, q96);
  CHECK(with_fallback.fallback_count() == 1);
}

TEST_CASE("sage2 options: INT8 and INT4, granularity, smoothing and deferred FP8 flushes at CogVideoX length",
          "[gpu][sage2]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const Case c{1, 2, 2, 17776, 17776, 64};
  const Inputs in = make_inputs(rng, c, sage2::Layout::bhnd, at::kBFloat16);
  const auto granularity = GENERATE(sage2::Granularity::per_thread, sage2::Granularity::per_warp,
                                    sage2::Granularity::per_block, sage2::Granularity::per_token);
  const bool smooth_q = GENERATE(false, true);
  const bool smooth_v = GENERATE(false, true);
  const int flush = GENERATE(1, 4);
  const auto qk = GENERATE(sage2::QkType::int8, sage2::QkType::int4);
  // INT4 (its ΔS from an INT8 copy of K) with the per-thread and per-token k-scales only: the others share code.
  if (qk == sage2::QkType::int4 && granularity != sage2::Granularity::per_thread &&
      granularity != sage2::Granularity::per_token)
    return;
  CAPTURE(int(granularity), smooth_q, smooth_v, flush, int(qk));
  sage2::Options options;
  options.qk = qk;
  options.pv = sage2::PvType::fp8;
  options.granularity = granularity;
  options.smooth_q = smooth_q;
  options.smooth_v = smooth_v;
  options.pv_flush_tiles = flush;
  const at::Tensor out = sagevid::test::poisoned_like(in.q);
  sage2::attention(in.q, in.k, in.v, options, std::nullopt, out);
  const sage2::Options resolved = sage2::resolve(options, 90);
  const sage2::reference::Simulated want = sage2::reference::attention(in.q, in.k, in.v, resolved);
  REQUIRE(at::isfinite(out).all().item<bool>());
  const Errors vs_reference = compare_simulated(out, want);
  CAPTURE(vs_reference.cosine, vs_reference.relative_l1);
  CHECK(vs_reference.cosine > reference_cosine_bound(resolved, c.head_dim));
  CHECK(vs_reference.relative_l1 < reference_l1_bound(resolved, c.head_dim));
  // INT8: per-block scales at this length measured 0.9988 on Gaussian inputs, per-thread ones about 0.9993.
  const double min_cosine = qk == sage2::QkType::int4 ? 0.975 : 0.998;
  CHECK(compare(out, full_precision(in, sage2::Layout::bhnd, false)).cosine > min_cosine);
}
