#pragma once
// Parity with diffusers' pipelines: the fixture scripts' request JSON as a GenerationRequest, a request's frames
// in one tensor, and the bar our uint8 frames must meet against the frames diffusers made.
#include "catch.h"

#include "sagevid/models/pipeline.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sagevid::test {

inline sagevid::GenerationRequest request_from_json(const nlohmann::json& json) {
  sagevid::GenerationRequest request;
  request.prompt = json.at("prompt");
  request.negative_prompt = json.at("negative_prompt");
  request.num_frames = json.at("num_frames");
  request.height = json.at("height");
  request.width = json.at("width");
  request.num_inference_steps = json.at("num_inference_steps");
  request.guidance_scale = json.at("guidance_scale");
  request.seed = json.at("seed");
  request.dynamic_cfg = json.value("dynamic_cfg", false);
  return request;
}

// Every frame `request` makes, [F, H, W, 3] uint8, in the order the pipeline hands them out.
inline at::Tensor generated_frames(const sagevid::CogVideoXPipeline& pipeline,
                                   const sagevid::GenerationRequest& request) {
  std::vector<at::Tensor> batches;
  pipeline.generate(request, {.on_frames = [&](const at::Tensor& frames) { batches.push_back(frames); }});
  return at::cat(batches, 0);
}

// How closely generated uint8 frames follow diffusers': the bar is >= 99.9% within 1/255.
inline void check_frames_match(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  REQUIRE(got.scalar_type() == at::kByte);
  REQUIRE(got.sizes() == want.sizes());
  const at::Tensor difference = (got.to(at::kInt) - want.to(at::kInt)).abs();
  const int max_difference = difference.max().item<int>();
  const double within_one = (difference <= 1).to(at::kDouble).mean().item<double>();
  const double exact = (difference == 0).to(at::kDouble).mean().item<double>();
  WARN(what << " vs diffusers frames: max difference " << max_difference << "/255, " << within_one * 100
            << "% within 1/255, " << exact * 100 << "% equal");
  CHECK(within_one >= 0.999);
}

}  // namespace sagevid::test
