#include "server/token_cli.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/sha256.h"
#include "server/enrollment_ledger.h"
#include "server/tokens.h"

namespace edgefl::server {
namespace {

constexpr char kProgram[] = "fl-server token";

int NewSecret(int argc, char** argv) {
  std::string secret_file;
  bool force = false;
  FlagSet flags("fl-server token new-secret",
                "Writes a new random server secret (32 bytes from the OpenSSL CSPRNG, hex) to a\n"
                "file with mode 0600. Tokens made with one secret are refused by a server that\n"
                "has another.\n\n"
                "  fl-server token new-secret --secret_file /etc/edgefl/secret");
  flags.String("secret_file", &secret_file, "where to write the secret (required)");
  flags.Bool("force", &force,
             "replace an existing secret (every token made with it stops working)");
  flags.ParseOrExit(argc, argv);
  if (secret_file.empty()) ExitUsageError(kProgram, "new-secret: --secret_file is required");
  if (!flags.positional().empty()) {
    ExitUsageError(kProgram, absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  if (FileExists(secret_file) && !force) {
    ExitUsageError(kProgram, absl::StrCat(secret_file,
                                          " exists; pass --force to replace it (every token made "
                                          "with the old secret stops working)"));
  }
  absl::StatusOr<std::string> raw = RandomBytes(32);
  if (!raw.ok()) ExitUsageError(kProgram, std::string(raw.status().message()));
  if (absl::Status s = WriteFileAtomically(secret_file, ToHex(*raw) + "\n", 0600); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, std::string(s.message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "wrote a new server secret to %s (mode 0600)\n", secret_file.c_str());
  return 0;
}

int Create(int argc, char** argv) {
  std::string secret_file;
  std::string ttl = "24h";
  int count = 1;
  int64_t uses = 1;
  std::string out;
  FlagSet flags(
      "fl-server token create",
      "Makes enrollment tokens: each lets a device Join (up to --uses times) until it\n"
      "expires. Prints one token per line, or writes them to --out (mode 0600) and\n"
      "prints their ids. The secret comes from --secret_file or $EDGEFL_SERVER_SECRET.\n\n"
      "  fl-server token create --secret_file secret --ttl 24h --count 100\n"
      "  fl-server token create --ttl 7d --uses 50 --out fleet.tokens");
  flags.String("secret_file", &secret_file,
               "the server secret (default $EDGEFL_SERVER_SECRET); must not be group/other "
               "readable");
  flags.String("ttl", &ttl, "how long the tokens stay valid: 24h, 90m, 7d, ...");
  flags.Int("count", &count, "number of tokens (1..100000)");
  flags.Int64("uses", &uses, "Joins each token pays for (1 = single-use)");
  flags.String("out", &out, "write the tokens to this file (mode 0600) instead of stdout");
  flags.ParseOrExit(argc, argv);
  if (!flags.positional().empty()) {
    ExitUsageError(kProgram, absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  if (count < 1 || count > 100000) ExitUsageError(kProgram, "--count must be in 1..100000");
  if (uses < 1 || uses > kMaxTokenUses) {
    ExitUsageError(kProgram, absl::StrCat("--uses must be in 1..", kMaxTokenUses));
  }
  absl::StatusOr<absl::Duration> lifetime = ParsePositiveDuration(ttl);
  if (!lifetime.ok())
    ExitUsageError(kProgram, absl::StrCat("--ttl: ", lifetime.status().message()));
  std::string source;
  absl::StatusOr<std::string> secret = LoadServerSecret(secret_file, &source);
  if (!secret.ok()) ExitUsageError(kProgram, std::string(secret.status().message()));
  absl::StatusOr<TokenAuthority> authority = TokenAuthority::Create(*secret);
  if (!authority.ok()) ExitUsageError(kProgram, std::string(authority.status().message()));

  const absl::Time expires = absl::Now() + *lifetime;
  std::string tokens;
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<std::string> id = TokenAuthority::NewTokenId();
    if (!id.ok()) ExitUsageError(kProgram, std::string(id.status().message()));
    ids.push_back(*id);
    absl::StrAppend(&tokens, authority->MintEnrollment({*id, expires, uses}), "\n");
  }
  const std::string until = absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", expires, absl::UTCTimeZone());
  if (out.empty()) {
    std::fwrite(tokens.data(), 1, tokens.size(), stdout);
  } else {
    if (absl::Status s = WriteFileAtomically(out, tokens, 0600); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", kProgram, std::string(s.message()).c_str());
      return 1;
    }
    for (const std::string& id : ids) std::printf("%s\n", id.c_str());
  }
  std::fprintf(stderr, "%d enrollment token(s), %lld use(s) each, valid until %s%s%s\n", count,
               static_cast<long long>(uses), until.c_str(), out.empty() ? "" : "; written to ",
               out.c_str());
  return 0;
}

int Revoke(int argc, char** argv) {
  std::string revoked;
  std::string note;
  FlagSet flags(
      "fl-server token revoke",
      "Adds token ids (the second field of a token: eft1.<id>....) to a revocation list.\n"
      "A server started with --revoked FILE re-reads it on change: the tokens can no\n"
      "longer be used to Join, and the sessions they paid for stop working.\n\n"
      "  fl-server token revoke --revoked runs/fleet/revoked_tokens 3f9c0a1b2c3d4e5f");
  flags.String("revoked", &revoked, "the revocation list the server reads (required)");
  flags.String("note", &note, "a comment written next to the ids");
  flags.ParseOrExit(argc, argv);
  if (revoked.empty()) ExitUsageError(kProgram, "revoke: --revoked FILE is required");
  if (flags.positional().empty()) ExitUsageError(kProgram, "revoke: name at least one token id");
  std::vector<std::string> ids;
  for (const std::string& arg : flags.positional()) {
    // Accept a whole token too (its id is the second field) so operators can paste either.
    std::string id = arg;
    if (TokenAuthority::IsEnrollmentText(arg)) {
      const size_t dot = arg.find('.', 5);
      id = arg.substr(5, dot == std::string::npos ? std::string::npos : dot - 5);
    }
    ids.push_back(id);
  }
  if (absl::Status s = AppendRevocations(revoked, ids, note); !s.ok()) {
    if (absl::IsInvalidArgument(s)) ExitUsageError(kProgram, std::string(s.message()));
    std::fprintf(stderr, "%s: %s\n", kProgram, std::string(s.message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "revoked %zu token(s) in %s\n", ids.size(), revoked.c_str());
  return 0;
}

}  // namespace

int RunTokenCommand(int argc, char** argv) {
  const std::string usage =
      "usage: fl-server token new-secret|create|revoke [flags]  (--help on each for details)";
  if (argc < 2) ExitUsageError(kProgram, usage);
  const std::string sub = argv[1];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::printf(
        "%s\n\n"
        "  new-secret  write a new random server secret file (mode 0600)\n"
        "  create      make enrollment tokens (HMAC-SHA256 over id, expiry and uses)\n"
        "  revoke      add token ids to a revocation list the server re-reads\n",
        usage.c_str());
    return 0;
  }
  // The subcommand's own parser sees argv[1..] as its argv (argv[0] = the subcommand).
  if (sub == "new-secret") return NewSecret(argc - 1, argv + 1);
  if (sub == "create") return Create(argc - 1, argv + 1);
  if (sub == "revoke") return Revoke(argc - 1, argv + 1);
  ExitUsageError(kProgram, absl::StrCat("unknown subcommand '", sub, "'; ", usage));
}

}  // namespace edgefl::server
