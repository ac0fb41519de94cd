// Standalone check and timing of the sm_90a SageAttention2 kernel, without libtorch (seconds to build):
//   scripts/build-sm90-harness.sh kernels/src OUTPUT
// `check`: small odd shapes (tails, causal, GQA, both head dims, every P·V mode and granularity) against a
// float64 CPU attention over the same quantized values, with and without the LSE (which changes how the kernel
// sums rows); every output element must be written.
// `time`: kernel-only TOPS at the sage-bench shapes on random quantized data, without the LSE (uniform random bytes;
// SAGEVID_HARNESS_DATA=gaussian: bytes of roughly Gaussian values instead, as sage-bench's quantized inputs, for what
// the data's share of the power under the cap costs). `tail`: what the
// persistent grid's last round costs at CogVideoX1.5-5B and hd128 32k (below). `check128`, `time128`: the same for
// head dim 128 only. `lone [SECONDS]`: the default kernels' time alone, after an idle pause or a copy, and back to
// back (lone_case), after SECONDS back to back. Built with -DSAGEVID_SM90_TILE_TRACE (scripts/gpu-host.sh
// tile-trace), `tile-trace DIR` also writes each key tile's start clock of the first CTAs' warpgroups
// (attention_sm90.h) to DIR, for tools/tile_trace.py.
#include "sm90/attention_sm90.h"
#include "sagevid/kernels/cuda_check.h"
#include "sagevid/kernels/device_info.h"

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace sagevid::kernels::sage2;
using detail::AttentionArgs;

struct Case {
  int batch, q_heads, kv_heads, q_len, kv_len, head_dim;
  bool causal, fp8, per_token;
  int linear_p_share = 0;  // AttentionArgs' (P's linear bytes: FP8, or all of an fp16 P at head dim 64)
};

Granularity granularity_of(const Case& c) { return c.per_token ? Granularity::per_token : Granularity::per_thread; }

