#pragma once
// T5's tokenizer as CogVideoX's pipeline uses it (transformers' T5Tokenizer, legacy mode): SentencePiece pieces,
// EOS appended, truncated so the EOS fits, padded with the pad id to a fixed length (226 for CogVideoX). Special
// tokens typed in the text ("</s>", "<pad>", "<unk>": the model's EOS, pad and unknown pieces) are matched
// exactly, before SentencePiece sees the text, and become their ids; the text around them is encoded chunk by
// chunk, so the whitespace next to them is dropped as at the ends of a prompt.
//
// The pieces come from our own SentencePiece unigram encoder (models/src/text_encoder/sentencepiece_*),
// not from libsentencepiece: Debian's and Ubuntu's builds of it bundle and export protobuf-lite 3.14, which
// clashes with the system protobuf that gRPC links, aborting the server.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid {

namespace spm {
class SentencePieceProcessor;
}

class T5Tokenizer {
 public:
  // spiece_model: tokenizer/spiece.model. Throws naming the file if it cannot be loaded.
  explicit T5Tokenizer(const std::filesystem::path& spiece_model);
  ~T5Tokenizer();
  T5Tokenizer(T5Tokenizer&&) noexcept;
  T5Tokenizer& operator=(T5Tokenizer&&) noexcept;

  // Exactly max_length ids: the prompt's tokens (at most max_length - 1), EOS unless they already end with
  // one (transformers adds no second), then padding.
  std::vector<int64_t> encode(const std::string& text, int64_t max_length) const;
  // How many tokens the prompt has before truncation (to tell a user their prompt was cut).
  int64_t count_tokens(const std::string& text) const;
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }

 private:
  struct SpecialToken {
    std::string text;
    int64_t id = 0;
  };
  struct SpecialMatch {
    size_t position = std::string_view::npos;
    const SpecialToken* token = nullptr;  // none in the text
  };
  // The special token that starts first in text (the longest of those starting there, as transformers' trie).
  SpecialMatch find_special(std::string_view text) const;
  std::vector<int64_t> tokenize(std::string_view text) const;  // no EOS, no truncation

  std::unique_ptr<const spm::SentencePieceProcessor> processor_;
  std::vector<SpecialToken> special_tokens_;
  int64_t eos_id_ = 1, pad_id_ = 0;
};

}  // namespace sagevid
