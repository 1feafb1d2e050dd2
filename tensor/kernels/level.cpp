// The kernels of one instruction-set level (Note [Kernels per instruction
// set] in kernels.hpp). CMake compiles this file once per level with
//   -DNPDL_KERNEL_LEVEL=level_<name> -DEigen=Eigen_<name> <the level's -m flags>
// so that this level's functions and its Eigen instantiations have names of
// their own. Include nothing here that instantiates templates outside those
// two namespaces (npdl headers, std containers): their weak symbols would be
// shared with other levels.
#include <Eigen/Core>

#include "tensor/kernels/kernels.hpp"

#ifdef __AVX2__
#include <immintrin.h>
#endif

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

// step(v): 1 where v > 0, else 0 (a NaN gives 0).
template <class T>
inline T step_of(T v) {
  return v > T(0) ? T(1) : T(0);
}

// The same over a packet of Eigen's widest vectors at this level: an
// ordered comparison 0 < v (false for a NaN) as an all-ones mask, and-ed
// with 1. Written with Eigen's packet functions because neither way of
// writing the loop vectorises at every level: Eigen 3.4 casts a comparison
// to T one element at a time, and GCC 12 compiles the select above as a
// branch unless the level has mask registers (AVX-512): on AVX2, relu's VJP
// over a CNN's first layer ran one element at a time, taking a mispredicted
// branch at every other element (16% of that CNN's training step).
template <class T>
using Packet = typename Eigen::internal::packet_traits<T>::type;

template <class T>
Packet<T> step_packet(const Packet<T>& v) {
  namespace ei = Eigen::internal;
  return ei::pand(ei::pcmp_lt(ei::pzero(v), v), ei::pset1<Packet<T>>(T(1)));
}

// Stores packet(i) at out + i for every whole packet of [0, n), then
// tail(i), one element at a time, for the rest.
template <class T, class PacketFn, class ScalarFn>
void by_packets(std::int64_t n, T* out, PacketFn&& packet, ScalarFn&& tail) {
  constexpr std::int64_t kLanes = Eigen::internal::packet_traits<T>::size;
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) Eigen::internal::pstoreu(out + i, packet(i));
  for (; i < n; ++i) out[i] = tail(i);
}

