// The HTTP API's POST /v1/videos bodies as GenerateRequests: seconds to frames, every field, null as absent,
// refusals naming the field, multipart form fields taking their JSON types.
#include "catch.h"

#include "base64.h"
#include "video_request_json.h"

#include "sagevid/models/pipeline.h"

#include <string>

namespace {

sagevid::v1::ListModelsResponse one_model(int fps, int temporal_factor) {
  sagevid::v1::ListModelsResponse models;
  sagevid::v1::ModelInfo* model = models.add_models();
  model->set_name("m");
  model->set_default_fps(fps);
  model->set_temporal_factor(temporal_factor);
  return models;
}

sagevid::v1::GenerateRequest from_json(const std::string& body, const sagevid::v1::ListModelsResponse& models) {
  return sagevid::video_request_from_json(nlohmann::json::parse(body), models);
}

std::string refusal(const std::string& body) {
  try {
    from_json(body, one_model(8, 4));
  } catch (const sagevid::InvalidRequest& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("video request JSON: seconds become the fewest frames that last that long", "[video_request_json]") {
  // CogVideoX: 8 fps, 4 frames per latent frame; 6 s is its 49 frames.
  REQUIRE(from_json(R"({"prompt": "x", "seconds": "6"})", one_model(8, 4)).frames() == 49);
  REQUIRE(from_json(R"({"prompt": "x", "seconds": 6.1})", one_model(8, 4)).frames() == 53);
  REQUIRE(from_json(R"({"prompt": "x", "seconds": "0.1"})", one_model(8, 4)).frames() == 5);
  REQUIRE(from_json(R"({"prompt": "x", "seconds": "2", "fps": 16})", one_model(8, 4)).frames() == 33);
  REQUIRE(from_json(R"({"prompt": "x", "model": "other", "seconds": "2"})", one_model(8, 4)).frames() == 0);
  REQUIRE(sagevid::clip_seconds(49, 8) == "6");
  REQUIRE(sagevid::clip_seconds(53, 8) == "6.5");
}

TEST_CASE("video request JSON: fields map to the GenerateRequest, null is absent", "[video_request_json]") {
  const auto request = from_json(R"({"model": "m", "prompt": "a fox", "negative_prompt": "blur", "size": "720x480",
      "frames": 9, "fps": 12, "seed": 18446744073709551615, "steps": 7, "guidance_scale": 4.5, "dynamic_cfg": true,
      "attention_backend": "math", "image": null})",
                                 one_model(8, 4));
  REQUIRE(request.model() == "m");
  REQUIRE(request.prompt() == "a fox");
  REQUIRE(request.negative_prompt() == "blur");
  REQUIRE((request.width() == 720 && request.height() == 480));
  REQUIRE((request.frames() == 9 && request.fps() == 12 && request.steps() == 7));
  REQUIRE(request.seed() == 18446744073709551615ull);
  REQUIRE(request.guidance_scale() == 4.5f);
  REQUIRE(request.dynamic_cfg());
  REQUIRE(request.attention_backend() == "math");
  REQUIRE(request.output() == sagevid::v1::OUTPUT_FORMAT_MP4_H264);
  REQUIRE_FALSE(from_json(R"({"prompt": "x", "seed": null})", one_model(8, 4)).has_seed());
}

TEST_CASE("video request JSON: refusals name the field", "[video_request_json]") {
  REQUIRE(refusal(R"({"prompt": "x", "steps": 4294967296})") == "steps: 4294967296 is out of range");
  REQUIRE(refusal(R"({"prompt": "x", "frames": true})") == "frames: expected an integer, got boolean");
  REQUIRE(refusal(R"({"prompt": "x", "seed": -3})").starts_with("seed: -3 is negative"));
  REQUIRE(refusal(R"({"prompt": "x", "size": "0x480"})").starts_with("size: '0x480': expected WIDTHxHEIGHT"));
  REQUIRE(refusal(R"({"prompt": "x", "seconds": "-1"})") == "seconds: -1 is not in (0, 3600]");
  REQUIRE(refusal(R"({"prompt": "x", "dynamic_cfg": 1})") == "dynamic_cfg: expected true or false, got number");
  REQUIRE(refusal(R"({"prompt": "x", "Prompt": "y"})").starts_with("Prompt: unknown field (the fields are: "));
  REQUIRE(refusal(R"({"prompt": "x", "image": "aGk="})") ==
          "image: model 'm' takes no image: it generates video "
          "from text only");
  REQUIRE(refusal(R"("x")") == "request: expected a JSON object, got string");
}

TEST_CASE("video request JSON: form fields take their JSON types", "[video_request_json]") {
  REQUIRE(sagevid::form_field_value("steps", "8") == nlohmann::json(8));
  REQUIRE(sagevid::form_field_value("dynamic_cfg", "true") == nlohmann::json(true));
  REQUIRE(sagevid::form_field_value("steps", "eight") == nlohmann::json("eight"));
  REQUIRE(sagevid::form_field_value("prompt", "42") == nlohmann::json("42"));
  REQUIRE(sagevid::form_field_value("seconds", "4") == nlohmann::json(4));
}

using Catch::Matchers::ContainsSubstring;

TEST_CASE("video request JSON: an image-to-video model takes base64, data: URLs and file parts",
          "[video_request_json]") {
  sagevid::v1::ListModelsResponse models = one_model(8, 4);
  models.mutable_models(0)->set_takes_image(true);
  const std::string png = "\x89PNG\r\n\x1a\n";  // "iVBORw0KGgo=" in base64
  CHECK(from_json(R"({"prompt": "x", "image": "iVBORw0KGgo="})", models).image() == png);
  CHECK(from_json(R"({"prompt": "x", "image": "data:image/png;base64,iVBORw0KGgo="})", models).image() == png);
  CHECK(from_json(R"({"prompt": "x", "input_reference": {"image_url": "data:image/png;base64,iVBORw0KGgo="}})", models)
            .image() == png);
  nlohmann::json form = {{"prompt", "x"}, {"input_reference", sagevid::form_file_value("input_reference", png)}};
  CHECK(sagevid::video_request_from_json(form, models).image() == png);
  CHECK(sagevid::form_file_value("prompt", "text") == "text");  // other fields' file parts stay text
  const auto refusal_with = [&](const std::string& body) {
    try {
      from_json(body, models);
    } catch (const sagevid::InvalidRequest& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK_THAT(refusal_with(R"({"prompt": "x", "image": "not base64!"})"), ContainsSubstring("image: not base64"));
  CHECK_THAT(refusal_with(R"({"prompt": "x", "image": "data:image/png,rawtext"})"),
             ContainsSubstring("must be base64"));
  CHECK_THAT(refusal_with(R"({"prompt": "x", "image": 7})"), ContainsSubstring("expected base64"));
  CHECK_THAT(refusal_with(R"({"prompt": "x", "image": "iVBORw0KGgo=", "input_reference": "iVBORw0KGgo="})"),
             ContainsSubstring("not both"));
}

TEST_CASE("base64 decodes RFC 4648 text and refuses anything else", "[video_request_json]") {
  CHECK(sagevid::decode_base64("") == std::string());
  CHECK(sagevid::decode_base64("Zg==") == std::string("f"));
  CHECK(sagevid::decode_base64("Zm8") == std::string("fo"));  // padding optional
  CHECK(sagevid::decode_base64("Zm9v") == std::string("foo"));
  CHECK(sagevid::decode_base64("Zm9vYmFy") == std::string("foobar"));
  CHECK(sagevid::decode_base64("/+8=") == std::string("\xff\xef"));
  CHECK_FALSE(sagevid::decode_base64("Zm9v!"));  // not the alphabet
  CHECK_FALSE(sagevid::decode_base64("Z"));      // 6 bits are no byte
  CHECK_FALSE(sagevid::decode_base64("Zh=="));   // nonzero unused bits
  CHECK_FALSE(sagevid::decode_base64("Zg=a"));
}