template <typename T>
struct DeviceBuffer {
  T* data = nullptr;
  explicit DeviceBuffer(size_t n) { SAGEVID_CUDA_CHECK(cudaMalloc(&data, std::max<size_t>(n, 1) * sizeof(T))); }
  DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    SAGEVID_CUDA_CHECK(cudaMemcpy(data, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() { cudaFree(data); }
  DeviceBuffer(const DeviceBuffer&) = delete;
};

// Quantizes x [heads, len, d] (rows past len are padding: 0) to int8 [heads, padded, d] with symmetric scales
// per group (sage2_layout.h); returns the values and fills scales [heads, groups].
std::vector<int8_t> quantize(const std::vector<float>& x, int heads, int len, int64_t padded, int d, bool is_key,
                             Granularity g, std::vector<float>& scales) {
  const int64_t groups = (is_key ? k_groups_per_block(g) : q_groups_per_block(g)) * (padded / 64);
  std::vector<float> absmax(heads * groups, 0.0f);
  const auto group = [&](int64_t row) { return is_key ? k_group(row, g) : q_group(row, g); };
  for (int h = 0; h < heads; ++h)
    for (int r = 0; r < len; ++r)
      for (int c = 0; c < d; ++c)
        absmax[h * groups + group(r)] =
            std::max(absmax[h * groups + group(r)], std::fabs(x[(int64_t(h) * len + r) * d + c]));
  scales.assign(heads * groups, 1.0f);
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = absmax[i] > 0 ? absmax[i] / kInt8Max : 1.0f;
  std::vector<int8_t> q(int64_t(heads) * padded * d, 0);
  for (int h = 0; h < heads; ++h)
    for (int r = 0; r < len; ++r)
      for (int c = 0; c < d; ++c)
        q[(h * padded + r) * d + c] = int8_t(std::nearbyint(
            std::clamp(x[(int64_t(h) * len + r) * d + c] / scales[h * groups + group(r)], -127.0f, 127.0f)));
  return q;
}

struct Inputs {
  std::vector<int8_t> q, k;
  std::vector<float> q_scale, k_scale, v_scale;
  std::vector<uint8_t> v_bytes;  // FP8 Vᵀ (permuted) or fp16 Vᵀ, [kv heads, d, k padded]
  std::vector<double> v_dequant;  // [kv heads, kv_len, d]: what the kernel's V means
};

Inputs make_inputs(const Case& c, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  const int qh = c.batch * c.q_heads, kh = c.batch * c.kv_heads, d = c.head_dim;
  const int64_t qp = round_up(c.q_len, 64), kp = round_up(c.kv_len, 64);
  const Granularity g = granularity_of(c);
  std::vector<float> q(int64_t(qh) * c.q_len * d), k(int64_t(kh) * c.kv_len * d), v(int64_t(kh) * c.kv_len * d);
  for (float& x : q) x = normal(rng);
  for (float& x : k) x = normal(rng) + 0.5f;  // a shared offset, as keys have
  for (float& x : v) x = normal(rng);
  Inputs in;
  in.q = quantize(q, qh, c.q_len, qp, d, false, g, in.q_scale);
  in.k = quantize(k, kh, c.kv_len, kp, d, true, g, in.k_scale);
  in.v_dequant.assign(v.size(), 0.0);
  if (c.fp8) {
    in.v_bytes.assign(int64_t(kh) * d * kp, 0);
    in.v_scale.assign(int64_t(kh) * d, 1.0f);
    for (int h = 0; h < kh; ++h)
      for (int ch = 0; ch < d; ++ch) {
        float amax = 0;
        for (int n = 0; n < c.kv_len; ++n) amax = std::max(amax, std::fabs(v[(int64_t(h) * c.kv_len + n) * d + ch]));
        const float scale = amax > 0 ? amax / kFp8Max : 1.0f;
        in.v_scale[h * d + ch] = scale;
        for (int n = 0; n < c.kv_len; ++n) {
          const __nv_fp8_e4m3 e(v[(int64_t(h) * c.kv_len + n) * d + ch] / scale);
          const int position = (n & ~31) | kv_permuted_position(n & 31);
          in.v_bytes[(int64_t(h) * d + ch) * kp + position] = e.__x;
          in.v_dequant[(int64_t(h) * c.kv_len + n) * d + ch] = double(float(e)) * scale;
        }
      }
  } else {
    in.v_bytes.assign(int64_t(kh) * d * kp * 2, 0);
    auto* vt = reinterpret_cast<__half*>(in.v_bytes.data());
    for (int h = 0; h < kh; ++h)
      for (int n = 0; n < c.kv_len; ++n)
        for (int ch = 0; ch < d; ++ch) {
          const __half x = __float2half_rn(v[(int64_t(h) * c.kv_len + n) * d + ch]);
          vt[(int64_t(h) * d + ch) * kp + n] = x;
          in.v_dequant[(int64_t(h) * c.kv_len + n) * d + ch] = __half2float(x);
        }
  }
  return in;
}

AttentionArgs make_args(const Case& c, const int8_t* q, const float* qs, const int8_t* k, const float* ks,
                        const void* v, const float* vs, __half* out, float* lse) {
  AttentionArgs a{};
  a.q = q, a.q_scale = qs, a.k = k, a.k_scale = ks, a.v = v, a.v_scale = c.fp8 ? vs : nullptr;
  a.out = out, a.out_type = detail::InputType::fp16;
  a.out_sh = int64_t(c.q_len) * c.head_dim, a.out_sb = a.out_sh * c.q_heads, a.out_si = c.head_dim;
  a.lse = lse;
  a.batch = c.batch, a.q_heads = c.q_heads, a.kv_heads = c.kv_heads, a.q_len = c.q_len, a.kv_len = c.kv_len;
  a.head_dim = c.head_dim;
  a.granularity = granularity_of(c);
  a.fp8_pv = c.fp8, a.causal = c.causal, a.pv_flush_tiles = 1;
  a.linear_p_share = c.linear_p_share;
  a.score_scale = float(1.0 / std::sqrt(double(c.head_dim)) * kLog2e);
  return a;
}

// A call's work counters and partial rows, where the kernels take them (an A/B copy of an older tree lacks either
// field, and is called as it was).
template <typename Args>
auto give_work_counter(Args& args, int* counter, int) -> decltype(args.work_counter = counter, void()) {
  args.work_counter = counter;
}
template <typename Args>
void give_work_counter(Args&, int*, long) {}
template <typename Args>
auto give_partial_rows(Args& args, float* rows, int) -> decltype(args.partial_rows = rows, void()) {
  args.partial_rows = rows;
}
template <typename Args>
void give_partial_rows(Args&, float*, long) {}

struct Attention {
  DeviceBuffer<int> work_counters{2};
  // Enough for any call on a device of up to 256 multiprocessors (an older tree has no partial_rows_floats to ask).
  DeviceBuffer<float> partial_rows{256 * 2 * 68 * 128};
  void operator()(AttentionArgs args) {
    give_work_counter(args, work_counters.data, 0);
    give_partial_rows(args, partial_rows.data, 0);
    sm90::attention(args, nullptr);
  }
};

struct Reference {
  std::vector<double> out;  // [B, H_q, N_q, D]
  std::vector<double> lse;  // [B, H_q, N_q], base 2
};

// Float64 attention over the quantized values the kernel reads, a (batch, head) pair a task on every core (the
// larger checks hold about 1e10 multiply-adds).
Reference reference(const Case& c, const Inputs& in) {
  const int d = c.head_dim;
  const int64_t qp = round_up(c.q_len, 64), kp = round_up(c.kv_len, 64);
  const Granularity g = granularity_of(c);
  const int64_t qg = q_groups_per_block(g) * (qp / 64), kg = k_groups_per_block(g) * (kp / 64);
  const int heads = c.batch * c.q_heads;
  Reference ref{std::vector<double>(int64_t(heads) * c.q_len * d), std::vector<double>(int64_t(heads) * c.q_len)};
  const auto head = [&](int qh) {
    const int b = qh / c.q_heads, kh = b * c.kv_heads + qh % c.q_heads / (c.q_heads / c.kv_heads);
    std::vector<double> score(c.kv_len), o(d);
    for (int i = 0; i < c.q_len; ++i) {
      const int8_t* q_row = &in.q[(qh * qp + i) * d];
      const int keys = c.causal ? std::min(i + 1, c.kv_len) : c.kv_len;  // the keys row i sees
      double mx = -INFINITY;
      for (int j = 0; j < keys; ++j) {
        const int8_t* k_row = &in.k[(kh * kp + j) * d];
        int32_t dot = 0;
        for (int ch = 0; ch < d; ++ch) dot += int32_t(q_row[ch]) * int32_t(k_row[ch]);
        score[j] = double(dot) * in.q_scale[qh * qg + q_group(i, g)] * in.k_scale[kh * kg + k_group(j, g)] /
                   std::sqrt(double(d));
        mx = std::max(mx, score[j]);
      }
      double sum = 0;
      std::fill(o.begin(), o.end(), 0.0);
      for (int j = 0; j < keys; ++j) {
        const double weight = std::exp(score[j] - mx);
        const double* v_row = &in.v_dequant[(int64_t(kh) * c.kv_len + j) * d];
        sum += weight;
        for (int ch = 0; ch < d; ++ch) o[ch] += weight * v_row[ch];
      }
      const int64_t row = int64_t(qh) * c.q_len + i;
      for (int ch = 0; ch < d; ++ch) ref.out[row * d + ch] = o[ch] / sum;
      ref.lse[row] = (mx + std::log(sum)) / std::log(2.0);
    }
  };
  std::atomic<int> next{0};
  std::vector<std::thread> workers(std::max(1u, std::thread::hardware_concurrency()));
  for (std::thread& worker : workers)
    worker = std::thread([&] {
      for (int qh = next++; qh < heads; qh = next++) head(qh);
    });
  for (std::thread& worker : workers) worker.join();
  return ref;
}

// Returns true when the kernel matches the float64 reference within the mode's tolerance.
bool check(const Case& c, std::mt19937& rng) {
  const Inputs in = make_inputs(c, rng);
  const int d = c.head_dim;
  const int64_t out_elems = int64_t(c.batch) * c.q_heads * c.q_len * d;
  DeviceBuffer<int8_t> q(in.q), k(in.k);
  DeviceBuffer<float> qs(in.q_scale), ks(in.k_scale), vs(in.v_scale);
  DeviceBuffer<uint8_t> v(in.v_bytes);
  DeviceBuffer<__half> out(out_elems);
  DeviceBuffer<float> lse(int64_t(c.batch) * c.q_heads * c.q_len);
  SAGEVID_CUDA_CHECK(cudaMemset(out.data, 0xFF, out_elems * sizeof(__half)));  // NaN: unwritten shows
  SAGEVID_CUDA_CHECK(cudaMemset(lse.data, 0xFF, int64_t(c.batch) * c.q_heads * c.q_len * sizeof(float)));
  const AttentionArgs args = make_args(c, q.data, qs.data, k.data, ks.data, v.data, vs.data, out.data, lse.data);
  Attention attention;
  attention(args);
  SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<__half> got(out_elems), got_without_lse(out_elems);
  std::vector<float> got_lse(int64_t(c.batch) * c.q_heads * c.q_len);
  SAGEVID_CUDA_CHECK(cudaMemcpy(got.data(), out.data, got.size() * sizeof(__half), cudaMemcpyDeviceToHost));
  SAGEVID_CUDA_CHECK(cudaMemcpy(got_lse.data(), lse.data, got_lse.size() * sizeof(float), cudaMemcpyDeviceToHost));
  // Again without the LSE (the kernel may then take the rows' sums from the tensor cores), into a poisoned output.
  SAGEVID_CUDA_CHECK(cudaMemset(out.data, 0xFF, out_elems * sizeof(__half)));
  attention(make_args(c, q.data, qs.data, k.data, ks.data, v.data, vs.data, out.data, nullptr));
  SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
  SAGEVID_CUDA_CHECK(cudaMemcpy(got_without_lse.data(), out.data, got.size() * sizeof(__half), cudaMemcpyDeviceToHost));

  const Reference ref = reference(c, in);
  double err = 0, err_without_lse = 0, norm = 0, lse_err = 0;
  int64_t bad = 0;
  for (size_t at = 0; at < ref.out.size(); ++at) {
    const float x = __half2float(got[at]), y = __half2float(got_without_lse[at]);
    if (!std::isfinite(x) || !std::isfinite(y)) ++bad;
    err += std::fabs(x - ref.out[at]), err_without_lse += std::fabs(y - ref.out[at]), norm += std::fabs(ref.out[at]);
  }
  for (size_t row = 0; row < ref.lse.size(); ++row) {
    if (!std::isfinite(got_lse[row])) ++bad;  // (every row sees a key)
    lse_err = std::max(lse_err, std::fabs(got_lse[row] - ref.lse[row]));
  }
  // fp16 P from linear_f16 (without the LSE): its ratio to 2^y spreads by 1.8%, E4M3's rounding of P by 2.6%.
  const double rel = err / norm, rel_without_lse = err_without_lse / norm, tolerance = c.fp8 ? 0.04 : 0.004;
  const double tolerance_without_lse = c.linear_p_share == detail::kLinearAll && !c.fp8 ? 0.025 : tolerance;
  const bool ok = bad == 0 && rel <= tolerance && rel_without_lse <= tolerance_without_lse && lse_err < 0.01;
  std::printf(
      "%s B%d Hq%d Hkv%d Nq%d Nk%d D%d %s %s %s: rel L1 %.5f (without LSE %.5f), max |LSE err| %.2e, non-finite "
      "%lld\n",
      ok ? "ok  " : "FAIL", c.batch, c.q_heads, c.kv_heads, c.q_len, c.kv_len, d, c.causal ? "causal" : "full",
      c.fp8 ? "fp8" : "fp16", c.per_token ? "per-token" : "per-thread", rel, rel_without_lse, lse_err, (long long)bad);
  return ok;
}

// Byte i's random bits under `seed` (the fill kernels' one hash).
__device__ __forceinline__ uint32_t hash_bits(int64_t i, uint32_t seed) {
  uint32_t x = uint32_t(i) * 2654435761u ^ seed;
  x ^= x >> 15, x *= 2246822519u, x ^= x >> 13;
  return x;
}

__global__ void fill_random(uint8_t* p, int64_t n, uint32_t seed, int mask, int offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = uint8_t(((hash_bits(i, seed) >> 8) & mask) + offset);
}

// Roughly Gaussian bytes (a sum of four uniform ones, σ ≈ 37 of INT8's ±127, the spread of a per-block quantized
// Gaussian), or their E4M3 bytes at 448/127 the scale (FP8 V quantized to its channels' maxima).
__global__ void fill_gaussian(uint8_t* p, int64_t n, uint32_t seed, bool e4m3) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t x = hash_bits(i, seed);
    x *= 3266489917u, x ^= x >> 16;  // mixed on, so that all four bytes are independent
    const int sum = int(x & 255) + int((x >> 8) & 255) + int((x >> 16) & 255) + int(x >> 24) - 510;
    const float value = float(sum) * 0.25f;  // within ±127.5
    p[i] =
        e4m3 ? __nv_fp8_e4m3(value * (448.0f / 127.0f)).__x : uint8_t(int8_t(max(-127.0f, min(127.0f, rintf(value)))));
  }
}

