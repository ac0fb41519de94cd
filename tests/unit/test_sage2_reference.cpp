// The SageAttention2 reference: its quantization groups and scales against a direct per-group computation
// written from the MMA lane layout, the FP8 V key permutation, option defaults, and its attention against
// float64 attention over the shapes and modes the kernels support.
#include "catch.h"
#include "test_random.h"

#include "sagevid/kernels/sage2_reference.h"

#include <ATen/ops/abs.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/round.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/tril.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <utility>
#include <vector>

namespace {

namespace sage2 = sagevid::kernels::sage2;
namespace ref = sagevid::kernels::sage2::reference;
using sage2::Granularity;

at::Tensor rows_tensor(const std::vector<int64_t>& rows) {
  return at::tensor(at::ArrayRef<int64_t>(rows), at::TensorOptions().dtype(at::kLong));
}

// The rows of every quantization group, written from the lane layout of the MMA fragments (a lane holds
// A rows lane/4 and lane/4 + 8 of each 16-row warp tile, and accumulator columns 2(lane%4), 2(lane%4)+1 of
// each 8-key slice) rather than from q_group / k_group.
std::vector<std::vector<int64_t>> q_group_rows(int64_t padded, Granularity granularity) {
  std::vector<std::vector<int64_t>> groups;
  if (granularity == Granularity::per_token) {
    for (int64_t r = 0; r < padded; ++r) groups.push_back({r});
    return groups;
  }
  for (int64_t warp = 0; warp < padded / sage2::kWarpQ; ++warp) {
    const int64_t first = warp * sage2::kWarpQ;
    if (granularity == Granularity::per_thread) {
      for (int64_t lane_row = 0; lane_row < 8; ++lane_row) groups.push_back({first + lane_row, first + lane_row + 8});
    } else if (granularity == Granularity::per_warp || warp % sage2::kWarps == 0) {
      groups.emplace_back();
    }
    if (granularity != Granularity::per_thread) {
      for (int64_t r = 0; r < sage2::kWarpQ; ++r) groups.back().push_back(first + r);
    }
  }
  return groups;
}

std::vector<std::vector<int64_t>> k_group_rows(int64_t padded, Granularity granularity) {
  std::vector<std::vector<int64_t>> groups;
  if (granularity == Granularity::per_token) {
    for (int64_t r = 0; r < padded; ++r) groups.push_back({r});
    return groups;
  }
  for (int64_t tile = 0; tile < padded / sage2::kKBlock; ++tile) {
    const int64_t first = tile * sage2::kKBlock;
    if (granularity != Granularity::per_thread) {
      groups.emplace_back();
      for (int64_t r = 0; r < sage2::kKBlock; ++r) groups.back().push_back(first + r);
      continue;
    }
    for (int64_t lane = 0; lane < 4; ++lane) {  // lane % 4
      groups.emplace_back();
      for (int64_t slice = 0; slice < sage2::kKBlock / 8; ++slice) {
        groups.back().push_back(first + slice * 8 + 2 * lane);
        groups.back().push_back(first + slice * 8 + 2 * lane + 1);
      }
    }
  }
  return groups;
}

// Checks quantized rows of x [B, H, N, D] group by group against a direct computation of the contract.
void check_groups(const at::Tensor& x, const ref::QuantizedRows& quantized, bool is_key, Granularity granularity,
                  int qmax) {
  const int64_t len = x.size(2), tile = is_key ? sage2::kKBlock : sage2::kQBlock;
  const int64_t padded = sage2::round_up(len, tile);
  const auto groups = is_key ? k_group_rows(padded, granularity) : q_group_rows(padded, granularity);
  const int64_t per_tile = is_key ? sage2::k_groups_per_block(granularity) : sage2::q_groups_per_block(granularity);
  REQUIRE(quantized.values.sizes() == at::IntArrayRef{x.size(0), x.size(1), padded, x.size(3)});
  REQUIRE(quantized.values.scalar_type() == at::kChar);
  REQUIRE(quantized.scales.sizes() == at::IntArrayRef{x.size(0), x.size(1), int64_t(groups.size())});
  REQUIRE(int64_t(groups.size()) == padded / tile * per_tile);

  for (int64_t g = 0; g < int64_t(groups.size()); ++g) {
    CAPTURE(g);
    std::vector<int64_t> valid;
    for (int64_t row : groups[size_t(g)]) {
      REQUIRE((is_key ? sage2::k_group(row, granularity) : sage2::q_group(row, granularity)) == g);
      if (row < len) valid.push_back(row);
    }
    const at::Tensor scale = quantized.scales.select(2, g);
    if (valid.empty()) {  // a group of padding rows only
      CHECK(at::equal(scale, at::ones_like(scale)));
      continue;
    }
    const at::Tensor rows = x.index_select(2, rows_tensor(valid));
    const at::Tensor amax = rows.abs().amax({2, 3});
    CHECK(at::equal(scale, amax / at::full_like(amax, qmax)));
    const at::Tensor inv = (at::full_like(amax, qmax) / amax).unsqueeze(-1).unsqueeze(-1);
    const at::Tensor expected = at::round(rows * inv).clamp(-qmax, qmax);
    CHECK(at::equal(quantized.values.index_select(2, rows_tensor(valid)).to(at::kFloat), expected));
  }
  // Padding rows are zero; every value is within ±qmax.
  CHECK(quantized.values.narrow(2, len, padded - len).eq(0).all().item<bool>());
  CHECK(quantized.values.abs().max().item<int>() <= qmax);
}

sage2::Options resolved(sage2::QkType qk, sage2::PvType pv, bool smooth_q,
                        sage2::KernelFamily kernel = sage2::KernelFamily::mma_sync) {
  sage2::Options options;
  options.kernel = kernel;
  options.qk = qk;
  options.pv = pv;
  options.smooth_q = smooth_q;
  options.granularity = sage2::Granularity::per_thread;
  return options;
}

struct Exact {
  at::Tensor out;  // [B, H_q, N_q, D] float64
  at::Tensor lse;  // [B, H_q, N_q] float64
};

// Full-precision attention in float64 over [B, H, N, D] inputs (grouped-query heads expanded).
Exact exact_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal, double scale,
                      const at::Tensor& bias = {}) {
  const int64_t group = q.size(1) / k.size(1);
  const at::Tensor kd = k.to(at::kDouble).repeat_interleave(group, 1);
  const at::Tensor vd = v.to(at::kDouble).repeat_interleave(group, 1);
  at::Tensor scores = at::matmul(q.to(at::kDouble), kd.transpose(2, 3)) * scale;
  if (bias.defined()) scores = scores + bias.to(at::kDouble);
  if (causal) {
    const at::Tensor visible = at::tril(at::ones({q.size(2), k.size(2)}, at::kBool));
    scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
  }
  return {at::matmul(at::softmax(scores, -1), vd), at::logsumexp(scores, {-1})};
}

