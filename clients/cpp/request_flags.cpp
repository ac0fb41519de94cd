#include "request_flags.h"

#include <fstream>
#include <iterator>
#include <limits>

namespace sagevid::client {

const char* const kRequestFlagsHelp = R"(request flags (0 or absent: the model's default):
  --model NAME              a name from `models` (default: the server's only model)
  --prompt TEXT             what to generate
  --negative-prompt TEXT
  --frames N                of the form temporal_factor * k + 1
  --height N --width N      multiples of the model's spatial factor
  --steps N                 denoising steps
  --guidance-scale X        classifier-free guidance scale
  --dynamic-cfg             ramp the guidance scale over the steps
  --seed N                  the noise seed (0 is a seed too); absent: random (the seed used is reported)
  --fps N                   frame rate written into the MP4
  --format F                mp4 (H.264, default), mp4-lossless or rgb (raw frames)
  --backend NAME            attention backend for this request (sage2, flash, cudnn, math) if the server allows
  --preview-every N         a preview of the denoised estimate every N steps (with generate's --preview-dir)
  --image FILE              the first frame, PNG or JPEG, for image-to-video models (`models`: takes image)
)";

void add_request_flags(FlagSpec& spec) {
  spec.values.insert({"--model", "--prompt", "--negative-prompt", "--frames", "--height", "--width", "--steps",
                      "--guidance-scale", "--seed", "--fps", "--format", "--backend", "--preview-every", "--image"});
  spec.switches.insert("--dynamic-cfg");
}

namespace {

// The file's bytes as they are: the server checks that they are an image it takes.
std::string image_file_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw UsageError("--image: cannot open '" + path + "'");
  std::string bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  if (file.bad()) throw UsageError("--image: reading '" + path + "' failed");
  return bytes;
}

}  // namespace

sagevid::v1::OutputFormat parse_output_format(const std::string& name) {
  if (name == "mp4") return sagevid::v1::OUTPUT_FORMAT_MP4_H264;
  if (name == "mp4-lossless") return sagevid::v1::OUTPUT_FORMAT_MP4_H264_LOSSLESS;
  if (name == "rgb") return sagevid::v1::OUTPUT_FORMAT_RGB_FRAMES;
  throw UsageError("--format: '" + name + "' is not one of mp4, mp4-lossless, rgb");
}

std::string phase_name(sagevid::v1::Phase phase) {
  switch (phase) {
    case sagevid::v1::PHASE_TEXT_ENCODE: return "text-encode";
    case sagevid::v1::PHASE_DENOISE: return "denoise";
    case sagevid::v1::PHASE_DECODE: return "decode";
    case sagevid::v1::PHASE_ENCODE: return "encode";
    default: return "phase " + std::to_string(static_cast<int>(phase));
  }
}

sagevid::v1::GenerateRequest request_from_flags(const Flags& flags) {
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  sagevid::v1::GenerateRequest request;
  request.set_model(flags.text("--model", ""));
  request.set_prompt(flags.text("--prompt", ""));
  request.set_negative_prompt(flags.text("--negative-prompt", ""));
  request.set_frames(static_cast<int32_t>(flags.integer("--frames", 0, 0, kInt32Max)));
  request.set_height(static_cast<int32_t>(flags.integer("--height", 0, 0, kInt32Max)));
  request.set_width(static_cast<int32_t>(flags.integer("--width", 0, 0, kInt32Max)));
  request.set_steps(static_cast<int32_t>(flags.integer("--steps", 0, 0, kInt32Max)));
  request.set_guidance_scale(static_cast<float>(flags.real("--guidance-scale", 0, 0, 1e6)));
  request.set_dynamic_cfg(flags.has("--dynamic-cfg"));
  if (flags.has("--seed")) request.set_seed(flags.unsigned_integer("--seed", 0));
  request.set_fps(static_cast<int32_t>(flags.integer("--fps", 0, 0, kInt32Max)));
  if (flags.has("--format")) request.set_output(parse_output_format(flags.text("--format", "")));
  request.set_attention_backend(flags.text("--backend", ""));
  request.set_preview_every(static_cast<int32_t>(flags.integer("--preview-every", 0, 0, kInt32Max)));
  if (flags.has("--image")) request.set_image(image_file_bytes(flags.text("--image", "")));
  return request;
}

}  // namespace sagevid::client
