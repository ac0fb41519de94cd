#pragma once
// Ulysses sequence parallelism for a joint [text; video] attention: between attention calls each rank of the
// group holds a contiguous share of the video tokens (and every text token: each rank computes the same text
// stream); around each call an all-to-all trades the token split for a head split, so that each rank runs one
// whole-sequence attention call on its share of the heads, and trades it back afterwards. Heads that do not divide
// evenly (CogVideoX-2B's 30 over 4 ranks) are shared as tokens are, one more for the first ranks.
#include "parallel/collectives.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace sagevid::parallel {

// How `total` things (a call's video tokens, or the heads) are shared out: member j holds [offsets[j], offsets[j] +
// counts[j]). Shares differ by at most one (the first total % members members hold one more).
struct Shares {
  std::vector<int64_t> counts, offsets;
  int64_t total = 0;
};
Shares even_shares(int64_t total, int members);
Shares share_tokens(int64_t tokens, int members);  // even_shares, refusing fewer tokens than members

class SequenceParallel {
 public:
  explicit SequenceParallel(const Collectives& group) : group_(group) {}

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  Shares shares(int64_t video_tokens) const { return share_tokens(video_tokens, size()); }

  // This rank's share of x's `dim` (video tokens along it).
  at::Tensor shard(const at::Tensor& x, int64_t dim, const Shares& shares) const;
  // [B, share, ...] from every rank -> [B, total, ...] on every rank.
  at::Tensor gather(const at::Tensor& x, const Shares& shares) const;
  // How the heads are shared out (as the tokens are: even shares, one more for the first ranks).
  Shares heads(int64_t heads) const;
  // Around one attention call over q, k, v [B, H, text + share, D] (text rows first, whole on every rank):
  // to_heads returns the call's inputs, q, k, v stacked [3, B, this rank's heads, text + total, D]; the call's
  // output [B, this rank's heads, text + total, D] goes to to_tokens, which returns what one call on the whole
  // sequence would have, [B, H, text + share, D]. Collectives: every rank of the group makes both calls.
  at::Tensor to_heads(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t text_length,
                      const Shares& shares) const;
  at::Tensor to_tokens(at::Tensor out, int64_t text_length, const Shares& shares, int64_t heads) const;

 private:
  const Collectives& group_;
};

}  // namespace sagevid::parallel
