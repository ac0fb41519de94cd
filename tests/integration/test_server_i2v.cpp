// Image-to-video through the gRPC service (configs/tiny-i2v.json: the tiny I2V folders of
// tests/fixtures/make_i2v_fixtures.py beside the tiny text-to-video model): ListModels says which models take an
// image, a request's PNG comes back as diffusers' frames, and images that do not fit the model or the server's
// limits are INVALID_ARGUMENT naming the image.
#include "catch.h"
#include "unit/safetensors_writer.h"
#include "pipeline_parity.h"
#include "test_server_support.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/from_blob.h>

#include <filesystem>
#include <map>

using namespace sagevid::test;

namespace {

namespace fs = std::filesystem;

const fs::path kI2v = fs::path(SAGEVID_FIXTURES_DIR) / "i2v";

sagevid::ServerConfig i2v_config(std::vector<std::string> overrides = {}) {
  overrides.insert(overrides.begin(), {"server.address=\"127.0.0.1:0\"", "log_level=warn"});
  return sagevid::load_server_config(fs::path(SAGEVID_SOURCE_DIR) / "configs" / "tiny-i2v.json", overrides);
}

// The fixture's request for a variant, on the wire: its model as configs/tiny-i2v.json names it, its PNG.
v1::GenerateRequest fixture_request(const std::string& variant, const std::string& model) {
  const nlohmann::json json = sagevid::read_json_file(kI2v / "requests.json").at(variant);
  const nlohmann::json& r = json.at("request");
  v1::GenerateRequest request;
  request.set_model(model);
  request.set_prompt(r.at("prompt"));
  request.set_negative_prompt(r.at("negative_prompt"));
  request.set_frames(r.at("num_frames"));
  request.set_height(r.at("height"));
  request.set_width(r.at("width"));
  request.set_steps(r.at("num_inference_steps"));
  request.set_guidance_scale(r.at("guidance_scale"));
  request.set_seed(r.at("seed"));
  request.set_image(sagevid::testing::read_file(kI2v / "images" / (json.at("image").get<std::string>() + ".png")));
  request.set_output(v1::OUTPUT_FORMAT_RGB_FRAMES);
  return request;
}

}  // namespace

TEST_CASE("ListModels says which models take an image", "[integration][server][i2v]") {
  TestServer server(i2v_config());
  grpc::ClientContext context;
  v1::ListModelsResponse models;
  REQUIRE(server.stub()->ListModels(&context, {}, &models).ok());
  REQUIRE(models.models_size() == 3);
  std::map<std::string, bool> takes_image;
  for (const v1::ModelInfo& model : models.models()) takes_image[model.name()] = model.takes_image();
  CHECK(takes_image == std::map<std::string, bool>{{"tiny", false}, {"tiny-i2v", true}, {"tiny-i2v-1.5", true}});
}

TEST_CASE("a PNG sent with Generate gives diffusers' image-to-video frames", "[integration][server][i2v]") {
  TestServer server(i2v_config());
  const auto stub = server.stub();
  const GenerateResult result = generate(*stub, fixture_request("i2v-1.5", "tiny-i2v-1.5"));
  REQUIRE(result.status.ok());
  const std::string video = result.video();
  REQUIRE(video.size() == size_t(9 * 32 * 48 * 3));
  const at::Tensor frames = at::from_blob(const_cast<char*>(video.data()), {9, 32, 48, 3}, at::kByte);
  const auto fixture = sagevid::SafetensorsModel::open(kI2v / "frames.safetensors");
  check_frames_match(frames, fixture.view("i2v-1.5"), "i2v-1.5 over gRPC");
}

TEST_CASE("images the model or the server does not take are INVALID_ARGUMENT naming the image",
          "[integration][server][i2v]") {
  TestServer server(i2v_config({"server.max_image_pixels=4000"}));  // the 100 x 80 test image is 8000
  const auto stub = server.stub();
  v1::GenerateRequest good = fixture_request("i2v-1.0", "tiny-i2v");  // the 56 x 40 image
  good.set_steps(1);
  REQUIRE(generate(*stub, good).status.ok());
  using Change = std::function<void(v1::GenerateRequest&)>;
  const std::string png = good.image();
  const std::vector<std::tuple<const char*, Change, const char*>> cases = {
      {"text-to-video model", [](auto& r) { r.set_model("tiny"); }, "image: model 'tiny' is text-to-video"},
      {"no image", [](auto& r) { r.clear_image(); }, "image: this image-to-video model needs an image"},
      {"not an image", [](auto& r) { r.set_image("just text"); }, "image: not a PNG or JPEG"},
      {"truncated", [&](auto& r) { r.set_image(png.substr(0, png.size() - 40)); }, "image: corrupt PNG"},
      {"too many pixels", [](auto& r) { r.set_image(sagevid::testing::read_file(kI2v / "images" / "rings.png")); },
       "image: 100x80 pixels is over the limit of 4000"},
      {"learned positions' size", [](auto& r) { r.set_height(32); }, "height: 32 is not served"},
  };
  for (const auto& [what, change, message] : cases) {
    CAPTURE(what);
    v1::GenerateRequest request = good;
    change(request);
    const GenerateResult result = generate(*stub, request);
    CHECK(result.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(result.status.error_message(), ContainsSubstring(message));
    CHECK(result.events.empty());  // refused before queueing
  }
}

TEST_CASE("an image over server.max_image_bytes is refused with the limit, not gRPC's message size error",
          "[integration][server][i2v]") {
  TestServer server(i2v_config({"server.max_image_bytes=6000000"}));  // over gRPC's 4 MiB default
  const auto stub = server.stub();
  v1::GenerateRequest request = fixture_request("i2v-1.0", "tiny-i2v");
  request.set_image(request.image() + std::string(5'000'000, '\0'));  // a PNG with trailing bytes: fits
  request.set_steps(1);
  CHECK(generate(*stub, request).status.ok());
  request.set_image(request.image() + std::string(1'000'001, '\0'));
  const GenerateResult result = generate(*stub, request);
  CHECK(result.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(result.status.error_message(), ContainsSubstring("is over the limit of 6000000"));
}
