#include "sentencepiece_normalizer.h"

#include <cstdint>

namespace sagevid::spm {
namespace {

constexpr std::string_view kReplacementCharacter = "\xef\xbf\xbd";  // U+FFFD

bool is_continuation_byte(uint8_t byte) { return (byte & 0xc0) == 0x80; }

// Bytes in the well-formed UTF-8 character that starts `text` (shortest form, no surrogates,
// at most U+10FFFF), or 0 if it is malformed.
size_t valid_utf8_length(std::string_view text) {
  const auto b = [&](size_t i) { return uint8_t(text[i]); };
  if (b(0) < 0x80) return 1;
  size_t length = 0;
  uint32_t code = 0;
  if ((b(0) & 0xe0) == 0xc0) length = 2, code = b(0) & 0x1f;
  else if ((b(0) & 0xf0) == 0xe0) length = 3, code = b(0) & 0x0f;
  else if ((b(0) & 0xf8) == 0xf0) length = 4, code = b(0) & 0x07;
  else return 0;
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if (!is_continuation_byte(b(i))) return 0;
    code = (code << 6) | (b(i) & 0x3f);
  }
  static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  const bool surrogate = code >= 0xd800 && code < 0xe000;
  return code >= kSmallest[length] && !surrogate && code <= 0x10ffff ? length : 0;
}

}  // namespace

Normalizer::Normalizer(const NormalizerSpec& spec, bool treat_whitespace_as_suffix,
                       std::vector<std::string> user_defined_symbols)
    : add_dummy_prefix_(spec.add_dummy_prefix),
      remove_extra_whitespaces_(spec.remove_extra_whitespaces),
      escape_whitespaces_(spec.escape_whitespaces),
      treat_whitespace_as_suffix_(treat_whitespace_as_suffix),
      user_defined_symbols_(std::move(user_defined_symbols)) {
  if (!spec.precompiled_charsmap.empty()) charsmap_.emplace(spec.precompiled_charsmap);
}

size_t Normalizer::longest_user_defined_prefix(std::string_view input) const {
  size_t longest = 0;
  for (const std::string& symbol : user_defined_symbols_)
    if (symbol.size() > longest && input.starts_with(symbol)) longest = symbol.size();
  return longest;
}

Normalizer::Prefix Normalizer::normalize_prefix(std::string_view input) const {
  // User-defined symbols bypass the rules, so they survive normalization and can match their piece.
  if (const size_t length = longest_user_defined_prefix(input); length > 0) return {input.substr(0, length), length};
  if (charsmap_) {
    const PrecompiledCharsMap::Match rule = charsmap_->longest_prefix_match(input);
    if (rule.length > 0) return {rule.replacement, rule.length};
  }
  if (const size_t length = valid_utf8_length(input); length > 0) return {input.substr(0, length), length};
  return {kReplacementCharacter, 1};  // one malformed byte
}

void Normalizer::append_escaped(std::string_view text, std::string& out) const {
  for (const char c : text) {
    if (c == ' ' && escape_whitespaces_) out += kSpaceSymbol;
    else out += c;
  }
}

std::string_view Normalizer::skip_leading_spaces(std::string_view input) const {
  while (!input.empty()) {
    const Prefix prefix = normalize_prefix(input);
    if (prefix.normalized != " ") break;  // exactly one space, as sentencepiece checks
    input.remove_prefix(prefix.consumed);
  }
  return input;
}

std::string Normalizer::normalize(std::string_view input) const {
  const bool remove_extra = remove_extra_whitespaces_;
  if (remove_extra) input = skip_leading_spaces(input);
  std::string out;
  if (input.empty()) return out;

  const std::string_view space = escape_whitespaces_ ? kSpaceSymbol : " ";
  // The dummy prefix makes a text's first word look like every other word: "▁world" in both
  // "world" and "hello world".
  if (add_dummy_prefix_ && !treat_whitespace_as_suffix_) out += space;

  bool previous_ends_with_space = remove_extra;
  while (!input.empty()) {
    const Prefix prefix = normalize_prefix(input);
    std::string_view normalized = prefix.normalized;
    if (previous_ends_with_space)
      while (normalized.starts_with(' ')) normalized.remove_prefix(1);  // collapse runs of spaces
    if (!normalized.empty()) {
      append_escaped(normalized, out);
      previous_ends_with_space = normalized.ends_with(' ');
    }
    if (!remove_extra) previous_ends_with_space = false;
    input.remove_prefix(prefix.consumed);
  }

  if (remove_extra) {  // trailing whitespace
    std::string_view kept = out;
    while (kept.ends_with(space)) kept.remove_suffix(space.size());
    out.erase(kept.size());
  }
  if (add_dummy_prefix_ && treat_whitespace_as_suffix_) out += space;
  return out;
}

}  // namespace sagevid::spm
