// `sagevid generate`: its arguments, and one video end to end on the tiny model, decoded back from the file.
#include "catch.h"

#include "generate_command.h"
#include "server_config.h"
#include "video_decoding.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

using sagevid::GenerateArgs;
using sagevid::parse_generate_args;

namespace {

const std::string kTinyConfig = std::string(SAGEVID_SOURCE_DIR) + "/configs/tiny.json";

std::filesystem::path scratch_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("sagevid-generate-" + std::to_string(getpid()) + "-" + name);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("generate parses every flag", "[integration][generate]") {
  // clang-format off: a command line, packed as it is typed (the formatter puts each of its words on a line).
  const GenerateArgs args = parse_generate_args(
      {"--config", "c.json", "--set", "a=1", "--set", "b=2", "--model", "m", "--prompt", "a fox", "--negative-prompt",
       "blur", "--frames", "13", "--height", "480", "--width", "720", "--steps", "7", "--guidance", "4.5",
       "--dynamic-cfg", "--seed", "18446744073709551615", "--fps", "12", "--backend", "flash", "--output", "x.mp4",
       "--format", "lossless", "--crf", "18", "--preset", "slow"});
  // clang-format on
  CHECK(args.config == "c.json");
  CHECK(args.overrides == std::vector<std::string>{"a=1", "b=2"});
  CHECK(args.model == "m");
  CHECK(args.prompt == "a fox");
  CHECK(args.negative_prompt == "blur");
  CHECK(args.frames == 13);
  CHECK(args.height == 480);
  CHECK(args.width == 720);
  CHECK(args.steps == 7);
  CHECK(args.guidance == 4.5);
  CHECK(args.dynamic_cfg);
  CHECK(args.seed == 18446744073709551615ull);
  CHECK(args.fps == 12);
  CHECK(args.backend == "flash");
  CHECK(args.output == "x.mp4");
  CHECK(args.format == sagevid::VideoFormat::mp4_h264_lossless);
  CHECK(args.crf == 18);
  CHECK(args.preset == "slow");

  const GenerateArgs defaults = parse_generate_args({"--prompt", "p"});
  CHECK_FALSE(defaults.frames.has_value());
  CHECK(defaults.format == sagevid::VideoFormat::mp4_h264);
  CHECK_FALSE(defaults.seed.has_value());  // a random one
  CHECK_FALSE(defaults.fps.has_value());   // the model's
  CHECK(parse_generate_args({"--prompt", "p", "--seed", "0"}).seed == uint64_t(0));  // seed 0, not "random"
}

TEST_CASE("generate rejects bad arguments naming the flag", "[integration][generate]") {
  REQUIRE_THROWS_WITH(parse_generate_args({}), ContainsSubstring("--prompt is required"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt", "p", "--frames", "9x"}),
                      ContainsSubstring("--frames: expected an integer, got '9x'"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt", "p", "--seed", "-1"}), ContainsSubstring("--seed"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt", "p", "--steps", "99999999999"}), ContainsSubstring("--steps"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt", "p", "--guidance", "high"}), ContainsSubstring("--guidance"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt", "p", "--format", "gif"}), ContainsSubstring("--format: 'gif'"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt", "p", "--colour"}),
                      ContainsSubstring("unknown argument '--colour'"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt"}), ContainsSubstring("--prompt needs a value"));
  REQUIRE_THROWS_WITH(parse_generate_args({"--prompt", " \t\n "}),
                      ContainsSubstring("--prompt: must not be empty or only whitespace"));
  CHECK(sagevid::run_generate({"--prompt", "   "}) == 2);
}

TEST_CASE("generate with only a prompt runs the default config's model at its defaults", "[integration][generate]") {
  const auto output = scratch_file("defaults.mp4");
  const std::filesystem::path caller_dir = std::filesystem::current_path();
  std::filesystem::current_path(SAGEVID_SOURCE_DIR);  // where the default configs/tiny.json is
  const int code = sagevid::run_generate({"--prompt", "a small test", "--output", output.string()});
  std::filesystem::current_path(caller_dir);
  REQUIRE(code == 0);
  const sagevid::test::DecodedVideo video = sagevid::test::decode_video(read_file(output));
  std::filesystem::remove(output);
  // The tiny transformer's sample: 9 frames of 8 x 12 latent pixels, 64 x 96; the server's default 8 fps.
  CHECK(video.width == 96);
  CHECK(video.height == 64);
  CHECK(static_cast<int64_t>(video.rgb.size()) == 9);
  CHECK(av_cmp_q(video.frame_rate, AVRational{8, 1}) == 0);
}

TEST_CASE("a missing or unreadable config names the file and the reason", "[integration][generate]") {
  const auto output = scratch_file("no-config.mp4");
  const auto folder = scratch_file("config-folder");
  std::filesystem::create_directories(folder);
  CHECK(sagevid::run_generate({"--config", folder.string(), "--prompt", "p", "--output", output.string()}) == 2);
  CHECK_THROWS_WITH(sagevid::load_server_config(folder, {}), ContainsSubstring(folder.string() + ": is a directory"));
  std::filesystem::remove(folder);
  CHECK(sagevid::run_generate({"--config", folder.string(), "--prompt", "p", "--output", output.string()}) == 2);
  CHECK_THROWS_WITH(sagevid::load_server_config(folder, {}), ContainsSubstring(folder.string() + ": no such file"));
  CHECK_FALSE(std::filesystem::exists(output));
}

TEST_CASE("generate makes an MP4 of the tiny model that decodes to the requested video", "[integration][generate]") {
  std::mt19937_64 random(std::random_device{}());
  const int64_t frames = 1 + 8 * std::uniform_int_distribution<int64_t>(1, 2)(random);  // the tiny model's form
  const int64_t height = 16 * std::uniform_int_distribution<int64_t>(2, 5)(random);
  const int64_t width = 16 * std::uniform_int_distribution<int64_t>(2, 6)(random);
  const int fps = std::uniform_int_distribution<int>(4, 24)(random);
  CAPTURE(frames, height, width, fps);
  const auto output = scratch_file("tiny.mp4");
  const int code =
      sagevid::run_generate({"--config", kTinyConfig, "--prompt", "a small test", "--frames", std::to_string(frames),
                             "--height", std::to_string(height), "--width", std::to_string(width), "--steps", "2",
                             "--fps", std::to_string(fps), "--output", output.string()});
  REQUIRE(code == 0);
  const std::string bytes = read_file(output);
  std::filesystem::remove(output);
  CHECK_FALSE(std::filesystem::exists(output.string() + ".part"));

  const sagevid::test::DecodedVideo video = sagevid::test::decode_video(bytes);
  CHECK(video.codec == "h264");
  CHECK(video.width == width);
  CHECK(video.height == height);
  CHECK(av_cmp_q(video.frame_rate, AVRational{fps, 1}) == 0);
  CHECK(static_cast<int64_t>(video.rgb.size()) == frames);
}

TEST_CASE("generate reports a bad request or output path and leaves no file", "[integration][generate]") {
  const auto output = scratch_file("bad.mp4");
  // 100 is no multiple of the tiny model's spatial factor: the pipeline's validation names the field.
  CHECK(sagevid::run_generate({"--config", kTinyConfig, "--prompt", "p", "--frames", "9", "--height", "100", "--width",
                               "64", "--output", output.string()}) == 2);
  CHECK(sagevid::run_generate(
            {"--config", kTinyConfig, "--prompt", "p", "--model", "huge", "--output", output.string()}) == 2);
  CHECK(sagevid::run_generate({"--config", kTinyConfig, "--prompt", "p", "--frames", "9", "--height", "64", "--width",
                               "64", "--preset", "warp", "--output", output.string()}) == 2);
  // 9 frames of 64 x 64 are 3 x 4 x 4 = 48 latent tokens: 3 steps are over a cap of 100.
  CHECK(sagevid::run_generate({"--config", kTinyConfig, "--set", "models.0.max_latent_token_steps=100", "--prompt", "p",
                               "--frames", "9", "--height", "64", "--width", "64", "--steps", "3", "--output",
                               output.string()}) == 2);
  CHECK_FALSE(std::filesystem::exists(output));
  CHECK_FALSE(std::filesystem::exists(output.string() + ".part"));
  CHECK(sagevid::run_generate({"--config", kTinyConfig, "--prompt", "p", "--frames", "9", "--height", "64", "--width",
                               "64", "--output", "/nonexistent-dir/x.mp4"}) == 1);
}
