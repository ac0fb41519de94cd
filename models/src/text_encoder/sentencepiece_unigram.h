#pragma once
// SentencePiece's unigram segmentation: the most probable split of a normalized text into pieces
// (Viterbi over the piece scores), as the library's optimized encoder computes it, ties and float
// rounding included, so that ids match it exactly.
#include "sentencepiece_model.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid::spm {

class UnigramModel {
 public:
  // pieces: the model's pieces, in id order. Throws std::runtime_error if they do not make a unigram
  // model sentencepiece would load (no unknown piece, duplicates, empty pieces, ...).
  explicit UnigramModel(const std::vector<Piece>& pieces);

  // Piece ids of the best segmentation; one unk id per character no piece covers.
  std::vector<int> segment(std::string_view normalized) const;
  int unk_id() const { return unk_id_; }
  const std::string& piece(int id) const { return pieces_.at(size_t(id)).text; }

 private:
  // A byte trie over the segmentable pieces (normal, user-defined, unused).
  struct TrieNode {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t piece_id = -1;
  };
  void insert(std::string_view piece, int id);
  int32_t child(int32_t node, uint8_t byte) const;
  float piece_score(int id, size_t length) const;

  std::vector<TrieNode> trie_;
  std::vector<Piece> pieces_;
  int unk_id_ = -1;
  float min_score_ = 0.0f, max_score_ = 0.0f;
};

}  // namespace sagevid::spm