template <class T>
void mul_step(const T* x, const T* y, T* out, std::int64_t n) {
  namespace ei = Eigen::internal;
  by_packets<T>(
      n, out,
      [&](std::int64_t i) {
        return ei::pmul(ei::ploadu<Packet<T>>(x + i), step_packet<T>(ei::ploadu<Packet<T>>(y + i)));
      },
      [&](std::int64_t i) { return x[i] * step_of(y[i]); });
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
      by_packets<T>(
          n, outp,
          [&](std::int64_t i) {
            return step_packet<T>(Eigen::internal::ploadu<Packet<T>>(xp + i));
          },
          [&](std::int64_t i) { return step_of(xp[i]); });
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

// Note [Reused GEMM blocks]
// Eigen's product packs its operands into two blocks (kc x mc of a, kc x nc
// of b) that it allocates on every call. They are often over 128 KiB, which
// glibc serves from freshly mapped pages or from the top of its heap, which
// it trims when they are freed; so products could fault their blocks in
// anew every time: a quarter of the MLP's batch-256 training step, once
// tensors stopped going back to glibc (Note [Storage cache]). Each thread keeps
// its blocks here instead, grown to the largest product it has run, and
// hands them to Eigen's GEMM through the blocking object that would
// otherwise allocate them. The blocking sizes and the arithmetic are
// Eigen's own, so results are the same bits as `C.noalias() = A * B`.
// Eigen sizes a block by the cache sizes and, for a tall product, by its
// row count (a 10,000-square float product takes 37 MB of blocks), so a
// thread keeps blocks of up to kKeptBlockBytes together; a product that
// needs more gets blocks of its own, allocated and freed by Eigen as
// before (its arithmetic dwarfs the page faults).
constexpr std::size_t kKeptBlockBytes = std::size_t{16} << 20;

template <class T>
class ThreadBlocks {
 public:
  ThreadBlocks() = default;
  ThreadBlocks(const ThreadBlocks&) = delete;
  ThreadBlocks& operator=(const ThreadBlocks&) = delete;
  ~ThreadBlocks() {
    Eigen::internal::aligned_free(a_);
    Eigen::internal::aligned_free(b_);
  }
  // Blocks of at least `size_a` and `size_b` elements; throws std::bad_alloc.
  void reserve(std::size_t size_a, std::size_t size_b) {
    grow(a_, capacity_a_, size_a);
    grow(b_, capacity_b_, size_b);
  }
  T* a() const { return a_; }
  T* b() const { return b_; }

 private:
  static void grow(T*& block, std::size_t& capacity, std::size_t size) {
    if (size <= capacity) return;
    Eigen::internal::aligned_free(block);
    block = nullptr;
    capacity = 0;
    block = static_cast<T*>(Eigen::internal::aligned_malloc(size * sizeof(T)));
    capacity = size;
  }
  T* a_ = nullptr;
  T* b_ = nullptr;
  std::size_t capacity_a_ = 0, capacity_b_ = 0;
};

// Set when this thread's blocks are destroyed (its exit; for the main
// thread, before static objects whose destructors might still multiply).
thread_local bool thread_blocks_gone = false;

// This thread's blocks, or nullptr once they are destroyed.
template <class T>
ThreadBlocks<T>* thread_blocks() {
  struct Owner {
    ThreadBlocks<T> blocks;
    ~Owner() { thread_blocks_gone = true; }
  };
  if (thread_blocks_gone) return nullptr;
  thread_local Owner owner;
  return &owner.blocks;
}

// Eigen's blocking for a row-major result (the sizes it computes for the
// product), its blocks taken from this thread's ThreadBlocks when they are
// small enough to keep.
template <class T>
class ReusedBlocking
    : public Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic,
                                                  Eigen::Dynamic, Eigen::Dynamic> {
 public:
  ReusedBlocking(std::int64_t m, std::int64_t n, std::int64_t k)
      : ReusedBlocking::gemm_blocking_space(m, n, k, 1, true) {
    const auto size_a = std::size_t(this->m_mc * this->m_kc);
    const auto size_b = std::size_t(this->m_kc * this->m_nc);
    ThreadBlocks<T>* blocks = thread_blocks<T>();
    // Otherwise Eigen allocates the blocks for this product alone.
    if (blocks == nullptr || (size_a + size_b) * sizeof(T) > kKeptBlockBytes) return;
    blocks->reserve(size_a, size_b);
    this->m_blockA = blocks->a();
    this->m_blockB = blocks->b();
  }
  ReusedBlocking(const ReusedBlocking&) = delete;
  ReusedBlocking& operator=(const ReusedBlocking&) = delete;
  // The blocks stay with the thread: the base class must not free them.
  ~ReusedBlocking() {
    this->m_blockA = nullptr;
    this->m_blockB = nullptr;
  }
};

// c += op(a) @ op(b) by Eigen's GEMM on this thread's blocks; a row-major
// operand read transposed is the same memory read column-major.
template <class T, int kOrderA, int kOrderB>
void gemm_on_thread_blocks(std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                           std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc) {
  ReusedBlocking<T> blocking(m, n, k);
  Eigen::internal::general_matrix_matrix_product<Eigen::Index, T, kOrderA, false, T, kOrderB, false,
                                                 Eigen::RowMajor, 1>::run(m, n, k, a, lda, b, ldb,
                                                                          c, 1, ldc, T(1),
                                                                          blocking);
}

template <class T, bool kAccumulate>
void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
          bool trans_a, const T* b, std::int64_t ldb, bool trans_b, T* c, std::int64_t ldc) {
  if (m == 0 || n == 0 || (kAccumulate && k == 0)) return;
  Eigen::Map<Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  // Eigen's own product where it would not use its blocked GEMM: tiny
  // products (computed coefficient by coefficient) and matrix-vector ones.
  if (k == 0 || m == 1 || n == 1 || m + n + k < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) {
    const StridedMat<T> A(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
    const StridedMat<T> B(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
    auto assign = [&](const auto& product) {
      if constexpr (kAccumulate) {
        C.noalias() += product;
      } else {
        C.noalias() = product;
      }
    };
    if (trans_a && trans_b) {
      assign(A.transpose() * B.transpose());
    } else if (trans_a) {
      assign(A.transpose() * B);
    } else if (trans_b) {
      assign(A * B.transpose());
    } else {
      assign(A * B);
    }
    return;
  }
  if (!kAccumulate) C.setZero();
  constexpr int kRow = Eigen::RowMajor, kCol = Eigen::ColMajor;
  if (trans_a && trans_b) {
    gemm_on_thread_blocks<T, kCol, kCol>(m, n, k, a, lda, b, ldb, c, ldc);
  } else if (trans_a) {
    gemm_on_thread_blocks<T, kCol, kRow>(m, n, k, a, lda, b, ldb, c, ldc);
  } else if (trans_b) {
    gemm_on_thread_blocks<T, kRow, kCol>(m, n, k, a, lda, b, ldb, c, ldc);
  } else {
    gemm_on_thread_blocks<T, kRow, kRow>(m, n, k, a, lda, b, ldb, c, ldc);
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

// Max pooling, 2 x 2 windows at stride 2. A window's candidates in
// row-major order sit at offsets 0, 1, w and w + 1 from its top-left
// element; each replaces the best so far when it is larger, or when it is
// a NaN and the best is not. So the first maximum wins ties and the first
// NaN stays, as in tensor/conv_math.cpp's general case (whose bits this
// must equal), and there is no branch on the data.
template <class T>
void max_pool_pairs(const T* top, std::int64_t w, std::int64_t n, std::int32_t index, T* out,
                    std::int32_t* at) {
  const std::int64_t offsets[3] = {1, w, w + 1};
  for (std::int64_t j = 0; j < n; ++j) {
    T best = top[2 * j];
    std::int32_t best_at = index + static_cast<std::int32_t>(2 * j);
    for (const std::int64_t offset : offsets) {
      const T v = top[2 * j + offset];
      const bool take = (v > best) | ((v != v) & (best == best));
      best = take ? v : best;
      best_at = take ? index + static_cast<std::int32_t>(2 * j + offset) : best_at;
    }
    out[j] = best;
    at[j] = best_at;
  }
}

#if defined(__AVX512F__)
// Sixteen windows a step: a row's 32 inputs split into even and odd
// columns by two permutes, the row's tail by masked loads and stores
// (which touch no memory in masked lanes), so short rows (13 windows on a
// CNN's 26 x 26 maps) take one step instead of a scalar loop.
void max_pool_pairs_f32(const float* top, std::int64_t w, std::int64_t n, std::int32_t index,
                        const float* end, float* out, std::int32_t* at) {
  const __m512i twice_lane =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i next_lane = _mm512_add_epi32(twice_lane, _mm512_set1_epi32(1));
  auto lanes = [](std::int64_t count) -> __mmask16 {
    return count >= 16  ? __mmask16(0xFFFF)
           : count <= 0 ? __mmask16(0)
                        : __mmask16((1u << count) - 1);
  };
  for (std::int64_t j = 0; j < n; j += 16) {
    const std::int64_t inputs = 2 * (n - j < 16 ? n - j : 16);
    const __mmask16 low = lanes(inputs), high = lanes(inputs - 16), outputs = lanes(inputs / 2);
    __m512 candidates[4];
    for (int row = 0; row < 2; ++row) {
      const float* from = top + row * w + 2 * j;
      // A masked load cost four times a plain one on the Zen 5 this was
      // measured on, so rows are read whole while they lie in the plane.
      const bool inside = end - from >= 32;
      const __m512 lo = inside ? _mm512_loadu_ps(from) : _mm512_maskz_loadu_ps(low, from);
      const __m512 hi =
          inside ? _mm512_loadu_ps(from + 16) : _mm512_maskz_loadu_ps(high, from + 16);
      candidates[2 * row] = _mm512_permutex2var_ps(lo, twice_lane, hi);
      candidates[2 * row + 1] = _mm512_permutex2var_ps(lo, next_lane, hi);
    }
    const __m512i first_at =
        _mm512_add_epi32(_mm512_set1_epi32(index + static_cast<std::int32_t>(2 * j)), twice_lane);
    const std::int32_t offsets[4] = {0, 1, static_cast<std::int32_t>(w),
                                     static_cast<std::int32_t>(w + 1)};
    __m512 best = candidates[0];
    __m512i best_at = first_at;
    for (int k = 1; k < 4; ++k) {
      const __m512 v = candidates[k];
      const __mmask16 take =
          _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
          (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
      best = _mm512_mask_mov_ps(best, take, v);
      best_at = _mm512_mask_mov_epi32(best_at, take,
                                      _mm512_add_epi32(first_at, _mm512_set1_epi32(offsets[k])));
    }
    _mm512_mask_storeu_ps(out + j, outputs, best);
    _mm512_mask_storeu_epi32(at + j, outputs, best_at);
  }
}
#elif defined(__AVX2__)
// Eight windows a step, as the AVX-512 version above: shuffles split even
// and odd columns, masked loads read the row's tail.
void max_pool_pairs_f32(const float* top, std::int64_t w, std::int64_t n, std::int32_t index,
                        const float* end, float* out, std::int32_t* at) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  auto lanes = [&](std::int64_t count) {
    const int c = count >= 8 ? 8 : count <= 0 ? 0 : static_cast<int>(count);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), lane);
  };
  for (std::int64_t j = 0; j < n; j += 8) {
    const std::int64_t inputs = 2 * (n - j < 8 ? n - j : 8);
    const __m256i low = lanes(inputs), high = lanes(inputs - 8);
    __m256 candidates[4];
    for (int row = 0; row < 2; ++row) {
      const float* from = top + row * w + 2 * j;
      const bool inside = end - from >= 16;
      const __m256 lo = inside ? _mm256_loadu_ps(from) : _mm256_maskload_ps(from, low);
      const __m256 hi = inside ? _mm256_loadu_ps(from + 8) : _mm256_maskload_ps(from + 8, high);
      // Within 128-bit halves, then the halves' 64-bit pairs in order.
      const __m256 even = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
      const __m256 odd = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
      candidates[2 * row] =
          _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0)));
      candidates[2 * row + 1] =
          _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), _MM_SHUFFLE(3, 1, 2, 0)));
    }
    const __m256i first_at = _mm256_add_epi32(
        _mm256_set1_epi32(index + static_cast<std::int32_t>(2 * j)), _mm256_add_epi32(lane, lane));
    const std::int32_t offsets[4] = {0, 1, static_cast<std::int32_t>(w),
                                     static_cast<std::int32_t>(w + 1)};
    __m256 best = candidates[0];
    __m256i best_at = first_at;
    for (int k = 1; k < 4; ++k) {
      const __m256 v = candidates[k];
      const __m256 take = _mm256_or_ps(
          _mm256_cmp_ps(v, best, _CMP_GT_OQ),
          _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
      best = _mm256_blendv_ps(best, v, take);
      const __m256i v_at = _mm256_add_epi32(first_at, _mm256_set1_epi32(offsets[k]));
      best_at = _mm256_castps_si256(
          _mm256_blendv_ps(_mm256_castsi256_ps(best_at), _mm256_castsi256_ps(v_at), take));
    }
    if (n - j >= 8) {
      _mm256_storeu_ps(out + j, best);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(at + j), best_at);
      continue;
    }
    // The row's tail, one element at a time: a masked store is microcoded
    // on AMD's cores before Zen 4, and took a quarter of this kernel's time
    // on a Zen 3 even when only the tails used it.
    alignas(32) float best_lanes[8];
    alignas(32) std::int32_t at_lanes[8];
    _mm256_store_ps(best_lanes, best);
    _mm256_store_si256(reinterpret_cast<__m256i*>(at_lanes), best_at);
    for (std::int64_t i = 0; i < n - j; ++i) {
      out[j + i] = best_lanes[i];
      at[j + i] = at_lanes[i];
    }
  }
}
#endif

