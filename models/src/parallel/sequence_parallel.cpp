// Ulysses: the all-to-alls around a joint attention call, and the token shares they move.
#include "parallel/sequence_parallel.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/stack.h>

#include <stdexcept>
#include <string>

namespace sagevid::parallel {

TokenShares share_tokens(int64_t tokens, int members) {
  if (tokens < members)
    throw std::invalid_argument("sequence parallelism: " + std::to_string(tokens) +
                                " video tokens cannot be shared by " + std::to_string(members) + " ranks");
  TokenShares shares;
  shares.total = tokens;
  for (int j = 0, offset = 0; j < members; ++j) {
    const int64_t count = tokens / members + (j < tokens % members ? 1 : 0);
    shares.counts.push_back(count);
    shares.offsets.push_back(offset);
    offset += int(count);
  }
  return shares;
}

at::Tensor SequenceParallel::shard(const at::Tensor& x, int64_t dim, const TokenShares& shares) const {
  if (x.size(dim) != shares.total)
    throw std::invalid_argument("sequence parallelism: sharding " + std::to_string(x.size(dim)) + " tokens as " +
                                std::to_string(shares.total));
  return x.narrow(dim, shares.offsets[size_t(rank())], shares.counts[size_t(rank())]);
}

at::Tensor SequenceParallel::gather(const at::Tensor& x, const TokenShares& shares) const {
  // Equal-sized pieces for the all-gather: each share padded to the largest, the padding dropped after.
  const int64_t largest = shares.counts[0];
  at::Tensor piece = x;
  if (x.size(1) < largest) {
    std::vector<int64_t> padded(x.sizes().begin(), x.sizes().end());
    padded[1] = largest;
    piece = at::empty(padded, x.options());
    piece.narrow(1, 0, x.size(1)).copy_(x);
  }
  const at::Tensor pieces = group_.all_gather(piece);  // [size, B, largest, ...]
  std::vector<at::Tensor> parts;
  for (int j = 0; j < size(); ++j) parts.push_back(pieces[j].narrow(1, 0, shares.counts[size_t(j)]));
  return at::cat(parts, 1);
}

at::Tensor SequenceParallel::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       int64_t text_length, const TokenShares& shares,
                                       const AttentionCall& attend) const {
  const int members = size(), me = rank();
  const int64_t batch = q.size(0), heads = q.size(1), share = q.size(2) - text_length, head_dim = q.size(3);
  const int64_t group_heads = heads / members;  // check_parallel_plan made heads divisible
  const auto element_counts = [&](int64_t per_token) {
    std::vector<int64_t> counts;
    for (int64_t tokens : shares.counts) counts.push_back(tokens * per_token);
    return counts;
  };

  // Tokens -> heads. Sent to member j: q, k, v of its heads for my tokens, [3, B, H / size, share, D].
  const auto video = [&](const at::Tensor& x) { return x.narrow(2, text_length, share); };
  const at::Tensor send = at::stack({video(q), video(k), video(v)})
                              .view({3, batch, members, group_heads, share, head_dim})
                              .permute({2, 0, 1, 3, 4, 5})
                              .contiguous();
  at::Tensor received = at::empty({3 * batch * group_heads * shares.total * head_dim}, q.options());
  const int64_t per_token = 3 * batch * group_heads * head_dim;
  group_.all_to_all(received, send, element_counts(per_token), std::vector<int64_t>(members, share * per_token));
  std::vector<at::Tensor> pieces;  // member j's tokens of my heads, [3, B, H / size, count_j, D]
  for (int j = 0; j < members; ++j)
    pieces.push_back(received.narrow(0, shares.offsets[size_t(j)] * per_token, shares.counts[size_t(j)] * per_token)
                         .view({3, batch, group_heads, shares.counts[size_t(j)], head_dim}));
  const at::Tensor whole_video = at::cat(pieces, 3);
  const auto whole = [&](const at::Tensor& x, int i) {  // my heads of [text; every video token]
    return at::cat({x.narrow(1, me * group_heads, group_heads).narrow(2, 0, text_length), whole_video[i]}, 2);
  };
  const at::Tensor out = attend(whole(q, 0), whole(k, 1), whole(v, 2));  // [B, H / size, text + total, D]

  // Heads -> tokens. Sent to member j: my heads of its tokens; received from j: its heads of my tokens.
  std::vector<at::Tensor> back;
  for (int j = 0; j < members; ++j)
    back.push_back(out.narrow(2, text_length + shares.offsets[size_t(j)], shares.counts[size_t(j)]).reshape({-1}));
  const int64_t out_per_token = batch * group_heads * head_dim;
  at::Tensor returned = at::empty({members, batch, group_heads, share, head_dim}, out.options());
  group_.all_to_all(returned, at::cat(back), std::vector<int64_t>(members, share * out_per_token),
                    element_counts(out_per_token));
  // [size, B, H / size, n, D] -> [B, H, n, D]
  const auto heads_first = [&](const at::Tensor& by_member, int64_t tokens) {
    return by_member.permute({1, 0, 2, 3, 4}).reshape({batch, heads, tokens, head_dim});
  };
  // Text rows: each member's heads, gathered (every rank needs all of them).
  const at::Tensor text = group_.all_gather(out.narrow(2, 0, text_length).contiguous());
  return at::cat({heads_first(text, text_length), heads_first(returned, share)}, 2);
}

}  // namespace sagevid::parallel
