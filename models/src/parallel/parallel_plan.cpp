// The parallel plan: its checks, its config keys and its description.
#include "sagevid/models/parallel.h"

#include "sagevid/models/config_reader.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <stdexcept>

namespace sagevid {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("parallel plan: " + what); }

}  // namespace

void check_parallel_plan(const ParallelPlan& plan, const std::vector<c10::Device>& devices) {
  if (plan.cfg != 1 && plan.cfg != 2) fail("cfg must be 1 or 2, got " + std::to_string(plan.cfg));
  if (plan.ulysses < 1) fail("ulysses must be at least 1, got " + std::to_string(plan.ulysses));
  if (int64_t(devices.size()) != plan.world())
    fail("cfg " + std::to_string(plan.cfg) + " x ulysses " + std::to_string(plan.ulysses) + " needs " +
         std::to_string(plan.world()) + " devices, got " + std::to_string(devices.size()));
  for (size_t i = 0; i < devices.size(); ++i) {
    const c10::Device& device = devices[i];
    if (!device.is_cpu() && !device.is_cuda()) fail("device " + device.str() + " is neither cpu nor cuda");
    if (device.is_cuda() && !device.has_index() && devices.size() > 1)
      fail("device " + device.str() + " needs an index (cuda:0, ...)");
    if (device.type() != devices[0].type()) fail("devices mix " + devices[0].str() + " and " + device.str());
    // CPU ranks may repeat (tests); two ranks on one GPU would only share it.
    if (device.is_cuda() && std::count(devices.begin(), devices.begin() + i, device))
      fail("device " + device.str() + " is listed twice");
  }
}

void check_ulysses_heads(const ParallelPlan& plan, int64_t heads) {
  if (heads < plan.ulysses)
    fail("the transformer's " + std::to_string(heads) + " attention heads are fewer than ulysses " +
         std::to_string(plan.ulysses) + " ranks");
}

std::optional<DeviceGroup> read_device_group(ConfigReader& entry) {
  if (!entry.has("devices")) {
    if (entry.has("parallel")) entry.fail("parallel", "needs \"devices\"");
    return std::nullopt;
  }
  if (entry.has("device")) entry.fail("devices", "give \"device\" or \"devices\", not both");
  DeviceGroup group;
  for (const std::string& name : entry.require<std::vector<std::string>>("devices")) {
    try {
      group.devices.emplace_back(name);
    } catch (const c10::Error&) {
      entry.fail("devices", "'" + name + "': expected cpu, cuda or cuda:N");
    }
  }
  if (group.devices.empty()) entry.fail("devices", "must list at least one device");
  const int64_t count = int64_t(group.devices.size());
  ConfigReader parallel = entry.object("parallel");
  const int64_t cfg = parallel.get<int64_t>("cfg", count % 2 == 0 ? 2 : 1);
  const int64_t ulysses = parallel.get<int64_t>("ulysses", cfg == 2 ? count / 2 : count);
  parallel.finish();
  group.plan = {int(std::clamp<int64_t>(cfg, 0, 1 << 10)), int(std::clamp<int64_t>(ulysses, 0, 1 << 10))};
  try {
    check_parallel_plan(group.plan, group.devices);
  } catch (const std::invalid_argument& e) {
    entry.fail("parallel", e.what());
  }
  return group;
}

std::string describe(const ParallelPlan& plan, const std::vector<c10::Device>& devices) {
  std::string text = "cfg " + std::to_string(plan.cfg) + " x ulysses " + std::to_string(plan.ulysses) + " on ";
  for (size_t i = 0; i < devices.size(); ++i) text += (i ? ", " : "") + devices[i].str();
  return text;
}

}  // namespace sagevid
