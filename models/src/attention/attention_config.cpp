// The attention section of the config: backend names, the backend and fallback choice and the sage2 options.
#include "sagevid/models/attention.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/join.h"

#include <ranges>
#include <string>

namespace sagevid {
namespace {

kernels::sage2::Options read_sage2_options(ConfigReader& reader) {
  using namespace kernels::sage2;
  // "auto" (or no key): the kernels' default for the device.
  Options options;
  options.kernel = reader.choice<std::optional<KernelFamily>>(
      "kernel", std::nullopt,
      {{"auto", std::nullopt}, {"mma_sync", KernelFamily::mma_sync}, {"wgmma", KernelFamily::wgmma}});
  options.qk = reader.choice<std::optional<QkType>>(
      "qk", std::nullopt, {{"auto", std::nullopt}, {"int8", QkType::int8}, {"int4", QkType::int4}});
  options.pv = reader.choice<std::optional<PvType>>(
      "pv", std::nullopt, {{"auto", std::nullopt}, {"fp8", PvType::fp8}, {"fp16", PvType::fp16}});
  options.granularity = reader.choice<std::optional<Granularity>>("granularity", std::nullopt,
                                                                  {{"auto", std::nullopt},
                                                                   {"per_thread", Granularity::per_thread},
                                                                   {"per_warp", Granularity::per_warp},
                                                                   {"per_block", Granularity::per_block},
                                                                   {"per_token", Granularity::per_token}});
  options.smooth_k = reader.get<bool>("smooth_k", options.smooth_k);
  options.smooth_q = reader.optional<bool>("smooth_q");  // null or absent: the kernels' default
  options.smooth_v = reader.get<bool>("smooth_v", options.smooth_v);
  options.pv_flush_tiles = int(reader.get<int64_t>("pv_flush_tiles", options.pv_flush_tiles));
  if (options.pv_flush_tiles < 1 || options.pv_flush_tiles > 1024) reader.fail("pv_flush_tiles", "must be in 1..1024");
  options.p_exponent = reader.choice<PExponent>("p_exponent", options.p_exponent, kPExponentNames);
  reader.finish();
  return options;
}

}  // namespace

std::string_view backend_name(AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::sage2: return "sage2";
    case AttentionBackend::flash: return "flash";
    case AttentionBackend::cudnn: return "cudnn";
    case AttentionBackend::math: return "math";
  }
  return "?";
}

AttentionBackend parse_attention_backend(std::string_view name) {
  for (AttentionBackend backend : kAllBackends)
    if (name == backend_name(backend)) return backend;
  throw ConfigError("unknown attention backend '" + std::string(name) +
                    "' (choices: " + join(kAllBackends | std::views::transform(backend_name)) + ")");
}

AttentionConfig read_attention_config(ConfigReader& reader) {
  const auto parse = [&](const std::string& key, const std::string& name) {
    try {
      return parse_attention_backend(name);
    } catch (const ConfigError& e) {
      reader.fail(key, e.what());
    }
  };
  AttentionConfig config;
  config.backend = parse("backend", reader.get<std::string>("backend", "math"));
  if (auto fallback = reader.optional<std::string>("fallback")) config.fallback = parse("fallback", *fallback);
  ConfigReader sage2 = reader.object("sage2");
  config.sage2 = read_sage2_options(sage2);
  reader.finish();
  return config;
}

}  // namespace sagevid
