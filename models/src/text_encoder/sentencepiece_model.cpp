#include "sentencepiece_model.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sagevid::spm {
namespace {

enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

[[noreturn]] void malformed(const std::string& what) { throw std::runtime_error("malformed model: " + what); }

// Reads protobuf's wire format from a byte range; every read checks the bytes left, so hostile input
// can only make it throw.
class WireReader {
 public:
  explicit WireReader(std::string_view bytes) : rest_(bytes) {}

  bool at_end() const { return rest_.empty(); }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (rest_.empty()) malformed("truncated varint");
      const auto byte = uint8_t(rest_.front());
      rest_.remove_prefix(1);
      value |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
    malformed("varint longer than 10 bytes");
  }

  uint32_t fixed32() {
    const std::string_view raw = take(4);
    uint32_t value = 0;
    for (int i = 3; i >= 0; --i) value = (value << 8) | uint8_t(raw[size_t(i)]);  // little-endian on the wire
    return value;
  }

  std::string_view length_delimited() {
    const uint64_t length = varint();
    if (length > rest_.size()) malformed("length-delimited field runs past the end");
    return take(size_t(length));
  }

  // A field's number and wire type.
  std::pair<uint32_t, int> key() {
    const uint64_t key = varint();
    const uint64_t field = key >> 3;
    if (field == 0 || field > 0x1fffffff) malformed("invalid field number " + std::to_string(field));
    return {uint32_t(field), int(key & 7)};
  }

  void skip(int wire_type) {
    switch (wire_type) {
      case kVarint: varint(); return;
      case kFixed64: take(8); return;
      case kLengthDelimited: length_delimited(); return;
      case kFixed32: take(4); return;
      default: malformed("unsupported wire type " + std::to_string(wire_type));  // groups (3, 4) included
    }
  }

 private:
  std::string_view take(size_t n) {
    if (n > rest_.size()) malformed("truncated field");
    const std::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return out;
  }

  std::string_view rest_;
};

void expect_wire_type(uint32_t field, int got, int want) {
  if (got != want)
    malformed("field " + std::to_string(field) + " has wire type " + std::to_string(got) + ", expected " +
              std::to_string(want));
}

float float_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Calls on_field(reader, field, wire_type) for each field; on_field returns false for fields it skips.
template <typename OnField>
void for_each_field(std::string_view bytes, OnField on_field) {
  WireReader reader(bytes);
  while (!reader.at_end()) {
    const auto [field, wire_type] = reader.key();
    if (!on_field(reader, field, wire_type)) reader.skip(wire_type);
  }
}

uint64_t read_varint_field(WireReader& reader, uint32_t field, int wire_type) {
  expect_wire_type(field, wire_type, kVarint);
  return reader.varint();
}

std::string read_string_field(WireReader& reader, uint32_t field, int wire_type) {
  expect_wire_type(field, wire_type, kLengthDelimited);
  return std::string(reader.length_delimited());
}

Piece parse_piece(std::string_view bytes) {
  Piece piece;
  for_each_field(bytes, [&](WireReader& reader, uint32_t field, int wire_type) {
    switch (field) {
      case 1: piece.text = read_string_field(reader, field, wire_type); return true;
      case 2:
        expect_wire_type(field, wire_type, kFixed32);
        piece.score = float_from_bits(reader.fixed32());
        return true;
      case 3: {
        const uint64_t type = read_varint_field(reader, field, wire_type);
        if (type < 1 || type > 6) malformed("unknown piece type " + std::to_string(type));
        piece.type = PieceType(type);
        return true;
      }
      default: return false;
    }
  });
  return piece;
}

// A second occurrence of an embedded message merges into the first, as protobuf does: hence `spec&`.
void parse_trainer_spec(std::string_view bytes, TrainerSpec& spec) {
  for_each_field(bytes, [&](WireReader& reader, uint32_t field, int wire_type) {
    switch (field) {
      case 3: spec.model_type = ModelType(read_varint_field(reader, field, wire_type)); return true;
      case 24: spec.treat_whitespace_as_suffix = read_varint_field(reader, field, wire_type) != 0; return true;
      case 35: spec.byte_fallback = read_varint_field(reader, field, wire_type) != 0; return true;
      case 46: spec.bos_piece = read_string_field(reader, field, wire_type); return true;
      case 47: spec.eos_piece = read_string_field(reader, field, wire_type); return true;
      case 48: spec.pad_piece = read_string_field(reader, field, wire_type); return true;
      default: return false;
    }
  });
}

void parse_normalizer_spec(std::string_view bytes, NormalizerSpec& spec) {
  for_each_field(bytes, [&](WireReader& reader, uint32_t field, int wire_type) {
    switch (field) {
      case 1: spec.name = read_string_field(reader, field, wire_type); return true;
      case 2: spec.precompiled_charsmap = read_string_field(reader, field, wire_type); return true;
      case 3: spec.add_dummy_prefix = read_varint_field(reader, field, wire_type) != 0; return true;
      case 4: spec.remove_extra_whitespaces = read_varint_field(reader, field, wire_type) != 0; return true;
      case 5: spec.escape_whitespaces = read_varint_field(reader, field, wire_type) != 0; return true;
      default: return false;
    }
  });
}

std::string_view read_message_field(WireReader& reader, uint32_t field, int wire_type) {
  expect_wire_type(field, wire_type, kLengthDelimited);
  return reader.length_delimited();
}

}  // namespace

ModelProto parse_model_proto(std::string_view bytes) {
  ModelProto model;
  for_each_field(bytes, [&](WireReader& reader, uint32_t field, int wire_type) {
    switch (field) {
      case 1: model.pieces.push_back(parse_piece(read_message_field(reader, field, wire_type))); return true;
      case 2: parse_trainer_spec(read_message_field(reader, field, wire_type), model.trainer_spec); return true;
      case 3: parse_normalizer_spec(read_message_field(reader, field, wire_type), model.normalizer_spec); return true;
      default: return false;  // self-test data, the denormalizer (decoding only), future fields
    }
  });
  return model;
}

ModelProto read_model_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open SentencePiece model");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) throw std::runtime_error(file.string() + ": cannot read SentencePiece model");
  try {
    return parse_model_proto(bytes.view());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(file.string() + ": " + e.what());
  }
}

}  // namespace sagevid::spm
