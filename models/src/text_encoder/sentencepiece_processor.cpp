#include "sentencepiece_processor.h"

#include <stdexcept>

namespace sagevid::spm {
namespace {

const ModelProto& check_supported(const ModelProto& model) {
  if (model.trainer_spec.model_type != ModelType::kUnigram)
    throw std::runtime_error("only unigram models are supported (model_type " +
                             std::to_string(int(model.trainer_spec.model_type)) + ")");
  if (model.trainer_spec.byte_fallback) throw std::runtime_error("byte_fallback models are not supported");
  return model;
}

std::vector<std::string> user_defined_symbols(const std::vector<Piece>& pieces) {
  std::vector<std::string> symbols;
  for (const Piece& piece : pieces)
    if (piece.type == PieceType::kUserDefined) symbols.push_back(piece.text);
  return symbols;
}

// sentencepiece finds special pieces by name among the non-segmentable ones, and counts them only with
// the right type.
int special_id(const std::vector<Piece>& pieces, const std::string& name, PieceType type) {
  for (size_t id = 0; id < pieces.size(); ++id) {
    const Piece& piece = pieces[id];
    const bool segmentable =
        piece.type == PieceType::kNormal || piece.type == PieceType::kUserDefined || piece.type == PieceType::kUnused;
    if (!segmentable && piece.text == name) return piece.type == type ? int(id) : -1;
  }
  return -1;
}

}  // namespace

SentencePieceProcessor::SentencePieceProcessor(const ModelProto& model)
    : normalizer_(check_supported(model).normalizer_spec, model.trainer_spec.treat_whitespace_as_suffix,
                  user_defined_symbols(model.pieces)),
      model_(model.pieces) {
  const TrainerSpec& spec = model.trainer_spec;
  // An empty name in the spec means the default one.
  const auto name = [](const std::string& given, const char* fallback) { return given.empty() ? fallback : given; };
  unk_id_ = model_.unk_id();  // sentencepiece falls back to the unknown piece whatever its name
  bos_id_ = special_id(model.pieces, name(spec.bos_piece, "<s>"), PieceType::kControl);
  eos_id_ = special_id(model.pieces, name(spec.eos_piece, "</s>"), PieceType::kControl);
  pad_id_ = special_id(model.pieces, name(spec.pad_piece, "<pad>"), PieceType::kControl);
}

SentencePieceProcessor SentencePieceProcessor::load(const std::filesystem::path& file) {
  const ModelProto model = read_model_file(file);
  try {
    return SentencePieceProcessor(model);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(file.string() + ": unsupported SentencePiece model: " + e.what());
  }
}

std::vector<int> SentencePieceProcessor::encode(std::string_view text) const {
  std::vector<int> ids;
  for (const int id : model_.segment(normalizer_.normalize(text))) {
    // A run of unknown characters is one unknown piece, as in sentencepiece.
    if (id == model_.unk_id() && !ids.empty() && ids.back() == id) continue;
    ids.push_back(id);
  }
  return ids;
}

}  // namespace sagevid::spm
