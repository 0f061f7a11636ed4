// A provider registry that holds the providers given and no other: for the tests of one format
// (and the fuzz seed generators), which must not reach another format's provider by accident.
// Header-only: for programs linked with the core.
#pragma once

#include <utility>

#include "formats/registry/registry.h"

namespace vdisk_testing {

// The registry of the providers `make()...` return, built once per list of factories:
//   const vdisk::ProviderRegistry& Registry() { return RegistryOf<vdisk::MakeVhdProvider>(); }
template <auto... make>
const vdisk::ProviderRegistry& RegistryOf() {
  static const vdisk::ProviderRegistry registry = [] {
    vdisk::ProviderRegistry r;
    (r.Register(make()), ...);
    return r;
  }();
  return registry;
}

}  // namespace vdisk_testing
