#pragma once
// SentencePiece's text normalization before segmentation: user-defined symbols kept as they are, the
// precompiled rules (e.g. NFKC) applied longest match first, malformed UTF-8 replaced by U+FFFD, extra
// whitespace removed, a dummy-prefix space added, spaces escaped as U+2581.
#include "sentencepiece_charsmap.h"
#include "sentencepiece_model.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid::spm {

inline constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

class Normalizer {
 public:
  // Throws std::runtime_error if the spec's charsmap is malformed.
  Normalizer(const NormalizerSpec& spec, bool treat_whitespace_as_suffix,
             std::vector<std::string> user_defined_symbols);

  std::string normalize(std::string_view input) const;

 private:
  struct Prefix {
    std::string_view normalized;
    size_t consumed = 0;  // input bytes
  };
  // Normalizes the first unit of `input`: a user-defined symbol, a rule's source, or one character.
  Prefix normalize_prefix(std::string_view input) const;
  size_t longest_user_defined_prefix(std::string_view input) const;
  std::string_view skip_leading_spaces(std::string_view input) const;
  void append_escaped(std::string_view text, std::string& out) const;

  bool add_dummy_prefix_, remove_extra_whitespaces_, escape_whitespaces_, treat_whitespace_as_suffix_;
  std::vector<std::string> user_defined_symbols_;
  std::optional<PrecompiledCharsMap> charsmap_;
};

}  // namespace sagevid::spm
