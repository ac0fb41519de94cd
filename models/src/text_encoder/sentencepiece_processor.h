#pragma once
// Encodes text to ids as sentencepiece's SentencePieceProcessor::Encode does, for unigram models without
// byte fallback (T5's spiece.model): normalize, segment, merge runs of unknown pieces.
#include "sentencepiece_normalizer.h"
#include "sentencepiece_unigram.h"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid::spm {

class SentencePieceProcessor {
 public:
  // Throws std::runtime_error naming the file if it cannot be read, is malformed, or is a kind of model
  // we do not implement (BPE, word, char, byte fallback).
  static SentencePieceProcessor load(const std::filesystem::path& file);
  // The same from a parsed model; errors do not name a file.
  explicit SentencePieceProcessor(const ModelProto& model);

  std::vector<int> encode(std::string_view text) const;

  // -1 where the model lacks the piece, as in sentencepiece.
  int unk_id() const { return unk_id_; }
  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  int pad_id() const { return pad_id_; }
  // The piece's text, as sentencepiece's IdToPiece; id must be in the vocabulary.
  const std::string& id_to_piece(int id) const { return model_.piece(id); }

 private:
  Normalizer normalizer_;
  UnigramModel model_;
  int unk_id_ = -1, bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
};

}  // namespace sagevid::spm
