// The wgmma + TMA SageAttention2 kernel (sm_90a). One CTA = one warpgroup = 64 query rows, against
// 128-key tiles that the TMA streams through a ring of shared-memory stages. Per tile:
//   1. S = Q_int8 · K_int8ᵀ on the tensor cores (wgmma m64n128k32, s32), both operands in shared memory;
//   2. dequantize: the k-scale multiplies each score, the row's q-scale (x sm_scale x log2 e) rides in
//      the softmax FMA; tiles at the end of the keys or on the causal diagonal are masked;
//   3. online softmax in base 2, the row's 128 scores spread over the 4 lanes of a quad (PExponent: P's FP8 or
//      fp16 bits read off the exponent instead, on whole tiles: softmax.cuh);
//   4. O += P · V (wgmma, P from registers): FP16, or FP8 (P x 448, V scaled per channel) into a fresh
//      accumulator added into the FP32 output each tile (two-level accumulation); at head dim 64 the FP8
//      products are issued per 64 keys, the first half's before the second half's exponentials are done. With
//      FP8, unless the caller wants the LSE, the rows' sums of P come from the same products (Vᵀ extended by 8
//      rows of ones) instead of an add per score.
// Several CTAs share a multiprocessor (registers allow four at head dim 64), so one's softmax runs while
// another's products are on the tensor cores. In the per-thread modes without the LSE (FP8 with the tensor-core sums,
// and head dim 64's fp16 linear P) the warpgroups the registers allow a multiprocessor (three at head dim 128, four
// at 64) form one CTA instead (kWarpgroups), consecutive query blocks on one deeper ring: a third or a quarter of the
// copies from L2, whose energy the power cap the kernel runs under counts. That CTA is persistent, running work tile
// after work tile on the same ring, so that no multiprocessor waits for a CTA's start or end (a last round that would
// leave multiprocessors idle runs in parts of its tiles' warpgroups: work_plan.h); at head dim 64 causal
// calls over few keys keep the one-warpgroup CTAs (launch_shared_ring). The layouts measured against this one:
// docs/sm90-attention.md.
#include "attention_sm90.h"
#include "../sage2_device.cuh"
#include "../side_launch.h"
#include "partial_rows.cuh"
#include "softmax.cuh"
#include "tile_order.cuh"
#include "tma.cuh"
#include "wgmma.cuh"
#include "work_plan.h"
#include "sagevid/kernels/cuda_check.h"
#include "sagevid/kernels/device_info.h"

#include <cudaTypedefs.h>

