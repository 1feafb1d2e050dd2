// npdl gradcheck lstm | gru: the three-way table, its verdict and its
// exit status, and bad options.
#ifdef NPDL_HAVE_CLI
#include <gtest/gtest.h>

#include <sstream>

#include "cli/cli.hpp"

namespace npdl {
namespace {

struct CommandRun {
  int status = -1;
  std::string out, err;
};

CommandRun npdl(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  CommandRun r;
  r.status = cli::run(args, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

TEST(CellGradcheck, EveryTensorThreeWaysAndAVerdict) {
  for (const auto& [cell, tensors] : {std::pair<std::string, int>{"lstm", 13}, {"gru", 10}}) {
    for (bool sequence : {false, true}) {
      std::vector<std::string> args{"gradcheck", cell, "--shape", "2,3,2", "--hidden", "2"};
      if (sequence) args.push_back("--return-sequence");
      const CommandRun r = npdl(args);
      EXPECT_EQ(r.status, 0) << r.out << r.err;
      // dx and every parameter, each three ways: none a mismatch.
      EXPECT_EQ(count(r.out, "autodiff vs finite diff"), tensors) << cell;
      EXPECT_EQ(count(r.out, "fused vs autodiff"), tensors) << cell;
      EXPECT_EQ(count(r.out, "MISMATCH"), 0) << r.out;
      EXPECT_NE(r.out.find("All gradients agree."), std::string::npos) << r.out;
    }
  }
}

TEST(CellGradcheck, BadOptionsAreUsageErrors) {
  EXPECT_EQ(npdl({"gradcheck", "lstm", "--shape", "2,3"}).status, 2);
  EXPECT_EQ(npdl({"gradcheck", "gru", "--hidden", "0"}).status, 2);
  const CommandRun big = npdl({"gradcheck", "lstm", "--shape", "64,64,64"});
  EXPECT_NE(big.status, 0);
  EXPECT_NE(big.err.find("finite differences"), std::string::npos) << big.err;
}

}  // namespace
}  // namespace npdl
#endif
