#include "generate_command.h"

#include "image_decoding.h"
#include "memory_check.h"
#include "request_validation.h"
#include "server_config.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/dtype.h"
#include "sagevid/models/logging.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/seconds_since.h"

#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <type_traits>

namespace sagevid {
namespace {

constexpr const char* kUsage = R"(usage: sagevid generate --prompt TEXT [options]
  --config FILE            server JSON config (default configs/tiny.json); the model is loaded from it
  --set KEY=VALUE          override a config key (as for the server)
  --model NAME             which of the config's models (default: the first)
  --prompt TEXT            what to generate (required)
  --negative-prompt TEXT   what to steer away from (with guidance > 1)
  --frames N --height H --width W --steps S --guidance G
                           request parameters (default: the model's, as the server takes them: its sample
                           frames and size, 50 steps, guidance 6.0)
  --dynamic-cfg            cosine-ramped guidance over the steps
  --seed N                 the noise seed (0 is a seed like any other); absent: a random one, printed
  --backend NAME           attention backend for this run (sage2, flash, cudnn, math)
  --image FILE             the first frame, PNG or JPEG, for image-to-video models (required there)
  --fps F                  frames per second of the video (default: the model's, 8)
  --format mp4|lossless|frames
                           H.264 in fragmented MP4 (default); lossless H.264 4:4:4; raw RGB frames
  --crf N --preset NAME    libx264 quality (default 23) and speed (default veryfast)
  --output FILE            default out.mp4
)";

template <typename T>
T parse_number(std::string_view flag, const std::string& text) {
  try {
    size_t used = 0;
    T value{};
    if constexpr (std::is_floating_point_v<T>) value = static_cast<T>(std::stod(text, &used));
    else if constexpr (std::is_unsigned_v<T>) {
      if (!text.empty() && text[0] == '-') throw std::invalid_argument("negative");
      value = static_cast<T>(std::stoull(text, &used));
    } else {
      const long long parsed = std::stoll(text, &used);
      if (parsed < std::numeric_limits<T>::min() || parsed > std::numeric_limits<T>::max())
        throw std::out_of_range("range");
      value = static_cast<T>(parsed);
    }
    if (used != text.size()) throw std::invalid_argument("trailing characters");
    return value;
  } catch (const std::logic_error&) {
    const char* kind = std::is_floating_point_v<T> ? "a number"
                       : std::is_unsigned_v<T>     ? "a non-negative integer"
                                                   : "an integer";
    throw std::invalid_argument(std::string(flag) + ": expected " + kind + ", got '" + text + "'");
  }
}

VideoFormat parse_format(const std::string& name) {
  if (name == "mp4") return VideoFormat::mp4_h264;
  if (name == "lossless") return VideoFormat::mp4_h264_lossless;
  if (name == "frames") return VideoFormat::rgb_frames;
  throw std::invalid_argument("--format: '" + name + "': expected mp4, lossless or frames");
}

std::string read_image_file(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw std::invalid_argument("--image: cannot open " + path.string());
  std::ostringstream bytes;
  bytes << stream.rdbuf();
  return bytes.str();
}

// --model, or else the config's first model.
const ModelEntry& chosen_model(const ServerConfig& config, const std::string& name) {
  if (config.models.empty()) throw std::invalid_argument("the config names no models");
  if (name.empty()) return config.models.front();
  if (const auto index = find_model(config, name)) return config.models[*index];
  throw std::invalid_argument("--model: unknown model '" + name + "' (the config has: " + model_names(config) + ")");
}

// What the flags say, the model's defaults (as the server fills them in) for the rest.
GenerationRequest make_request(const GenerateArgs& args, const ModelDefaults& defaults,
                               std::optional<at::Tensor> image) {
  GenerationRequest request;
  request.prompt = args.prompt;
  request.negative_prompt = args.negative_prompt;
  request.num_frames = args.frames.value_or(defaults.frames);
  request.height = args.height.value_or(defaults.height);
  request.width = args.width.value_or(defaults.width);
  request.num_inference_steps = args.steps.value_or(defaults.steps);
  request.guidance_scale = args.guidance.value_or(defaults.guidance_scale);
  request.dynamic_cfg = args.dynamic_cfg;
  request.seed = args.seed ? *args.seed : random_seed();
  if (!args.backend.empty()) request.attention_backend = parse_attention_backend(args.backend);
  request.image = std::move(image);
  return request;
}

// Prints one line per progress event; denoise steps overwrite each other on a terminal.
void print_progress(const GenerationProgress& progress) {
  std::fprintf(stderr, "[%7.2f s] %s", progress.elapsed_s, phase_name(progress.phase));
  if (progress.total > 0) std::fprintf(stderr, " %d/%d", progress.step, progress.total);
  std::fprintf(stderr, "\n");
}

// The output file, written under a temporary name and renamed when complete: a failed run leaves no
// truncated video behind.
class OutputFile {
 public:
  explicit OutputFile(std::filesystem::path path) : path_(std::move(path)), partial_(path_.string() + ".part") {
    stream_.open(partial_, std::ios::binary | std::ios::trunc);
    if (!stream_) throw std::runtime_error("cannot write " + partial_.string());
  }
  ~OutputFile() {
    if (committed_) return;
    stream_.close();
    std::error_code ignored;
    std::filesystem::remove(partial_, ignored);
  }
  void write(std::string_view bytes) {
    stream_.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!stream_) throw std::runtime_error("writing " + partial_.string() + " failed");
  }
  void commit() {
    stream_.close();
    if (!stream_) throw std::runtime_error("closing " + partial_.string() + " failed");
    std::filesystem::rename(partial_, path_);
    committed_ = true;
  }

