# Under Wine on a Unix host, the fixture of the Wine session (tests/wine_session.sh) that every
# test requires.
set(VIRTDISK_WINE_SESSION_FIXTURE "")
if(CMAKE_CROSSCOMPILING_EMULATOR AND CMAKE_HOST_UNIX)
  set(VIRTDISK_WINE_SESSION_FIXTURE wine_session)
endif()

include(${CMAKE_CURRENT_LIST_DIR}/TestLabels.cmake)

# virtdisk_gtest_tests(TARGET [PREFIX prefix] [LABELS label ...] [PROPERTIES name value ...])
#
# Registers a GoogleTest program's tests with CTest. Natively, one CTest test per case
# (gtest_discover_tests), named PREFIX<Suite>.<Case>. Every test gets LABELS and its tier label
# (fast, slow, oracle) from cmake/TestLabels.cmake, by its case name (with PREFIX), or in a
# per-suite test by the case names of its suite. When the program runs through an emulator (the
# Windows build under Wine), one CTest test per suite instead: each Wine process start costs
# about a second, which over some 450 cases made most of the Windows run; a suite is named
# "<suite>.*" and runs its cases with --gtest_filter in one process, as the CTest test
# "<program>:<suite>.*". The suites are listed at test time, as gtest_discover_tests' PRE_TEST
# mode does, because the program only runs under the emulator. Each suite also requires the Wine
# session fixture.
#
# VIRTDISK_TEST_PER_SUITE makes native builds register one test per suite too (the sanitizer
# build: a case there took at least about 0.3 s however small, the sanitizers' process start,
# about 140 of the run's 474 test-seconds over 485 cases), and VIRTDISK_TEST_EXCLUDE, a GoogleTest negative filter
# ("Suite.*:*Case*"), leaves those cases out of every suite there.
option(VIRTDISK_TEST_PER_SUITE "One CTest test per GoogleTest suite in native builds too" OFF)
set(VIRTDISK_TEST_EXCLUDE "" CACHE STRING "GoogleTest cases to leave out of per-suite runs")
function(virtdisk_gtest_tests target)
  cmake_parse_arguments(ARG "" "PREFIX" "LABELS;PROPERTIES" ${ARGN})
  if(NOT CMAKE_CROSSCOMPILING_EMULATOR AND NOT VIRTDISK_TEST_PER_SUITE)
    gtest_discover_tests(${target} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 120
                         TEST_PREFIX "${ARG_PREFIX}" PROPERTIES ${ARG_PROPERTIES})
    # Run by CTest after the discovery's own file (the include files run in the order they were
    # added), with the discovered names in ${target}_TESTS.
    set(labels_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake")
    file(WRITE "${labels_file}"
"set(tests \${${target}_TESTS})
set(labels [==[${ARG_LABELS}]==])
include([==[${CMAKE_CURRENT_FUNCTION_LIST_DIR}/GTestLabelsApply.cmake]==])
")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${labels_file}")
    return()
  endif()
  set(include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_suites.cmake")
  string(REPLACE ";" " " emulator "${CMAKE_CROSSCOMPILING_EMULATOR}")
  # The properties as CMake list text, with the separators of list values escaped; the fixtures
  # required are the caller's and the Wine session.
  set(properties "")
  set(fixtures ${VIRTDISK_WINE_SESSION_FIXTURE})
  list(LENGTH ARG_PROPERTIES count)
  set(i 0)
  while(i LESS count)
    math(EXPR j "${i} + 1")
    list(GET ARG_PROPERTIES ${i} name)
    list(GET ARG_PROPERTIES ${j} value)
    if(name STREQUAL "FIXTURES_REQUIRED")
      list(APPEND fixtures ${value})
    else()
      string(REPLACE ";" "\\;" value "${value}")
      string(APPEND properties " [==[${name}]==] [==[${value}]==]")
    endif()
    math(EXPR i "${i} + 2")
  endwhile()
  if(fixtures)
    string(REPLACE ";" "\\;" fixtures "${fixtures}")
    string(APPEND properties " FIXTURES_REQUIRED [==[${fixtures}]==]")
  endif()
  file(GENERATE OUTPUT "${include_file}" CONTENT
"set(program [==[$<TARGET_FILE:${target}>]==])
set(prefix ${target})
set(emulator ${CMAKE_CROSSCOMPILING_EMULATOR})
set(exclude [==[${VIRTDISK_TEST_EXCLUDE}]==])
set(case_prefix [==[${ARG_PREFIX}]==])
set(labels [==[${ARG_LABELS}]==])
set(properties ${properties})
include([==[${CMAKE_CURRENT_FUNCTION_LIST_DIR}/GTestSuitesAdd.cmake]==])
")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
endfunction()

# virtdisk_wine_session_tests()
#
# Under Wine on a Unix host: makes every test added so far in the calling directory require the
# Wine session fixture (tests/wine_session.sh), as the suites of virtdisk_gtest_tests do.
function(virtdisk_wine_session_tests)
  if(NOT VIRTDISK_WINE_SESSION_FIXTURE)
    return()
  endif()
  get_property(names DIRECTORY PROPERTY TESTS)
  foreach(name IN LISTS names)
    if(NOT name MATCHES "^(wine_session|host_shell)\\.")
      set_property(TEST ${name} APPEND PROPERTY FIXTURES_REQUIRED ${VIRTDISK_WINE_SESSION_FIXTURE})
    endif()
  endforeach()
endfunction()

# virtdisk_label_tests()
#
# Gives every test added so far in the calling directory with add_test() (the GoogleTest cases
# get theirs at CTest time, see virtdisk_gtest_tests) its tier label from
# cmake/TestLabels.cmake, by its CTest name, beside the labels it has.
function(virtdisk_label_tests)
  get_property(names DIRECTORY PROPERTY TESTS)
  foreach(name IN LISTS names)
    virtdisk_test_labels("${name}" tiers)
    set_property(TEST ${name} APPEND PROPERTY LABELS ${tiers})
    virtdisk_tier_cost("${tiers}" cost)
    set_property(TEST ${name} PROPERTY COST ${cost})
  endforeach()
endfunction()
