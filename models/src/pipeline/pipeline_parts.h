#pragma once
// What a loaded CogVideoXPipeline holds, shared by pipeline.cpp (loading, validation) and
// pipeline_generate.cpp (the run).
#include "sagevid/models/attention.h"
#include "sagevid/models/cogvideox_transformer.h"
#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/scheduler.h"
#include "sagevid/models/t5_encoder.h"
#include "sagevid/models/t5_tokenizer.h"

#include <array>
#include <memory>
#include <optional>
#include <vector>

namespace sagevid {

struct CogVideoXPipeline::Parts {
  Parts(PipelineOptions options_, ModelLimits limits_, T5Tokenizer tokenizer_, T5Config text_config_,
        std::optional<T5Encoder> text_encoder_, CogVideoXTransformer transformer_, CogVideoXVaeDecoder vae_,
        std::optional<CogVideoXVaeEncoder> image_encoder_, SchedulerConfig scheduler_)
      : options(std::move(options_)),
        limits(limits_),
        tokenizer(std::move(tokenizer_)),
        text_config(std::move(text_config_)),
        text_encoder(std::move(text_encoder_)),
        transformer(std::move(transformer_)),
        vae(std::move(vae_)),
        image_encoder(std::move(image_encoder_)),
        scheduler(std::move(scheduler_)) {
    for (AttentionBackend backend : kAllBackends) {
      AttentionConfig config = options.attention;
      config.backend = backend;
      attention[size_t(backend)] = std::make_unique<Attention>(config);
    }
  }

  const Attention& attention_for(std::optional<AttentionBackend> backend) const {
    return *attention[size_t(backend.value_or(options.attention.backend))];
  }

  PipelineOptions options;
  ModelLimits limits;
  T5Tokenizer tokenizer;
  T5Config text_config;
  std::optional<T5Encoder> text_encoder;  // under a parallel plan, rank 0's alone: it encodes for every rank
  CogVideoXTransformer transformer;
  CogVideoXVaeDecoder vae;
  std::optional<CogVideoXVaeEncoder> image_encoder;  // image-to-video models only
  SchedulerConfig scheduler;  // each request gets its own scheduler: the DPM one keeps state between steps
  // One Attention per backend with the pipeline's fallback and sage2 options, so the fallbacks of requests that
  // pick their own backend are counted (and logged once) like the default's.
  std::array<std::unique_ptr<Attention>, kAllBackends.size()> attention;
};

// The initial latents' shape for a request, [1, frames + padding, channels, height, width], as diffusers'
// prepare_latents: padding frames make the count a multiple of patch_size_t (CogVideoX 1.5); the pipeline
// drops that many from the front before decoding.
struct LatentShape {
  int64_t frames = 0, padding = 0, channels = 0, height = 0, width = 0;
  std::vector<int64_t> sizes() const { return {1, frames + padding, channels, height, width}; }
};
LatentShape latent_shape(const CogVideoXConfig& transformer, const CogVideoXVaeConfig& vae,
                         const GenerationRequest& request);
// Video tokens the transformer sees for latents of this shape.
int64_t latent_tokens(const CogVideoXConfig& transformer, const LatentShape& shape);
// The ranks that decode latents h x w: under a parallel plan all of them where the tiled decode makes several tiles
// (each decodes its share); else 1 (rank 0 decodes alone).
int decode_ranks(const CogVideoXVaeDecoder& vae, const PipelineOptions& options, int64_t latent_height,
                 int64_t latent_width);

}  // namespace sagevid
