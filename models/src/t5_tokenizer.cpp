#include "sagevid/models/t5_tokenizer.h"

#include "sentencepiece_processor.h"

#include <stdexcept>

namespace sagevid {

T5Tokenizer::T5Tokenizer(const std::filesystem::path& spiece_model)
    : processor_(std::make_unique<const spm::SentencePieceProcessor>(spm::SentencePieceProcessor::load(spiece_model))) {
  if (processor_->eos_id() < 0) throw std::runtime_error(spiece_model.string() + ": the model defines no EOS piece");
  eos_id_ = processor_->eos_id();
  pad_id_ = processor_->pad_id() >= 0 ? processor_->pad_id() : 0;  // T5 pads with id 0
}

T5Tokenizer::~T5Tokenizer() = default;
T5Tokenizer::T5Tokenizer(T5Tokenizer&&) noexcept = default;
T5Tokenizer& T5Tokenizer::operator=(T5Tokenizer&&) noexcept = default;

int64_t T5Tokenizer::count_tokens(const std::string& text) const { return int64_t(processor_->encode(text).size()); }

std::vector<int64_t> T5Tokenizer::encode(const std::string& text, int64_t max_length) const {
  if (max_length < 1) throw std::invalid_argument("tokenizer: max_length must be at least 1");
  const std::vector<int> pieces = processor_->encode(text);
  std::vector<int64_t> ids(pieces.begin(), pieces.begin() + std::min<int64_t>(int64_t(pieces.size()), max_length - 1));
  ids.push_back(eos_id_);
  ids.resize(size_t(max_length), pad_id_);
  return ids;
}

}  // namespace sagevid
