// The HTTP API's video store on its own: bytes into each video's file, the order finished videos leave in when
// the files take more than the cap, retention, the first ending counting, waits for a growing video.
#include "catch.h"
#include "test_random.h"

#include "video_store.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using sagevid::VideoState;
using sagevid::VideoStore;

namespace {

VideoState video(const std::string& id) {
  VideoState state;
  state.id = id;
  return state;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string bytes(std::mt19937_64& draw, std::size_t size) {
  std::string out(size, '\0');
  for (char& c : out) c = char(draw());
  return out;
}

}  // namespace

TEST_CASE("video store: the bytes go to the video's file and its state counts them", "[video_store]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  const auto parent = std::filesystem::temp_directory_path();
  std::filesystem::path folder;
  {
    VideoStore store(parent, 60, 1 << 20);
    store.add(video("a"));
    const std::string first = bytes(draw, 1 + draw() % 5000), second = bytes(draw, 1 + draw() % 5000);
    store.append("a", first);
    store.append("a", second);
    REQUIRE(read_file(store.file("a")) == first + second);
    REQUIRE(store.find("a")->bytes == first.size() + second.size());
    REQUIRE(store.stored_bytes() == first.size() + second.size());
    folder = store.file("a").parent_path();
    REQUIRE(folder.parent_path() == parent);
    store.append("nobody", first);  // a video deleted meanwhile: nothing
    REQUIRE_FALSE(std::filesystem::exists(store.file("nobody")));
  }
  REQUIRE_FALSE(std::filesystem::exists(folder));  // the private folder goes with the store
}

TEST_CASE("video store: over the cap the video that ended first goes, and running ones stay", "[video_store]") {
  VideoStore store({}, 60, 100);
  for (const char* id : {"a", "b", "running"}) store.add(video(id));
  store.append("a", std::string(60, 'a'));
  store.finish("a", "", "");
  store.append("running", std::string(30, 'r'));
  store.append("b", std::string(30, 'b'));
  store.finish("b", "", "");  // 120 bytes: a ended first
  REQUIRE_FALSE(store.find("a"));
  REQUIRE_FALSE(std::filesystem::exists(store.file("a")));
  REQUIRE(store.find("b"));
  store.append("running", std::string(200, 'r'));  // running videos are never evicted, even over the cap
  store.sweep();
  REQUIRE_FALSE(store.find("b"));
  REQUIRE(store.find("running")->bytes == 230);
  store.finish("running", "", "");  // alone over the cap once it ended: it goes too
  REQUIRE_FALSE(store.find("running"));
  REQUIRE(store.stored_bytes() == 0);
}

TEST_CASE("video store: finished videos expire after the retention time, running ones never", "[video_store]") {
  VideoStore store({}, 0.2, 1 << 20);
  store.add(video("done"));
  store.add(video("failed"));
  store.add(video("running"));
  store.append("done", "bytes");
  store.finish("done", "", "");
  store.finish("failed", "internal", "it broke");
  const VideoState failed = *store.find("failed");
  REQUIRE(failed.status == VideoState::Status::failed);
  REQUIRE(failed.error_code == "internal");
  REQUIRE(failed.expires_at == failed.completed_at + 1);  // whole seconds, rounded up
  store.sweep();
  REQUIRE(store.find("done"));
  std::this_thread::sleep_for(250ms);
  store.sweep();
  REQUIRE_FALSE(store.find("done"));
  REQUIRE_FALSE(store.find("failed"));
  REQUIRE_FALSE(std::filesystem::exists(store.file("done")));
  REQUIRE(store.find("running"));
}

TEST_CASE("video store: the first ending counts and bytes after it are ignored", "[video_store]") {
  VideoStore store({}, 60, 1 << 20);
  store.add(video("v"));
  store.finish("v", "internal", "the disk is full");
  store.finish("v", "", "");
  store.append("v", "late");
  const VideoState state = *store.find("v");
  REQUIRE(state.status == VideoState::Status::failed);
  REQUIRE(state.bytes == 0);
  REQUIRE(store.remove("v"));
  REQUIRE_FALSE(store.remove("v"));
}

TEST_CASE("video store: wait returns when the video grows, ends or goes", "[video_store]") {
  VideoStore store({}, 60, 1 << 20);
  store.add(video("v"));
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(store.wait("v", 0, 50ms)->bytes == 0);  // nothing new: after the timeout
  REQUIRE(std::chrono::steady_clock::now() - start >= 50ms);
  std::thread writer([&] {
    std::this_thread::sleep_for(20ms);
    store.append("v", "abc");
  });
  REQUIRE(store.wait("v", 0, 5s)->bytes == 3);
  writer.join();
  std::thread finisher([&] { store.finish("v", "", ""); });
  REQUIRE(store.wait("v", 3, 5s)->ended());
  finisher.join();
  REQUIRE(store.remove("v"));
  REQUIRE_FALSE(store.wait("v", 3, 5s));
}
