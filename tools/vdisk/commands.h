// The commands, each registered on the CLI11 application by its own file.
#pragma once

#include <CLI/CLI.hpp>

namespace vdisk_tool {

// What the command that ran decided: its exit status, and the status a Failure it throws maps to
// (1 for most; compare and check use their own, as qemu-img's do).
struct RunState {
  int exit_code = 0;
  int failure_exit = 1;
};

void AddCreateCommand(CLI::App& app, RunState& state);         // cmd_create.cpp
void AddInfoCommand(CLI::App& app, RunState& state);           // cmd_info.cpp
void AddIoCommands(CLI::App& app, RunState& state);            // cmd_io.cpp: read, write, export
void AddConvertCommand(CLI::App& app, RunState& state);        // cmd_convert.cpp
void AddAttachCommands(CLI::App& app, RunState& state);        // cmd_attach.cpp: attach, detach, list
void AddMirrorCommand(CLI::App& app, RunState& state);         // cmd_mirror.cpp
void AddLifecycleCommands(CLI::App& app, RunState& state);     // cmd_lifecycle.cpp
void AddCheckCommand(CLI::App& app, RunState& state);          // cmd_check.cpp
void AddMapCompareCommands(CLI::App& app, RunState& state);    // cmd_map_compare.cpp
void AddMetadataCommand(CLI::App& app, RunState& state);       // cmd_metadata.cpp

}  // namespace vdisk_tool
