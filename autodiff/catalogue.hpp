#pragma once
// The catalogue of primitives: one entry per primitive op, wherever the op
// is defined.
//
// Note [One entry per primitive]
// A primitive is stated once: its forward and VJP (the function that
// records it), and next to them its entry, which says everything else a
// program needs to know about it:
//   - its OpInfo: name, forward and VJP formulas, what the VJP reads, and
//     whether the VJP is twice differentiable;
//   - its inputs' domains and kinks (where central differences are trusted);
//   - samples: calls on small float64 inputs, edge shapes included;
//   - how to apply it to random operands with random arguments;
//   - its per-instruction-set kernel, if it has one, with the range and the
//     tolerance the level test uses.
// From the entries, and from nothing else:
//   tests/test_primitives.cpp   every sample records its op, and its first
//                               and second derivatives match float64 central
//                               differences (or the second is refused with a
//                               GraphError naming the op); every OpInfo the
//                               library defines has an entry; the
//                               committed docs/primitives.md is current;
//   tests/test_kernels.cpp      each entry's kernel at every instruction-set
//                               level against the default level;
//   fuzz/graph_diff.cpp         the op table of random programs;
//   docs/primitives.md          the table of primitives, written by
//                               `npdl primitives --markdown`.
// An entry registers itself (Registration, below) from the file that
// defines the op, so layers/ and distributed/ add theirs without ops/
// knowing them: the catalogue holds every primitive of the program. From the
// static library a linker keeps only the files a program calls into, so a
// user's program sees the primitives it can reach; npdl's own programs (the
// command line, tests, fuzzers) link the whole library and see them all.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/graph.hpp"

namespace npdl::catalogue {

/// Where an input's values must lie for the op to be smooth around them.
enum class Domain {
  Real,      // anywhere
  Positive,  // x > 0: log, sqrt, rsqrt, a denominator
};

/// One input's facts for anything that draws points to differentiate at.
struct InputFacts {
  Domain domain = Domain::Real;
  /// The derivative jumps at 0 (relu, leaky_relu, elu): a central
  /// difference across 0 does not estimate it.
  bool kink_at_zero = false;
};

/// A call of the primitive on concrete float64 inputs. `f` records the
/// primitive (it may wrap it, squaring a linear op's output so that its
/// second derivative is not zero); `what` says which case it is.
struct Sample {
  std::string what;
  GraphFunction f;
  std::vector<Tensor> inputs;
};
using Samples = std::vector<Sample>;

/// Random choices made for one application of an op: the op derives its
/// arguments (axes, target shapes, scalars) from them, so that a fuzzer
/// needs to know no op's signature.
struct Choices {
  std::uint32_t bits = 0;
  bool flag = false;
  double scalar = 0.0;
  /// An application whose result would hold more elements throws ValueError.
  std::int64_t max_elements = 0;
};
/// Applies the op to `a` (and `b` for a binary op), arguments from `choices`.
/// Throws an npdl::Error where the operands do not fit.
using RandomApply = Var (*)(const Var& a, const Var& b, const Choices& choices);

/// An elementwise kernel compiled per instruction-set level: its name (as
/// kernels::to_string(UnaryOp) gives it), the range its values are drawn
/// from, and how far another level may be from the default one, in units in
/// the last place (0: bit for bit).
struct KernelFacts {
  const char* unary = nullptr;
  double lo = 0.0, hi = 0.0;
  double ulps = 0.0;
};

/// One primitive's entry. Built with the with_* calls:
///   Primitive(info::kTanh, "ops/activation.cpp")
///       .with_samples(...).with_random(...).with_kernel({"tanh", -10, 10, 4})
struct Primitive {
  Primitive(const OpInfo& op_info, const char* file) : info(&op_info), defined_in(file) {}

  const OpInfo* info;
  const char* defined_in;                                       // the file with its forward and VJP
  std::vector<InputFacts> inputs = std::vector<InputFacts>(1);  // one per operand
  Samples (*samples)() = nullptr;   // at least one; none is a test failure
  RandomApply random = nullptr;     // null: not in the graph fuzzer's table
  const char* fuzzed_by = nullptr;  // when random is null: which fuzzer covers it
  KernelFacts kernel{};             // kernel.unary null: no per-level kernel

  const char* name() const { return info->name; }
  Primitive with_inputs(std::vector<InputFacts> facts) const;
  Primitive with_samples(Samples (*make)()) const;
  Primitive with_random(RandomApply apply) const;
  /// For an op whose arguments a random (a, b, bits) cannot make (a
  /// convolution's geometry, a pooling selection): the fuzzer that covers it.
  Primitive with_own_fuzzer(const char* fuzzer) const;
  Primitive with_kernel(KernelFacts facts) const;
};

/// Adds entries to the catalogue; define one per file, after its entries:
///   const Primitive kEntries[] = {...};
///   const Registration kRegistered(kEntries);
class Registration {
 public:
  template <std::size_t N>
  explicit Registration(const Primitive (&entries)[N]) {
    for (const Primitive& p : entries) add(p);
  }

 private:
  static void add(const Primitive& entry);
};

/// Every registered primitive, sorted by name. Throws GraphError naming the
/// files when two entries share a name.
const std::vector<const Primitive*>& primitives();
/// The entry named `name`, or null.
const Primitive* find(std::string_view name);

/// The catalogue as a Markdown page (docs/primitives.md is this text).
std::string markdown();

/// Sample inputs: float64, from a seed.
namespace sample {
Tensor normal(Shape shape, std::uint64_t seed);
/// Uniform in [0.5, 2]: inside a Positive domain, away from its edge.
Tensor positive(Shape shape, std::uint64_t seed);
}  // namespace sample

}  // namespace npdl::catalogue
