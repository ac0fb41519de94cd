// Ulysses: the all-to-alls around a joint attention call, and the token shares they move.
#include "parallel/sequence_parallel.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>

#include <stdexcept>
#include <string>

namespace sagevid::parallel {

Shares even_shares(int64_t total, int members) {
  Shares shares;
  shares.total = total;
  for (int64_t j = 0, offset = 0; j < members; ++j) {
    const int64_t count = total / members + (j < total % members ? 1 : 0);
    shares.counts.push_back(count);
    shares.offsets.push_back(offset);
    offset += count;
  }
  return shares;
}

Shares share_tokens(int64_t tokens, int members) {
  if (tokens < members)
    throw std::invalid_argument("sequence parallelism: " + std::to_string(tokens) +
                                " video tokens cannot be shared by " + std::to_string(members) + " ranks");
  return even_shares(tokens, members);
}

at::Tensor SequenceParallel::shard(const at::Tensor& x, int64_t dim, const Shares& shares) const {
  if (x.size(dim) != shares.total)
    throw std::invalid_argument("sequence parallelism: sharding " + std::to_string(x.size(dim)) + " tokens as " +
                                std::to_string(shares.total));
  return x.narrow(dim, shares.offsets[size_t(rank())], shares.counts[size_t(rank())]);
}

namespace {

// Every member's x, whose `dim` holds its share, joined along dim in member order. The all-gather takes pieces of one
// size: each share padded to the largest, the padding dropped after.
at::Tensor gather_shares(const Collectives& group, const at::Tensor& x, int64_t dim, const Shares& shares) {
  const int64_t largest = shares.counts[0];
  at::Tensor piece = x;
  if (x.size(dim) < largest) {
    std::vector<int64_t> padded(x.sizes().begin(), x.sizes().end());
    padded[size_t(dim)] = largest;
    piece = at::empty(padded, x.options());
    piece.narrow(dim, 0, x.size(dim)).copy_(x);
  }
  const at::Tensor pieces = group.all_gather(piece);  // [members, ..., largest, ...]
  std::vector<at::Tensor> parts;
  for (int j = 0; j < group.size(); ++j) parts.push_back(pieces[j].narrow(dim, 0, shares.counts[size_t(j)]));
  return at::cat(parts, dim);
}

// Element counts of each member's share, `per_item` elements an item.
std::vector<int64_t> element_counts(const Shares& shares, int64_t per_item) {
  std::vector<int64_t> counts;
  for (int64_t items : shares.counts) counts.push_back(items * per_item);
  return counts;
}

}  // namespace

at::Tensor SequenceParallel::gather(const at::Tensor& x, const Shares& shares) const {
  return gather_shares(group_, x, 1, shares);
}

Shares SequenceParallel::heads(int64_t heads) const {
  return even_shares(heads, size());  // check_ulysses_heads: at least one each
}

at::Tensor SequenceParallel::to_heads(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      int64_t text_length, const Shares& shares) const {
  const int members = size();
  const size_t me = size_t(rank());
  const int64_t batch = q.size(0), share = q.size(2) - text_length, head_dim = q.size(3);
  const Shares heads = this->heads(q.size(1));
  const int64_t my_heads = heads.counts[me];
  // Sent to member j: q, k, v of its heads for my tokens, [3, B, its heads, share, D], copied straight from q, k, v.
  // Each buffer of the exchange is made only when needed and goes as soon as it has been read.
  const int64_t per_head_sent = 3 * batch * share * head_dim;
  at::Tensor send = at::empty({q.size(1) * per_head_sent}, q.options());
  for (int j = 0; j < members; ++j) {
    const int64_t first = heads.offsets[size_t(j)], count = heads.counts[size_t(j)];
    const at::Tensor to_j =
        send.narrow(0, first * per_head_sent, count * per_head_sent).view({3, batch, count, share, head_dim});
    int i = 0;
    for (const at::Tensor& x : {q, k, v}) to_j[i++].copy_(x.narrow(1, first, count).narrow(2, text_length, share));
  }
  const int64_t per_token = 3 * batch * my_heads * head_dim;  // what a member's token brings me
  at::Tensor received = at::empty({shares.total * per_token}, q.options());
  group_.all_to_all(received, send, element_counts(shares, per_token), element_counts(heads, per_head_sent));
  send.reset();
  at::Tensor inputs = at::empty({3, batch, my_heads, text_length + shares.total, head_dim}, q.options());
  for (int j = 0; j < members; ++j) {  // member j's tokens, [3, B, my heads, count_j, D]
    const int64_t offset = shares.offsets[size_t(j)], count = shares.counts[size_t(j)];
    inputs.narrow(3, text_length + offset, count)
        .copy_(received.narrow(0, offset * per_token, count * per_token).view({3, batch, my_heads, count, head_dim}));
  }
  int i = 0;
  for (const at::Tensor& x : {q, k, v})
    inputs[i++].narrow(2, 0, text_length).copy_(x.narrow(1, heads.offsets[me], my_heads).narrow(2, 0, text_length));
  return inputs;
}

at::Tensor SequenceParallel::to_tokens(at::Tensor out, int64_t text_length, const Shares& shares,
                                       int64_t heads_in_all) const {
  const int members = size();
  const size_t me = size_t(rank());
  const int64_t batch = out.size(0), my_heads = out.size(1), head_dim = out.size(3), share = shares.counts[me];
  const Shares heads = this->heads(heads_in_all);
  // Sent to member j: my heads of its tokens; received from j: its heads of my tokens.
  const int64_t per_head = batch * share * head_dim;  // what a member's head brings me
  at::Tensor returned = at::empty({heads_in_all * per_head}, out.options());
  at::Tensor my_text = out.narrow(2, 0, text_length).contiguous();
  {
    const int64_t per_token_sent = batch * my_heads * head_dim;
    at::Tensor send = at::empty({shares.total * per_token_sent}, out.options());
    for (int j = 0; j < members; ++j) {  // copied straight from the output
      const int64_t offset = shares.offsets[size_t(j)], count = shares.counts[size_t(j)];
      send.narrow(0, offset * per_token_sent, count * per_token_sent)
          .view({batch, my_heads, count, head_dim})
          .copy_(out.narrow(2, text_length + offset, count));
    }
    out.reset();
    group_.all_to_all(returned, send, element_counts(heads, per_head), element_counts(shares, per_token_sent));
  }
  std::vector<at::Tensor> video_heads;  // member j's heads of my tokens, [B, its heads, share, D]
  for (int j = 0; j < members; ++j)
    video_heads.push_back(returned.narrow(0, heads.offsets[size_t(j)] * per_head, heads.counts[size_t(j)] * per_head)
                              .view({batch, heads.counts[size_t(j)], share, head_dim}));
  // The text rows of every member's heads: every rank needs all of them.
  const at::Tensor text = gather_shares(group_, my_text, 1, heads);
  my_text.reset();
  return at::cat({text, at::cat(video_heads, 1)}, 2);
}

}  // namespace sagevid::parallel