double relative_l1(const at::Tensor& actual, const at::Tensor& expected) {
  const at::Tensor a = actual.to(at::kDouble), e = expected.to(at::kDouble);
  return ((a - e).abs().sum() / e.abs().sum()).item<double>();
}

double cosine(const at::Tensor& actual, const at::Tensor& expected) {
  const at::Tensor a = actual.to(at::kDouble).flatten(), e = expected.to(at::kDouble).flatten();
  return ((a * e).sum() / (a.norm() * e.norm())).item<double>();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("sage2 resolve picks the per-architecture defaults", "[sage2][reference]") {
  using sage2::PvType;
  using sage2::QkType;
  const sage2::Options ampere = sage2::resolve({}, 86);
  CHECK(ampere.qk == QkType::int4);
  CHECK(ampere.pv == PvType::fp16);
  CHECK(ampere.smooth_q == true);
  CHECK(ampere.granularity == sage2::Granularity::per_thread);
  const sage2::Options ada = sage2::resolve({}, 89);
  CHECK(ada.qk == QkType::int4);
  CHECK(ada.pv == PvType::fp8);
  CHECK(ada.smooth_q == true);
  CHECK(ada.granularity == sage2::Granularity::per_thread);
  CHECK(ada.kernel == sage2::KernelFamily::mma_sync);
  // Hopper: the wgmma kernels with FP8 P·V where the build has them; mma.sync with FP16 P·V (faster than
  // FP8 there) for what wgmma does not take (a bias, Q smoothing) and in builds without sm_90a.
  const bool wgmma = sage2::kernel_family_built(sage2::KernelFamily::wgmma);
  const sage2::Options hopper = sage2::resolve({}, 90);
  CHECK(hopper.kernel == (wgmma ? sage2::KernelFamily::wgmma : sage2::KernelFamily::mma_sync));
  CHECK(hopper.qk == QkType::int8);
  CHECK(hopper.pv == (wgmma ? PvType::fp8 : PvType::fp16));
  CHECK(hopper.smooth_q == false);
  CHECK(hopper.granularity == (wgmma ? sage2::Granularity::per_thread : sage2::Granularity::per_token));
  const sage2::Options hopper_bias = sage2::resolve({}, 90, /*has_bias=*/true);
  CHECK(hopper_bias.kernel == sage2::KernelFamily::mma_sync);
  CHECK(hopper_bias.pv == PvType::fp16);
  sage2::Options smoothed;
  smoothed.smooth_q = true;
  CHECK(sage2::resolve(smoothed, 90).kernel == sage2::KernelFamily::mma_sync);
  CHECK(sage2::resolve({}, 100).kernel == sage2::KernelFamily::mma_sync);  // sm_90a code runs on 9.0 only

  sage2::Options explicit_options;
  explicit_options.qk = QkType::int8;
  explicit_options.pv = PvType::fp16;
  explicit_options.smooth_q = true;
  explicit_options.scale = 0.5;
  const sage2::Options kept = sage2::resolve(explicit_options, 89);
  CHECK(kept.qk == QkType::int8);
  CHECK(kept.pv == PvType::fp16);
  CHECK(kept.smooth_q == true);
  CHECK(kept.scale == 0.5);
  CHECK(kept.granularity == sage2::Granularity::per_token);  // INT8 + FP16 P·V: the high-accuracy mode
  explicit_options.smooth_q.reset();
  CHECK(sage2::resolve(explicit_options, 80).smooth_q == false);  // follows qk, not the architecture
  explicit_options.granularity = sage2::Granularity::per_warp;
  CHECK(sage2::resolve(explicit_options, 90).granularity == sage2::Granularity::per_warp);
  explicit_options.qk = QkType::int4;
  explicit_options.granularity.reset();
  CHECK(sage2::resolve(explicit_options, 86).granularity == sage2::Granularity::per_thread);
}

TEST_CASE("sage2 resolve rejects what cannot run", "[sage2][reference]") {
  sage2::Options fp8;
  fp8.pv = sage2::PvType::fp8;
  REQUIRE_THROWS_WITH(sage2::resolve(fp8, 86), ContainsSubstring("8.9"));
  sage2::Options flush;
  flush.pv_flush_tiles = 0;
  REQUIRE_THROWS_WITH(sage2::resolve(flush, 90), ContainsSubstring("pv_flush_tiles"));
  sage2::Options scale;
  scale.scale = std::numeric_limits<double>::quiet_NaN();
  REQUIRE_THROWS_WITH(sage2::resolve(scale, 90), ContainsSubstring("scale"));
  sage2::Options wgmma;
  wgmma.kernel = sage2::KernelFamily::wgmma;
  if (!sage2::kernel_family_built(sage2::KernelFamily::wgmma)) {
    REQUIRE_THROWS_WITH(sage2::resolve(wgmma, 90), ContainsSubstring("no sm_90a"));
    return;
  }
  CHECK(sage2::resolve(wgmma, 90).kernel == sage2::KernelFamily::wgmma);
  REQUIRE_THROWS_WITH(sage2::resolve(wgmma, 89), ContainsSubstring("9.0"));
  REQUIRE_THROWS_WITH(sage2::resolve(wgmma, 90, /*has_bias=*/true), ContainsSubstring("bias"));
  wgmma.smooth_q = true;
  REQUIRE_THROWS_WITH(sage2::resolve(wgmma, 90), ContainsSubstring("Q smoothing"));
  wgmma.smooth_q.reset();
  wgmma.scale = -0.125;
  REQUIRE_THROWS_WITH(sage2::resolve(wgmma, 90), ContainsSubstring("positive scale"));
  wgmma.kernel.reset();
  CHECK(sage2::resolve(wgmma, 90).kernel == sage2::KernelFamily::mma_sync);  // the default family takes it
  wgmma.kernel = sage2::KernelFamily::wgmma;
  wgmma.scale.reset();
  wgmma.qk = sage2::QkType::int4;
  REQUIRE_THROWS_WITH(sage2::resolve(wgmma, 90), ContainsSubstring("INT8"));
}

TEST_CASE("sage2 reference means: token mean, key mean and per-block mean over valid rows", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t len = GENERATE(1, 64, 130);
  CAPTURE(len);
  const at::Tensor x = rng.normal({2, 3, len, 16});
  CHECK(max_abs_diff(ref::token_mean(x), x.to(at::kDouble).mean({2})) < 1e-6);
  // K's smoothing mean: that of keys 0, 8, 16, ... only.
  std::vector<int64_t> sampled;
  for (int64_t row = 0; row < len; row += sage2::kKeyMeanStride) sampled.push_back(row);
  REQUIRE(int64_t(sampled.size()) == sage2::key_mean_samples(int(len)));
  const at::Tensor sampled_rows = x.index_select(2, at::tensor(sampled, at::kLong)).to(at::kDouble);
  CHECK(max_abs_diff(ref::key_mean(x), sampled_rows.mean({2})) < 1e-6);

  const at::Tensor means = ref::block_mean(x);
  const int64_t blocks = (len + sage2::kQBlock - 1) / sage2::kQBlock;
  REQUIRE(means.sizes() == at::IntArrayRef{2, 3, blocks, 16});
  REQUIRE(means.scalar_type() == at::kFloat);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * sage2::kQBlock, rows = std::min<int64_t>(sage2::kQBlock, len - first);
    CHECK(max_abs_diff(means.select(2, b), x.narrow(2, first, rows).to(at::kDouble).mean({2})) < 1e-6);
  }
}

