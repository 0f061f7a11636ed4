// vdisk - create, inspect, convert, attach, mirror and check virtual disks from the command line.
//
// A client of the public VirtDisk API and nothing else: it includes <virtdisk.h> (plus
// <windows.h> on Windows) and calls the functions any Win32 program would, so it builds against
// libvirtdisk.so and against VirtDisk.dll alike. On Linux it also uses libvirtdisk's extensions
// (<virtdisk/extensions.h>: the reason sentence of a failure, allocated ranges, the structural
// check). Usage and exit codes: docs/vdisk.1.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <new>

#include "commands.h"
#include "errors.h"
#include "progress.h"

#ifndef VDISK_VERSION
#define VDISK_VERSION "0.0.0"
#endif

namespace vdisk_tool {
namespace {

int Run(int argc, char** argv) {
  CLI::App app{"vdisk: create, inspect, convert, attach, mirror and check VHD and VHDX virtual "
               "disks through the VirtDisk API.",
               "vdisk"};
  app.set_version_flag("--version", "vdisk " VDISK_VERSION);
  app.require_subcommand(1, 1);
  app.footer(
      "SIZE: bytes, or with K, M, G, T (powers of 1024), decimals allowed: 64M, 1.5G.\n"
      "'-' as a file means standard input or output where a command says so.\n"
      "Exit status: 0 success, 1 failure, 64 usage error, 128+N interrupted by signal N\n"
      "(130: Ctrl-C); check: 2 corruption, 3 leaked space only; compare: 1 differ, 2 error.\n"
      "Run 'vdisk COMMAND --help' for a command's options; 'man vdisk' for more.");
  RunState state;
  AddCreateCommand(app, state);
  AddInfoCommand(app, state);
  AddConvertCommand(app, state);
  AddAttachCommands(app, state);
  AddMirrorCommand(app, state);
  AddLifecycleCommands(app, state);
  AddCheckCommand(app, state);
  AddMapCompareCommands(app, state);
  AddMetadataCommand(app, state);
  AddIoCommands(app, state);
  const auto known = [&](const char* name) {
    for (const CLI::App* command : app.get_subcommands({})) {
      if (command->check_name(name)) return true;
    }
    return false;
  };
  if (argc >= 2 && argv[1][0] != '-' && !known(argv[1])) {
    std::fprintf(stderr, "vdisk: unknown command '%s' (see vdisk --help)\n", argv[1]);
    return kExitUsage;
  }
  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      const int code = app.exit(e);
      return code == 0 ? kExitOk : kExitUsage;
    }
  } catch (const UsageError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "vdisk: %s\n(see vdisk --help)\n", e.what());
    return kExitUsage;
  } catch (const Failure& e) {
    Report(e);
    return state.failure_exit;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "vdisk: out of memory\n");
    return state.failure_exit;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "vdisk: %s\n", e.what());
    return state.failure_exit;
  }
  return state.exit_code;
}

}  // namespace
}  // namespace vdisk_tool

int main(int argc, char** argv) {
  const int status = vdisk_tool::Run(argc, argv);
  std::fflush(stdout);
  return status;
}
