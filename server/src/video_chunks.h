#pragma once
// Cuts the encoder's byte stream into VideoChunk messages of at most max_bytes each, with their offsets.
// Bytes are held until a chunk is full or flush() is called (the service flushes after each decoded batch,
// so the client gets the video while it is being made); finish() sends the rest marked last.
#include "sagevid/v1/sagevid.pb.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace sagevid {

class VideoChunker {
 public:
  using Sink = std::function<void(v1::VideoChunk chunk)>;

  VideoChunker(std::size_t max_bytes, Sink sink) : max_bytes_(max_bytes), sink_(std::move(sink)) {
    if (max_bytes_ == 0) throw std::invalid_argument("VideoChunker: max_bytes must be at least 1");
  }

  void append(std::string_view bytes) {
    pending_.append(bytes);
    while (pending_.size() > max_bytes_) {  // a chunk of exactly max_bytes waits: it may turn out to be the last
      send(std::string_view(pending_).substr(0, max_bytes_), false);
      pending_.erase(0, max_bytes_);
    }
  }
  void flush() {
    if (!pending_.empty()) send(pending_, false);
    pending_.clear();
  }
  // The rest, marked last; an empty last chunk when everything went out already, so the end is always marked.
  void finish() {
    send(pending_, true);
    pending_.clear();
  }
  uint64_t total() const { return offset_; }  // bytes sent

 private:
  void send(std::string_view data, bool last) {
    v1::VideoChunk chunk;
    chunk.set_data(data.data(), data.size());
    chunk.set_offset(offset_);
    chunk.set_last(last);
    offset_ += data.size();
    sink_(std::move(chunk));
  }

  const std::size_t max_bytes_;
  Sink sink_;
  std::string pending_;
  uint64_t offset_ = 0;
};

}  // namespace sagevid