TEST_CASE("sage2 reference quantizes Q and K in the groups and scales of the layout", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto granularity =
      GENERATE(Granularity::per_thread, Granularity::per_warp, Granularity::per_block, Granularity::per_token);
  const int qmax = GENERATE(sage2::kInt8Max, sage2::kInt4Max);
  const int64_t len = GENERATE(1, 64, 133);  // single row, exact tiles, partial last tile
  CAPTURE(int(granularity), qmax, len);
  // Rows of very different magnitudes, so that a row put in the wrong group changes its scale.
  const at::Tensor x = rng.normal({2, 2, len, 32}) * rng.normal({1, 1, len, 1}).abs().mul(4).add(0.1);

  SECTION("Q") { check_groups(x, ref::quantize_q(x, granularity, qmax), false, granularity, qmax); }
  SECTION("K") { check_groups(x, ref::quantize_k(x, granularity, qmax), true, granularity, qmax); }
}

TEST_CASE("sage2 reference quantized rows dequantize within half a step", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto granularity = GENERATE(Granularity::per_thread, Granularity::per_block, Granularity::per_token);
  const int qmax = GENERATE(sage2::kInt8Max, sage2::kInt4Max);
  const bool is_key = GENERATE(false, true);
  CAPTURE(int(granularity), qmax, is_key);
  const int64_t len = 150;
  const at::Tensor x = rng.normal({1, 2, len, 64}) * 3;
  const ref::QuantizedRows quantized =
      is_key ? ref::quantize_k(x, granularity, qmax) : ref::quantize_q(x, granularity, qmax);

  std::vector<int64_t> groups;
  for (int64_t row = 0; row < len; ++row) {
    groups.push_back(is_key ? sage2::k_group(row, granularity) : sage2::q_group(row, granularity));
  }
  const at::Tensor row_scale = quantized.scales.index_select(2, rows_tensor(groups)).unsqueeze(-1);
  const at::Tensor error = (quantized.values.narrow(2, 0, len).to(at::kFloat) * row_scale - x).abs();
  CAPTURE((error / row_scale).max().item<double>());
  // Half a step, and the fp32 roundings of the scale, of its inverse and of x times it: each a relative 2^-24 of a
  // value up to qmax steps (a half-step tie can land on either side).
  CHECK((error <= row_scale * (0.5 + 3 * qmax * 0x1p-24)).all().item<bool>());
}

