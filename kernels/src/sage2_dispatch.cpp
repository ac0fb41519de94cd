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

void attention(KernelFamily family, const AttentionArgs& args, cudaStream_t stream) {
  // resolve() (sage2_options.cpp) already refused what a family cannot take; a family the build lacks is
  // refused there too, so this is a guard against calls that bypass it.
  if (!built(family)) throw std::invalid_argument("sage2: this build has no sm_90a (wgmma) kernels");
#if SAGEVID_SM90_KERNELS
  if (family == KernelFamily::wgmma) return sm90::attention(args, stream);
#endif
  mma::attention(args, stream);
}

int64_t partial_rows_floats(KernelFamily family, const AttentionArgs& args) {
#if SAGEVID_SM90_KERNELS
  if (family == KernelFamily::wgmma) return sm90::partial_rows_floats(args);
#endif
  return 0;
}

}  // namespace sagevid::kernels::sage2::detail
