#include "client/device_state.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log.h"

namespace edgefl::client {
namespace {

// Entries of a directory (sorted, without "." and ".."); empty when it cannot be read.
std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string JoinPath(const std::string& root, const std::string& rel) {
  if (root.empty() || root == "/") return "/" + rel;
  return absl::StrCat(absl::StripSuffix(root, "/"), "/", rel);
}

}  // namespace

DeviceStateReader::DeviceStateReader(std::string root, int cores)
    : root_(std::move(root)), cores_(cores) {
  if (cores_ <= 0) cores_ = std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
}

std::optional<std::string> DeviceStateReader::ReadText(const std::string& rel) {
  std::ifstream in(JoinPath(root_, rel), std::ios::binary);
  if (!in) return std::nullopt;
  std::string text;
  // sysfs attributes are one short line; never read more than a page of anything.
  text.resize(4096);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return std::string(absl::StripAsciiWhitespace(text));
}

void DeviceStateReader::Unknown(const std::string& key, const std::string& why) {
  if (logged_.insert(key).second) {
    EDGEFL_LOG_WARN("device state: ", key, " unknown (", why, ")");
  }
}

DeviceState DeviceStateReader::Read() {
  DeviceState s;
  // ---- power supplies
  bool any_mains = false, mains_online = false, mains_unknown = false;
  bool battery_unknown = false, status_unknown = false, charging = false;
  int lowest = 101;
  for (const std::string& name : ListDir(JoinPath(root_, "sys/class/power_supply"))) {
    const std::string dir = "sys/class/power_supply/" + name;
    std::optional<std::string> type = ReadText(dir + "/type");
    if (!type) {
      Unknown(dir + "/type", "unreadable");
      continue;
    }
    if (*type == "Battery") {
      s.has_battery = true;
      std::optional<std::string> cap = ReadText(dir + "/capacity");
      int percent = -1;
      if (!cap || !absl::SimpleAtoi(*cap, &percent) || percent < 0 || percent > 100) {
        Unknown(dir + "/capacity", cap ? absl::StrCat("\"", absl::CHexEscape(cap->substr(0, 32)),
                                                     "\" is not a percentage")
                                       : "unreadable");
        battery_unknown = true;
      } else {
        lowest = std::min(lowest, percent);
      }
      std::optional<std::string> status = ReadText(dir + "/status");
      if (status && (*status == "Charging" || *status == "Full")) {
        charging = true;
      } else if (status && (*status == "Discharging" || *status == "Not charging")) {
        // known, not charging
      } else {
        Unknown(dir + "/status", status ? absl::StrCat("\"", absl::CHexEscape(status->substr(0, 32)),
                                                      "\"")
                                        : "unreadable");
        status_unknown = true;
      }
    } else if (*type == "Mains" || *type == "USB" || *type == "USB_C" || *type == "USB_PD") {
      any_mains = true;
      std::optional<std::string> online = ReadText(dir + "/online");
      if (online && (*online == "1" || *online == "0")) {
        mains_online = mains_online || *online == "1";
      } else {
        Unknown(dir + "/online", online ? absl::StrCat("\"", absl::CHexEscape(online->substr(0, 32)),
                                                      "\"")
                                        : "unreadable");
        mains_unknown = true;
      }
    }
  }
  if (s.has_battery && !battery_unknown && lowest <= 100) s.battery_percent = lowest;
  if (any_mains && (mains_online || !mains_unknown)) s.mains_online = mains_online;
  if (s.has_battery) {
    // Charging when a battery says so or a supply is online; unknown only when neither the
    // battery status nor any supply can tell.
    if (charging || (s.mains_online && *s.mains_online)) {
      s.charging = true;
    } else if (!status_unknown) {
      s.charging = false;
    }
  } else if (s.mains_online) {
    s.charging = *s.mains_online;
  }

  // ---- accelerator: a Jetson's device tree names its Tegra SoC ("nvidia,tegra210" ...; the file
  // holds NUL-separated strings); a discrete NVIDIA GPU has its driver's control node.
  if (std::optional<std::string> compat = ReadText("proc/device-tree/compatible");
      compat && compat->find("nvidia,tegra") != std::string::npos) {
    s.accelerator = "jetson-gpu";
  } else if (std::ifstream(JoinPath(root_, "dev/nvidiactl")).good()) {
    s.accelerator = "cuda";
  }

  // ---- thermal zones (millidegrees C)
  bool temp_unknown = false;
  double hottest = -1e9;
  int zones = 0;
  for (const std::string& name : ListDir(JoinPath(root_, "sys/class/thermal"))) {
    if (name.rfind("thermal_zone", 0) != 0) continue;
    const std::string file = "sys/class/thermal/" + name + "/temp";
    std::optional<std::string> t = ReadText(file);
    int64_t milli = 0;
    // Plausible range: -60 .. 200 degrees C.
    if (!t || !absl::SimpleAtoi(*t, &milli) || milli < -60000 || milli > 200000) {
      Unknown(file, t ? absl::StrCat("\"", absl::CHexEscape(t->substr(0, 32)), "\"")
                      : "unreadable");
      temp_unknown = true;
      continue;
    }
    ++zones;
    hottest = std::max(hottest, milli / 1000.0);
  }
  // One unreadable zone could be the hot one: then the temperature is unknown.
  if (zones > 0 && !temp_unknown) s.temperature_c = hottest;
  if (zones == 0 && !temp_unknown) Unknown("sys/class/thermal", "no thermal zones");

  // ---- load and memory
  std::optional<std::string> loadavg = ReadText("proc/loadavg");
  double load1 = 0;
  if (loadavg) {
    std::vector<std::string> parts = absl::StrSplit(*loadavg, ' ', absl::SkipEmpty());
    if (!parts.empty() && absl::SimpleAtod(parts[0], &load1) && std::isfinite(load1) &&
        load1 >= 0) {
      s.load_per_core = load1 / cores_;
    }
  }
  if (!s.load_per_core) Unknown("proc/loadavg", loadavg ? "does not parse" : "unreadable");

  std::optional<std::string> meminfo = ReadText("proc/meminfo");
  if (meminfo) {
    for (absl::string_view line : absl::StrSplit(*meminfo, '\n')) {
      if (!absl::ConsumePrefix(&line, "MemAvailable:")) continue;
      line = absl::StripAsciiWhitespace(line);
      uint64_t kb = 0;
      if (absl::ConsumeSuffix(&line, "kB") &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb)) {
        s.mem_available_bytes = kb * 1024;
      }
      break;
    }
  }
  if (!s.mem_available_bytes) Unknown("proc/meminfo MemAvailable", meminfo ? "missing" : "unreadable");
  return s;
}

