#include "progress_bar.h"

#include <algorithm>
#include <cmath>

namespace sagevid::client {

std::string format_duration(double seconds) {
  char text[32];
  const long whole = std::lround(seconds);
  if (seconds < 60) std::snprintf(text, sizeof text, "%.1fs", seconds);
  else if (whole < 3600) std::snprintf(text, sizeof text, "%ldm%02lds", whole / 60, whole % 60);
  else std::snprintf(text, sizeof text, "%ldh%02ldm", whole / 3600, whole / 60 % 60);
  return text;
}

std::string render_progress(const std::string& phase, int step, int total, double elapsed_seconds,
                            std::optional<double> eta_seconds, int bar_width) {
  const double fraction = total > 0 ? std::clamp(double(step) / total, 0.0, 1.0) : 0.0;
  const int filled = static_cast<int>(fraction * bar_width);
  std::string line = phase;
  line.resize(std::max<size_t>(line.size(), 12), ' ');
  line += " [" + std::string(filled, '#') + std::string(bar_width - filled, '-') + "] ";
  line += std::to_string(step) + "/" + std::to_string(total);
  line += "  elapsed " + format_duration(elapsed_seconds);
  line += "  ETA " + (eta_seconds ? format_duration(*eta_seconds) : std::string("--"));
  return line;
}

void ProgressBar::message(const std::string& text) {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

std::optional<double> ProgressBar::eta_seconds(int step, int total, double elapsed_seconds) const {
  const int steps_done = step - phase_first_step_;
  if (steps_done <= 0) return std::nullopt;
  const double per_step = (elapsed_seconds - phase_first_elapsed_) / steps_done;
  return std::max(0.0, per_step * (total - step));
}

void ProgressBar::update(const std::string& phase, int step, int total, double elapsed_seconds) {
  const bool new_phase = phase != phase_;
  if (new_phase) {
    phase_ = phase;
    phase_first_step_ = step;
    phase_first_elapsed_ = elapsed_seconds;
  }
  const std::string line =
      render_progress(phase, step, total, elapsed_seconds, eta_seconds(step, total, elapsed_seconds));
  if (interactive_) {
    if (new_phase && line_open_) std::fputc('\n', out_);  // keep the finished phase's last line
    std::fprintf(out_, "\r\033[K%s", line.c_str());  // carriage return, clear the line, redraw
    line_open_ = true;
  } else if (new_phase || step == total) {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void ProgressBar::finish() {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fflush(out_);
}

}  // namespace sagevid::client
