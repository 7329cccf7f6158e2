#include "common/flags.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace edgefl {
namespace {

using ::testing::HasSubstr;

// Owns argv storage for FlagSet::Parse.
class Args {
 public:
  Args(std::initializer_list<std::string> args) : storage_(args) {  // NOLINT: implicit by design
    storage_.insert(storage_.begin(), "prog");
    for (std::string& s : storage_) ptrs_.push_back(s.data());
    ptrs_.push_back(nullptr);
  }
  Args(const Args&) = delete;  // ptrs_ point into storage_
  Args& operator=(const Args&) = delete;
  int argc() const { return static_cast<int>(storage_.size()); }
  char** argv() { return ptrs_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> ptrs_;
};

struct Values {
  std::string name = "server";
  int rounds = 10;
  int64_t big = -5;
  uint64_t seed = 7;
  double lr = 0.05;
  bool verbose = false;
  bool tls = true;
  std::vector<std::string> sets;
};

void Register(FlagSet* flags, Values* v) {
  flags->String("name", &v->name, "instance name");
  flags->Int("rounds", &v->rounds, "number of rounds");
  flags->Int64("big", &v->big, "a 64-bit value");
  flags->Uint64("seed", &v->seed, "random seed");
  flags->Double("lr", &v->lr, "learning rate");
  flags->Bool("verbose", &v->verbose, "log more");
  flags->Bool("tls", &v->tls, "use TLS");
  flags->Repeated("set", &v->sets, "config override path=value");
}

// A FlagSet over fresh Values, parsed once.
struct Parsed {
  explicit Parsed(std::initializer_list<std::string> list) : flags("prog", "Does things.") {
    Register(&flags, &v);
    Args args(list);
    status = flags.Parse(args.argc(), args.argv());
  }
  std::string message() const { return std::string(status.message()); }

  Values v;
  FlagSet flags;
  absl::Status status;
};

std::string Error(std::initializer_list<std::string> list) { return Parsed(list).message(); }

TEST(FlagSet, ParsesAllTypesInBothForms) {
  Parsed p({"--name=edge-1", "--rounds", "25", "--big=-9000000000", "--seed",
            "18446744073709551615", "--lr=1e-3", "input.json"});
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.v.name, "edge-1");
  EXPECT_EQ(p.v.rounds, 25);
  EXPECT_EQ(p.v.big, -9000000000LL);
  EXPECT_EQ(p.v.seed, UINT64_MAX);
  EXPECT_DOUBLE_EQ(p.v.lr, 1e-3);
  EXPECT_EQ(p.flags.positional(), std::vector<std::string>{"input.json"});
  EXPECT_TRUE(p.flags.IsSet("rounds"));
  EXPECT_FALSE(p.flags.IsSet("verbose"));
  EXPECT_FALSE(p.flags.IsSet("nonexistent"));
  EXPECT_FALSE(p.flags.help_requested());
  // Untouched flags keep their values.
  EXPECT_TRUE(p.v.tls);
}

TEST(FlagSet, BoolForms) {
  Parsed a({"--verbose", "--notls"});
  ASSERT_TRUE(a.status.ok()) << a.status;
  EXPECT_TRUE(a.v.verbose);
  EXPECT_FALSE(a.v.tls);
  EXPECT_TRUE(a.flags.IsSet("tls"));

  Parsed b({"--verbose=false", "--tls=true"});
  ASSERT_TRUE(b.status.ok()) << b.status;
  EXPECT_FALSE(b.v.verbose);
  EXPECT_TRUE(b.v.tls);

  // A bool never consumes the next argument.
  Parsed c({"--verbose", "false"});
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_TRUE(c.v.verbose);
  EXPECT_EQ(c.flags.positional(), std::vector<std::string>{"false"});

  EXPECT_EQ(Error({"--verbose=maybe"}),
            "invalid value 'maybe' for --verbose: expected true or false");
  // The --no prefix only applies to booleans.
  EXPECT_EQ(Error({"--norounds"}), "unknown flag --norounds");
}

TEST(FlagSet, UnknownFlag) {
  Parsed p({"--rounds=3", "--x=1"});
  EXPECT_EQ(p.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.message(), "unknown flag --x");
  EXPECT_EQ(Error({"--bogus"}), "unknown flag --bogus");
  EXPECT_THAT(Error({"-r"}), HasSubstr("unknown flag -r"));
}

TEST(FlagSet, BadValues) {
  Parsed p({"--rounds=abc"});
  EXPECT_EQ(p.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.message(), "invalid value 'abc' for --rounds: expected an integer");
  EXPECT_EQ(p.v.rounds, 10);
  EXPECT_EQ(Error({"--rounds", "1.5"}), "invalid value '1.5' for --rounds: expected an integer");
  EXPECT_EQ(Error({"--rounds=99999999999"}),
            "invalid value '99999999999' for --rounds: expected an integer");
  EXPECT_EQ(Error({"--rounds= 5"}), "invalid value ' 5' for --rounds: expected an integer");
  EXPECT_EQ(Error({"--rounds="}), "invalid value '' for --rounds: expected an integer");
  EXPECT_EQ(Error({"--big=x"}), "invalid value 'x' for --big: expected an integer");
  EXPECT_EQ(Error({"--seed=-1"}), "invalid value '-1' for --seed: expected a non-negative integer");
  EXPECT_EQ(Error({"--lr=fast"}), "invalid value 'fast' for --lr: expected a number");
  EXPECT_EQ(Error({"--rounds"}), "missing value for --rounds");
  EXPECT_EQ(Error({"--rounds", "--verbose"}), "missing value for --rounds");
  // A negative number is a value, not a flag.
  Parsed n({"--big", "-3"});
  ASSERT_TRUE(n.status.ok()) << n.status;
  EXPECT_EQ(n.v.big, -3);
}

TEST(FlagSet, RepeatedFlagsAppend) {
  Parsed p({"--set", "rounds=5", "--set=client.lr=0.01", "--set", "model=x"});
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.v.sets, (std::vector<std::string>{"rounds=5", "client.lr=0.01", "model=x"}));
  EXPECT_TRUE(p.flags.IsSet("set"));
  // A scalar flag given twice: the last value wins.
  Parsed q({"--rounds=1", "--rounds=2"});
  ASSERT_TRUE(q.status.ok()) << q.status;
  EXPECT_EQ(q.v.rounds, 2);
}