#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace sagevid::kernels::sage2::sm90 {
namespace {

using detail::AttentionArgs;

#ifdef SAGEVID_SM90_TILE_TRACE
// Diagnostic builds only (scripts/gpu-host.sh tile-trace): the SM clock at the start of each of the first kTraceTiles
// key tiles of every warpgroup of the first kTraceCtas persistent CTAs, into the buffer set_tile_trace names (none:
// nothing).
__device__ long long* g_tile_trace;
#endif

constexpr int kThreads = 128;  // one warpgroup
// Named barriers: 1 + w is warpgroup w's own; from kMergeBarriers on, two for each query block of the ragged tail
// whose key tiles warpgroups share.
constexpr int kMergeBarriers = 5;
// The kinds of key tile (the kernel's key_tile, which takes one as a type): general (masked where keys end or, causal,
// past a row's diagonal; any k-scales), uniform (no mask, a k-scale per 64-key half), and a causal diagonal computed
// as a uniform tile with the mask.
enum class TileKind { general, uniform, causal_diagonal };
constexpr std::integral_constant<TileKind, TileKind::general> kGeneralTile{};
constexpr std::integral_constant<TileKind, TileKind::uniform> kUniformTile{};
constexpr std::integral_constant<TileKind, TileKind::causal_diagonal> kDiagonalTile{};
// Stages of the K/V ring: three where they still fit four CTAs in shared memory (head dim 64, FP8 Vᵀ), so that
// a tile's copy is issued two tiles before its products need it; not per-token, whose registers the third
// stage's bookkeeping spills.
template <int kHeadDim, bool kFp8Pv, bool kPerToken>
constexpr int kStages = kHeadDim == 64 && kFp8Pv && !kPerToken ? 3 : 2;
constexpr int kVSwizzle = 128;  // Vᵀ tiles: 128-byte rows (128 FP8 keys, or 64 fp16 keys per half)
// CTAs per multiprocessor the register budget is held to, where ptxas would otherwise take a few registers too
// many for them (a few bytes then spill, at most one local load a tile): the overlap of one CTA's softmax with
// another's products needs them. 0: no bound (head dim 64 per-thread FP16 fits four CTAs by itself, and its
// code is faster unbounded).
template <int kHeadDim, bool kFp8Pv, bool kPerToken>
constexpr int kResidentCtas = kHeadDim == 128       ? 3
                              : kPerToken || kFp8Pv ? 4
                                                    : 0;

// The tiles sit at multiples of 1 KB from the base (the 128-byte swizzle's atom), which the declaration aligns.
template <int kHeadDim, bool kFp8Pv, bool kPerToken, bool kTensorSums, int kWarpgroups = 1>
struct Smem {
  // Warpgroups of one CTA share one ring, deep enough (the shared memory of three one-warpgroup CTAs) that one
  // can run tiles ahead of another.
  static constexpr int kStages = kWarpgroups == 4  ? (kFp8Pv ? 12 : 8)
                                 : kWarpgroups > 1 ? 6
                                                   : sm90::kStages<kHeadDim, kFp8Pv, kPerToken>;
  static constexpr int kQBytes = kCtaQ * kHeadDim;  // a warpgroup's
  static constexpr int kKBytes = kCtaK * kHeadDim;
  static constexpr int kVHalfBytes = kHeadDim * kVSwizzle;  // one region of 128-byte Vᵀ rows
  static constexpr int kVLoadBytes = kFp8Pv ? kVHalfBytes : 2 * kVHalfBytes;  // what the TMA writes a stage
  // With the sums on the tensor cores, each Vᵀ stage ends in an atom of E4M3 ones (8 more rows, written once),
  // so that one product with 8 more columns gives P · V and P's row sums together.
  static constexpr int kOnesBytes = kTensorSums ? 8 * kVSwizzle : 0;
  static constexpr int kVBytes = kVLoadBytes + kOnesBytes;
  static constexpr int kK = kWarpgroups * kQBytes;
  static constexpr int kV = kK + kStages * kKBytes;
  static constexpr int kKeyScales = kV + kStages * kVBytes;  // per-token k-scales, one tile's per stage
  static constexpr int kBarriers = kKeyScales + (kPerToken ? kStages * kCtaK * 4 : 0);
  // A Q barrier a warpgroup, then each stage's three; then, where the CTA runs several work tiles, the ring's cursor.
  static constexpr int kCursor = kBarriers + (kWarpgroups + 3 * kStages) * 8;
  static constexpr int kWorkQueue = 8;  // the persistent CTA's next work tiles (see attention_kernel)
  static constexpr int kBytes = kCursor + (kWarpgroups > 1 ? 16 + 4 * kWorkQueue : 0);
  static_assert(kQBytes % 1024 == 0 && kKBytes % 1024 == 0 && kVBytes % 1024 == 0);
};

// kTensorSums: the rows' sums of P from the tensor cores, which add in the FP8 accumulator's precision (a tile's
// sum can come out a few percent short; the output, which the same products make, keeps its accuracy): for
// calls that want no LSE, with FP8 P·V, where it takes an add per score off the softmax. kLinearShare: how much
// of a uniform tile's P comes from linear_e4m3 (softmax.cuh; PExponent), with the tensor-core sums. kRaggedTail: the
// ragged-tail kernel (launch), whose work items are the heads' ragged last work tiles, one a head, each of them with
// its idle warpgroups sharing its query blocks' key tiles (work_plan.h's QueryShare); its work grid is the call's
// (tiles a head, heads, batch), the ragged tile each head's last.
template <int kHeadDim, bool kFp8Pv, bool kPerToken, bool kTensorSums, int kLinearShare = 0, int kWarpgroups = 1,
          bool kRaggedTail = false>
__global__ void __launch_bounds__(kThreads* kWarpgroups,
                                  kWarpgroups > 1 ? 1 : kResidentCtas<kHeadDim, kFp8Pv, kPerToken>)
    attention_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                     const __grid_constant__ CUtensorMap v_map, const AttentionArgs args, const dim3 work_grid,
                     const WorkSplit split) {
  using L = Smem<kHeadDim, kFp8Pv, kPerToken, kTensorSums, kWarpgroups>;
  static_assert(!kRaggedTail || kWarpgroups > 1);
  constexpr int kStages = L::kStages;
  constexpr int kOut = kHeadDim / 2;  // accumulator floats per thread
  constexpr float kPLog2Scale = kFp8Pv ? 8.807354922057604f : 0.0f;  // FP8 P̃ = 448·p: log2(448)
  // A uniform tile's FP8 P·V issued per 64 keys, the second half exponentiated under the first half's products:
  // at head dim 64, where the softmax is the longer part of a tile (docs/PERFORMANCE.md).
  constexpr bool kSplitPv = kFp8Pv && kHeadDim == 64;
  static_assert(kLinearShare == 0 || kTensorSums || (!kFp8Pv && kLinearShare == kLinearAll),
                "linear P: FP8 bytes with their sums from the tensor cores, or all of an fp16 P");
  static_assert(!kTensorSums || kFp8Pv, "tensor-core row sums: FP8 P·V");
  // Whether an edge tile skips the exponentials of a 64-key half that no row sees (key_end below): in the default
  // kernels only, which take the branch without a spill or a longer uniform loop (the others would spill or grow
  // theirs; per-token k-scales make every tile an edge tile).
  constexpr bool kSkipsEmptyHalves = kTensorSums && !kPerToken;
  // Whether a causal diagonal tile is computed as a uniform one with a mask rather than on the general path (its
  // conversions, its P·V in one piece): in head dim 128's default kernels. Head dim 64's lost with it: every form
  // tried spilled in their uniform loop or added to it (docs/PERFORMANCE.md, 2026-12-07 from 16:01).
  constexpr bool kUniformDiagonals = kTensorSums && !kPerToken && kHeadDim == 128;
  // Whether the epilogue loads its channels' V scales and means before its stores (OutputChannels): at head dim 128,
  // where the loads one at a time between the stores took a few percent of a work tile; head dim 64's persistent
  // loop ran 2% slower with them, from how ptxas then ordered it (docs/PERFORMANCE.md, 2026-12-05 from 12:29).
  constexpr bool kPreloadsChannels = kHeadDim == 128;
  extern __shared__ __align__(1024) uint8_t smem[];
  if (static_cast<uint32_t>(__cvta_generic_to_shared(smem)) % 1024 != 0) __trap();  // the swizzle would read garbage
  uint8_t* q_tile = smem;
  const auto k_tile = [&](int stage) { return smem + L::kK + stage * L::kKBytes; };
  const auto v_tile = [&](int stage) { return smem + L::kV + stage * L::kVBytes; };
  const auto key_scale_tile = [&](int stage) { return reinterpret_cast<float*>(smem + L::kKeyScales) + stage * kCtaK; };
  uint64_t* q_full = reinterpret_cast<uint64_t*>(smem + L::kBarriers);  // one a warpgroup
  uint64_t* k_full = q_full + kWarpgroups;
  uint64_t* v_full = k_full + kStages;
  uint64_t* empty = v_full + kStages;  // every thread's products are done with the stage

  // kWarpgroups > 1: the CTA's warpgroups take consecutive query blocks, one each (the work grid's and the causal
  // order's unit is then a group of them), and the CTA is persistent: one a multiprocessor, whose ring runs on from
  // one work tile's keys to the next's. Its first work tile is its block's; it claims each next one from
  // args.work_counter, in the grid's order, as it goes (so that a multiprocessor that finishes early takes more, as
  // the hardware's dispatch of blocks does), a work tile ahead of the ring, into a queue in shared memory.
  constexpr bool kPersistent = kWarpgroups > 1;
  // (a value the compiler sees to be the warp's, so that the warpgroup's descriptors stay in uniform registers)
  const int warpgroup = kWarpgroups > 1 ? __shfl_sync(0xffffffffu, int(threadIdx.x) / kThreads, 0) : 0;
  const int thread = kWarpgroups > 1 ? int(threadIdx.x) % kThreads : int(threadIdx.x);
  unsigned* work_queue = reinterpret_cast<unsigned*>(smem + L::kCursor + 16);
  const auto queued = [&](int ordinal) -> unsigned& { return work_queue[ordinal % L::kWorkQueue]; };
  const unsigned works =
      kRaggedTail ? unsigned(work_grid.y * work_grid.z) : unsigned(item_count(work_count(work_grid), split));
  const auto has_work = [&](int ordinal) { return kPersistent ? queued(ordinal) < works : ordinal == 0; };
  // The work item's tile, and the warpgroups that compute in it (work_plan.h: a last round's tiles in parts).
  const auto item_at = [&](int ordinal) {
    return kPersistent ? work_item(queued(ordinal), split, kWarpgroups) : WorkItem{0, 0, 1};
  };
  const auto work_at = [&](int ordinal) {
    if constexpr (kRaggedTail) return WorkTile{int(work_grid.x) - 1, int(queued(ordinal))};
    return kPersistent ? work_tile(item_at(ordinal).tile, work_grid, args.causal) : work_tile(args.causal);
  };
  const auto kv_head_of = [&](const WorkTile& work) {  // = batch * kv_heads + kv_head
    return work.flat_head / (args.q_heads / args.kv_heads);
  };
  const int key_tiles = (args.kv_len + kCtaK - 1) / kCtaK;
  // The key tiles the ring carries for a work tile of several warpgroups: those of its last warpgroup, whose rows
  // reach furthest (the others only give their stages back for the tiles past their own).
  const auto ring_tiles_of = [&](const WorkTile& work) {
    if (!args.causal) return key_tiles;
    return min(key_tiles, (min((work.q_block + 1) * kWarpgroups * kCtaQ, args.q_len) - 1) / kCtaK + 1);
  };
  const auto load_q = [&](const WorkTile& work, int warpgroup) {
    barrier_expect_bytes(&q_full[warpgroup], L::kQBytes);
    tma_load_3d(q_tile + warpgroup * L::kQBytes, &q_map, &q_full[warpgroup], 0,
                (work.q_block * kWarpgroups + warpgroup) * kCtaQ, work.flat_head);
  };

  // Tile t of the CTA's sequence sits in stage t % kStages of the ring, filled for the (t / kStages)-th time: kept
  // as it goes (stage, parity) rather than divided out each tile; persistent, the sequence runs on through the
  // work tiles.
  const uint64_t k_descriptor = kmajor_descriptor<kHeadDim>(k_tile(0), 0);
  const uint64_t v_descriptor = kmajor_descriptor<kVSwizzle>(v_tile(0), 0);
  int stage = 0;
  uint32_t parity = 0;
  uint64_t k_stage = k_descriptor, v_stage = v_descriptor;  // the stage's K and V tiles, moved along with it

  // Several warpgroups: at each tile it passes, the first warp refills the stage given back kRefillLag tiles
  // before, so that the others may run that many tiles behind it before it waits for them; the first
  // kStages - kRefillLag tiles are copied up front (the refills of the first kRefillLag tiles find their stages
  // never used). The next tile to copy, of which work tile, is kept in shared memory by thread 0 rather than in
  // registers every thread would hold.
  constexpr int kRefillLag = kStages / 2;
  static_assert(kWarpgroups == 1 || kStages > kRefillLag);
  const int cta_warp = __shfl_sync(0xffffffffu, int(threadIdx.x) / 32, 0);  // (the warp's, as `warpgroup`)
  struct RingCursor {
    int ordinal, tile, tiles, kv_head;  // tiles 0: the CTA's work tiles are done
  };
  RingCursor* cursor = reinterpret_cast<RingCursor*>(smem + L::kCursor);
  // Thread 0, as the cursor enters a work tile: its tiles, and the claim of the next one.
  const auto cursor_at = [&](int ordinal) {
    RingCursor next{ordinal, 0, 0, 0};
    if (has_work(ordinal)) {
      const WorkTile work = work_at(ordinal);
      next.tiles = ring_tiles_of(work), next.kv_head = kv_head_of(work);
      queued(ordinal + 1) = gridDim.x + unsigned(atomicAdd(args.work_counter, 1));
    }
    return next;
  };

  const auto load_kv = [&](int tile, int stage, int kv_head) {
    const int64_t k_padded = round_up(args.kv_len, kKBlock);
    // Per-token k-scales travel with their K tile; the last tile may hold only 64 keys' scales.
    const uint32_t scale_bytes = kPerToken ? 4 * uint32_t(min(int64_t(kCtaK), k_padded - tile * kCtaK)) : 0;
    barrier_expect_bytes(&k_full[stage], L::kKBytes + scale_bytes);
    tma_load_3d(k_tile(stage), &k_map, &k_full[stage], 0, tile * kCtaK, kv_head);
    if constexpr (kPerToken) {
      const float* k_scales =
          args.k_scale + int64_t(kv_head) * k_groups_per_block(args.granularity) * (k_padded / kKBlock);
      bulk_load(key_scale_tile(stage), k_scales + tile * kCtaK, scale_bytes, &k_full[stage]);
    }
    barrier_expect_bytes(&v_full[stage], L::kVLoadBytes);
    tma_load_3d(v_tile(stage), &v_map, &v_full[stage], tile * kCtaK, 0, kv_head);
    if constexpr (!kFp8Pv)
      tma_load_3d(v_tile(stage) + L::kVHalfBytes, &v_map, &v_full[stage], tile * kCtaK + 64, 0, kv_head);
  };
  // Persistent: copies the cursor's key tile into `stage` and moves the cursor on (nothing once the CTA's work
  // tiles are done).
  const auto load_next_kv = [&](int stage) {
    RingCursor next = *cursor;
    if (next.tiles == 0) return;
    load_kv(next.tile, stage, next.kv_head);
    next = ++next.tile < next.tiles ? next : cursor_at(next.ordinal + 1);
    *cursor = next;
  };
  // The barriers, the ones rows, and the first work tile's Q tiles and first K/V tiles: with one warpgroup, its
  // first_tiles key tiles of K/V head first_kv_head (the persistent ring's come from the cursor).
  const auto start = [&](const WorkTile& first, int first_tiles, int first_kv_head) {
    if (threadIdx.x == 0) {
      if constexpr (kPersistent) queued(0) = blockIdx.x;
      for (int w = 0; w < kWarpgroups; ++w) barrier_init(&q_full[w], 1);
      for (int s = 0; s < kStages; ++s)
        barrier_init(&k_full[s], 1), barrier_init(&v_full[s], 1), barrier_init(&empty[s], kThreads * kWarpgroups);
      fence_barrier_init();
    }
    if constexpr (kTensorSums) {
      static_assert(L::kOnesBytes == 8 * kThreads);
      for (int s = 0; s < kStages; ++s)  // E4M3 1.0
        if (warpgroup == 0)
          reinterpret_cast<uint2*>(v_tile(s) + L::kVLoadBytes)[thread] = make_uint2(0x38383838u, 0x38383838u);
      fence_stores_for_products();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 0; w < kWarpgroups; ++w) load_q(first, w);
      if constexpr (kPersistent) {
        *cursor = cursor_at(0);
        for (int s = 0; s < kStages - kRefillLag; ++s) load_next_kv(s);
      } else {
        for (int s = 0; s < kStages && s < first_tiles; ++s) load_kv(s, s, first_kv_head);
      }
    }
    if constexpr (kPersistent) __syncwarp();  // the cursor, for the first warp's other threads
  };
  if constexpr (kRaggedTail) start(WorkTile{int(work_grid.x) - 1, int(blockIdx.x)}, 0, 0);
  else if constexpr (kPersistent)
    start(work_tile(work_item(blockIdx.x, split, kWarpgroups).tile, work_grid, args.causal), 0, 0);

