#pragma once
// The wgmma + TMA SageAttention2 kernel family (sm_90a): INT8 Q·Kᵀ, FP16 or FP8 P·V, 128-key tiles.
// Reads the quantized layouts of sage2_layout.h; FP16 V comes transposed (Tiling::v_transposed).
#include "../sage2_kernels.h"

namespace sagevid::kernels::sage2::sm90 {

inline constexpr int kCtaQ = 64;  // query rows per CTA (one warpgroup)
inline constexpr int kCtaK = tiling(KernelFamily::wgmma).key_tile;

// INT8 Q·Kᵀ, head dim 64 or 128, no ΔS (Q smoothing), no bias, a positive score scale: what resolve()
// (sage2_options.cpp) lets through to this family.
void attention(const detail::AttentionArgs& args, cudaStream_t stream);
// The floats of AttentionArgs::partial_rows that a call on the current device needs.
int64_t partial_rows_floats(const detail::AttentionArgs& args);

#ifdef SAGEVID_SM90_TILE_TRACE
// Diagnostic builds: the key tiles' start clocks of the first kTraceCtas CTAs, [CTA][warpgroup][tile] (kTraceTiles a
// warpgroup, zero past its last), go to `buffer` (room for kTraceWarpgroups a CTA, the most a CTA has) from the next
// call on; nullptr stops them.
inline constexpr int kTraceCtas = 4, kTraceWarpgroups = 4, kTraceTiles = 2048;
void set_tile_trace(long long* buffer);
#endif

}  // namespace sagevid::kernels::sage2::sm90
