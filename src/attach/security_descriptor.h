// Who may connect to an attached disk's export, from the caller's SECURITY_DESCRIPTOR.
//
// AttachVirtualDisk takes a Windows security descriptor for the attached disk; a NULL one means
// the owner only. A Unix socket has only its permission bits, so the descriptor is reduced to one
// question: does its DACL let users other than the owner in? It does when the DACL is absent
// while marked present (a NULL DACL: everyone), or when an ACCESS_ALLOWED ACE grants read or
// write rights (GENERIC_ALL/READ/WRITE, FILE_GENERIC_*, or the specific read/write bits) to
// Everyone (S-1-1-0), Authenticated Users (S-1-5-11), Users (S-1-5-32-545) or Interactive
// (S-1-5-4). Both the self-relative and the absolute x64 layouts (MS-DTYP 2.4.6) are read.
#pragma once

#include <cstddef>
#include <span>

#include "base/status.h"

namespace vdisk::attach {

// REQUIRES: `descriptor` is NULL or points to a SECURITY_DESCRIPTOR the caller owns.
// kInvalidParameter if it is malformed (bad revision, offsets or sizes out of bounds).
Result<bool> DescriptorGrantsOthers(const void* descriptor);
// The same for a self-relative descriptor of known length: besides the checks above, the
// header, the DACL and its ACEs must lie within `descriptor` (kInvalidParameter otherwise).
// An empty span is the NULL descriptor.
Result<bool> DescriptorGrantsOthers(std::span<const std::byte> descriptor);

}  // namespace vdisk::attach
