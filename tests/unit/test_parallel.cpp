// One request over several ranks (models/src/parallel): the plan's checks, the token shares, Gloo collectives
// between rank threads, Ulysses attention against one whole call, and the transformer split across ranks against
// the same transformer on one (CPU, fp32).
#include "catch.h"
#include "test_random.h"

#include "parallel/collectives.h"
#include "parallel/gather_to_first.h"
#include "parallel/rank_threads.h"
#include "parallel/sequence_parallel.h"
#include "sagevid/models/attention.h"
#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/cogvideox_transformer.h"
#include "sagevid/models/parallel.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/tensor.h>

#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sagevid::parallel::Collectives;
using sagevid::parallel::Rendezvous;
using sagevid::parallel::SequenceParallel;

const fs::path kFixtures = fs::path(SAGEVID_FIXTURES_DIR) / "cogvideox";
const c10::Device kCpu(c10::kCPU);

double max_relative_error(const at::Tensor& got, const at::Tensor& want) {
  return ((got.to(at::kDouble) - want.to(at::kDouble)).abs().max() / want.to(at::kDouble).abs().max()).item<double>();
}

// fn(group) on `members` threads, each a member of one fresh Gloo group; rethrows the first member's error.
void on_members(int members, const std::function<void(const Collectives&)>& fn) {
  const Rendezvous rendezvous;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(members));
  std::vector<std::thread> threads;
  for (int m = 0; m < members; ++m)
    threads.emplace_back([&, m] {
      try {
        const Collectives group(rendezvous, "test/", m, members, kCpu, std::chrono::seconds(60));
        fn(group);
      } catch (...) {
        errors[size_t(m)] = std::current_exception();
      }
    });
  for (std::thread& thread : threads) thread.join();
  for (const std::exception_ptr& error : errors)
    if (error) std::rethrow_exception(error);
}

}  // namespace

