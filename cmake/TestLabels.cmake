# The tiers of the tests: every CTest test gets the label `fast`, `slow` or `oracle` (a test can
# be both slow and oracle), from the patterns below, matched against its GoogleTest name
# ("Suite.Case"; a parameterised case is "Instance/Suite.Case/Value") or, for a test that is no
# GoogleTest case, its CTest name.
#
#   ctest -L fast      the edit-compile-test loop: no external program, nothing over ~5 s
#   ctest -L slow      crash and kill sweeps, resident-memory tests, and anything over ~5 s
#   ctest -L oracle    tests that run an external program as the oracle (qemu-img, qemu-io,
#                      nbdinfo, nbdcopy, libvhdi, genisoimage, isoinfo, xorriso, udftools,
#                      runuser)
#   ctest              everything (scripts/test.sh, CI)
#
# A new test is fast unless a pattern here says otherwise: a test that runs an external program
# or takes more than about 5 s (Linux, RelWithDebInfo, on the 2-core CI machine) belongs in a list
# below. Included at configure time (tests that are no GoogleTest case, cmake/GTestSuites.cmake)
# and by CTest when it lists the GoogleTest cases (cmake/GTestLabelsApply.cmake,
# cmake/GTestSuitesAdd.cmake), so it uses only script-mode commands.

set(VIRTDISK_ORACLE_TESTS
  # tests/interop: every suite uses qemu-img, qemu-io, libvhdi, genisoimage, nbdcopy or nbdinfo
  # (CTest names "interop.<Suite>.<Case>").
  "^interop\\."
  # tests/unit: qemu-img, qemu-io and libvhdi_dump; genisoimage, xorriso, mkudffs, isoinfo and
  # udfinfo; nbdinfo and nbdcopy.
  "^VhdxInterop\\."
  "^VhdxCrashSafety\\.WriterKilledWithSigkill"
  "^IsoOpen\\.ReadsSizeFromPrimaryVolumeDescriptor$"
  "^IsoOpen\\.ReadsJolietRockRidgeImage$"
  "^IsoOpen\\.ReadsIsoUdfBridgeImageByItsPrimaryVolumeDescriptor$"
  "^IsoOpen\\.ReadsXorrisoImage$"
  "^IsoOpen\\.ReadsUdfStructuresWrittenByGenisoimage$"
  "^IsoOpen\\.RejectsDamagedGenisoimageImages$"
  "^UdfOnlyImage\\.OpensWithTheSizeUdfinfoReports$"
  "^NbdServerTls\\.NbdinfoWithTheKey"
  # tests/api: nbdinfo, nbdcopy and qemu-io as NBD clients, runuser as another local user.
  "^AttachSecurityTest\\."
  "^AttachNbdSecurityTest\\."
  "^[^/]*/AttachNbdSecurityTest\\."
  "^AttachNbdTest\\.ExportIsListedServedAndGoneAfterDetach$"
  "^AttachNbdTest\\.ReadOnlyAttachmentRefusesWrites$"
  "^AttachNbdTest\\.RestrictedRangeExportsOnlyTheWindow$"
  "^AttachNbdTest\\.IdleTcpClientsDoNotKeepTheOwnerOut$"
  "^AttachHostTest\\.PermanentTcpExportAdmitsOnlyTheHolderOfItsKey$"
  "^AttachHostTest\\.PermanentUnixSocketExportAdmitsOnlyItsOwner$"
  # The lifecycle operations: qemu-img/qemu-io and libvhdi_dump judge the result.
  "^[^/]*/CompactKilledWithSigkill\\."
  "^[^/]*/CompactTest\\.LibvhdiReadsTheSameChainBeforeAndAfter/"
  "^[^/]*/CompactApiTest\\.(ZeroBlocksGoContentStaysAndQemuAgrees|ImagesMadeByQemuImgCompact)/"
  "^ResizeKilledWithSigkill\\."
  "^[^/]*/ResizeDiskTest\\."
  "^VhdResizeInterop\\.")

