#include "sentencepiece_unigram.h"

#include <algorithm>
#include <cfloat>
#include <set>
#include <stdexcept>
#include <string>

namespace sagevid::spm {
namespace {

// sentencepiece steps through text by the lead byte alone (it is valid UTF-8 after normalization).
size_t utf8_char_length(uint8_t lead) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[lead >> 4]; }

bool is_segmentable(PieceType type) {
  return type == PieceType::kNormal || type == PieceType::kUserDefined || type == PieceType::kUnused;
}

// Refuses what sentencepiece refuses to load: with duplicates or no unknown piece, ids are ambiguous.
void check_pieces(const std::vector<Piece>& pieces) {
  if (pieces.empty()) throw std::runtime_error("the model has no pieces");
  if (pieces.size() > size_t(INT32_MAX)) throw std::runtime_error("the model has too many pieces");
  std::set<std::string_view> segmentable, reserved;
  for (const Piece& piece : pieces) {
    if (piece.text.empty()) throw std::runtime_error("a piece is empty");
    if (piece.text.find('\0') != std::string::npos) throw std::runtime_error("a piece contains a NUL byte");
    if (piece.type == PieceType::kByte) throw std::runtime_error("byte pieces (byte_fallback) are not supported");
    auto& names = is_segmentable(piece.type) ? segmentable : reserved;
    if (!names.insert(piece.text).second) throw std::runtime_error("piece '" + piece.text + "' is defined twice");
  }
  if (std::count_if(pieces.begin(), pieces.end(), [](const Piece& p) { return p.type == PieceType::kUnknown; }) != 1)
    throw std::runtime_error("the model must have exactly one unknown piece");
}

}  // namespace

UnigramModel::UnigramModel(const std::vector<Piece>& pieces) : trie_(1), pieces_(pieces) {
  check_pieces(pieces_);
  // sentencepiece's starting values. FLT_MIN is the smallest positive float: with all scores negative (log
  // probabilities), max_score_ stays ~0 and user-defined pieces score -0.1.
  min_score_ = FLT_MAX;
  max_score_ = FLT_MIN;
  for (int id = 0; id < int(pieces_.size()); ++id) {
    const Piece& piece = pieces_[size_t(id)];
    if (piece.type == PieceType::kUnknown) unk_id_ = id;
    if (piece.type == PieceType::kNormal) {
      min_score_ = std::min(min_score_, piece.score);
      max_score_ = std::max(max_score_, piece.score);
    }
    if (is_segmentable(piece.type)) insert(piece.text, id);
  }
}

void UnigramModel::insert(std::string_view piece, int id) {
  int32_t node = 0;
  for (const char c : piece) {
    const auto byte = uint8_t(c);
    auto& children = trie_[size_t(node)].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, int32_t>(byte, -1));
    if (it == children.end() || it->first != byte) {
      it = children.insert(it, {byte, int32_t(trie_.size())});
      trie_.emplace_back();  // invalidates `children`, not the id just stored
    }
    node = it->second;
  }
  trie_[size_t(node)].piece_id = id;
}

int32_t UnigramModel::child(int32_t node, uint8_t byte) const {
  const auto& children = trie_[size_t(node)].children;
  const auto it = std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, int32_t>(byte, -1));
  return it != children.end() && it->first == byte ? it->second : -1;
}

float UnigramModel::piece_score(int id, size_t length) const {
  const Piece& piece = pieces_[size_t(id)];
  // User-defined pieces score so that they always win over the pieces inside them.
  if (piece.type == PieceType::kUserDefined) return float(double(float(length) * max_score_) - 0.1);
  return piece.score;
}

std::vector<int> UnigramModel::segment(std::string_view text) const {
  constexpr float kUnkPenalty = 10.0f;
  const float unk_score = min_score_ - kUnkPenalty;
  // best[end]: the best path over text[0, end): its score, last piece, and where that piece starts.
  struct BestPath {
    float score = 0.0f;
    int id = -1;
    size_t start = SIZE_MAX;  // SIZE_MAX: no path ends here yet
  };
  std::vector<BestPath> best(text.size() + 1);
  // Path scores add and compare in float. (sentencepiece's source adds in double, but the Python
  // wheel's ids match float sums: two splits whose scores tie in float keep the first one found.)
  const auto offer = [&](size_t start, size_t end, int id, float score) {
    BestPath& path = best[end];
    if (path.start == SIZE_MAX || score > path.score) path = {score, id, start};
  };

  for (size_t start = 0; start < text.size();) {
    const float score_so_far = best[start].score;
    const size_t char_length = std::min(utf8_char_length(uint8_t(text[start])), text.size() - start);
    bool covers_one_char = false;
    int32_t node = 0;
    for (size_t end = start + 1; end <= text.size(); ++end) {
      node = child(node, uint8_t(text[end - 1]));
      if (node < 0) break;
      const int id = trie_[size_t(node)].piece_id;
      if (id < 0 || pieces_[size_t(id)].type == PieceType::kUnused) continue;
      offer(start, end, id, piece_score(id, end - start) + score_so_far);
      covers_one_char = covers_one_char || end - start == char_length;
    }
    // A character no piece covers becomes the unknown piece.
    if (!covers_one_char) offer(start, start + char_length, unk_id_, unk_score + score_so_far);
    start += char_length;
  }

  std::vector<int> ids;
  for (size_t end = text.size(); end > 0; end = best[end].start) ids.push_back(best[end].id);
  std::reverse(ids.begin(), ids.end());
  return ids;
}

}  // namespace sagevid::spm
