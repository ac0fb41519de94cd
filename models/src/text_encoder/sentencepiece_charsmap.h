#pragma once
// SentencePiece's precompiled normalization rules (NormalizerSpec.precompiled_charsmap): a little-endian
// uint32 byte count, a Darts-clone double-array trie of that many bytes over the rules' source strings,
// then a table of NUL-terminated replacement strings that the trie's values point into.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid::spm {

class PrecompiledCharsMap {
 public:
  // Throws std::runtime_error if the blob's sizes do not add up.
  explicit PrecompiledCharsMap(std::string_view blob);

  struct Match {
    size_t length = 0;             // bytes of the input the rule replaces; 0: no rule applies
    std::string_view replacement;  // points into this object
  };
  // The longest rule whose source is a prefix of `text`.
  Match longest_prefix_match(std::string_view text) const;

 private:
  std::string_view replacement_at(uint32_t offset) const;

  std::vector<uint32_t> units_;  // the double array
  std::string replacements_;
};

}  // namespace sagevid::spm
