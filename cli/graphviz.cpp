#include "cli/graphviz.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "tensor/error.hpp"

extern char** environ;

namespace npdl::cli {
namespace {

namespace fs = std::filesystem;

// `program` on PATH, as a shell would find it.
std::optional<std::string> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::string dirs = path;
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    const std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

// A folder of its own under the system's temporary folder, removed with it.
class TempFolder {
 public:
  explicit TempFolder(const std::string& target) {
    std::string pattern = (fs::temp_directory_path() / "npdl-dot-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw IOError("cannot make '" + target + "': cannot create a temporary folder in " +
                    fs::temp_directory_path().string() + ": " + std::strerror(errno));
    }
    path_ = pattern;
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  ~TempFolder() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

}  // namespace

std::string require_dot(const std::string& target, const std::string& alternative) {
  const std::optional<std::string> dot = find_on_path("dot");
  if (!dot) {
    throw IOError("cannot make '" + target +
                  "': Graphviz's dot is not on PATH; install the Debian package graphviz "
                  "(apt-get install graphviz), or " +
                  alternative);
  }
  return *dot;
}

// Runs Graphviz's dot directly (no shell, so no quoting to get wrong).
void run_dot(const std::string& dot, const std::string& dot_file, const std::string& svg_file,
             const std::string& target) {
  std::vector<std::string> args{"dot", "-Tsvg", "-o", svg_file, dot_file};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, dot.c_str(), nullptr, nullptr, argv.data(), environ);
  if (spawned != 0) {
    throw IOError("cannot make '" + target + "': starting " + dot +
                  " failed: " + std::strerror(spawned));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw IOError("cannot make '" + target + "': waiting for dot failed");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw IOError("cannot make '" + target + "': " + dot + " failed (exit status " +
                  std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
}

std::string render_svg(const std::string& dot, const std::string& dot_text,
                       const std::string& target) {
  const TempFolder folder(target);
  const std::string dot_file = folder.file("graph.dot"), svg_file = folder.file("graph.svg");
  std::ofstream(dot_file) << dot_text;
  run_dot(dot, dot_file, svg_file, target);
  std::ifstream svg(svg_file);
  std::ostringstream text;
  text << svg.rdbuf();
  if (!svg || text.str().empty()) {
    throw IOError("cannot make '" + target + "': dot wrote no SVG to " + svg_file);
  }
  return text.str();
}

}  // namespace npdl::cli
