// npdl's command line: CLI11 parses, the selected Command runs, and every
// error becomes one line on `err` and a non-zero exit status.
#include <ostream>

#include "cli/cli.hpp"
#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "tensor/error.hpp"

namespace npdl::cli {
namespace {

// "npdl explain batchnorm": the program and the subcommands selected so far.
std::string command_path(const CLI::App& app) {
  std::string path = app.get_name();
  const CLI::App* current = &app;
  while (!current->get_subcommands().empty()) {
    current = current->get_subcommands().front();
    path += " " + current->get_name();
  }
  return path;
}

// Messages from libraries may span lines; the error stays one line.
std::string one_line(const std::string& message) {
  std::string line;
  for (char c : message) {
    if (c == '\n') {
      if (!line.empty() && line.back() != ' ') line += "; ";
    } else {
      line += c;
    }
  }
  while (!line.empty() && (line.back() == ' ' || line.back() == ';')) line.pop_back();
  return line;
}

std::string wrapped(const std::string& text, std::size_t width) {
  std::string out;
  for (const std::string& line : wrap(text, width)) out += (out.empty() ? "" : "\n") + line;
  return out;
}

// CLI11 prints descriptions as they are: wrap them so that --help fits 80
// columns (option descriptions start at column 30).
void wrap_help(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    option->description(wrapped(option->get_description(), kTextWidth - 30));
  }
  if (!app.get_footer().empty()) app.footer(wrapped(app.get_footer(), kTextWidth));
  app.description(wrapped(app.get_description(), kTextWidth));
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) wrap_help(*sub);
}

int report_error(std::ostream& err, const std::string& command, const std::string& message,
                 int status) {
  err << command << ": error: " << one_line(message) << '\n';
  return status;
}

}  // namespace

void require_option(const std::string& value, const std::string& option,
                    const std::string& command) {
  if (value.empty()) {
    throw UsageError(option + " is required (see " + command + " --help)");
  }
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app(
      "npdl: batch normalisation on .npy files, and the tools that teach and check its gradient",
      "npdl");
  std::vector<std::pair<std::unique_ptr<Command>, CLI::App*>> commands;
  for (auto make :
       {make_bn_command, make_explain_command, make_graph_command, make_gradcheck_command,
        make_gradcheck_lstm_command, make_gradcheck_gru_command, make_primitives_command}) {
    std::unique_ptr<Command> command = make();
    CLI::App* selected_by = command->add_to(app);
    commands.emplace_back(std::move(command), selected_by);
  }
  wrap_help(app);

  try {
    app.parse(std::vector<std::string>(args.rbegin(), args.rend()));  // CLI11 wants them reversed
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e, out, err);  // --help
    }
    const std::string command = command_path(app);
    return report_error(err, command, std::string(e.what()) + " (see " + command + " --help)",
                        kUsage);
  }

  for (auto& [command, selected_by] : commands) {
    if (!selected_by->parsed()) continue;
    const std::string name = command_path(app);
    try {
      return command->run(out);
    } catch (const UsageError& e) {
      return report_error(err, name, e.what(), kUsage);
    } catch (const GradientMismatch& e) {
      return report_error(err, name, e.what(), kGradientMismatch);
    } catch (const std::exception& e) {
      // npdl::Error names what was expected and what was given; anything
      // else (out of memory, a file system error) is reported as it is.
      return report_error(err, name, e.what(), kFailed);
    }
  }
  // No command, or a parent such as `npdl explain` without its subcommand.
  // (CLI11's require_subcommand would say so before naming an unknown one.)
  const std::string command = command_path(app);
  return report_error(err, command, "a subcommand is required (see " + command + " --help)",
                      kUsage);
}

}  // namespace npdl::cli