// SAGEVID_HARNESS_DATA=gaussian: the timed rows on fill_gaussian's bytes instead of uniform ones (read once).
bool gaussian_data() {
  static const bool gaussian = [] {
    const char* data = std::getenv("SAGEVID_HARNESS_DATA");
    return data && std::string(data) == "gaussian";
  }();
  return gaussian;
}

#ifdef SAGEVID_SM90_TILE_TRACE
std::string g_trace_path;  // tile-trace: where time_case writes its traced call's clocks (empty: no trace)

// One more call with the key tiles' start clocks recorded, written to `path` one a line ([CTA][warpgroup][tile]).
void write_tile_trace(Attention& attention, const AttentionArgs& args, const std::string& path) {
  constexpr int64_t kCount = int64_t(sm90::kTraceCtas) * sm90::kTraceWarpgroups * sm90::kTraceTiles;
  DeviceBuffer<long long> trace(kCount);
  SAGEVID_CUDA_CHECK(cudaMemset(trace.data, 0, kCount * sizeof(long long)));
  sm90::set_tile_trace(trace.data);
  attention(args);
  sm90::set_tile_trace(nullptr);
  std::vector<long long> host(kCount);
  SAGEVID_CUDA_CHECK(cudaMemcpy(host.data(), trace.data, kCount * sizeof(long long), cudaMemcpyDeviceToHost));
  FILE* file = std::fopen(path.c_str(), "w");
  if (!file) throw std::runtime_error("tile-trace: cannot write " + path);
  for (const long long clock : host) std::fprintf(file, "%lld\n", clock);
  std::fclose(file);
}
#endif

