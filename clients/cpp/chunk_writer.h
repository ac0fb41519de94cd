#pragma once
// Writes a video as its chunks arrive, checking that each starts where the previous one ended. The bytes go
// to "<output>.part", renamed to the output once the last chunk is in, so a failed run leaves no file that
// looks complete.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace sagevid::client {

class ChunkWriter {
 public:
  explicit ChunkWriter(std::filesystem::path output);
  ~ChunkWriter();  // removes the partial file unless finish() succeeded
  ChunkWriter(const ChunkWriter&) = delete;
  ChunkWriter& operator=(const ChunkWriter&) = delete;

  void write(uint64_t offset, std::string_view data, bool last);
  void finish();  // throws unless the last chunk arrived; then moves the file into place
  uint64_t bytes_written() const { return bytes_written_; }
  bool saw_last() const { return saw_last_; }

 private:
  std::filesystem::path output_;
  std::filesystem::path partial_;
  std::ofstream file_;
  uint64_t bytes_written_ = 0;
  bool saw_last_ = false;
  bool finished_ = false;
};

}  // namespace sagevid::client
