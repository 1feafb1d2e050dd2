#include "tensor/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <random>
#include <sstream>

namespace npdl {

std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return "float32";
    case DType::Float64:
      return "float64";
    case DType::Int32:
      return "int32";
    case DType::Int64:
      return "int64";
  }
  return "an unknown dtype (" + std::to_string(static_cast<int>(dtype)) + ")";
}

std::size_t element_size(DType dtype) {
  return dtype == DType::Float32 || dtype == DType::Int32 ? 4 : 8;
}

void check_floating(DType dtype, const char* what) {
  if (!is_floating(dtype)) {
    throw DTypeError(std::string(what) + " expects float32 or float64 values, got " +
                     to_string(dtype) + " (an index tensor takes part in no arithmetic)");
  }
}

namespace {

// v converted to T; to an integer type, truncated toward zero, and a value
// the type cannot hold is a ValueError (a C++ cast would be undefined).
template <class T>
T converted(double v, const char* what) {
  if constexpr (std::is_integral_v<T>) {
    // 2^63 and 2^31 are exact doubles; the largest T is not, for int64.
    const double bound = std::ldexp(1.0, std::numeric_limits<T>::digits);
    if (!(v > -bound - 1 && v < bound)) {
      throw ValueError(std::string(what) + ": the value " + std::to_string(v) +
                       " does not fit " + to_string(dtype_of<T>()));
    }
  }
  return static_cast<T>(v);
}

}  // namespace

Tensor::Tensor(Shape shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  size_ = numel(shape_);  // checks sizes and overflow
  if (size_ > std::numeric_limits<std::int64_t>::max() / std::int64_t(element_size(dtype))) {
    throw ShapeError("shape " + to_string(shape_) + " of " + to_string(dtype) +
                     " needs more than " + "2^63 bytes");
  }
  storage_ = std::make_shared<Storage>(nbytes());
}

void Tensor::throw_undefined() {
  throw ValueError(
      "the tensor is undefined (default-constructed, or a gradient that never reached its "
      "value): expected a tensor with values");
}

std::int64_t Tensor::dim(int axis) const { return shape_[normalize_axis(axis, rank())]; }

Tensor Tensor::full(Shape shape, double value, DType dtype) {
  Tensor t(std::move(shape), dtype);
  t.fill(value);
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype) { return full(std::move(shape), 0.0, dtype); }
Tensor Tensor::ones(Shape shape, DType dtype) { return full(std::move(shape), 1.0, dtype); }
Tensor Tensor::scalar(double value, DType dtype) { return full(Shape{}, value, dtype); }

void Tensor::fill(double value) {
  dispatch_any(dtype_, [&](auto zero) {
    using T = decltype(zero);
    std::fill_n(data<T>(), size_, converted<T>(value, "fill"));
  });
}

Tensor Tensor::from_vector(Shape shape, const std::vector<double>& values, DType dtype) {
  Tensor t(std::move(shape), dtype);
  if (static_cast<std::int64_t>(values.size()) != t.size()) {
    throw ShapeError("shape " + to_string(t.shape()) + " holds " + std::to_string(t.size()) +
                     " elements, got " + std::to_string(values.size()) + " values");
  }
  dispatch_any(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::transform(values.begin(), values.end(), t.data<T>(),
                   [](double v) { return converted<T>(v, "from_vector"); });
  });
  return t;
}

Tensor Tensor::from_indices(Shape shape, const std::vector<std::int64_t>& values) {
  Tensor t(std::move(shape), DType::Int64);
  if (static_cast<std::int64_t>(values.size()) != t.size()) {
    throw ShapeError("shape " + to_string(t.shape()) + " holds " + std::to_string(t.size()) +
                     " elements, got " + std::to_string(values.size()) + " values");
  }
  std::copy(values.begin(), values.end(), t.data<std::int64_t>());
  return t;
}

namespace {
template <class Dist>
Tensor sample(Shape shape, std::uint64_t seed, DType dtype, Dist dist) {
  Tensor t(std::move(shape), dtype);
  std::mt19937_64 rng(seed);
  dispatch(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.size(); ++i) p[i] = static_cast<T>(dist(rng));
  });
  return t;
}
}  // namespace

Tensor Tensor::randn(Shape shape, std::uint64_t seed, DType dtype, double mean, double stddev) {
  return sample(std::move(shape), seed, dtype, std::normal_distribution<double>(mean, stddev));
}

Tensor Tensor::uniform(Shape shape, std::uint64_t seed, DType dtype, double low, double high) {
  return sample(std::move(shape), seed, dtype, std::uniform_real_distribution<double>(low, high));
}

