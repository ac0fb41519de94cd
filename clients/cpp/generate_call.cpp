#include "generate_call.h"

#include "command_line.h"

#include <optional>

namespace sagevid::client {

sagevid::v1::Completed run_generate_call(sagevid::v1::VideoGeneration::StubInterface& stub,
                                         grpc::ClientContext& context, const sagevid::v1::GenerateRequest& request,
                                         const EventHandler& on_event) {
  const auto reader = stub.Generate(&context, request);
  std::optional<sagevid::v1::Completed> completed;
  sagevid::v1::GenerateEvent event;
  try {
    while (reader->Read(&event)) {
      if (event.has_completed()) completed = event.completed();
      on_event(event);
    }
  } catch (...) {
    // A bad event (say a lost chunk): cancel the job on the server and end the call cleanly before reporting.
    context.TryCancel();
    while (reader->Read(&event)) {}
    reader->Finish();
    throw;
  }
  check_status("Generate", reader->Finish());
  if (!completed) throw std::runtime_error("Generate: the stream ended without a Completed event");
  return *completed;
}

void fill_default_model(sagevid::v1::VideoGeneration::StubInterface& stub, const Connection& connection,
                        sagevid::v1::GenerateRequest& request) {
  if (!request.model().empty()) return;
  grpc::ClientContext context;
  set_deadline(context, Connection{connection.server, 10});
  sagevid::v1::ListModelsResponse response;
  check_status("ListModels", stub.ListModels(&context, {}, &response));
  if (response.models_size() == 1) {
    request.set_model(response.models(0).name());
    return;
  }
  std::string names;
  for (const auto& model : response.models()) names += (names.empty() ? "" : ", ") + model.name();
  throw UsageError("--model: the server has " + std::to_string(response.models_size()) + " models (" + names +
                   "); name one");
}

}  // namespace sagevid::client
