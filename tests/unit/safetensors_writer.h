#pragma once
// Test-only safetensors writer: builds valid files from (name, dtype, shape, bytes) entries, and the
// raw pieces (length prefix, header text, data) for building deliberately corrupt ones.
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <ftw.h>     // nftw
#include <stdlib.h>  // mkdtemp

namespace sagevid::testing {

inline std::string le64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((v >> (8 * i)) & 0xff);
  return out;
}

// A whole file: length prefix, header text padded with spaces to a multiple of `align` (as the
// reference writer does, so the data section starts aligned), then the data section.
inline std::string safetensors_bytes(std::string header, const std::string& data, size_t align = 8) {
  while (header.size() % align) header += ' ';
  return le64(header.size()) + header + data;
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The bytes of a contiguous CPU tensor, as SafetensorsWriter::add takes them.
inline std::string bytes_of(const at::Tensor& t) {
  if (t.nbytes() == 0) return {};
  return std::string(static_cast<const char*>(t.data_ptr()), t.nbytes());
}

class SafetensorsWriter {
 public:
  // Tensors are packed back to back in the order added (no padding between them).
  SafetensorsWriter& add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                         const std::string& bytes) {
    header_[name] = {
        {"dtype", dtype}, {"shape", std::move(shape)}, {"data_offsets", {data_.size(), data_.size() + bytes.size()}}};
    data_ += bytes;
    return *this;
  }
  SafetensorsWriter& metadata(const std::string& key, const std::string& value) {
    header_["__metadata__"][key] = value;
    return *this;
  }
  std::string header() const { return header_.dump(); }
  const std::string& data() const { return data_; }
  std::string bytes(size_t align = 8) const { return safetensors_bytes(header(), data_, align); }
  void write(const std::filesystem::path& path, size_t align = 8) const { write_file(path, bytes(align)); }

 private:
  nlohmann::json header_ = nlohmann::json::object();
  std::string data_;
};

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
// Creation and removal use POSIX calls, not std::filesystem: the torch wheels export their own copies
// of the std::filesystem operations, and their remove_all crashes when it wins symbol lookup
// (pytorch/pytorch#133437).
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sagevid_st_XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
    path = pattern;
  }
  ~TempDir() {
    ::nftw(
        path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

}  // namespace sagevid::testing
