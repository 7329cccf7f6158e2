// DeviceStateReader on fake sysfs/procfs trees, and the decline decision.
#include "client/device_state.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace edgefl::client {
namespace {

// A throw-away root with files written on demand (directories created as needed).
class FakeRoot {
 public:
  FakeRoot() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/edgefl-sysfs-XXXXXX";
    root_ = mkdtemp(tmpl.data());
  }
  ~FakeRoot() { std::system(("rm -rf '" + root_ + "'").c_str()); }
  void Write(const std::string& rel, const std::string& text) {
    for (size_t pos = 0; (pos = rel.find('/', pos)) != std::string::npos; ++pos) {
      mkdir((root_ + "/" + rel.substr(0, pos)).c_str(), 0755);
    }
    std::ofstream(root_ + "/" + rel) << text;
  }
  const std::string& path() const { return root_; }

 private:
  std::string root_;
};

// A Raspberry-Pi-like board on a UPS HAT: one battery, one mains supply, two thermal zones.
void WriteBoard(FakeRoot& r, const std::string& capacity, const std::string& status,
                const std::string& online) {
  r.Write("sys/class/power_supply/BAT0/type", "Battery\n");
  r.Write("sys/class/power_supply/BAT0/capacity", capacity);
  r.Write("sys/class/power_supply/BAT0/status", status);
  r.Write("sys/class/power_supply/AC/type", "Mains\n");
  r.Write("sys/class/power_supply/AC/online", online);
  r.Write("sys/class/thermal/thermal_zone0/temp", "48312\n");
  r.Write("sys/class/thermal/thermal_zone1/temp", "61000\n");
  r.Write("sys/class/thermal/cooling_device0/cur_state", "1\n");  // not a zone: ignored
  r.Write("proc/loadavg", "3.20 1.10 0.50 2/345 6789\n");
  r.Write("proc/meminfo", "MemTotal:        3884512 kB\nMemFree:  1000 kB\n"
                          "MemAvailable:    2097152 kB\n");
}

TEST(DeviceState, ReadsABoard) {
  FakeRoot r;
  WriteBoard(r, "57\n", "Discharging\n", "0\n");
  DeviceState s = DeviceStateReader(r.path(), /*cores=*/4).Read();
  EXPECT_TRUE(s.has_battery);
  ASSERT_TRUE(s.battery_percent.has_value());
  EXPECT_EQ(*s.battery_percent, 57);
  ASSERT_TRUE(s.charging.has_value());
  EXPECT_FALSE(*s.charging);
  ASSERT_TRUE(s.mains_online.has_value());
  EXPECT_FALSE(*s.mains_online);
  ASSERT_TRUE(s.temperature_c.has_value());
  EXPECT_DOUBLE_EQ(*s.temperature_c, 61.0);  // the hottest zone
  ASSERT_TRUE(s.load_per_core.has_value());
  EXPECT_DOUBLE_EQ(*s.load_per_core, 0.8);
  ASSERT_TRUE(s.mem_available_bytes.has_value());
  EXPECT_EQ(*s.mem_available_bytes, 2097152ull * 1024);
}

TEST(DeviceState, MainsOnlineMeansCharging) {
  FakeRoot r;
  WriteBoard(r, "57", "Not charging", "1");  // a full-ish battery held by the charger
  DeviceState s = DeviceStateReader(r.path(), 4).Read();
  ASSERT_TRUE(s.charging.has_value());
  EXPECT_TRUE(*s.charging);
  FakeRoot full;
  WriteBoard(full, "100", "Full", "0");
  s = DeviceStateReader(full.path(), 4).Read();
  ASSERT_TRUE(s.charging.has_value());
  EXPECT_TRUE(*s.charging);
}

TEST(DeviceState, GarbageAndMissingValuesAreUnknown) {
  FakeRoot r;
  WriteBoard(r, "lots\n", "Wobbling\n", "maybe\n");
  r.Write("sys/class/thermal/thermal_zone1/temp", "\xff\xfe");
  r.Write("proc/loadavg", "nan 1 1 1/1 1\n");
  r.Write("proc/meminfo", "MemTotal: 1 kB\n");
  DeviceStateReader reader(r.path(), 4);
  DeviceState s = reader.Read();
  EXPECT_TRUE(s.has_battery);
  EXPECT_FALSE(s.battery_percent.has_value());
  EXPECT_FALSE(s.charging.has_value());
  EXPECT_FALSE(s.mains_online.has_value());
  EXPECT_FALSE(s.temperature_c.has_value());  // one unreadable zone could be the hot one
  EXPECT_FALSE(s.load_per_core.has_value());
  EXPECT_FALSE(s.mem_available_bytes.has_value());
  // Out-of-range numbers are garbage too.
  r.Write("sys/class/power_supply/BAT0/capacity", "140");
  r.Write("sys/class/thermal/thermal_zone1/temp", "900000");
  s = reader.Read();  // read again: still unknown, logged only the first time
  EXPECT_FALSE(s.battery_percent.has_value());
  EXPECT_FALSE(s.temperature_c.has_value());

  // Unknown never passes a condition that needs the value.
  EligibilityThresholds t;
  t.min_battery_percent = 20;
  EXPECT_EQ(DeclineReason(s, t), "battery_unknown");
  t = {};
  t.require_charging = true;
  EXPECT_EQ(DeclineReason(s, t), "charging_unknown");
  t = {};
  t.max_temperature_c = 80;
  EXPECT_EQ(DeclineReason(s, t), "temperature_unknown");
  t = {};
  t.max_load_per_core = 1;
  EXPECT_EQ(DeclineReason(s, t), "load_unknown");
  // With no condition there is nothing to decline.
  EXPECT_EQ(DeclineReason(s, EligibilityThresholds()), "");
}

