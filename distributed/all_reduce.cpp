#include "distributed/all_reduce.hpp"

#include "autodiff/catalogue.hpp"

namespace npdl::dist {

const OpInfo kAllReduceSum{"all_reduce_sum", "y = sum over ranks of x (every rank gets y)",
                           "gx = sum over ranks of g (the all-reduce of the gradient)"};

namespace {

// Every rank's shape and dtype must agree before the reduction, or MPI
// would sum buffers of different lengths (or hang).
void check_same_everywhere(Communicator& comm, const Tensor& t, const char* what) {
  if (comm.size() == 1) return;
  const std::string mine = to_string(t.shape()) + " " + to_string(t.dtype());
  const std::vector<std::string> all = comm.allgather(mine);
  for (const std::string& other : all) {
    if (other == all.front()) continue;
    std::string list;
    for (std::size_t r = 0; r < all.size(); ++r) {
      list += (r ? ", " : "") + std::string("rank ") + std::to_string(r) + " has " + all[r];
    }
    throw ShapeError(std::string(what) + ": every rank must give the same shape and dtype; " +
                     list);
  }
}

Tensor reduced(const Tensor& x, Communicator& comm) {
  Tensor y = x.clone();
  comm.allreduce_sum(y);
  return y;
}

}  // namespace

Var all_reduce_sum(const Var& x, const CommunicatorPtr& comm) {
  check_same_everywhere(*comm, x.value(), "all_reduce_sum");
  Tensor y = reduced(x.value(), *comm);
  Graph* graph = common_graph({&x}, kAllReduceSum.name);
  if (graph == nullptr) return Var(std::move(y));
  return graph->record(kAllReduceSum, {&x}, std::move(y), {}, [comm](const VjpArgs& c) -> Vars {
    // Its VJP is itself (Note [Differentiable VJPs]); the shape
    // agreement was checked by the forward.
    if (c.grad.tracked() && grad_enabled()) return {all_reduce_sum(c.grad, comm)};
    return {Var(reduced(c.grad.value(), *comm))};
  });
}

// Catalogue entry (Note [One entry per primitive] in autodiff/catalogue.hpp): on
// one process the sum over ranks is the identity, which is what a single
// process can check (tests/mpi/ checks it on several). Linear: its second
// derivative is zero, and its VJP is itself.
namespace {
const CommunicatorPtr& one_process() {
  static const CommunicatorPtr comm = std::make_shared<SingleProcessCommunicator>();
  return comm;
}

const catalogue::Primitive kEntries[] = {
    catalogue::Primitive(kAllReduceSum, "distributed/all_reduce.cpp")
        .with_samples([] {
          return catalogue::Samples{
              {"one process",
               [](const std::vector<Var>& v) { return all_reduce_sum(v[0], one_process()); },
               {catalogue::sample::normal({3, 2}, 600)}}};
        })
        .with_random([](const Var& a, const Var&, const catalogue::Choices&) {
          return all_reduce_sum(a, one_process());
        }),
};
const catalogue::Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::dist
