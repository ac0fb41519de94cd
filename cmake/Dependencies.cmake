# Third-party packages. libtorch comes from the torch wheel (scripts/setup.sh puts it in .venv/).
include(${CMAKE_CURRENT_LIST_DIR}/OfflineDeps.cmake)
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  foreach(lang CXX CUDA)
    set(CMAKE_${lang}_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  endforeach()
endif()

if(NOT Torch_DIR AND NOT CMAKE_PREFIX_PATH MATCHES "torch")
  foreach(python ${CMAKE_SOURCE_DIR}/.venv/bin/python python3)
    execute_process(COMMAND ${python} -c "import torch;print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE torch_found ERROR_QUIET)
    if(torch_found EQUAL 0)
      list(APPEND CMAKE_PREFIX_PATH ${torch_prefix})
      break()
    endif()
  endforeach()
endif()

# Torch's config resets CMAKE_CUDA_ARCHITECTURES and, without TORCH_CUDA_ARCH_LIST, probes for a GPU by
# running a program; give it a list and put our architectures back afterwards.
set(sagevid_cuda_architectures ${CMAKE_CUDA_ARCHITECTURES})
if(NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch REQUIRED)
set(CMAKE_CUDA_ARCHITECTURES ${sagevid_cuda_architectures})
# Torch also appends its -gencode flags to CMAKE_CUDA_FLAGS, which would build every .cu for its list on top
# of the target's own architectures (and the sm_90a-only files for sm_80): drop them.
string(REGEX REPLACE "-gencode +arch=[^ ]+" "" CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS}")
find_package(CUDAToolkit REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog REQUIRED)

# libtorch's include dir carries its own fmt and protobuf headers, which would shadow the system ones (or the
# offline bundle's) that spdlog and gRPC were built against. A folder holding only links to the system copies,
# searched before torch's, restores them (none of the torch headers we include use either).
find_package(fmt REQUIRED)
get_target_property(fmt_include_dirs fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
find_path(system_fmt_dir fmt/core.h PATHS ${fmt_include_dirs} NO_DEFAULT_PATH REQUIRED)
unset(system_protobuf_dir CACHE)  # found again each time: the offline bundle may have come or gone since
find_path(system_protobuf_dir google/protobuf/message.h PATHS ${sagevid_deps_include_dir} /usr/include /usr/local/include
          NO_DEFAULT_PATH)
set(sagevid_shadow_fix ${CMAKE_BINARY_DIR}/system-headers)
file(MAKE_DIRECTORY ${sagevid_shadow_fix})
file(CREATE_LINK ${system_fmt_dir}/fmt ${sagevid_shadow_fix}/fmt SYMBOLIC)
if(system_protobuf_dir)
  file(CREATE_LINK ${system_protobuf_dir}/google ${sagevid_shadow_fix}/google SYMBOLIC)
endif()

add_library(sagevid_torch INTERFACE)
target_include_directories(sagevid_torch SYSTEM BEFORE INTERFACE ${sagevid_shadow_fix})
# The torch wheel's libraries export their own copies of some std::filesystem functions, which would win
# symbol lookup over libstdc++'s and crash (pytorch/pytorch#133437): put libstdc++ first on the link line.
target_link_libraries(sagevid_torch INTERFACE "-Wl,--push-state,--no-as-needed" stdc++ "-Wl,--pop-state"
                      ${TORCH_LIBRARIES})
