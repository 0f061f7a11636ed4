# Included by CTest (see GTestSuites.cmake) with `program`, `prefix`, `emulator`, `exclude` and
# `properties` set:
# lists the program's suites and adds one test per suite.
if(NOT EXISTS "${program}")
  add_test("${program}_NOT_BUILT" "${program}")
  return()
endif()
execute_process(COMMAND ${emulator} "${program}" --gtest_list_tests
                OUTPUT_VARIABLE listing RESULT_VARIABLE result TIMEOUT 120)
if(NOT result EQUAL 0)
  message(WARNING "listing the tests of ${program} failed (${result}); retrying once")
  execute_process(COMMAND ${emulator} "${program}" --gtest_list_tests
                  OUTPUT_VARIABLE listing RESULT_VARIABLE result TIMEOUT 120)
endif()
if(NOT result EQUAL 0)
  add_test("${program}_LISTING_FAILED" "${program}" --gtest_list_tests)
  return()
endif()
string(REPLACE "\r" "" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
foreach(line IN LISTS lines)
  # Suite lines start in column one and end with a dot (a comment may follow for typed suites).
  if(line MATCHES "^([^ #][^ ]*\\.)( .*)?$")
    set(suite "${CMAKE_MATCH_1}")
    set(filter "${suite}*")
    if(exclude)
      string(APPEND filter "-${exclude}")
    endif()
    add_test("${prefix}:${suite}*" ${emulator} "${program}" "--gtest_filter=${filter}")
    if(properties)
      set_tests_properties("${prefix}:${suite}*" PROPERTIES ${properties})
    endif()
  endif()
endforeach()