set(VIRTDISK_SLOW_TESTS
  # Crash and kill sweeps: a writer stopped after every possible write, a process killed many
  # times, a fault at every chunk.
  "Crash"
  "KilledWith"
  "KilledMirror"
  "Sweep"
  "AtEvery"
  "^VhdxMemoryFile\\.EveryFailedWriteLeavesAnImageThatOpens$"
  # Resident-memory tests (64 TiB disks, the mirror engine's memory).
  "^[A-Za-z]*Memory\\."
  "^MirrorJobTest\\.EngineMemoryDoesNotDependOnTheDiskSize$"
  # Over about 5 s (or near it: 4 to 5 s in CI's runs, 5 to 8 s on a loaded machine).
  "^VhdxInterop\\.ReadsFilesThatQemuCreatedAndWrote$"
  "^VhdxInterop\\.LibvhdiReadsOurFilesAndChains$"
  "^VhdxInterop\\.QemuChecksAndReadsOurFiles$"
  "^VhdxRoundTrip\\.(Dynamic|Fixed)DiskWithEveryBlockSizeAndSectorSize$"
  "^VhdxMetadata\\.LimitsOfUserItems$"
  "^VhdOpen\\.SurvivesRandomMetadataDamage$"
  "^VhdxConcurrency\\.FourWritersOnADifferencingDisk$"
  "^Leak\\.StartAndCancelAMirrorRepeatedly$"
  "^ChainDepth\\.ChainAtTheLimitOpensAndReadsThroughOnePastItIsRefused$"
  "^MirrorTest\\.SampleSequenceMirrorsDynamicFixedAndDifferencingVhdx$"
  "^MirrorTest\\.SampleSequenceMirrorsADynamicVhd$"
  "^MirrorTest\\.WritersOnFourThreadsDuringAndAfterTheCopy$"
  "^MirrorJobTest\\.ADifferencingMirrorKeepsZerosWrittenOverItsParent$"
  "^VhdxDifferencing\\.ThreeLevelChainWith(512|4096)ByteSectors$"
  "^MirrorCancelTest\\.CancelIoExFromAnotherThreadKeepsTheSource$"
  "^MirrorCancelTest\\.CloseHandleDuringTheCopyCancelsIt$"
  "^MirrorCancelTest\\.CancelIoExBeforeReadyKeepsTheSource$"
  "^MirrorCancelTest\\.BreakBeforeReadyChangesNothing$"
  "^interop\\.NbdInterop\\.NbdcopyOfTheExportEqualsQemuImgConvertOfTheImage$"
  "^interop\\.Formats/MirrorInterop\\.LibvhdiReadsADifferencingMirrorLikeItsSource/"
  # The mirror suites again on the engine's other data paths, the Windows handle-model suites
  # with the other form of the kernel32 hooks.
  "^(unit|api)\\.mirror\\.buffer_pool"
  "^api\\.hooks\\.tables$")

# virtdisk_test_labels(NAME OUT_VAR): the tier labels of the test named NAME, in OUT_VAR.
function(virtdisk_test_labels name out_var)
  set(labels "")
  foreach(pattern IN LISTS VIRTDISK_SLOW_TESTS)
    if(name MATCHES "${pattern}")
      list(APPEND labels slow)
      break()
    endif()
  endforeach()
  foreach(pattern IN LISTS VIRTDISK_ORACLE_TESTS)
    if(name MATCHES "${pattern}")
      list(APPEND labels oracle)
      break()
    endif()
  endforeach()
  if(NOT labels)
    set(labels fast)
  endif()
  set(${out_var} "${labels}" PARENT_SCOPE)
endfunction()

# virtdisk_tier_cost(TIERS OUT_VAR): the COST a test with the tier labels TIERS starts with.
# CTest starts the costliest tests first; on a fresh checkout it has no timings of earlier runs,
# and in declaration order a long kill sweep could start last and hold the run's end while the
# other core idles. Slow tests are started first, then the oracle tests (external programs).
function(virtdisk_tier_cost tiers out_var)
  # list(FIND), not if(IN_LIST): CTest includes this file in script mode, without the policy.
  set(cost 0)
  list(FIND tiers slow slow_at)
  list(FIND tiers oracle oracle_at)
  if(slow_at GREATER -1)
    set(cost 100)
  elseif(oracle_at GREATER -1)
    set(cost 10)
  endif()
  set(${out_var} ${cost} PARENT_SCOPE)
endfunction()

# virtdisk_merge_tier_labels(LIST_VAR): reduces LIST_VAR, the labels of several tests (the cases
# of one per-suite test), to the tiers of the whole: slow and oracle if any part is, fast only if
# every part is.
function(virtdisk_merge_tier_labels list_var)
  set(labels ${${list_var}})
  list(REMOVE_DUPLICATES labels)
  if(labels MATCHES "slow|oracle")
    list(REMOVE_ITEM labels fast)
  endif()
  set(${list_var} "${labels}" PARENT_SCOPE)
endfunction()
