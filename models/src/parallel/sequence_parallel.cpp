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

  // Tokens -> heads: my heads of [text; every video token], [3, B, H / size, text + total, D]. Each buffer of the
  // exchange goes as soon as it is read: only these inputs and the output stay through the attention call.
  at::Tensor inputs = at::empty({3, batch, group_heads, text_length + shares.total, head_dim}, q.options());
  {
    // Sent to member j: q, k, v of its heads for my tokens, [3, B, H / size, share, D].
    const auto video = [&](const at::Tensor& x) { return x.narrow(2, text_length, share); };
    at::Tensor send = at::stack({video(q), video(k), video(v)})
                          .view({3, batch, members, group_heads, share, head_dim})
                          .permute({2, 0, 1, 3, 4, 5})
                          .contiguous();
    const int64_t per_token = 3 * batch * group_heads * head_dim;
    at::Tensor received = at::empty({shares.total * per_token}, q.options());
    group_.all_to_all(received, send, element_counts(per_token), std::vector<int64_t>(members, share * per_token));
    send.reset();
    for (int j = 0; j < members; ++j) {  // member j's tokens, [3, B, H / size, count_j, D]
      const int64_t offset = shares.offsets[size_t(j)], count = shares.counts[size_t(j)];
      inputs.narrow(3, text_length + offset, count)
          .copy_(
              received.narrow(0, offset * per_token, count * per_token).view({3, batch, group_heads, count, head_dim}));
    }
    int i = 0;
    for (const at::Tensor& x : {q, k, v})
      inputs[i++].narrow(2, 0, text_length).copy_(x.narrow(1, me * group_heads, group_heads).narrow(2, 0, text_length));
  }
  at::Tensor out = attend(inputs[0], inputs[1], inputs[2]);  // [B, H / size, text + total, D]
  inputs.reset();

  // Heads -> tokens. Sent to member j: my heads of its tokens; received from j: its heads of my tokens.
  const int64_t out_per_token = batch * group_heads * head_dim;
  at::Tensor returned = at::empty({members, batch, group_heads, share, head_dim}, out.options());
  at::Tensor my_text_heads = out.narrow(2, 0, text_length).contiguous();
  {
    std::vector<at::Tensor> back;
    for (int j = 0; j < members; ++j)
      back.push_back(out.narrow(2, text_length + shares.offsets[size_t(j)], shares.counts[size_t(j)]).reshape({-1}));
    out.reset();
    const at::Tensor send = at::cat(back);
    back.clear();
    group_.all_to_all(returned, send, std::vector<int64_t>(members, share * out_per_token),
                      element_counts(out_per_token));
  }
  // [size, B, H / size, n, D] -> [B, H, n, D]
  const auto heads_first = [&](const at::Tensor& by_member, int64_t tokens) {
    return by_member.permute({1, 0, 2, 3, 4}).reshape({batch, heads, tokens, head_dim});
  };
  // The text rows of every member's heads: every rank needs all of them.
  const at::Tensor text = heads_first(group_.all_gather(my_text_heads), text_length);
  my_text_heads.reset();
  return at::cat({text, heads_first(returned, share)}, 2);
}

}  // namespace sagevid::parallel
