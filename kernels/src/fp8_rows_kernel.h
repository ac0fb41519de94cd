#pragma once
// The CUDA side of quantize_rows_fp8 (fp8_rows.cpp): launches on `stream`, a warp or a CTA per row.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace sagevid::kernels::detail {

enum class RowElement { fp32, fp16, bf16 };

// values: rows x cols E4M3 bytes, contiguous; scales: rows floats. gelu: x goes through the tanh GELU (rounded
// to its element type) first.
void quantize_rows_fp8(const void* x, RowElement element, int rows, int64_t row_stride, int cols, bool gelu,
                       uint8_t* values, float* scales, cudaStream_t stream);

}  // namespace sagevid::kernels::detail