// Q's and K's INT8 scales for the timed data. Gaussian: those of a N(0, 1) block (its absmax ≈ 3.5 over 127), so
// that P spreads as in sage-bench.
float qk_scale() { return gaussian_data() ? 3.5f / 127.0f : 0.01f; }

// A timed case's device data: random quantized Q, K, V of its shape (uniform bytes, or Gaussian ones with
// SAGEVID_HARNESS_DATA=gaussian), its scales and output, and the call's arguments.
struct TimedData {
  int64_t q_bytes, k_bytes, v_bytes;  // quantized, rows padded to whole 64-row blocks
  int64_t q_groups, k_groups;         // their scales
  DeviceBuffer<uint8_t> q, k, v;
  DeviceBuffer<float> qs, ks, vs;
  DeviceBuffer<__half> out;
  AttentionArgs args;

  explicit TimedData(const Case& c)
      : q_bytes(int64_t(c.batch) * c.q_heads * round_up(c.q_len, 64) * c.head_dim),
        k_bytes(int64_t(c.batch) * c.kv_heads * round_up(c.kv_len, 64) * c.head_dim),
        v_bytes(k_bytes * (c.fp8 ? 1 : 2)),
        q_groups(int64_t(c.batch) * c.q_heads * q_groups_per_block(granularity_of(c)) * (round_up(c.q_len, 64) / 64)),
        k_groups(int64_t(c.batch) * c.kv_heads * k_groups_per_block(granularity_of(c)) * (round_up(c.kv_len, 64) / 64)),
        q(q_bytes),
        k(k_bytes),
        v(v_bytes),
        qs(std::vector<float>(q_groups, qk_scale())),
        ks(std::vector<float>(k_groups, qk_scale())),
        vs(std::vector<float>(int64_t(c.batch) * c.kv_heads * c.head_dim, 0.01f)),
        out(int64_t(c.batch) * c.q_heads * c.q_len * c.head_dim) {
    if (gaussian_data()) {
      fill_gaussian<<<1024, 256>>>(q.data, q_bytes, 1, false);
      fill_gaussian<<<1024, 256>>>(k.data, k_bytes, 2, false);
    } else {
      fill_random<<<1024, 256>>>(q.data, q_bytes, 1, 255, 0);
      fill_random<<<1024, 256>>>(k.data, k_bytes, 2, 255, 0);
    }
    // FP8 bytes in ±[2^-3, 2^3) (no NaN patterns); fp16 bytes: high bytes 0x30..0x3F give values in ±[0.125, 2).
    if (gaussian_data() && c.fp8) fill_gaussian<<<1024, 256>>>(v.data, v_bytes, 3, true);
    else fill_random<<<1024, 256>>>(v.data, v_bytes, 3, c.fp8 ? 0x3F : 0x0F, c.fp8 ? 0x20 : 0x30);
    SAGEVID_CUDA_CHECK_LAUNCH();
    args = make_args(c, reinterpret_cast<int8_t*>(q.data), qs.data, reinterpret_cast<int8_t*>(k.data), ks.data, v.data,
                     vs.data, out.data, nullptr);
  }
};

