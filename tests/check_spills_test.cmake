# cmake/CheckSpills.cmake (the mma family's compiler launcher) on a recorded ptxas report with a spill on
# sm_89 and one on sm_90a (fixtures/ptxas/): it fails where sm_89 is checked, naming the kernel and removing
# the object; it passes where only the other architectures spill; it passes the compiler's own warnings
# through and hides ptxas's report; a failing compile fails it. Run: cmake -DSOURCE_DIR=<repo> -P <this file>
set(script ${SOURCE_DIR}/cmake/CheckSpills.cmake)
set(report ${SOURCE_DIR}/tests/fixtures/ptxas/mma_sm89_spill.log)
set(object ${CMAKE_CURRENT_BINARY_DIR}/check_spills_test.o)

# The fake compiler prints the report; "-o <object>" rides along as unused arguments of sh -c.
function(check archs command)
  file(WRITE ${object} "")
  execute_process(COMMAND ${CMAKE_COMMAND} -DSPILL_CHECK_ARCHS=${archs} -P ${script} -- ${command}
                  RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  set(result ${result} PARENT_SCOPE)
  set(output "${output}" PARENT_SCOPE)
endfunction()

function(fail what)
  message(FATAL_ERROR "check_spills: ${what}\n--- launcher output:\n${output}")
endfunction()

# The last check's output must (expect) or must not (reject) match the pattern.
function(expect_output pattern what)
  if(NOT output MATCHES "${pattern}")
    fail("${what}")
  endif()
endfunction()
function(reject_output pattern what)
  if(output MATCHES "${pattern}")
    fail("${what}")
  endif()
endfunction()

check(80,86,89 "sh;-c;cat ${report};-o;${object}")
if(result EQUAL 0 OR EXISTS ${object})
  fail("a spill on a checked architecture passed, or left its object")
endif()
expect_output("sm_89 [^\n]*(64, true, true, true, 2|ILi64ELb1ELb1ELb1ELi2)[^\n]*: 56 bytes spill stores"
              "the report does not name the spilling kernel and its spill")
reject_output("sm_90a" "an unchecked architecture was reported")

check(80,86 "sh;-c;cat ${report};-o;${object}")
if(NOT result EQUAL 0 OR NOT EXISTS ${object})
  fail("spills only on unchecked architectures failed, or lost the object")
endif()
expect_output("warning #177-D" "the compiler's warning did not come through")
reject_output("ptxas info|bytes stack frame" "ptxas's per-kernel report came through")

check(89 "sh;-c;exit 3")
if(result EQUAL 0)
  fail("a failing compile passed")
endif()

file(REMOVE ${object})
