#include "sentencepiece_charsmap.h"

#include <stdexcept>

namespace sagevid::spm {
namespace {

uint32_t read_le32(const char* bytes) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | uint8_t(bytes[i]);
  return value;
}

// Darts-clone packs each double-array unit into 32 bits.
bool has_leaf(uint32_t unit) { return (unit >> 8) & 1; }
uint32_t leaf_value(uint32_t unit) { return unit & 0x7fffffffu; }
// Leaf units have bit 31 set, so they never match a byte label.
uint32_t label(uint32_t unit) { return unit & (0x80000000u | 0xffu); }
uint32_t child_offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }

}  // namespace

PrecompiledCharsMap::PrecompiledCharsMap(std::string_view blob) {
  if (blob.size() < 4) throw std::runtime_error("precompiled_charsmap is shorter than its header");
  const uint32_t trie_bytes = read_le32(blob.data());
  blob.remove_prefix(4);
  if (trie_bytes > blob.size()) throw std::runtime_error("precompiled_charsmap's trie runs past its end");
  units_.resize(trie_bytes / 4);
  for (size_t i = 0; i < units_.size(); ++i) units_[i] = read_le32(blob.data() + 4 * i);
  replacements_ = std::string(blob.substr(trie_bytes));
}

PrecompiledCharsMap::Match PrecompiledCharsMap::longest_prefix_match(std::string_view text) const {
  Match longest;
  if (units_.empty()) return longest;
  // Walk the trie byte by byte; a corrupt array ends the walk rather than reading outside it.
  size_t node = child_offset(units_[0]);
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = uint8_t(text[i]);
    node ^= byte;
    if (node >= units_.size() || label(units_[node]) != byte) break;
    const uint32_t unit = units_[node];
    node ^= child_offset(unit);
    if (!has_leaf(unit)) continue;
    if (node >= units_.size()) break;
    longest = {i + 1, replacement_at(leaf_value(units_[node]))};
  }
  return longest;
}

std::string_view PrecompiledCharsMap::replacement_at(uint32_t offset) const {
  if (offset >= replacements_.size())
    throw std::runtime_error("precompiled_charsmap: a rule points outside the replacement table");
  const std::string_view rest = std::string_view(replacements_).substr(offset);
  return rest.substr(0, rest.find('\0'));  // NUL-terminated; the blob's end also ends the last one
}

}  // namespace sagevid::spm
