#pragma once
// The subcommands of `npdl`. Each declares its options on a CLI11 app (the
// integer ones through add_integer_option, cli/integer_option.hpp) and
// runs once the command line has been parsed; errors are thrown as
// npdl::Error (the caller prints them as one line) or returned as a status.
#include <CLI/CLI.hpp>
#include <iosfwd>
#include <memory>

#include "cli/cli.hpp"
#include "cli/integer_option.hpp"
#include "tensor/error.hpp"

namespace npdl::cli {

/// A command line that parses but is incomplete (a required option missing):
/// exit status kUsage, like CLI11's own errors.
class UsageError : public Error {
 public:
  using Error::Error;
};

/// Throws UsageError unless `value` was given. Checked when the command runs
/// rather than by CLI11, which would report a missing option before an
/// unknown one (a mistyped option would then read "--x is required").
void require_option(const std::string& value, const std::string& option,
                    const std::string& command);

class Command {
 public:
  virtual ~Command() = default;
  /// Adds the subcommand (and its options) to `parent`; returns the app whose
  /// parsing selects this command.
  virtual CLI::App* add_to(CLI::App& parent) = 0;
  /// Runs the parsed command; returns the exit status.
  virtual int run(std::ostream& out) = 0;
};

std::unique_ptr<Command> make_bn_command();
std::unique_ptr<Command> make_explain_command();
std::unique_ptr<Command> make_graph_command();
std::unique_ptr<Command> make_gradcheck_command();
/// Under `npdl gradcheck` (made after make_gradcheck_command's).
std::unique_ptr<Command> make_gradcheck_lstm_command();
std::unique_ptr<Command> make_gradcheck_gru_command();
std::unique_ptr<Command> make_primitives_command();

}  // namespace npdl::cli
