#pragma once
// NumPy's .npy files: the way arrays travel between npdl and Python.
//
// Supported: format versions 1.0, 2.0 and 3.0; little-endian float32 ('<f4')
// and float64 ('<f8'), and int32 ('<i4') and int64 ('<i8') where indices
// are read; C (row-major) order; rank 0 to 6. Anything else
// (another dtype, Fortran order, a higher rank, a shape no tensor can have,
// a bad magic string or header, fewer data bytes than the shape needs, a
// missing file) throws IOError with a one-line message naming the file,
// what was expected and what was found.
//
// Writes are all-or-nothing: data goes to a temporary file beside the target,
// renamed over it only once everything is on disk (FileBatch does this for
// several files, and for files that are not .npy).
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace npdl::io {

/// Which dtypes a reader takes: values (float32, float64), indices (int32,
/// int64), or either.
enum class NpyKind { Floating, Indices, Any };

/// Reads a .npy file; the data goes straight into the tensor's storage. A
/// file of a dtype `kind` does not take is an IOError naming both.
Tensor load_npy(const std::string& path, NpyKind kind = NpyKind::Floating);

/// Writes a .npy file (version 1.0; any dtype), padded so that the data starts at a
/// multiple of 64 bytes. A tensor of rank above 6 is an IOError: no file
/// is written that load_npy would refuse.
void save_npy(const std::string& path, const Tensor& tensor);

/// Files written together, all or nothing: each `add` writes its content to
/// a temporary file beside the target at once; `commit` renames them all into
/// place. A batch destroyed before `commit` removes its temporary files, so a
/// failure part-way leaves none of the targets written or changed.
class FileBatch {
 public:
  FileBatch() = default;
  FileBatch(const FileBatch&) = delete;
  FileBatch& operator=(const FileBatch&) = delete;
  ~FileBatch();

  /// Writes `tensor` as .npy to a temporary file beside `path`; throws
  /// IOError (a rank above 6 included). Returns the temporary file's path.
  std::string add(const std::string& path, const Tensor& tensor);
  /// Writes `text` (a DOT file, ...) the same way.
  std::string add_text(const std::string& path, const std::string& text);
  /// An empty temporary file beside `path` for another program to fill.
  std::string add_external(const std::string& path);
  /// Renames every temporary file onto its target; throws IOError.
  void commit();

 private:
  std::string write_temp(const std::string& path, const std::string& head, const void* data,
                         std::size_t bytes);
  struct Pending {
    std::string temp_path;
    std::string target_path;
  };
  std::vector<Pending> pending_;
};

}  // namespace npdl::io
