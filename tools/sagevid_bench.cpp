// sagevid-bench: one denoising step of the CogVideoX transformer at the real 2B and 5B configs (random
// weights), 49 frames at 480x720, CFG batch 2, bf16, per attention backend in one run: median step time,
// the attention share of the step, and peak GPU memory. Prints a markdown table (docs/PERFORMANCE.md).
//
// The attention share is measured, not modelled: the same step with the attention calls timed on their own
// (num_layers x one attention call of the step's shape, median) over the step's median.
#include "bench_util.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/models/attention.h"
#include "sagevid/models/cogvideox_transformer.h"

#include <ATen/ops/full.h>
#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using sagevid::AttentionBackend;
using sagevid::CogVideoXConfig;
using sagevid::CogVideoXTransformer;

struct ModelShape {
  const char* name;
  nlohmann::json config;  // diffusers' transformer/config.json keys that differ from the 2b defaults
};

const std::vector<ModelShape>& model_shapes() {
  static const std::vector<ModelShape> shapes = {
      {"CogVideoX-2B", {{"num_attention_heads", 30}, {"num_layers", 30}}},
      {"CogVideoX-5B",
       {{"num_attention_heads", 48}, {"num_layers", 42}, {"use_rotary_positional_embeddings", true}}},
  };
  return shapes;
}

constexpr int64_t kBatch = 2, kLatentFrames = 13, kLatentHeight = 60, kLatentWidth = 90;  // 49 x 480 x 720

struct StepResult {
  double step_ms = 0, attention_ms = 0, peak_gib = 0;
};

StepResult measure(const CogVideoXTransformer& model, AttentionBackend backend) {
  const CogVideoXConfig& c = model.config();
  const auto random = [](at::IntArrayRef sizes) { return sagevid::tools::random_cuda(sizes, at::kBFloat16); };
  const at::Tensor latents = random({kBatch, kLatentFrames, c.in_channels, kLatentHeight, kLatentWidth});
  const at::Tensor text = random({kBatch, c.max_text_seq_length, c.text_embed_dim});
  const at::Tensor timestep = at::full({kBatch}, 999, at::TensorOptions().device(at::kCUDA).dtype(at::kLong));
  const sagevid::Attention attention(sagevid::AttentionConfig{backend, std::nullopt, {}});

  StepResult r;
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  r.step_ms =
      sagevid::tools::median_ms([&] { model.forward(latents, text, timestep, std::nullopt, attention); }, 2, 5);
  r.peak_gib = sagevid::tools::gib(sagevid::tools::peak_allocated_bytes());

  const int64_t video_tokens = kLatentFrames * (kLatentHeight / c.patch_size) * (kLatentWidth / c.patch_size);
  const int64_t tokens = c.max_text_seq_length + video_tokens;
  const at::Tensor q = random({kBatch, c.num_attention_heads, tokens, c.attention_head_dim});
  const at::Tensor k = random(q.sizes()), v = random(q.sizes());
  r.attention_ms = c.num_layers * sagevid::tools::median_ms([&] { attention(q, k, v); }, 3, 10);
  return r;
}

}  // namespace

int main() {
  const auto devices = sagevid::kernels::cuda_devices();
  if (devices.empty()) {
    std::fprintf(stderr, "sagevid-bench: no CUDA device\n");
    return 1;
  }
  c10::InferenceMode inference;
  std::printf("device: %s (sm_%d); one transformer step, 49x480x720 (17,776 tokens), CFG batch 2, bf16, random "
              "weights; median of 5 steps after 2 warm-ups\n\n",
              devices[0].name.c_str(), devices[0].compute_capability);
  std::printf("| model | backend | step ms | attention ms (layers x call) | attention share | vs flash | peak GiB |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const ModelShape& shape : model_shapes()) {
    const CogVideoXConfig config = CogVideoXConfig::from_json(shape.config, shape.name);
    const CogVideoXTransformer model =
        CogVideoXTransformer::random(config, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16), 0);
    double flash_ms = 0;
    for (AttentionBackend backend : {AttentionBackend::flash, AttentionBackend::cudnn, AttentionBackend::sage2}) {
      const StepResult r = measure(model, backend);
      if (backend == AttentionBackend::flash) flash_ms = r.step_ms;
      std::printf("| %s | %s | %.1f | %.1f | %.0f%% | %.2fx | %.1f |\n", shape.name,
                  std::string(sagevid::backend_name(backend)).c_str(), r.step_ms, r.attention_ms,
                  100.0 * r.attention_ms / r.step_ms, flash_ms / r.step_ms, r.peak_gib);
      std::fflush(stdout);
    }
  }
  return 0;
}
