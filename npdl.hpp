#pragma once
// The whole public API of npdl.
#include "autodiff/error.hpp"
#include "autodiff/export.hpp"
#include "autodiff/gradcheck.hpp"
#include "autodiff/graph.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/random.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/tensor_math.hpp"
#include "layers/batch_normal.hpp"
#include "layers/initializers.hpp"
#include "layers/layer.hpp"
#include "ops/ops.hpp"
