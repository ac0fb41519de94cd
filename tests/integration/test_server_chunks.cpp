// VideoChunker: the stream cut into chunks of at most the limit, contiguous, flushed on demand, the last
// one marked, for random byte streams written in random pieces.
#include "catch.h"
#include "test_random.h"

#include "video_chunks.h"

#include <random>
#include <string>
#include <vector>

using sagevid::VideoChunker;

namespace {

struct Collected {
  std::vector<sagevid::v1::VideoChunk> chunks;
  VideoChunker::Sink sink() {
    return [this](sagevid::v1::VideoChunk chunk) { chunks.push_back(std::move(chunk)); };
  }
};

}  // namespace

TEST_CASE("chunks are contiguous, within the limit, and only the final one is last", "[integration][server]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  const size_t limit = std::uniform_int_distribution<size_t>(1, 64)(draw);
  Collected out;
  VideoChunker chunker(limit, out.sink());
  std::string written;
  for (int piece = 0, pieces = std::uniform_int_distribution<int>(1, 40)(draw); piece < pieces; ++piece) {
    std::string bytes(std::uniform_int_distribution<size_t>(0, 3 * limit)(draw), '\0');
    for (char& c : bytes) c = char(draw());
    chunker.append(bytes);
    written += bytes;
    if (draw() % 4 == 0) chunker.flush();
  }
  chunker.finish();

  REQUIRE_FALSE(out.chunks.empty());
  std::string joined;
  for (size_t i = 0; i < out.chunks.size(); ++i) {
    const auto& chunk = out.chunks[i];
    CHECK(chunk.offset() == joined.size());
    CHECK(chunk.data().size() <= limit);
    CHECK(chunk.last() == (i + 1 == out.chunks.size()));
    if (i + 1 < out.chunks.size()) CHECK_FALSE(chunk.data().empty());  // only the closing chunk may be empty
    joined += chunk.data();
  }
  CHECK(joined == written);
  CHECK(chunker.total() == written.size());
}

TEST_CASE("a full chunk goes out at once, flush sends a partial one, finish marks the end", "[integration][server]") {
  Collected out;
  VideoChunker chunker(4, out.sink());
  chunker.append("abc");
  CHECK(out.chunks.empty());  // held: not full, no flush
  chunker.append("defghij");  // 10 bytes pending: two chunks of 4 go, 2 wait
  REQUIRE(out.chunks.size() == 2);
  CHECK(out.chunks[0].data() == "abcd");
  CHECK(out.chunks[1].data() == "efgh");
  CHECK(out.chunks[1].offset() == 4);
  chunker.flush();
  REQUIRE(out.chunks.size() == 3);
  CHECK(out.chunks[2].data() == "ij");
  CHECK_FALSE(out.chunks[2].last());
  chunker.finish();  // nothing pending: an empty chunk still marks the end
  REQUIRE(out.chunks.size() == 4);
  CHECK(out.chunks[3].data().empty());
  CHECK(out.chunks[3].last());
  CHECK(out.chunks[3].offset() == 10);
  REQUIRE_THROWS_WITH(VideoChunker(0, out.sink()), ContainsSubstring("max_bytes must be at least 1"));
}
