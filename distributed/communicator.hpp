#pragma once
// Communicators: the processes (ranks) that train one model together.
//
// The interface is the handful of collectives that data-parallel training
// and SyncBatchNormal need. Two implementations:
//   SingleProcessCommunicator  one rank; every collective is the identity.
//                              Always available, so nothing above distributed/
//                              needs to know whether MPI is installed.
//   MPI (distributed/mpi_communicator.cpp, built when CMake finds MPI) over
//                              MPI_COMM_WORLD, started by MpiSession.
//
// Every collective must be called by every rank, in the same order, with
// the same sizes (MPI's rule). Results are identical on every rank: the
// reductions are MPI's, which for a sum gives all ranks the same bits
// (the same pairs are added in the same order), and the test programs
// check that (tests/mpi/).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/error.hpp"
#include "tensor/tensor.hpp"

namespace npdl::dist {

/// A collective failed, MPI is missing, or the ranks disagree (shapes,
/// counts); the message names the rank and what it had.
class DistError : public Error {
 public:
  using Error::Error;
};

/// A non-blocking collective in flight (Note [Non-blocking all-reduce]).
/// Its buffer must stay alive and untouched until wait() has returned.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  /// Returns once the collective is complete on this rank: the buffer then
  /// holds the result. A second call returns at once.
  virtual void wait() = 0;
  /// Whether it is complete, without blocking; each call also lets MPI
  /// advance it (OpenMPI moves a non-blocking collective on only inside MPI
  /// calls).
  virtual bool test() = 0;
};
using PendingCollectivePtr = std::unique_ptr<PendingCollective>;

/// Note [Non-blocking all-reduce]
/// start_allreduce_sum begins the sum and returns at once, so that the
/// caller can compute while the ranks exchange data (data-parallel training
/// starts each gradient bucket during the backward sweep). The rules are
/// MPI's: every rank starts the same collectives in the same order (blocking
/// and non-blocking ones alike), and a collective in flight can be neither
/// cancelled nor freed. A PendingCollective destroyed before it completes
/// (a rank unwinding after an error, on its way to MPI_Abort) therefore does
/// not wait, which could hang when another rank never starts its part: it
/// leaves the request to MPI, and its owner must leave the buffer alive too.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "MPI" or "single process": for messages and reports.
  virtual std::string backend() const = 0;

  /// In place: every rank ends with the element-wise sum over ranks.
  virtual void allreduce_sum(double* data, std::int64_t count) = 0;
  virtual void allreduce_sum(float* data, std::int64_t count) = 0;
  /// The same sum, started without waiting (Note [Non-blocking all-reduce]).
  /// Throws DistError for a negative count.
  virtual PendingCollectivePtr start_allreduce_sum(double* data, std::int64_t count) = 0;
  virtual PendingCollectivePtr start_allreduce_sum(float* data, std::int64_t count) = 0;
  /// In place: every rank ends with the element-wise maximum over ranks.
  virtual void allreduce_max(double* data, std::int64_t count) = 0;
  /// `count` values from each rank, concatenated in rank order, on every rank.
  virtual std::vector<double> allgather(const double* data, std::int64_t count) = 0;
  virtual std::vector<std::int64_t> allgather(const std::int64_t* data, std::int64_t count) = 0;
  /// Each rank's string, in rank order, on every rank.
  virtual std::vector<std::string> allgather(const std::string& text) = 0;
  /// Root's bytes copied to every rank.
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  /// Ends every rank's process with `code` (MPI_Abort); the one way out that
  /// cannot hang when ranks are at different points of the program.
  [[noreturn]] virtual void abort(int code) = 0;

  /// Tensor helpers: in place over the tensor's buffer, in its dtype.
  void allreduce_sum(Tensor& t);
  /// The tensor's buffer must outlive the returned collective.
  PendingCollectivePtr start_allreduce_sum(Tensor& t);
  void broadcast(Tensor& t, int root);
};

/// A collective that completed when it started (one rank, nothing to send).
class CompletedCollective : public PendingCollective {
 public:
  void wait() override {}
  bool test() override { return true; }
};
using CommunicatorPtr = std::shared_ptr<Communicator>;

class SingleProcessCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single process"; }
  void allreduce_sum(double*, std::int64_t) override {}
  void allreduce_sum(float*, std::int64_t) override {}
  void allreduce_max(double*, std::int64_t) override {}
  PendingCollectivePtr start_allreduce_sum(double* data, std::int64_t count) override;
  PendingCollectivePtr start_allreduce_sum(float* data, std::int64_t count) override;
  std::vector<double> allgather(const double* data, std::int64_t count) override {
    return {data, data + count};
  }
  std::vector<std::int64_t> allgather(const std::int64_t* data, std::int64_t count) override {
    return {data, data + count};
  }
  std::vector<std::string> allgather(const std::string& text) override { return {text}; }
  void broadcast(void*, std::size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
  using Communicator::allreduce_sum;
  using Communicator::broadcast;
  using Communicator::start_allreduce_sum;
};

/// True when npdl was built with MPI.
bool mpi_available();

/// Starts MPI for its lifetime (MPI_Init / MPI_Finalize) and makes its world
/// communicator the one world() returns. Throws DistError when npdl was
/// built without MPI, naming the packages to install.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  const CommunicatorPtr& world() const { return world_; }

 private:
  CommunicatorPtr world_;
};

/// The rows [begin, end) of a global batch of `global` rows that rank
/// `rank` of `ranks` trains on: contiguous, in rank order, sizes differing
/// by at most one. Every data-parallel loop (Model::fit, the examples)
/// splits its batches this way.
struct Shard {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};
inline Shard shard_of(std::int64_t global, int rank, int ranks) {
  return {global * rank / ranks, global * (rank + 1) / ranks};
}

/// Throws DistError naming `what` unless count >= 0.
void check_count(std::int64_t count, const char* what);

/// MPI's world while an MpiSession lives, else a single-process communicator.
CommunicatorPtr world();

/// Runs `body`; when it throws on any rank, prints "rank r of n: <what>" to
/// stderr and aborts every rank with exit code `code`, so that no rank waits
/// for ever in a collective the failed one will never reach.
int run_or_abort(const CommunicatorPtr& comm, int code, const std::function<int()>& body);

/// An error-agreement step: every rank says whether its local check passed
/// and, if not, why (`detail`). Returns "" on every rank when all passed,
/// else the same text on every rank, "rank 1 of 3: <detail>; rank 2 of 3:
/// ...", so that all ranks throw the same error at the same point instead of
/// the failed one leaving the others in a collective. One all-reduce of a
/// flag when every rank passed; the details are gathered only on failure.
std::string disagreement(Communicator& comm, bool ok, const std::string& detail);

}  // namespace npdl::dist
