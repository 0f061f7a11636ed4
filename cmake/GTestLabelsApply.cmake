# Included by CTest (see virtdisk_gtest_tests in GTestSuites.cmake) after gtest_discover_tests'
# file, with `tests` (the CTest names of the discovered cases) and `labels` (the caller's labels)
# set: gives each case its tier label from TestLabels.cmake beside the caller's, and the COST of its
# tier.
include(${CMAKE_CURRENT_LIST_DIR}/TestLabels.cmake)
foreach(test IN LISTS tests)
  virtdisk_test_labels("${test}" tiers)
  virtdisk_tier_cost("${tiers}" cost)
  set_tests_properties("${test}" PROPERTIES LABELS "${labels};${tiers}" COST ${cost})
endforeach()