std::string DeclineReason(const DeviceState& s, const EligibilityThresholds& t) {
  if (t.min_battery_percent > 0 && s.has_battery) {
    if (!s.battery_percent) return "battery_unknown";
    if (*s.battery_percent < t.min_battery_percent) return "battery_low";
  }
  if (t.require_charging && s.has_battery) {
    if (!s.charging) return "charging_unknown";
    if (!*s.charging) return "not_charging";
  }
  if (t.max_temperature_c > 0) {
    if (!s.temperature_c) return "temperature_unknown";
    if (*s.temperature_c > t.max_temperature_c) return "too_hot";
  }
  if (t.max_load_per_core > 0) {
    if (!s.load_per_core) return "load_unknown";
    if (*s.load_per_core > t.max_load_per_core) return "busy";
  }
  return "";
}

std::string DescribeDecline(const std::string& reason, const DeviceState& s,
                            const EligibilityThresholds& t) {
  if (reason == "battery_low") {
    return absl::StrCat("battery ", *s.battery_percent, "% < min_battery_percent ",
                        t.min_battery_percent);
  }
  if (reason == "battery_unknown") {
    return absl::StrCat("battery level unknown and min_battery_percent is ", t.min_battery_percent);
  }
  if (reason == "not_charging") return "battery not charging and require_charging is set";
  if (reason == "charging_unknown") return "charging state unknown and require_charging is set";
  if (reason == "too_hot") {
    return absl::StrFormat("temperature %.1f C > max_temperature_c %g", *s.temperature_c,
                           t.max_temperature_c);
  }
  if (reason == "temperature_unknown") {
    return absl::StrFormat("temperature unknown and max_temperature_c is %g", t.max_temperature_c);
  }
  if (reason == "busy") {
    return absl::StrFormat("load %.2f per core > max_load_per_core %g", *s.load_per_core,
                           t.max_load_per_core);
  }
  if (reason == "load_unknown") {
    return absl::StrFormat("load unknown and max_load_per_core is %g", t.max_load_per_core);
  }
  return reason;
}

void FillProfile(const DeviceState& s, proto::DeviceProfile* p) {
  p->set_has_battery(s.has_battery);
  if (!s.accelerator.empty()) p->set_accelerator(s.accelerator);
  if (s.battery_percent) p->set_battery_percent(*s.battery_percent); else p->clear_battery_percent();
  if (s.charging) p->set_charging(*s.charging); else p->clear_charging();
  if (s.temperature_c) p->set_temperature_c(*s.temperature_c); else p->clear_temperature_c();
  if (s.load_per_core) p->set_load_per_core(*s.load_per_core); else p->clear_load_per_core();
  if (s.mem_available_bytes) {
    p->set_mem_available_bytes(*s.mem_available_bytes);
  } else {
    p->clear_mem_available_bytes();
  }
}

}  // namespace edgefl::client
