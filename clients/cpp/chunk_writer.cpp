#include "chunk_writer.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace sagevid::client {

ChunkWriter::ChunkWriter(std::filesystem::path output)
    : output_(std::move(output)),
      partial_(output_.string() + ".part"),
      file_(partial_, std::ios::binary | std::ios::trunc) {
  if (!file_) throw std::runtime_error("cannot write " + partial_.string() + ": " + std::strerror(errno));
}

ChunkWriter::~ChunkWriter() {
  if (finished_) return;
  file_.close();
  std::error_code ignored;
  std::filesystem::remove(partial_, ignored);
}

void ChunkWriter::write(uint64_t offset, std::string_view data, bool last) {
  if (saw_last_) throw std::runtime_error("video chunk at offset " + std::to_string(offset) + " after the last one");
  if (offset != bytes_written_)
    throw std::runtime_error("video chunk at offset " + std::to_string(offset) + ", expected " +
                             std::to_string(bytes_written_) + " (a chunk was lost or repeated)");
  file_.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!file_) throw std::runtime_error("writing " + partial_.string() + " failed: " + std::strerror(errno));
  bytes_written_ += data.size();
  saw_last_ = last;
}

void ChunkWriter::finish() {
  if (!saw_last_)
    throw std::runtime_error("the stream ended before the last video chunk (" + std::to_string(bytes_written_) +
                             " bytes received)");
  file_.close();
  if (!file_) throw std::runtime_error("closing " + partial_.string() + " failed: " + std::strerror(errno));
  std::filesystem::rename(partial_, output_);
  finished_ = true;
}

}  // namespace sagevid::client