#ifdef SAGEVID_SM90_TILE_TRACE
  static_assert(kWarpgroups <= kTraceWarpgroups);
  int traced_tiles = 0;
#endif
  for (int ordinal = 0; has_work(ordinal); ++ordinal) {
    // (The item is decoded again here rather than the tile derived from it: that way ptxas spilled 96/160 bytes in
    // head dim 64's fp16 linear kernel instead of 20/20; docs/PERFORMANCE.md, 2026-12-05 from 21:49.)
    const WorkTile work = work_at(ordinal);
    const WorkItem item = item_at(ordinal);
    // Whether this warpgroup computes in the item: not where another item has its part of the tile. The ragged tail:
    // its query block, and the warpgroups that share the block's key tiles.
    QueryShare share{};
    if constexpr (kRaggedTail)
      share = query_share((args.q_len + kCtaQ - 1) / kCtaQ - work.q_block * kWarpgroups, warpgroup, kWarpgroups);
    const bool computes =
        kRaggedTail ? share.computes : warpgroup >= item.first_warpgroup && warpgroup < item.end_warpgroup;
    const int q_block = work.q_block * kWarpgroups + (kRaggedTail ? share.block : warpgroup);
    const int64_t q_head_index = work.flat_head;
    const int64_t q_padded = round_up(args.q_len, kQBlock), k_padded = round_up(args.kv_len, kKBlock);
    const int64_t kv_head_index = kv_head_of(work);
    const int first_row = q_block * kCtaQ;
    const int last_row = min(first_row + kCtaQ, args.q_len) - 1;
    int tiles = key_tiles;
    if (args.causal) tiles = min(tiles, last_row / kCtaK + 1);
    // A warpgroup past the queries (in the grid's last group), or outside the item's part, computes nothing: it only
    // gives its stages back.
    if (kWarpgroups > 1 && (first_row >= args.q_len || !computes)) tiles = 0;
    const int ring_tiles = kWarpgroups == 1 ? tiles : ring_tiles_of(work);

    // Tiles from this one on hold keys past the end or, causal, past the diagonal of some row of the CTA.
    const int first_edge_tile = min(args.kv_len / kCtaK, args.causal ? (first_row + 1) / kCtaK : INT_MAX);
    // Keys from this one on are masked for every row of the CTA: an edge tile whose last 64 keys lie there (the
    // causal diagonal of every other CTA: its 64 rows end half way through the tile) skips their exponentials.
    const int key_end = args.causal ? min(args.kv_len, last_row + 1) : args.kv_len;

    const int warp = thread / 32, lane = thread % 32, quad_col = lane % 4;
    const int row0 = first_row + warp * 16 + lane / 4;  // this lane's rows: row0 and row0 + 8

    const float* k_scales = args.k_scale + kv_head_index * k_groups_per_block(args.granularity) * (k_padded / kKBlock);
    // The uniform tiles' k-scales: key tile t's two 64-key blocks start at group (2t + half) · groups per block,
    // plus the lane's group within a block (per-thread: its key columns' (key % 8) / 2 = quad_col). The pointer
    // starts at tile 0 and moves on a tile at a time as the uniform loop goes.
    const int k_block_groups = int(k_groups_per_block(args.granularity));
    const float* uniform_k_scales = k_scales + (args.granularity == Granularity::per_thread ? quad_col : 0);
    if constexpr (!kPersistent) start(work, ring_tiles, int(kv_head_index));

    const int64_t q_groups = q_groups_per_block(args.granularity) * (q_padded / kQBlock);
    float q_scale[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = min(int64_t(row0 + 8 * half), q_padded - 1);
      q_scale[half] = args.q_scale[q_head_index * q_groups + q_group(row, args.granularity)] * args.score_scale;
    }

    float out[kOut];
#pragma unroll
    for (int i = 0; i < kOut; ++i) out[i] = 0.0f;
    float row_max[2] = {kNegInf, kNegInf}, row_sum[2] = {0.0f, 0.0f};
    barrier_wait(&q_full[warpgroup], ordinal & 1);
    // The tensor cores' view of the tiles; each tile's steps advance from these.
    uint64_t q_descriptor = kmajor_descriptor<kHeadDim>(q_tile + warpgroup * L::kQBytes, 0);

    // Several warpgroups: the first warp waits for the stage to refill as a whole, and its first thread copies (a
    // wait in a branch of one thread, inside the loop over work tiles, made ptxas move the ring's descriptors out of
    // the uniform registers).
    const auto refill_lagged = [&] {
      if (cta_warp == 0) {
        const bool same_round = stage >= kRefillLag;  // its last use sits in this round of the ring, or the last
        const int old_stage = same_round ? stage - kRefillLag : stage + kStages - kRefillLag;
        // (the other threads' reading of thread 0's cursor only decides whether they wait along)
        if (cursor->tiles > 0) {
          barrier_wait(&empty[old_stage], same_round ? parity : parity ^ 1);
          if (threadIdx.x == 0) load_next_kv(old_stage);
        }
        __syncwarp();
      }
    };
    // Persistent: the warpgroup's Q tile for its next work tile, once its last product with this one is done (every
    // warp of the warpgroup past it). The next one's claim is seen after a wait for one of this one's key tiles,
    // whose copy thread 0 issued after it.
    const auto load_next_q = [&] {
      if constexpr (kPersistent) {
        named_barrier_sync(1 + warpgroup, kThreads);
        if (thread == 0 && has_work(ordinal + 1)) load_q(work_at(ordinal + 1), warpgroup);
      }
    };

    // This warpgroup is done with the stage: it arrives on its "empty" barrier, and the ring moves on a stage.
    const auto give_stage_back = [&] {
      barrier_arrive(&empty[stage]);
      if (++stage == kStages) {
        stage = 0, parity ^= 1;
        k_stage = k_descriptor, v_stage = v_descriptor;
      } else {
        k_stage = advance(k_stage, L::kKBytes), v_stage = advance(v_stage, L::kVBytes);
      }
    };

    // One key tile of a kind (TileKind). A uniform one has every key valid for every row and a k-scale uniform over
    // each 64-key half (not per-token): its softmax needs no mask and converts a score in one FMA. A causal diagonal
    // tile is computed as a uniform one whose scores past each row's diagonal are set to −inf before its softmax.
    // `last`: the warpgroup's last tile of the work tile (std::false_type where it cannot be).
    const auto key_tile = [&](int tile, auto kind, auto last) {
#ifdef SAGEVID_SM90_TILE_TRACE
      if (kPersistent && g_tile_trace && thread == 0 && blockIdx.x < kTraceCtas && traced_tiles < kTraceTiles)
        g_tile_trace[(int(blockIdx.x) * kWarpgroups + warpgroup) * kTraceTiles + traced_tiles] = clock64();
      ++traced_tiles;
#endif
      constexpr bool diagonal = decltype(kind)::value == TileKind::causal_diagonal;
      constexpr bool uniform = diagonal || decltype(kind)::value == TileKind::uniform;

      // 1. S = Q Kᵀ. A uniform tile's accumulators start from kMagicBits, so that each score comes out as the float
      // kMagic + score (magic_float's add done by the tensor cores, off the path from the score to its exponential).
      int32_t s_int[64];
      if constexpr (uniform) {
#pragma unroll
        for (int i = 0; i < 64; ++i) s_int[i] = kMagicBits;
      }
      barrier_wait(&k_full[stage], parity);
      fence();
#pragma unroll
      for (int k = 0; k < kHeadDim / 32; ++k)
        mma_s8_m64n128k32(s_int, advance(q_descriptor, 32 * k), advance(k_stage, 32 * k), uniform || k > 0);
      commit_group();
      // The previous tile's stage, once every warp is done with it, takes the tile kStages after it; issued under
      // this tile's scores, so that no warp waits at a CTA barrier for the others.
      if constexpr (kWarpgroups == 1) {
        if (threadIdx.x == 0 && tile > 0 && tile - 1 + kStages < tiles) {
          const int previous = stage == 0 ? kStages - 1 : stage - 1;
          barrier_wait(&empty[previous], stage == 0 ? parity ^ 1 : parity);
          load_kv(tile - 1 + kStages, previous, int(kv_head_index));
        }
      } else {
        refill_lagged();
      }
      wait_group<0>();
      fence_registers(s_int);
      if constexpr (diagonal) {  // the scores of keys past the row: −inf, below every kMagic + score as an integer
        const int diagonal_offset = row0 - (tile * kCtaK + 2 * quad_col);
#pragma unroll
        for (int i = 0; i < 64; ++i)
          if (accumulator_column(i) - 8 * accumulator_row(i) > diagonal_offset) s_int[i] = __float_as_int(kNegInf);
      }
      if (last) load_next_q();

      // 4. O += P · V, as lambdas that the softmax's two paths below call. FP8: P's A fragment for 32 keys holds
      // at positions 4t..4t+3 of each 16-key half the keys 2t, 2t+1, 8+2t, 9+2t (kv_permuted_position), i.e. this
      // lane's own accumulator elements; issued per 64 keys, each half after exponentiate(half) has made its p,
      // so that a uniform tile's second half is exponentiated while the first half's products run.
      float s[64];
      float rescale[2];
      // Where the softmax adds up its rows: row_sum, or with the sums on the tensor cores a scratch pair that
      // nothing reads (the compiler drops the adds).
      float discarded_sums[2] = {0.0f, 0.0f};
      float(&softmax_sums)[2] = kTensorSums ? discarded_sums : row_sum;
      constexpr int kTileLinearShare = uniform ? kLinearShare : 0;  // the general path's p are exact
      const bool upper_half_empty = kSkipsEmptyHalves && !uniform && tile * kCtaK + 64 >= key_end;
      const auto fp8_pv = [&](auto exponentiate) {
        uint32_t p[4][4];
        // kTensorSums: 4 more columns, this tile's row sums of P (both columns of each row alike).
        float fresh[kOut + (kTensorSums ? 4 : 0)];
#pragma unroll
        for (int key_half = 0; key_half < 2; ++key_half) {
          exponentiate(key_half);
#pragma unroll
          for (int step = 2 * key_half; step < 2 * key_half + 2; ++step)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
              const int base = 16 * step + 8 * (r / 2) + 2 * (r % 2);
              p[step][r] = pack_p<kTileLinearShare>(base / 4, s[base], s[base + 1], s[base + 4], s[base + 5]);
            }
          if (key_half == 0) barrier_wait(&v_full[stage], parity);
          fence();
#pragma unroll
          for (int step = 2 * key_half; step < 2 * key_half + 2; ++step) {
            const uint64_t v = advance(v_stage, 32 * step);
            if constexpr (kTensorSums && kHeadDim == 64) mma_e4m3_m64n72k32(fresh, p[step], v, step);
            else if constexpr (kTensorSums) mma_e4m3_m64n136k32(fresh, p[step], v, step);
            else if constexpr (kHeadDim == 64) mma_e4m3_m64n64k32(fresh, p[step], v, step);
            else mma_e4m3_m64n128k32(fresh, p[step], v, step);
          }
          commit_group();
        }
        wait_group<0>();
        fence_registers(fresh);
#pragma unroll
        for (int i = 0; i < kOut; ++i) out[i] = fmaf(out[i], rescale[accumulator_row(i)], fresh[i]);
        if constexpr (kTensorSums) {
#pragma unroll
          for (int half = 0; half < 2; ++half)
            row_sum[half] = fmaf(row_sum[half], rescale[half], fresh[kOut + 2 * half]);
        }
      };
      const auto fp16_pv = [&] {
        barrier_wait(&v_full[stage], parity);
        uint32_t p[8][4];
#pragma unroll
        for (int step = 0; step < 8; ++step)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const float lo = s[8 * step + 2 * r], hi = s[8 * step + 2 * r + 1];
            p[step][r] = kTileLinearShare == kLinearAll ? linear_f16x2(lo, hi) : pack_half2(lo, hi);
          }
        if constexpr (kTileLinearShare == kLinearAll) add_f16_row_sums(p, row_sum);
        // Rows whose max held keep rescale 1: skip the multiply when no row of the warp moved.
        if (__any_sync(0xffffffffu, rescale[0] != 1.0f || rescale[1] != 1.0f)) {
#pragma unroll
          for (int i = 0; i < kOut; ++i) out[i] *= rescale[accumulator_row(i)];
        }
        fence();
#pragma unroll
        for (int step = 0; step < 8; ++step) {
          const uint64_t v = advance(v_stage, (step / 4) * L::kVHalfBytes + 32 * (step % 4));
          if constexpr (kHeadDim == 64) mma_f16_m64n64k16(out, p[step], v, 1);
          else mma_f16_m64n128k16(out, p[step], v, 1);
        }
        commit_group();
        wait_group<0>();
        fence_registers(out);
      };

      // 2-3. Dequantize, mask, online softmax: p = exp2(s · k_scale · q_scale − max) in s's registers; then 4.
      if constexpr (uniform) {
        const float key_scale[2] = {uniform_k_scales[0], uniform_k_scales[k_block_groups]};
        uniform_k_scales += 2 * k_block_groups;  // the uniform tiles come in order from the first
        if constexpr (kSplitPv) {
          RowExponent exponent[2];
#pragma unroll
          for (int row = 0; row < 2; ++row)
            exponent[row] = uniform_row_maximum<kFp8Pv>(s_int, row, key_scale, q_scale, kPLog2Scale, row_max,
                                                        softmax_sums, rescale);
          // ptxas still schedules part of the second half's exponentials above the first half's issue; the rest
          // run under its products.
          fp8_pv([&](int key_half) {
#pragma unroll
            for (int row = 0; row < 2; ++row)
              uniform_row_exponentials<kLinearShare, kFp8Pv>(s_int, row, exponent[row], key_half, s, softmax_sums);
          });
        } else {
#pragma unroll
          for (int row = 0; row < 2; ++row) {
            const RowExponent exponent = uniform_row_maximum<kFp8Pv>(s_int, row, key_scale, q_scale, kPLog2Scale,
                                                                     row_max, softmax_sums, rescale);
#pragma unroll
            for (int key_half = 0; key_half < 2; ++key_half)
              uniform_row_exponentials<kLinearShare, kFp8Pv>(s_int, row, exponent, key_half, s, softmax_sums);
          }
        }
      } else {
        if constexpr (kPerToken) {
#pragma unroll
          for (int j = 0; j < 16; ++j) {
            const float2 key_scale = *reinterpret_cast<const float2*>(key_scale_tile(stage) + 8 * j + 2 * quad_col);
#pragma unroll
            for (int e = 0; e < 4; ++e)
              s[4 * j + e] = scaled_score(s_int[4 * j + e], e & 1 ? key_scale.y : key_scale.x);
          }
        } else {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int64_t key = min(int64_t(tile * kCtaK + 64 * half + 2 * quad_col), k_padded - 1);
            const float key_scale = k_scales[k_group(key, args.granularity)];
#pragma unroll
            for (int i = 32 * half; i < 32 * half + 32; ++i) s[i] = scaled_score(s_int[i], key_scale);
          }
        }
        if (tile >= first_edge_tile) {
          const int tile_col = tile * kCtaK + 2 * quad_col;
#pragma unroll
          for (int i = 0; i < 64; ++i) {
            const int col = tile_col + accumulator_column(i), row = row0 + 8 * accumulator_row(i);
            if (col >= args.kv_len || (args.causal && col > row)) s[i] = kNegInf;
          }
        }
        softmax(s, q_scale, kPLog2Scale, row_max, softmax_sums, rescale, upper_half_empty);
      }
      if constexpr (!(kSplitPv && uniform)) {  // P is whole: step 4 in one go
        if constexpr (kFp8Pv) fp8_pv([](int) {});
        else fp16_pv();
      }

      give_stage_back();
      // Opaque to the compiler, which would otherwise rebuild every descriptor from the tile addresses each tile.
      asm volatile("" : "+l"(q_descriptor), "+l"(k_stage), "+l"(v_stage));
    };
    // The tiles before the first edge tile are uniform (unless the k-scales are per token), the rest general: two
    // loops, so that the uniform one carries no test and none of the general path's registers.
    // Persistent, the last tile loads the next work tile's Q: a last tile that is uniform is taken out of the loop.
    const int uniform_tiles = kPerToken ? 0 : min(first_edge_tile, tiles);
    if constexpr (kRaggedTail) {
      // The block's key tiles shared: this warpgroup's are every sharers-th from its index on, the rest it gives back
      // once they have landed (as a warpgroup past the queries does below). A later sharer reads the block's Q from
      // its first sharer's slot, whose next work tile's Q (as every sharer's) waits until all of them are done.
      if (share.index > 0) {
        barrier_wait(&q_full[share.block], ordinal & 1);
        q_descriptor = kmajor_descriptor<kHeadDim>(q_tile + share.block * L::kQBytes, 0);
      }
      int own_tile = share.index;
      for (int tile = 0; tile < ring_tiles; ++tile) {
        if (tile == own_tile && tile < tiles) {
          own_tile += share.sharers;
          if (tile < uniform_tiles) key_tile(tile, kUniformTile, std::false_type{});
          else key_tile(tile, kGeneralTile, std::false_type{});
        } else {
          if (tile < uniform_tiles) uniform_k_scales += 2 * k_block_groups;
          refill_lagged();
          barrier_wait(&k_full[stage], parity);
          barrier_wait(&v_full[stage], parity);
          give_stage_back();
        }
      }
      if (!computes) {  // a warpgroup left over
        load_next_q();
        continue;
      }
      // The sharers' rows merged (partial_rows.cuh), through two named barriers of the block's sharers: the first
      // when all of them are done (with its Q, and so that no slot is written before the CTA's last merge has read
      // it), the second when the later sharers' rows are stored.
      const int done_barrier = kMergeBarriers + 2 * share.block, sharer_threads = share.sharers * kThreads;
      named_barrier_sync(done_barrier, sharer_threads);
      load_next_q();
      float* const slots = args.partial_rows + int64_t(blockIdx.x) * kPartialRowCtaFloats<kOut, kWarpgroups, kThreads>;
      const auto slot = [&](int index) { return slots + index * kPartialRowFloats<kOut> * kThreads; };
      if (share.index > 0) {
        store_partial_rows<kOut, kThreads>(slot(share.slot), thread, out, row_max, row_sum);
        __threadfence_block();
        named_barrier_arrive(done_barrier + 1, sharer_threads);
        continue;  // the first sharer stores the block's rows
      }
      named_barrier_sync(done_barrier + 1, sharer_threads);
      for (int index = 1; index < share.sharers; ++index)
        add_partial_rows<kOut, kThreads>(slot(share.slot + (index - 1) * share.blocks), thread, out, row_max, row_sum);
    } else {
      const int uniform_loop_tiles = kPersistent && uniform_tiles == tiles ? tiles - 1 : uniform_tiles;
      int tile = 0;
      for (; tile < uniform_loop_tiles; ++tile) key_tile(tile, kUniformTile, std::false_type{});
      if constexpr (kPersistent)
        if (tile < uniform_tiles) key_tile(tile++, kUniformTile, std::true_type{});
      // A causal warpgroup's last key tile, when uniform tiles lead up to it and it holds no key past the end, is its
      // rows' diagonal: uniform but for the mask.
      const bool uniform_diagonal =
          kUniformDiagonals && args.causal && uniform_tiles == tiles - 1 && tiles * kCtaK <= args.kv_len;
      for (; tile < tiles - int(uniform_diagonal); ++tile)
        key_tile(tile, kGeneralTile, kPersistent && tile == tiles - 1);
      if (uniform_diagonal) key_tile(tile++, kDiagonalTile, std::bool_constant<kPersistent>{});
      // Several warpgroups: a warpgroup whose rows end before the ring's does gives back the stages of the tiles past
      // its own, each once that tile has landed (an arrival for the stage's next use before its last use is done
      // would count toward the wrong phase); the first warp keeps refilling.
      if constexpr (kWarpgroups > 1) {
        for (; tile < ring_tiles; ++tile) {
          refill_lagged();
          barrier_wait(&k_full[stage], parity);
          barrier_wait(&v_full[stage], parity);
          if (tile == 0) load_next_q();  // a warpgroup past the queries
          give_stage_back();
        }
        if (!computes) continue;  // its rows are another item's to store
      }
    }

    // Epilogue: normalize, undo the V scaling (FP8: row_sum summed 448·p too, so V's scale is all that is left to
    // undo), add the V mean back, store.
    const OutputChannels<kHeadDim / 8, kPreloadsChannels> channels(
        args.v_scale ? args.v_scale + kv_head_index * kHeadDim : nullptr, 1.0f,
        args.v_mean ? args.v_mean + kv_head_index * kHeadDim : nullptr, 2 * quad_col);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float sum = row_sum[half];
      if constexpr (!kTensorSums) {  // each lane summed its own columns; the tensor cores gave every lane the row's
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      }
      const int row = row0 + 8 * half;
      if (row >= args.q_len) continue;
      const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int batch = work.flat_head / args.q_heads, head = work.flat_head % args.q_heads;
      const int64_t base = batch * args.out_sb + head * args.out_sh + row * args.out_si;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j)
        channels.store(args, base, j, out[4 * j + 2 * half] * inv_sum, out[4 * j + 2 * half + 1] * inv_sum);
      if (args.lse && quad_col == 0)
        args.lse[q_head_index * args.q_len + row] =
            (row_max[half] == kNegInf ? 0.0f : row_max[half]) + log2f(sum) - kPLog2Scale;
    }
  }
}

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found{};
    SAGEVID_CUDA_CHECK(
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || !function)
      throw std::runtime_error("sage2 sm90: the driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
  }();
  return encode;
}

