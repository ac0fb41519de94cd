#pragma once
// SAGEVID_HD marks a function for both the host and the device (a plain host function where nvcc does not
// compile the file).
#if defined(__CUDACC__)
#define SAGEVID_HD __host__ __device__
#else
#define SAGEVID_HD
#endif
