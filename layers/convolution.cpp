#include "layers/convolution.hpp"

#include <limits>
#include <optional>

#include "ops/conv.hpp"
#include "ops/ops.hpp"

namespace npdl::layers {
namespace {

std::string pair_text(Size2 s) {
  return "(" + std::to_string(s.h) + ", " + std::to_string(s.w) + ")";
}

// "same" padding along one axis: the total that makes the output
// ceil(input / stride) long, split with the odd zero after. Written so that
// nothing overflows for sizes up to 2^63 - 1: (out - 1) * stride <= input - 1,
// so total <= filter - 1. The padded size input + total = (out - 1) * stride
// + filter may not fit: nullopt then.
std::optional<std::pair<std::int64_t, std::int64_t>> same_padding(std::int64_t input,
                                                                  std::int64_t filter,
                                                                  std::int64_t stride) {
  const std::int64_t out = input == 0 ? 0 : (input - 1) / stride + 1;
  const std::int64_t total = std::max<std::int64_t>((out - 1) * stride - input + filter, 0);
  std::int64_t padded = 0;
  if (__builtin_add_overflow(input, total, &padded)) return std::nullopt;
  return std::pair{total / 2, total - total / 2};
}

Padding2d same_padding(Size2 input, Size2 filter, Size2 stride) {
  if (input.h < 0 || input.w < 0 || filter.h < 1 || filter.w < 1 || stride.h < 1 || stride.w < 1) {
    throw ValueError(
        "Convolution: 'same' padding expects an input of sizes >= 0 and filter_size "
        "and stride >= 1, got an input of " +
        pair_text(input) + ", filter_size " + pair_text(filter) + " and stride " +
        pair_text(stride));
  }
  const auto rows = same_padding(input.h, filter.h, stride.h);
  const auto columns = same_padding(input.w, filter.w, stride.w);
  if (!rows || !columns) {
    throw ShapeError("Convolution: 'same' padding with filter_size " + pair_text(filter) +
                     " and stride " + pair_text(stride) + " on an input of " + pair_text(input) +
                     ": expected a padded " + (rows ? "width" : "height") +
                     " (ceil(input / stride) - 1) * stride + filter_size of at most " +
                     std::to_string(std::numeric_limits<std::int64_t>::max()) +
                     ", got more (the filter is too large)");
  }
  return {rows->first, rows->second, columns->first, columns->second};
}

void count_or_throw(const Shape& shape, const char* role) {
  try {
    numel(shape);
  } catch (const ShapeError& e) {
    throw ShapeError("Convolution: " + std::string(role) + ": " + e.what());
  }
}

void check_sample_shape(const Shape& shape, const std::string& who) {
  if (shape.size() != 3) {
    throw ShapeError(who + " expects samples of shape (channels, height, width), got " +
                     to_string(shape));
  }
}

// npdl's 4-entry input_shape (nb_batch, C, H, W) names the batch size
// first (often None); the layer takes any batch, so only (C, H, W) is kept.
Shape without_batch(Shape shape) {
  if (shape.size() == 4) shape.erase(shape.begin());
  return shape;
}

}  // namespace

ConvPadding::ConvPadding(const char* mode)
    : ConvPadding(mode != nullptr
                      ? std::string(mode)
                      : throw ValueError("Convolution padding must be 'valid', 'same' or zeros per "
                                         "side, got a null pointer")) {}

void ConvPadding::throw_too_large(std::uint64_t all) {
  throw ValueError("Convolution padding must be at most " +
                   std::to_string(std::numeric_limits<std::int64_t>::max()) + " per side, got " +
                   std::to_string(all));
}

ConvPadding::ConvPadding(const std::string& mode) {
  if (mode == "valid") {
    mode_ = Mode::Valid;
  } else if (mode == "same") {
    mode_ = Mode::Same;
  } else {
    throw ValueError("Convolution padding must be 'valid', 'same' or zeros per side, got '" + mode +
                     "'");
  }
}

ConvPadding::ConvPadding(Padding2d sides) : mode_(Mode::Explicit), sides_(sides) {
  if (sides.top < 0 || sides.bottom < 0 || sides.left < 0 || sides.right < 0) {
    throw ValueError("Convolution padding must be >= 0 on every side, got " + describe());
  }
}

Padding2d ConvPadding::resolve(Size2 input, Size2 filter, Size2 stride) const {
  switch (mode_) {
    case Mode::Valid:
      return {};
    case Mode::Same:
      return same_padding(input, filter, stride);
    case Mode::Explicit:
      break;
  }
  return sides_;
}

std::string ConvPadding::describe() const {
  if (mode_ == Mode::Valid) return "valid";
  if (mode_ == Mode::Same) return "same";
  return "(top " + std::to_string(sides_.top) + ", bottom " + std::to_string(sides_.bottom) +
         ", left " + std::to_string(sides_.left) + ", right " + std::to_string(sides_.right) + ")";
}

Convolution::Convolution(std::int64_t nb_filter, Size2 filter_size, Shape input_shape, Size2 stride,
                         initializers::InitSpec init, const ActivationSpec& activation,
                         ConvPadding padding)
    : nb_filter_(nb_filter),
      filter_size_(filter_size),
      stride_(stride),
      declared_input_shape_(without_batch(std::move(input_shape))),
      init_(std::move(init)),
      activation_(activation.kind()),
      padding_spec_(padding) {
  if (nb_filter < 1) {
    throw ValueError("Convolution: nb_filter must be at least 1, got " + std::to_string(nb_filter));
  }
  if (filter_size.h < 1 || filter_size.w < 1) {
    throw ValueError("Convolution: filter_size must be >= 1, got " + pair_text(filter_size));
  }
  if (stride.h < 1 || stride.w < 1) {
    throw ValueError("Convolution: stride must be >= 1, got " + pair_text(stride));
  }
  if (!declared_input_shape_.empty()) check_sample_shape(declared_input_shape_, name());
}

void Convolution::build(const Shape& input_shape) {
  check_sample_shape(input_shape, name());
  if (!declared_input_shape_.empty() && input_shape != declared_input_shape_) {
    throw ShapeError("Convolution was declared with input_shape " +
                     to_string(declared_input_shape_) + ", got samples of shape " +
                     to_string(input_shape));
  }
  const Size2 plane{input_shape[1], input_shape[2]};
  const Padding2d padding = padding_spec_.resolve(plane, filter_size_, stride_);
  // Throws (filter larger than the padded input) before any state changes.
  const Size2 out = math::window_output_size(plane, filter_size_, stride_, padding, "Convolution");
  const Shape w_shape{nb_filter_, input_shape[0], filter_size_.h, filter_size_.w};
  // The initializers multiply the filters' sizes, and conv2d counts each
  // sample's receptive fields and output: refused here, before any state
  // changes, rather than by a forward that would leave the layer built.
  count_or_throw(w_shape, "the filters (nb_filter, C, fh, fw)");
  count_or_throw({input_shape[0], filter_size_.h, filter_size_.w, out.h, out.w},
                 "one sample's receptive fields (C, fh, fw, OH, OW)");
  count_or_throw({nb_filter_, out.h, out.w}, "one sample's output (nb_filter, OH, OW)");
  // Weights first, then the bias: the order in which they draw from the
  // global generator is part of a seeded run.
  ParameterPtr W = make_parameter(init_(w_shape, DType::Float32), "W");
  ParameterPtr b = make_parameter(Tensor::zeros({nb_filter_}, DType::Float32), "b");
  W->grad = Tensor::zeros(W->value.shape(), DType::Float32);
  b->grad = Tensor::zeros(b->value.shape(), DType::Float32);
  W_ = std::move(W);
  b_ = std::move(b);
  padding_ = padding;
  output_shape_ = {nb_filter_, out.h, out.w};
}

Var Convolution::convolve(const Var& input, bool relu) {
  ensure_connected(input.shape());
  match_dtype(input.dtype());
  Graph* graph = input.graph();
  const Var W = graph != nullptr ? graph->param(W_) : Var(W_->value);
  const Var b = graph != nullptr ? graph->param(b_) : Var(b_->value);
  Var y = relu ? ops::conv2d_relu(input, W, b, stride_, padding_)
               : ops::conv2d(input, W, b, stride_, padding_);
  fix_dtype();
  return y;
}

Var Convolution::apply_pre_activation(const Var& input, bool /*training*/) {
  std::optional<Graph::CompositeScope> scope;
  if (input.graph() != nullptr) scope.emplace(*input.graph(), name());
  return convolve(input, /*relu=*/false);
}

Var Convolution::apply(const Var& input, bool /*training*/) {
  std::optional<Graph::CompositeScope> scope;
  if (input.graph() != nullptr) scope.emplace(*input.graph(), name());
  // relu, the common case, is computed with the convolution while each
  // sample's output is in cache (ops::conv2d_relu): no pass of its own over
  // the output, and a graph node fewer.
  if (activation_.name == "relu") return convolve(input, /*relu=*/true);
  return activate(activation_, convolve(input, /*relu=*/false));
}

}  // namespace npdl::layers
