// Fuzz target: Model::load on arbitrary bytes, into the model of
// seed_model.hpp. A file either loads (and the model then predicts without
// a crash) or is refused with an npdl::Error and leaves every parameter and
// running statistic exactly as it was (the contract of Model::load).
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "fuzz/seed_model.hpp"
#include "tensor/error.hpp"
#include "tensor/random.hpp"

namespace {

// Every tensor of the model's state, copied.
std::vector<npdl::Tensor> state_of(const npdl::model::Model& m) {
  std::vector<npdl::Tensor> out;
  for (const npdl::ParameterPtr& p : m.params()) out.push_back(p->value.clone());
  for (const auto& layer : m.layers()) {
    if (auto* bn = dynamic_cast<const npdl::layers::BatchNormal*>(layer.get())) {
      out.push_back(bn->running_mean().clone());
      out.push_back(bn->running_var().clone());
    }
  }
  return out;
}

bool bit_identical(const std::vector<npdl::Tensor>& a, const std::vector<npdl::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].shape() != b[i].shape() || a[i].dtype() != b[i].dtype()) return false;
    if (std::memcmp(a[i].raw_data(), b[i].raw_data(), a[i].nbytes()) != 0) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static npdl::model::Model* model = [] {
    npdl::set_seed(1);
    auto* m = new npdl::model::Model();
    npdl::fuzz::build_seed_model(*m);
    return m;
  }();
  const std::string path = npdl::fuzz::write_scratch("model.bin", data, size);
  const std::vector<npdl::Tensor> before = state_of(*model);
  try {
    model->load(path);
  } catch (const npdl::Error&) {
    if (!bit_identical(state_of(*model), before)) std::abort();  // a failed load changed the model
    return 0;
  }
  // Loaded: the state must have the model's shapes and dtypes, and predict.
  const std::vector<npdl::Tensor> after = state_of(*model);
  for (std::size_t i = 0; i < after.size(); ++i) {
    if (after[i].shape() != before[i].shape() || after[i].dtype() != before[i].dtype()) {
      std::abort();
    }
  }
  (void)model->predict(npdl::Tensor::uniform({5, 3}, 2));
  return 0;
}
