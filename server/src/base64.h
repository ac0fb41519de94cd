#pragma once
// Standard base64 (RFC 4648, '+' and '/', '=' padding optional): the HTTP API's image bytes in JSON.
#include <optional>
#include <string>
#include <string_view>

namespace sagevid {

// nullopt for anything that is not base64: other characters, a bad length or bad padding.
std::optional<std::string> decode_base64(std::string_view text);

}  // namespace sagevid
