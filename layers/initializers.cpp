#include "layers/initializers.hpp"

#include <Eigen/SVD>
#include <cmath>
#include <map>

#include "layers/registry.hpp"
#include "tensor/random.hpp"

namespace npdl::initializers {
namespace {

Tensor uniform(const Shape& shape, DType dtype, double scale) {
  return Tensor::uniform(shape, next_seed(), dtype, -scale, scale);
}

Tensor normal(const Shape& shape, DType dtype, double std, double mean = 0.0) {
  return Tensor::randn(shape, next_seed(), dtype, mean, std);
}

class FunctionInitializer : public Initializer {
 public:
  explicit FunctionInitializer(InitFunction fn) : fn_(std::move(fn)) {}
  Tensor operator()(const Shape& shape, DType dtype) const override {
    Tensor t = fn_(shape, dtype);
    if (t.shape() != shape) {
      throw ShapeError("initialiser function returned shape " + to_string(t.shape()) +
                       ", expected " + to_string(shape));
    }
    return t.dtype() == dtype ? t : t.astype(dtype);
  }
  std::string name() const override { return "function"; }

 private:
  InitFunction fn_;
};

using Factory = std::function<InitializerPtr()>;

const layers::Registry<Factory>& registry() {
  static const layers::Registry<Factory> r = [] {
    layers::Registry<Factory> m("initialiser");
    m.add({"zero", "Zero"}, [] { return std::make_shared<Zero>(); });
    m.add({"one", "One"}, [] { return std::make_shared<One>(); });
    m.add({"uniform", "Uniform"}, [] { return std::make_shared<Uniform>(); });
    m.add({"normal", "Normal"}, [] { return std::make_shared<Normal>(); });
    m.add({"lecun_uniform", "LecunUniform"}, [] { return std::make_shared<LecunUniform>(); });
    m.add({"glorot_uniform", "GlorotUniform"}, [] { return std::make_shared<GlorotUniform>(); });
    m.add({"glorot_normal", "GlorotNormal"}, [] { return std::make_shared<GlorotNormal>(); });
    m.add({"he_normal", "HeNormal"}, [] { return std::make_shared<HeNormal>(); });
    m.add({"he_uniform", "HeUniform"}, [] { return std::make_shared<HeUniform>(); });
    m.add({"orthogonal", "Orthogonal"}, [] { return std::make_shared<Orthogonal>(); });
    return m;
  }();
  return r;
}

}  // namespace

Fans decompose_size(const Shape& shape) {
  if (shape.size() == 2) return {double(shape[0]), double(shape[1])};
  if (shape.size() == 4) {
    const double receptive = double(shape[2] * shape[3]);
    return {double(shape[1]) * receptive, double(shape[0]) * receptive};
  }
  const double s = std::sqrt(double(numel(shape)));
  return {s, s};
}

Tensor Zero::operator()(const Shape& shape, DType dtype) const {
  return Tensor::zeros(shape, dtype);
}
Tensor One::operator()(const Shape& shape, DType dtype) const { return Tensor::ones(shape, dtype); }
Tensor Uniform::operator()(const Shape& shape, DType dtype) const {
  return uniform(shape, dtype, scale_);
}
Tensor Normal::operator()(const Shape& shape, DType dtype) const {
  return normal(shape, dtype, std_, mean_);
}
Tensor LecunUniform::operator()(const Shape& shape, DType dtype) const {
  return uniform(shape, dtype, std::sqrt(3.0 / decompose_size(shape).in));
}
Tensor GlorotUniform::operator()(const Shape& shape, DType dtype) const {
  const Fans f = decompose_size(shape);
  return uniform(shape, dtype, std::sqrt(6.0 / (f.in + f.out)));
}
Tensor GlorotNormal::operator()(const Shape& shape, DType dtype) const {
  const Fans f = decompose_size(shape);
  return normal(shape, dtype, std::sqrt(2.0 / (f.in + f.out)));
}
Tensor HeNormal::operator()(const Shape& shape, DType dtype) const {
  return normal(shape, dtype, std::sqrt(2.0 / decompose_size(shape).in));
}
Tensor HeUniform::operator()(const Shape& shape, DType dtype) const {
  return uniform(shape, dtype, std::sqrt(6.0 / decompose_size(shape).in));
}

Orthogonal::Orthogonal(const std::string& gain) : gain_(std::sqrt(2.0)) {
  if (gain != "relu") {
    throw ValueError("Orthogonal: gain must be a number or 'relu', got '" + gain + "'");
  }
}

Tensor Orthogonal::operator()(const Shape& shape, DType dtype) const {
  if (shape.size() < 2) {
    throw ShapeError("orthogonal initialiser expects a shape of rank >= 2, got " +
                     to_string(shape));
  }
  if (numel(shape) == 0) return Tensor::zeros(shape, dtype);  // nothing to make orthogonal
  const std::int64_t rows = shape[0], cols = numel(shape) / shape[0];
  const Tensor a = normal({rows, cols}, DType::Float64, 1.0);
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const Mat> A(a.data<double>(), rows, cols);
  Eigen::BDCSVD<Mat> svd(A, Eigen::ComputeThinU | Eigen::ComputeThinV);
  // As npdl: take whichever of U, V has the shape of A.
  Mat q = rows >= cols ? Mat(svd.matrixU()) : Mat(svd.matrixV().transpose());
  q *= gain_;
  Tensor out(shape, DType::Float64);
  Eigen::Map<Mat>(out.data<double>(), rows, cols) = q;
  return dtype == DType::Float64 ? out : out.astype(dtype);
}

InitializerPtr get(const std::string& name) { return registry().get(name)(); }

const std::vector<std::string>& names() { return registry().names(); }

InitSpec::InitSpec(InitializerPtr init) : init_(std::move(init)) {
  if (!init_) throw ValueError("initialiser is null; expected an initialiser object");
}

InitSpec::InitSpec(InitFunction fn) {
  if (!fn) throw ValueError("initialiser function is empty; expected a callable");
  init_ = std::make_shared<FunctionInitializer>(std::move(fn));
}

}  // namespace npdl::initializers