TEST(FlagSet, DoubleDashEndsFlags) {
  Parsed p({"a", "--verbose", "--", "--rounds=3", "-"});
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_TRUE(p.v.verbose);
  EXPECT_EQ(p.v.rounds, 10);
  EXPECT_EQ(p.flags.positional(), (std::vector<std::string>{"a", "--rounds=3", "-"}));
}

TEST(FlagSet, HelpIsNotAnError) {
  for (const char* help : {"--help", "-h"}) {
    Parsed p({"--rounds=3", help});
    ASSERT_TRUE(p.status.ok()) << p.status;
    EXPECT_TRUE(p.flags.help_requested()) << help;
  }
  Parsed p({"--rounds=3"});
  EXPECT_FALSE(p.flags.help_requested());
}

TEST(FlagSet, UsageListsEveryFlagWithDefaultsAligned) {
  Values v;
  v.sets = {"rounds=3"};
  FlagSet flags("fl-server", "Coordinates federated rounds.");
  Register(&flags, &v);
  v.rounds = 99;  // defaults are captured at registration time
  const std::string usage = flags.Usage();
  EXPECT_THAT(usage, HasSubstr("fl-server"));
  EXPECT_THAT(usage, HasSubstr("Coordinates federated rounds."));
  EXPECT_THAT(usage, HasSubstr("number of rounds (default: 10)"));
  EXPECT_THAT(usage, HasSubstr("instance name (default: \"server\")"));
  EXPECT_THAT(usage, HasSubstr("a 64-bit value (default: -5)"));
  EXPECT_THAT(usage, HasSubstr("random seed (default: 7)"));
  EXPECT_THAT(usage, HasSubstr("learning rate (default: 0.05)"));
  EXPECT_THAT(usage, HasSubstr("log more (default: false)"));
  EXPECT_THAT(usage, HasSubstr("use TLS (default: true)"));
  EXPECT_THAT(usage, HasSubstr("(default: \"rounds=3\")"));
  EXPECT_THAT(usage, HasSubstr("--[no]verbose "));
  EXPECT_THAT(usage, HasSubstr("--rounds=VALUE "));
  EXPECT_THAT(usage, HasSubstr("--help"));

  // Every help text starts in the same column.
  size_t column = std::string::npos;
  int flag_lines = 0;
  for (const char* help : {"instance name", "number of rounds", "a 64-bit value", "random seed",
                           "learning rate", "log more", "use TLS"}) {
    const size_t pos = usage.find(help);
    ASSERT_NE(pos, std::string::npos) << help;
    const size_t line_start = usage.rfind('\n', pos) + 1;
    if (column == std::string::npos) column = pos - line_start;
    EXPECT_EQ(pos - line_start, column) << help;
    ++flag_lines;
  }
  EXPECT_EQ(flag_lines, 7);
}

TEST(FlagSet, ParseOrExitExitsWithCode2OnError) {
  EXPECT_EXIT(
      {
        Values v;
        FlagSet flags("fl-client", "");
        Register(&flags, &v);
        Args args{"--rounds=abc"};
        flags.ParseOrExit(args.argc(), args.argv());
      },
      ::testing::ExitedWithCode(2),
      "fl-client: invalid value 'abc' for --rounds: expected an integer\nTry --help.");
}

TEST(FlagSet, ParseOrExitPrintsUsageAndExits0OnHelp) {
  EXPECT_EXIT(
      {
        Values v;
        FlagSet flags("fl-client", "");
        Register(&flags, &v);
        Args args{"--help"};
        ::dup2(2, 1);  // send the usage (stdout) where the death test can match it
        flags.ParseOrExit(args.argc(), args.argv());
        std::fprintf(stderr, "not reached");
      },
      ::testing::ExitedWithCode(0),
      "^Usage: fl-client \\[flags\\]\n(.|\n)*--rounds=VALUE +number of rounds \\(default: "
      "10\\)\n(.|\n)*--help +print this help and exit\n$");
}

TEST(FlagSet, ExitUsageError) {
  EXPECT_EXIT(ExitUsageError("fl-server", "no config given"), ::testing::ExitedWithCode(2),
              "^fl-server: no config given\n$");
}

}  // namespace
}  // namespace edgefl
