// The backend switch on a machine without a GPU: names, config, validation, and the fallback rules.
#include "catch.h"
#include "test_random.h"

#include "sagevid/models/attention.h"
#include "sagevid/models/config_reader.h"

#include <stdexcept>

using sagevid::Attention;
using sagevid::AttentionBackend;
using sagevid::AttentionConfig;
using sagevid::AttentionParams;

namespace {

sagevid::AttentionConfig read_config(const char* text) {
  const nlohmann::json doc = nlohmann::json::parse(text);
  sagevid::ConfigReader reader(doc, "attention");
  return sagevid::read_attention_config(reader);
}

struct Inputs {
  at::Tensor q, k, v;
};

Inputs cpu_inputs(sagevid::test::Random& rng, at::ScalarType dtype = at::kBFloat16) {
  return {rng.normal({1, 2, 9, 64}).to(dtype), rng.normal({1, 2, 11, 64}).to(dtype),
          rng.normal({1, 2, 11, 64}).to(dtype)};
}

}  // namespace

TEST_CASE("backend names round-trip and unknown names list the choices", "[attention]") {
  for (auto backend :
       {AttentionBackend::sage2, AttentionBackend::flash, AttentionBackend::cudnn, AttentionBackend::math})
    CHECK(sagevid::parse_attention_backend(sagevid::backend_name(backend)) == backend);
  REQUIRE_THROWS_WITH(sagevid::parse_attention_backend("xformers"),
                      ContainsSubstring("unknown attention backend 'xformers' (choices: sage2, flash, cudnn, math)"));
}

TEST_CASE("attention config reads backend and fallback", "[attention][config]") {
  const AttentionConfig config = read_config(R"({"backend": "flash", "fallback": "math"})");
  CHECK(config.backend == AttentionBackend::flash);
  REQUIRE(config.fallback.has_value());
  CHECK(*config.fallback == AttentionBackend::math);
  CHECK_FALSE(read_config(R"({"backend": "cudnn", "fallback": null})").fallback.has_value());
  CHECK(read_config("{}").backend == AttentionBackend::math);
  REQUIRE_THROWS_WITH(read_config(R"({"backend": "fast"})"), ContainsSubstring("attention.backend: unknown"));
  REQUIRE_THROWS_WITH(read_config(R"({"fallback": 3})"), ContainsSubstring("attention.fallback: expected a string"));
  REQUIRE_THROWS_WITH(read_config(R"({"backnd": "flash"})"), ContainsSubstring("attention.backnd: unknown key"));
}

TEST_CASE("attention config reads the sage2 options, auto meaning the kernels' default", "[attention][config]") {
  using namespace sagevid::kernels::sage2;
  const AttentionConfig config = read_config(
      R"({"backend": "sage2", "sage2": {"qk": "int8", "pv": "fp16", "granularity": "per_token", "smooth_v": true,
          "p_exponent": "half_linear"}})");
  CHECK(config.sage2.qk == QkType::int8);
  CHECK(config.sage2.pv == PvType::fp16);
  CHECK(config.sage2.granularity == Granularity::per_token);
  CHECK(config.sage2.smooth_v);
  CHECK(config.sage2.p_exponent == PExponent::half_linear);
  const AttentionConfig defaults = read_config(R"({"sage2": {"qk": "auto", "granularity": "auto"}})");
  CHECK_FALSE(defaults.sage2.qk.has_value());
  CHECK_FALSE(defaults.sage2.granularity.has_value());
  CHECK(defaults.sage2.p_exponent == PExponent::exact);
  CHECK(read_config(R"({"sage2": {"p_exponent": "quarter_linear"}})").sage2.p_exponent == PExponent::quarter_linear);
  REQUIRE_THROWS_WITH(read_config(R"({"sage2": {"granularity": "per_row"}})"),
                      ContainsSubstring("attention.sage2.granularity"));
  REQUIRE_THROWS_WITH(read_config(R"({"sage2": {"p_exponent": "fast"}})"),
                      ContainsSubstring("attention.sage2.p_exponent"));
}

TEST_CASE("a backend that cannot serve a call fails clearly without a fallback", "[attention]") {
  sagevid::test::Random rng;
  const Inputs in = cpu_inputs(rng);
  for (auto backend : {AttentionBackend::flash, AttentionBackend::cudnn}) {
    const Attention attention(AttentionConfig{backend, std::nullopt});
    CAPTURE(sagevid::backend_name(backend));
    REQUIRE_THROWS_WITH(attention(in.q, in.k, in.v), ContainsSubstring("tensors are on cpu, it needs CUDA"));
    REQUIRE_THROWS_WITH(attention(in.q, in.k, in.v), ContainsSubstring("no fallback configured"));
    CHECK(attention.fallback_count() == 0);
  }
}

