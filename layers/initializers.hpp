#pragma once
// npdl's initialisers, by name (snake_case or npdl's CamelCase) or as
// objects. They draw from the global generator (npdl::set_seed).
//
// Fans follow npdl's decompose_size: a (fan_in, fan_out) matrix for rank 2;
// for rank 4 (conv kernels, (out, in, h, w)) fan_in = in*h*w and
// fan_out = out*h*w; otherwise both are sqrt(size).
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl::initializers {

class Initializer {
 public:
  virtual ~Initializer() = default;
  virtual Tensor operator()(const Shape& shape, DType dtype = DType::Float32) const = 0;
  virtual std::string name() const = 0;
};
using InitializerPtr = std::shared_ptr<const Initializer>;

struct Fans {
  double in, out;
};
Fans decompose_size(const Shape& shape);

class Zero : public Initializer {
 public:
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "zero"; }
};
class One : public Initializer {
 public:
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "one"; }
};
/// U(-scale, scale).
class Uniform : public Initializer {
 public:
  explicit Uniform(double scale = 0.05) : scale_(scale) {}
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "uniform"; }

 private:
  double scale_;
};
/// N(mean, std^2).
class Normal : public Initializer {
 public:
  explicit Normal(double std = 0.01, double mean = 0.0) : std_(std), mean_(mean) {}
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "normal"; }

 private:
  double std_, mean_;
};
/// U(-sqrt(3 / fan_in), sqrt(3 / fan_in)).
class LecunUniform : public Initializer {
 public:
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "lecun_uniform"; }
};
/// U(-sqrt(6 / (fan_in + fan_out)), +...).
class GlorotUniform : public Initializer {
 public:
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "glorot_uniform"; }
};
/// N(0, 2 / (fan_in + fan_out)).
class GlorotNormal : public Initializer {
 public:
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "glorot_normal"; }
};
/// N(0, 2 / fan_in).
class HeNormal : public Initializer {
 public:
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "he_normal"; }
};
/// U(-sqrt(6 / fan_in), sqrt(6 / fan_in)).
class HeUniform : public Initializer {
 public:
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "he_uniform"; }
};
/// gain * an orthogonal matrix (from the SVD of a standard normal one),
/// reshaped to `shape` with the first axis as rows.
class Orthogonal : public Initializer {
 public:
  explicit Orthogonal(double gain = 1.0) : gain_(gain) {}
  /// npdl's Orthogonal(gain='relu'): the gain sqrt(2) that keeps a relu
  /// layer's variance; ValueError for any other name.
  explicit Orthogonal(const std::string& gain);
  double gain() const { return gain_; }
  Tensor operator()(const Shape& shape, DType dtype) const override;
  std::string name() const override { return "orthogonal"; }

 private:
  double gain_;
};

/// The initialiser of a name; throws ValueError listing the valid names.
InitializerPtr get(const std::string& name);
/// Every accepted name (snake_case and CamelCase).
const std::vector<std::string>& names();

/// A function used as an initialiser.
using InitFunction = std::function<Tensor(const Shape&, DType)>;

/// What a layer accepts for an initialiser: a name, an object or a function.
class InitSpec {
 public:
  InitSpec(const char* name) : InitSpec(std::string(name)) {}
  InitSpec(const std::string& name) : init_(get(name)) {}
  InitSpec(InitializerPtr init);
  template <class I, class = std::enable_if_t<std::is_base_of_v<Initializer, I>>>
  InitSpec(std::shared_ptr<I> init) : InitSpec(InitializerPtr(std::move(init))) {}
  InitSpec(InitFunction fn);
  Tensor operator()(const Shape& shape, DType dtype) const { return (*init_)(shape, dtype); }
  const Initializer& initializer() const { return *init_; }

 private:
  InitializerPtr init_;
};

}  // namespace npdl::initializers
