#pragma once
// One Generate call run to its end: every event goes to a callback, the stream's status becomes an RpcError,
// and the Completed event is returned. Shared by `generate` (which writes the video) and `bench`.
#include "rpc.h"

#include "sagevid/v1/sagevid.grpc.pb.h"

#include <functional>

namespace sagevid::client {

using EventHandler = std::function<void(const sagevid::v1::GenerateEvent&)>;

sagevid::v1::Completed run_generate_call(sagevid::v1::VideoGeneration::StubInterface& stub,
                                         grpc::ClientContext& context, const sagevid::v1::GenerateRequest& request,
                                         const EventHandler& on_event);

// An empty request.model becomes the server's model when it serves exactly one; else a UsageError lists them.
void fill_default_model(sagevid::v1::VideoGeneration::StubInterface& stub, const Connection& connection,
                        sagevid::v1::GenerateRequest& request);

}  // namespace sagevid::client
