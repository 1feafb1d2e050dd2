#pragma once
// Note [Kernels per instruction set]
// The hot loops of tensor math (elementwise maps, row reductions, matrix
// products, softmax, 2x2 max pooling, im2col's rows and their adjoint) are compiled once per
// instruction-set level from one source, level.cpp: `default` (the x86-64
// baseline, SSE2), `avx2` (AVX2 + FMA) and `avx512` (AVX-512 F/DQ/BW/VL).
// One table of function pointers is chosen at start-up from what the CPU
// supports, or from the environment variable
// NPDL_CPU_CAPABILITY=default|avx2|avx512, so that a library built without
// -march flags runs on any x86-64 and still uses the CPU's widest vectors.
// Callers (tensor/tensor_math.cpp, tensor/conv_math.cpp) use
// `kernels::active()` or `kernels_for<T>()` and never name a level.
// Batch norm's fused kernels (layers/batch_norm/detail/level.cpp), the
// optimisers' updates (model/detail/optimizer_level.cpp) and the Winograd
// convolution's transforms (tensor/detail/winograd_level.cpp) are compiled
// per level the same way, each into a table of its own, chosen with the
// same level (tensor/kernels/per_level.hpp); CMake's npdl_compile_per_level
// compiles all four sources.
//
// Every level lives in its own namespace, and so does its copy of Eigen
// (level.cpp is compiled with -DEigen=Eigen_<level>): templates instantiated
// in a TU compiled with -mavx512f would otherwise share their weak symbols
// with the baseline instantiations of the same templates, and the linker
// would keep one copy of each, AVX-512 or not, for every caller.
// tests/kernel_symbols.sh checks that no level of any per-level source
// defines a weak symbol outside its namespaces.
//
// The functions take raw pointers and element counts only: nothing that
// could instantiate an npdl or standard-library template inside a level.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace npdl::kernels {

enum class Capability : int { Default = 0, Avx2 = 1, Avx512 = 2 };

enum class UnaryOp : int { Neg, Square, Sqrt, Rsqrt, Exp, Log, Relu, Sigmoid, Tanh, Step };
constexpr int kUnaryOpCount = static_cast<int>(UnaryOp::Step) + 1;
/// "neg", "square", ... "step": the names catalogue entries use.
std::string to_string(UnaryOp op);
/// The op named `name`, or none.
std::optional<UnaryOp> parse_unary_op(std::string_view name);
enum class BinaryOp : int { Add, Sub, Mul, Div };
/// Activations with a parameter alpha: leaky_relu (x if x > 0, else alpha x)
/// and elu (x if x > 0, else alpha (exp(x) - 1)).
enum class AlphaOp : int { LeakyRelu, Elu };

/// Rows of im2col's unrolled input (Note [Convolution as matrix products]
/// in tensor/conv_math.cpp): `count` rows of `width` outputs, of which
/// [lo, hi) read the input, `stride` apart within a row and `input_step`
/// apart from one row to the next; the others are padding.
struct StridedRows {
  std::int64_t count, width, lo, hi, stride, input_step;
  /// whether any entry reads the input (else the rows are all padding)
  bool reads() const { return count > 0 && lo < hi; }
};

