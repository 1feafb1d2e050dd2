// npdl primitives: the catalogue of primitive ops, as text or as the
// Markdown page docs/primitives.md.
#include <ostream>

#include "autodiff/catalogue.hpp"
#include "cli/commands.hpp"

namespace npdl::cli {
namespace {

class PrimitivesCommand : public Command {
 public:
  CLI::App* add_to(CLI::App& parent) override {
    CLI::App* app = parent.add_subcommand("primitives", "List the primitive ops and their VJPs");
    app->footer(
        "Prints every primitive op: its forward, its vector-Jacobian product (g is the gradient "
        "arriving at the output) and the file that defines it. With --markdown, the page "
        "docs/primitives.md.");
    app->add_flag("--markdown", markdown_, "print the Markdown page");
    return app;
  }

  int run(std::ostream& out) override {
    if (markdown_) {
      out << catalogue::markdown();
      return 0;
    }
    for (const catalogue::Primitive* p : catalogue::primitives()) {
      out << p->name() << "  (" << p->defined_in << ")\n"
          << "  forward  " << p->info->forward << "\n"
          << "  VJP      " << p->info->vjp << "\n";
    }
    return 0;
  }

 private:
  bool markdown_ = false;
};

}  // namespace

std::unique_ptr<Command> make_primitives_command() { return std::make_unique<PrimitivesCommand>(); }

}  // namespace npdl::cli
