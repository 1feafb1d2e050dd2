// Programs whose rank 1 throws while the others wait in a collective: the
// way every npdl program on several ranks should fail. run_or_abort prints
// the rank's error and aborts all ranks; tests/mpi/expect_abort.sh checks
// that mpirun ends non-zero within seconds with that message.
//   (no argument)  rank 1 throws before an all-reduce the others are in;
//   mid-sweep      rank 1 throws in the middle of a data-parallel backward
//                  sweep whose overlapped gradient all-reduces are in
//                  flight (Note [Non-blocking all-reduce]).
#include <iostream>
#include <string>

#include "npdl.hpp"

namespace {

using namespace npdl;

// The identity, whose VJP throws on rank 1: a failure half-way through the
// backward sweep, after the last layer's gradients have been reported.
const OpInfo kFailOnRankOne{"fail_on_rank_one", "y = x", "throws on rank 1, else gx = g"};

class FailingBackward : public layers::Layer {
 public:
  explicit FailingBackward(int rank) : rank_(rank) {}
  std::string name() const override { return "FailingBackward"; }
  Var apply(const Var& x, bool) override {
    const int rank = rank_;
    return x.graph()->record(kFailOnRankOne, {&x}, x.value(), {}, [rank](const VjpArgs& c) -> Vars {
      if (rank == 1) {
        throw ValueError(
            "rank 1 cannot go on (this failure is what the test "
            "expects)");
      }
      return {c.grad};
    });
  }

 private:
  int rank_;
};

int throw_before_allreduce(const dist::CommunicatorPtr& comm) {
  if (comm->rank() == 1) {
    throw ValueError("rank 1 cannot go on (this failure is what the test expects)");
  }
  double x = 1.0;
  comm->allreduce_sum(&x, 1);  // never completes: rank 1 is not coming
  std::cout << "unreachable: the all-reduce finished without rank 1\n";
  return 0;
}

int throw_mid_sweep(const dist::CommunicatorPtr& comm) {
  model::Model m;
  m.add<layers::Linear>(8, 4);
  m.add<FailingBackward>(comm->rank());
  m.add<layers::Dense>(3, 0, "glorot_uniform", "softmax");
  m.compile("scce", "sgd");
  m.set_communicator(comm);
  model::GradientAllReduce overlapped;
  overlapped.overlap = true;
  overlapped.bucket_bytes = 1;  // one bucket per gradient: the Dense's start first
  m.set_gradient_allreduce(overlapped);
  m.train_on_batch(Tensor::randn({2, 4}, 1), model::one_hot({0, 2}, 3));
  std::cout << "unreachable: the step finished without rank 1\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dist::MpiSession session(&argc, &argv);
  const dist::CommunicatorPtr comm = session.world();
  const bool mid_sweep = argc > 1 && std::string(argv[1]) == "mid-sweep";
  return dist::run_or_abort(
      comm, 3, [&] { return mid_sweep ? throw_mid_sweep(comm) : throw_before_allreduce(comm); });
}