TEST_CASE("sage2 reference gives an all-zero group scale 1 and zero values", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  at::Tensor x = rng.normal({1, 1, 128, 16});
  x.narrow(2, 0, 64).zero_();  // the whole first block
  for (const bool is_key : {false, true}) {
    CAPTURE(is_key);
    const ref::QuantizedRows quantized =
        is_key ? ref::quantize_k(x, Granularity::per_block, 127) : ref::quantize_q(x, Granularity::per_block, 127);
    CHECK(quantized.scales[0][0][0].item<float>() == 1.0f);
    CHECK(quantized.scales[0][0][1].item<float>() != 1.0f);
    CHECK(quantized.values.narrow(2, 0, 64).eq(0).all().item<bool>());
  }
  const at::Tensor v = at::cat({rng.normal({1, 1, 70, 3}), at::zeros({1, 1, 70, 1})}, 3);
  CHECK(ref::quantize_v_fp8(v).scales[0][0][3].item<float>() == 1.0f);
  CHECK(ref::quantize_v_fp8(v).values.select(3, 3).eq(0).all().item<bool>());
}

TEST_CASE("sage2 reference quantizes V to FP8 per channel", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor v = rng.normal({2, 2, 77, 32}) * rng.normal({1, 1, 1, 32}).abs().mul(10).add(0.01);
  const ref::QuantizedV quantized = ref::quantize_v_fp8(v, ref::VScale::exact);
  REQUIRE(quantized.values.sizes() == v.sizes());
  REQUIRE(quantized.scales.sizes() == at::IntArrayRef{2, 2, 32});

  const at::Tensor amax = v.abs().amax(2);
  CHECK(at::equal(quantized.scales, amax / at::full_like(amax, sage2::kFp8Max)));
  const at::Tensor inv = (at::full_like(amax, sage2::kFp8Max) / amax).unsqueeze(2);
  CHECK(at::equal(quantized.values, (v * inv).to(at::kFloat8_e4m3fn).to(at::kFloat)));
  // E4M3 values, the largest of each channel at the top of the range, and 3 mantissa bits of precision.
  CHECK(at::equal(quantized.values, quantized.values.to(at::kFloat8_e4m3fn).to(at::kFloat)));
  CHECK(at::equal(quantized.values.abs().amax(2), at::full_like(amax, sage2::kFp8Max)));
  const at::Tensor scale = quantized.scales.unsqueeze(2);
  const at::Tensor error = (quantized.values * scale - v).abs();
  CHECK((error <= v.abs() / 16 + scale * std::ldexp(1.0, -10)).all().item<bool>());
}

TEST_CASE("sage2 reference takes V's FP8 scale from the sampled keys unless a head has a value past their bound",
          "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // Heads of values within ±1 whose sampled keys (0, 8, ...) hold each channel's largest |v|, 1.5: the bound is the
  // margin times it. Then a value past the bound at an unsampled key of head 1: that head alone goes exact.
  at::Tensor v = rng.normal({1, 3, 77, 16}).clamp(-1, 1);
  v.slice(2, 0, 77, sage2::kVScaleStride).narrow(2, 0, 1).fill_(1.5f);
  const at::Tensor sampled_bound = at::full({1, 3, 16}, 1.5f * sage2::kVScaleMargin);
  const auto check_scales = [&](const ref::QuantizedV& quantized, const at::Tensor& amax) {
    CHECK(at::equal(quantized.scales, amax / sage2::kFp8Max));
    const at::Tensor inv = (at::full_like(amax, sage2::kFp8Max) / amax).unsqueeze(2);
    CHECK(at::equal(quantized.values, (v * inv).to(at::kFloat8_e4m3fn).to(at::kFloat)));
  };
  check_scales(ref::quantize_v_fp8(v), sampled_bound);
  check_scales(ref::quantize_v_fp8(v, ref::VScale::exact), v.abs().amax(2));

  const float outlier = 1.5f * sage2::kVScaleMargin * 1.25f;
  v[0][1][3][5].fill_(-outlier);  // key 3: not sampled
  at::Tensor want = sampled_bound.clone();
  want.select(1, 1).copy_(v.select(1, 1).abs().amax(1));
  CHECK(want[0][1][5].item<float>() == outlier);
  check_scales(ref::quantize_v_fp8(v), want);
  v[0][1][3][5].fill_(1.5f * sage2::kVScaleMargin);  // at the bound: still fits
  check_scales(ref::quantize_v_fp8(v), sampled_bound);
}

