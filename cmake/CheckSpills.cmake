# A compiler launcher that fails a CUDA compile whose ptxas report shows register spills for the listed
# architectures. Used as:
#   cmake -DSPILL_CHECK_ARCHS=80,86,89 -P CheckSpills.cmake -- <compiler command with -Xptxas=-v>
# It runs the command, prints its output minus ptxas's per-function report (so a clean build stays quiet),
# and fails (exit status 1), removing the object so that the next build compiles it again, when a kernel
# compiled for one of SPILL_CHECK_ARCHS spills. Architectures not listed are not checked.
cmake_minimum_required(VERSION 3.25)

set(command "")
set(after_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_separator)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_separator TRUE)
  endif()
endforeach()
if(NOT command)
  message(FATAL_ERROR "CheckSpills.cmake: no command after --")
endif()
string(REPLACE "," ";" checked_archs "${SPILL_CHECK_ARCHS}")
string(REPLACE "," ", sm_" checked_names "sm_${SPILL_CHECK_ARCHS}")

execute_process(COMMAND ${command} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)

# ptxas -v reports each kernel as "Compiling entry function 'NAME' for 'sm_89'", "Function properties for
# NAME", "N bytes stack frame, S bytes spill stores, L bytes spill loads", "Used R registers, ...".
set(entry_pattern "Compiling entry function '([^']+)' for 'sm_([0-9]+[a-z]?)'\n[^\n]*Function properties[^\n]*\n")
string(APPEND entry_pattern "[^\n]* bytes stack frame, ([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads")
string(REGEX MATCHALL "${entry_pattern}" entries "${output}")
find_program(cxxfilt c++filt)
set(spills "")
foreach(entry IN LISTS entries)
  string(REGEX MATCH "${entry_pattern}" entry "${entry}")
  set(name "${CMAKE_MATCH_1}")
  set(arch "${CMAKE_MATCH_2}")
  set(stores "${CMAKE_MATCH_3}")
  set(loads "${CMAKE_MATCH_4}")
  if(arch IN_LIST checked_archs AND NOT (stores EQUAL 0 AND loads EQUAL 0))
    if(cxxfilt)
      execute_process(COMMAND ${cxxfilt} ${name} OUTPUT_VARIABLE name OUTPUT_STRIP_TRAILING_WHITESPACE)
    endif()
    string(APPEND spills "\n  sm_${arch} ${name}: ${stores} bytes spill stores, ${loads} bytes spill loads")
  endif()
endforeach()

# Everything else the compiler said (warnings, errors) goes through.
string(REGEX REPLACE "[^\n]*ptxas info[^\n]*\n" "" rest "${output}")
string(REGEX REPLACE "[ \t]+[0-9]+ bytes stack frame[^\n]*\n" "" rest "${rest}")
string(STRIP "${rest}" rest)
if(NOT rest STREQUAL "")
  message("${rest}")
endif()

if(NOT result EQUAL 0)
  message(FATAL_ERROR "the compile failed (exit status ${result})")
endif()
if(spills)
  list(FIND command "-o" output_flag)
  if(output_flag GREATER_EQUAL 0)
    math(EXPR object_index "${output_flag} + 1")
    list(GET command ${object_index} object)
    file(REMOVE "${object}")
  endif()
  message(FATAL_ERROR "register spills where kernels must not spill (${checked_names}):${spills}")
endif()
