// Marks this executable as the GPU suite: test_main.cpp skips it (exit 77) where no CUDA device exists.
bool suite_needs_gpu() { return true; }
