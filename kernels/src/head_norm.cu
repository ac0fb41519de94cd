// layer_norm_heads on CUDA, token by token: a warp holds the heads of one token (up to kGroups * 32 / lanes of
// them) side by side, each head's row on d/8 lanes, 8 elements (16 bytes) per lane. So a warp reads adjacent
// pieces of q or k (a token's heads lie next to each other in a fused QKV projection), each lane loads the
// token's cos and sin and the norm's weight and bias once for all its heads, and every row is read once, reduced
// with shuffles and written once.
#include "head_norm_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kGroups = 12;  // rows of one lane: a warp holds kGroups groups of 32 / lanes heads

// The warps of one token: its heads in chunks of what a warp holds.
__host__ __device__ __forceinline__ int64_t chunks_per_token(const HeadNormArgs& a) {
  const int64_t heads_per_warp = int64_t(kGroups) * (32 / (a.dim / kPieceElements));
  return (a.heads + heads_per_warp - 1) / heads_per_warp;
}

// One piece of a row normed (statistics over the row's `lanes` lanes) and scaled: (v - mean) * rstd * w + b.
// Every lane of the warp calls; a lane past the last head takes part with zeros.
// inv_dim = 1 / dim, exact for a power of two: the product equals the quotient without the division's code.
__device__ __forceinline__ void normed(float (&v)[kPieceElements], int lanes, float inv_dim, float eps,
                                       const float (&w)[kPieceElements], const float (&b)[kPieceElements]) {
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPieceElements; ++i) sum += v[i];
  const float mean = lanes_reduce(sum, Sum(), lanes) * inv_dim;
  float squares = 0.0f;
#pragma unroll
  for (int i = 0; i < kPieceElements; ++i) squares += (v[i] - mean) * (v[i] - mean);
  const float rstd = rsqrtf(lanes_reduce(squares, Sum(), lanes) * inv_dim + eps);
#pragma unroll
  for (int i = 0; i < kPieceElements; ++i) v[i] = (v[i] - mean) * rstd * w[i] + b[i];
}

// x * cos + (-im, re) * sin over (re, im) pairs, each product and the sum rounded on their own as torch's separate
// ops are; v first rounded to T, the norm's output as torch stores it.
template <typename T>
__device__ __forceinline__ void rotate(float (&v)[kPieceElements], const float (&c)[kPieceElements],
                                       const float (&s)[kPieceElements]) {
  round_piece<T>(v);
#pragma unroll
  for (int i = 0; i < kPieceElements; i += 2) {
    const float re = v[i], im = v[i + 1];
    v[i] = __fadd_rn(__fmul_rn(re, c[i]), __fmul_rn(-im, s[i]));
    v[i + 1] = __fadd_rn(__fmul_rn(im, c[i + 1]), __fmul_rn(re, s[i + 1]));
  }
}

__device__ __forceinline__ void load_floats(const float* p, float (&v)[kPieceElements]) {
#pragma unroll
  for (int i = 0; i < kPieceElements; i += 4)
    *reinterpret_cast<float4*>(v + i) = *reinterpret_cast<const float4*>(p + i);
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 2) layer_norm_heads_kernel(const HeadNormArgs a) {
  const int lanes = a.dim / kPieceElements, lane = threadIdx.x % 32, per_group = 32 / lanes;
  const int64_t chunks = chunks_per_token(a), warp = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (warp >= a.batch * a.length * chunks) return;  // the whole warp: its shuffles need no other lanes
  const int64_t token = warp / chunks % a.length, batch = warp / chunks / a.length;
  // The warp's heads from first_head on, group j's from first_head + j * per_group, this lane's every per_group.
  const int first_head = int(warp % chunks) * kGroups * per_group, head = first_head + lane / lanes;
  const int groups = (int(a.heads) - first_head + per_group - 1) / per_group;
  const int rows = head < a.heads ? (int(a.heads) - head + per_group - 1) / per_group : 0;
  const int first = (lane % lanes) * kPieceElements;  // this lane's first element of its rows
  const T* x = static_cast<const T*>(a.x) + batch * a.stride_batch + token * a.stride_token + head * a.stride_head;
  uint4 pieces[kGroups];
#pragma unroll
  for (int j = 0; j < kGroups; ++j)
    if (j < rows) pieces[j] = *reinterpret_cast<const uint4*>(x + j * per_group * a.stride_head + first);

  float w[kPieceElements], b[kPieceElements], c[kPieceElements], s[kPieceElements];
  load_piece(static_cast<const T*>(a.weight) + first, w);
  load_piece(static_cast<const T*>(a.bias) + first, b);
  const bool rotated = a.cos != nullptr && token >= a.first_token;
  if (rotated) {
    load_floats(a.cos + (token - a.first_token) * a.dim + first, c);
    load_floats(a.sin + (token - a.first_token) * a.dim + first, s);
  }
  T* out = static_cast<T*>(a.out) + ((batch * a.heads + head) * a.length + token) * a.dim + first;
  const int64_t out_step = per_group * a.length * a.dim;
  const float inv_dim = 1.0f / float(a.dim);
#pragma unroll
  for (int j = 0; j < kGroups; ++j) {
    if (j >= groups) break;  // the whole warp
    float v[kPieceElements] = {};
    if (j < rows) unpack_piece<T>(pieces[j], v);
    normed(v, lanes, inv_dim, a.eps, w, b);
    if (j >= rows) continue;
    if (rotated) rotate<T>(v, c, s);
    store_piece(out + j * out_step, v);
  }
}

template <typename T>
void launch(const HeadNormArgs& args, cudaStream_t stream) {
  const int64_t warps = args.batch * args.length * chunks_per_token(args);
  layer_norm_heads_kernel<T><<<unsigned((warps + kWarps - 1) / kWarps), kThreads, 0, stream>>>(args);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

void layer_norm_heads(const HeadNormArgs& args, HeadElement element, cudaStream_t stream) {
  if (args.batch == 0 || args.heads == 0 || args.length == 0) return;
  if (element == HeadElement::fp16) launch<__half>(args, stream);
  else launch<__nv_bfloat16>(args, stream);
}

}  // namespace sagevid::kernels::detail