 private:
  std::filesystem::path path_, partial_;
  std::ofstream stream_;
  bool committed_ = false;
};

struct EncodeStats {
  double encode_s = 0;        // inside the encoder (also counted in the pipeline's decode phase)
  double first_video_s = -1;  // since generate() started: when the first playable fragment was out
};

int generate(const GenerateArgs& args) {
  const Clock::time_point start = Clock::now();
  const ServerConfig config = load_server_config(args.config, args.overrides);
  set_log_level(config.log_level);
  const ModelEntry& model = chosen_model(config, args.model);
  OutputFile file(args.output);  // before the slow part: a path we cannot write fails at once
  std::optional<at::Tensor> image;  // decoded as the server decodes a request's, also before the slow part
  if (!args.image.empty()) {
    try {
      image = decode_image(read_image_file(args.image), config.image);
    } catch (const ImageError& e) {
      throw std::invalid_argument("--image: " + args.image + ": " + e.what());
    }
  }

  const PipelineOptions options = pipeline_options(model, config);
  std::fprintf(stderr, "loading %s from %s (%s, %s)\n", model.name.c_str(), model.path.c_str(), model.device.c_str(),
               std::string(dtype_name(model.dtype)).c_str());
  c10::InferenceMode inference;
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(model.path, options);
  const double load_s = seconds_since(start);
  const ModelDefaults defaults = model_defaults(model.path, pipeline.limits());
  const GenerationRequest request = make_request(args, defaults, std::move(image));
  pipeline.validate(request);

  VideoEncoderOptions video;
  video.fps = args.fps.value_or(defaults.fps);
  video.format = args.format;
  video.crf = args.crf;
  video.preset = args.preset;
  video.width = static_cast<int>(request.width);
  video.height = static_cast<int>(request.height);
  check_video_options(video);
  check_memory(pipeline, request);

  EncodeStats stats;
  const Clock::time_point generate_start = Clock::now();
  StreamingVideoEncoder encoder(video, [&](std::string_view bytes) { file.write(bytes); });
  GenerationCallbacks callbacks;
  callbacks.on_progress = print_progress;
  callbacks.on_frames = [&](const at::Tensor& frames) {
    const Clock::time_point encode_start = Clock::now();
    encoder.add_frames(frames);
    stats.encode_s += seconds_since(encode_start);
    if (stats.first_video_s < 0) stats.first_video_s = seconds_since(generate_start);
    std::fprintf(stderr, "[%7.2f s] encode %lld frames (%lld of %lld), %lld bytes out\n", seconds_since(generate_start),
                 static_cast<long long>(frames.size(0)), static_cast<long long>(encoder.frames_written()),
                 static_cast<long long>(request.num_frames), static_cast<long long>(encoder.bytes_written()));
  };
  std::fprintf(stderr, "generating %lld frames %lldx%lld, %d steps, guidance %.2f, seed %llu\n",
               static_cast<long long>(request.num_frames), static_cast<long long>(request.height),
               static_cast<long long>(request.width), request.num_inference_steps, request.guidance_scale,
               static_cast<unsigned long long>(request.seed));
  const GenerationResult result = pipeline.generate(request, callbacks);
  const Clock::time_point finish_start = Clock::now();
  encoder.finish();
  stats.encode_s += seconds_since(finish_start);
  file.commit();

  const PhaseTimings& t = result.timings;
  std::printf("wrote %s: %lld frames %lldx%lld at %d fps, %s, %lld bytes\n", args.output.c_str(),
              static_cast<long long>(encoder.frames_written()), static_cast<long long>(result.height),
              static_cast<long long>(result.width), video.fps, mime_type(video.format),
              static_cast<long long>(encoder.bytes_written()));
  std::printf("seed %llu, attention %s\n", static_cast<unsigned long long>(result.seed),
              result.attention_backend.c_str());
  std::printf(
      "timings: load %.3f s, text-encode %.3f s, denoise %.3f s (median step %.3f s), decode %.3f s "
      "(of which encode %.3f s), first video fragment out at %.3f s, total %.3f s\n",
      load_s, t.text_encode_s, t.denoise_s, t.step_s_median, t.decode_s, stats.encode_s, stats.first_video_s,
      seconds_since(start));
  return 0;
}

}  // namespace

