// The optimisers' updates for one instruction-set level
// (model/detail/optimizer_level.hpp). CMake compiles this file once per level with
// -DNPDL_KERNEL_LEVEL=level_<name> -DEigen=Eigen_<name> and the level's
// flags (npdl_compile_per_level). As in tensor/kernels/level.cpp, include
// nothing that instantiates a template outside this level's namespaces.
// The formulas are the ones model/optimizers.hpp documents, written as
// before they moved here so that the default level's results are unchanged.
#include "model/detail/optimizer_level.hpp"

#include <Eigen/Core>

#ifndef NPDL_KERNEL_LEVEL
#error "compile optimizer_level.cpp with -DNPDL_KERNEL_LEVEL=level_<name> (see CMakeLists.txt)"
#endif

namespace npdl::model::optimizer_level::NPDL_KERNEL_LEVEL {
namespace {

template <class T>
using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using Out = Eigen::Map<Vec<T>>;
template <class T>
using In = Eigen::Map<const Vec<T>>;

template <class T>
void update(Rule rule, const StepParams& h, T* pp, const T* gp, T* s0, T* s1, std::int64_t n) {
  Out<T> p(pp, n);
  const In<T> g(gp, n);
  const T lr(h.lr), eps(h.rule.epsilon);
  switch (rule) {
    case Rule::Sgd:
      p -= lr * g;
      return;
    case Rule::Momentum: {
      Out<T> v(s0, n);
      v = T(h.rule.momentum) * v - lr * g;
      p += v;
      return;
    }
    case Rule::Nesterov: {
      Out<T> v(s0, n);
      v = T(h.rule.momentum) * v - lr * g;
      p += T(h.rule.momentum) * v - lr * g;
      return;
    }
    case Rule::Adagrad: {
      Out<T> c(s0, n);
      c += g.square();
      p -= lr * g / (c.sqrt() + eps);
      return;
    }
    case Rule::RMSprop: {
      Out<T> c(s0, n);
      c = T(h.rule.rho) * c + T(1 - h.rule.rho) * g.square();
      p -= lr * g / (c + eps).sqrt();
      return;
    }
    case Rule::Adadelta: {
      Out<T> c(s0, n), d(s1, n);
      c = T(h.rule.rho) * c + T(1 - h.rule.rho) * g.square();
      const Vec<T> u = g * (d + eps).sqrt() / (c + eps).sqrt();
      p -= lr * u;
      d = T(h.rule.rho) * d + T(1 - h.rule.rho) * u.square();
      return;
    }
    case Rule::Adam: {
      Out<T> m(s0, n), v(s1, n);
      m = T(h.rule.beta1) * m + T(1 - h.rule.beta1) * g;
      v = T(h.rule.beta2) * v + T(1 - h.rule.beta2) * g.square();
      p -= lr * m / (v.sqrt() + eps);
      return;
    }
    case Rule::Adamax: {
      Out<T> m(s0, n), u(s1, n);
      m = T(h.rule.beta1) * m + T(1 - h.rule.beta1) * g;
      u = (T(h.rule.beta2) * u).max(g.abs());
      p -= lr * m / (u + eps);
      return;
    }
  }
}

template <class T>
void clip(T* g, T limit, std::int64_t n) {
  Out<T>(g, n) = Out<T>(g, n).max(-limit).min(limit);
}

template <class T>
TypedOptimizerKernels<T> typed() {
  return {update<T>, clip<T>};
}

}  // namespace

const OptimizerKernelTable& table() {
  static const OptimizerKernelTable kTable{typed<float>(), typed<double>()};
  return kTable;
}

}  // namespace npdl::model::optimizer_level::NPDL_KERNEL_LEVEL
