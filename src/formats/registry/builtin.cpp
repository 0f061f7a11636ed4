// The built-in providers, registered explicitly (no static constructors), cheapest probe first.
#include "formats/iso/iso_provider.h"
#include "formats/registry/registry.h"
#include "formats/vhd/vhd_provider.h"
#include "formats/vhdx/vhdx_provider.h"

namespace vdisk {

void RegisterBuiltinProviders(ProviderRegistry& registry) {
  registry.Register(MakeVhdProvider());
  registry.Register(MakeVhdxProvider());
  registry.Register(MakeIsoProvider());
}

}  // namespace vdisk