template <class T>
void max_pool_2x2(const T* plane, std::int64_t h, std::int64_t w, T* out, std::int32_t* at) {
  const std::int64_t out_w = w / 2;
  for (std::int64_t r = 0; r < h / 2; ++r, out += out_w, at += out_w) {
    const T* top = plane + 2 * r * w;
    const auto index = static_cast<std::int32_t>(2 * r * w);
#ifdef __AVX2__
    if constexpr (sizeof(T) == sizeof(float)) {
      max_pool_pairs_f32(top, w, out_w, index, plane + h * w, out, at);
      continue;
    }
#endif
    max_pool_pairs(top, w, out_w, index, out, at);
  }
}

// im2col's runs (rows of the output, tens of elements each) at the
// strides convolutions use: loops with a constant stride, which the
// compiler vectorises (stride 2: loads split by permutes, sixteen outputs a
// step at AVX-512). Compiled at the baseline with a variable stride, one
// call per row, im2col and col2im were a quarter of a stride-2 3x3
// convolution.
template <class T>
void gather_strided(const T* from, std::int64_t stride, T* to, std::int64_t n) {
  if (stride == 1) {
    for (std::int64_t i = 0; i < n; ++i) to[i] = from[i];
  } else if (stride == 2) {
    for (std::int64_t i = 0; i < n; ++i) to[i] = from[2 * i];
  } else {
    for (std::int64_t i = 0; i < n; ++i) to[i] = from[i * stride];
  }
}

