#pragma once
// The mma.sync SageAttention2 kernel family (sm_80/86/89, also runs on sm_90): INT8 or INT4 Q·Kᵀ, FP8 or
// FP16 P·V, 64-key tiles; takes everything the host API offers (ΔS from Q smoothing, an additive bias).
#include "../sage2_kernels.h"

namespace sagevid::kernels::sage2::mma {

void attention(const detail::AttentionArgs& args, cudaStream_t stream);

}  // namespace sagevid::kernels::sage2::mma