TEST_CASE("fallbacks run the named backend and are counted per reason", "[attention]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const Inputs in = cpu_inputs(rng);
  const Attention attention(AttentionConfig{AttentionBackend::flash, AttentionBackend::math});
  const at::Tensor expected = Attention()(in.q, in.k, in.v);
  CHECK(attention(in.q, in.k, in.v).equal(expected));
  CHECK(attention(in.q, in.k, in.v).equal(expected));
  AttentionParams with_bias;
  with_bias.bias = rng.normal({9, 11});
  attention(in.q, in.k, in.v, with_bias);  // flash takes no bias: counted under its own reason
  CHECK(attention.fallback_count() == 3);
  const auto counts = attention.fallbacks();
  REQUIRE(counts.size() == 2);
  CHECK(counts.at("flash -> math: tensors are on cpu, it needs CUDA") == 2);
  CHECK(counts.at("flash -> math: it takes no additive bias") == 1);

  // A per-call backend choice goes through the same rules.
  CHECK(attention.run(AttentionBackend::cudnn, in.q, in.k, in.v).equal(expected));
  CHECK(attention.run(AttentionBackend::math, in.q, in.k, in.v).equal(expected));
  CHECK(attention.fallback_count() == 4);
}

TEST_CASE("a fallback that cannot serve the call either is an error naming both", "[attention]") {
  sagevid::test::Random rng;
  const Inputs in = cpu_inputs(rng);
  const Attention attention(AttentionConfig{AttentionBackend::flash, AttentionBackend::cudnn});
  REQUIRE_THROWS_WITH(attention(in.q, in.k, in.v), ContainsSubstring("flash: tensors are on cpu"));
  REQUIRE_THROWS_WITH(attention(in.q, in.k, in.v), ContainsSubstring("fallback cudnn: tensors are on cpu"));
}

TEST_CASE("unsupported reasons are reported without running anything", "[attention]") {
  sagevid::test::Random rng;
  const Inputs in = cpu_inputs(rng, at::kFloat);
  CHECK_FALSE(sagevid::attention_unsupported_reason(AttentionBackend::math, in.q, in.k, in.v, {}));
  const auto reason = sagevid::attention_unsupported_reason(AttentionBackend::flash, in.q, in.k, in.v, {});
  REQUIRE(reason.has_value());
  CHECK_THAT(*reason, ContainsSubstring("needs CUDA"));
}

TEST_CASE("which backends run on a device and dtype is answered without tensors", "[attention]") {
  const at::Device cpu(at::kCPU), cuda(at::kCUDA, 0);
  for (const at::Device& device : {cpu, cuda})
    CHECK_FALSE(sagevid::attention_unsupported_on(AttentionBackend::math, device, at::kFloat));
  for (AttentionBackend backend : {AttentionBackend::sage2, AttentionBackend::flash, AttentionBackend::cudnn}) {
    CAPTURE(sagevid::backend_name(backend));
    const auto on_cpu = sagevid::attention_unsupported_on(backend, cpu, at::kBFloat16);
    REQUIRE(on_cpu.has_value());
    CHECK_THAT(*on_cpu, ContainsSubstring("CUDA"));
    // The dtype is refused before the device is asked anything, so this holds on a machine without a GPU.
    const auto in_float = sagevid::attention_unsupported_on(backend, cuda, at::kFloat);
    REQUIRE(in_float.has_value());
    CHECK_THAT(*in_float, ContainsSubstring("bfloat16"));
  }
}

TEST_CASE("malformed inputs are invalid_argument, never a fallback", "[attention]") {
  sagevid::test::Random rng;
  const Inputs in = cpu_inputs(rng);
  const Attention attention(AttentionConfig{AttentionBackend::flash, AttentionBackend::math});
  const auto rejects = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionParams& params,
                           const std::string& message) {
    CAPTURE(message);
    REQUIRE_THROWS_AS(attention(q, k, v, params), std::invalid_argument);
    REQUIRE_THROWS_WITH(attention(q, k, v, params), ContainsSubstring(message));
  };
  rejects(in.q[0], in.k, in.v, {}, "must be [B, H, N, D]");
  rejects(in.q, in.k.to(at::kHalf), in.v, {}, "share one dtype");
  rejects(in.q.to(at::kInt), in.k.to(at::kInt), in.v.to(at::kInt), {}, "is not float16, bfloat16 or float32");
  rejects(in.q, in.k, in.v.narrow(2, 0, 10), {}, "differ");
  rejects(in.q, in.k.narrow(3, 0, 32), in.v.narrow(3, 0, 32), {}, "head dim of q and k differ");
  rejects(rng.normal({1, 3, 9, 64}).to(at::kBFloat16), in.k, in.v, {}, "must be a multiple of key/value heads");
  rejects(in.q, in.k.narrow(2, 0, 0), in.v.narrow(2, 0, 0), {}, "N_kv is 0");
  AttentionParams bad_bias;
  bad_bias.bias = rng.normal({9, 12});
  rejects(in.q, in.k, in.v, bad_bias, "does not broadcast to [1, 2, 9, 11]");
  bad_bias.bias = rng.normal({3, 9, 11});
  rejects(in.q, in.k, in.v, bad_bias, "does not broadcast");
  AttentionParams bad_scale;
  bad_scale.scale = std::numeric_limits<double>::infinity();
  rejects(in.q, in.k, in.v, bad_scale, "scale must be finite");
  CHECK(attention.fallback_count() == 0);
}
