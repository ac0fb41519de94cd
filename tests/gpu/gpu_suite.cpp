// Marks this executable as a GPU suite: test_main.cpp skips it (exit 77) where no CUDA device exists.
int suite_needs_gpus() { return 1; }
