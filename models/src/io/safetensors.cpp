#include "sagevid/models/safetensors.h"

#include "sagevid/models/join.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

// std::filesystem is used for path names only, never for file operations: the torch wheels export
// their own static copies of those operations, which can win symbol lookup over libstdc++'s and
// misbehave (pytorch/pytorch#133437). POSIX calls have no such problem.
namespace sagevid {
namespace fs = std::filesystem;
using nlohmann::json;

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  Mapping(void* a, size_t s) : addr(a), size(s) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { ::munmap(addr, size); }
};

namespace {

// Real headers are ~100 KB for thousands of tensors; the cap only stops a hostile length from making
// us parse (and allocate for) an arbitrarily large "header".
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr uint64_t kMaxIndexBytes = 100ull << 20;

[[noreturn]] void fail(const fs::path& file, const std::string& message) {
  throw SafetensorsError("safetensors file '" + file.string() + "': " + message);
}

// Names come from hostile files too: escape control bytes so that, e.g., a NUL cannot cut what() short.
std::string printable(const std::string& name) {
  std::string out;
  for (unsigned char c : name) {
    if (c >= 0x20 && c != 0x7f) {
      out += char(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
    }
  }
  return out;
}

[[noreturn]] void fail(const fs::path& file, const std::string& tensor, const std::string& message) {
  fail(file, "tensor '" + printable(tensor) + "': " + message);
}

// A JSON value for an error message, cut short: hostile headers can hold huge values.
std::string brief(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() <= 80 ? printable(text) : printable(text.substr(0, 77)) + "...";
}

std::string errno_text() { return std::strerror(errno); }

struct DtypeName {
  const char* name;
  at::ScalarType type;
};

constexpr DtypeName kDtypes[] = {
    {"F64", at::ScalarType::Double},
    {"F32", at::ScalarType::Float},
    {"F16", at::ScalarType::Half},
    {"BF16", at::ScalarType::BFloat16},
    {"F8_E4M3", at::ScalarType::Float8_e4m3fn},
    {"F8_E5M2", at::ScalarType::Float8_e5m2},
    {"I64", at::ScalarType::Long},
    {"I32", at::ScalarType::Int},
    {"I16", at::ScalarType::Short},
    {"I8", at::ScalarType::Char},
    {"U8", at::ScalarType::Byte},
    {"BOOL", at::ScalarType::Bool},
    {"U16", at::ScalarType::UInt16},
    {"U32", at::ScalarType::UInt32},
    {"U64", at::ScalarType::UInt64},
};

std::optional<at::ScalarType> dtype_from_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  return std::nullopt;
}

// Maps the whole file privately. PROT_WRITE + MAP_PRIVATE makes an accidental write through a view
// land in a private copy-on-write page (no SIGSEGV, file untouched); MAP_NORESERVE keeps the kernel
// from charging the whole file against the commit limit for pages we will never write.
std::shared_ptr<const SafetensorsFile::Mapping> map_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "cannot open: " + errno_text());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};  // the mapping stays valid after the fd is closed

  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) fail(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  if (addr == MAP_FAILED) fail(path, "cannot mmap: " + errno_text());
  return std::make_shared<const SafetensorsFile::Mapping>(addr, size);
}

uint64_t read_le64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}

// Parses the header JSON, rejecting duplicate top-level keys: nlohmann would silently keep the last
// one, so two entries for one tensor name could disagree about its bytes without anyone noticing.
json parse_header_json(const fs::path& path, const char* begin, const char* end) {
  std::set<std::string> keys;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second)
      fail(path, parsed.get<std::string>(), "appears twice in the header");
    return true;
  };
  try {
    return json::parse(begin, end, on_event);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
}

// A JSON integer in [0, INT64_MAX] (the range of a tensor dimension and of any file offset we accept).
uint64_t non_negative(const fs::path& path, const std::string& tensor, const char* field, const json& v) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(path, tensor, std::string(field) + " entry " + brief(v) + " is too large");
    return v.get<uint64_t>();
  }
  if (v.is_number_integer() && v.get<int64_t>() == 0) return 0;  // "-0"
  if (v.is_number_integer()) fail(path, tensor, std::string(field) + " entry " + brief(v) + " is negative");
  fail(path, tensor, std::string(field) + " entries must be integers, got " + brief(v));
}

const json& field(const fs::path& path, const std::string& tensor, const json& entry, const char* key) {
  auto it = entry.find(key);
  if (it == entry.end()) fail(path, tensor, std::string("missing \"") + key + "\"");
  return *it;
}