// A 3-D map over [heads, rows, row_elements] (row_elements contiguous), copied in boxes of
// box_rows x box_elements with the given swizzle; boxes past the rows read zeros.
CUtensorMap tensor_map(const void* data, CUtensorMapDataType type, int element_bytes, int64_t heads, int64_t rows,
                       int64_t row_elements, int box_rows, int box_elements, int swizzle_bytes) {
  CUtensorMap map;
  const cuuint64_t dims[3] = {cuuint64_t(row_elements), cuuint64_t(rows), cuuint64_t(heads)};
  const cuuint64_t strides[2] = {cuuint64_t(row_elements * element_bytes),
                                 cuuint64_t(rows * row_elements * element_bytes)};
  const cuuint32_t box[3] = {cuuint32_t(box_elements), cuuint32_t(box_rows), 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUtensorMapSwizzle swizzle = swizzle_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B;
  const CUresult result = tensor_map_encoder()(&map, type, 3, const_cast<void*>(data), dims, strides, box,
                                               element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS)
    throw std::runtime_error("sage2 sm90: cuTensorMapEncodeTiled failed with error " + std::to_string(int(result)));
  return map;
}

// A multiprocessor's shared memory on sm_90, of which each CTA costs 1 KB more than it asks for.
constexpr int kSharedPerMultiprocessor = 228 * 1024, kSharedReservedPerCta = 1024;

// Whether the FP8 kernel's tensor-core sums keep the CTAs its registers are held to: their ones rows must still
// fit in shared memory (not at head dim 128 with per-token k-scales).
template <int kHeadDim, bool kPerToken>
constexpr bool kTensorSumsFit = kResidentCtas<kHeadDim, true, kPerToken> *
                                    (Smem<kHeadDim, true, kPerToken, true>::kBytes + kSharedReservedPerCta) <=
                                kSharedPerMultiprocessor;

// Whether a kernel's launch may run each head's ragged last tile in a tail kernel of its own: the persistent FP8
// default at both head dims (one more instantiation each; the linear modes keep their ragged tiles in the main kernel).
constexpr bool has_ragged_tail(bool fp8_pv, bool tensor_sums, int linear_share, int warpgroups) {
  return warpgroups > 1 && fp8_pv && tensor_sums && linear_share == 0;
}

// Whether a call's shape sends each head's ragged last tile to the tail kernel (launch): its query blocks few enough
// for the tile's idle warpgroups to share their key tiles, and the whole tiles filling whole rounds of the
// multiprocessors (CogVideoX1.5-5B on 132).
bool ragged_tail_shape(const AttentionArgs& args, int warpgroups, int multiprocessors) {
  const int q_blocks = (args.q_len + kCtaQ - 1) / kCtaQ, ragged_blocks = q_blocks % warpgroups;
  const int64_t whole_tiles = int64_t(q_blocks / warpgroups) * args.batch * args.q_heads;
  return !args.causal && ragged_blocks > 0 && 2 * ragged_blocks <= warpgroups && whole_tiles % multiprocessors == 0;
}

template <int kHeadDim, bool kFp8Pv, bool kPerToken, bool kTensorSums = false, int kLinearShare = 0,
          int kWarpgroups = 1>
void launch(const AttentionArgs& args, cudaStream_t stream) {
  using L = Smem<kHeadDim, kFp8Pv, kPerToken, kTensorSums, kWarpgroups>;
  static_assert(L::kBytes <= kSharedPerMultiprocessor - kSharedReservedPerCta, "a CTA's shared memory: at most 227 KB");
  const int64_t q_padded = round_up(args.q_len, kQBlock), k_padded = round_up(args.kv_len, kKBlock);
  const int64_t q_heads = int64_t(args.batch) * args.q_heads, kv_heads = int64_t(args.batch) * args.kv_heads;
  const CUtensorMap q_map =
      tensor_map(args.q, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, q_heads, q_padded, kHeadDim, kCtaQ, kHeadDim, kHeadDim);
  const CUtensorMap k_map =
      tensor_map(args.k, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, kv_heads, k_padded, kHeadDim, kCtaK, kHeadDim, kHeadDim);
  const CUtensorMap v_map = kFp8Pv ? tensor_map(args.v, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, kv_heads, kHeadDim, k_padded,
                                                kHeadDim, kCtaK, kVSwizzle)
                                   : tensor_map(args.v, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, kv_heads, kHeadDim,
                                                k_padded, kHeadDim, 64, kVSwizzle);
  const auto kernel = attention_kernel<kHeadDim, kFp8Pv, kPerToken, kTensorSums, kLinearShare, kWarpgroups>;
  SAGEVID_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kBytes));
  // K and V of one head as the kernel reads them (GQA: per query head, its share of the K/V head).
  const int64_t kv_bytes_per_head = k_padded * kHeadDim * (kFp8Pv ? 2 : 3) * args.kv_heads / args.q_heads;
  const int q_blocks = (args.q_len + kCtaQ - 1) / kCtaQ;
  const dim3 grid = attention_grid((q_blocks + kWarpgroups - 1) / kWarpgroups, args.q_heads, args.batch, args.causal,
                                   kv_bytes_per_head);
  if constexpr (kWarpgroups == 1) {
    kernel<<<grid, kThreads, L::kBytes, stream>>>(q_map, k_map, v_map, args, grid, WorkSplit{0, 1});
    SAGEVID_CUDA_CHECK_LAUNCH();
  } else {
    // Persistent, a CTA a multiprocessor (the registers hold it to one), claiming the grid's work items (its work
    // tiles, the last round's in parts: work_plan.h) from the call's counters, zeroed here in stream order.
    int device = 0;
    SAGEVID_CUDA_CHECK(cudaGetDevice(&device));
    const int multiprocessors = multiprocessor_count(device);
    if (!args.work_counter) throw std::invalid_argument("sage2 sm90: the persistent kernels need a work counter");
    SAGEVID_CUDA_CHECK(cudaMemsetAsync(args.work_counter, 0, 2 * sizeof(int), stream));
    // Where each head's last work tile holds few enough query blocks for its idle warpgroups to share their key
    // tiles, and the whole tiles fill whole rounds of the multiprocessors (CogVideoX1.5-5B on 132), the main kernel
    // takes the whole tiles only and the ragged ones run in a kernel of their own, launched after it on a stream
    // beside the caller's (forked before the main kernel, so not waiting for it): the tail's CTAs take the
    // multiprocessors the main kernel's leave as they end, and a ragged tile takes about a whole one's time over its
    // sharers rather than nearly a whole one's (docs/PERFORMANCE.md, 2026-12-06). Elsewhere the main kernel's last
    // round is partial and the tail would end the call later (tools/sm90_tail_model.py).
    constexpr bool kHasTail = has_ragged_tail(kFp8Pv, kTensorSums, kLinearShare, kWarpgroups);
    const bool ragged_tail = kHasTail && ragged_tail_shape(args, kWarpgroups, multiprocessors);
    SideLaunch side;
    if (ragged_tail) side.fork(stream, device);
    const dim3 main_grid(grid.x - (ragged_tail ? 1 : 0), grid.y, grid.z);
    const int64_t tiles = work_count(main_grid);
    if (tiles > 0) {
      const WorkSplit split = split_last_round(tiles, multiprocessors, kWarpgroups, args.causal);
      const int64_t items = item_count(tiles, split);  // (meaningless past 2^32 tiles, which the check refuses first)
      if (tiles > INT_MAX || items > INT_MAX)
        throw std::invalid_argument("sage2 sm90: more than 2^31 work items (query-row groups of one head)");
      const dim3 ctas(unsigned(std::min<int64_t>(items, multiprocessors)));
      kernel<<<ctas, kThreads * kWarpgroups, L::kBytes, stream>>>(q_map, k_map, v_map, args, main_grid, split);
      SAGEVID_CUDA_CHECK_LAUNCH();
    }
    if constexpr (kHasTail) {
      if (ragged_tail) {
        if (!args.partial_rows) throw std::invalid_argument("sage2 sm90: the ragged tail needs its partial rows");
        const auto tail = attention_kernel<kHeadDim, kFp8Pv, kPerToken, kTensorSums, kLinearShare, kWarpgroups, true>;
        SAGEVID_CUDA_CHECK(cudaFuncSetAttribute(tail, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kBytes));
        AttentionArgs tail_args = args;
        tail_args.work_counter = args.work_counter + 1;
        const int64_t heads = int64_t(grid.y) * grid.z;
        const dim3 ctas(unsigned(std::min<int64_t>(heads, multiprocessors)));
        tail<<<ctas, kThreads * kWarpgroups, L::kBytes, side.stream()>>>(q_map, k_map, v_map, tail_args, grid,
                                                                         WorkSplit{unsigned(heads), 1});
        SAGEVID_CUDA_CHECK_LAUNCH();
        side.join(stream);
      }
    }
  }
}

