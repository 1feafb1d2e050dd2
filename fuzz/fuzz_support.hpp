#pragma once
// What the fuzz targets share: the readers take paths, so each input is
// written to a scratch file first (one per process, in a folder of its own).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace npdl::fuzz {

/// A folder for this process's scratch files, removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::filesystem::path d =
        std::filesystem::path(base != nullptr && *base != '\0' ? base : "/tmp") /
        ("npdl_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  // Registered once dir is constructed, so after dir's destructor: exit
  // handlers run in reverse order, and this one runs while dir still lives
  // (registered inside dir's initialiser, it ran after the destructor and
  // read the freed path).
  static const int removal = std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  });
  (void)removal;
  return dir;
}

/// Writes `size` bytes to `name` in the scratch folder; returns its path.
inline std::string write_scratch(const std::string& name, const void* data, std::size_t size) {
  const std::string path = (scratch_dir() / name).string();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();  // the harness itself is broken: say so loudly
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace npdl::fuzz
