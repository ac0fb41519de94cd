#pragma once
// The generate command's progress on stderr: phase, a bar, step i/n, elapsed time and the ETA of the running
// phase (from its own pace so far). Redrawn in place on a terminal; one line per phase otherwise, so logs
// stay short.
#include <cstdio>
#include <optional>
#include <string>

namespace sagevid::client {

std::string format_duration(double seconds);  // 4.2s, 3m07s, 1h02m

// One line of the bar; eta_seconds absent while the pace is not known yet.
std::string render_progress(const std::string& phase, int step, int total, double elapsed_seconds,
                            std::optional<double> eta_seconds, int bar_width = 24);

class ProgressBar {
 public:
  ProgressBar(std::FILE* out, bool interactive) : out_(out), interactive_(interactive) {}
  ~ProgressBar() { finish(); }  // an error message then starts on a line of its own
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  void message(const std::string& text);  // a line of its own, e.g. "queued: 2 jobs ahead"
  void update(const std::string& phase, int step, int total, double elapsed_seconds);
  void finish();  // closes the line the bar was drawn on

  // The running phase's remaining time at its pace since its first report; none before a step is done.
  std::optional<double> eta_seconds(int step, int total, double elapsed_seconds) const;

 private:
  std::FILE* out_;
  bool interactive_;
  bool line_open_ = false;
  std::string phase_;
  int phase_first_step_ = 0;
  double phase_first_elapsed_ = 0;
};

}  // namespace sagevid::client
