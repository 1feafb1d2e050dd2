#pragma once
// A dense, contiguous, row-major tensor of float32 or float64, or of int32
// or int64 for indices (which take part in no arithmetic and get no
// gradient: numeric ops refuse them with a DTypeError).
//
// Storage is shared: copying a Tensor or reshaping it shares the buffer (as
// NumPy views do); `clone()` copies. Kernels see one contiguous buffer, so
// they can run as Eigen array expressions without stride arithmetic.
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/error.hpp"
#include "tensor/shape.hpp"

namespace npdl {

enum class DType { Float32, Float64, Int32, Int64 };

std::string to_string(DType dtype);
std::size_t element_size(DType dtype);
/// float32 or float64: a dtype arithmetic and gradients work in.
constexpr bool is_floating(DType dtype) {
  return dtype == DType::Float32 || dtype == DType::Float64;
}

template <class T>
constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>,
                "npdl tensors hold float, double, int32 or int64");
  if constexpr (std::is_same_v<T, float>) return DType::Float32;
  if constexpr (std::is_same_v<T, double>) return DType::Float64;
  if constexpr (std::is_same_v<T, std::int32_t>) return DType::Int32;
  return DType::Int64;
}

/// Throws DTypeError naming `what` unless `dtype` is float32 or float64.
void check_floating(DType dtype, const char* what);

/// Calls `fn(T{})` with T = float or double according to `dtype`; throws
/// DTypeError for an integer dtype (numeric kernels take floats only).
template <class Fn>
decltype(auto) dispatch(DType dtype, Fn&& fn) {
  if (dtype == DType::Float32) return fn(float{});
  check_floating(dtype, "a numeric operation");
  return fn(double{});
}

/// Calls `fn(T{})` with T the element type of any dtype (copies, conversions).
template <class Fn>
decltype(auto) dispatch_any(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::Float32:
      return fn(float{});
    case DType::Int32:
      return fn(std::int32_t{});
    case DType::Int64:
      return fn(std::int64_t{});
    case DType::Float64:
      break;
  }
  return fn(double{});
}

/// An aligned buffer, recycled through a size-keyed cache (see storage.cpp).
class Storage {
 public:
  explicit Storage(std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_;
  std::size_t bytes_;
};

class Tensor {
 public:
  /// An undefined tensor (no storage); `defined()` is false.
  Tensor() = default;
  /// An uninitialised tensor of the given shape.
  Tensor(Shape shape, DType dtype);

  static Tensor empty(Shape shape, DType dtype = DType::Float32) {
    return {std::move(shape), dtype};
  }
  static Tensor zeros(Shape shape, DType dtype = DType::Float32);
  static Tensor ones(Shape shape, DType dtype = DType::Float32);
  static Tensor full(Shape shape, double value, DType dtype = DType::Float32);
  static Tensor scalar(double value, DType dtype = DType::Float32);
  /// Row-major values; throws ShapeError when their count does not fit.
  static Tensor from_vector(Shape shape, const std::vector<double>& values,
                            DType dtype = DType::Float32);
  /// Indices (or any integers), row-major, as int64.
  static Tensor from_indices(Shape shape, const std::vector<std::int64_t>& values);
  /// Seeded N(mean, stddev) samples (std::mt19937_64); floating dtypes only.
  static Tensor randn(Shape shape, std::uint64_t seed, DType dtype = DType::Float32,
                      double mean = 0.0, double stddev = 1.0);
  /// Seeded U[low, high) samples (std::mt19937_64).
  static Tensor uniform(Shape shape, std::uint64_t seed, DType dtype = DType::Float32,
                        double low = 0.0, double high = 1.0);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t size() const { return size_; }
  std::int64_t dim(int axis) const;
  DType dtype() const { return dtype_; }
  std::size_t nbytes() const { return static_cast<std::size_t>(size_) * element_size(dtype_); }

  /// The values; throws ValueError for an undefined tensor.
  template <class T>
  T* data() {
    check_defined();
    check_dtype<T>();
    return static_cast<T*>(storage_->data());
  }
  template <class T>
  const T* data() const {
    check_defined();
    check_dtype<T>();
    return static_cast<const T*>(storage_->data());
  }
  void* raw_data() const { return storage_ ? storage_->data() : nullptr; }

  /// Element at a flat row-major index, as double.
  double at(std::int64_t flat_index) const;
  /// Element at a multi-index (one entry per axis, negative counts from the end).
  double at(std::initializer_list<std::int64_t> index) const;
  /// The value of a one-element tensor.
  double item() const;
  /// All elements, row-major, as doubles.
  std::vector<double> to_vector() const;

  /// A view with another shape of the same size (shares storage). One size
  /// may be -1: it is inferred from the others.
  Tensor reshape(Shape shape) const;
  Tensor clone() const;
  /// A copy in `dtype`. To an integer dtype, values are truncated toward
  /// zero; a NaN, an infinity or a value outside the integer type's range is
  /// a ValueError naming it.
  Tensor astype(DType dtype) const;
  /// Fills in place.
  void fill(double value);
  /// Throws ValueError when the tensor is undefined.
  void check_defined() const {
    if (storage_ == nullptr) throw_undefined();
  }
  /// True when no other Tensor shares this buffer (it may be updated in place).
  bool unique() const { return storage_.use_count() == 1; }
  bool same_storage(const Tensor& other) const { return storage_ == other.storage_; }

 private:
  [[noreturn]] static void throw_undefined();
  template <class T>
  void check_dtype() const {
    if (dtype_of<T>() != dtype_) {
      throw DTypeError("tensor holds " + to_string(dtype_) + ", accessed as " +
                       to_string(dtype_of<T>()));
    }
  }

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  std::int64_t size_ = 0;
  DType dtype_ = DType::Float32;
};

/// Readable printing, NumPy-like, eliding the middle of long axes.
std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::string to_string(const Tensor& t);

/// Throws DTypeError when the dtypes differ.
void check_same_dtype(const Tensor& a, const Tensor& b, const char* what);
/// Throws ShapeError naming `what` when shapes differ.
void check_same_shape(const Shape& expected, const Shape& given, const std::string& what);

}  // namespace npdl
