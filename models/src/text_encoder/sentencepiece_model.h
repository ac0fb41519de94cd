#pragma once
// The parts of a SentencePiece `.model` file (a serialized sentencepiece.ModelProto) that encoding needs,
// read with a small protobuf wire-format reader of our own: libsentencepiece bundles and exports its own
// protobuf, which clashes with the system one that gRPC links (see t5_tokenizer.h).
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid::spm {

// Values as in sentencepiece_model.proto.
enum class PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
enum class ModelType { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

struct Piece {
  std::string text;
  float score = 0.0f;
  PieceType type = PieceType::kNormal;
};

// Field defaults are the .proto's.
struct TrainerSpec {
  ModelType model_type = ModelType::kUnigram;
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  // Special ids are found by these names, as sentencepiece does (not by the spec's *_id fields); the
  // unknown piece is found by its type.
  std::string bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
};

struct NormalizerSpec {
  std::string name;
  std::string precompiled_charsmap;  // empty: no normalization rules
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

struct ModelProto {
  std::vector<Piece> pieces;
  TrainerSpec trainer_spec;
  NormalizerSpec normalizer_spec;
};

// Parses the wire format; throws std::runtime_error on malformed or truncated input.
ModelProto parse_model_proto(std::string_view bytes);
// Reads and parses a file; errors name it.
ModelProto read_model_file(const std::filesystem::path& file);

}  // namespace sagevid::spm