double case_ops(const Case& c) {
  return 4.0 * c.batch * c.q_heads * double(c.q_len) * c.kv_len * c.head_dim * (c.causal ? 0.5 : 1.0);
}

// Milliseconds between two events of the current (default) stream, once the second has passed.
float elapsed_ms(cudaEvent_t from, cudaEvent_t to) {
  SAGEVID_CUDA_CHECK(cudaEventSynchronize(to));
  float ms = 0;
  SAGEVID_CUDA_CHECK(cudaEventElapsedTime(&ms, from, to));
  return ms;
}

float median_of(std::vector<float> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

void time_case(const char* name, const Case& c, int warmups = 3, int runs = 15) {
  const TimedData data(c);
  const AttentionArgs& args = data.args;
  Attention attention;
  cudaEvent_t start, stop;
  SAGEVID_CUDA_CHECK(cudaEventCreate(&start));
  SAGEVID_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmups; ++i) attention(args);
#ifdef SAGEVID_SM90_TILE_TRACE
  if (!g_trace_path.empty()) write_tile_trace(attention, args, g_trace_path);
#endif
  std::vector<float> ms;
  for (int i = 0; i < runs; ++i) {
    SAGEVID_CUDA_CHECK(cudaEventRecord(start));
    attention(args);
    SAGEVID_CUDA_CHECK(cudaEventRecord(stop));
    ms.push_back(elapsed_ms(start, stop));
  }
  const double median = median_of(ms);
  const double ops = case_ops(c);
  const char* p_names[] = {"exact", "quarter-linear", "half-linear", "linear"};
  std::printf("| %s | %s | %s | %s | %.3f | %.1f |\n", name, c.fp8 ? "fp8" : "fp16",
              c.per_token ? "per-token" : "per-thread", p_names[c.linear_p_share], median, ops / median / 1e9);
  SAGEVID_CUDA_CHECK(cudaEventDestroy(start));
  SAGEVID_CUDA_CHECK(cudaEventDestroy(stop));
}

