#include "generate_events.h"

#include "png_image.h"

namespace sagevid {

v1::GenerateEvent queued_event(int position) {
  v1::GenerateEvent event;
  event.mutable_queued()->set_position(position);
  return event;
}

v1::GenerateEvent started_event(const ResolvedRequest& request, const std::string& request_id) {
  const GenerationRequest& generation = request.generation;
  v1::GenerateEvent event;
  v1::Started* started = event.mutable_started();
  started->set_request_id(request_id);
  started->set_seed(generation.seed);
  started->set_attention_backend(request.attention_backend);
  started->set_frames(int32_t(generation.num_frames));
  started->set_height(int32_t(generation.height));
  started->set_width(int32_t(generation.width));
  started->set_steps(generation.num_inference_steps);
  return event;
}

v1::Phase proto_phase(GenerationPhase phase) {
  switch (phase) {
    case GenerationPhase::text_encode: return v1::PHASE_TEXT_ENCODE;
    case GenerationPhase::denoise: return v1::PHASE_DENOISE;
    case GenerationPhase::decode: return v1::PHASE_DECODE;
  }
  return v1::PHASE_UNSPECIFIED;
}

v1::GenerateEvent progress_event(v1::Phase phase, int64_t step, int64_t total, double elapsed) {
  v1::GenerateEvent event;
  v1::Progress* progress = event.mutable_progress();
  progress->set_phase(phase);
  progress->set_step(int32_t(step));
  progress->set_total(int32_t(total));
  progress->set_elapsed_seconds(elapsed);
  return event;
}

v1::GenerateEvent preview_event(const GenerationPreview& preview, double elapsed) {
  const at::Tensor& rgb = preview.rgb;  // uint8 [height, width, 3], contiguous
  v1::GenerateEvent event;
  v1::Preview* out = event.mutable_preview();
  out->set_png(png_image(rgb.data_ptr<uint8_t>(), rgb.size(1), rgb.size(0)));
  out->set_step(preview.step);
  out->set_total(preview.total);
  out->set_width(int32_t(rgb.size(1)));
  out->set_height(int32_t(rgb.size(0)));
  out->set_elapsed_seconds(elapsed);
  return event;
}

}  // namespace sagevid
