// The one entry to the attention kernel families. The wgmma family is compiled only when the build
// targets sm_90a (SAGEVID_SM90_KERNELS).
#include "mma/attention_mma.h"
#include "sage2_kernels.h"
#if SAGEVID_SM90_KERNELS
#include "sm90/attention_sm90.h"
#endif

#include <stdexcept>

namespace sagevid::kernels::sage2::detail {

bool built(KernelFamily family) { return family == KernelFamily::mma_sync || SAGEVID_SM90_KERNELS; }

const char* unsupported_reason(KernelFamily family, const AttentionArgs& args) {
  if (!built(family)) return "this build has no sm_90a (wgmma) kernels";
  if (family == KernelFamily::wgmma) {
    if (args.int4) return "the wgmma kernels take INT8 Q·Kᵀ only";
    if (args.delta_s) return "the wgmma kernels take no Q smoothing";
    if (args.bias) return "the wgmma kernels take no bias";
    if (!(args.score_scale > 0.0f)) return "the wgmma kernels need a positive scale";
  }
  return nullptr;
}

void attention(KernelFamily family, const AttentionArgs& args, cudaStream_t stream) {
  if (const char* reason = unsupported_reason(family, args)) throw std::invalid_argument(std::string("sage2: ") + reason);
#if SAGEVID_SM90_KERNELS
  if (family == KernelFamily::wgmma) return sm90::attention(args, stream);
#endif
  mma::attention(args, stream);
}

}  // namespace sagevid::kernels::sage2::detail
