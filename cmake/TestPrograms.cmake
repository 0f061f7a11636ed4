# virtdisk_test_program(TARGET)
#
# Settings shared by the GoogleTest programs, for build time (most of CI's time is compiling
# them, three times: Linux, Linux with sanitizers, Windows):
# - a precompiled header of GoogleTest and the standard headers most tests include (parsing them
#   was about a third of a test file's compile time);
# - in the optimised builds, the test code itself at -O1 (the library keeps -O2): the code
#   generation of large TEST bodies at -O2 cost a third more than at -O1, for code that only
#   drives the library.
function(virtdisk_test_program target)
  target_precompile_headers(${target} PRIVATE
    "$<$<COMPILE_LANGUAGE:CXX>:<gtest/gtest.h$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<algorithm$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<atomic$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<cstring$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<filesystem$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<fstream$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<memory$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<random$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<string$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<thread$<ANGLE-R>>"
    "$<$<COMPILE_LANGUAGE:CXX>:<vector$<ANGLE-R>>")
  target_compile_options(${target} PRIVATE
    "$<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:RelWithDebInfo,Release>>:-O1>")
  # The Linux programs' heap keeps freed memory (tests/support/test_heap.cpp says why).
  if(NOT WIN32)
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support/test_heap.cpp)
  endif()
  # Unity files, as the library's layers (src/CMakeLists.txt, VIRTDISK_UNITY_BUILD): GoogleTest's
  # templates and the test helpers are compiled once a batch rather than once a file. So the
  # helpers of two test files of one program may not share a name in an anonymous namespace.
  set_target_properties(${target} PROPERTIES UNITY_BUILD ${VIRTDISK_UNITY_BUILD}
                                             UNITY_BUILD_BATCH_SIZE ${VIRTDISK_UNITY_BATCH_SIZE})
  # Files whose helpers clash with another file's (or that bring a using-directive into the
  # files after them) compile alone.
  get_target_property(sources ${target} SOURCES)
  foreach(source IN LISTS sources)
    get_filename_component(name ${source} NAME)
    if(name IN_LIST VIRTDISK_TESTS_OUTSIDE_UNITY)
      set_source_files_properties(${source} TARGET_DIRECTORY ${target}
                                  PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
    endif()
  endforeach()
endfunction()

set(VIRTDISK_TESTS_OUTSIDE_UNITY
  # tests/unit
  vhdx_log_test.cpp vhdx_corrupt_test.cpp vhdx_image_test.cpp vhd_image_test.cpp
  security_descriptor_test.cpp resize_test.cpp vhdx_interop_test.cpp vhd_corrupt_test.cpp
  resize_crash_test.cpp nbd_server_test.cpp merge_test.cpp compact_test.cpp
  # tests/api
  storage_sample_api_test.cpp merge_api_test.cpp special_file_api_test.cpp vhdx_api_test.cpp
  mirror_faults_test.cpp
  # tests/interop
  nbd_interop_test.cpp merge_interop_test.cpp crash_test.cpp vhd_interop_test.cpp
  # tests/cli
  cli_check_test.cpp)