TEST_CASE("sage2 FP8 V key permutation matches the MMA lane mapping", "[sage2][reference]") {
  std::set<int> positions;
  for (int key = 0; key < 32; ++key) {
    const int position = sage2::kv_permuted_position(key);
    CHECK(position >= 0);
    CHECK(position < 32);
    CHECK((position & 16) == (key & 16));  // keys stay in their 16-key half
    positions.insert(position);
  }
  CHECK(positions.size() == 32);  // a bijection
  for (int key = 0; key < 32; ++key) CHECK(sage2::kv_key_at_position(sage2::kv_permuted_position(key)) == key);
  // Lane t (= lane % 4) holds S columns 2t, 2t+1 of each 8-key slice; its A fragment wants k = 4t..4t+3.
  for (int half : {0, 16}) {
    for (int t = 0; t < 4; ++t) {
      CAPTURE(half, t);
      CHECK(sage2::kv_permuted_position(half + 2 * t) == half + 4 * t);
      CHECK(sage2::kv_permuted_position(half + 2 * t + 1) == half + 4 * t + 1);
      CHECK(sage2::kv_permuted_position(half + 8 + 2 * t) == half + 4 * t + 2);
      CHECK(sage2::kv_permuted_position(half + 9 + 2 * t) == half + 4 * t + 3);
    }
  }
}

TEST_CASE("sage2 reference preprocess: smoothing means and delta S", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor q = rng.normal({1, 4, 100, 32}).to(at::kHalf);
  const at::Tensor k = rng.normal({1, 2, 70, 32}).to(at::kHalf);
  const at::Tensor v = rng.normal({1, 2, 70, 32}).to(at::kHalf);
  sage2::Options options = resolved(sage2::QkType::int4, sage2::PvType::fp8, true);
  options.smooth_v = true;
  const ref::Preprocessed pre = ref::preprocess(q, k, v, options);
  const at::Tensor qf = q.to(at::kFloat), kf = k.to(at::kFloat), vf = v.to(at::kFloat);

  CHECK(at::equal(pre.k_mean, ref::key_mean(kf)));
  CHECK(at::equal(pre.q_mean, ref::block_mean(qf)));
  CHECK(at::equal(pre.v_mean, ref::token_mean(vf)));
  const at::Tensor k_smooth = kf - pre.k_mean.unsqueeze(2);
  CHECK(at::equal(pre.k.values, ref::quantize_k(k_smooth, *options.granularity, 7).values));
  const at::Tensor row_block = at::arange(100, at::kLong).div(sage2::kQBlock, "floor");
  const at::Tensor q_smooth = qf - pre.q_mean.index_select(2, row_block);
  CHECK(at::equal(pre.q.values, ref::quantize_q(q_smooth, *options.granularity, 7).values));
  CHECK(at::equal(pre.v.values, ref::quantize_v_fp8(vf - pre.v_mean.unsqueeze(2), ref::VScale::exact).values));
  // ΔS, as the kernel computes it: INT8 block means (one scale per block) times INT8 K' (the K granularity);
  // query head h uses kv head h / 2.
  const ref::QuantizedRows means = ref::quantize_q(pre.q_mean, sage2::Granularity::per_token, 127);
  CHECK(at::equal(pre.q_mean_int8.values, means.values));
  CHECK(at::equal(pre.q_mean_int8.scales, means.scales));
  const ref::QuantizedRows k8 = ref::quantize_k(k_smooth, *options.granularity, 127);
  CHECK(at::equal(pre.k_int8.values, k8.values));
  CHECK(at::equal(pre.k_int8.scales, k8.scales));
  std::vector<int64_t> key_groups;
  for (int64_t key = 0; key < 70; ++key) key_groups.push_back(sage2::k_group(key, *options.granularity));
  const at::Tensor key_scales = k8.scales.index_select(2, at::tensor(at::ArrayRef<int64_t>(key_groups), at::kLong));
  const at::Tensor mean = means.values.narrow(2, 0, 2).to(at::kFloat) * means.scales.narrow(2, 0, 2).unsqueeze(-1);
  const at::Tensor key = k8.values.narrow(2, 0, 70).to(at::kFloat) * key_scales.unsqueeze(-1);
  REQUIRE(pre.delta_s.sizes() == at::IntArrayRef{1, 4, 2, 70});
  CHECK(max_abs_diff(pre.delta_s, at::matmul(mean, key.repeat_interleave(2, 1).transpose(2, 3))) < 1e-5);
  // Against the exact q̄ · K'ᵀ it carries the two INT8 roundings only: each factor off by at most half a step
  // (max / 254) per channel, so at most D · max|q̄| · max|K'| · (2 / 254 + 1 / 254²).
  const at::Tensor exact = at::matmul(pre.q_mean, k_smooth.repeat_interleave(2, 1).transpose(2, 3));
  const double bound = 32 * pre.q_mean.abs().max().item<double>() * k_smooth.abs().max().item<double>() *
                       (2.0 / 254 + 1.0 / (254 * 254));
  CAPTURE(max_abs_diff(pre.delta_s, exact), bound);
  CHECK(max_abs_diff(pre.delta_s, exact) <= bound);
  CHECK(max_abs_diff(pre.delta_s, exact) > 0);  // quantized: not the exact product

  options.smooth_k = false;
  options.smooth_q = false;
  options.smooth_v = false;
  options.pv = sage2::PvType::fp16;
  const ref::Preprocessed plain = ref::preprocess(q, k, v, options);
  CHECK_FALSE(plain.k_mean.defined());
  CHECK_FALSE(plain.q_mean.defined());
  CHECK_FALSE(plain.delta_s.defined());
  CHECK_FALSE(plain.q_mean_int8.values.defined());
  CHECK_FALSE(plain.k_int8.values.defined());
  CHECK_FALSE(plain.v_mean.defined());
  CHECK_FALSE(plain.v.scales.defined());
  CHECK(at::equal(plain.v.values, vf));  // fp16 inputs are already fp16 values
}

