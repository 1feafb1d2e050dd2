#pragma once
// npdl's Convolution layer on NCHW inputs.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <variant>

#include "layers/activation.hpp"
#include "layers/initializers.hpp"
#include "layers/layer.hpp"
#include "ops/conv.hpp"

namespace npdl::layers {

using ops::Padding2d;
using ops::Size2;

/// How a Convolution pads its input: "valid" (none; npdl's only mode),
/// "same" (output size ceil(input / stride), the extra zero, when the total
/// is odd, going to the bottom and the right, as in TensorFlow), or zeros
/// given per side (an integer: that many on every side).
class ConvPadding {
 public:
  /// "valid" or "same"; ValueError for another name or a null pointer.
  ConvPadding(const char* mode);         // NOLINT
  ConvPadding(const std::string& mode);  // NOLINT
  ConvPadding(std::nullptr_t) = delete;  // not a mode, not a padding
  /// That many zeros on every side; ValueError below 0 or above 2^63 - 1.
  /// A template, so that the literal 0 (an int, and also a null pointer
  /// constant) takes it as an exact match rather than being ambiguous with
  /// const char*. bool and char are refused at compile time.
  template <class Int, std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool> &&
                                            !std::is_same_v<Int, char>,
                                        int> = 0>
  ConvPadding(Int all) : ConvPadding(every_side(to_int64(all))) {}  // NOLINT
  ConvPadding(Padding2d sides);                                     // NOLINT

  /// The zeros per side for an input of (height, width) `input`.
  Padding2d resolve(Size2 input, Size2 filter, Size2 stride) const;
  std::string describe() const;

 private:
  template <class Int>
  static std::int64_t to_int64(Int all) {
    if constexpr (std::is_unsigned_v<Int>) {
      if (all > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw_too_large(all);
      }
    }
    return static_cast<std::int64_t>(all);
  }
  [[noreturn]] static void throw_too_large(std::uint64_t all);
  static Padding2d every_side(std::int64_t all) { return {all, all, all, all}; }

  enum class Mode { Valid, Same, Explicit } mode_;
  Padding2d sides_;
};

/// y = activation(conv2d(x, W) + b): x is (N, C, H, W), W is
/// (nb_filter, C, fh, fw) and b is (nb_filter).
class Convolution : public Layer, public EndsInActivation {
 public:
  /// npdl's Convolution(nb_filter, filter_size, input_shape=None, stride=1,
  /// init='glorot_uniform', activation='relu'), plus `padding`.
  /// `input_shape` is (C, H, W) without the samples axis, npdl's
  /// (nb_batch, C, H, W) (the batch entry, any value, is not kept: the
  /// layer takes any batch), or empty to take it from the previous layer or
  /// the first input. Throws ValueError for nb_filter, filter sizes or
  /// strides < 1, ShapeError for an input_shape of another rank.
  Convolution(std::int64_t nb_filter, Size2 filter_size, Shape input_shape = {}, Size2 stride = 1,
              initializers::InitSpec init = "glorot_uniform",
              const ActivationSpec& activation = "relu", ConvPadding padding = "valid");

  std::string name() const override { return "Convolution"; }
  Var apply(const Var& input, bool training) override;
  Shape output_shape() const override { return output_shape_; }
  Shape declared_input_shape() const override { return declared_input_shape_; }
  /// npdl's order: {W, b}; grads() is {dW, db}.
  std::vector<ParameterPtr> params() const override { return {W_, b_}; }
  const ActivationKind& final_activation() const override { return activation_; }
  Var apply_pre_activation(const Var& input, bool training) override;

  std::int64_t nb_filter() const { return nb_filter_; }
  Size2 filter_size() const { return filter_size_; }
  Size2 stride() const { return stride_; }
  /// The zeros per side, resolved when the layer was connected.
  const Padding2d& padding() const { return padding_; }
  const ParameterPtr& W() const { return W_; }
  const ParameterPtr& b() const { return b_; }

 protected:
  void build(const Shape& input_shape) override;

 private:
  /// conv2d with the bias, and relu fused into it when `relu` (the same
  /// bits as the activation applied after).
  Var convolve(const Var& input, bool relu);

  std::int64_t nb_filter_;
  Size2 filter_size_, stride_;
  Shape declared_input_shape_;
  initializers::InitSpec init_;
  ActivationKind activation_;
  ConvPadding padding_spec_;
  Padding2d padding_;
  Shape output_shape_;
  ParameterPtr W_, b_;
};

}  // namespace npdl::layers
