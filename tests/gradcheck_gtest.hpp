#pragma once
// GoogleTest assertions on gradient checks (header only; include it from
// tests that link GoogleTest):
//   EXPECT_GRADCHECK(f, {x, w});           reverse mode vs finite differences
//   EXPECT_GRADGRADCHECK(f, {x, w});       second order: reverse over reverse vs
//                                          finite differences of the gradient
//   EXPECT_GRADIENTS_MATCH(report);        any GradCheckReport
#include <gtest/gtest.h>

#include "autodiff/gradcheck.hpp"

namespace npdl::testing {

inline ::testing::AssertionResult GradientsMatch(const char* expr, const GradCheckReport& report) {
  if (report.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "gradient check failed for " << expr << ":\n"
                                       << report.describe();
}

}  // namespace npdl::testing

#define EXPECT_GRADIENTS_MATCH(report) EXPECT_PRED_FORMAT1(::npdl::testing::GradientsMatch, report)
#define EXPECT_GRADCHECK(f, ...) \
  EXPECT_PRED_FORMAT1(::npdl::testing::GradientsMatch, ::npdl::gradcheck(f, __VA_ARGS__))
#define EXPECT_GRADGRADCHECK(f, ...) \
  EXPECT_PRED_FORMAT1(::npdl::testing::GradientsMatch, ::npdl::gradgradcheck(f, __VA_ARGS__))