GenerateArgs parse_generate_args(const std::vector<std::string>& args) {
  GenerateArgs parsed;
  bool have_prompt = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    const auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw std::invalid_argument(flag + " needs a value");
      return args[++i];
    };
    if (flag == "--config") parsed.config = value();
    else if (flag == "--set") parsed.overrides.push_back(value());
    else if (flag == "--model") parsed.model = value();
    else if (flag == "--prompt") {
      parsed.prompt = value();
      have_prompt = true;
    } else if (flag == "--negative-prompt") parsed.negative_prompt = value();
    else if (flag == "--frames") parsed.frames = parse_number<int64_t>(flag, value());
    else if (flag == "--height") parsed.height = parse_number<int64_t>(flag, value());
    else if (flag == "--width") parsed.width = parse_number<int64_t>(flag, value());
    else if (flag == "--steps") parsed.steps = parse_number<int>(flag, value());
    else if (flag == "--guidance") parsed.guidance = parse_number<double>(flag, value());
    else if (flag == "--dynamic-cfg") parsed.dynamic_cfg = true;
    else if (flag == "--seed") parsed.seed = parse_number<uint64_t>(flag, value());
    else if (flag == "--fps") parsed.fps = parse_number<int>(flag, value());
    else if (flag == "--backend") parsed.backend = value();
    else if (flag == "--image") parsed.image = value();
    else if (flag == "--output" || flag == "-o") parsed.output = value();
    else if (flag == "--format") parsed.format = parse_format(value());
    else if (flag == "--crf") parsed.crf = parse_number<int>(flag, value());
    else if (flag == "--preset") parsed.preset = value();
    else throw std::invalid_argument("unknown argument '" + flag + "'");
  }
  if (!have_prompt) throw std::invalid_argument("--prompt is required");
  if (is_blank(parsed.prompt)) throw std::invalid_argument("--prompt: must not be empty or only whitespace");
  if (parsed.output.empty()) throw std::invalid_argument("--output: must not be empty");
  return parsed;
}

int run_generate(const std::vector<std::string>& args) {
  for (const std::string& arg : args)
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  GenerateArgs parsed;
  try {
    parsed = parse_generate_args(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sagevid generate: %s\n%s", e.what(), kUsage);
    return 2;
  }
  try {
    return generate(parsed);
  } catch (const InvalidRequest& e) {
    std::fprintf(stderr, "sagevid generate: invalid request: %s\n", e.what());
    return 2;
  } catch (const RequestTooLarge& e) {
    std::fprintf(stderr, "sagevid generate: too large: %s\n", e.what());
    return 2;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "sagevid generate: config: %s\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "sagevid generate: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sagevid generate: failed: %s\n", e.what());
    return 1;
  }
}

}  // namespace sagevid