TEST(DeviceState, AnEmptyRootIsAMainsPoweredBoardWithNothingElseKnown) {
  FakeRoot r;
  DeviceState s = DeviceStateReader(r.path() + "/does-not-exist", 2).Read();
  EXPECT_FALSE(s.has_battery);
  EXPECT_FALSE(s.battery_percent.has_value());
  EXPECT_FALSE(s.temperature_c.has_value());
  EXPECT_FALSE(s.load_per_core.has_value());
  EligibilityThresholds t;
  t.min_battery_percent = 50;
  t.require_charging = true;
  EXPECT_EQ(DeclineReason(s, t), "");  // no battery: battery conditions do not apply
  t.max_temperature_c = 70;
  EXPECT_EQ(DeclineReason(s, t), "temperature_unknown");
}

// The accelerator a server-side `eligibility.accelerator` can ask for, from the board itself.
TEST(DeviceState, DetectsAJetsonOrAnNvidiaGpuAndNothingElse) {
  FakeRoot jetson;
  jetson.Write("proc/device-tree/compatible",
               std::string("nvidia,p3450-0000\0nvidia,jetson-nano\0nvidia,tegra210\0", 53));
  EXPECT_EQ(DeviceStateReader(jetson.path(), 4).Read().accelerator, "jetson-gpu");
  FakeRoot gpu;
  gpu.Write("dev/nvidiactl", "");
  EXPECT_EQ(DeviceStateReader(gpu.path(), 4).Read().accelerator, "cuda");
  FakeRoot pi;
  pi.Write("proc/device-tree/compatible", std::string("raspberrypi,4-model-b\0brcm,bcm2711\0", 35));
  const DeviceState s = DeviceStateReader(pi.path(), 4).Read();
  EXPECT_EQ(s.accelerator, "");
  proto::DeviceProfile profile;
  FillProfile(DeviceStateReader(jetson.path(), 4).Read(), &profile);
  EXPECT_EQ(profile.accelerator(), "jetson-gpu");
}

TEST(DeviceState, DeclinesByThreshold) {
  FakeRoot r;
  WriteBoard(r, "12", "Discharging", "0");
  DeviceState s = DeviceStateReader(r.path(), 4).Read();
  EligibilityThresholds t;
  t.min_battery_percent = 30;
  EXPECT_EQ(DeclineReason(s, t), "battery_low");
  EXPECT_EQ(DescribeDecline("battery_low", s, t), "battery 12% < min_battery_percent 30");
  t.min_battery_percent = 12;  // at the threshold is enough
  EXPECT_EQ(DeclineReason(s, t), "");
  t.require_charging = true;
  EXPECT_EQ(DeclineReason(s, t), "not_charging");
  t.require_charging = false;
  t.max_temperature_c = 60;
  EXPECT_EQ(DeclineReason(s, t), "too_hot");
  t.max_temperature_c = 61;
  EXPECT_EQ(DeclineReason(s, t), "");
  t.max_load_per_core = 0.5;
  EXPECT_EQ(DeclineReason(s, t), "busy");
  t.max_load_per_core = 0.8;
  EXPECT_EQ(DeclineReason(s, t), "");
}

TEST(DeviceState, FillsTheProfile) {
  FakeRoot r;
  WriteBoard(r, "80", "Charging", "1");
  DeviceState s = DeviceStateReader(r.path(), 4).Read();
  proto::DeviceProfile p;
  p.set_arch("aarch64");
  FillProfile(s, &p);
  EXPECT_EQ(p.arch(), "aarch64");
  EXPECT_TRUE(p.has_battery());
  EXPECT_EQ(p.battery_percent(), 80);
  EXPECT_TRUE(p.charging());
  EXPECT_DOUBLE_EQ(p.temperature_c(), 61.0);
  EXPECT_TRUE(p.has_mem_available_bytes());
  s.battery_percent.reset();
  FillProfile(s, &p);
  EXPECT_FALSE(p.has_battery_percent());
}

}  // namespace
}  // namespace edgefl::client