// Causal calls over fewer keys than this keep the one-warpgroup CTAs at head dim 64, where they measured 3% faster at
// 8k keys (docs/PERFORMANCE.md, 2026-12-05; again on 2026-12-07, also with the warpgroups taking a work tile's
// blocks in turn, so the persistent CTA's loss there is not its warpgroups' rows ending at different key tiles). At
// head dim 128 the persistent CTAs take every causal call since their epilogue preloads its channels (2026-12-05
// from 12:29).
template <int kHeadDim>
constexpr int kSharedRingMinCausalKeys = kHeadDim == 64 ? 16384 : 0;

// The warpgroups of a persistent CTA: as many as the registers allow a multiprocessor.
template <int kHeadDim>
constexpr int kSharedRingWarpgroups = kHeadDim == 128 ? 3 : 4;

// A per-thread kernel of kWarpgroups a CTA on one persistent ring, or of one where the causal keys are few.
template <int kHeadDim, bool kFp8Pv, bool kTensorSums, int kLinearShare, int kWarpgroups>
void launch_shared_ring(const AttentionArgs& args, cudaStream_t stream) {
  if (args.causal && args.kv_len < kSharedRingMinCausalKeys<kHeadDim>)
    return launch<kHeadDim, kFp8Pv, false, kTensorSums, kLinearShare>(args, stream);
  launch<kHeadDim, kFp8Pv, false, kTensorSums, kLinearShare, kWarpgroups>(args, stream);
}

