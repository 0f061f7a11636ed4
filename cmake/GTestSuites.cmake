# virtdisk_gtest_tests(TARGET [PROPERTIES name value ...])
#
# Registers a GoogleTest program's tests with CTest. Natively, one CTest test per case
# (gtest_discover_tests). When the program runs through an emulator (the Windows build under
# Wine), one CTest test per suite instead: each Wine process start costs about a second, which
# over some 450 cases made most of the Windows run; a suite is named "<suite>.*" and runs its
# cases with --gtest_filter in one process, as the CTest test "<program>:<suite>.*". The suites are listed at test time, as
# gtest_discover_tests' PRE_TEST mode does, because the program only runs under the emulator.
function(virtdisk_gtest_tests target)
  cmake_parse_arguments(ARG "" "" "PROPERTIES" ${ARGN})
  if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
    gtest_discover_tests(${target} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 120
                         PROPERTIES ${ARG_PROPERTIES})
    return()
  endif()
  set(include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_suites.cmake")
  string(REPLACE ";" " " emulator "${CMAKE_CROSSCOMPILING_EMULATOR}")
  # The properties as CMake list text, with the separators of list values escaped.
  set(properties "")
  foreach(item IN LISTS ARG_PROPERTIES)
    string(REPLACE ";" "\\;" item "${item}")
    string(APPEND properties " [==[${item}]==]")
  endforeach()
  file(GENERATE OUTPUT "${include_file}" CONTENT
"set(program [==[$<TARGET_FILE:${target}>]==])
set(prefix ${target})
set(emulator ${CMAKE_CROSSCOMPILING_EMULATOR})
set(properties ${properties})
include([==[${CMAKE_SOURCE_DIR}/cmake/GTestSuitesAdd.cmake]==])
")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
endfunction()