TEST_CASE("sage2 reference attention is close to float64 attention", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  struct Mode {
    sage2::QkType qk;
    sage2::PvType pv;
    bool smooth_q;
    double max_relative_l1, min_cosine;
  };
  // Measured on these iid inputs: INT8+FP16 L1 0.010-0.012, cos 0.9999; INT8+FP8 L1 0.035-0.038, cos 0.9993
  // (E4M3 keeps 3 mantissa bits of P̃ and V); INT4+FP8 L1 0.17-0.23, cos 0.974-0.985 (15 levels; smoothing
  // Q cannot help iid queries, see the offset test below for where it does).
  const Mode mode = GENERATE(Mode{sage2::QkType::int8, sage2::PvType::fp16, false, 0.02, 0.999},
                             Mode{sage2::QkType::int8, sage2::PvType::fp8, false, 0.05, 0.998},
                             Mode{sage2::QkType::int4, sage2::PvType::fp8, true, 0.3, 0.965});
  const auto granularity = GENERATE(Granularity::per_thread, Granularity::per_block, Granularity::per_token);
  // The families' softmax steps (64 or 128 keys) round P̃ against different running maxima.
  const auto kernel = GENERATE(sage2::KernelFamily::mma_sync, sage2::KernelFamily::wgmma);
  if (kernel == sage2::KernelFamily::wgmma && mode.qk == sage2::QkType::int4) return;
  CAPTURE(int(mode.qk), int(mode.pv), mode.smooth_q, int(granularity), int(kernel));
  const at::Tensor q = rng.normal({1, 2, 257, 64}).to(at::kHalf);
  const at::Tensor k = rng.normal({1, 2, 257, 64}).to(at::kHalf);
  const at::Tensor v = rng.normal({1, 2, 257, 64}).to(at::kHalf);
  sage2::Options options = resolved(mode.qk, mode.pv, mode.smooth_q, kernel);
  options.granularity = granularity;

  const sage2::Result result = ref::attention(q, k, v, options);
  REQUIRE(result.out.sizes() == q.sizes());
  REQUIRE(result.out.scalar_type() == at::kHalf);
  CHECK_FALSE(result.lse.defined());
  const Exact exact = exact_attention(q, k, v, false, 1.0 / 8);
  const double l1 = relative_l1(result.out, exact.out), cos = cosine(result.out, exact.out);
  CAPTURE(l1, cos);
  CHECK(l1 < mode.max_relative_l1);
  CHECK(cos > mode.min_cosine);
}

TEST_CASE("sage2 reference smoothing K absorbs per-channel key offsets", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor q = rng.normal({1, 2, 200, 64}).to(at::kHalf);
  const at::Tensor k = rng.normal({1, 2, 200, 64});
  const at::Tensor v = rng.normal({1, 2, 200, 64}).to(at::kHalf);
  const at::Tensor k_offset = (k + rng.normal({64}) * 50).to(at::kHalf);
  const sage2::Options smooth = resolved(sage2::QkType::int8, sage2::PvType::fp16, false);
  sage2::Options raw = smooth;
  raw.smooth_k = false;

  // Baseline: the error with smoothing and no offset.
  const double base = relative_l1(ref::attention(q, k.to(at::kHalf), v, smooth).out,
                                  exact_attention(q, k.to(at::kHalf), v, false, 0.125).out);
  const Exact exact = exact_attention(q, k_offset, v, false, 0.125);
  const double smoothed = relative_l1(ref::attention(q, k_offset, v, smooth).out, exact.out);
  const double unsmoothed = relative_l1(ref::attention(q, k_offset, v, raw).out, exact.out);
  CAPTURE(base, smoothed, unsmoothed);
  CHECK(smoothed < 1.3 * base);    // measured: the same as the baseline
  CHECK(unsmoothed > 10 * base);   // measured: 20-40 times the baseline
}

TEST_CASE("sage2 reference smoothing Q rescues INT4 from per-channel query offsets", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // Real models' queries carry per-channel offsets (which also make the softmax peakier than iid inputs).
  const at::Tensor q = (rng.normal({1, 2, 200, 64}) + rng.normal({64}) * 4).to(at::kHalf);
  const at::Tensor k = rng.normal({1, 2, 200, 64}).to(at::kHalf);
  const at::Tensor v = rng.normal({1, 2, 200, 64}).to(at::kHalf);
  const sage2::Options smooth = resolved(sage2::QkType::int4, sage2::PvType::fp16, true);
  sage2::Options raw = smooth;
  raw.smooth_q = false;
  const Exact exact = exact_attention(q, k, v, false, 0.125);
  const at::Tensor smoothed = ref::attention(q, k, v, smooth).out, unsmoothed = ref::attention(q, k, v, raw).out;
  const double smoothed_l1 = relative_l1(smoothed, exact.out), raw_l1 = relative_l1(unsmoothed, exact.out);
  const double smoothed_cos = cosine(smoothed, exact.out), raw_cos = cosine(unsmoothed, exact.out);
  CAPTURE(smoothed_l1, raw_l1, smoothed_cos, raw_cos);
  CHECK(smoothed_cos > 0.985);  // measured 0.991-0.997; unsmoothed 0.89-0.96
  CHECK(smoothed_cos > raw_cos);
  CHECK(smoothed_l1 < 0.6 * raw_l1);  // measured ratio 0.2-0.35
}