template <int kHeadDim>
void launch_for_head_dim(const AttentionArgs& args, cudaStream_t stream) {
  const bool per_token = args.granularity == Granularity::per_token;
  if (!args.fp8_pv) {
    if (per_token) return launch<kHeadDim, false, true>(args, stream);
    // fp16 P from linear_f16 (PExponent::linear), without the LSE (its sums are fp16's)
    if constexpr (kHeadDim == 64)
      if (args.linear_p_share == kLinearAll && !args.lse)
        return launch_shared_ring<kHeadDim, false, false, kLinearAll, 4>(args, stream);
    return launch<kHeadDim, false, false>(args, stream);
  }
  // The LSE needs the rows' sums in fp32: it keeps the softmax's adds; so does a variant the ones rows would cost
  // a CTA.
  if (!args.lse) {
    if (per_token) {
      if constexpr (kTensorSumsFit<kHeadDim, true>) return launch<kHeadDim, true, true, true>(args, stream);
    } else if constexpr (kTensorSumsFit<kHeadDim, false>) {
      // Head dim 128: three warpgroups a CTA on one deep ring, a third of the copies; head dim 64: its four
      // warpgroups a multiprocessor as one CTA on one deeper ring. A quarter or half of P's linear bytes
      // (PExponent) only at head dim 64, where the exponentials are the larger part of a tile (at 128 the half
      // costs more instructions than it saves).
      constexpr int kWarpgroups = kSharedRingWarpgroups<kHeadDim>;
      if (args.linear_p_share == kLinearAll)
        return launch_shared_ring<kHeadDim, true, true, kLinearAll, kWarpgroups>(args, stream);
      if constexpr (kHeadDim == 64) {
        if (args.linear_p_share == 1) return launch_shared_ring<kHeadDim, true, true, 1, kWarpgroups>(args, stream);
        if (args.linear_p_share == 2) return launch_shared_ring<kHeadDim, true, true, 2, kWarpgroups>(args, stream);
      }
      return launch_shared_ring<kHeadDim, true, true, 0, kWarpgroups>(args, stream);
    }
  }
  per_token ? launch<kHeadDim, true, true>(args, stream) : launch<kHeadDim, true, false>(args, stream);
}

}  // namespace