TensorInfo parse_tensor(const fs::path& path, const std::string& name, const json& entry, uint64_t data_size) {
  if (!entry.is_object()) fail(path, name, "entry must be an object, got " + std::string(entry.type_name()));
  TensorInfo t;
  t.name = name;

  const json& dtype = field(path, name, entry, "dtype");
  if (!dtype.is_string()) fail(path, name, "\"dtype\" must be a string, got " + brief(dtype));
  t.dtype_name = dtype.get<std::string>();
  auto type = dtype_from_name(t.dtype_name);
  if (!type) fail(path, name, "unknown dtype " + brief(dtype));
  t.dtype = *type;

  const json& shape = field(path, name, entry, "shape");
  if (!shape.is_array()) fail(path, name, "\"shape\" must be an array, got " + brief(shape));
  for (const json& d : shape) t.shape.push_back(int64_t(non_negative(path, name, "shape", d)));

  const json& offsets = field(path, name, entry, "data_offsets");
  if (!offsets.is_array() || offsets.size() != 2)
    fail(path, name, "\"data_offsets\" must be [begin, end], got " + brief(offsets));
  t.data_begin = non_negative(path, name, "data_offsets", offsets[0]);
  t.data_end = non_negative(path, name, "data_offsets", offsets[1]);
  if (t.data_begin > t.data_end) fail(path, name, "data_offsets begin > end");
  if (t.data_end > data_size)
    fail(path, name,
         "data_offsets end " + std::to_string(t.data_end) + " is beyond the data section (" +
             std::to_string(data_size) + " bytes)");

  // Zero dims count as 1 here: torch computes strides from the other dims even when numel is 0,
  // so they must not overflow int64 either.
  uint64_t bytes = c10::elementSize(t.dtype), strided = bytes;
  for (int64_t d : t.shape) {
    if (__builtin_mul_overflow(strided, uint64_t(std::max<int64_t>(d, 1)), &strided) ||
        strided > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(path, name, "shape " + brief(shape) + " is too large");
    bytes *= uint64_t(d);  // cannot overflow: bytes <= strided, or it became 0
  }
  if (bytes != t.data_end - t.data_begin)
    fail(path, name,
         "shape " + brief(shape) + " of " + t.dtype_name + " needs " + std::to_string(bytes) +
             " bytes but data_offsets span " + std::to_string(t.data_end - t.data_begin));
  return t;
}

std::map<std::string, std::string> parse_metadata(const fs::path& path, const json& meta) {
  if (!meta.is_object()) fail(path, "\"__metadata__\" must be an object, got " + brief(meta));
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : meta.items()) {
    if (!value.is_string()) fail(path, "\"__metadata__\" value of \"" + printable(key) + "\" must be a string");
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

// Non-empty tensors must not share bytes; empty ones take no bytes and may sit anywhere in range.
void check_no_overlap(const fs::path& path, const std::map<std::string, TensorInfo>& tensors) {
  std::vector<const TensorInfo*> sorted;
  for (const auto& [name, t] : tensors)
    if (t.data_end > t.data_begin) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->data_begin, a->data_end) < std::tie(b->data_begin, b->data_end);
  });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->data_begin < sorted[i - 1]->data_end)
      fail(path, sorted[i]->name, "data overlaps tensor '" + printable(sorted[i - 1]->name) + "'");
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.mapping_ = map_file(path);
  const auto* bytes = static_cast<const std::byte*>(f.mapping_->addr);
  const uint64_t size = f.mapping_->size;

  const uint64_t header_size = read_le64(bytes);
  if (header_size > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_size) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_size > size - 8)
    fail(path, "header length " + std::to_string(header_size) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  f.data_ = bytes + 8 + header_size;
  f.data_size_ = size - 8 - header_size;

  const char* text = reinterpret_cast<const char*>(bytes + 8);
  const json header = parse_header_json(path, text, text + header_size);
  if (!header.is_object()) fail(path, "header must be a JSON object, got " + std::string(header.type_name()));
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") f.metadata_ = parse_metadata(path, value);
    else f.tensors_.emplace(key, parse_tensor(path, key, value, f.data_size_));
  }
  check_no_overlap(path, f.tensors_);
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_, name, "no such tensor");
  return it->second;
}

at::Tensor SafetensorsFile::view(const std::string& name) const {
  const TensorInfo& t = info(name);
  const auto options = at::TensorOptions().dtype(t.dtype).device(at::kCPU);
  const std::byte* p = data_ + t.data_begin;
  const size_t bytes = t.data_end - t.data_begin;
  if (bytes == 0) return at::empty(t.shape, options);
  // Typed CPU kernels may assume element alignment; the mapping is page-aligned but the header
  // length and offsets are whatever the writer chose.
  if (reinterpret_cast<uintptr_t>(p) % c10::elementSize(t.dtype) != 0) {
    at::Tensor copy = at::empty(t.shape, options);
    std::memcpy(copy.data_ptr(), p, bytes);
    return copy;
  }
  // The deleter owns a reference to the mapping, so the view keeps it alive on its own.
  return at::from_blob(const_cast<std::byte*>(p), t.shape, [keep = mapping_](void*) {}, options);
}

