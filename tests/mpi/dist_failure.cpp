// A program whose rank 1 throws while the others wait in a collective: the
// way every npdl program on several ranks should fail. run_or_abort prints
// the rank's error and aborts all ranks; tests/mpi/expect_abort.sh checks
// that mpirun ends non-zero within seconds with that message.
#include <iostream>

#include "npdl.hpp"

int main(int argc, char** argv) {
  npdl::dist::MpiSession session(&argc, &argv);
  const npdl::dist::CommunicatorPtr comm = session.world();
  return npdl::dist::run_or_abort(comm, 3, [&] {
    if (comm->rank() == 1) {
      throw npdl::ValueError("rank 1 cannot go on (this failure is what the test expects)");
    }
    double x = 1.0;
    comm->allreduce_sum(&x, 1);  // never completes: rank 1 is not coming
    std::cout << "unreachable: the all-reduce finished without rank 1\n";
    return 0;
  });
}
