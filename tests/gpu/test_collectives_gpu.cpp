// NCCL as the parallel pipeline uses it, on the one GPU a single-GPU host has: a group of one rank, joined and used
// on a rank thread as CogVideoXPipeline's ranks are (its collectives and a shared decode's gather), a fresh group
// after an abort (the pipeline's rejoin), and the transformer's Ulysses path over such a group against the plain
// forward, in the serving dtype on sage2. NCCL does not put two ranks on one GPU, so the exchange between GPUs is
// the multi-GPU suite's; this suite checks the rest of the path (the c10d build against torch's NCCL, the groups'
// set-up and teardown, the CUDA tensors' way through the exchange) wherever a GPU is.
#include "catch.h"
#include "test_random.h"

#include "parallel/collectives.h"
#include "parallel/gather_to_first.h"
#include "parallel/rank_threads.h"
#include "parallel/sequence_parallel.h"
#include "sagevid/models/cogvideox_transformer.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/full.h>
#include <c10/core/DeviceGuard.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

namespace {

using sagevid::parallel::Collectives;
using sagevid::parallel::Rendezvous;

const c10::Device kGpu(c10::kCUDA, 0);
constexpr std::chrono::seconds kTimeout(60);

// fn(group) on a rank thread with the GPU current, in a fresh one-rank NCCL group.
void on_one_rank(const std::function<void(const Collectives&)>& fn) {
  sagevid::parallel::run_ranks(1, [&](int rank) {
    const c10::DeviceGuard guard(kGpu);
    const Rendezvous rendezvous;
    const Collectives group(rendezvous, "test/", rank, 1, kGpu, kTimeout);
    fn(group);
  });
}

// What the all-to-all delivers into a poisoned buffer: each value it carries, or NaN where it wrote nothing.
at::Tensor exchanged(const Collectives& group, const at::Tensor& sent) {
  at::Tensor received = at::full({sent.numel()}, std::nan(""), sent.options());
  group.all_to_all(received, sent.flatten(), {sent.numel()}, {sent.numel()});
  return received.view(sent.sizes());
}

}  // namespace

TEST_CASE("NCCL collectives of a one-GPU group move what they say, and a fresh group follows an aborted one",
          "[gpu][parallel]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor data = rng.normal({7, 5}, at::TensorOptions().device(kGpu));
  on_one_rank([&](const Collectives& group) {
    CHECK(exchanged(group, data).equal(data));
    CHECK(group.all_gather(data).equal(data.unsqueeze(0)));
    const auto gathered = sagevid::parallel::gather_to_first(group, {data, data.t() + 1}, 2, 2, data.options());
    REQUIRE(gathered.size() == 1);
    REQUIRE(gathered[0].size() == 2);
    CHECK(gathered[0][0].equal(data));
    CHECK(gathered[0][1].equal(data.t() + 1));
    at::Tensor flag = at::full({1}, 1, at::TensorOptions().dtype(at::kInt).device(kGpu));
    group.broadcast(flag, 0);  // the pipeline's per-step vote; with one rank it must only complete
    CHECK(flag.item<int>() == 1);
    group.abort();
  });
  on_one_rank([&](const Collectives& group) { CHECK(exchanged(group, data + 1).equal(data + 1)); });
}

TEST_CASE("the transformer over a one-rank Ulysses group on NCCL equals its plain forward (bf16, sage2)",
          "[gpu][parallel][cogvideox]") {
  const std::filesystem::path fixture = std::filesystem::path(SAGEVID_FIXTURES_DIR) / "cogvideox" / "5b-hd64";
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(fixture / "io.safetensors");
  const auto on_gpu = at::TensorOptions().device(kGpu).dtype(at::kBFloat16);
  const auto model = sagevid::CogVideoXTransformer::load(fixture / "transformer", on_gpu);
  const sagevid::Attention attention(sagevid::AttentionConfig{sagevid::AttentionBackend::sage2, std::nullopt, {}});
  const at::Tensor latents = io.view("latents").to(on_gpu), text = io.view("text").to(on_gpu);
  const at::Tensor timestep = io.view("timestep").to(kGpu);
  const at::Tensor plain = model.forward(latents, text, timestep, std::nullopt, attention).to(at::kDouble);
  on_one_rank([&](const Collectives& group) {
    const sagevid::parallel::SequenceParallel sequence(group);
    const at::Tensor split = model.forward(latents, text, timestep, std::nullopt, attention, &sequence).to(at::kDouble);
    REQUIRE(split.sizes() == plain.sizes());
    const double error = ((split - plain).abs().max() / plain.abs().max()).item<double>();
    CAPTURE(error);
    CHECK(error <= 1e-2);  // the same bf16 values; only the exchange's copies and layouts differ
  });
  CHECK(attention.fallback_count() == 0);
}