double Tensor::at(std::int64_t flat_index) const {
  if (flat_index < 0 || flat_index >= size_) {
    throw ShapeError("flat index " + std::to_string(flat_index) +
                     " is out of range: expected [0, " + std::to_string(size_) + ")");
  }
  return dispatch_any(dtype_, [&](auto zero) -> double {
    using T = decltype(zero);
    return static_cast<double>(data<T>()[flat_index]);
  });
}

double Tensor::at(std::initializer_list<std::int64_t> index) const {
  if (static_cast<int>(index.size()) != rank()) {
    throw ShapeError("index of " + std::to_string(index.size()) + " entries for a tensor of rank " +
                     std::to_string(rank()));
  }
  std::int64_t flat = 0;
  int axis = 0;
  for (std::int64_t i : index) {
    const std::int64_t n = shape_[axis];
    if (i < -n || i >= n) {
      throw ShapeError("index " + std::to_string(i) + " is out of range for axis " +
                       std::to_string(axis) + " of size " + std::to_string(n));
    }
    flat = flat * n + (i < 0 ? i + n : i);
    ++axis;
  }
  return at(flat);
}

double Tensor::item() const {
  if (size_ != 1) {
    throw ShapeError("item() expects a one-element tensor, got shape " + to_string(shape_));
  }
  return at(0);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<std::size_t>(size_));
  dispatch_any(dtype_, [&](auto zero) {
    using T = decltype(zero);
    std::copy_n(data<T>(), size_, out.begin());
  });
  return out;
}

Tensor Tensor::reshape(Shape shape) const {
  check_defined();
  Shape resolved;
  try {
    resolved = infer_shape(shape, size_);
  } catch (const ShapeError& e) {
    throw ShapeError("cannot reshape a tensor of shape " + to_string(shape_) + ": " + e.what());
  }
  Tensor view = *this;
  view.shape_ = std::move(resolved);
  return view;
}

Tensor Tensor::clone() const {
  check_defined();
  Tensor copy(shape_, dtype_);
  if (size_ > 0) std::memcpy(copy.raw_data(), raw_data(), nbytes());
  return copy;
}

Tensor Tensor::astype(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor out(shape_, dtype);
  dispatch_any(dtype_, [&](auto from) {
    using S = decltype(from);
    dispatch_any(dtype, [&](auto to) {
      using D = decltype(to);
      std::transform(data<S>(), data<S>() + size_, out.data<D>(), [](S v) {
        if constexpr (std::is_integral_v<D> && !std::is_integral_v<S>) {
          return converted<D>(static_cast<double>(v), "astype");
        } else if constexpr (std::is_same_v<D, std::int32_t> && std::is_same_v<S, std::int64_t>) {
          return converted<D>(static_cast<double>(v), "astype");
        } else {
          return static_cast<D>(v);
        }
      });
    });
  });
  return out;
}

namespace {
// Prints axis `axis` of `t` starting at flat offset `offset`, NumPy style,
// showing at most 3 leading and 3 trailing entries of a long axis.
void print_axis(std::ostream& os, const Tensor& t, int axis, std::int64_t offset,
                std::int64_t stride) {
  const std::int64_t n = t.shape()[axis];
  const std::int64_t inner = stride / n;
  os << '[';
  for (std::int64_t i = 0; i < n; ++i) {
    if (n > 8 && i == 3) {
      os << (axis + 1 == t.rank() ? "..., " : "...,\n" + std::string(axis + 1, ' '));
      i = n - 3;
    }
    if (axis + 1 == t.rank()) {
      os << std::setw(10) << std::setprecision(5) << t.at(offset + i);
    } else {
      print_axis(os, t, axis + 1, offset + i * inner, inner);
    }
    if (i + 1 < n) os << (axis + 1 == t.rank() ? ", " : ",\n" + std::string(axis + 1, ' '));
  }
  os << ']';
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  os << "Tensor(";
  if (t.rank() == 0) {
    os << t.at(0);
  } else if (t.size() == 0) {
    os << "[]";
  } else {
    print_axis(os, t, 0, 0, t.size());
  }
  return os << ", shape=" << to_string(t.shape()) << ", dtype=" << to_string(t.dtype()) << ')';
}

std::string to_string(const Tensor& t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* what) {
  if (a.dtype() != b.dtype()) {
    throw DTypeError(std::string(what) + " expects operands of one dtype, got " +
                     to_string(a.dtype()) + " and " + to_string(b.dtype()));
  }
}

void check_same_shape(const Shape& expected, const Shape& given, const std::string& what) {
  if (expected != given) {
    throw ShapeError(what + ": expected shape " + to_string(expected) + ", got " +
                     to_string(given));
  }
}

}  // namespace npdl
