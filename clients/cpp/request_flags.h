#pragma once
// The GenerateRequest fields as command-line flags, shared by `generate` and `bench`. Values are checked for
// type and sign here; the server checks them against the model (and names the field if one is wrong).
#include "command_line.h"

#include "sagevid/v1/sagevid.pb.h"

#include <string>

namespace sagevid::client {

void add_request_flags(FlagSpec& spec);
sagevid::v1::GenerateRequest request_from_flags(const Flags& flags);

sagevid::v1::OutputFormat parse_output_format(const std::string& name);  // mp4, mp4-lossless, rgb
std::string phase_name(sagevid::v1::Phase phase);                        // text-encode, denoise, ...

extern const char* const kRequestFlagsHelp;

}  // namespace sagevid::client
