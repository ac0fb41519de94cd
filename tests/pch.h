#pragma once
// Precompiled for the test suites: Catch2 and the ATen headers dominate their build time.
#include "catch.h"
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
