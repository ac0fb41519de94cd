#pragma once
// Precompiled for sagevid_models (see CMakeLists.txt): the heavy, stable headers only.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <map>
#include <optional>
#include <string>
#include <vector>
