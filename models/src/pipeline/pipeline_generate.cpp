// One request through the pipeline, as diffusers' CogVideoXPipeline.__call__ (or, for image-to-video,
// CogVideoXImageToVideoPipeline.__call__) runs it: T5 embeddings of [negative; positive], the image's latents,
// seeded latents, the guided denoising loop, VAE decode batch by batch, uint8 frames.
#include "pipeline_parts.h"
#include "pipeline_ranks.h"

#include "parallel/gather_to_first.h"

#include "sagevid/models/image_preprocess.h"
#include "sagevid/models/seconds_since.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string>

namespace sagevid {
namespace {

// Device work is queued asynchronously: wait for it so a phase's time is its work, not its queueing.
void wait_for(const c10::Device& device) {
  if (device.is_cpu()) return;
  const c10::impl::DeviceGuardImplInterface* impl = c10::impl::getDeviceGuardImpl(device.type());
  impl->synchronizeDevice(device.has_index() ? device.index() : impl->getDevice().index());
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  const size_t middle = values.size() / 2;
  std::sort(values.begin(), values.end());
  return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// [B, L, d_model] hidden states of the prompts on `device`, each tokenized to exactly max_tokens ids (no
// attention mask: the pipeline uses the whole padded sequence). An offloaded encoder runs there block by block.
at::Tensor encode_prompts(const T5Tokenizer& tokenizer, const T5Encoder& encoder, const Attention& attention,
                          const std::vector<std::string>& prompts, int64_t max_tokens, const c10::Device& device) {
  std::vector<int64_t> ids;
  for (const std::string& prompt : prompts) {
    const std::vector<int64_t> prompt_ids = tokenizer.encode(prompt, max_tokens);
    ids.insert(ids.end(), prompt_ids.begin(), prompt_ids.end());
  }
  const at::Tensor input_ids = at::tensor(ids, at::kLong).view({int64_t(prompts.size()), max_tokens});
  return encoder.forward(input_ids, attention, device);
}

// Non-finite latents (NaN weights, an overflow) would otherwise run on and decode to a plausible-looking video.
void check_finite(const at::Tensor& latents, int step, int total) {
  if (!at::isfinite(latents).all().item<bool>())
    throw NonFiniteLatents("denoising step " + std::to_string(step) + " of " + std::to_string(total) +
                           " produced non-finite latents (NaN or infinity): damaged weights or an overflow");
}

// [1, 3, T, H, W] from the VAE -> uint8 RGB [T, H, W, 3] on the CPU: diffusers' postprocess_video (x * 0.5 +
// 0.5 clamped to [0, 1] in the VAE's dtype, then float) followed by round(x * 255) as our fixture script does.
at::Tensor to_rgb8(const at::Tensor& video) {
  const at::Tensor unit = (video.select(0, 0) * 0.5 + 0.5).clamp(0, 1).to(at::kFloat);
  return (unit * 255).round().to(at::kByte).permute({1, 2, 3, 0}).contiguous().to(at::kCPU);
}

// The denoising loop and the decode of one request, with its callbacks and its noise generator. Under a parallel
// plan each rank runs one (`rank`): all draw the same noise from the same seed and so keep the same latents.
class Generation {
 public:
  Generation(const CogVideoXTransformer& transformer, const CogVideoXVaeDecoder& vae, const Attention& attention,
             const PipelineOptions& options, const GenerationRequest& request, const GenerationCallbacks& callbacks,
             const PipelineRank* rank)
      : transformer_(transformer),
        vae_(vae),
        attention_(attention),
        options_(options),
        request_(request),
        callbacks_(callbacks),
        rank_(rank),
        generator_(at::make_generator<at::CPUGeneratorImpl>(request.seed)) {}

  void check_cancelled() const {
    if (callbacks_.cancelled && callbacks_.cancelled()) throw GenerationCancelled();
  }

  // check_cancelled where every rank runs the same point: rank 0 asks its callback and the others follow it, so
  // that all stop together (one that ran on would wait in a collective for the others).
  void check_cancelled_together() const {
    const bool cancelled = callbacks_.cancelled && callbacks_.cancelled();
    if (!(rank_ ? rank_->agree(cancelled) : cancelled)) return;
    if (rank_) rank_->stopping_together = true;
    throw GenerationCancelled();
  }

  void begin(GenerationPhase phase) const {
    if (callbacks_.on_phase) callbacks_.on_phase(phase);
  }

  // [prompts, L, d_model] T5 embeddings of the prompts. Under a parallel plan rank 0 encodes them (it alone holds T5)
  // and hands them to every rank.
  at::Tensor prompt_embeddings(const CogVideoXPipeline::Parts& parts, const Attention& attention,
                               const std::vector<std::string>& prompts) const {
    const int64_t length = parts.transformer.config().max_text_seq_length;
    if (parts.text_encoder) {
      at::Tensor text =
          encode_prompts(parts.tokenizer, *parts.text_encoder, attention, prompts, length, options_.device);
      if (!rank_) return text;
      text = text.to(options_.dtype).contiguous();  // the transformer's dtype, which it would cast them to anyway
      rank_->world->broadcast(text, 0);
      return text;
    }
    const auto shape = {int64_t(prompts.size()), length, parts.text_config.d_model};
    at::Tensor text = at::empty(shape, at::TensorOptions().dtype(options_.dtype).device(options_.device));
    rank_->world->broadcast(text, 0);
    return text;
  }

  // diffusers' prepare_latents: randn_tensor with a CPU generator draws on the CPU in the pipeline's dtype
  // (torch's half/bf16 normal draws differ from a cast of its fp32 ones), then moves the noise.
  at::Tensor initial_latents(const LatentShape& shape, double init_noise_sigma) {
    const at::Tensor noise =
        request_.latents
            ? request_.latents->to(options_.device)
            : at::randn(shape.sizes(), generator_, at::TensorOptions().dtype(options_.dtype)).to(options_.device);
    return noise * init_noise_sigma;
  }

  // diffusers' image-to-video prepare_latents: the image's latent distribution sampled with the request's
  // generator (before the initial noise is drawn, as diffusers draws them), scaled by the VAE's scaling factor
  // (divided where its config sets invert_scale_latents, as CogVideoX 1.5 was trained), then zero frames up to
  // the latents' count, padding included: [1, F + padding, C, h, w]. (diffusers would also repeat the first
  // count % patch_size_t frames in front; the count is always a multiple of patch_size_t, so none are.)
  at::Tensor image_latents(const CogVideoXVaeEncoder& encoder, const LatentShape& shape) {
    const at::Tensor pixels =
        preprocess_image(*request_.image, request_.height, request_.width, options_.dtype).unsqueeze(2);
    at::Tensor latents = encoder.encode(pixels.to(options_.device)).sample(generator_).to(options_.dtype);
    const double scale = encoder.config().scaling_factor;
    latents = (encoder.invert_scale_latents() ? latents * (1.0 / scale) : latents * scale).permute({0, 2, 1, 3, 4});
    const at::Tensor padding =
        at::zeros({1, shape.frames + shape.padding - 1, shape.channels, shape.height, shape.width}, latents.options());
    return at::cat({latents, padding}, 1);
  }

  // Runs every step of the scheduler on latents [1, F, C, h, w]; text is [negative; positive] when guided. An
  // image-to-video model gets image_latents (same shape) beside the latents on the channels, and ofs 2.0 where it
  // has the ofs embedding (CogVideoX 1.5), as diffusers passes them. padding_frames lead the latents
  // (patch_size_t); previews skip them.
  at::Tensor denoise(at::Tensor latents, const at::Tensor& text, const at::Tensor& image_latents, Scheduler& scheduler,
                     int64_t padding_frames, std::vector<double>& step_s) {
    const std::vector<int64_t>& timesteps = scheduler.timesteps();
    const int total = int(timesteps.size());
    const bool guided = request_.guidance_scale > 1.0;
    for (int i = 0; i < total; ++i) {
      check_cancelled_together();
      const Clock::time_point start = Clock::now();
      at::Tensor prediction = predict(latents, text, image_latents, timesteps[size_t(i)], guided);
      if (guided) {
        const std::vector<at::Tensor> halves = prediction.chunk(2);  // unconditional, conditional
        prediction = halves[0] + guidance_at(timesteps[size_t(i)], total) * (halves[1] - halves[0]);
      }
      const bool preview = request_.preview_every > 0 && (i + 1) % request_.preview_every == 0 && callbacks_.on_preview;
      const at::Tensor x0 = preview ? scheduler.original_sample(prediction, i, latents) : at::Tensor();
      latents = scheduler.step(prediction, i, latents, &generator_).to(options_.dtype);
      check_finite(latents, i + 1, total);
      wait_for(options_.device);
      step_s.push_back(seconds_since(start));
      report(GenerationPhase::denoise, i + 1, total);
      if (preview) send_preview(x0, padding_frames, i + 1, total);
    }
    return latents;
  }

  // The transformer's fp32 prediction for latents [1, F, C, h, w] at `timestep`: [2, ...] (the negative prompt's,
  // then the positive's) where guided, else [1, ...]. A cfg pair of ranks makes one half each and swaps them.
  at::Tensor predict(const at::Tensor& latents, const at::Tensor& text, const at::Tensor& image_latents,
                     int64_t timestep, bool guided) const {
    const bool halves_apart = guided && rank_ && rank_->cfg;
    const bool both_halves = guided && !halves_apart;
    const auto batch = [&](const at::Tensor& x) { return both_halves ? at::cat({x, x}) : x; };
    at::Tensor input = batch(latents);
    if (image_latents.defined()) input = at::cat({input, batch(image_latents)}, 2);
    const at::Tensor prompt = halves_apart ? text.narrow(0, rank_->cfg->rank(), 1) : text;
    const auto on_device = at::TensorOptions().device(options_.device);
    std::optional<at::Tensor> ofs;
    if (transformer_.config().has_ofs()) ofs = at::full({1}, 2.0, on_device.dtype(options_.dtype));
    const at::Tensor timesteps = at::full({input.size(0)}, timestep, on_device.dtype(at::kLong));
    const at::Tensor prediction =
        transformer_.forward(input, prompt, timesteps, ofs, attention_, rank_ ? rank_->sequence.get() : nullptr)
            .to(at::kFloat);
    return halves_apart ? rank_->cfg->all_gather(prediction).flatten(0, 1) : prediction;
  }

  // The first frame of x0 [1, F, C, h, w], pooled to the preview's size and decoded on its own.
  void send_preview(const at::Tensor& x0, int64_t padding_frames, int step, int total) {
    const Clock::time_point start = Clock::now();
    const int64_t h = x0.size(3), w = x0.size(4);
    const int64_t pixels_per_latent = vae_.config().spatial_compression();
    const int64_t shrink =
        std::max<int64_t>(1, (std::max(h, w) * pixels_per_latent + kPreviewLongSide - 1) / kPreviewLongSide);
    const at::Tensor frame = x0.select(1, padding_frames).to(options_.dtype);  // [1, C, h, w]
    const at::Tensor pooled =
        shrink > 1
            ? at::adaptive_avg_pool2d(frame, {std::max<int64_t>(1, h / shrink), std::max<int64_t>(1, w / shrink)})
            : frame;
    at::Tensor rgb;
    vae_.decode_batches(
        pooled.unsqueeze(2) * (1.0 / vae_.config().scaling_factor),
        [&](const at::Tensor& video) { rgb = to_rgb8(video).select(0, 0).contiguous(); }, options_.vae);
    preview_s_ += seconds_since(start);
    ++previews_;
    callbacks_.on_preview({step, total, rgb});
  }

  double preview_seconds() const { return preview_s_; }
  int previews() const { return previews_; }

  // The ranks that decode these latents [1, F, C, h, w] (decode_ranks).
  int decoders(const at::Tensor& latents) const {
    return decode_ranks(vae_, options_, latents.size(3), latents.size(4));
  }

  // Drops the patch_size_t padding frames (diffusers drops them from the front), unscales and decodes batch by
  // batch, handing each batch's frames out (rank 0), with the tiles shared where decoders(latents) > 1. Returns the
  // number of frames delivered.
  int64_t decode(const at::Tensor& latents, int64_t padding_frames, bool shared) {
    const at::Tensor video_latents =
        latents.narrow(1, padding_frames, latents.size(1) - padding_frames).permute({0, 2, 1, 3, 4}) *
        (1.0 / vae_.config().scaling_factor);
    const int64_t expected = request_.num_frames;
    int64_t delivered = 0;
    std::optional<VaeTileShare> share;
    if (shared) {
      const parallel::Collectives& world = *rank_->world;
      share = VaeTileShare{world.rank(), world.size(), [&](const std::vector<at::Tensor>& mine, int64_t most) {
                             check_cancelled_together();  // each batch, before its tiles meet on rank 0
                             return parallel::gather_to_first(world, mine, most, 5, vae_.options());
                           }};
      check_cancelled_together();
    } else {
      check_cancelled();
    }
    vae_.decode_batches(
        video_latents,
        [&](const at::Tensor& video) {
          const at::Tensor frames = to_rgb8(video);
          delivered += frames.size(0);
          if (callbacks_.on_frames) callbacks_.on_frames(frames);
          report(GenerationPhase::decode, int(delivered), int(expected));
          // Before the next batch decodes; a shared decode's ranks stop together, in the gather.
          if (delivered < expected && !shared) check_cancelled();
        },
        options_.vae, share ? &*share : nullptr);
    return delivered;
  }

 private:
  // diffusers' use_dynamic_cfg: 1 + g (1 - cos(pi ((n - t) / n)^5)) / 2 at timestep t of n steps.
  double guidance_at(int64_t timestep, int steps) const {
    const double scale = request_.guidance_scale;
    if (!request_.dynamic_cfg) return scale;
    const double ramp = std::pow(double(steps - timestep) / steps, 5.0);
    return 1 + scale * ((1 - std::cos(std::numbers::pi * ramp)) / 2);
  }

  void report(GenerationPhase phase, int step, int total) const {
    if (callbacks_.on_progress) callbacks_.on_progress({phase, step, total, seconds_since(start_)});
  }

  const CogVideoXTransformer& transformer_;
  const CogVideoXVaeDecoder& vae_;
  const Attention& attention_;
  const PipelineOptions& options_;
  const GenerationRequest& request_;
  const GenerationCallbacks& callbacks_;
  const PipelineRank* rank_;  // null: one device
  at::Generator generator_;
  Clock::time_point start_ = Clock::now();
  double preview_s_ = 0;
  int previews_ = 0;
};

// One rank's run of a validated request (rank null: the only one). Every rank denoises; rank 0 (or the only one)
// encodes the text for all, decodes (a shared decode: every rank its tiles) and calls the callbacks.
GenerationResult run(const CogVideoXPipeline::Parts& parts, const GenerationRequest& request,
                     const GenerationCallbacks& callbacks, const PipelineRank* rank) {
  const at::NoGradGuard no_grad;
  const Attention& attention = parts.attention_for(request.attention_backend);

  Generation generation(parts.transformer, parts.vae, attention, parts.options, request, callbacks, rank);
  GenerationResult result;
  result.height = request.height;
  result.width = request.width;
  result.seed = request.seed;
  result.attention_backend = std::string(backend_name(attention.config().backend));
  generation.check_cancelled_together();

  generation.begin(GenerationPhase::text_encode);
  Clock::time_point phase_start = Clock::now();
  const bool guided = request.guidance_scale > 1.0;
  const std::vector<std::string> prompts = guided ? std::vector<std::string>{request.negative_prompt, request.prompt}
                                                  : std::vector<std::string>{request.prompt};
  const at::Tensor text = generation.prompt_embeddings(parts, attention, prompts);
  // The image's VAE encode counts as conditioning, with the text's.
  const LatentShape shape = latent_shape(parts.transformer.config(), parts.vae.config(), request);
  const at::Tensor image_latents =
      parts.image_encoder ? generation.image_latents(*parts.image_encoder, shape) : at::Tensor();
  wait_for(parts.options.device);
  result.timings.text_encode_s = seconds_since(phase_start);

  generation.begin(GenerationPhase::denoise);
  phase_start = Clock::now();
  const std::unique_ptr<Scheduler> scheduler = make_scheduler(parts.scheduler);
  scheduler->set_timesteps(request.num_inference_steps);
  std::vector<double> step_s;
  const at::Tensor latents = generation.denoise(generation.initial_latents(shape, scheduler->init_noise_sigma()), text,
                                                image_latents, *scheduler, shape.padding, step_s);
  result.timings.denoise_s = seconds_since(phase_start);
  result.timings.preview_s = generation.preview_seconds();
  result.timings.previews = generation.previews();
  result.timings.step_s_median = median(step_s);
  const int decoders = generation.decoders(latents);
  if (rank && rank->rank != 0 && decoders == 1) return result;

  generation.begin(GenerationPhase::decode);
  phase_start = Clock::now();
  result.num_frames = generation.decode(latents, shape.padding, decoders > 1);
  result.timings.decode_s = seconds_since(phase_start);
  result.timings.decode_ranks = decoders;
  return result;
}

}  // namespace

GenerationResult CogVideoXPipeline::generate(const GenerationRequest& request,
                                             const GenerationCallbacks& callbacks) const {
  validate(request);
  if (!ranks_) return run(*parts_, request, callbacks, nullptr);
  GenerationResult result;
  ranks_->run([&](const PipelineRank& rank) {
    if (rank.rank == 0) result = run(*rank.parts, request, callbacks, &rank);
    else run(*rank.parts, request, {}, &rank);  // the callbacks are rank 0's
  });
  return result;
}

}  // namespace sagevid