TEST_CASE("a parallel plan that cannot run is refused with what is wrong", "[parallel]") {
  const auto cpus = [](int n) { return std::vector<c10::Device>(size_t(n), kCpu); };
  const auto refusal = [](const sagevid::ParallelPlan& plan, const std::vector<c10::Device>& devices, int64_t heads) {
    try {
      sagevid::check_parallel_plan(plan, devices);
      sagevid::check_ulysses_heads(plan, heads);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refusal({2, 2}, cpus(4), 30) == "accepted");
  CHECK(refusal({1, 3}, {c10::Device("cuda:0"), c10::Device("cuda:1"), c10::Device("cuda:2")}, 30) == "accepted");
  CHECK_THAT(refusal({3, 1}, cpus(3), 30), Catch::Matchers::ContainsSubstring("cfg must be 1 or 2, got 3"));
  CHECK_THAT(refusal({1, 0}, cpus(1), 30), Catch::Matchers::ContainsSubstring("ulysses must be at least 1"));
  CHECK_THAT(refusal({2, 2}, cpus(3), 30), Catch::Matchers::ContainsSubstring("needs 4 devices, got 3"));
  CHECK(refusal({1, 4}, cpus(4), 30) == "accepted");  // 8, 8, 7 and 7 heads
  CHECK_THAT(refusal({1, 4}, cpus(4), 3),
             Catch::Matchers::ContainsSubstring("3 attention heads are fewer than ulysses 4 ranks"));
  CHECK_THAT(refusal({2, 1}, {c10::Device("cuda:1"), c10::Device("cuda:1")}, 30),
             Catch::Matchers::ContainsSubstring("cuda:1 is listed twice"));
  CHECK_THAT(refusal({2, 1}, {c10::Device("cuda:0"), kCpu}, 30), Catch::Matchers::ContainsSubstring("mix"));
  CHECK_THAT(refusal({2, 1}, {c10::Device("cuda"), c10::Device("cuda:1")}, 30),
             Catch::Matchers::ContainsSubstring("needs an index"));
  CHECK(refusal({1, 1}, {c10::Device("cuda")}, 30) == "accepted");  // one device: the current one
  CHECK(sagevid::describe({2, 2}, cpus(4)) == "cfg 2 x ulysses 2 on cpu, cpu, cpu, cpu");
}

TEST_CASE("video tokens are shared out in runs that differ by at most one", "[parallel]") {
  const int64_t tokens = GENERATE(4, 13, 17550, 45106);
  const int members = GENERATE(1, 2, 3, 4);
  CAPTURE(tokens, members);
  const sagevid::parallel::Shares shares = sagevid::parallel::share_tokens(tokens, members);
  REQUIRE(shares.counts.size() == size_t(members));
  int64_t next = 0;
  for (int j = 0; j < members; ++j) {
    CHECK(shares.offsets[size_t(j)] == next);
    CHECK(shares.counts[size_t(j)] >= shares.counts.back());
    CHECK(shares.counts[0] - shares.counts[size_t(j)] <= 1);
    next += shares.counts[size_t(j)];
  }
  CHECK(next == tokens);
  CHECK_THROWS_WITH(sagevid::parallel::share_tokens(3, 4),
                    Catch::Matchers::ContainsSubstring("3 video tokens cannot be shared by 4 ranks"));
}

TEST_CASE("Gloo collectives between rank threads move what they say", "[parallel]") {
  const int members = GENERATE(2, 3);
  CAPTURE(members);
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // Member m sends (m + 1) * (j + 1) elements to member j, each its own random values.
  std::vector<std::vector<at::Tensor>> sent(static_cast<size_t>(members));
  for (int m = 0; m < members; ++m)
    for (int j = 0; j < members; ++j) sent[size_t(m)].push_back(rng.normal({(m + 1) * (j + 1)}));
  const at::Tensor everyone = rng.normal({members, 3, 5});
  on_members(members, [&](const Collectives& group) {
    const int m = group.rank();
    std::vector<int64_t> in_counts, out_counts;
    for (int j = 0; j < members; ++j) {
      in_counts.push_back((m + 1) * (j + 1));
      out_counts.push_back((j + 1) * (m + 1));
    }
    at::Tensor received = at::full({(m + 1) * members * (members + 1) / 2}, std::nan(""));
    group.all_to_all(received, at::cat(sent[size_t(m)]), out_counts, in_counts);
    std::vector<at::Tensor> expected;
    for (int j = 0; j < members; ++j) expected.push_back(sent[size_t(j)][size_t(m)]);
    CHECK(received.equal(at::cat(expected)));

    CHECK(group.all_gather(everyone[m]).equal(everyone));

    at::Tensor x = m == 1 ? everyone[1].clone() : at::full({3, 5}, std::nan(""));
    group.broadcast(x, 1);
    CHECK(x.equal(everyone[1]));
  });
}

TEST_CASE("every member's tensors, of any number and shape, reach the first member in member order", "[parallel]") {
  const int members = GENERATE(2, 3);
  CAPTURE(members);
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // Member m holds m tensors of 2 x (m + i + 1) x 3 (member 0 none), so the members' totals differ.
  std::vector<std::vector<at::Tensor>> held(static_cast<size_t>(members));
  for (int m = 0; m < members; ++m)
    for (int i = 0; i < m; ++i) held[size_t(m)].push_back(rng.normal({2, m + i + 1, 3}));
  on_members(members, [&](const Collectives& group) {
    const int m = group.rank();
    const auto gathered = sagevid::parallel::gather_to_first(group, held[size_t(m)], members - 1, 3, {});
    if (m != 0) {
      CHECK(gathered.empty());
      return;
    }
    REQUIRE(gathered.size() == size_t(members));
    for (int j = 0; j < members; ++j) {
      CAPTURE(j);
      REQUIRE(gathered[size_t(j)].size() == held[size_t(j)].size());
      for (size_t i = 0; i < held[size_t(j)].size(); ++i) CHECK(gathered[size_t(j)][i].equal(held[size_t(j)][i]));
    }
  });
  on_members(2, [&](const Collectives& group) {  // more tensors than the members agreed on: refused before a collective
    if (group.rank() == 1)
      CHECK_THROWS_WITH(sagevid::parallel::gather_to_first(group, {rng.normal({1}), rng.normal({1})}, 1, 1, {}),
                        Catch::Matchers::ContainsSubstring("2 tensors, at most 1"));
  });
}

TEST_CASE("a tiled VAE decode shared by ranks gives the frames of the same decode on one, bit for bit",
          "[parallel][vae]") {
  const int members = GENERATE(2, 3, 5);  // 5: more ranks than the 4 tiles, one of them with none
  CAPTURE(members);
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto decoder = sagevid::CogVideoXVaeDecoder::load(fs::path(SAGEVID_FIXTURES_DIR) / "vae" / "vae",
                                                          at::TensorOptions().dtype(at::kFloat));
  sagevid::VaeDecodeOptions options;
  options.tiling = true;  // 2 x 2 tiles of 4 x 6 latents over 6 x 9
  options.tile_sample_min_height = 32;
  options.tile_sample_min_width = 48;
  options.tile_overlap_factor_height = 0.25;
  options.tile_overlap_factor_width = 1.0 / 6;
  const at::Tensor latents = rng.normal({1, decoder.config().latent_channels, 5, 6, 9});
  REQUIRE(decoder.tiles(6, 9, options) == 4);
  const at::Tensor one = decoder.decode(latents, options);
  on_members(members, [&](const Collectives& group) {
    const sagevid::VaeTileShare share{group.rank(), group.size(),
                                      [&](const std::vector<at::Tensor>& mine, int64_t most) {
                                        return sagevid::parallel::gather_to_first(group, mine, most, 5, {});
                                      }};
    std::vector<at::Tensor> batches;
    decoder.decode_batches(
        latents, [&](const at::Tensor& frames) { batches.push_back(frames.clone()); }, options, &share);
    if (group.rank() != 0) {
      CHECK(batches.empty());
      return;
    }
    REQUIRE(batches.size() == 2);  // 3 latent frames, then 2
    CHECK(at::cat(batches, 2).equal(one));
  });
}

TEST_CASE("a rank that fails ends the run with its own error, not the others' timeouts", "[parallel]") {
  const Rendezvous rendezvous;
  std::vector<std::unique_ptr<Collectives>> groups(3);  // outliving the run, as a pipeline's do
  sagevid::parallel::run_ranks(3, [&](int rank) {
    groups[size_t(rank)] = std::make_unique<Collectives>(rendezvous, "fail/", rank, 3, kCpu, std::chrono::seconds(2));
  });
  std::mutex mutex;
  std::vector<std::string> errors;  // as on_error saw them, in order
  const auto start = std::chrono::steady_clock::now();
  const auto run = [&] {
    sagevid::parallel::run_ranks(
        3,
        [&](int rank) {
          if (rank == 2) throw std::runtime_error("rank 2 ran out of memory");
          groups[size_t(rank)]->all_gather(at::full({4}, double(rank)));  // waits for rank 2 until the timeout
        },
        [&](int, const std::exception_ptr& error) {
          const std::lock_guard lock(mutex);
          try {
            std::rethrow_exception(error);
          } catch (const std::exception& e) {
            errors.emplace_back(e.what());
          }
        });
  };
  CHECK_THROWS_WITH(run(), "rank 2 ran out of memory");
  REQUIRE(errors.size() == 3);  // every rank's, the others' their timeouts (Gloo's abort ends nothing)
  CHECK(errors[0] == "rank 2 ran out of memory");
  CHECK(errors[1] != errors[0]);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(60));
}

