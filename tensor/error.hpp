#pragma once
// Typed errors of npdl. Every message names what was expected and what was
// given, so that a user can fix the call without reading the library.
#include <stdexcept>
#include <string>

namespace npdl {

/// Base of every error npdl throws on bad input.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Shapes that do not fit: broadcasting, matmul inner sizes, reshape sizes,
/// an upstream gradient or a parameter of the wrong shape.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// An axis outside [-rank, rank), or repeated.
class AxisError : public Error {
 public:
  using Error::Error;
};

/// An index outside the range it indexes (a row of an embedding table, a
/// position along an axis); the message names the index and the bound.
class IndexError : public Error {
 public:
  using Error::Error;
};

/// Tensors of different dtypes mixed in one op, or an unsupported dtype.
class DTypeError : public Error {
 public:
  using Error::Error;
};

/// Misuse of the graph: values of two graphs mixed, backward twice through a
/// freed graph, backward from a non-scalar without an upstream gradient.
class GraphError : public Error {
 public:
  using Error::Error;
};

/// An argument out of its domain (epsilon <= 0, momentum outside [0, 1],
/// NaN in a training batch, an unknown name, ...).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// Gradients that disagree beyond tolerance (checked backward, gradcheck).
class GradientMismatch : public Error {
 public:
  using Error::Error;
};

/// Reading or writing a file failed (missing, truncated, wrong format).
class IOError : public Error {
 public:
  using Error::Error;
};

/// A tensor's buffer could not be allocated (the shape is valid, the memory
/// is not there).
class MemoryError : public Error {
 public:
  using Error::Error;
};

}  // namespace npdl