TEST_CASE("sage2 reference attention over shapes, masks, heads, layouts and biases", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  struct Shape {
    int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
  };
  const Shape shape = GENERATE(Shape{1, 1, 1, 1, 1, 64}, Shape{2, 2, 2, 65, 130, 64}, Shape{1, 4, 2, 100, 37, 128},
                               Shape{1, 6, 2, 129, 129, 64}, Shape{2, 2, 1, 1, 70, 64});
  const bool causal = GENERATE(false, true);
  const int bias_rank = GENERATE(0, 2, 3, 4);
  const auto pv = GENERATE(sage2::PvType::fp16, sage2::PvType::fp8);
  CAPTURE(shape.batch, shape.q_heads, shape.kv_heads, shape.q_len, shape.kv_len, shape.head_dim, causal, bias_rank,
          int(pv));
  const auto dtype = bias_rank == 3 ? at::kBFloat16 : at::kHalf;
  const at::Tensor q = rng.normal({shape.batch, shape.q_heads, shape.q_len, shape.head_dim}).to(dtype);
  const at::Tensor k = rng.normal({shape.batch, shape.kv_heads, shape.kv_len, shape.head_dim}).to(dtype);
  const at::Tensor v = rng.normal({shape.batch, shape.kv_heads, shape.kv_len, shape.head_dim}).to(dtype);
  at::Tensor bias;
  if (bias_rank == 2) bias = rng.normal({shape.q_len, shape.kv_len});
  if (bias_rank == 3) bias = rng.normal({shape.q_heads, shape.q_len, shape.kv_len}).to(at::kHalf);
  if (bias_rank == 4) bias = rng.normal({shape.batch, 1, shape.q_len, shape.kv_len}).to(at::kBFloat16);
  sage2::Options options = resolved(sage2::QkType::int8, pv, false);
  options.causal = causal;
  options.return_lse = true;
  if (bias_rank == 3) options.scale = 0.07;
  const double scale = options.scale.value_or(1.0 / std::sqrt(double(shape.head_dim)));
  const std::optional<at::Tensor> bias_arg = bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt;

  const sage2::Result result = ref::attention(q, k, v, options, bias_arg);
  REQUIRE(result.out.sizes() == q.sizes());
  REQUIRE(result.out.scalar_type() == dtype);
  REQUIRE(result.lse.sizes() == at::IntArrayRef{shape.batch, shape.q_heads, shape.q_len});
  REQUIRE(result.lse.scalar_type() == at::kFloat);
  const Exact exact = exact_attention(q, k, v, causal, scale, bias);
  const double l1 = relative_l1(result.out, exact.out), cos = cosine(result.out, exact.out);
  const double lse_error = max_abs_diff(result.lse, exact.lse);
  CAPTURE(l1, cos, lse_error);
  // Measured: L1 <= 0.013 (FP16) / 0.038 (FP8), cos >= 0.9993, LSE error <= 0.036 (one INT8 score error
  // dominates rows that see few keys).
  CHECK(l1 < (pv == sage2::PvType::fp16 ? 0.025 : 0.06));
  CHECK(cos > 0.998);
  CHECK(lse_error < 0.06);
  // Query 0 sees key 0 alone: its output is v[0] exactly in FP16 mode (as its fp16 P·V operand holds it, then
  // the output's dtype: bf16 values below fp16's normal range round there), to FP8 precision in FP8 mode.
  if (causal) {
    const at::Tensor first =
        v.select(2, 0).repeat_interleave(shape.q_heads / shape.kv_heads, 1).to(at::kHalf).to(dtype).to(at::kFloat);
    const at::Tensor error = (result.out.select(2, 0).to(at::kFloat) - first).abs();
    CHECK((error <= (pv == sage2::PvType::fp16 ? at::zeros_like(first) : first.abs() / 16 + 1e-3)).all().item<bool>());
  }

  // The same inputs as [B, N, H, D] give the same numbers in that layout.
  options.layout = sage2::Layout::bnhd;
  const sage2::Result transposed = ref::attention(q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(),
                                                  v.transpose(1, 2).contiguous(), options, bias_arg);
  REQUIRE(transposed.out.sizes() == q.transpose(1, 2).sizes());
  CHECK(at::equal(transposed.out, result.out.transpose(1, 2)));
  CHECK(at::equal(transposed.lse, result.lse));
}

TEST_CASE("sage2 reference LSE adds back what K smoothing removed", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto qk = GENERATE(sage2::QkType::int8, sage2::QkType::int4);
  CAPTURE(int(qk));
  const at::Tensor q = rng.normal({1, 2, 90, 64}).to(at::kHalf);
  const at::Tensor k = (rng.normal({1, 1, 150, 64}) + rng.normal({64}) * 5).to(at::kHalf);
  const at::Tensor v = rng.normal({1, 1, 150, 64}).to(at::kHalf);
  sage2::Options options = resolved(qk, sage2::PvType::fp8, qk == sage2::QkType::int4);
  options.return_lse = true;
  options.causal = true;
  const sage2::Result result = ref::attention(q, k, v, options);
  const Exact exact = exact_attention(q, k, v, true, 0.125);
  const double lse_error = max_abs_diff(result.lse, exact.lse);
  CAPTURE(lse_error);
  // Without the correction the error would be sm_scale·q·k̄, about 5 here. Measured: INT8 <= 0.024, INT4
  // <= 0.51 (row 0 sees key 0 alone, so one INT4 score error is its whole LSE error).
  CHECK(lse_error < (qk == sage2::QkType::int8 ? 0.06 : 1.0));
}