TEST_CASE("Ulysses attention across ranks equals one call on the whole sequence", "[parallel]") {
  const int members = GENERATE(2, 3);
  const int64_t video = GENERATE(13, 24);
  const int64_t heads = GENERATE(4, 5, 6);  // as many as the members or more, not always a multiple
  CAPTURE(members, video, heads);
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t batch = 2, text = 5, head_dim = 16;
  const at::Tensor q = rng.normal({batch, heads, text + video, head_dim});
  const at::Tensor k = rng.normal({batch, heads, text + video, head_dim});
  const at::Tensor v = rng.normal({batch, heads, text + video, head_dim});
  const sagevid::Attention attention;
  const at::Tensor whole = attention(q, k, v);
  on_members(members, [&](const Collectives& group) {
    const SequenceParallel sequence(group);
    const sagevid::parallel::Shares shares = sequence.shares(video);
    const auto mine = [&](const at::Tensor& x) {  // text rows and this rank's video rows
      return at::cat({x.narrow(2, 0, text), sequence.shard(x.narrow(2, text, video), 2, shares)}, 2);
    };
    const at::Tensor inputs = sequence.to_heads(mine(q), mine(k), mine(v), text, shares);
    const int64_t my_heads = heads / members + (group.rank() < heads % members);
    CHECK(sequence.heads(heads).counts[size_t(group.rank())] == my_heads);
    REQUIRE(inputs.sizes() == at::IntArrayRef{3, batch, my_heads, text + video, head_dim});
    const at::Tensor out = sequence.to_tokens(attention(inputs[0], inputs[1], inputs[2]), text, shares, heads);
    REQUIRE(out.sizes() == mine(q).sizes());
    CHECK(max_relative_error(out, mine(whole)) < 1e-6);
  });
}

TEST_CASE("the transformer with its video tokens split across ranks equals it on one", "[parallel][cogvideox]") {
  const std::string name = GENERATE(as<std::string>{}, "2b-like", "1.5-like", "5b-i2v-like", "heads-5");
  CAPTURE(name);
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto fp32 = at::TensorOptions().dtype(at::kFloat);
  // heads-5: the 5b-like config with five heads and random weights, over four ranks (two heads for the first).
  const bool four = name == "heads-5";
  sagevid::CogVideoXConfig config =
      sagevid::CogVideoXConfig::load(kFixtures / (four ? "5b-like" : name) / "transformer" / "config.json");
  config.num_attention_heads = 5;
  const sagevid::CogVideoXTransformer model =
      four ? sagevid::CogVideoXTransformer::random(config, fp32, rng.seed)
           : sagevid::CogVideoXTransformer::load(kFixtures / name / "transformer", fp32);
  const sagevid::CogVideoXConfig& c = model.config();
  const int64_t frames = c.patch_size_t ? 2 * *c.patch_size_t : 3;
  const bool learned = c.use_learned_positional_embeddings;  // these exist for the sample size only
  const int64_t height = learned ? c.sample_height : 4, width = learned ? c.sample_width : 6;
  const at::Tensor latents = rng.normal({2, frames, c.in_channels, height, width});
  const at::Tensor text = rng.normal({2, c.max_text_seq_length, c.text_embed_dim});
  const at::Tensor timestep = at::tensor(std::vector<int64_t>{817, 35});
  std::optional<at::Tensor> ofs;
  if (c.has_ofs()) ofs = at::full({1}, 2.0);
  const sagevid::Attention attention;
  const at::Tensor one = model.forward(latents, text, timestep, ofs, attention);
  on_members(four ? 4 : 2, [&](const Collectives& group) {
    const SequenceParallel sequence(group);
    const at::Tensor split = model.forward(latents, text, timestep, ofs, attention, &sequence);
    REQUIRE(split.sizes() == one.sizes());
    CHECK(max_relative_error(split, one) < 1e-5);
  });
}
