// The kernels of one instruction-set level (Note [Kernels per instruction
// set] in kernels.hpp). CMake compiles this file once per level with
//   -DNPDL_KERNEL_LEVEL=level_<name> -DEigen=Eigen_<name> <the level's -m flags>
// so that this level's functions and its Eigen instantiations have names of
// their own. Include nothing here that instantiates templates outside those
// two namespaces (npdl headers, std containers): their weak symbols would be
// shared with other levels.
#include <Eigen/Core>

#include "tensor/kernels/kernels.hpp"

#ifndef NPDL_KERNEL_LEVEL
#error "compile level.cpp with -DNPDL_KERNEL_LEVEL=level_<name> (see CMakeLists.txt)"
#endif

namespace npdl::kernels::NPDL_KERNEL_LEVEL {
namespace {

template <class T>
using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using In = Eigen::Map<const Vec<T>>;
template <class T>
using Out = Eigen::Map<Vec<T>>;
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Grid = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// out = op(x, y) over Eigen arrays, or a scalar and an array: one switch
// per call, a vectorised loop per case.
template <class T, class Dst, class X, class Y>
void assign_binary(BinaryOp op, Dst&& out, const X& x, const Y& y) {
  switch (op) {
    case BinaryOp::Add:
      out = x + y;
      return;
    case BinaryOp::Sub:
      out = x - y;
      return;
    case BinaryOp::Mul:
      out = x * y;
      return;
    case BinaryOp::Div:
      out = x / y;
      return;
  }
}

// Scalar libm calls through GCC builtins: no std:: inline function is
// instantiated here (see the top of this file).
inline float scalar_exp(float x) { return __builtin_expf(x); }
inline double scalar_exp(double x) { return __builtin_exp(x); }
// log of the smallest normal number: below it exp's result is subnormal or 0.
// (Not constexpr: clang does not evaluate the builtins in constant
// expressions; both compilers fold them when optimising.)
template <class T>
inline T lowest_normal_exp_arg() {
  if constexpr (sizeof(T) == sizeof(float)) {
    return __builtin_logf(__FLT_MIN__);
  } else {
    return __builtin_log(__DBL_MIN__);
  }
}

// Note [exp underflow]
// Eigen's vectorised exp clamps its argument near the smallest normal
// result, so below it a lane returns a tiny non-zero value (float32
// exp(-inf) = 2.9e-39, float64 exp(-1000) = 5.6e-309) while the scalar tail
// of the same array returns 0: the result would depend on an element's
// position. Arguments whose result is subnormal or zero are rare, so they
// are recomputed with libm's exp, which rounds them as IEEE 754 says. x and
// out may be the same buffer: the rare path keeps a block's arguments.
template <class T>
void exp_block(const T* x, T* out, std::int64_t n) {
  const T kLowest = lowest_normal_exp_arg<T>();
  if (n == 0 || !(In<T>(x, n).minCoeff() < kLowest)) {
    Out<T>(out, n) = In<T>(x, n).exp();
    return;
  }
  constexpr std::int64_t kBlock = 256;
  T args[kBlock];
  for (std::int64_t b = 0; b < n; b += kBlock) {
    const std::int64_t m = n - b < kBlock ? n - b : kBlock;
    Out<T>(args, m) = In<T>(x + b, m);
    Out<T>(out + b, m) = In<T>(args, m).exp();
    for (std::int64_t i = 0; i < m; ++i) {
      if (args[i] < kLowest) out[b + i] = scalar_exp(args[i]);
    }
  }
}

template <class T>
void unary(UnaryOp op, const T* xp, T* outp, std::int64_t n) {
  const In<T> x(xp, n);
  Out<T> out(outp, n);
  switch (op) {
    case UnaryOp::Neg:
      out = -x;
      return;
    case UnaryOp::Square:
      out = x.square();
      return;
    case UnaryOp::Sqrt:
      out = x.sqrt();
      return;
    case UnaryOp::Rsqrt:
      out = x.rsqrt();
      return;
    case UnaryOp::Exp:
      exp_block(xp, outp, n);
      return;
    case UnaryOp::Log:
      out = x.log();
      return;
    case UnaryOp::Relu:
      out = x.max(T(0));
      return;
    case UnaryOp::Sigmoid:
      // 1 / (1 + exp(-x)) overflows exp only towards +inf, which gives 0: stable.
      out = T(1) / (T(1) + (-x).exp());
      return;
    case UnaryOp::Tanh:
      out = x.tanh();
      return;
    case UnaryOp::Step:
      out = (x > T(0)).template cast<T>();
      return;
  }
}

template <class T>
void binary(BinaryOp op, const T* x, const T* y, T* out, std::int64_t n) {
  assign_binary<T>(op, Out<T>(out, n), In<T>(x, n), In<T>(y, n));
}

template <class T>
void binary_scalar_rhs(BinaryOp op, const T* x, T s, T* out, std::int64_t n) {
  assign_binary<T>(op, Out<T>(out, n), In<T>(x, n), s);
}

template <class T>
void binary_scalar_lhs(BinaryOp op, T s, const T* y, T* out, std::int64_t n) {
  assign_binary<T>(op, Out<T>(out, n), s, In<T>(y, n));
}

template <class T>
T sum(const T* x, std::int64_t n) {
  return In<T>(x, n).sum();
}

template <class T>
T dot(const T* x, const T* y, std::int64_t n) {
  return (In<T>(x, n) * In<T>(y, n)).sum();
}

template <class T>
void accumulate(double* acc, const T* x, std::int64_t n) {
  Out<double>(acc, n) += In<T>(x, n).template cast<double>();
}

template <class T>
void accumulate_product(double* acc, const T* x, const T* y, std::int64_t n) {
  Out<double>(acc, n) += (In<T>(x, n) * In<T>(y, n)).template cast<double>();
}

template <class T>
void accumulate_scaled(double* acc, const T* x, T s, std::int64_t n) {
  Out<double>(acc, n) += (In<T>(x, n) * s).template cast<double>();
}

template <class T>
using StridedMat = Eigen::Map<const Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T>
void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
          bool trans_a, const T* b, std::int64_t ldb, bool trans_b, T* c, std::int64_t ldc) {
  const StridedMat<T> A(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const StridedMat<T> B(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  Eigen::Map<Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (trans_a && trans_b) {
    C.noalias() = A.transpose() * B.transpose();
  } else if (trans_a) {
    C.noalias() = A.transpose() * B;
  } else if (trans_b) {
    C.noalias() = A * B.transpose();
  } else {
    C.noalias() = A * B;
  }
}

template <class T>
void softmax(const T* xp, T* outp, std::int64_t outer, std::int64_t n, std::int64_t inner,
             bool log) {
  for (std::int64_t o = 0; o < outer; ++o) {
    const Eigen::Map<const Grid<T>> x(xp + o * n * inner, n, inner);
    Eigen::Map<Grid<T>> y(outp + o * n * inner, n, inner);
    // Subtracting the maximum keeps exp from overflowing.
    y = x.rowwise() - x.colwise().maxCoeff();
    if (log) {
      y.rowwise() -= y.exp().colwise().sum().log();
    } else {
      exp_block(y.data(), y.data(), n * inner);  // Note [exp underflow]
      y.rowwise() /= y.colwise().sum();
    }
  }
}

template <class T>
void unary_alpha(AlphaOp op, const T* xp, T alpha, T* outp, std::int64_t n) {
  const In<T> x(xp, n);
  Out<T> out(outp, n);
  switch (op) {
    case AlphaOp::LeakyRelu:
      out = (x > T(0)).select(x, x * alpha);
      return;
    case AlphaOp::Elu:
      // min(x, 0): expm1 of positive x, unused, could overflow.
      out = (x > T(0)).select(x, x.min(T(0)).expm1() * alpha);
      return;
  }
}

template <class T>
TypedKernels<T> typed() {
  return {unary<T>,   binary<T>,     binary_scalar_rhs<T>,  binary_scalar_lhs<T>, sum<T>,
          dot<T>,     accumulate<T>, accumulate_product<T>, accumulate_scaled<T>, gemm<T>,
          softmax<T>, unary_alpha<T>};
}

}  // namespace

const KernelTable& table() {
  static const KernelTable kTable{static_cast<Capability>(NPDL_KERNEL_CAPABILITY_ID),
                                  typed<float>(), typed<double>()};
  return kTable;
}

}  // namespace npdl::kernels::NPDL_KERNEL_LEVEL
