// Marks this executable as the multi-GPU suite: test_main.cpp skips it (exit 77) on a host with fewer than two
// CUDA devices.
int suite_needs_gpus() { return 2; }
