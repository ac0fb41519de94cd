#pragma once
// The CUDA side of residual_norm_modulate (residual_norm.cpp): one stream per launch.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace sagevid::kernels::detail {

enum class NormElement { fp16, bf16 };

// Rows addressed as base + batch * batch_stride + row * row_stride (elements), the last dim contiguous.
struct RowsView {
  const void* data = nullptr;
  int64_t batch_stride = 0, row_stride = 0;
};

struct ResidualNormArgs {
  RowsView residual;             // written back in place when update.data is set
  RowsView update;               // data null: no update
  RowsView gate, shift, scale;   // one row per batch (row_stride unused)
  const void* weight = nullptr;  // [D] or null (1)
  const void* bias = nullptr;    // [D] or null (0)
  float eps = 0;
  RowsView out;                  // the modulated rows, of the residual's type; or, with fp8_values.data set:
  RowsView fp8_values;           // the rows as FP8 E4M3 bytes (quantize_rows_fp8's quantization of out's rows)
  RowsView fp8_scales;           // and their fp32 scales, one a row (row_stride 1)
  int64_t batch = 0, rows = 0;   // rows per batch
  int dim = 0;                   // a multiple of 8, at most the kernel's limit (residual_norm_fits)
};

bool residual_norm_fits(int dim);
// Whether rows of `dim` may go out as FP8 (fp8_values): rows two warps hold.
bool residual_norm_fp8_fits(int dim);

// Every pointer 16-byte aligned and every stride a multiple of 8 elements.
void residual_norm_modulate(const ResidualNormArgs& args, NormElement element, cudaStream_t stream);

}  // namespace sagevid::kernels::detail
