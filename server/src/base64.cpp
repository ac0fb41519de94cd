#include "base64.h"

#include <array>
#include <cstdint>

namespace sagevid {
namespace {

// Each character's 6 bits, or -1.
constexpr std::array<int8_t, 256> kValues = [] {
  std::array<int8_t, 256> values{};
  values.fill(-1);
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) values[uint8_t(alphabet[i])] = int8_t(i);
  return values;
}();

}  // namespace

std::optional<std::string> decode_base64(std::string_view text) {
  if (text.size() % 4 == 0 && text.ends_with("==")) text.remove_suffix(2);
  else if (text.size() % 4 == 0 && text.ends_with("=")) text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;  // one character carries only 6 bits
  std::string bytes;
  bytes.reserve(text.size() / 4 * 3 + 2);
  uint32_t bits = 0;
  int count = 0;
  for (const char c : text) {
    const int value = kValues[uint8_t(c)];
    if (value < 0) return std::nullopt;
    bits = (bits << 6) | uint32_t(value);
    count += 6;
    if (count >= 8) {
      count -= 8;
      bytes.push_back(char((bits >> count) & 0xFF));
    }
  }
  if ((bits & ((1u << count) - 1)) != 0) return std::nullopt;  // the last character's unused bits must be 0
  return bytes;
}

}  // namespace sagevid