namespace {

// The fp16 pair (a, c) whose product is nearest x, a in [0.5, 2).
std::pair<float, float> half_pair_with_product(double x) {
  std::pair<float, float> best{1.0f, 1.0f};
  double best_error = std::numeric_limits<double>::infinity();
  for (uint16_t bits = 0x3800; bits < 0x4000; ++bits) {  // fp16 0.5 up to 2
    const float a = c10::Half(bits, c10::Half::from_bits());
    const float c = c10::Half(float(x / a));
    const double error = std::abs(double(a) * c - x);
    if (error < best_error) best_error = error, best = {a, c};
  }
  return best;
}

}  // namespace

TEST_CASE("sage2 reference slack: what a P̃ value at an FP8 rounding midpoint moves the output by",
          "[sage2][reference]") {
  // One query over two keys: q = (a, 0, ...), k0 = (c, 0, ...), k1 = 0, so the scores are a·c and 0 and, with the
  // max at key 0, p1 = e^(−a·c). V: key 0 only in channel 1, key 1 only in channel 0, so channel 0's output is key 1's
  // P̃ alone. 448·p1 = 232 sits on the midpoint of E4M3's 224 and 240; 228 is well inside a step.
  const double p1_bytes = GENERATE(232.0, 228.0);
  CAPTURE(p1_bytes);
  const auto [a, c] = half_pair_with_product(std::log(448.0 / p1_bytes));
  at::Tensor q = at::zeros({1, 1, 1, 64}), k = at::zeros({1, 1, 2, 64}), v = at::zeros({1, 1, 2, 64});
  q[0][0][0][0] = a;
  k[0][0][0][0] = c;
  v[0][0][0][1] = 1.0f;
  v[0][0][1][0] = 1.0f;
  sage2::Options options = resolved(sage2::QkType::int8, sage2::PvType::fp8, false);
  options.smooth_k = false;
  options.scale = 1.0;
  const ref::Simulated result = ref::attention(q.to(at::kHalf), k.to(at::kHalf), v.to(at::kHalf), options);
  REQUIRE(result.slack.sizes() == result.out.sizes());
  const double row_sum = 1.0 + p1_bytes / 448;  // l sums p before its rounding
  const double out0 = result.out[0][0][0][0].item<double>(), slack0 = result.slack[0][0][0][0].item<double>();
  CAPTURE(out0, slack0);
  if (p1_bytes == 232.0) {
    // Either rounding is the simulation's: the slack is the step between them, through V's scale and the row's sum.
    CHECK(std::abs(slack0 - (240.0 - 224.0) / (448 * row_sum)) < 1e-6);
    CHECK((std::abs(out0 - 224.0 / (448 * row_sum)) < 1e-3 || std::abs(out0 - 240.0 / (448 * row_sum)) < 1e-3));
  } else {
    CHECK(slack0 == 0.0);
    CHECK(std::abs(out0 - 224.0 / (448 * row_sum)) < 1e-3);
  }
  // Key 0's P̃ is 448 exactly (p0 = 1) and no other channel holds V: no slack elsewhere.
  CHECK(result.slack.narrow(3, 1, 63).eq(0).all().item<bool>());
}

TEST_CASE("sage2 reference smoothing V changes little", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto pv = GENERATE(sage2::PvType::fp16, sage2::PvType::fp8);
  CAPTURE(int(pv));
  const at::Tensor q = rng.normal({1, 2, 130, 64}).to(at::kHalf);
  const at::Tensor k = rng.normal({1, 2, 130, 64}).to(at::kHalf);
  const at::Tensor v = (rng.normal({1, 2, 130, 64}) + rng.normal({64}) * 3).to(at::kHalf);
  sage2::Options options = resolved(sage2::QkType::int8, pv, false);
  const sage2::Result plain = ref::attention(q, k, v, options);
  options.smooth_v = true;
  const sage2::Result smoothed = ref::attention(q, k, v, options);
  const Exact exact = exact_attention(q, k, v, false, 0.125);
  const double plain_l1 = relative_l1(plain.out, exact.out), smoothed_l1 = relative_l1(smoothed.out, exact.out);
  CAPTURE(plain_l1, smoothed_l1);
  CHECK(cosine(smoothed.out, plain.out) > 0.9995);
  CHECK(smoothed_l1 < 0.02);
  CHECK(plain_l1 < 0.02);
}

TEST_CASE("sage2 reference rejects unresolved options and mismatched inputs", "[sage2][reference]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor q = rng.normal({1, 3, 8, 64}), k = rng.normal({1, 2, 8, 64}), v = rng.normal({1, 2, 8, 64});
  REQUIRE_THROWS_WITH(ref::attention(q, k.narrow(1, 0, 1), v.narrow(1, 0, 1), {}), ContainsSubstring("resolve"));
  const sage2::Options options = resolved(sage2::QkType::int8, sage2::PvType::fp16, false);
  REQUIRE_THROWS_WITH(ref::attention(q, k, v, options), ContainsSubstring("multiple of key/value heads"));
  REQUIRE_THROWS_WITH(ref::attention(q.narrow(1, 0, 2), k, v.narrow(2, 0, 4), options),
                      ContainsSubstring("and v [1, 2, 4, 64] differ"));
  REQUIRE_THROWS_WITH(ref::attention(q.narrow(1, 0, 2), k, v, options, rng.normal({8})), ContainsSubstring("bias"));
}