template <class T>
void scatter_add_strided(const T* from, T* to, std::int64_t stride, std::int64_t n) {
  if (stride == 1) {
    for (std::int64_t i = 0; i < n; ++i) to[i] += from[i];
  } else if (stride == 2) {
    for (std::int64_t i = 0; i < n; ++i) to[2 * i] += from[i];
  } else {
    for (std::int64_t i = 0; i < n; ++i) to[i * stride] += from[i];
  }
}

template <class T>
void unroll_rows(const T* from, const StridedRows& rows, T* to) {
  for (std::int64_t r = 0; r < rows.count; ++r, to += rows.width) {
    for (std::int64_t i = 0; i < rows.lo; ++i) to[i] = T(0);
    if (rows.lo < rows.hi) {
      gather_strided(from + r * rows.input_step, rows.stride, to + rows.lo, rows.hi - rows.lo);
    }
    for (std::int64_t i = rows.hi; i < rows.width; ++i) to[i] = T(0);
  }
}

template <class T>
void fold_rows_add(const T* from, const StridedRows& rows, T* to) {
  if (rows.lo == rows.hi) return;
  for (std::int64_t r = 0; r < rows.count; ++r) {
    scatter_add_strided(from + r * rows.width + rows.lo, to + r * rows.input_step, rows.stride,
                        rows.hi - rows.lo);
  }
}

template <class T>
TypedKernels<T> typed() {
  return {
      unary<T>,       binary<T>,       mul_step<T>,   binary_scalar_rhs<T>,  binary_scalar_lhs<T>,
      sum<T>,         dot<T>,          accumulate<T>, accumulate_product<T>, accumulate_scaled<T>,
      gemm<T, false>, gemm<T, true>,   softmax<T>,    unary_alpha<T>,        max_pool_2x2<T>,
      unroll_rows<T>, fold_rows_add<T>};
}

}  // namespace

const KernelTable& table() {
  static const KernelTable kTable{static_cast<Capability>(NPDL_KERNEL_CAPABILITY_ID),
                                  typed<float>(), typed<double>()};
  return kTable;
}

}  // namespace npdl::kernels::NPDL_KERNEL_LEVEL
