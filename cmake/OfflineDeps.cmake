# The offline bundle of the server's dependencies (scripts/make-offline-deps.sh), for a host without gRPC,
# protobuf, FFmpeg or cpp-httplib packages: -DSAGEVID_DEPS_PREFIX=/path/to/sagevid-deps makes every lookup of
# them (pkg-config, OpenSSL, the reflection library, protoc and grpc_cpp_plugin) use the bundle only, and the
# binaries find its libraries through their RUNPATH. Empty (the default): the system's packages.
set(SAGEVID_DEPS_PREFIX "" CACHE PATH "An unpacked scripts/make-offline-deps.sh bundle; empty: the system's packages")
set(sagevid_deps_include_dir "")
if(NOT SAGEVID_DEPS_PREFIX)
  return()
endif()

get_filename_component(sagevid_deps "${SAGEVID_DEPS_PREFIX}" ABSOLUTE)
if(NOT EXISTS "${sagevid_deps}/MANIFEST.txt")
  message(FATAL_ERROR "SAGEVID_DEPS_PREFIX=${SAGEVID_DEPS_PREFIX} is not an unpacked bundle of "
                      "scripts/make-offline-deps.sh (it has no MANIFEST.txt)")
endif()
# A library the bundle expects from the host but this host lacks fails here, by name, not at the first run.
execute_process(COMMAND ${PROJECT_SOURCE_DIR}/scripts/check-offline-deps.sh ${sagevid_deps}
                RESULT_VARIABLE sagevid_deps_missing OUTPUT_VARIABLE sagevid_deps_report ERROR_VARIABLE sagevid_deps_report)
if(sagevid_deps_missing)
  message(FATAL_ERROR "The offline bundle ${sagevid_deps} needs libraries this host lacks:\n${sagevid_deps_report}")
endif()
message(STATUS "Server dependencies from the offline bundle ${sagevid_deps}")

set(sagevid_deps_libdir ${sagevid_deps}/lib/x86_64-linux-gnu)  # the bundle's layout, Debian's amd64 one
set(sagevid_deps_include_dir ${sagevid_deps}/include)
list(PREPEND CMAKE_PREFIX_PATH ${sagevid_deps})
# The bundle's pkg-config sees the bundle's .pc files and no others: a module missing from it is an error, not
# the system's.
set(PKG_CONFIG_EXECUTABLE ${sagevid_deps}/bin/pkgconf CACHE FILEPATH "pkg-config" FORCE)
set(ENV{PKG_CONFIG_LIBDIR} "${sagevid_deps_libdir}/pkgconfig:${sagevid_deps}/share/pkgconfig")
set(OPENSSL_ROOT_DIR ${sagevid_deps})
set(PROTOC ${sagevid_deps}/bin/protoc CACHE FILEPATH "protoc" FORCE)
set(GRPC_CPP_PLUGIN ${sagevid_deps}/bin/grpc_cpp_plugin CACHE FILEPATH "protoc's gRPC C++ plugin" FORCE)
find_library(GRPCPP_REFLECTION_LIBRARY grpc++_reflection PATHS ${sagevid_deps_libdir} NO_DEFAULT_PATH REQUIRED)
# The bundle's libraries load each other through their own RUNPATH ($ORIGIN); the linker is told where they
# are, and our binaries where to find them.
add_link_options(-Wl,-rpath-link,${sagevid_deps_libdir})
list(APPEND CMAKE_BUILD_RPATH ${sagevid_deps_libdir})
