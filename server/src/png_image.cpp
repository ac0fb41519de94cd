#include "png_image.h"

#include <array>
#include <stdexcept>
#include <string_view>

namespace sagevid {
namespace {

constexpr std::size_t kStoredBlock = 65535;  // the largest stored deflate block

uint32_t crc32(std::string_view bytes) {  // PNG's CRC (ISO 3309), over a chunk's type and data
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (const unsigned char b : bytes) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t adler32(std::string_view bytes) {  // zlib's checksum of the uncompressed data
  uint32_t a = 1, b = 0;
  for (const unsigned char byte : bytes) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

void put32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out += char((value >> shift) & 0xff);
}

void chunk(std::string& out, const char* type, std::string_view data) {
  put32(out, uint32_t(data.size()));
  const std::size_t start = out.size();
  out.append(type, 4).append(data);
  put32(out, crc32(std::string_view(out).substr(start)));
}

// A zlib stream of stored blocks: no compression, so no library.
std::string zlib_stored(std::string_view data) {
  std::string out("\x78\x01", 2);
  std::size_t offset = 0;
  do {
    const std::size_t length = std::min(kStoredBlock, data.size() - offset);
    const bool last = offset + length == data.size();
    out += char(last ? 1 : 0);
    out += char(length & 0xff);
    out += char(length >> 8);
    out += char(~length & 0xff);
    out += char((~length >> 8) & 0xff);
    out.append(data.substr(offset, length));
    offset += length;
  } while (offset < data.size());
  put32(out, adler32(data));
  return out;
}

}  // namespace

std::string png_image(const uint8_t* rgb, int64_t width, int64_t height) {
  if (width < 1 || height < 1 || width > 8192 || height > 8192)
    throw std::invalid_argument("png_image: " + std::to_string(width) + "x" + std::to_string(height) +
                                " is not a picture size in 1..8192");
  std::string rows;  // each row behind its filter byte (0: none)
  rows.reserve(std::size_t(height * (1 + width * 3)));
  for (int64_t y = 0; y < height; ++y) {
    rows += '\0';
    rows.append(reinterpret_cast<const char*>(rgb + y * width * 3), std::size_t(width * 3));
  }
  std::string header;
  put32(header, uint32_t(width));
  put32(header, uint32_t(height));
  header.append("\x08\x02\x00\x00\x00", 5);  // 8 bits per channel, RGB, deflate, adaptive filters, no interlace
  std::string png("\x89PNG\r\n\x1a\n", 8);
  chunk(png, "IHDR", header);
  chunk(png, "IDAT", zlib_stored(rows));
  chunk(png, "IEND", {});
  return png;
}

}  // namespace sagevid
