#include "distributed/communicator.hpp"

#include <cstdlib>
#include <iostream>

namespace npdl::dist {
namespace {
// The world communicator while an MpiSession lives (set by its constructor).
CommunicatorPtr& session_world() {
  static CommunicatorPtr world;
  return world;
}
}  // namespace

namespace detail {
void set_world(CommunicatorPtr world) { session_world() = std::move(world); }
}  // namespace detail

CommunicatorPtr world() {
  if (session_world()) return session_world();
  return std::make_shared<SingleProcessCommunicator>();
}

void Communicator::allreduce_sum(Tensor& t) {
  if (size() == 1 || t.size() == 0) return;
  if (t.dtype() == DType::Float32) {
    allreduce_sum(t.data<float>(), t.size());
  } else {
    allreduce_sum(t.data<double>(), t.size());
  }
}

PendingCollectivePtr Communicator::start_allreduce_sum(Tensor& t) {
  if (size() == 1 || t.size() == 0) return std::make_unique<CompletedCollective>();
  if (t.dtype() == DType::Float32) return start_allreduce_sum(t.data<float>(), t.size());
  return start_allreduce_sum(t.data<double>(), t.size());
}

void check_count(std::int64_t count, const char* what) {
  if (count < 0) {
    throw DistError(std::string(what) + ": expected a count of 0 or more elements, got " +
                    std::to_string(count));
  }
}

PendingCollectivePtr SingleProcessCommunicator::start_allreduce_sum(double*, std::int64_t count) {
  check_count(count, "start_allreduce_sum");
  return std::make_unique<CompletedCollective>();
}

PendingCollectivePtr SingleProcessCommunicator::start_allreduce_sum(float*, std::int64_t count) {
  check_count(count, "start_allreduce_sum");
  return std::make_unique<CompletedCollective>();
}

void Communicator::broadcast(Tensor& t, int root) {
  if (size() == 1 || t.size() == 0) return;
  broadcast(t.raw_data(), t.nbytes(), root);
}

void SingleProcessCommunicator::abort(int code) { std::exit(code); }

std::string disagreement(Communicator& comm, bool ok, const std::string& detail) {
  // The common case costs one tiny all-reduce; the texts travel only when
  // some rank failed (and then every rank knows it must gather them).
  double failed = ok ? 0.0 : 1.0;
  comm.allreduce_max(&failed, 1);
  if (failed == 0.0) return "";
  const std::vector<std::string> all = comm.allgather(ok ? std::string() : "!" + detail);
  std::string out;
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty()) continue;
    if (!out.empty()) out += "; ";
    out +=
        "rank " + std::to_string(r) + " of " + std::to_string(all.size()) + ": " + all[r].substr(1);
  }
  return out;
}

int run_or_abort(const CommunicatorPtr& comm, int code, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << "rank " << comm->rank() << " of " << comm->size() << ": " << e.what() << std::endl;
  } catch (...) {
    std::cerr << "rank " << comm->rank() << " of " << comm->size() << ": unknown exception"
              << std::endl;
  }
  if (comm->size() > 1) {
    std::cerr << "rank " << comm->rank() << ": stopping all " << comm->size() << " ranks"
              << std::endl;
    comm->abort(code);
  }
  return code;
}

}  // namespace npdl::dist
