// Fuzz target: npdl::io::load_npy on arbitrary bytes, taking any dtype it
// reads (floats and indices: NpyKind::Any). A file either loads
// into a tensor whose shape, dtype and byte count agree, or is refused with
// an IOError (or another npdl::Error); anything else (a crash, a sanitizer
// report, another exception) is a finding.
#include <cstdlib>
#include <cstring>

#include "fuzz/fuzz_support.hpp"
#include "io/npy.hpp"
#include "tensor/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = npdl::fuzz::write_scratch("input.npy", data, size);
  npdl::Tensor t;
  try {
    t = npdl::io::load_npy(path, npdl::io::NpyKind::Any);
  } catch (const npdl::Error&) {
    return 0;
  }
  // A loaded tensor must be self-consistent, and its data fully present in
  // the file (the reader never invents bytes).
  if (t.size() != npdl::numel(t.shape())) std::abort();
  if (t.nbytes() > size) std::abort();
  double sum = 0;
  for (std::int64_t i = 0; i < t.size(); ++i) sum += t.at(i);  // reads every element (ASan)
  (void)sum;
  // What was read must survive a write and a second read bit for bit.
  npdl::io::save_npy(path, t);
  const npdl::Tensor again = npdl::io::load_npy(path, npdl::io::NpyKind::Any);
  if (again.shape() != t.shape() || again.dtype() != t.dtype()) std::abort();
  if (t.nbytes() > 0 && std::memcmp(again.raw_data(), t.raw_data(), t.nbytes()) != 0) std::abort();
  return 0;
}
