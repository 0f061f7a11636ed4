// POSIX shell commands for the unit tests' independent oracles (qemu-img, genisoimage, isoinfo,
// mkudffs, udfinfo). On Linux they run through /bin/sh. Under Wine the Linux tools cannot be
// started from a Windows program, so the command goes to the host through a spool directory that
// tests/host_shell.sh serves (the ctest fixture host_shell starts it and names the directory in
// VIRTDISK_HOST_SHELL); paths are given to the host as Wine maps them (wine_get_unix_file_name).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace vdisk_unit {

// Whether commands can be run at all (always on Linux; under Wine, when the bridge is served).
bool HostShellAvailable();
// Runs `command` in a POSIX shell; returns its exit status (-1 if it could not be run) and, in
// `output` if given, what it wrote on standard output and error.
int HostShell(const std::string& command, std::string* output = nullptr);
// Whether the host has the program `name`, on PATH or in /usr/sbin or /sbin (where udftools
// installs and a non-root PATH may not reach); the command to run it, or "" if it has not.
std::string HostTool(const std::string& name);
// `path` single-quoted for the shell, as the host names it.
std::string ShellQuote(const std::filesystem::path& path);
// Whether a missing oracle fails the test instead of skipping it: VIRTDISK_REQUIRE_ORACLES=1,
// which scripts/test.sh sets so that a run whose oracles are missing cannot pass.
bool OraclesRequired();

}  // namespace vdisk_unit

// Ends a test whose oracle is missing: a skip, or a failure when OraclesRequired().
//   if (HostTool("qemu-img").empty()) VDISK_ORACLE_MISSING("qemu-img is not installed");
#define VDISK_ORACLE_MISSING(why)                                                   \
  if (::vdisk_unit::OraclesRequired())                                            \
    GTEST_FAIL() << why << " (VIRTDISK_REQUIRE_ORACLES=1 makes this a failure)";   \
  else                                                                            \
    GTEST_SKIP() << why