at::Tensor SafetensorsFile::load(const std::string& name, const at::TensorOptions& target) const {
  at::Tensor source = view(name);
  const at::Device device = target.has_device() ? target.device() : source.device();
  const at::ScalarType dtype = target.has_dtype() ? target.dtype().toScalarType() : source.scalar_type();
  // On the CPU, copy and convert in one pass. Elsewhere move the file's (usually narrower) bytes
  // first, then convert on the device.
  if (device.is_cpu()) return source.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
  return source.to(device, source.scalar_type(), /*non_blocking=*/false, /*copy=*/true).to(dtype);
}

// ---- SafetensorsModel ----

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

[[noreturn]] void fail_checkpoint(const fs::path& path, const std::string& message) {
  throw SafetensorsError("safetensors checkpoint '" + path.string() + "': " + message);
}

// The one checkpoint entry point in a directory: its index json, or else its single .safetensors.
fs::path find_in_directory(const fs::path& dir) {
  std::vector<std::string> indexes, files;
  DIR* listing = ::opendir(dir.c_str());
  if (!listing) fail_checkpoint(dir, "cannot list directory: " + errno_text());
  while (const dirent* entry = ::readdir(listing)) {
    const std::string name = entry->d_name;
    if (ends_with(name, ".safetensors.index.json")) indexes.push_back(name);
    if (ends_with(name, ".safetensors")) files.push_back(name);
  }
  ::closedir(listing);
  if (indexes.size() == 1) return dir / indexes[0];
  if (indexes.empty() && files.size() == 1) return dir / files[0];

  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  indexes.insert(indexes.end(), files.begin(), files.end());  // the listing: indexes first
  const std::string found = join(indexes);
  fail_checkpoint(dir, "expected exactly one *.safetensors.index.json, or else exactly one *.safetensors file; found " +
                           (found.empty() ? std::string("neither") : found));
}

json read_index(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, "cannot read index: " + errno_text());
  if (!S_ISREG(st.st_mode)) fail(path, "index is not a regular file");
  if (uint64_t(st.st_size) > kMaxIndexBytes)
    fail(path, "index is " + std::to_string(st.st_size) + " bytes, over the limit");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open index");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {
    fail(path, std::string("index is not valid JSON: ") + e.what());
  }
}

// Shards must sit beside the index: a name that could reach elsewhere is a hostile index.
void check_shard_name(const fs::path& index, const std::string& tensor, const std::string& shard) {
  if (shard.empty() || shard == "." || shard == ".." ||
      shard.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
    fail(index, tensor, "shard \"" + printable(shard) + "\" is not a plain file name in the index's directory");
}

}  // namespace

SafetensorsModel SafetensorsModel::open(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail_checkpoint(path, errno_text());
  // No recursion into what a directory holds: a "*.safetensors" directory or symlink loop just fails.
  const fs::path file = S_ISDIR(st.st_mode) ? find_in_directory(path) : path;
  if (ends_with(file.filename().string(), ".json")) return open_index(file);

  SafetensorsModel m;
  m.path_ = file;
  m.files_.push_back(SafetensorsFile::open(file));
  for (const auto& name : m.files_[0].names()) m.where_.emplace(name, 0);
  return m;
}

SafetensorsModel SafetensorsModel::open_index(const fs::path& index) {
  const json j = read_index(index);
  if (!j.is_object()) fail(index, "index must be a JSON object");
  auto weight_map = j.find("weight_map");
  if (weight_map == j.end() || !weight_map->is_object())
    fail(index, "index needs a \"weight_map\" object of tensor name -> shard file");

  SafetensorsModel m;
  m.path_ = index;
  std::map<std::string, size_t> shard_slot;  // opens each shard once
  for (const auto& [tensor, shard_json] : weight_map->items()) {
    if (!shard_json.is_string()) fail(index, tensor, "shard must be a string, got " + brief(shard_json));
    const std::string shard = shard_json.get<std::string>();
    check_shard_name(index, tensor, shard);
    auto [slot, is_new] = shard_slot.try_emplace(shard, m.files_.size());
    if (is_new) {
      try {
        m.files_.push_back(SafetensorsFile::open(index.parent_path() / shard));
      } catch (const SafetensorsError& e) {
        fail(index, "shard \"" + printable(shard) + "\": " + e.what());
      }
    }
    if (!m.files_[slot->second].contains(tensor))
      fail(index, tensor, "listed in shard \"" + printable(shard) + "\", which has no such tensor");
    m.where_.emplace(tensor, slot->second);
  }
  return m;
}

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> out;
  for (const auto& [name, slot] : where_) out.push_back(name);
  return out;
}

const SafetensorsFile& SafetensorsModel::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail_checkpoint(path_, "tensor '" + printable(name) + "': no such tensor");
  return files_[it->second];
}

}  // namespace sagevid