#ifdef SAGEVID_SM90_TILE_TRACE
void set_tile_trace(long long* buffer) { SAGEVID_CUDA_CHECK(cudaMemcpyToSymbol(g_tile_trace, &buffer, sizeof buffer)); }
#endif

void attention(const AttentionArgs& args, cudaStream_t stream) {
  args.head_dim == 64 ? launch_for_head_dim<64>(args, stream) : launch_for_head_dim<128>(args, stream);
}

int64_t partial_rows_floats(const AttentionArgs& args) {
  int device = 0;
  SAGEVID_CUDA_CHECK(cudaGetDevice(&device));
  const int multiprocessors = multiprocessor_count(device);
  // (the tail's shape for its kernel's warpgroups; a call of another mode may get slots it does not use)
  const int warpgroups = args.head_dim == 128 ? kSharedRingWarpgroups<128> : kSharedRingWarpgroups<64>;
  if (!ragged_tail_shape(args, warpgroups, multiprocessors)) return 0;
  const int64_t per_cta = args.head_dim == 128 ? kPartialRowCtaFloats<64, kSharedRingWarpgroups<128>, kThreads>
                                               : kPartialRowCtaFloats<32, kSharedRingWarpgroups<64>, kThreads>;
  return multiprocessors * per_cta;
}

}  // namespace sagevid::kernels::sage2::sm90
