#pragma once
// One include for Catch2 v2 (Debian 12) and v3 (Ubuntu 24.04).
//
// c10's logging header (pulled in by every ATen header) defines a glog-style CHECK(condition) that would
// silently replace Catch's CHECK: include it first and drop that macro; its include guard keeps it out.
#include <c10/util/Logging.h>
#undef CHECK
#if defined(SAGEVID_CATCH3)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_predicate.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#else
#include <catch2/catch.hpp>
namespace Catch::Matchers {  // v3's name for v2's Contains
inline StdString::ContainsMatcher ContainsSubstring(const std::string& text) { return Contains(text); }
}  // namespace Catch::Matchers
#endif

using Catch::Matchers::ContainsSubstring;
