#pragma once
// Reader for the safetensors checkpoint format: an 8-byte little-endian header length N, N bytes of
// JSON describing each tensor (dtype, shape, byte range), then the raw data section. Files are
// memory-mapped; every header field is validated up front, so a hostile file fails in open() with a
// SafetensorsError instead of causing an out-of-bounds read later.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sagevid {

// Any malformed or hostile file. what() always names the file, and the tensor when one is involved.
class SafetensorsError : public std::runtime_error {
 public:
  using runtime_error::runtime_error;
};

struct TensorInfo {
  std::string name;
  std::string dtype_name;  // as in the file, e.g. "BF16"
  at::ScalarType dtype = at::ScalarType::Undefined;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0, data_end = 0;  // byte offsets relative to the start of the data section
};

// One .safetensors file, memory-mapped read-only (MAP_PRIVATE: a write through a view only touches a
// private copy-on-write page, never the file). Cheap to copy: copies share the mapping.
class SafetensorsFile {
 public:
  // Maps the file and validates the whole header; throws SafetensorsError.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  // "__metadata__" (string values only); empty when the file has none.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Unknown name -> SafetensorsError naming file and tensor.
  const TensorInfo& info(const std::string& name) const;

  // CPU tensor over the mapped bytes (no copy). It shares ownership of the mapping, so it stays
  // valid after this object is gone. Data not aligned to the element size comes back as an aligned copy.
  at::Tensor view(const std::string& name) const;
  // A fresh tensor on target's device with target's dtype (each defaults to the file's when unset),
  // copied from the mapping: to the device first, then converted there.
  at::Tensor load(const std::string& name, const at::TensorOptions& target) const;

  struct Mapping;  // the mmap'ed file; defined in safetensors.cpp

 private:
  SafetensorsFile() = default;

  std::filesystem::path path_;
  std::shared_ptr<const Mapping> mapping_;
  const std::byte* data_ = nullptr;  // start of the data section inside the mapping
  uint64_t data_size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
};

// A whole checkpoint: one file, or shards listed by a *.safetensors.index.json ("weight_map").
class SafetensorsModel {
 public:
  // path: a .safetensors file, a *.safetensors.index.json, or a directory holding exactly one index
  // json or else exactly one .safetensors file. Anything else: SafetensorsError listing what was found.
  static SafetensorsModel open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }  // the file or index actually opened
  std::vector<std::string> names() const;                      // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const { return file_of(name).info(name); }
  const SafetensorsFile& file_of(const std::string& name) const;
  at::Tensor view(const std::string& name) const { return file_of(name).view(name); }
  at::Tensor load(const std::string& name, const at::TensorOptions& target) const {
    return file_of(name).load(name, target);
  }

 private:
  SafetensorsModel() = default;
  static SafetensorsModel open_index(const std::filesystem::path& index_path);

  std::filesystem::path path_;
  std::vector<SafetensorsFile> files_;   // one per shard
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

}  // namespace sagevid
