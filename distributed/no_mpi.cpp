// Built instead of mpi_communicator.cpp when CMake finds no MPI: everything
// runs in one process, and asking for MPI says what to install.
#include "distributed/communicator.hpp"

namespace npdl::dist {

bool mpi_available() { return false; }

MpiSession::MpiSession(int*, char***) {
  throw DistError(
      "npdl was built without MPI, so it runs in one process only; install OpenMPI "
      "(apt-get install libopenmpi-dev openmpi-bin) and rebuild npdl to run on several ranks");
}

MpiSession::~MpiSession() = default;

}  // namespace npdl::dist
