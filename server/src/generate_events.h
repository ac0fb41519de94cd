#pragma once
// The proto events of a Generate stream that the service builds from its own state.
#include "request_validation.h"

#include "sagevid/models/pipeline.h"
#include "sagevid/v1/sagevid.pb.h"

#include <cstdint>
#include <string>

namespace sagevid {

v1::GenerateEvent queued_event(int position);
v1::GenerateEvent started_event(const ResolvedRequest& request, const std::string& request_id);
v1::Phase proto_phase(GenerationPhase phase);
v1::GenerateEvent progress_event(v1::Phase phase, int64_t step, int64_t total, double elapsed);
// The preview as a PNG.
v1::GenerateEvent preview_event(const GenerationPreview& preview, double elapsed);

}  // namespace sagevid
