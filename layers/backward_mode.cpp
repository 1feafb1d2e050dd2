#include "layers/backward_mode.hpp"

#include "tensor/error.hpp"

namespace npdl::layers {

BackwardMode parse_backward_mode(const std::string& name) {
  if (name == "autodiff") return BackwardMode::Autodiff;
  if (name == "fused") return BackwardMode::Fused;
  if (name == "checked") return BackwardMode::Checked;
  throw ValueError("unknown backward mode '" + name + "'; expected autodiff, fused or checked");
}

std::string backward_mode_name(BackwardMode mode) {
  switch (mode) {
    case BackwardMode::Autodiff:
      return "autodiff";
    case BackwardMode::Fused:
      return "fused";
    case BackwardMode::Checked:
      return "checked";
  }
  return "?";
}

}  // namespace npdl::layers
