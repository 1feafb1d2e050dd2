#pragma once
// The `npdl` command-line program, callable in-process (the tests do).
#include <iosfwd>
#include <string>
#include <vector>

namespace npdl::cli {

/// Exit statuses of every subcommand.
enum ExitStatus : int {
  kSuccess = 0,
  kFailed = 1,            // bad input or file, or the computation failed
  kUsage = 2,             // bad command line (unknown option, missing or bad value)
  kGradientMismatch = 3,  // gradients disagree (bn --backward checked, gradcheck, explain)
};

/// Runs `npdl` with `args` (without the program name), printing results to
/// `out` and a one-line error to `err`; returns the exit status.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace npdl::cli
