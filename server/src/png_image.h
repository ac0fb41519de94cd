#pragma once
// RGB pictures as PNG files, for previews: any browser or image viewer shows them, and the writer needs no
// library (the image data goes into stored, uncompressed deflate blocks; previews are small).
#include <cstdint>
#include <string>

namespace sagevid {

// rgb: height x width x 3 bytes, row by row. Throws std::invalid_argument for an empty or oversized picture.
std::string png_image(const uint8_t* rgb, int64_t width, int64_t height);

}  // namespace sagevid
