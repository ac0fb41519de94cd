#pragma once
// `sagevid generate`: one video from the command line, without the server. Loads the model named in the
// server config, runs the pipeline, streams the frames into the encoder as the VAE decodes them, writes the
// file, and prints progress and per-phase timings.
#include "video_encoder.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sagevid {

struct GenerateArgs {
  std::string config = "configs/tiny.json";
  std::vector<std::string> overrides;  // --set KEY=VALUE, as the server takes them
  std::string model;                   // empty: the config's first model
  std::string prompt, negative_prompt;
  std::optional<int64_t> frames, height, width;  // unset: the model's defaults, as the server takes them
  std::optional<int> steps;
  std::optional<double> guidance;
  bool dynamic_cfg = false;
  std::optional<uint64_t> seed;  // unset: a random seed, printed
  std::optional<int> fps;        // unset: the model's default
  std::string backend;  // attention backend for this run; empty: the config's
  std::string image;    // --image FILE: PNG or JPEG for image-to-video models; empty: none
  std::string output = "out.mp4";
  VideoFormat format = VideoFormat::mp4_h264;
  int crf = 23;
  std::string preset = "veryfast";
};

// Parses the arguments after "generate"; std::invalid_argument naming the bad flag.
GenerateArgs parse_generate_args(const std::vector<std::string>& args);

// args: what follows "generate" on the command line. Returns the process exit code (0 ok, 2 bad arguments
// or request, 1 failure while generating); errors are printed, not thrown.
int run_generate(const std::vector<std::string>& args);

}  // namespace sagevid
