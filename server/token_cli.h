// `fl-server token ...`: the operator's commands for enrollment tokens.
//
//   fl-server token new-secret --secret_file F [--force]
//   fl-server token create --ttl 24h --count 100 [--uses N] [--secret_file F] [--out FILE]
//   fl-server token revoke --revoked FILE ID [ID...]
#ifndef EDGEFL_SERVER_TOKEN_CLI_H_
#define EDGEFL_SERVER_TOKEN_CLI_H_

namespace edgefl::server {

// Runs the subcommand in argv[1] (argv[0] is "token"). Returns the process exit code: 0 on
// success, 2 on a usage or input error (one line on stderr), 1 when writing fails.
int RunTokenCommand(int argc, char** argv);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_TOKEN_CLI_H_