/// One dtype's kernels. `n` counts elements; outputs may alias inputs
/// exactly (out == x), never partially.
template <class T>
struct TypedKernels {
  /// out[i] = op(x[i])
  void (*unary)(UnaryOp op, const T* x, T* out, std::int64_t n);
  /// out[i] = op(x[i], y[i])
  void (*binary)(BinaryOp op, const T* x, const T* y, T* out, std::int64_t n);
  /// out[i] = x[i] * step(y[i]), step(v) = 1 where v > 0, else 0: relu's
  /// VJP in one pass, with the bits of a product by step's tensor
  void (*mul_step)(const T* x, const T* y, T* out, std::int64_t n);
  /// out[i] = op(x[i], s)
  void (*binary_scalar_rhs)(BinaryOp op, const T* x, T s, T* out, std::int64_t n);
  /// out[i] = op(s, y[i])
  void (*binary_scalar_lhs)(BinaryOp op, T s, const T* y, T* out, std::int64_t n);
  /// sum of x[0..n), in T (callers keep n short and accumulate in double)
  T (*sum)(const T* x, std::int64_t n);
  /// sum of x[i] * y[i], in T
  T (*dot)(const T* x, const T* y, std::int64_t n);
  /// acc[i] += double(x[i])
  void (*accumulate)(double* acc, const T* x, std::int64_t n);
  /// acc[i] += double(x[i] * y[i])
  void (*accumulate_product)(double* acc, const T* x, const T* y, std::int64_t n);
  /// acc[i] += double(x[i] * s)
  void (*accumulate_scaled)(double* acc, const T* x, T s, std::int64_t n);
  /// c = op(a) @ op(b), BLAS-style: op(a) is m x k, op(b) is k x n, c is
  /// m x n; every matrix is row-major with its rows `ld*` elements apart
  /// (so a block of a larger matrix can be passed). a is stored (m, k), or
  /// (k, m) when trans_a; b is stored (k, n), or (n, k) when trans_b.
  void (*gemm)(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
               bool trans_a, const T* b, std::int64_t ldb, bool trans_b, T* c, std::int64_t ldc);
  /// c += op(a) @ op(b), otherwise as gemm: the same blocks and kernels,
  /// so a sum of products accumulated in c needs no buffer for each term.
  void (*gemm_add)(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
                   bool trans_a, const T* b, std::int64_t ldb, bool trans_b, T* c,
                   std::int64_t ldc);
  /// Softmax (or log-softmax) over the middle axis of x viewed as
  /// (outer, n, inner), row-major.
  void (*softmax)(const T* x, T* out, std::int64_t outer, std::int64_t n, std::int64_t inner,
                  bool log);
  /// out[i] = op(x[i]) with parameter alpha
  void (*unary_alpha)(AlphaOp op, const T* x, T alpha, T* out, std::int64_t n);
  /// Max pooling of one plane (h rows of w, row-major) with 2 x 2 windows
  /// at stride 2, the common case: out is (h / 2, w / 2). Each output is the
  /// window's first maximum in row-major order, a NaN winning over numbers
  /// and the first NaN staying; at[o] is its index in the plane.
  void (*max_pool_2x2)(const T* plane, std::int64_t h, std::int64_t w, T* out, std::int32_t* at);
  /// im2col's runs over `rows.count` output rows: row r of `to` (width
  /// entries, contiguous rows) gets from[r * rows.input_step + i * rows.stride]
  /// at lo + i for i < hi - lo, and zeros elsewhere; `from` is the input
  /// element of row 0's entry lo (unread when lo == hi)
  void (*unroll_rows)(const T* from, const StridedRows& rows, T* to);
  /// its adjoint, col2im's adds: to[r * rows.input_step + i * rows.stride]
  /// += from[r * width + lo + i]; `to` is the input element of row 0's entry lo
  void (*fold_rows_add)(const T* from, const StridedRows& rows, T* to);
};

struct KernelTable {
  Capability capability;
  TypedKernels<float> f32;
  TypedKernels<double> f64;
};

/// The table chosen at start-up (NPDL_CPU_CAPABILITY, else the CPU's best).
/// Throws ValueError on the first call when NPDL_CPU_CAPABILITY names an
/// unknown level or one this CPU cannot run.
const KernelTable& active();

/// This dtype's kernels at the level chosen at start-up.
template <class T>
const TypedKernels<T>& kernels_for() {
  if constexpr (std::is_same_v<T, float>) {
    return active().f32;
  } else {
    return active().f64;
  }
}

/// The level NPDL_CPU_CAPABILITY=`requested` selects: the CPU's best when
/// `requested` is null or empty. Throws ValueError for an unknown name or a
/// level this CPU cannot run.
Capability choose_capability(const char* requested);

/// The table of one level; throws ValueError when this CPU cannot run it.
/// For tests and benchmarks that compare levels.
const KernelTable& table_for(Capability level);

/// The levels this CPU can run, `default` first.
std::vector<Capability> supported_capabilities();

/// "default", "avx2", "avx512".
std::string to_string(Capability level);
/// Parses a level's name; throws ValueError naming the accepted names.
Capability parse_capability(const std::string& name);

}  // namespace npdl::kernels
