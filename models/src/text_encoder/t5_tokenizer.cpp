#include "sagevid/models/t5_tokenizer.h"

#include "sentencepiece_processor.h"

#include <algorithm>
#include <stdexcept>

namespace sagevid {

T5Tokenizer::T5Tokenizer(const std::filesystem::path& spiece_model)
    : processor_(std::make_unique<const spm::SentencePieceProcessor>(spm::SentencePieceProcessor::load(spiece_model))) {
  if (processor_->eos_id() < 0) throw std::runtime_error(spiece_model.string() + ": the model defines no EOS piece");
  eos_id_ = processor_->eos_id();
  pad_id_ = processor_->pad_id() >= 0 ? processor_->pad_id() : 0;  // T5 pads with id 0
  for (const int id : {processor_->eos_id(), processor_->pad_id(), processor_->unk_id()})
    if (id >= 0) special_tokens_.push_back({processor_->id_to_piece(id), id});
}

T5Tokenizer::~T5Tokenizer() = default;
T5Tokenizer::T5Tokenizer(T5Tokenizer&&) noexcept = default;
T5Tokenizer& T5Tokenizer::operator=(T5Tokenizer&&) noexcept = default;

T5Tokenizer::SpecialMatch T5Tokenizer::find_special(std::string_view text) const {
  SpecialMatch first;
  for (const SpecialToken& token : special_tokens_) {
    const size_t position = text.find(token.text);
    if (position == std::string_view::npos) continue;
    const bool longer_here = first.token && position == first.position && token.text.size() > first.token->text.size();
    if (position < first.position || longer_here) first = {position, &token};
  }
  return first;
}

std::vector<int64_t> T5Tokenizer::tokenize(std::string_view text) const {
  std::vector<int64_t> ids;
  while (true) {
    const SpecialMatch match = find_special(text);
    for (const int id : processor_->encode(text.substr(0, match.position))) ids.push_back(id);
    if (!match.token) return ids;
    ids.push_back(match.token->id);
    text.remove_prefix(match.position + match.token->text.size());
  }
}

int64_t T5Tokenizer::count_tokens(const std::string& text) const { return int64_t(tokenize(text).size()); }

std::vector<int64_t> T5Tokenizer::encode(const std::string& text, int64_t max_length) const {
  if (max_length < 1) throw std::invalid_argument("tokenizer: max_length must be at least 1");
  std::vector<int64_t> ids = tokenize(text);
  ids.resize(std::min(ids.size(), size_t(max_length - 1)));
  if (ids.empty() || ids.back() != eos_id_) ids.push_back(eos_id_);  // as transformers: no second EOS
  ids.resize(size_t(max_length), pad_id_);
  return ids;
}

}  // namespace sagevid
