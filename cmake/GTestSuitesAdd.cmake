# Included by CTest (see GTestSuites.cmake) with `program`, `prefix`, `emulator`, `exclude`,
# `case_prefix`, `labels` and `properties` set:
# lists the program's suites and adds one test per suite, labelled with `labels` and the tiers of
# its cases (TestLabels.cmake: slow or oracle if any case is).
include(${CMAKE_CURRENT_LIST_DIR}/TestLabels.cmake)
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

# Adds the test of `suite` (the suite name with its dot) with the tier labels in `suite_tiers`.
macro(add_suite_test)
  set(filter "${suite}*")
  if(exclude)
    string(APPEND filter "-${exclude}")
  endif()
  virtdisk_merge_tier_labels(suite_tiers)
  add_test("${prefix}:${suite}*" ${emulator} "${program}" "--gtest_filter=${filter}")
  virtdisk_tier_cost("${suite_tiers}" cost)
  set_tests_properties("${prefix}:${suite}*" PROPERTIES ${properties}
                       LABELS "${labels};${suite_tiers}" COST ${cost})
endmacro()

string(REPLACE "\r" "" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
set(suite "")
foreach(line IN LISTS lines)
  # Suite lines start in column one and end with a dot (a comment may follow for typed suites);
  # their cases follow, indented (a comment may follow for parameterised ones).
  if(line MATCHES "^([^ #][^ ]*\\.)( .*)?$")
    if(suite)
      add_suite_test()
    endif()
    set(suite "${CMAKE_MATCH_1}")
    set(suite_tiers "")
  elseif(suite AND line MATCHES "^  ([^ ]+)")
    virtdisk_test_labels("${case_prefix}${suite}${CMAKE_MATCH_1}" case_tiers)
    list(APPEND suite_tiers ${case_tiers})
  endif()
endforeach()
if(suite)
  add_suite_test()
endif()
