#include "generate_command.h"

#include "chunk_writer.h"
#include "generate_call.h"
#include "progress_bar.h"
#include "request_flags.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace sagevid::client {

const char* const kGenerateHelp = R"(generate: make one video and write it to a file as it streams in
  --output FILE             where the video goes (default sagevid.mp4); written as FILE.part until complete
  --quiet                   no progress on stderr
  --preview-dir DIR         write each preview (--preview-every) to DIR/preview-<step>.png
)";

namespace {

std::atomic<bool> interrupted = false;
void on_interrupt(int) { interrupted = true; }

// Ctrl-C cancels the call (so the server frees the worker) instead of killing the client mid-write.
class CancelOnInterrupt {
 public:
  explicit CancelOnInterrupt(grpc::ClientContext& context)
      : watcher_([this, &context] {
          while (!done_) {
            if (interrupted) {
              context.TryCancel();
              return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }) {
    previous_ = std::signal(SIGINT, on_interrupt);
  }
  ~CancelOnInterrupt() {
    done_ = true;
    watcher_.join();
    std::signal(SIGINT, previous_);
  }

 private:
  std::atomic<bool> done_ = false;
  std::thread watcher_;
  void (*previous_)(int) = SIG_DFL;
};

void show_event(const sagevid::v1::GenerateEvent& event, ProgressBar& bar) {
  if (event.has_queued()) {
    bar.message("queued: " + std::to_string(event.queued().position()) + " job(s) ahead");
  } else if (event.has_started()) {
    const auto& s = event.started();
    bar.message("started: " + std::to_string(s.frames()) + " frames " + std::to_string(s.width()) + "x" +
                std::to_string(s.height()) + ", " + std::to_string(s.steps()) + " steps, seed " +
                std::to_string(s.seed()) + ", attention " + s.attention_backend());
  } else if (event.has_progress()) {
    const auto& p = event.progress();
    bar.update(phase_name(p.phase()), p.step(), p.total(), p.elapsed_seconds());
  }
}

// preview-<step>.png in `folder`, the step zero-padded so that the files sort in order.
void write_preview(const std::string& folder, const sagevid::v1::Preview& preview) {
  char name[32];
  std::snprintf(name, sizeof name, "preview-%05d.png", preview.step());
  const std::filesystem::path path = std::filesystem::path(folder) / name;
  std::ofstream out(path, std::ios::binary);
  out.write(preview.png().data(), std::streamsize(preview.png().size()));
  if (!out.flush()) throw std::runtime_error("cannot write " + path.string());
}

void print_completed(const std::string& output, const sagevid::v1::Completed& done) {
  const auto& t = done.times();
  std::printf("wrote %s: %llu bytes, %d frames, %s\n", output.c_str(), static_cast<unsigned long long>(done.bytes()),
              done.frames(), done.mime_type().c_str());
  std::printf("seed %llu, attention backend %s\n", static_cast<unsigned long long>(done.seed()),
              done.attention_backend().c_str());
  std::printf("times: queued %.3fs, text-encode %.3fs, denoise %.3fs, decode %.3fs, encode %.3fs, total %.3fs\n",
              t.queued_seconds(), t.text_encode_seconds(), t.denoise_seconds(), t.decode_seconds(), t.encode_seconds(),
              t.total_seconds());
}

}  // namespace

int generate_command(const Connection& connection, const std::vector<std::string>& args) {
  FlagSpec spec{{"--output", "--preview-dir"}, {"--quiet"}, {}};
  add_request_flags(spec);
  const Flags flags(args, spec);
  sagevid::v1::GenerateRequest request = request_from_flags(flags);
  if (!flags.has("--prompt")) throw UsageError("generate needs --prompt");
  const std::string output = flags.text("--output", "sagevid.mp4");
  const std::string preview_dir = flags.text("--preview-dir", "");
  if (!preview_dir.empty() && request.preview_every() == 0) throw UsageError("--preview-dir needs --preview-every");
  if (!preview_dir.empty()) std::filesystem::create_directories(preview_dir);

  const auto stub = sagevid::v1::VideoGeneration::NewStub(open_channel(connection));
  fill_default_model(*stub, connection, request);
  ChunkWriter writer(output);
  ProgressBar bar(stderr, isatty(fileno(stderr)) != 0);
  grpc::ClientContext context;
  set_deadline(context, connection);
  sagevid::v1::Completed completed;
  {
    const CancelOnInterrupt cancel_on_interrupt(context);
    completed = run_generate_call(*stub, context, request, [&](const sagevid::v1::GenerateEvent& event) {
      if (event.has_chunk()) writer.write(event.chunk().offset(), event.chunk().data(), event.chunk().last());
      else if (event.has_preview() && !preview_dir.empty()) write_preview(preview_dir, event.preview());
      else if (!flags.has("--quiet")) show_event(event, bar);
    });
  }
  bar.finish();
  if (completed.bytes() != writer.bytes_written())
    throw std::runtime_error("Completed reports " + std::to_string(completed.bytes()) + " bytes but " +
                             std::to_string(writer.bytes_written()) + " arrived");
  writer.finish();
  print_completed(output, completed);
  return 0;
}

}  // namespace sagevid::client
