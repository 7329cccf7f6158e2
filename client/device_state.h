// What the board says about itself right now: battery, mains power, temperature, load and free
// memory, read from Linux's sysfs and procfs (/sys/class/power_supply, /sys/class/thermal,
// /proc/loadavg, /proc/meminfo) under an injectable root, and the per-round decision whether the
// device takes a training task in that state.
//
// A value that is missing or does not parse is unknown (std::nullopt), never a guess: a device
// that must be on battery >= 30% and whose capacity file reads "garbage" declines with
// "battery_unknown" rather than training by accident. Each unreadable file is logged once per
// reader. A board with no battery at all (a Pi on a wall supply, a Jetson dev kit) is mains
// powered: battery thresholds do not apply to it.
#ifndef EDGEFL_CLIENT_DEVICE_STATE_H_
#define EDGEFL_CLIENT_DEVICE_STATE_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "protos/edgefl.pb.h"

namespace edgefl::client {

struct DeviceState {
  // Whether any power_supply of type Battery exists. False = mains powered.
  bool has_battery = false;
  std::optional<int> battery_percent;  // 0..100, the lowest of the batteries
  // The battery's status says Charging or Full, or a Mains/USB supply is online.
  std::optional<bool> charging;
  std::optional<bool> mains_online;      // some Mains/USB supply reports online=1
  std::optional<double> temperature_c;   // the hottest thermal zone
  std::optional<double> load_per_core;   // 1-minute load average / online cores
  std::optional<uint64_t> mem_available_bytes;
  // "jetson-gpu" when the device tree names an NVIDIA Tegra SoC (/proc/device-tree/compatible),
  // "cuda" when an NVIDIA driver node exists (/dev/nvidiactl), else "" (none found).
  std::string accelerator;
};

// Reads DeviceState from a filesystem root. Not thread-safe (remembers what it logged).
class DeviceStateReader {
 public:
  // `root` is prepended to every path ("/" on a device; a fake tree in tests). `cores` divides
  // the load average (0 = this machine's online cores).
  explicit DeviceStateReader(std::string root = "/", int cores = 0);
  DeviceState Read();

 private:
  std::optional<std::string> ReadText(const std::string& rel);
  // Logs "<what>: <why>" the first time `key` is unusable.
  void Unknown(const std::string& key, const std::string& why);

  std::string root_;
  int cores_;
  std::set<std::string> logged_;
};

// When a device takes a round's task. Unset (0 / false) = no condition.
struct EligibilityThresholds {
  int min_battery_percent = 0;     // decline below this (battery-powered boards only)
  double max_temperature_c = 0;    // decline above this
  bool require_charging = false;   // decline when a battery is not charging
  double max_load_per_core = 0;    // decline when the 1-minute load per core is above this
};

// The reason to decline a task in `state`, or "" to take it. Reasons are short metric keys:
// battery_low, battery_unknown, too_hot, temperature_unknown, not_charging, charging_unknown,
// busy, load_unknown.
std::string DeclineReason(const DeviceState& state, const EligibilityThresholds& t);

// A human sentence for the log: "battery 12% < min_battery_percent 30".
std::string DescribeDecline(const std::string& reason, const DeviceState& state,
                            const EligibilityThresholds& t);

// Copies the known values of `state` into the profile's device-state fields (others cleared).
void FillProfile(const DeviceState& state, proto::DeviceProfile* profile);

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_DEVICE_STATE_H_
