#include "ffmpeg_support.h"

extern "C" {
#include <libavutil/error.h>
#include <libavutil/log.h>
}

#include <spdlog/spdlog.h>

#include <cstdarg>
#include <mutex>
#include <string_view>

namespace sagevid {
namespace {

// FFmpeg's own messages go to our log, warnings and worse only: libx264 reports its settings at info level
// on every open, which would be noise in the server's one-line-per-request log.
void log_ffmpeg_message(void* context, int level, const char* format, va_list arguments) {
  if (level > AV_LOG_WARNING) return;
  char line[1024];
  int print_prefix = 1;
  av_log_format_line2(context, level, format, arguments, line, sizeof(line), &print_prefix);
  std::string_view text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.empty()) return;
  const auto spd_level = level <= AV_LOG_FATAL   ? spdlog::level::critical
                         : level <= AV_LOG_ERROR ? spdlog::level::err
                                                 : spdlog::level::warn;
  spdlog::log(spd_level, "ffmpeg: {}", text);
}

}  // namespace

void route_ffmpeg_log() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(&log_ffmpeg_message); });
}

std::string ffmpeg_error(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

}  // namespace sagevid
