// Matrix product.
#include "autodiff/catalogue.hpp"
#include "ops/detail/entries.hpp"
#include "ops/detail/record.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::ops {
namespace m = npdl::math;
using detail::record;

namespace info {
const OpInfo kMatmul{"matmul", "a @ b", "ga = g @ b^T, gb = a^T @ g", false, 0b11};
}  // namespace info

Var matmul(const Var& a, const Var& b) {
  return record(info::kMatmul, {&a, &b}, m::matmul(a.value(), b.value()), {},
                [](const VjpArgs& c) -> Vars {
                  // The first layer's input is data: its gradient would cost as much
                  // as the weight's and be thrown away.
                  return {c.needs_input_grad(0) ? matmul(c.grad, c.input(1), false, true) : Var(),
                          c.needs_input_grad(1) ? matmul(c.input(0), c.grad, true, false) : Var()};
                });
}

Var matmul(const Var& a, const Var& b, bool transpose_a, bool transpose_b) {
  return detail::fused_or(
      {&a, &b}, [&] { return m::matmul(a.value(), b.value(), transpose_a, transpose_b); },
      [&] { return matmul(transpose_a ? transpose(a) : a, transpose_b ? transpose(b) : b); });
}

// Catalogue entry (Note [One entry per primitive] in autodiff/catalogue.hpp).
namespace {
using namespace catalogue;  // NOLINT: the entries below are written in its words
constexpr const char* kFile = "ops/linalg.cpp";

Var random_matmul(const Var& a, const Var& b, const Choices& c) {
  if (a.rank() == 2 && b.rank() == 2 && a.shape()[1] == b.shape()[0]) {
    detail::check_random_size(numel({a.shape()[0], b.shape()[1]}), c, "matmul");
    return matmul(a, b);
  }
  const Var m = detail::as_matrix(a);  // m m^T always fits
  detail::check_random_size(numel({m.shape()[0], m.shape()[0]}), c, "matmul");
  return matmul(m, transpose(m));
}

const Primitive kEntries[] = {
    Primitive(info::kMatmul, kFile)
        .with_inputs({{}, {}})
        .with_samples([] {
          auto product = [](const std::vector<Var>& v) { return matmul(v[0], v[1]); };
          return Samples{
              {"(3, 4) @ (4, 2)", product, {sample::normal({3, 4}, 51), sample::normal({4, 2}, 52)}},
              {"(1, 5) @ (5, 1)", product, {sample::normal({1, 5}, 53), sample::normal({5, 1}, 54)}},
              {"(a^T b)^2, a transposed in the call",
               [](const std::vector<Var>& v) { return square(matmul(v[0], v[1], true, false)); },
               {sample::normal({3, 2}, 55), sample::normal({3, 4}, 56)}}};
        })
        .with_random(random_matmul),
};
const Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::ops
