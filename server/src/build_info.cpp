#include "build_info.h"

#include "sagevid/kernels/device_info.h"

#include <cuda_runtime_api.h>
#include <google/protobuf/stubs/common.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/version.h>
#include <torch/csrc/api/include/torch/version.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libswscale/swscale.h>
}

#include <string>

namespace sagevid {
namespace {

std::string ffmpeg_version(unsigned packed) {
  return std::to_string(AV_VERSION_MAJOR(packed)) + "." + std::to_string(AV_VERSION_MINOR(packed)) + "." +
         std::to_string(AV_VERSION_MICRO(packed));
}

std::string cuda_version(int packed) {
  return packed ? std::to_string(packed / 1000) + "." + std::to_string(packed % 1000 / 10) : "none";
}

nlohmann::json devices() {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& d : kernels::cuda_devices())
    list.push_back({{"index", d.index},
                    {"name", d.name},
                    {"compute_capability", d.compute_capability},
                    {"multiprocessors", d.multiprocessors},
                    {"memory_gib", double(d.total_memory_bytes) / double(1ull << 30)}});
  return list;
}

}  // namespace

nlohmann::json build_info() {
  int runtime = 0, driver = 0;
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
  cudaGetLastError();
  return {{"sagevid", SAGEVID_VERSION},
          {"commit", SAGEVID_GIT_COMMIT},
          {"libtorch", TORCH_VERSION},
          {"cuda_runtime", cuda_version(runtime)},
          {"cuda_driver", cuda_version(driver)},
          {"grpc", grpc::Version()},
          {"protobuf", google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION)},
          {"libavcodec", ffmpeg_version(avcodec_version())},
          {"libavformat", ffmpeg_version(avformat_version())},
          {"libswscale", ffmpeg_version(swscale_version())},
          {"ffmpeg", av_version_info()},
          {"spdlog", std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) + "." +
                         std::to_string(SPDLOG_VER_PATCH)},
          {"cuda_devices", devices()}};
}

}  // namespace sagevid