// `lone`: one kernel's time in the settings sage-bench's tables mix: alone after the device drained (its lone
// column), after an idle pause, after a copy as long as the preprocessing (a lone call's kernel follows its
// preprocessing), and back to back with and without such copies between (the back-to-back table). The GPU first
// runs the kernel back to back for `heat_seconds` (sage-bench's rows run under the power cap for minutes), then the
// settings take turns, kRounds rounds; each kernel is timed between events around it alone; medians. Last, lone
// calls after a light phase, in sage-bench's order.
void lone_case(const char* name, const Case& c, double heat_seconds) {
  const TimedData data(c);
  Attention attention;
  constexpr int kRounds = 15, kQueued = 5;
  constexpr size_t kCopyBytes = size_t(256) << 20;  // read and written: ~0.2 ms, a preprocessing's DRAM traffic
  DeviceBuffer<uint8_t> copy_from(kCopyBytes), copy_to(kCopyBytes);
  SAGEVID_CUDA_CHECK(cudaMemset(copy_from.data, 1, kCopyBytes));
  std::vector<cudaEvent_t> events(2 * kQueued);
  for (cudaEvent_t& e : events) SAGEVID_CUDA_CHECK(cudaEventCreate(&e));
  const auto copy = [&] {
    SAGEVID_CUDA_CHECK(cudaMemcpyAsync(copy_to.data, copy_from.data, kCopyBytes, cudaMemcpyDeviceToDevice));
  };
  // One run, the device drained first: [before()] event, kernel, event.
  const auto lone_run = [&](const std::function<void()>& before) {
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
    if (before) before();
    SAGEVID_CUDA_CHECK(cudaEventRecord(events[0]));
    attention(data.args);
    SAGEVID_CUDA_CHECK(cudaEventRecord(events[1]));
    return elapsed_ms(events[0], events[1]);
  };
  // kQueued calls queued at once ([copy] before each), each between two events: their median.
  const auto queued_run = [&](bool with_copies) {
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
    for (int i = 0; i < kQueued; ++i) {
      if (with_copies) copy();
      SAGEVID_CUDA_CHECK(cudaEventRecord(events[2 * i]));
      attention(data.args);
      SAGEVID_CUDA_CHECK(cudaEventRecord(events[2 * i + 1]));
    }
    std::vector<float> ms;
    for (int i = 0; i < kQueued; ++i) ms.push_back(elapsed_ms(events[2 * i], events[2 * i + 1]));
    return median_of(ms);
  };
  const auto heat_until = std::chrono::steady_clock::now() + std::chrono::duration<double>(heat_seconds);
  do {
    for (int i = 0; i < 20; ++i) attention(data.args);
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
  } while (std::chrono::steady_clock::now() < heat_until);
  std::vector<float> lone, after_idle, after_copy, queued, queued_copies;
  for (int r = 0; r < kRounds; ++r) {
    lone.push_back(lone_run(nullptr));
    after_idle.push_back(lone_run([] { std::this_thread::sleep_for(std::chrono::milliseconds(2)); }));
    after_copy.push_back(lone_run(copy));
    queued.push_back(queued_run(false));
    queued_copies.push_back(queued_run(true));
  }
  // sage-bench's order: its lone column times 5 + 20 lone calls right after as many lone runs of the preprocessing
  // alone (here: copies), a light phase under which the clocks climb.
  std::vector<float> after_light;
  for (int i = 0; i < 25; ++i) {
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
    copy();
  }
  for (int i = 0; i < 25; ++i) {
    const float ms = lone_run(nullptr);
    if (i >= 5) after_light.push_back(ms);
  }
  const double tera = case_ops(c) / 1e9;
  std::printf("| %s |", name);
  for (const auto* times : {&lone, &after_idle, &after_copy, &queued, &queued_copies, &after_light}) {
    const float ms = median_of(*times);
    std::printf(" %.3f (%.0f) |", ms, tera / ms);
  }
  std::printf("\n");
  std::fflush(stdout);
  for (cudaEvent_t e : events) SAGEVID_CUDA_CHECK(cudaEventDestroy(e));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "all";
  int failures = 0, passes = 0;
  // check128 / time128: only the head-dim-128 cases and rows (a call that changes only those kernels).
  const bool only128 = what == "check128" || what == "time128";
  if (what == "check" || what == "all" || what == "check128") {
    std::mt19937 rng(std::random_device{}());
    std::vector<Case> cases;
    for (int d : {64, 128})
      for (bool fp8 : {false, true})
        for (bool per_token : {true, false}) {
          cases.push_back({1, 2, 2, 200, 333, d, false, fp8, per_token});
          cases.push_back({2, 4, 2, 130, 130, d, true, fp8, per_token});  // GQA, causal
        }
    cases.push_back({1, 2, 1, 64, 1000, 64, false, false, true});  // many tiles: the ring wraps
    cases.push_back({1, 1, 1, 1, 1, 64, false, false, true});
    cases.push_back({1, 2, 2, 513, 77, 128, true, true, false});  // more queries than keys
    cases.push_back({2, 32, 16, 700, 700, 64, true, true, false});  // more CTAs than fit the device at once
    cases.push_back(
        {1, 2, 2, 130, 4000, 64, false, true, false, detail::kLinearAll});  // P's linear bytes (tolerance: FP8's)
    cases.push_back({1, 2, 2, 130, 4000, 64, false, true, false, 1});  // a quarter of them
    cases.push_back({1, 2, 2, 130, 4000, 64, false, false, false, detail::kLinearAll});  // fp16 P from linear_f16
    cases.push_back({2, 4, 2, 300, 1000, 64, true, false, false, detail::kLinearAll});  // the same, GQA and causal
    cases.push_back({2, 4, 4, 700, 1500, 128, false, true, false});  // many tiles at head dim 128
    cases.push_back({1, 2, 2, 130, 4000, 128, false, true, false, detail::kLinearAll});
    cases.push_back({1, 3, 3, 200, 2000, 128, false, true, false});
    cases.push_back({2, 4, 2, 300, 500, 128, false, true, false});  // GQA
    // Each head's last work tile ragged (one query block of four, two of four, one of three) and the whole
    // tiles one round of the multiprocessors: the ragged-tail kernel, its idle warpgroups sharing the blocks' key
    // tiles, beside the main kernel.
    const int sms = sagevid::kernels::multiprocessor_count(0);
    cases.push_back({1, sms, sms, 320, 2000, 64, false, true, false});
    cases.push_back({2, sms / 2, sms / 2, 384, 700, 64, false, true, false});
    cases.push_back({1, sms, sms, 256, 1500, 128, false, true, false});
    // Causal at head dim 128 with the ring wrapping: 16 query blocks (not a multiple of three, as a CTA of several
    // warpgroups groups them), rows that end at different key tiles; more queries than keys, and linear P.
    cases.push_back({1, 2, 1, 1000, 1000, 128, true, true, false});
    cases.push_back({1, 2, 2, 1100, 900, 128, true, true, false, detail::kLinearAll});
    // More work tiles than multiprocessors, so that each persistent CTA of several warpgroups runs several (in
    // the ring's first copies, too), at both head dims (64: with linear shares of P): GQA; causal, whose work tiles
    // differ in key tiles (those CTAs take head dim 64's causal calls from 16k keys on, the one-warpgroup CTAs
    // below, and every causal call at 128: the last case's rows see at most its first 300 keys); one query block a
    // work tile, whose other warpgroups only give stages back.
    for (const int d : {64, 128}) {
      cases.push_back({4, 48, 12, 200, 300, d, false, true, false});
      cases.push_back({4, 48, 48, 200, 300, d, true, true, false, d == 64 ? 1 : 0});
      cases.push_back({1, 140, 140, 64, 1000, d, false, true, false, d == 64 ? 2 : 0});
      cases.push_back({2, 48, 2, 300, 16384, d, true, true, false});
    }
    for (const Case& c : cases)
      if (!only128 || c.head_dim == 128) (check(c, rng) ? passes : failures) += 1;
    std::printf("%d passed, %d failed\n", passes, failures);
  }
  if (what == "time" || what == "all" || what == "time128") {
    const auto time_row = [&](const char* name, const Case& c) {  // time128: head dim 128's rows alone
      if (!only128 || c.head_dim == 128) time_case(name, c);
    };
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    for (bool fp8 : {false, true})
      for (bool per_token : {true, false})
        time_row("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, fp8, per_token});
    time_row("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, true, false, 1});
    time_row("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, true, false, detail::kLinearAll});
    time_row("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, false, false, detail::kLinearAll});
    time_row("CogVideoX1.5-5B", {1, 48, 48, 45106, 45106, 64, false, true, false});
    time_row("hd64 8k", {4, 32, 32, 8192, 8192, 64, false, false, false, detail::kLinearAll});
    time_row("hd64 8k causal", {4, 32, 32, 8192, 8192, 64, true, false, false, detail::kLinearAll});
    time_row("hd64 32k", {1, 32, 32, 32768, 32768, 64, false, false, false, detail::kLinearAll});
    time_row("hd64 8k", {4, 32, 32, 8192, 8192, 64, false, true, false});
    time_row("hd64 8k causal", {4, 32, 32, 8192, 8192, 64, true, true, false});
    time_row("hd64 32k", {1, 32, 32, 32768, 32768, 64, false, true, false});
    time_row("hd64 32k causal", {1, 32, 32, 32768, 32768, 64, true, true, false});
    time_row("hd128 8k", {4, 32, 32, 8192, 8192, 128, false, true, false});
    time_row("hd128 32k", {1, 32, 32, 32768, 32768, 128, false, true, false});
    time_row("hd128 32k", {1, 32, 32, 32768, 32768, 128, false, true, false, detail::kLinearAll});
    time_row("hd128 8k causal", {4, 32, 32, 8192, 8192, 128, true, true, false});
    time_row("hd128 32k causal", {1, 32, 32, 32768, 32768, 128, true, true, false});
    time_row("hd128 8k", {4, 32, 32, 8192, 8192, 128, false, false, true});
  }
  // One warm-up and one run of the shapes worth a profile (scripts/gpu-host.sh profile-attention).
  if (what == "profile") {
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    time_case("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, true, false}, 1, 1);
    time_case("hd64 8k causal", {4, 32, 32, 8192, 8192, 64, true, true, false}, 1, 1);
  }
  if (what == "profile-8k-causal") {  // head dim 64's causal row alone: the one-warpgroup CTAs (under 16k keys)
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    time_case("hd64 8k causal", {4, 32, 32, 8192, 8192, 64, true, true, false}, 1, 1);
  }
#ifdef SAGEVID_SM90_TILE_TRACE
  // The persistent CTAs at CogVideoX-2B's and hd128 32k's shapes, their queries cut to whole work tiles (every
  // warpgroup computes every key tile, so that the warpgroups' tile indices line up).
  if (what == "tile-trace") {
    const std::string dir = argc > 2 ? argv[2] : ".";
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    g_trace_path = dir + "/tile-trace-hd64.txt";
    time_case("hd64 N 17664 (traced)", {2, 30, 30, 17664, 17664, 64, false, true, false}, 2, 5);
    g_trace_path = dir + "/tile-trace-hd128.txt";
    time_case("hd128 N 32640 x 32k (traced)", {1, 32, 32, 32640, 32768, 128, false, true, false}, 2, 5);
    g_trace_path.clear();
  }
#endif
  if (what == "profile128") {  // the head-dim-128 target shape
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    time_case("hd128 32k", {1, 32, 32, 32768, 32768, 128, false, true, false}, 1, 1);
  }
  if (what == "profile128-8k") {  // head dim 128 at 8k: the persistent CTAs' work tiles a quarter of 32k's
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    time_case("hd128 8k", {4, 32, 32, 8192, 8192, 128, false, true, false}, 1, 1);
  }
  if (what == "profile128-8k-causal") {  // the same, causal (the persistent CTAs since 2026-12-05)
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    time_case("hd128 8k causal", {4, 32, 32, 8192, 8192, 128, true, true, false}, 1, 1);
  }
  // The FP8 default against the keys a work tile holds, at equal work tiles in all (B·H·N/64 query blocks): what a
  // work tile's start and end cost, from how TOPS falls with N.
  if (what == "scaling") {
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    for (const int d : {64, 128})
      for (const bool causal : {false, true})
        for (const int n : {4096, 8192, 16384, 32768}) {
          const std::string name =
              "hd" + std::to_string(d) + " " + std::to_string(n / 1024) + "k" + (causal ? " causal" : "");
          time_case(name.c_str(), {1, 32 * 32768 / n, 32 * 32768 / n, n, n, d, causal, true, false});
        }
  }
  // The persistent grid's tail: the FP8 default over the same keys at query lengths whose work tiles fill the
  // grid's rounds exactly (no tail: 704 query blocks a head at CogVideoX1.5-5B, 495 at hd128 32k) and at the
  // benchmark's (CogVideoX1.5-5B's 705: each head's last tile one query block of four, a last round of those alone;
  // hd128 32k's 512: two of three), and 700 (a last round of 84 whole tiles). TOPS scale with query blocks over
  // time, so a row's shortfall against the tail-free one is its tail (on a 132-multiprocessor GPU).
  if (what == "tail") {
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    for (const int q_len : {45056, 45106, 44800}) {
      const std::string name = "CogVideoX1.5-5B q" + std::to_string(q_len);
      time_case(name.c_str(), {1, 48, 48, q_len, 45106, 64, false, true, false});
    }
    for (const int q_len : {31680, 32768}) {
      const std::string name = "hd128 32k q" + std::to_string(q_len);
      time_case(name.c_str(), {1, 32, 32, q_len, 32768, 128, false, true, false});
    }
  }
  // The default FP8 kernels at the rows issue 14 counts, a few launches each, for ncu at locked clocks
  // (scripts/sm90-ab.sh with AB_LOCKED: a kernel's time without the power cap's clock swings, which at head dim 64
  // spread a row by more than a change in the loop's order moves it). Head dim 128's rows: a control where a head dim
  // 64 change leaves the code alone.
  if (what == "locked") {
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    time_case("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, true, false}, 1, 3);
    time_case("CogVideoX1.5-5B", {1, 48, 48, 45106, 45106, 64, false, true, false}, 1, 3);
    time_case("hd64 8k", {4, 32, 32, 8192, 8192, 64, false, true, false}, 1, 3);
    time_case("hd64 8k causal", {4, 32, 32, 8192, 8192, 64, true, true, false}, 1, 3);
    time_case("hd64 32k", {1, 32, 32, 32768, 32768, 64, false, true, false}, 1, 3);
    time_case("hd128 32k", {1, 32, 32, 32768, 32768, 128, false, true, false}, 1, 3);
    time_case("hd128 8k causal", {4, 32, 32, 8192, 8192, 128, true, true, false}, 1, 3);
    time_case("hd128 32k causal", {1, 32, 32, 32768, 32768, 128, true, true, false}, 1, 3);
  }
  if (what == "lone") {  // the default FP8 kernels: lone, after an idle pause or a copy, back to back (lone_case)
    std::printf(
        "| shape (FP8 per-thread, exact P) | lone ms (TOPS) | after 2 ms idle | after a 256 MiB copy | "
        "back to back | back to back, a copy before each | lone after 25 lone copies |\n"
        "|---|---|---|---|---|---|---|\n");
    const double heat = argc > 2 ? std::atof(argv[2]) : 0.0;  // seconds back to back before each row
    lone_case("hd64 8k causal", {4, 32, 32, 8192, 8192, 64, true, true, false}, heat);
    lone_case("hd64 8k", {4, 32, 32, 8192, 8192, 64, false, true, false}, heat);
    lone_case("hd128 8k causal", {4, 32, 32, 8192, 8192, 128, true, true, false}, heat);
    lone_case("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, true, false}, heat);
  }
  if (what == "profile16") {  // fp16 linear P at CogVideoX-2B: where its serial chain waits
    std::printf("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|\n");
    time_case("CogVideoX-2B", {2, 30, 30, 17776, 17776, 64, false, false, false, detail::kLinearAll}, 1, 1);
  }
  return failures == 0 ? 0 : 1;
}
